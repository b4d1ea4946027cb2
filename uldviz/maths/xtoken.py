r"""X-Token's losses (Turuvekere Sreenivas et al., 2026, arXiv 2605.21699): a projection instead of a partition.

GOLD's hybrid splits the vocabularies into exactly matched strings and the rest. When the two tokenizers cut
some text differently — a student that keeps "201" whole, a teacher that writes "2", "0", "1" — the whole family
of such tokens falls into the unmatched set, and the matched divergence pulls the student's mass towards "2".
X-Token instead maps every student token to teacher tokens with a sparse row-stochastic matrix
:math:`W \in \mathbb R_{\ge 0}^{|V_S|\times|V_T|}` built from string rules (:mod:`uldviz.vocab.projection`):

- **P-KL** (no partition): the student's distribution seen through W, compared with the teacher's by KL,

  .. math:: \mathrm{P\text{-}KL} = \mathrm{KL}\Big(p \,\Big\|\, \frac{W^\top q}{\mathbf 1^\top W^\top q}\Big)

  with p the teacher's and q the student's distribution;

- **H-KL** (relaxed matching): the hybrid form, with the matched set :math:`M` taken from W — each student
  token paired with its top teacher token :math:`\arg\max_t W_{s,t}` when that weight is at least 0.6 (a teacher
  token claimed twice goes to the larger weight, then the lower student id), :func:`matched_vocab`.

Both are computed per span group (:mod:`uldviz.alignment.spans`) on the distributions that predict the group's
first token, the same anchor as the kit's hybrid. X-Token's released code (NeMo RL; the TRL pull request)
averages the distributions over a chunk's positions instead, and keeps the teacher's top-8,192 tokens; the kit's
vocabularies are small enough to keep all. A teacher token no student token maps to gets
:math:`W^\top q = 0`: KL is then infinite, and the kit floors the projected probability at :data:`PROB_FLOOR`
(:math:`\log \max(\hat q, 10^{-8})`, TRL's floor), which departs from the exact value only where the exact value
is infinite (a teacher token that no student token maps to, or that the student gives probability exactly 0).
"""

from __future__ import annotations

import math

import torch

from uldviz.maths.checks import PROB_FLOOR, compute_dtype, validate_logits
from uldviz.vocab.projection import Projection
from uldviz.vocab.shared import SharedVocab

__all__ = ["PROB_FLOOR", "MATCH_THRESHOLD", "projected_kl", "matched_vocab", "logit_gradients"]

#: H-KL's matched set keeps a student token whose top weight under W is at least this (X-Token's reference code).
MATCH_THRESHOLD = 0.6


def projected_kl(student_logprobs, teacher_logprobs, projection: Projection, *, floor: float = PROB_FLOOR
                 ) -> torch.Tensor:
    r"""P-KL per row: :math:`\mathrm{KL}(p \,\|\, \widehat{W^\top q})` with the projection renormalised.

    ``student_logprobs`` (N, V_S) and ``teacher_logprobs`` (N, V_T) are log-distributions of the same rows
    (e.g. the distributions that predict each span group's first token; a constant added to a row — GOLD's merge
    factor — cancels in the renormalisation). A projected probability of exactly 0 is read as ``floor`` inside the
    log (see the module docstring); every positive one is exact. Gradients reach the student only.
    """
    s = validate_logits(student_logprobs, "student_logprobs")
    t = validate_logits(teacher_logprobs, "teacher_logprobs")
    if s.shape[:-1] != t.shape[:-1] or s.dim() != 2:
        raise ValueError(f"student_logprobs {tuple(s.shape)} and teacher_logprobs {tuple(t.shape)} must be (rows, V) "
                         "with the same rows")
    if (s.shape[-1], t.shape[-1]) != (projection.student_size, projection.teacher_size):
        raise ValueError(f"W is {projection.student_size} x {projection.teacher_size} but the rows have vocabularies "
                         f"{s.shape[-1]} (student) and {t.shape[-1]} (teacher): was it built for other tokenizers?")
    if not 0 < floor < 1:
        raise ValueError(f"floor must be in (0, 1), got {floor}")
    dtype = torch.promote_types(compute_dtype(s), compute_dtype(t))
    q = projection.project(torch.softmax(s.to(dtype), dim=-1))
    # KL(p || q/Z) = sum p log p - sum p log q + log Z (sum p = 1); a projected 0 reads as floor * Z, so its
    # log-ratio is log(floor). Written with few passes over the (rows, V_T) tensors: they dominate the cost.
    z = q.sum(-1, keepdim=True).clamp_min(floor)
    log_q = torch.log(torch.where(q > 0, q, floor * z))
    with torch.no_grad():
        log_t = torch.log_softmax(t.detach().to(dtype), dim=-1)
        p_t = log_t.exp()
        neg_entropy = torch.special.xlogy(p_t, p_t).sum(-1)
    return neg_entropy - (p_t * log_q).sum(-1) + torch.log(z.squeeze(-1)) * p_t.sum(-1)


def matched_vocab(projection: Projection, *, threshold: float = MATCH_THRESHOLD) -> SharedVocab:
    """H-KL's matched set M from W: each student token with its top teacher token if that weight >= ``threshold``.

    A teacher token claimed by several student tokens goes to the largest weight, ties to the lowest student id,
    so C is one-to-one (a :class:`~uldviz.vocab.shared.SharedVocab` with ``match="projection"`` strings
    ``"s->t"``), ready for the hybrid loss.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    best: dict[int, tuple[float, int]] = {}  # student -> (weight, teacher)
    for s, t, w in zip(projection.student.tolist(), projection.teacher.tolist(), projection.weight.tolist()):
        if w >= threshold - 1e-9 and (s not in best or w > best[s][0] or (w == best[s][0] and t < best[s][1])):
            best[s] = (w, t)
    owner: dict[int, tuple[float, int]] = {}  # teacher -> (weight, student)
    for s, (w, t) in best.items():
        cur = owner.get(t)
        if cur is None or w > cur[0] + 1e-12 or (math.isclose(w, cur[0], abs_tol=1e-12) and s < cur[1]):
            owner[t] = (w, s)
    teachers = sorted(owner)
    cpu = dict(dtype=torch.long, device="cpu")  # an index map, kept on the CPU like SharedVocab's
    return SharedVocab(torch.tensor([owner[t][1] for t in teachers], **cpu), torch.tensor(teachers, **cpu),
                       [f"{owner[t][1]}->{t}" for t in teachers], projection.student_size, projection.teacher_size,
                       match="projection")


def logit_gradients(student_logits, teacher_logits, projection: Projection, exact: SharedVocab) -> dict:
    r"""The gradient of each loss with respect to the student's logits, one row each: where does each push?

    ``"hybrid (exact partition)"``: the kit's hybrid on the exactly matched strings ``exact`` (GOLD's partition,
    default weight); ``"P-KL"``: :func:`projected_kl` through W; ``"H-KL"``: the hybrid on the matches read off W
    (:func:`matched_vocab`), weighted 1 : 1 as X-Token does. A positive entry means gradient descent lowers that
    logit. Rows of log-probabilities or logits (N, V); returns {name: (N, V_S) tensor} in float64.
    """
    from uldviz.maths.identity import hybrid_uld_terms

    z_t = torch.log_softmax(torch.as_tensor(teacher_logits, dtype=torch.float64).detach(), -1)
    out = {}
    losses = {
        "hybrid (exact partition)": lambda ls: hybrid_uld_terms(ls, z_t, exact).total,
        "P-KL": lambda ls: projected_kl(ls, z_t, projection),
        "H-KL": lambda ls: hybrid_uld_terms(ls, z_t, matched_vocab(projection), weight=0.5).total,
    }
    for name, loss in losses.items():
        z_s = torch.as_tensor(student_logits, dtype=torch.float64).detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(torch.log_softmax(z_s, -1)).sum(), z_s)
        out[name] = grad
    return out
