r"""The loss registry of scaled runs: which distillation term D goes into :math:`\mathrm{CE} + \lambda D`.

Each :class:`Objective` says what it needs from the teacher (its logits, a top-k cache, or nothing), how it pairs
student and teacher positions of a batch (``pair``, computed before any forward pass so the loop can normalise by
the global number of pairs), and its summed term (``term``). The maths is the kit's: :mod:`uldviz.maths.losses` and
:mod:`uldviz.alignment.positions`; this module only wires it. ``hybrid`` and ``chunk`` are adapters to the
identity-preserving
losses of notebook 04 (:mod:`uldviz.alignment.spans` groups, :mod:`uldviz.maths.identity` losses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from uldviz.alignment.positions import Alignment, gather_pairs, offset_pairing, positional_pairing
from uldviz.maths.losses import cross_entropy, kl_divergence, uld_loss, uld_topk_from_teacher_topk

__all__ = ["Objective", "LossContext", "OBJECTIVES", "get_objective", "answer_pairs", "batch_sums", "register"]


@dataclass
class LossContext:
    """What a loss may need besides the batch: the config, both tokenizers, vocabulary sizes, a per-run store."""

    cfg: Any
    student_tokenizer: Any
    teacher_tokenizer: Any = None
    student_vocab: int = 0  # logits are cut to this many columns (a head may have padding rows that are no token)
    teacher_vocab: int = 0
    store: dict = field(default_factory=dict)  # things built once per run (e.g. a shared-vocabulary map)

    def once(self, key: str, build: Callable):
        """``build()`` the first time ``key`` is asked for, the stored value afterwards."""
        if key not in self.store:
            self.store[key] = build()
        return self.store[key]


@dataclass(frozen=True)
class Objective:
    """A registered distillation term: ``pair(batch, ctx) -> (pairs, count)``, ``term(s, t, batch, pairs, ctx)``."""

    name: str
    help: str
    teacher: str  # "logits": a teacher model runs; "cache": targets come from a teacher cache; "none"
    pair: Callable | None = None
    term: Callable | None = None
    same_tokenizer: bool = False


# --------------------------------------------------------------------------- pairing
def _empty_alignment(batch_size: int) -> Alignment:
    zero = torch.zeros(batch_size, 1, dtype=torch.long)
    return Alignment(zero, zero.clone(), torch.zeros(batch_size, 1, dtype=torch.bool))


def answer_pairs(batch, how: str) -> Alignment:
    """Student/teacher position pairs of a batch (``'offset'`` or ``'positional'``), answer positions only."""
    b = batch.student_ids.shape[0]
    if how == "positional":
        if int(torch.minimum(batch.student_answer.sum(1), batch.teacher_answer.sum(1)).max()) == 0:
            return _empty_alignment(b)
        return positional_pairing(batch.student_answer, batch.teacher_answer)
    if how != "offset":
        raise ValueError(f"align must be 'offset' or 'positional', got {how!r}")
    try:
        al = offset_pairing(batch.student_offsets, batch.teacher_offsets, batch.student_valid, batch.teacher_valid)
    except ValueError:  # no shared prediction point anywhere in this micro-batch: nothing to distil from it
        return _empty_alignment(b)
    keep = al.mask & torch.gather(batch.student_answer, 1, al.student_index)
    return Alignment(al.student_index, al.teacher_index, keep)


def _pairs(batch, ctx):
    al = answer_pairs(batch, ctx.cfg.align)
    return al, int(al.mask.sum())


def _same_positions(batch, ctx):
    al = answer_pairs(batch, "positional")
    return al, int(al.mask.sum())


def _cached_pairs(batch, ctx):
    targets = ctx.store["cache"].lookup(batch.index)
    return targets, int(targets.mask.sum())


# --------------------------------------------------------------------------- terms (summed over pairs)
def _nothing(s_logits):
    """A zero that keeps every parameter in the graph (distributed data parallel expects gradients for all)."""
    return s_logits.sum() * 0.0


def _uld_term(s_logits, t_logits, batch, al, ctx):
    if not bool(al.mask.any()):
        return _nothing(s_logits)
    ps, pt, m = gather_pairs(s_logits, t_logits, al)
    return uld_loss(ps, pt, student_temperature=ctx.cfg.student_temperature,
                    teacher_temperature=ctx.cfg.teacher_temperature, mask=m, top_k=ctx.cfg.top_k or None,
                    reduction="sum")


def _kl_term(s_logits, t_logits, batch, al, ctx):
    if not bool(al.mask.any()):
        return _nothing(s_logits)
    ps, pt, m = gather_pairs(s_logits, t_logits, al)
    return kl_divergence(ps, pt, temperature=ctx.cfg.teacher_temperature, mask=m, reduction="sum")


def _cached_uld_term(s_logits, _teacher, batch, targets, ctx):
    if not bool(targets.mask.any()):
        return _nothing(s_logits)
    idx = targets.student_index.to(s_logits.device)
    ps = torch.gather(s_logits, 1, idx[..., None].expand(-1, -1, s_logits.shape[-1]))
    return uld_topk_from_teacher_topk(ps, targets.probs, targets.tail, student_temperature=ctx.cfg.student_temperature,
                                      mask=targets.mask.to(s_logits.device), reduction="sum")


# --------------------------------------------------------------------------- adapters to notebook 04's losses
def _span_pairs(batch, ctx):
    """Groups of student and teacher tokens covering the same text (:func:`uldviz.alignment.spans.align_batch`),
    answer only.

    Returns ((sample, student_start, student_end, teacher_start, teacher_end), number of groups).
    """
    from uldviz.alignment.spans import align_batch

    sp = align_batch(batch, ctx.student_tokenizer, ctx.teacher_tokenizer)
    # student_answer[i] marks that token i+1 is answer text, so position start - 1 (which predicts the group's first
    # token) says whether the group is part of the answer
    keep = batch.student_answer.cpu()[sp.sample, sp.student_start - 1]
    groups = tuple(t[keep] for t in (sp.sample, sp.student_start, sp.student_end, sp.teacher_start, sp.teacher_end))
    return groups, int(keep.sum())


def _hybrid_term(s_logits, t_logits, batch, groups, ctx):
    """GOLD-style hybrid per span group: divergence on the strings both vocabularies share, sorted L1 on the rest."""
    if groups[0].numel() == 0:
        return _nothing(s_logits)
    from uldviz.maths.identity import hybrid_uld_loss, merged_group_logprobs
    from uldviz.vocab.shared import SharedVocab

    shared = ctx.once("shared_vocab", lambda: SharedVocab.from_tokenizers(ctx.student_tokenizer, ctx.teacher_tokenizer))
    b, s0, s1, t0, t1 = (g.to(s_logits.device) for g in groups)
    s_lp = merged_group_logprobs(s_logits, batch.student_ids, b, s0, s1)
    with torch.no_grad():
        t_lp = merged_group_logprobs(t_logits, batch.teacher_ids, b, t0, t1)
    return hybrid_uld_loss(s_lp, t_lp, shared, reduction="sum")


def _chunk_term(s_logits, t_logits, batch, groups, ctx):
    """ALM-style chunk-likelihood matching over the aligned groups (τ from the config)."""
    if groups[0].numel() == 0:
        return _nothing(s_logits)
    from uldviz.maths.identity import chunk_likelihood_loss, chunk_log_likelihoods

    b, s0, s1, t0, t1 = (g.to(s_logits.device) for g in groups)
    s_ll = chunk_log_likelihoods(s_logits, batch.student_ids, b, s0, s1)
    with torch.no_grad():
        t_ll = chunk_log_likelihoods(t_logits, batch.teacher_ids, b, t0, t1)
    return chunk_likelihood_loss(s_ll, t_ll, tau=ctx.cfg.chunk_tau, reduction="sum")


#: name -> Objective. Add a loss with :func:`register`.
OBJECTIVES: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    """Add (or replace) a loss in :data:`OBJECTIVES`; returns it."""
    OBJECTIVES[objective.name] = objective
    return objective


register(Objective("ce", "cross-entropy only: no teacher (the control)", "none"))
register(Objective("uld", "ULD (sorted L1 of the two softmaxes) on paired positions", "logits", _pairs, _uld_term))
register(Objective("kl", "KL(teacher || student), one shared tokenizer only", "logits", _same_positions, _kl_term,
                   same_tokenizer=True))
register(Objective("uld-cache", "top-k ULD from a teacher cache (no teacher in memory)", "cache", _cached_pairs,
                   _cached_uld_term))
register(Objective("hybrid", "divergence on shared token strings + sorted L1 on the rest, per span group (GOLD)",
                   "logits", _span_pairs, _hybrid_term))
register(Objective("chunk", "likelihood of aligned text chunks (ALM)", "logits", _span_pairs, _chunk_term))


def get_objective(name: str, cached: bool = False) -> Objective:
    """The registered loss ``name`` (``uld`` becomes ``uld-cache`` with a teacher cache); clear errors otherwise."""
    if name not in OBJECTIVES or name == "uld-cache":
        raise ValueError(f"unknown loss {name!r}; choose one of {[n for n in OBJECTIVES if n != 'uld-cache']}")
    if cached:
        if name != "uld":
            raise ValueError(f"a teacher cache holds ULD's top-k targets: it trains --loss uld, not {name!r}")
        name = "uld-cache"
    return OBJECTIVES[name]


# --------------------------------------------------------------------------- one micro-batch
def _logits(model, ids, valid, vocab: int) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=valid.long()).logits[..., :vocab]


def batch_sums(objective: Objective, student, teacher, batch, pairs, ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE summed over answer tokens, D summed over pairs) of one micro-batch; the loop divides by global counts."""
    s_logits = _logits(student, batch.student_ids, batch.student_valid, ctx.student_vocab)
    labels = batch.student_ids[:, 1:].masked_fill(~batch.student_answer[:, :-1], -100)
    ce = (cross_entropy(s_logits[:, :-1], labels, reduction="sum") if bool(batch.student_answer.any())
          else _nothing(s_logits))
    if objective.term is None:
        return ce, torch.zeros((), device=ce.device)
    t_logits = None
    if objective.teacher == "logits":
        with torch.no_grad():
            t_logits = _logits(teacher, batch.teacher_ids, batch.teacher_valid, ctx.teacher_vocab)
    return ce, objective.term(s_logits, t_logits, batch, pairs, ctx)
