r"""Losses that keep token identity across two tokenizers, computed over aligned groups (:mod:`uldviz.alignment.spans`).

ULD compares sorted probabilities, so it says how sure to be but never *which* token to prefer.
These losses compare what the two models say about the same text:

- :func:`chunk_log_likelihoods`: each model's log-likelihood of a group's text (chain rule over its
  own tokens), compared by :func:`chunk_likelihood_loss` (ALM; Minixhofer, Vulić, Ponti 2025);
- :func:`merged_group_logprobs`: GOLD's merged next-group distribution (TRL), compared by
  :func:`hybrid_uld_loss`: a divergence on the strings both vocabularies share
  (:class:`uldviz.vocab.shared.SharedVocab`) plus ULD's sorted L1 on the rest.

Conventions: logits (B, L, V) of rows ``[eos] + tokens``; the logits at position :math:`t` predict
token :math:`t+1`. A group is ``(sample, start, end)`` token indices, end-exclusive, ``start >= 1``.
The teacher is a constant target: no gradient flows to it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from uldviz.maths.checks import (
    PROB_FLOOR,
    check_mask,
    check_positive,
    compute_dtype,
    reduce_positions,
    validate_logits,
)
from uldviz.maths.losses import uld_distance
from uldviz.vocab.shared import SharedVocab

__all__ = [
    "token_logprobs",
    "chunk_log_likelihoods",
    "merged_group_logprobs",
    "generalized_kl",
    "generalized_jsd",
    "HybridTerms",
    "hybrid_uld_terms",
    "hybrid_uld_loss",
    "per_sample_mean",
    "gold_hybrid_loss",
    "log1mexp",
    "chunk_likelihood_loss",
    "ALM_TAU",
    "GOLD_BETA",
]

#: tokenkit's default binarisation temperature τ (``binarization_temp: float = 100.0`` in
#: scripts/cross_tokenizer_distill.py and every configs/*distill*.yaml).
ALM_TAU = 100.0
#: GOLD's default JSD interpolation β (``beta = 0.5`` in trl/experimental/gold/gold_config.py).
GOLD_BETA = 0.5


# --------------------------------------------------------------------------- checks
def _check_ids(ids, logits: torch.Tensor) -> torch.Tensor:
    """Token ids (B, L) matching logits (B, L, V), inside the vocabulary."""
    x = torch.as_tensor(ids, device=logits.device)
    if x.is_floating_point() or x.dtype == torch.bool:
        raise TypeError(f"ids must be integer token ids, got dtype {x.dtype}")
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (batch, length, vocab), got {tuple(logits.shape)}")
    if tuple(x.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"ids have shape {tuple(x.shape)} but logits have (batch, length) {tuple(logits.shape[:2])}")
    if int(x.min()) < 0 or int(x.max()) >= logits.shape[-1]:
        raise ValueError(f"ids contain values outside the vocabulary [0, {logits.shape[-1]})")
    return x.long()


def _check_groups(sample, start, end, batch: int, length: int, device) -> tuple[torch.Tensor, ...]:
    """Group index tensors: 1-D, same length G >= 1, inside the batch, 1 <= start < end <= length."""
    out = []
    for name, v in (("sample", sample), ("start", start), ("end", end)):
        t = torch.as_tensor(v, device=device)
        if t.numel() == 0:
            raise ValueError(f"no group given ({name} is empty, G = 0): there is nothing to compare")
        if t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer indices, got dtype {t.dtype}")
        if t.dim() != 1:
            raise ValueError(f"{name} must be 1-D (one entry per group), got shape {tuple(t.shape)}")
        out.append(t.long())
    s, a, b = out
    if not (s.numel() == a.numel() == b.numel()):
        raise ValueError(f"sample, start and end must have one entry per group, got {s.numel()}, {a.numel()}, "
                         f"{b.numel()}")
    if int(s.min()) < 0 or int(s.max()) >= batch:
        raise ValueError(f"sample indices must be in [0, {batch})")
    if int(a.min()) < 1:
        raise ValueError("every group must start at token index >= 1: the logits at start - 1 predict its first token")
    if bool((b <= a).any()):
        raise ValueError("every group must hold at least one token (end > start)")
    if int(b.max()) > length:
        raise ValueError(f"a group ends past the sequence length {length}")
    return s, a, b


def _check_logprobs(x, name: str) -> torch.Tensor:
    """(G, V) log-probabilities (possibly un-normalised, e.g. merged): no NaN or +inf, none above 0."""
    x = validate_logits(x, name)
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (groups, vocab), got {tuple(x.shape)}")
    if bool((x > 1e-4).any()):
        raise ValueError(f"{name} has values above 0: they are not log-probabilities (pass log-softmax outputs)")
    return x


# --------------------------------------------------------------------------- token and chunk log-likelihoods
def token_logprobs(logits, ids) -> torch.Tensor:
    r"""(B, L): :math:`\ell_{b,t} = \log \mathrm{softmax}(z_{b,t-1})_{x_{b,t}}` for :math:`t \ge 1`, 0 at :math:`t = 0`.

    Computed as :math:`z_{b,t-1,x_{b,t}} - \operatorname{logsumexp}(z_{b,t-1})` in float32 at least,
    without materialising the full log-softmax.
    """
    z = validate_logits(logits, "logits")
    return _token_logprobs(z, _check_ids(ids, z))


def _token_logprobs(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """:func:`token_logprobs` on logits and ids already checked (one validation pass per call site)."""
    z = z.to(compute_dtype(z))
    prev = z[:, :-1]
    picked = prev.gather(-1, x[:, 1:, None]).squeeze(-1) - torch.logsumexp(prev, dim=-1)
    return torch.nn.functional.pad(picked, (1, 0))


def _group_mask(start: torch.Tensor, end: torch.Tensor, length: int) -> torch.Tensor:
    """(G, L) bool: True at the token positions start..end-1 of each group."""
    t = torch.arange(length, device=start.device)
    return (t >= start[:, None]) & (t < end[:, None])


def chunk_log_likelihoods(logits, ids, sample, start, end) -> torch.Tensor:
    r"""(G,): each group's log-likelihood under one model, by the chain rule over its own tokens.

    .. math:: \log p(\text{chunk}_g) = \sum_{t=\mathrm{start}_g}^{\mathrm{end}_g - 1} \ell_{\mathrm{sample}_g,\,t}

    with :math:`\ell` from :func:`token_logprobs`. The student and the teacher each sum their own
    tokens of the same text, so the two values are directly comparable.
    """
    lp = token_logprobs(logits, ids)
    s, a, b = _check_groups(sample, start, end, lp.shape[0], lp.shape[1], lp.device)
    rows = lp[s]
    return torch.where(_group_mask(a, b, lp.shape[1]), rows, torch.zeros_like(rows)).sum(-1)


def merged_group_logprobs(logits, ids, sample, start, end, *, anchor: str = "first",
                          factor_floor: float | None = None) -> torch.Tensor:
    r"""(G, V): GOLD's merged distribution of a group, in log space and not renormalised.

    ``anchor='first'`` (GOLD's "observed" merge): the distribution that predicts the group's first
    token, times the probabilities of the group's later actual tokens,

    .. math:: \log \tilde p_g(y) = \log p(y \mid x_{<s}) + \sum_{t=s+1}^{e-1} \ell_t ,

    so :math:`\tilde p_g(x_s)` is the group's chunk likelihood and other :math:`y` are scaled alike.
    ``anchor='last'`` (GOLD's "bayesian" merge): the distribution that predicts the group's last
    token, times the probabilities of its earlier actual tokens,
    :math:`\log p(y \mid x_{<e-1}) + \sum_{t=s}^{e-2} \ell_t`.

    Checked against TRL (huggingface/trl, trl/experimental/gold/gold_trainer.py,
    ``ULDLoss._merge_probabilities_with_alignment_groups``, snapshot f2cd577 of 2026-07-24). Where
    this differs: TRL's default "observed" path slices the logits AT the answer tokens (position
    :math:`t` predicts :math:`t+1`) and reads ``probs[idx, token_ids[idx]]``, i.e. each distribution
    one position later than the token it is evaluated on; its "bayesian" path shifts by one, as
    here. Both anchors here use the causal shift. TRL multiplies probabilities with a floor of
    1e-8 per factor; this sums log-probabilities exactly, unless ``factor_floor`` (e.g. 1e-8) asks for TRL's.
    """
    if anchor not in ("first", "last"):
        raise ValueError(f"anchor must be 'first' or 'last', got {anchor!r}")
    z = validate_logits(logits, "logits")
    lp = _token_logprobs(z, _check_ids(ids, z))
    s, a, b = _check_groups(sample, start, end, lp.shape[0], lp.shape[1], lp.device)
    z = z.to(compute_dtype(z))
    rows = lp[s]
    if anchor == "first":
        pos, inside = a - 1, _group_mask(a + 1, b, lp.shape[1])
    else:
        pos, inside = b - 2, _group_mask(a, b - 1, lp.shape[1])
    if factor_floor is not None:
        rows = rows.clamp_min(math.log(factor_floor))
    scalar = torch.where(inside, rows, torch.zeros_like(rows)).sum(-1)
    return torch.log_softmax(z[s, pos], dim=-1) + scalar[:, None]


# --------------------------------------------------------------------------- hybrid ULD
def _zero_prob_floor(log_x: torch.Tensor) -> torch.Tensor:
    r"""``log_x`` with :math:`-\infty` (probability exactly 0, e.g. a masked logit) read as :math:`\log 10^{-8}`.

    Used only where the exact divergence would be infinite; every finite value and its gradient is untouched,
    and the floored entries carry no gradient (a masked logit has none to give).
    """
    return torch.where(torch.isneginf(log_x), torch.full_like(log_x, math.log(PROB_FLOOR)), log_x)


def generalized_kl(*, student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor) -> torch.Tensor:
    r"""Generalised KL of the teacher's vector p from the student's q, per row (un-normalised vectors welcome):

    .. math:: D(p \,\|\, q) = \sum_i p_i \log\frac{p_i}{q_i} - p_i + q_i

    It is :math:`\ge 0`, zero only at :math:`p = q`, and equals :math:`\mathrm{KL}(p\,\|\,q)` when both sum to 1.
    Terms with :math:`p_i = 0` contribute :math:`q_i` (no 0 · log 0 NaN). Where the student gives probability
    exactly 0 (a masked logit, :math:`-\infty`) to a string the teacher gives mass, the exact value is
    :math:`+\infty`; it reads :math:`q_i = 10^{-8}` there instead (TRL's floor), finite values are exact.
    Keyword-only, (student, teacher): the two would be easy to swap. The teacher is the target: no gradient reaches it.
    """
    log_p, log_q = teacher_logprobs, student_logprobs
    with torch.no_grad():  # the teacher's part: sum p log p - p (x log x = 0 at x = 0)
        p = log_p.exp()
        teacher_part = (torch.special.xlogy(p, p) - p).sum(-1)
    return teacher_part + (log_q.exp() - p * _zero_prob_floor(log_q)).sum(-1)


def _finite_or_zero(log_x: torch.Tensor) -> torch.Tensor:
    """``log_x`` with its -inf entries (probability 0) read as 0: times that probability they give 0, not NaN."""
    return torch.where(torch.isneginf(log_x), torch.zeros_like(log_x), log_x)


def generalized_jsd(*, student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor, beta: float = GOLD_BETA,
                    floor: float | None = None) -> torch.Tensor:
    r"""GOLD's generalised Jensen-Shannon divergence per row, with :math:`m = \beta p + (1-\beta) q` (p the teacher's):

    .. math:: \mathrm{JSD}_\beta = \beta \sum_i p_i \log\frac{p_i}{m_i} + (1-\beta) \sum_i q_i \log\frac{q_i}{m_i}

    (TRL's ``GOLDTrainer.generalized_jsd_loss``; β = 0.5 is the symmetric JSD). On un-normalised vectors it needs
    no extra :math:`-p+q` terms: those of the two KLs cancel. It is finite whatever the inputs; entries where both
    are exactly 0 (masked logits on both sides) contribute 0 and no gradient. ``floor`` reproduces TRL's
    convention, which replaces both vectors by :math:`\max(\cdot, 10^{-8})` (masses as well as logs).
    """
    beta = float(beta)
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1) (0 and 1 are the two KLs), got {beta}")
    log_p, log_q = teacher_logprobs, student_logprobs
    if floor is not None:
        log_p, log_q = (x.clamp_min(math.log(floor)) for x in (log_p, log_q))
    p, q = log_p.exp(), log_q.exp()
    # log m with m = beta p + (1 - beta) q, in few passes (the cost is in these (groups, |S|) tensors); where both
    # are 0, m is read as the smallest normal number: its terms are 0 times a finite log, value and gradient 0
    log_m = torch.log((beta * p + (1 - beta) * q).clamp_min(torch.finfo(p.dtype).tiny))
    return (beta * (p * (_finite_or_zero(log_p) - log_m)) + (1 - beta) * (q * (_finite_or_zero(log_q) - log_m))).sum(-1)


class HybridTerms(NamedTuple):
    """Per-group parts of :func:`hybrid_uld_loss`: ``shared`` divergence, ``unshared`` sorted L1, the ``weight`` w."""

    shared: torch.Tensor
    unshared: torch.Tensor
    weight: float

    @property
    def total(self) -> torch.Tensor:
        r"""The per-group hybrid loss :math:`w\,D + (1-w)\,\mathrm{ULD}`."""
        return self.weight * self.shared + (1 - self.weight) * self.unshared


def hybrid_uld_terms(student_logprobs, teacher_logprobs, shared: SharedVocab, *, weight=None,
                     divergence: str = "gkl", beta: float = GOLD_BETA, floor: float | None = None,
                     empty_side: str = "mass") -> HybridTerms:
    r"""The two per-group parts of :func:`hybrid_uld_loss` and the weight w (see there).

    ``floor`` (JSD only) and ``empty_side="zero"`` are TRL GOLD's conventions (:func:`gold_hybrid_loss`).
    """
    if empty_side not in ("mass", "zero"):
        raise ValueError(f"empty_side must be 'mass' (the kit's) or 'zero' (TRL's), got {empty_side!r}")
    if not isinstance(shared, SharedVocab):
        raise TypeError(f"shared must be a uldviz.vocab.shared.SharedVocab, got {type(shared).__name__}")
    if divergence not in ("gkl", "jsd"):
        raise ValueError(f"divergence must be 'gkl' (generalised KL) or 'jsd' (GOLD's), got {divergence!r}")
    s = _check_logprobs(student_logprobs, "student_logprobs")
    t = _check_logprobs(teacher_logprobs, "teacher_logprobs")
    if s.shape[:-1] != t.shape[:-1]:
        raise ValueError(f"student_logprobs {tuple(s.shape)} and teacher_logprobs {tuple(t.shape)} must have the "
                         "same groups (all dimensions but the last)")
    vs, vt = s.shape[-1], t.shape[-1]
    if len(shared) and (int(shared.student_ids.max()) >= vs or int(shared.teacher_ids.max()) >= vt):
        raise ValueError(f"the shared vocabulary has ids past these logprobs' vocabularies (student {vs}, teacher "
                         f"{vt}): was it built for other tokenizers?")
    if weight is None:
        w = len(shared) / vt  # GOLD: matched count / teacher vocabulary (the logits' width)
    else:
        w = float(weight)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {weight!r}")
    dtype = torch.promote_types(compute_dtype(s), compute_dtype(t))
    s, t = s.to(dtype), t.detach().to(dtype)
    if len(shared):
        ls, lt = s[..., shared.shared_ids("student", s.device)], t[..., shared.shared_ids("teacher", t.device)]
        div = (generalized_kl(student_logprobs=ls, teacher_logprobs=lt) if divergence == "gkl"
               else generalized_jsd(student_logprobs=ls, teacher_logprobs=lt, beta=beta, floor=floor))
    else:
        div = s.new_zeros(s.shape[:-1])
    q = s[..., shared.unshared_ids("student", vs, s.device)].exp()
    p = t[..., shared.unshared_ids("teacher", vt, t.device)].exp()
    if q.shape[-1] and p.shape[-1]:
        rest = uld_distance(q, p)
    elif empty_side == "zero":  # TRL: no unmatched term when one side has no unmatched id
        rest = s.new_zeros(s.shape[:-1])
    else:  # one side has no unshared token: sorted L1 against zero padding is the other side's mass
        rest = q.sum(-1) + p.sum(-1)
    return HybridTerms(div, rest, w)


def hybrid_uld_loss(student_logprobs, teacher_logprobs, shared: SharedVocab, *, weight=None, divergence: str = "gkl",
                    beta: float = GOLD_BETA, mask=None, reduction: str = "mean") -> torch.Tensor:
    r"""Hybrid ULD (GOLD): a divergence on the shared strings plus ULD's sorted L1 on the rest, per group.

    With :math:`S` the shared strings (the k-th has student id :math:`i_k` and teacher id :math:`j_k`),
    :math:`p` the teacher's and :math:`q` the student's (possibly un-normalised) probabilities, and
    :math:`\bar\imath`, :math:`\bar\jmath` the ids outside :math:`S` (notation: :mod:`uldviz.course.notation`):

    .. math:: \mathcal L_g = w\, D\big(p_{j(S)} \,\|\, q_{i(S)}\big)
              + (1-w)\, \mathrm{ULD}\big(p_{\bar\jmath},\, q_{\bar\imath}\big),
              \qquad w = \frac{|S|}{|V_T|}\ \text{(GOLD's default)}

    ``divergence='gkl'`` (default) is the generalised KL :math:`\sum p\log\frac pq - p + q`; ``'jsd'``
    is GOLD's generalised JSD with ``beta`` (0.5). The default is the generalised KL because, with
    one vocabulary, it is exactly the KL of ordinary distillation (the kit's same-tokenizer
    reference), so the hybrid runs from ULD (nothing shared) to KD (everything shared); it stays
    a divergence on the un-normalised sub-vectors, and where the student gives a shared string far
    too little mass its gradient in that logit stays near :math:`-p_i` (JSD's, :math:`(1-\beta)\,
    q_i \log(q_i/m_i)`, goes to 0). The weight ``w`` divides by the teacher's vocabulary (the logits'
    width), as TRL does (``matched_token_count / teacher_vocab_size`` in
    ``ULDLoss._compute_hybrid_uld_loss``); ``weight=`` overrides it. Unlike TRL, which matches raw
    token strings (so 'Ġthe' never meets '▁the'), :class:`SharedVocab` matches surface strings.
    ULD's part reuses :func:`uldviz.maths.losses.uld_distance`; where one side has no unshared token, it is
    the other side's remaining mass (zero padding; TRL sets it to 0). Gradients reach the student only.
    """
    terms = hybrid_uld_terms(student_logprobs, teacher_logprobs, shared, weight=weight, divergence=divergence,
                             beta=beta)
    per_group = terms.total
    m = check_mask(mask, per_group.shape, per_group.device)
    return reduce_positions(per_group, m, reduction)


def per_sample_mean(values: torch.Tensor, sample: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Mean of ``values`` within each sample, then over the ``batch_size`` samples (a sample without any counts 0).

    TRL's reduction; the kit's ``reduction="mean"`` pools every group of the batch instead, which weighs a
    sample by its number of groups (they differ on ragged batches).
    """
    s = torch.as_tensor(sample, device=values.device).long()
    sums = torch.zeros(batch_size, dtype=values.dtype, device=values.device).index_add(0, s, values)
    counts = torch.zeros(batch_size, dtype=values.dtype, device=values.device).index_add(
        0, s, torch.ones_like(values))
    return (sums / counts.clamp_min(1)).mean()


def gold_hybrid_loss(student_logprobs, teacher_logprobs, shared: SharedVocab, sample, batch_size: int, *,
                     beta: float = GOLD_BETA, weight=None) -> torch.Tensor:
    r"""The hybrid loss exactly as TRL 1.16's GOLD ``ULDLoss`` computes it (the kit's parity setting).

    Give it merged rows made as TRL merges them (:func:`merged_group_logprobs` with ``factor_floor=1e-8``;
    ``anchor="last"`` for TRL's "bayesian", ``"first"`` for "observed" on logits shifted by one row) and a
    raw-string map (``SharedVocab.from_tokenizers(..., match="raw")``). Then: JSD with β on both vectors floored
    at :math:`10^{-8}`, sorted L1 on the rest (0 where a side has no unmatched id), weights
    :math:`w = |S|/|V_T|`, mean over groups within a sample, then over the ``batch_size`` samples.
    """
    terms = hybrid_uld_terms(student_logprobs, teacher_logprobs, shared, weight=weight, divergence="jsd", beta=beta,
                             floor=PROB_FLOOR, empty_side="zero")
    return per_sample_mean(terms.total, sample, batch_size)


# --------------------------------------------------------------------------- chunk likelihood (ALM)
def log1mexp(x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log(1 - e^{x})` for :math:`x \le 0`, stable at both ends.

    ``log(-expm1(x))`` above :math:`-\log 2`, ``log1p(-exp(x))`` below (Mächler 2012); each branch
    only sees inputs it is safe on, so neither pass makes a NaN.
    """
    near = x > -math.log(2.0)
    a = torch.log(-torch.expm1(torch.where(near, x, torch.full_like(x, -1.0))))
    b = torch.log1p(-torch.exp(torch.where(near, torch.full_like(x, -1.0), x)))
    return torch.where(near, a, b)


def _check_ll(x, name: str) -> torch.Tensor:
    """Chunk log-likelihoods: 1-D float, finite, not above 0 (tiny rounding above 0 is clipped)."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x, dtype=torch.float64)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point log-likelihoods, got dtype {x.dtype}")
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one value per group), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: no group to compare")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contain NaN or inf: a chunk log-likelihood must be a finite number <= 0")
    if bool((x > 1e-4).any()):
        raise ValueError(f"{name} has values above 0: a log-likelihood is <= 0")
    return x.clamp(max=0.0)


def chunk_likelihood_loss(student_ll, teacher_ll, *, tau: float = ALM_TAU, eps: float = 1e-6, mask=None,
                          reduction: str = "mean") -> torch.Tensor:
    r"""ALM's binarised f-divergence of chunk likelihoods: the BCE of :math:`q(g)^{1/\tau}` against
    :math:`p(g)^{1/\tau}`.

    With :math:`p(g)`, :math:`q(g)` the teacher's and the student's likelihood of group :math:`g`,
    :math:`a = \log p(g)/\tau - \mathtt{eps}` and :math:`b = \log q(g)/\tau - \mathtt{eps}`,

    .. math:: \mathcal L_g = -\big[e^{a}\, b + (1 - e^{a}) \log(1 - e^{b})\big],

    computed in log space (:func:`log1mexp`). It is the binary KL :math:`\mathrm{KL}(\mathrm{Bern}(e^a)
    \,\|\, \mathrm{Bern}(e^b))` plus the teacher's binary entropy (a constant), so its gradient is
    the binary KL's. The temperature τ flattens chunk likelihoods (a 5-token chunk of probability
    1e-4 becomes :math:`0.91`) so long chunks still carry a gradient.

    Checked against tokenkit (bminixhofer/tokenkit, tokenkit/training/losses.py, ``compute_alm_loss``
    with ``alm_diff_fn="binary_ce"``, snapshot bcacdef of 2025-07-06): BCE, not binary KL; both log
    values divided by ``binarization_temp`` (default 100.0 in scripts/cross_tokenizer_distill.py and
    the distillation configs) and shifted by ``eps`` = 1e-6 so that :math:`\log(1-e^b)`
    stays finite; chunk log-probabilities clipped to at most 0; averaged over chunks
    (``chunk_count`` numerator and denominator). Not reproduced here: tokenkit's optional
    ``append_space`` / space-probability terms at chunk ends and its "unbiased" chunk selection.
    """
    s = _check_ll(student_ll, "student_ll")
    t = _check_ll(teacher_ll, "teacher_ll")
    if s.shape != t.shape:
        raise ValueError(f"student_ll {tuple(s.shape)} and teacher_ll {tuple(t.shape)} must have one value per group")
    tau_f = check_positive(tau, "tau")
    eps_f = float(eps)
    if not (eps_f >= 0 and math.isfinite(eps_f)):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if eps_f == 0 and bool((s == 0).any()):
        raise ValueError("with eps=0 a student chunk of probability 1 (log-likelihood 0) makes log(1 - p) = -inf: "
                         "use eps > 0 (tokenkit's 1e-6)")
    dtype = torch.promote_types(compute_dtype(s), compute_dtype(t))
    a = t.detach().to(dtype) / tau_f - eps_f
    b = s.to(dtype) / tau_f - eps_f
    pa = a.exp()
    one_minus = -torch.expm1(a)
    tail = torch.where(one_minus > 0, one_minus * log1mexp(b), torch.zeros_like(b))
    per_group = -(pa * b + tail)
    m = check_mask(mask, per_group.shape, per_group.device)
    return reduce_positions(per_group, m, reduction)
