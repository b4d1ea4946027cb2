"""uldviz: an interactive teaching kit for the Universal Logit Distillation (ULD) loss.

The maths lives in :mod:`uldviz.maths.losses`, :mod:`uldviz.alignment.positions`, :mod:`uldviz.alignment.spans`,
:mod:`uldviz.maths.identity`,
:mod:`uldviz.vocab.shared`, :mod:`uldviz.maths.transport` and :mod:`uldviz.io.tokenizers` (no plotting); plots in
:mod:`uldviz.viz.plots`; widgets in :mod:`uldviz.viz.widgets`; the distillation core, objectives and protocol in
:mod:`uldviz.distill`; real models with ``accelerate`` in :mod:`uldviz.scale`. Import submodules explicitly;
this top level only re-exports the losses, and needs only torch and numpy (the notebooks' packages are the
``[notebooks]`` extra).
"""

from uldviz.env import REPO_URL  # the repository's public address (kept in the lowest layer)
from uldviz.maths.losses import (
    PAPER_LAMBDA,
    cross_entropy,
    kl_divergence,
    softmax_probs,
    uld_distance,
    uld_loss,
    uld_reference,
    uld_topk_distance,
)

__version__ = "0.1.0"

__all__ = [
    "PAPER_LAMBDA",
    "REPO_URL",
    "cross_entropy",
    "kl_divergence",
    "softmax_probs",
    "uld_distance",
    "uld_loss",
    "uld_reference",
    "uld_topk_distance",
]
