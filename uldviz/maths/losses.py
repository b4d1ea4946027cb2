"""Distillation losses: KL on one vocabulary, and the Universal Logit Distillation (ULD) loss.

Pure torch functions, no plotting; importing this module needs only torch and numpy. Every public
function validates its input and raises a ``ValueError``/``TypeError`` that names the problem instead
of returning a silent NaN (under ``torch.compile`` the checks on values raise a ``RuntimeError`` with
the same message, through ``torch._assert_async``).

Conventions (used across the kit):
- argument order is (student, teacher), like torch's (input, target);
- logits have shape ``(..., V)``: any leading "position" dimensions, the vocabulary last;
- student and teacher logits passed to a loss are *already paired* position by position
  (see :mod:`uldviz.alignment.positions`), so their leading shapes must match, their vocabularies need not,
  and they must lie on one device;
- ``mask`` is a boolean tensor of the leading shape: ``True`` marks a position that counts;
- ``reduction`` of the distribution losses (KL, ULD) in torch's words: ``'mean'`` (the default) is
  the per-position sum over the vocabulary averaged over the (masked) positions, which torch's
  ``F.kl_div`` calls ``'batchmean'`` (accepted here as a synonym); ``'sum'`` adds the positions;
  ``'none'`` returns one value per position (masked ones 0). torch's own ``'mean'`` for ``kl_div``
  (dividing by positions x vocabulary as well) is not offered: it is not a divergence per position;
- ``top_k`` is the name of the top-k parameter everywhere.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from uldviz.maths._sorted_l1 import sorted_l1, sorted_l1_topk
from uldviz.maths.checks import (
    as_float_tensor,
    as_pair,
    check_device,
    check_mask,
    check_positive,
    check_probs,
    check_reduction,
    checked_pair,
    compute_dtype,
    reduce_positions,
    validate_logits,
    validate_pair,
)

__all__ = [
    "softmax_probs",
    "kl_divergence",
    "naive_kl_div",
    "forced_kl_div",
    "sorted_padded",
    "uld_reference",
    "uld_distance",
    "uld_topk_distance",
    "shuffled_distances",
    "uld_loss",
    "cross_entropy",
    "uld_topk_from_teacher_topk",
    "temperature_curve",
    "large_temperature_limit",
    "PAPER_LAMBDA",
]

#: The weight of the ULD term in the paper (Boizard et al., 2024): loss = CE + 1.5 * ULD.
PAPER_LAMBDA = 1.5



# --------------------------------------------------------------------------- softmax
def softmax_probs(logits, temperature: float = 1.0, name: str = "logits") -> torch.Tensor:
    """Softmax of ``logits / temperature`` over the last dimension, computed in float32 at least.

    fp16/bf16 logits are promoted first: a half-precision softmax loses about 1e-3 relative
    accuracy, and ULD sums thousands of such values.
    """
    x = validate_logits(logits, name)
    t = check_positive(temperature, f"{name} temperature")
    return torch.softmax(x.to(compute_dtype(x)) / t, dim=-1)


# --------------------------------------------------------------------------- KL
def kl_divergence(
    student_logits,
    teacher_logits,
    *,
    temperature: float = 1.0,
    mask=None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Ordinary distillation loss :math:`\mathrm{KL}(p \,\|\, q)` (teacher p, student q) on ONE vocabulary.

    Summed over the vocabulary, averaged over (masked) positions (``reduction='mean'``, torch's
    ``'batchmean'``; see the module's conventions). Different vocabulary sizes raise a ``ValueError``
    that names both sizes: KL compares token i with token i, which only means something when both
    models share the tokenizer. Use :func:`uld_loss` instead.
    """
    check_reduction(reduction)
    s, t = validate_pair(student_logits, teacher_logits)
    if s.shape[-1] != t.shape[-1]:
        raise ValueError(
            f"KL divergence needs one shared vocabulary, but the student has {s.shape[-1]} tokens and "
            f"the teacher {t.shape[-1]}. KL compares the probability of the same token on both sides; "
            "with different tokenizers use the ULD loss (uldviz.maths.losses.uld_loss), which needs no shared "
            "vocabulary."
        )
    temp = check_positive(temperature, "temperature")
    m = check_mask(mask, s.shape[:-1], s.device)
    dtype = torch.promote_types(compute_dtype(s), compute_dtype(t))
    log_q = torch.log_softmax(s.to(dtype) / temp, dim=-1)
    log_p = torch.log_softmax(t.to(dtype) / temp, dim=-1)
    p = log_p.exp()
    # xlogy-style: terms with p = 0 contribute exactly 0, even where log q = -inf.
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return reduce_positions(terms.sum(-1), m, reduction)


def naive_kl_div(student_probs, teacher_probs) -> torch.Tensor:
    """DEMO ONLY: exactly what naive code gets from ``F.kl_div(log q, p, reduction='sum')``, q the student's.

    No value checks on purpose, so notebook 01 can show the real failure: +inf where the teacher has
    mass on a token the student gives probability 0, NaN where both are 0 (0 * -inf), and a
    broadcasting error from deep inside torch when the sizes differ. (Two devices are still refused
    by name: that failure teaches nothing.)
    """
    q = torch.as_tensor(student_probs, dtype=torch.float64)
    p = torch.as_tensor(teacher_probs, dtype=torch.float64)
    check_device(q, p, "student_probs", "teacher_probs")
    return F.kl_div(q.log(), p, reduction="sum")


def forced_kl_div(student_logits, teacher_logits, how: str = "truncate") -> torch.Tensor:
    """DEMO ONLY: KL after forcing two different vocabularies to one size, as naive code does.

    ``how='truncate'`` cuts the larger vocabulary to the smaller size (dropping tokens and their
    mass, then renormalising); ``how='pad'`` appends very negative logits to the smaller one.
    Either way token i of the student is compared with token i of the teacher although they are
    unrelated strings: the number is finite and meaningless.
    """
    s, t = as_pair(student_logits, teacher_logits, "student_logits", "teacher_logits")
    s = validate_logits(s, "student_logits").to(torch.float64)
    t = validate_logits(t, "teacher_logits").to(torch.float64)
    n, m = t.shape[-1], s.shape[-1]
    if how == "truncate":
        k = min(n, m)
        t, s = t[..., :k], s[..., :k]
    elif how == "pad":
        k = max(n, m)
        t = F.pad(t, (0, k - n), value=-1e9)
        s = F.pad(s, (0, k - m), value=-1e9)
    else:
        raise ValueError(f"how must be 'truncate' or 'pad', got {how!r}")
    return F.kl_div(torch.log_softmax(s, -1), torch.softmax(t, -1), reduction="sum")


# --------------------------------------------------------------------------- ULD
def _prob_pair(p, q) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of probability vectors on one device, paired position by position."""
    return checked_pair(p, q, check_probs, "p", "q")


def sorted_padded(p, q) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Zero-pad the smaller vocabulary to :math:`N=\max(n,m)` and sort both descending (stable: ties keep order).

    The two returned tensors have the same last size N; ULD is the L1 distance between them.
    Gradients flow through the sort to both inputs.
    """
    p, q = _prob_pair(p, q)
    n, m = p.shape[-1], q.shape[-1]
    big = max(n, m)
    p = F.pad(p, (0, big - n))
    q = F.pad(q, (0, big - m))
    return (torch.sort(p, dim=-1, descending=True, stable=True).values,
            torch.sort(q, dim=-1, descending=True, stable=True).values)


def uld_reference(p, q) -> torch.Tensor:
    r"""THE reference ULD per position, written as the formula: pad, sort, L1 (:func:`sorted_padded`).

    .. math:: \mathrm{ULD}(p, q) = \sum_{i=1}^{N}
              |\mathrm{sort}\!\downarrow(\tilde p)_i - \mathrm{sort}\!\downarrow(\tilde q)_i|

    Slow and memory-hungry (it materialises the padding and sorts with indices) but obviously right:
    the tests, the benchmark and :mod:`uldviz.maths.transport` compare the fast kernels and the OT solvers with it.
    Gradients flow to both inputs through ``torch.sort``.
    """
    a, b = sorted_padded(p, q)
    return (a - b).abs().sum(-1)


def uld_distance(p, q) -> torch.Tensor:
    r"""ULD between probability vectors, per position: :math:`\sum_i |\mathrm{sort}(p)_i - \mathrm{sort}(q)_i|`.

    ``p`` (..., n) and ``q`` (..., m) may have different vocabulary sizes; the smaller is
    zero-padded. This equals N times the exact 1-Wasserstein distance between the two vectors'
    values seen as N points of mass 1/N on the real line (see :mod:`uldviz.maths.transport`).
    """
    p, q = _prob_pair(p, q)
    dtype = torch.promote_types(p.dtype, q.dtype)
    # Same value and gradient as uld_reference(p, q), without the padding and, on CPU, without
    # torch.sort (see uldviz.maths._sorted_l1 and benchmarks/RESULTS.md).
    return sorted_l1(p.to(dtype), q.to(dtype))


def uld_topk_distance(p, q, top_k: int, *, tail: bool = True) -> torch.Tensor:
    r"""Top-k approximation of :func:`uld_distance`, per position.

    Keeps the ``top_k`` largest probabilities of each side (the smaller vocabulary keeps all it has,
    padded with zeros) and, with ``tail=True``, adds :math:`|\text{tail}_p - \text{tail}_q|`, the
    difference of the masses left out. By the triangle inequality the tail term never exceeds the
    true contribution of the left-out ranks, so the result is a lower bound of the full value,
    exact when top_k >= both vocabularies. Measured error (reference notes, V = 32,000, top_k = 1,000):
    about 0.1 % mean, a few % worst case; without the tail term 10-50 % too low.
    """
    p, q = _prob_pair(p, q)
    return _topk_distance(p, q, top_k, tail)


def _topk_distance(p: torch.Tensor, q: torch.Tensor, top_k: int, tail: bool) -> torch.Tensor:
    """:func:`uld_topk_distance` on already-checked probabilities: checks top_k, then computes."""
    n, m = p.shape[-1], q.shape[-1]
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
    if top_k <= 0:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_k > max(n, m):
        raise ValueError(f"top_k = {top_k} is larger than both vocabularies ({n} and {m})")
    dtype = torch.promote_types(p.dtype, q.dtype)
    fast = sorted_l1_topk(p.to(dtype), q.to(dtype), top_k, tail)  # CPU numpy kernel; None elsewhere
    if fast is not None:
        return fast
    tp = torch.topk(p, min(top_k, n), dim=-1).values
    tq = torch.topk(q, min(top_k, m), dim=-1).values
    tp = F.pad(tp, (0, top_k - tp.shape[-1]))
    tq = F.pad(tq, (0, top_k - tq.shape[-1]))
    head = (tp - tq).abs().sum(-1)
    if not tail:
        return head
    tail_p = p.sum(-1) - tp.sum(-1)
    tail_q = q.sum(-1) - tq.sum(-1)
    return head + (tail_p - tail_q).abs()


def shuffled_distances(probs: torch.Tensor, generator: torch.Generator) -> dict:
    r"""How far each distribution row is from the row the shuffled control would put in its place.

    For rows :math:`p_i` (N, V) and a random permutation σ: the mean ULD :math:`\mathrm{ULD}(p_i, p_{\sigma(i)})`
    and the mean L1 :math:`\lVert p_i - p_{\sigma(i)}\rVert_1` (twice the total variation), over the rows σ moves.
    ULD sees only the sorted values, so two contexts with similar confidence look alike to it even when they
    predict different tokens: the ratio says how much of a context's identity ULD can see.
    """
    if probs.dim() != 2 or probs.shape[0] < 2:
        raise ValueError(f"probs must be (rows >= 2, vocabulary), got {tuple(probs.shape)}")
    perm = torch.randperm(probs.shape[0], generator=generator, device="cpu").to(probs.device)
    other = probs[perm]
    uld = uld_distance(probs, other)
    l1 = (probs - other).abs().sum(-1)
    moved = perm != torch.arange(probs.shape[0], device=probs.device)
    return {"uld": float(uld[moved].mean()), "l1": float(l1[moved].mean()), "pairs": int(moved.sum())}


def uld_loss(
    student_logits,
    teacher_logits,
    *,
    student_temperature: float = 1.0,
    teacher_temperature: float = 1.0,
    mask=None,
    top_k: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""The ULD loss on already-paired positions: softmax, zero-pad, sort, L1, mean over positions.

    ``student_logits`` (..., Vs) and ``teacher_logits`` (..., Vt) share their leading shape;
    ``Vs`` and ``Vt`` may differ. Softmaxes use separate temperatures and run in float32 at least
    (float64 stays float64). The teacher is treated as a constant target (no gradient).
    ``top_k`` switches to :func:`uld_topk_distance` with the tail-mass term. ``reduction`` as in the
    module's conventions ('mean' = torch's 'batchmean'). Batched over all positions: no Python loop
    over samples or positions (on CPU the sort runs in numpy on blocks of rows, see
    :mod:`uldviz.maths._sorted_l1`); works under ``torch.func.grad`` and ``torch.compile(fullgraph=True)``.
    """
    check_reduction(reduction)
    s, t = validate_pair(student_logits, teacher_logits)
    m = check_mask(mask, s.shape[:-1], s.device)
    # The logits are validated above, so the softmaxes and the kernel skip re-checking them
    # (each check is a pass over a large tensor); same maths as softmax_probs/uld_distance.
    ts = check_positive(student_temperature, "student_logits temperature")
    tt = check_positive(teacher_temperature, "teacher_logits temperature")
    dtype = torch.promote_types(compute_dtype(s), compute_dtype(t))
    q = torch.softmax(_scaled(s.to(dtype), ts), dim=-1)
    with torch.no_grad():
        p = torch.softmax(_scaled(t.detach().to(dtype), tt), dim=-1)
    per_pos = sorted_l1(q, p) if top_k is None else _topk_distance(q, p, top_k, True)
    del p  # the teacher's probabilities are not needed by the backward pass
    return reduce_positions(per_pos, m, reduction)


def _scaled(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """``x / temperature``, skipping the (exact no-op) division and its copy when it is 1."""
    return x if temperature == 1.0 else x / temperature


def cross_entropy(logits, labels, *, ignore_index: int = -100, label_smoothing: float = 0.0,
                  reduction: str = "mean") -> torch.Tensor:
    r"""Next-token cross-entropy with shape checks; ``reduction`` 'mean' (over labels that count), 'sum' or 'none'.

    ``label_smoothing`` :math:`\alpha` mixes the one-hot target with the uniform distribution, as
    ``torch.nn.functional.cross_entropy`` does:
    :math:`(1-\alpha)\,(-\log q_y) + \tfrac{\alpha}{V}\sum_v -\log q_v`.
    It is the kit's teacherless regulariser: a control for what a teacher adds.
    """
    x = validate_logits(logits, "logits")
    y = torch.as_tensor(labels, device=x.device)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"labels must be integer token ids, got dtype {y.dtype}")
    if tuple(y.shape) != tuple(x.shape[:-1]):
        raise ValueError(f"labels have shape {tuple(y.shape)} but logits have positions {tuple(x.shape[:-1])}")
    eps = float(label_smoothing)
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    valid = y != ignore_index
    if not valid.any():
        raise ValueError("every label is ignore_index: cross-entropy over no position is 0/0")
    bad = valid & ((y < 0) | (y >= x.shape[-1]))
    if bad.any():
        raise ValueError(f"labels contain ids outside the vocabulary [0, {x.shape[-1]})")
    x = x.to(compute_dtype(x))
    out = F.cross_entropy(x.reshape(-1, x.shape[-1]), y.reshape(-1).long(), ignore_index=ignore_index,
                          label_smoothing=eps, reduction=reduction)
    return out.reshape(y.shape) if reduction == "none" else out


# --------------------------------------------------------------------------- ULD from a teacher's stored top-k
def uld_topk_from_teacher_topk(student_logits, teacher_topk_probs, teacher_tail, *, student_temperature: float = 1.0,
                               mask=None, reduction: str = "mean") -> torch.Tensor:
    r"""Top-k ULD when only the teacher's k largest probabilities and its tail mass are known (a teacher cache).

    Same value as ``uld_loss(student_logits, teacher_logits, top_k=k)`` (i.e. :func:`uld_topk_distance` with the
    tail term) on the teacher the values came from, with k = ``teacher_topk_probs.shape[-1]``:

    .. math:: \sum_{r<k} |q_{(r)} - p_{(r)}| + \Big|\big(1 - \textstyle\sum_{r<k} q_{(r)}\big) - \text{tail}_p\Big|

    ``teacher_topk_probs`` (..., k) (any order; sorted here) and ``teacher_tail`` (...) share the student's leading
    shape; the teacher is a constant target. A student vocabulary smaller than k keeps all it has, zero-padded.
    """
    s, top = as_pair(student_logits, teacher_topk_probs, "student_logits", "teacher_topk_probs")
    s = validate_logits(s, "student_logits")
    top = check_probs(top, "teacher_topk_probs")
    tail = as_float_tensor(teacher_tail, "teacher_tail")
    check_device(s, tail, "student_logits", "teacher_tail")
    if top.shape[:-1] != s.shape[:-1] or tail.shape != s.shape[:-1]:
        raise ValueError(
            f"teacher_topk_probs {tuple(top.shape)} and teacher_tail {tuple(tail.shape)} must have the student's "
            f"positions {tuple(s.shape[:-1])} (plus k for the probabilities)"
        )
    if not torch.isfinite(tail).all() or (tail < -1e-4).any():  # rounding may leave -1e-7 when k covers the vocab
        raise ValueError("teacher_tail must hold finite masses >= 0 (1 minus the kept probabilities)")
    m = check_mask(mask, s.shape[:-1], s.device)
    k = top.shape[-1]
    dtype = compute_dtype(s)
    q = torch.softmax(_scaled(s.to(dtype), check_positive(student_temperature, "student_logits temperature")), -1)
    q_top = F.pad(torch.topk(q, min(k, q.shape[-1]), dim=-1).values, (0, max(0, k - q.shape[-1])))
    p_top = torch.sort(top.detach().to(dtype), dim=-1, descending=True).values
    head = (q_top - p_top).abs().sum(-1)
    per_pos = head + ((q.sum(-1) - q_top.sum(-1)) - tail.detach().to(dtype)).abs()
    return reduce_positions(per_pos, m, reduction)


# --------------------------------------------------------------------------- temperature
def large_temperature_limit(n: int, m: int) -> float:
    r"""ULD between uniform distributions on n and m tokens, the :math:`\tau\to\infty` limit: :math:`2(1-\min/\max)`."""
    small, big = sorted((int(n), int(m)))
    if small < 1:
        raise ValueError(f"vocabulary sizes must be >= 1, got {n} and {m}")
    return 2.0 * (1.0 - small / big)


def temperature_curve(student_logits, teacher_logits, temperatures) -> np.ndarray:
    r"""ULD of one student/teacher pair at each temperature τ (the same τ on both sides), float64.

    :math:`\mathrm{ULD}(\mathrm{softmax}(z/\tau), \mathrm{softmax}(z_p/\tau))` for 1-D logits (z the student's,
    :math:`z_p` the teacher's), vectorised over the temperatures; it tends to 0 as τ -> 0 when both argmaxes are
    unique, and to :func:`large_temperature_limit` as τ -> infinity.
    """
    s, t = as_pair(student_logits, teacher_logits, "student_logits", "teacher_logits")
    s = validate_logits(s.to(torch.float64).reshape(-1), "student_logits")
    t = validate_logits(t.to(torch.float64).reshape(-1), "teacher_logits")
    temps = torch.as_tensor(np.asarray(temperatures, dtype=np.float64)).reshape(-1, 1)
    if temps.numel() == 0 or not bool(((temps > 0) & torch.isfinite(temps)).all()):
        raise ValueError("temperatures must be a non-empty list of finite numbers > 0")
    with torch.no_grad():
        q = torch.softmax(s.to(temps.device)[None, :] / temps, -1)
        p = torch.softmax(t.to(temps.device)[None, :] / temps, -1)
        return sorted_l1(q, p).cpu().numpy()
