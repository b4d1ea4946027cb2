r"""The one objective layer of every training loop: a registry of distillation terms and a step's sums.

A training step minimises :math:`\mathcal L = w_{CE}\,\mathrm{CE}_\varepsilon + \lambda D` (:class:`LossConfig`).
Each registered :class:`Term` says how it pairs a batch and what it compares, in three small functions:

- ``pair(batch, objective)``: which rows take part — position pairs (ULD, KL), span groups (hybrid, chunk
  likelihood) or cached teacher targets — computed on the CPU before any forward pass, so a distributed loop can
  divide by the global count, then moved once to the device with the batch;
- ``student_rows`` / ``teacher_rows``: the rows each model gives for those pairs (logits at paired positions,
  merged group distributions, chunk log-likelihoods; the teacher's without gradient);
- ``divergence(student_rows, teacher_rows, objective)``: one value per row, from the maths layer
  (:mod:`uldviz.maths.losses`, :mod:`uldviz.maths.identity`).

The **shuffled-teacher control** (``shuffle_teacher``) is a wrapper every term takes: the teacher's rows are
permuted among the batch's rows before the divergence, which keeps the multiset of teacher targets (their
confidence profile) and cuts their link to the context. :meth:`Objective.sums` returns (sum, count) pairs, so
the notebooks' loop divides per batch and the distributed loop by the global counts; an empty pairing gives a
zero that still carries a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, NamedTuple

import torch

from uldviz.alignment.positions import offset_pairing, positional_pairing
from uldviz.maths.losses import cross_entropy, kl_divergence, uld_loss, uld_topk_from_teacher_topk

__all__ = [
    "Term",
    "TERMS",
    "LOSS_NAMES",
    "register",
    "PositionPairs",
    "GroupPairs",
    "CachedPairs",
    "StepSums",
    "Objective",
    "shuffle_rows",
    "check_loss_options",
]


# --------------------------------------------------------------------------- what a term compares
@dataclass
class PositionPairs:
    """Paired positions, flattened over the batch: row n compares ``student`` of sample ``sample`` with ``teacher``."""

    sample: torch.Tensor
    student: torch.Tensor
    teacher: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.sample.numel())

    def to(self, device) -> "PositionPairs":
        return PositionPairs(*(t.to(device) for t in (self.sample, self.student, self.teacher)))


@dataclass
class GroupPairs:
    """Span groups (:mod:`uldviz.alignment.spans`): student tokens ``[student_start, student_end)`` of ``sample``
    cover the same bytes as teacher tokens ``[teacher_start, teacher_end)``."""

    sample: torch.Tensor
    student_start: torch.Tensor
    student_end: torch.Tensor
    teacher_start: torch.Tensor
    teacher_end: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.sample.numel())

    def to(self, device) -> "GroupPairs":
        return GroupPairs(*(getattr(self, f.name).to(device) for f in fields(self)))


@dataclass
class CachedPairs:
    """Student positions with the teacher's cached top-k probabilities and tail mass (:mod:`uldviz.scale.cache`)."""

    sample: torch.Tensor
    student: torch.Tensor
    probs: torch.Tensor
    tail: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.sample.numel())

    def to(self, device) -> "CachedPairs":
        return CachedPairs(*(getattr(self, f.name).to(device) for f in fields(self)))


def _answer_positions(batch, alignment) -> PositionPairs:
    """The alignment's pairs whose student position predicts answer text, flattened in text order."""
    keep = alignment.mask & torch.gather(batch.student_answer, 1, alignment.student_index)
    sample = keep.nonzero(as_tuple=True)[0]
    return PositionPairs(sample, alignment.student_index[keep], alignment.teacher_index[keep])


def pair_positions(batch, how: str) -> PositionPairs:
    """Student/teacher position pairs of a batch by ``'offset'`` or ``'positional'`` pairing, answer positions only."""
    if how == "positional":
        al = positional_pairing(batch.student_answer, batch.teacher_answer, empty="zero")
    elif how == "offset":
        al = offset_pairing(batch.student_offsets, batch.teacher_offsets, batch.student_valid, batch.teacher_valid,
                            empty="zero")
    else:
        raise ValueError(f"align must be 'offset' or 'positional', got {how!r}")
    return _answer_positions(batch, al)


def pair_groups(batch, student_tokenizer, teacher_tokenizer) -> GroupPairs:
    """The batch's span groups (:func:`uldviz.alignment.text.align_batch`) whose first token is answer text."""
    from uldviz.alignment.text import align_batch

    sp = align_batch(batch, student_tokenizer, teacher_tokenizer, empty="zero")
    # student_answer[i] says token i+1 is answer text: position start - 1 predicts the group's first token
    keep = batch.student_answer.cpu()[sp.sample, sp.student_start - 1]
    return GroupPairs(*(t[keep] for t in (sp.sample, sp.student_start, sp.student_end, sp.teacher_start,
                                          sp.teacher_end)))


# --------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Term:
    """A distillation term D: how it pairs a batch, each side's rows, and the per-row divergence."""

    name: str
    help: str
    teacher: str  # "logits": a teacher model runs; "cache": targets from a teacher cache; "none": no D
    pair: Callable | None = None  # (batch, objective) -> pairs (on the batch's device)
    student_rows: Callable | None = None  # (student logits, batch, pairs, objective) -> rows
    teacher_rows: Callable | None = None  # (teacher logits or None, batch, pairs, objective) -> rows
    divergence: Callable | None = None  # (student rows, teacher rows, objective) -> (N,) values
    reads: tuple = ()  # the LossConfig fields the term reads besides lam, ce_weight, label_smoothing
    same_tokenizer: bool = False  # compares token i with token i (one vocabulary)
    shuffle: bool = True  # the shuffled-teacher control is defined for it


#: name -> :class:`Term`. Add a loss with :func:`register`; both loops and the protocol pick it up.
TERMS: dict[str, Term] = {}
#: Every option a term may read (the others must keep their default for it, see :func:`check_loss_options`).
_OPTIONAL = ("align", "shuffle_teacher", "student_temperature", "teacher_temperature", "top_k", "hybrid_weight",
             "divergence", "chunk_tau")


def register(term: Term) -> Term:
    """Add (or replace) a term in :data:`TERMS`; returns it."""
    TERMS[term.name] = term
    return term


def _at_positions(logits, batch, pairs, _obj):
    return logits[pairs.sample, pairs.student]


def _teacher_at_positions(logits, batch, pairs, _obj):
    return logits[pairs.sample, pairs.teacher]


def _uld(s_rows, t_rows, obj):
    c = obj.cfg
    return uld_loss(s_rows, t_rows, student_temperature=c.student_temperature,
                    teacher_temperature=c.teacher_temperature, top_k=c.top_k or None, reduction="none")


def _kl(s_rows, t_rows, obj):
    return kl_divergence(s_rows, t_rows, temperature=obj.cfg.teacher_temperature, reduction="none")


def _cached_targets(_logits, batch, pairs, _obj):
    return pairs.probs, pairs.tail


def _uld_from_cache(s_rows, t_rows, obj):
    probs, tail = t_rows
    return uld_topk_from_teacher_topk(s_rows, probs, tail, student_temperature=obj.cfg.student_temperature,
                                      reduction="none")


def _groups(batch, obj):
    return pair_groups(batch, obj.student_tokenizer, obj.teacher_tokenizer)


def _merged(side: str):
    def rows(logits, batch, groups, _obj):
        from uldviz.maths.identity import merged_group_logprobs

        return merged_group_logprobs(logits, getattr(batch, f"{side}_ids"), groups.sample,
                                     getattr(groups, f"{side}_start"), getattr(groups, f"{side}_end"))
    return rows


def _chunk_ll(side: str):
    def rows(logits, batch, groups, _obj):
        from uldviz.maths.identity import chunk_log_likelihoods

        return chunk_log_likelihoods(logits, getattr(batch, f"{side}_ids"), groups.sample,
                                     getattr(groups, f"{side}_start"), getattr(groups, f"{side}_end"))
    return rows


def _hybrid(s_rows, t_rows, obj):
    from uldviz.maths.identity import hybrid_uld_terms

    return hybrid_uld_terms(s_rows, t_rows, obj.shared_vocab, weight=obj.cfg.hybrid_weight,
                            divergence=obj.cfg.divergence).total


def _projected_kl(s_rows, t_rows, obj):
    from uldviz.maths.xtoken import projected_kl

    return projected_kl(s_rows, t_rows, obj.projection)


def _relaxed_hybrid(s_rows, t_rows, obj):
    from uldviz.maths.identity import hybrid_uld_terms

    weight = 0.5 if obj.cfg.hybrid_weight is None else obj.cfg.hybrid_weight  # X-Token's 1 : 1
    return hybrid_uld_terms(s_rows, t_rows, obj.matched_vocab, weight=weight, divergence=obj.cfg.divergence).total


def _chunk(s_rows, t_rows, obj):
    from uldviz.maths.identity import chunk_likelihood_loss

    return chunk_likelihood_loss(s_rows, t_rows, tau=obj.cfg.chunk_tau, reduction="none")


register(Term("ce", "cross-entropy only: no teacher (the control)", "none", shuffle=False))
register(Term("uld", "ULD (sorted L1 of the two softmaxes) on paired positions", "logits",
              lambda batch, obj: pair_positions(batch, obj.cfg.align), _at_positions, _teacher_at_positions, _uld,
              reads=("align", "shuffle_teacher", "student_temperature", "teacher_temperature", "top_k")))
register(Term("kl", "KL(teacher || student) position by position, one shared tokenizer only", "logits",
              lambda batch, obj: pair_positions(batch, "positional"), _at_positions, _teacher_at_positions, _kl,
              reads=("teacher_temperature",), same_tokenizer=True, shuffle=False))
register(Term("hybrid", "a divergence on shared token strings + sorted L1 on the rest, per span group (GOLD)",
              "logits", _groups, _merged("student"), _merged("teacher"), _hybrid,
              reads=("shuffle_teacher", "hybrid_weight", "divergence")))
register(Term("chunk", "likelihood of aligned text chunks, ALM's binarised divergence", "logits", _groups,
              _chunk_ll("student"), _chunk_ll("teacher"), _chunk, reads=("shuffle_teacher", "chunk_tau")))

register(Term("xtoken-pkl", "X-Token P-KL: KL(teacher || student projected through W), per span group", "logits",
              _groups, _merged("student"), _merged("teacher"), _projected_kl, reads=("shuffle_teacher",)))
register(Term("xtoken-hkl", "X-Token H-KL: the hybrid with its matched set read off W (relaxed matching)", "logits",
              _groups, _merged("student"), _merged("teacher"), _relaxed_hybrid,
              reads=("shuffle_teacher", "hybrid_weight", "divergence")))

#: The loss names every loop accepts (``uld-cache`` is ``uld`` trained from a teacher cache).
LOSS_NAMES = tuple(TERMS)
_CACHED = Term("uld-cache", "top-k ULD from a teacher cache (no teacher in memory)", "cache",
               lambda batch, obj: obj.cache.lookup(batch), _at_positions, _cached_targets, _uld_from_cache,
               reads=("align", "shuffle_teacher", "student_temperature", "teacher_temperature", "top_k"))


def check_loss_options(cfg) -> None:
    """Refuse an unknown loss, and an option set away from its default for a loss that would ignore it."""
    from uldviz.train.config import LossConfig

    if cfg.loss not in TERMS:
        raise ValueError(f"loss must be one of {', '.join(TERMS)}, got {cfg.loss!r}")
    term = TERMS[cfg.loss]
    defaults = {f.name: f.default for f in fields(LossConfig)}
    for name in _OPTIONAL:
        if name not in term.reads and getattr(cfg, name) != defaults[name]:
            what = "the shuffled-teacher control" if name == "shuffle_teacher" else f"{name} = {getattr(cfg, name)!r}"
            raise ValueError(f"loss {cfg.loss!r} does not use {what}; remove it (it would be silently ignored)")


# --------------------------------------------------------------------------- a step
class StepSums(NamedTuple):
    """A micro-batch's sums and counts: CE over answer tokens, D over the term's rows (divide by global counts)."""

    ce: torch.Tensor
    ce_count: int
    distill: torch.Tensor
    distill_count: int


def shuffle_rows(rows, generator: torch.Generator):
    """The shuffled-teacher control on a term's teacher rows (a tensor or a tuple of tensors with N rows each).

    One permutation drawn from ``generator`` (on the CPU, so a seed gives the same control on every device)
    reorders every tensor's first dimension; the multiset of rows is kept exactly.
    """
    first = rows[0] if isinstance(rows, tuple) else rows
    perm = torch.randperm(first.shape[0], generator=generator, device="cpu").to(first.device)
    return tuple(r[perm] for r in rows) if isinstance(rows, tuple) else rows[perm]


def _zero(s_logits: torch.Tensor) -> torch.Tensor:
    """A zero that keeps every parameter in the graph (distributed data parallel expects gradients for all)."""
    return s_logits.sum() * 0.0


class Objective:
    """A :class:`~uldviz.train.config.LossConfig` bound to a run: tokenizers, vocabulary sizes, cache, control seed.

    ``pair(batch)`` runs on the CPU batch before any forward pass; ``sums(student, teacher, batch, pairs)``
    runs both models on the device batch and returns :class:`StepSums`; ``loss(sums)`` is the per-batch
    objective. ``student_vocab`` / ``teacher_vocab`` cut the logits to the columns that are tokens (a head may
    have padding rows). The shuffled control draws from its own generator (seed ``2000 + seed``).
    """

    def __init__(self, cfg, student_tokenizer=None, teacher_tokenizer=None, *, student_vocab: int | None = None,
                 teacher_vocab: int | None = None, cache=None, seed: int | None = None):
        self.cfg = cfg
        self.student_tokenizer, self.teacher_tokenizer = student_tokenizer, teacher_tokenizer
        self.student_vocab, self.teacher_vocab, self.cache = student_vocab, teacher_vocab, cache
        if cache is not None and cfg.loss != "uld":
            raise ValueError(f"a teacher cache holds ULD's top-k targets: it trains loss 'uld', not {cfg.loss!r}")
        self.term = _CACHED if cache is not None else TERMS[cfg.loss]
        if cfg.shuffle_teacher and not self.term.shuffle:
            raise ValueError(f"the shuffled-teacher control is not defined for loss {cfg.loss!r}")
        seed = getattr(cfg, "seed", 0) if seed is None else seed
        self.generator = torch.Generator().manual_seed(2000 + seed) if cfg.shuffle_teacher else None
        self._shared = self._projection = self._matched = None

    @property
    def distills(self) -> bool:
        """Whether D takes part (a term other than CE, with λ > 0)."""
        return self.term.teacher != "none" and self.cfg.lam > 0

    @property
    def needs_teacher(self) -> bool:
        """Whether a teacher model must run each step (not for CE, λ = 0, or a teacher cache)."""
        return self.distills and self.term.teacher == "logits"

    @property
    def projection(self):
        """X-Token's W between the two tokenizers (:func:`uldviz.vocab.projection.build_projection`), built once."""
        if self._projection is None:
            from uldviz.vocab.projection import build_projection

            self._projection = build_projection(self.student_tokenizer, self.teacher_tokenizer)
        return self._projection

    @property
    def matched_vocab(self):
        """H-KL's matched set read off W (:func:`uldviz.maths.xtoken.matched_vocab`), built once."""
        if self._matched is None:
            from uldviz.maths.xtoken import matched_vocab

            self._matched = matched_vocab(self.projection)
        return self._matched

    @property
    def shared_vocab(self):
        """The strings both tokenizers share (:class:`uldviz.vocab.shared.SharedVocab`), built once."""
        if self._shared is None:
            from uldviz.vocab.shared import SharedVocab

            self._shared = SharedVocab.from_tokenizers(self.student_tokenizer, self.teacher_tokenizer)
        return self._shared

    def pair(self, batch):
        """The rows D compares in ``batch`` (None when D does not take part); call it on the CPU batch."""
        return self.term.pair(batch, self) if self.distills else None

    def counts(self, batch, pairs) -> tuple[int, int]:
        """(CE tokens, D rows) of a batch: what a distributed loop adds up across processes before dividing."""
        return int(batch.student_answer[:, :-1].sum()), (pairs.count if pairs is not None else 0)

    @staticmethod
    def logits(model, ids, valid, vocab: int | None) -> torch.Tensor:
        """A causal LM's logits on a padded batch, cut to the ``vocab`` columns that are tokens."""
        out = model(input_ids=ids, attention_mask=valid.long()).logits
        return out if vocab is None or vocab == out.shape[-1] else out[..., :vocab]

    def sums(self, student, teacher, batch, pairs) -> StepSums:
        """Both forward passes on the (device) batch and the step's sums; the teacher runs without gradient."""
        s_logits = self.logits(student, batch.student_ids, batch.student_valid, self.student_vocab)
        answer = batch.student_answer[:, :-1]
        n_ce = int(answer.sum())
        if n_ce:
            labels = batch.student_ids[:, 1:].masked_fill(~answer, -100)
            ce = cross_entropy(s_logits[:, :-1], labels, label_smoothing=self.cfg.label_smoothing, reduction="sum")
        else:
            ce = _zero(s_logits)
        if not self.distills:
            return StepSums(ce, n_ce, torch.zeros((), device=ce.device), 0)
        if pairs is None or pairs.count == 0:
            return StepSums(ce, n_ce, _zero(s_logits), 0)
        t_logits = None
        if self.term.teacher == "logits":
            if teacher is None:
                raise ValueError(f"loss {self.cfg.loss!r} needs a teacher model")
            with torch.no_grad():
                t_logits = self.logits(teacher, batch.teacher_ids, batch.teacher_valid, self.teacher_vocab)
        return StepSums(ce, n_ce, self.distill_sum(s_logits, t_logits, batch, pairs), pairs.count)

    def distill_sum(self, s_logits, t_logits, batch, pairs) -> torch.Tensor:
        r""":math:`\sum D` over the pairs, from both models' logits (the teacher's rows taken without gradient)."""
        s_rows = self.term.student_rows(s_logits, batch, pairs, self)
        with torch.no_grad():
            t_rows = self.term.teacher_rows(t_logits, batch, pairs, self)
            if self.generator is not None:
                t_rows = shuffle_rows(t_rows, self.generator)
        return self.term.divergence(s_rows, t_rows, self).sum()

    def loss(self, sums: StepSums, ce_count: int | None = None, distill_count: int | None = None) -> torch.Tensor:
        r""":math:`w_{CE}\,\Sigma\mathrm{CE}/N_{CE} + \lambda\,\Sigma D/N_D` (counts default to the batch's own)."""
        n_ce = sums.ce_count if ce_count is None else ce_count
        n_d = sums.distill_count if distill_count is None else distill_count
        return self.cfg.ce_weight * sums.ce / max(n_ce, 1) + self.cfg.lam * sums.distill / max(n_d, 1)
