r"""The distillation terms D of :math:`\mathcal L = \mathrm{CE}_\varepsilon + \lambda D`, one short function each.

Each term takes the student's and the teacher's logits over a :class:`~uldviz.distill.core.Batch` and
returns a scalar; :func:`make_objective` binds one to a config. The maths lives in the kit's maths
modules (:mod:`uldviz.maths.losses`, :mod:`uldviz.alignment.positions`, :mod:`uldviz.alignment.spans`,
:mod:`uldviz.maths.identity`);
this file only decides which positions are compared.

The **shuffled-teacher control** (``cfg.shuffle_teacher``) permutes the teacher's targets among the
batch's paired positions (or span groups) before the loss: the multiset of teacher distributions —
their confidence profile — is kept, their link to the context is cut. A method whose gain survives
the shuffle is regularising, not transferring what the teacher knows about this text.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from uldviz.alignment.positions import gather_pairs, offset_pairing, positional_pairing
from uldviz.distill.core import label_mask
from uldviz.maths.losses import kl_divergence, uld_loss

__all__ = [
    "pair_positions",
    "shuffle_pairs",
    "shuffled_distances",
    "uld_term",
    "kl_term",
    "hybrid_term",
    "chunk_term",
    "make_objective",
]


def pair_positions(batch, how: str):
    """The :class:`~uldviz.alignment.positions.Alignment` of a batch: ``'positional'`` or ``'offset'`` pairing.

    Only positions that predict a token inside the window take part, the same set for both ways.
    """
    if how == "positional":
        return positional_pairing(label_mask(batch.student_valid), label_mask(batch.teacher_valid))
    if how == "offset":
        return offset_pairing(batch.student_offsets, batch.teacher_offsets, batch.student_valid, batch.teacher_valid)
    raise ValueError(f"alignment must be 'positional' or 'offset', got {how!r}")


def shuffle_pairs(x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``x`` with its rows at ``mask``-True places permuted among themselves (the control); others unchanged.

    ``x`` (*lead, ...) and ``mask`` (*lead) bool: the multiset of selected rows is kept exactly.
    """
    if tuple(mask.shape) != tuple(x.shape[:mask.dim()]):
        raise ValueError(f"mask {tuple(mask.shape)} does not match the leading shape of x {tuple(x.shape)}")
    m = mask.to(x.device)
    rows = x[m]
    perm = torch.randperm(rows.shape[0], generator=generator).to(x.device)
    out = x.clone()
    out[m] = rows[perm]
    return out


def shuffled_distances(probs: torch.Tensor, generator: torch.Generator) -> dict:
    r"""How far each distribution row is from the row the shuffled control would put in its place.

    For rows :math:`p_i` (N, V) and a random permutation π: the mean ULD :math:`\mathrm{ULD}(p_i, p_{\pi(i)})`
    and the mean L1 :math:`\lVert p_i - p_{\pi(i)}\rVert_1` (twice the total variation). ULD sees only the
    sorted values, so two contexts with similar confidence look alike to it even when they predict
    different tokens: the ratio says how little of a context's identity ULD can see.
    """
    if probs.dim() != 2 or probs.shape[0] < 2:
        raise ValueError(f"probs must be (rows >= 2, vocabulary), got {tuple(probs.shape)}")
    from uldviz.maths.losses import uld_distance

    perm = torch.randperm(probs.shape[0], generator=generator)
    other = probs[perm]
    uld = uld_distance(probs, other)
    l1 = (probs - other).abs().sum(-1)
    moved = perm != torch.arange(probs.shape[0])
    return {"uld": float(uld[moved].mean()), "l1": float(l1[moved].mean()), "pairs": int(moved.sum())}


# --------------------------------------------------------------------------- the terms
def uld_term(s_logits, t_logits, batch, *, how: str = "offset", student_temperature: float = 1.0,
             teacher_temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """ULD between paired positions (``how``: positional or offset pairing); shuffled teacher if ``generator``."""
    ps, pt, m = gather_pairs(s_logits, t_logits, pair_positions(batch, how))
    if generator is not None:
        pt = shuffle_pairs(pt, m, generator)
    return uld_loss(ps, pt, student_temperature=student_temperature, teacher_temperature=teacher_temperature,
                    mask=m)


def kl_term(s_logits, t_logits, batch, *, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher ‖ student) position by position: only when both share one tokenizer (same positions)."""
    if s_logits.shape != t_logits.shape:
        raise ValueError(f"KL needs the student to share the teacher's tokenizer: logits {tuple(s_logits.shape)} "
                         f"vs {tuple(t_logits.shape)} (use same_tokenizer=True)")
    return kl_divergence(s_logits, t_logits, temperature=temperature, mask=label_mask(batch.student_valid))


def _groups(batch, student_tokenizer, teacher_tokenizer, device):
    """The span groups of a batch (:func:`uldviz.alignment.spans.align_batch`), as tensors on ``device``."""
    from uldviz.alignment.spans import align_batch

    sp = align_batch(batch, student_tokenizer, teacher_tokenizer)
    if sp.num_groups == 0:
        raise ValueError("no span group closes inside this batch's windows: the windows are too short")
    return [t.to(device) for t in (sp.sample, sp.student_start, sp.student_end, sp.teacher_start, sp.teacher_end)]


def _permute(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Every row of ``x`` in the shuffled control's order (:func:`shuffle_pairs`), or ``x`` with no generator."""
    if generator is None:
        return x
    return shuffle_pairs(x, torch.ones(x.shape[0], dtype=torch.bool), generator)


def hybrid_term(s_logits, t_logits, batch, *, shared, student_tokenizer, teacher_tokenizer,
                weight: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """GOLD-style hybrid loss per span group: a divergence on shared token strings + ULD on the rest."""
    from uldviz.maths.identity import hybrid_uld_loss, merged_group_logprobs

    b, s0, s1, t0, t1 = _groups(batch, student_tokenizer, teacher_tokenizer, s_logits.device)
    s_lp = merged_group_logprobs(s_logits, batch.student_ids, b, s0, s1)
    with torch.no_grad():
        t_lp = _permute(merged_group_logprobs(t_logits, batch.teacher_ids, b, t0, t1), generator)
    return hybrid_uld_loss(s_lp, t_lp, shared, weight=weight)


def chunk_term(s_logits, t_logits, batch, *, student_tokenizer, teacher_tokenizer, tau: float = 100.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """ALM-style chunk-likelihood matching: each span group's likelihood under teacher and student."""
    from uldviz.maths.identity import chunk_likelihood_loss, chunk_log_likelihoods

    b, s0, s1, t0, t1 = _groups(batch, student_tokenizer, teacher_tokenizer, s_logits.device)
    s_ll = chunk_log_likelihoods(s_logits, batch.student_ids, b, s0, s1)
    with torch.no_grad():
        t_ll = _permute(chunk_log_likelihoods(t_logits, batch.teacher_ids, b, t0, t1), generator)
    return chunk_likelihood_loss(s_ll, t_ll, tau=tau)


def make_objective(cfg, setup) -> Callable | None:
    """The distillation term of ``cfg`` as ``objective(student_logits, teacher_logits, batch)``; None for CE only.

    The shuffled-teacher control draws its permutations from its own generator (seed 2000 + cfg.seed),
    so it never changes which windows a run sees.
    """
    if cfg.loss == "ce":
        return None
    gen = torch.Generator().manual_seed(2000 + cfg.seed) if cfg.shuffle_teacher else None
    if cfg.loss == "kl":
        if gen is not None:
            raise ValueError("the shuffled-teacher control is defined for the cross-tokenizer losses, not KL")
        return partial(kl_term, temperature=cfg.teacher_temperature)
    if cfg.loss == "uld":
        return partial(uld_term, how=cfg.align, student_temperature=cfg.student_temperature,
                       teacher_temperature=cfg.teacher_temperature, generator=gen)
    toks = dict(student_tokenizer=setup.student_tokenizer, teacher_tokenizer=setup.teacher_tokenizer)
    if cfg.loss == "hybrid":
        from uldviz.vocab.shared import SharedVocab

        shared = SharedVocab.from_tokenizers(setup.student_tokenizer, setup.teacher_tokenizer)
        return partial(hybrid_term, shared=shared, weight=cfg.hybrid_weight, generator=gen, **toks)
    if cfg.loss == "chunk":
        return partial(chunk_term, tau=cfg.chunk_tau, generator=gen, **toks)
    raise ValueError(f"no distillation term for loss={cfg.loss!r}")
