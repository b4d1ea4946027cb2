r"""The settings every training loop shares: the loss (:class:`LossConfig`) and the optimisation (:class:`TrainConfig`).

Both loops' run configs derive from :class:`TrainConfig`: the notebooks' :class:`uldviz.distill.core.DistillConfig`
and the scale-out's :class:`uldviz.scale.config.ScaleConfig`, so a field means one thing, is checked once, and a new
loss is configured in one place. The objective they configure is

.. math:: \mathcal L = w_{CE}\,\mathrm{CE}_\varepsilon + \lambda\, D(\text{student}, \text{teacher}),

with :math:`D` the registered term named ``loss`` (:mod:`uldviz.train.objectives`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

__all__ = ["LossConfig", "TrainConfig", "check_int_fields", "DIVERGENCES", "ALIGNMENTS", "DECAY_RULES"]

#: The hybrid loss's divergence on shared strings: generalised KL (the kit's default) or GOLD's JSD.
DIVERGENCES = ("gkl", "jsd")
#: Which parameters weight decay applies to (uldviz.train.schedule.make_optimizer).
DECAY_RULES = ("matrices", "all")
#: Position pairings of the position-wise terms (ULD, KL); the span-group terms align by byte offsets.
ALIGNMENTS = ("offset", "positional")


def check_int_fields(obj, names, minimum: int = 1) -> None:
    """Each named field of a config must be an integer >= ``minimum`` (a bool is not one): else a named ValueError."""
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{name} must be {what}, got {v!r}")


def _finite(value, name: str, *, positive: bool = False, low: float | None = None, high: float | None = None):
    v = float(value)
    bad = not math.isfinite(v) or (positive and v <= 0)
    bad = bad or (low is not None and v < low) or (high is not None and v > high)
    if bad:
        rng = "> 0" if positive else f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a finite number {rng}, got {value!r}")


@dataclass
class LossConfig:
    """What a training step minimises: ``ce_weight`` · CE (label smoothing α) + ``lam`` · D(student, teacher)."""

    loss: str = "ce"  # distillation term D (uldviz.train.objectives): ce (none), uld, kl, hybrid, chunk, ...
    align: str = "offset"  # ULD/KL pairing: "offset" (character offsets) or "positional" (the paper's)
    lam: float = 1.0  # weight λ of D
    ce_weight: float = 1.0  # weight of the student's own cross-entropy
    label_smoothing: float = 0.0  # α of the CE term: the teacherless regulariser
    shuffle_teacher: bool = False  # control: teacher targets permuted among the batch's pairs (no context link)
    student_temperature: float = 1.0
    teacher_temperature: float = 1.0
    top_k: int = 0  # ULD on the k largest probabilities + tail mass (0: full ULD)
    hybrid_weight: float | None = None  # hybrid: weight of the shared-string part (None: GOLD's |shared|/|V_T|)
    divergence: str = "gkl"  # hybrid: divergence on shared strings, "gkl" (generalised KL) or "jsd" (GOLD's)
    chunk_tau: float = 100.0  # chunk likelihood: temperature τ of ALM's binarised divergence (tokenkit's default)

    def __post_init__(self):
        from uldviz.train.objectives import check_loss_options

        if self.align not in ALIGNMENTS:
            raise ValueError(f"align must be one of {ALIGNMENTS}, got {self.align!r}")
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {self.divergence!r}")
        _finite(self.lam, "lam", low=0.0)
        _finite(self.ce_weight, "ce_weight", low=0.0)
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for name in ("student_temperature", "teacher_temperature", "chunk_tau"):
            _finite(getattr(self, name), name, positive=True)
        check_int_fields(self, ("top_k",), minimum=0)
        if self.hybrid_weight is not None:
            _finite(self.hybrid_weight, "hybrid_weight", low=0.0, high=1.0)
        check_loss_options(self)

    def loss_fields(self) -> dict:
        """The loss settings alone (the :class:`LossConfig` part of a run config)."""
        return {f.name: getattr(self, f.name) for f in fields(LossConfig)}


@dataclass
class TrainConfig(LossConfig):
    """The loss plus the optimisation every loop runs: AdamW, linear warm-up then cosine decay, gradient clipping."""

    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decay down to lr * min_lr_ratio (uldviz.train.schedule)
    warmup_steps: int = 20
    weight_decay: float = 0.01  # AdamW weight decay
    decay: str = "matrices"  # what it applies to: "matrices" (not biases, norms, embeddings) or "all" parameters
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 25  # held-out bits per byte every this many steps (and at the last step)
    eval_block: int = 64  # evaluation blocks of this many tokens

    def __post_init__(self):
        super().__post_init__()
        check_int_fields(self, ("steps", "batch_size", "eval_every", "eval_block"))
        check_int_fields(self, ("warmup_steps", "seed"), minimum=0)
        _finite(self.lr, "lr", positive=True)
        _finite(self.min_lr_ratio, "min_lr_ratio", low=0.0, high=1.0)
        _finite(self.weight_decay, "weight_decay", low=0.0)
        _finite(self.grad_clip, "grad_clip", low=0.0)
        if self.decay not in DECAY_RULES:
            raise ValueError(f"decay must be one of {DECAY_RULES}, got {self.decay!r}")
