r"""The optimiser and learning-rate schedule shared by every training loop of the kit (teacher build, both loops).

Linear warm-up over the first ``warmup`` steps, then a cosine decay to ``min_ratio · lr`` at ``total``:

.. math:: \eta(s) = \eta_0\,\tfrac{s+1}{w}\ (s < w), \qquad
          \eta(s) = \eta_0\big(r + (1-r)\,\tfrac12(1+\cos\pi t)\big),\ t=\min\big(1,\tfrac{s-w}{\max(1,T-w)}\big)
          \ (s \ge w)
"""

from __future__ import annotations

import math

__all__ = ["warmup_cosine_lr", "decay_groups", "make_optimizer", "set_lr"]


def warmup_cosine_lr(step: int, total: int, lr: float, warmup: int, min_ratio: float) -> float:
    """The learning rate at ``step`` (0-based) of a run of ``total`` steps: warm-up, then cosine to ``min_ratio·lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def decay_groups(model, weight_decay: float, rule: str = "matrices") -> list[dict]:
    """AdamW parameter groups: with ``rule="matrices"`` only weight matrices decay (not biases, norms, embeddings).

    Decaying a LayerNorm gain or a bias pulls it towards 0, which is not a smaller model, and decaying the
    embeddings shrinks rare tokens' vectors most; ``rule="all"`` decays every parameter (the notebooks' shipped
    protocol runs used it).
    """
    if rule == "all":
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    if rule != "matrices":
        raise ValueError(f"rule must be 'matrices' or 'all', got {rule!r}")
    import torch

    embedding_params = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    decay, keep = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and id(p) not in embedding_params else keep).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def make_optimizer(model, cfg):
    """AdamW with the kit's betas (0.9, 0.95) and ``cfg``'s lr, weight decay and decay rule; lr set per step after."""
    import torch

    return torch.optim.AdamW(decay_groups(model, cfg.weight_decay, cfg.decay), lr=cfg.lr, betas=(0.9, 0.95))


def set_lr(optimizer, step: int, cfg) -> float:
    """Set every group's learning rate for ``step`` (:func:`warmup_cosine_lr` of ``cfg``); returns it."""
    lr = warmup_cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
