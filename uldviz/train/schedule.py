r"""Learning-rate schedule shared by every training loop of the kit (teacher build, distillation).

Linear warm-up over the first ``warmup`` steps, then a cosine decay to ``min_ratio · lr`` at ``total``:

.. math:: \eta(s) = \eta_0\,\tfrac{s+1}{w}\ (s < w), \qquad
          \eta(s) = \eta_0\big(r + (1-r)\,\tfrac12(1+\cos\pi t)\big),\ t=\min\big(1,\tfrac{s-w}{\max(1,T-w)}\big)
          \ (s \ge w)
"""

from __future__ import annotations

import math

__all__ = ["warmup_cosine_lr"]


def warmup_cosine_lr(step: int, total: int, lr: float, warmup: int, min_ratio: float) -> float:
    """The learning rate at ``step`` (0-based) of a run of ``total`` steps: warm-up, then cosine to ``min_ratio·lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
