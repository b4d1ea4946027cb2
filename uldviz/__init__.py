"""uldviz: an interactive teaching kit for the Universal Logit Distillation (ULD) loss.

The maths lives in :mod:`uldviz.losses`, :mod:`uldviz.align`, :mod:`uldviz.spans`, :mod:`uldviz.identity`,
:mod:`uldviz.shared_vocab`, :mod:`uldviz.ot` and :mod:`uldviz.tokenization` (no plotting); plots in
:mod:`uldviz.plots`; widgets in :mod:`uldviz.widgets`; the distillation core, objectives and protocol in
:mod:`uldviz.distill`; real models with ``accelerate`` in :mod:`uldviz.scale`. Import submodules explicitly;
this top level only re-exports the losses, and needs only torch and numpy (the notebooks' packages are the
``[notebooks]`` extra).
"""

from .losses import (
    PAPER_LAMBDA,
    ce_plus_uld,
    cross_entropy,
    kl_divergence,
    softmax_probs,
    uld_distance,
    uld_loss,
    uld_reference,
    uld_topk_distance,
)

__version__ = "0.1.0"

#: The repository's public address: the one place Colab install cells and badges read it from.
REPO_URL = "https://github.com/uldviz/uldviz"

__all__ = [
    "PAPER_LAMBDA",
    "REPO_URL",
    "ce_plus_uld",
    "cross_entropy",
    "kl_divergence",
    "softmax_probs",
    "uld_distance",
    "uld_loss",
    "uld_reference",
    "uld_topk_distance",
]
