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

import math

import numpy as np
import torch
import torch.nn.functional as F

from uldviz.maths._sorted_l1 import sorted_l1, sorted_l1_topk

__all__ = [
    "validate_logits",
    "check_positive",
    "as_bool_mask",
    "softmax_probs",
    "kl_divergence",
    "naive_kl_div",
    "forced_kl_div",
    "sorted_padded",
    "uld_reference",
    "uld_distance",
    "uld_topk_distance",
    "uld_loss",
    "cross_entropy",
    "ce_plus_uld",
    "uld_topk_from_teacher_topk",
    "temperature_curve",
    "large_temperature_limit",
    "PAPER_LAMBDA",
    "REDUCTIONS",
]

#: The weight of the ULD term in the paper (Boizard et al., 2024): loss = CE + 1.5 * ULD.
PAPER_LAMBDA = 1.5

#: The ``reduction`` values of the distribution losses; ``'batchmean'`` is torch's name for the kit's ``'mean'``.
REDUCTIONS = ("mean", "batchmean", "sum", "none")


# --------------------------------------------------------------------------- validation
def _as_float_tensor(x, name: str) -> torch.Tensor:
    """Turn array-likes into a floating tensor, refusing integer or boolean data by name."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except Exception as exc:  # noqa: BLE001 - re-raised with a clear message
            raise TypeError(f"{name} must be a torch tensor or an array of numbers, got {type(x).__name__}") from exc
        if not x.is_floating_point():
            x = x.to(torch.float64)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point (logits or probabilities), got dtype {x.dtype}")
    return x


def _require(ok: torch.Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless the boolean tensor ``ok`` is true.

    Under ``torch.compile`` a Python ``if`` on a tensor's value would break the graph, so the check
    becomes ``torch._assert_async``, which raises a ``RuntimeError`` with the same message.
    """
    if torch.compiler.is_compiling():
        torch._assert_async(ok, message)
    elif not bool(ok):
        raise ValueError(message)


def _check_shape(x: torch.Tensor, name: str) -> torch.Tensor:
    """A vocabulary dimension of size > 0 and at least one position."""
    if x.dim() == 0:
        raise ValueError(f"{name} must have a vocabulary dimension, got a scalar")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has a vocabulary of size 0: there is nothing to compare")
    if x.numel() == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}): no positions to compare")
    return x


def _check_device(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Two tensors compared position by position must lie on one device; say which devices otherwise."""
    if a.device != b.device:
        raise ValueError(
            f"{name_a} is on device {a.device} but {name_b} on device {b.device}: move both to one device "
            f"first (for example {name_b}.to({name_a}.device))"
        )


def _as_pair(a, b, name_a: str, name_b: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both arguments as floating tensors on one device (checked before any value is read)."""
    a, b = _as_float_tensor(a, name_a), _as_float_tensor(b, name_b)
    _check_device(a, b, name_a, name_b)
    return a, b


def validate_logits(logits, name: str = "logits") -> torch.Tensor:
    """Check a logits tensor and return it as a floating tensor; raise a clear error otherwise.

    Refused: non-floating data, zero dimensions, an empty batch, a vocabulary of size 0,
    NaN or +inf anywhere, and rows whose logits are all -inf (their softmax is undefined).
    -inf entries are allowed elsewhere: they mean probability exactly 0.
    """
    x = _check_shape(_as_float_tensor(logits, name), name)
    _require(~torch.isnan(x).any(), f"{name} contain NaN: the softmax (and so the loss) would be NaN")
    _require(~torch.isposinf(x).any(), f"{name} contain +inf: the softmax would be NaN (inf - inf)")
    _require((x.amax(dim=-1) > float("-inf")).all(),
             f"{name} has a row whose logits are all -inf: its softmax is undefined (0/0)")
    return x


def _checked_pair(a, b, check, name_a: str, name_b: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two tensors on one device, each passing ``check(x, name)``, paired position by position."""
    a, b = _as_pair(a, b, name_a, name_b)
    a, b = check(a, name_a), check(b, name_b)
    _check_paired(a, b)
    return a, b


def _validate_pair(student_logits, teacher_logits) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher logits: one device, each valid, paired position by position."""
    return _checked_pair(student_logits, teacher_logits, validate_logits, "student_logits", "teacher_logits")


def check_positive(value, name: str) -> float:
    """A temperature, ε or weight that must be a finite number > 0: returned as float, else a named error."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {value!r}") from exc
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v



def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Half precisions are promoted to float32 for the softmax; float32/float64 are kept."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def softmax_probs(logits, temperature: float = 1.0, name: str = "logits") -> torch.Tensor:
    """Softmax of ``logits / temperature`` over the last dimension, computed in float32 at least.

    fp16/bf16 logits are promoted first: a half-precision softmax loses about 1e-3 relative
    accuracy, and ULD sums thousands of such values.
    """
    x = validate_logits(logits, name)
    t = check_positive(temperature, f"{name} temperature")
    return torch.softmax(x.to(_compute_dtype(x)) / t, dim=-1)


def as_bool_mask(mask, name: str) -> torch.Tensor:
    """A mask as a boolean tensor; 0/1 integers are accepted, anything else is a TypeError naming ``name``."""
    m = torch.as_tensor(mask)
    if m.dtype != torch.bool:
        if m.is_floating_point() or not bool(torch.all((m == 0) | (m == 1))):
            raise TypeError(f"{name} must be boolean (or 0/1 integers), got dtype {m.dtype}")
        m = m.bool()
    return m


def _check_mask(mask, lead_shape: torch.Size, device) -> torch.Tensor | None:
    """A mask must be boolean (or 0/1) with exactly the leading shape and select something."""
    if mask is None:
        return None
    m = as_bool_mask(mask, "mask").to(device)
    if tuple(m.shape) != tuple(lead_shape):
        raise ValueError(
            f"mask has shape {tuple(m.shape)} but the logits' positions have shape {tuple(lead_shape)}"
        )
    _require(m.any(), "mask selects no position: the mean over positions would be 0/0")
    return m


def _check_reduction(reduction) -> str:
    """One of :data:`REDUCTIONS`, else a ValueError listing them."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r} "
                         "('mean' = 'batchmean': the sum over the vocabulary averaged over positions)")
    return reduction


def _reduce(per_position: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Mean ('batchmean') or sum over (masked) positions, or the per-position values with masked ones set to 0."""
    _check_reduction(reduction)
    if mask is not None:
        per_position = per_position * mask.to(per_position.dtype)
    if reduction == "none":
        return per_position
    if reduction == "sum":
        return per_position.sum()
    count = mask.sum() if mask is not None else per_position.numel()
    return per_position.sum() / count


def _check_paired(student: torch.Tensor, teacher: torch.Tensor) -> None:
    """Paired logits must agree on every leading (position) dimension."""
    if student.shape[:-1] != teacher.shape[:-1]:
        raise ValueError(
            f"student and teacher positions do not match: student logits {tuple(student.shape)} vs "
            f"teacher logits {tuple(teacher.shape)} (all dimensions but the last, the vocabulary, "
            "must be equal; pair positions first with uldviz.alignment.positions)"
        )


# --------------------------------------------------------------------------- KL
def kl_divergence(
    student_logits,
    teacher_logits,
    *,
    temperature: float = 1.0,
    mask=None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Ordinary distillation loss :math:`\mathrm{KL}(p_T \,\|\, p_S)` on ONE shared vocabulary.

    Summed over the vocabulary, averaged over (masked) positions (``reduction='mean'``, torch's
    ``'batchmean'``; see the module's conventions). Different vocabulary sizes raise a ``ValueError``
    that names both sizes: KL compares token i with token i, which only means something when both
    models share the tokenizer. Use :func:`uld_loss` instead.
    """
    _check_reduction(reduction)
    s, t = _validate_pair(student_logits, teacher_logits)
    if s.shape[-1] != t.shape[-1]:
        raise ValueError(
            f"KL divergence needs one shared vocabulary, but the student has {s.shape[-1]} tokens and "
            f"the teacher {t.shape[-1]}. KL compares the probability of the same token on both sides; "
            "with different tokenizers use the ULD loss (uldviz.maths.losses.uld_loss), which needs no shared "
            "vocabulary."
        )
    temp = check_positive(temperature, "temperature")
    m = _check_mask(mask, s.shape[:-1], s.device)
    dtype = torch.promote_types(_compute_dtype(s), _compute_dtype(t))
    log_q = torch.log_softmax(s.to(dtype) / temp, dim=-1)
    log_p = torch.log_softmax(t.to(dtype) / temp, dim=-1)
    p = log_p.exp()
    # xlogy-style: terms with p = 0 contribute exactly 0, even where log q = -inf.
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return _reduce(terms.sum(-1), m, reduction)


def naive_kl_div(student_probs, teacher_probs) -> torch.Tensor:
    """DEMO ONLY: exactly what naive code gets from ``F.kl_div(log q, p, reduction='sum')``, q the student's.

    No value checks on purpose, so notebook 01 can show the real failure: +inf where the teacher has
    mass on a token the student gives probability 0, NaN where both are 0 (0 * -inf), and a
    broadcasting error from deep inside torch when the sizes differ. (Two devices are still refused
    by name: that failure teaches nothing.)
    """
    q = torch.as_tensor(student_probs, dtype=torch.float64)
    p = torch.as_tensor(teacher_probs, dtype=torch.float64)
    _check_device(q, p, "student_probs", "teacher_probs")
    return F.kl_div(q.log(), p, reduction="sum")


def forced_kl_div(student_logits, teacher_logits, how: str = "truncate") -> torch.Tensor:
    """DEMO ONLY: KL after forcing two different vocabularies to one size, as naive code does.

    ``how='truncate'`` cuts the larger vocabulary to the smaller size (dropping tokens and their
    mass, then renormalising); ``how='pad'`` appends very negative logits to the smaller one.
    Either way token i of the student is compared with token i of the teacher although they are
    unrelated strings: the number is finite and meaningless.
    """
    s, t = _as_pair(student_logits, teacher_logits, "student_logits", "teacher_logits")
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
def _check_probs(x, name: str) -> torch.Tensor:
    """Probability vectors for the distance functions: finite, non-negative, non-empty."""
    x = _check_shape(_as_float_tensor(x, name), name)
    _require(torch.isfinite(x).all(), f"{name} contain NaN or inf: they are not probabilities")
    _require((x >= 0).all(), f"{name} contain negative values: they are not probabilities")
    return x


def _prob_pair(p, q) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of probability vectors on one device, paired position by position."""
    return _checked_pair(p, q, _check_probs, "p", "q")


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
    _check_reduction(reduction)
    s, t = _validate_pair(student_logits, teacher_logits)
    m = _check_mask(mask, s.shape[:-1], s.device)
    # The logits are validated above, so the softmaxes and the kernel skip re-checking them
    # (each check is a pass over a large tensor); same maths as softmax_probs/uld_distance.
    ts = check_positive(student_temperature, "student_logits temperature")
    tt = check_positive(teacher_temperature, "teacher_logits temperature")
    dtype = torch.promote_types(_compute_dtype(s), _compute_dtype(t))
    q = torch.softmax(_scaled(s.to(dtype), ts), dim=-1)
    with torch.no_grad():
        p = torch.softmax(_scaled(t.detach().to(dtype), tt), dim=-1)
    per_pos = sorted_l1(q, p) if top_k is None else _topk_distance(q, p, top_k, True)
    del p  # the teacher's probabilities are not needed by the backward pass
    return _reduce(per_pos, m, reduction)


def _scaled(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """``x / temperature``, skipping the (exact no-op) division and its copy when it is 1."""
    return x if temperature == 1.0 else x / temperature


def cross_entropy(logits, labels, *, ignore_index: int = -100, label_smoothing: float = 0.0,
                  reduction: str = "mean") -> torch.Tensor:
    r"""Next-token cross-entropy with shape checks; ``reduction`` 'mean' (over labels that count), 'sum' or 'none'.

    ``label_smoothing`` :math:`\varepsilon` mixes the one-hot target with the uniform distribution, as
    ``torch.nn.functional.cross_entropy`` does:
    :math:`(1-\varepsilon)\,(-\log q_y) + \tfrac{\varepsilon}{V}\sum_v -\log q_v`.
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
    x = x.to(_compute_dtype(x))
    out = F.cross_entropy(x.reshape(-1, x.shape[-1]), y.reshape(-1).long(), ignore_index=ignore_index,
                          label_smoothing=eps, reduction=reduction)
    return out.reshape(y.shape) if reduction == "none" else out


def ce_plus_uld(ce: torch.Tensor, uld: torch.Tensor, lam: float = PAPER_LAMBDA) -> torch.Tensor:
    r"""The paper's training objective :math:`\mathcal L = \mathcal L_{CE} + \lambda\,\mathrm{ULD}`."""
    lam = float(lam)
    if not (lam >= 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")
    if isinstance(ce, torch.Tensor) and isinstance(uld, torch.Tensor):
        _check_device(ce, uld, "ce", "uld")
    return ce + lam * uld


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
    s, top = _as_pair(student_logits, teacher_topk_probs, "student_logits", "teacher_topk_probs")
    s = validate_logits(s, "student_logits")
    top = _check_probs(top, "teacher_topk_probs")
    tail = _as_float_tensor(teacher_tail, "teacher_tail")
    _check_device(s, tail, "student_logits", "teacher_tail")
    if top.shape[:-1] != s.shape[:-1] or tail.shape != s.shape[:-1]:
        raise ValueError(
            f"teacher_topk_probs {tuple(top.shape)} and teacher_tail {tuple(tail.shape)} must have the student's "
            f"positions {tuple(s.shape[:-1])} (plus k for the probabilities)"
        )
    if not torch.isfinite(tail).all() or (tail < -1e-4).any():  # rounding may leave -1e-7 when k covers the vocab
        raise ValueError("teacher_tail must hold finite masses >= 0 (1 minus the kept probabilities)")
    m = _check_mask(mask, s.shape[:-1], s.device)
    k = top.shape[-1]
    dtype = _compute_dtype(s)
    q = torch.softmax(_scaled(s.to(dtype), check_positive(student_temperature, "student_logits temperature")), -1)
    q_top = F.pad(torch.topk(q, min(k, q.shape[-1]), dim=-1).values, (0, max(0, k - q.shape[-1])))
    p_top = torch.sort(top.detach().to(dtype), dim=-1, descending=True).values
    head = (q_top - p_top).abs().sum(-1)
    per_pos = head + ((q.sum(-1) - q_top.sum(-1)) - tail.detach().to(dtype)).abs()
    return _reduce(per_pos, m, reduction)


# --------------------------------------------------------------------------- temperature
def large_temperature_limit(n: int, m: int) -> float:
    r"""ULD between uniform distributions on n and m tokens, the :math:`T\to\infty` limit: :math:`2(1-\min/\max)`."""
    small, big = sorted((int(n), int(m)))
    if small < 1:
        raise ValueError(f"vocabulary sizes must be >= 1, got {n} and {m}")
    return 2.0 * (1.0 - small / big)


def temperature_curve(student_logits, teacher_logits, temperatures) -> np.ndarray:
    r"""ULD of one student/teacher pair at each temperature T (the same T on both sides), float64.

    :math:`\mathrm{ULD}(\mathrm{softmax}(s/T), \mathrm{softmax}(t/T))` for 1-D logits, vectorised over
    the temperatures; it tends to 0 as T -> 0 when both argmaxes are unique, and to
    :func:`large_temperature_limit` as T -> infinity.
    """
    s, t = _as_pair(student_logits, teacher_logits, "student_logits", "teacher_logits")
    s = validate_logits(s.to(torch.float64).reshape(-1), "student_logits")
    t = validate_logits(t.to(torch.float64).reshape(-1), "teacher_logits")
    temps = torch.as_tensor(np.asarray(temperatures, dtype=np.float64)).reshape(-1, 1)
    if temps.numel() == 0 or not bool(((temps > 0) & torch.isfinite(temps)).all()):
        raise ValueError("temperatures must be a non-empty list of finite numbers > 0")
    with torch.no_grad():
        q = torch.softmax(s.to(temps.device)[None, :] / temps, -1)
        p = torch.softmax(t.to(temps.device)[None, :] / temps, -1)
        return sorted_l1(q, p).cpu().numpy()
