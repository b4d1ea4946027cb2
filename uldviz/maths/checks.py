"""Input checks and reductions shared by every loss of the kit: one place that says what is refused and why.

Each check raises a ``ValueError``/``TypeError`` that names the problem instead of letting a NaN, an inf or a
broadcasting error appear later (under ``torch.compile`` the checks on values become ``torch._assert_async``,
which raises a ``RuntimeError`` with the same message). Pure torch; no plotting, no models.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "REDUCTIONS",
    "PROB_FLOOR",
    "as_float_tensor",
    "require",
    "check_shape",
    "check_device",
    "as_pair",
    "validate_logits",
    "checked_pair",
    "validate_pair",
    "check_positive",
    "compute_dtype",
    "as_bool_mask",
    "check_mask",
    "check_reduction",
    "reduce_positions",
    "check_paired",
    "check_probs",
]

#: The ``reduction`` values of the distribution losses; ``'batchmean'`` is torch's name for the kit's ``'mean'``.
REDUCTIONS = ("mean", "batchmean", "sum", "none")
#: The probability a log is taken of where an exact divergence would be infinite (TRL GOLD's floor, 1e-8).
PROB_FLOOR = 1e-8


def as_float_tensor(x, name: str) -> torch.Tensor:
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


def require(ok: torch.Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless the boolean tensor ``ok`` is true.

    Under ``torch.compile`` a Python ``if`` on a tensor's value would break the graph, so the check
    becomes ``torch._assert_async``, which raises a ``RuntimeError`` with the same message.
    """
    if torch.compiler.is_compiling():
        torch._assert_async(ok, message)
    elif not bool(ok):
        raise ValueError(message)


def check_shape(x: torch.Tensor, name: str) -> torch.Tensor:
    """A vocabulary dimension of size > 0 and at least one position."""
    if x.dim() == 0:
        raise ValueError(f"{name} must have a vocabulary dimension, got a scalar")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has a vocabulary of size 0: there is nothing to compare")
    if x.numel() == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}): no positions to compare")
    return x


def check_device(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Two tensors compared position by position must lie on one device; say which devices otherwise."""
    if a.device != b.device:
        raise ValueError(
            f"{name_a} is on device {a.device} but {name_b} on device {b.device}: move both to one device "
            f"first (for example {name_b}.to({name_a}.device))"
        )


def as_pair(a, b, name_a: str, name_b: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both arguments as floating tensors on one device (checked before any value is read)."""
    a, b = as_float_tensor(a, name_a), as_float_tensor(b, name_b)
    check_device(a, b, name_a, name_b)
    return a, b


def validate_logits(logits, name: str = "logits") -> torch.Tensor:
    """Check a logits tensor and return it as a floating tensor; raise a clear error otherwise.

    Refused: non-floating data, zero dimensions, an empty batch, a vocabulary of size 0,
    NaN or +inf anywhere, and rows whose logits are all -inf (their softmax is undefined).
    -inf entries are allowed elsewhere: they mean probability exactly 0.
    """
    x = check_shape(as_float_tensor(logits, name), name)
    require(~torch.isnan(x).any(), f"{name} contain NaN: the softmax (and so the loss) would be NaN")
    require(~torch.isposinf(x).any(), f"{name} contain +inf: the softmax would be NaN (inf - inf)")
    require((x.amax(dim=-1) > float("-inf")).all(),
             f"{name} has a row whose logits are all -inf: its softmax is undefined (0/0)")
    return x


def checked_pair(a, b, check, name_a: str, name_b: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two tensors on one device, each passing ``check(x, name)``, paired position by position."""
    a, b = as_pair(a, b, name_a, name_b)
    a, b = check(a, name_a), check(b, name_b)
    check_paired(a, b)
    return a, b


def validate_pair(student_logits, teacher_logits) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher logits: one device, each valid, paired position by position."""
    return checked_pair(student_logits, teacher_logits, validate_logits, "student_logits", "teacher_logits")


def check_positive(value, name: str) -> float:
    """A temperature, ε or weight that must be a finite number > 0: returned as float, else a named error."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {value!r}") from exc
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v



def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Half precisions are promoted to float32 for the softmax; float32/float64 are kept."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def as_bool_mask(mask, name: str) -> torch.Tensor:
    """A mask as a boolean tensor; 0/1 integers are accepted, anything else is a TypeError naming ``name``."""
    m = torch.as_tensor(mask)
    if m.dtype != torch.bool:
        if m.is_floating_point() or not bool(torch.all((m == 0) | (m == 1))):
            raise TypeError(f"{name} must be boolean (or 0/1 integers), got dtype {m.dtype}")
        m = m.bool()
    return m


def check_mask(mask, lead_shape: torch.Size, device) -> torch.Tensor | None:
    """A mask must be boolean (or 0/1) with exactly the leading shape and select something."""
    if mask is None:
        return None
    m = as_bool_mask(mask, "mask").to(device)
    if tuple(m.shape) != tuple(lead_shape):
        raise ValueError(
            f"mask has shape {tuple(m.shape)} but the logits' positions have shape {tuple(lead_shape)}"
        )
    require(m.any(), "mask selects no position: the mean over positions would be 0/0")
    return m


def check_reduction(reduction) -> str:
    """One of :data:`REDUCTIONS`, else a ValueError listing them."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r} "
                         "('mean' = 'batchmean': the sum over the vocabulary averaged over positions)")
    return reduction


def reduce_positions(per_position: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Mean ('batchmean') or sum over (masked) positions, or the per-position values with masked ones set to 0."""
    check_reduction(reduction)
    if mask is not None:
        per_position = per_position * mask.to(per_position.dtype)
    if reduction == "none":
        return per_position
    if reduction == "sum":
        return per_position.sum()
    count = mask.sum() if mask is not None else per_position.numel()
    return per_position.sum() / count


def check_paired(student: torch.Tensor, teacher: torch.Tensor) -> None:
    """Paired logits must agree on every leading (position) dimension."""
    if student.shape[:-1] != teacher.shape[:-1]:
        raise ValueError(
            f"student and teacher positions do not match: student logits {tuple(student.shape)} vs "
            f"teacher logits {tuple(teacher.shape)} (all dimensions but the last, the vocabulary, "
            "must be equal; pair positions first with uldviz.alignment.positions)"
        )


def check_probs(x, name: str) -> torch.Tensor:
    """Probability vectors for the distance functions: finite, non-negative, non-empty."""
    x = check_shape(as_float_tensor(x, name), name)
    require(torch.isfinite(x).all(), f"{name} contain NaN or inf: they are not probabilities")
    require((x >= 0).all(), f"{name} contain negative values: they are not probabilities")
    return x
