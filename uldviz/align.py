"""Position alignment: which student position is compared with which teacher position.

Different tokenizers cut the same text into different numbers of tokens, so the ULD loss
(:func:`uldviz.losses.uld_loss`) takes *already paired* positions. This module makes the
pairing explicit. An :class:`Alignment` holds, for every sample, a list of
(student position, teacher position) pairs plus a mask for the pairs that exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Alignment", "positional_pairing", "gather_pairs"]


@dataclass
class Alignment:
    """Pairs of positions, padded to a rectangle: ``student_index[b, j]`` goes with ``teacher_index[b, j]``.

    All three tensors have shape (batch, pairs); ``mask[b, j]`` is False for padding pairs, whose
    indices are 0 and must be ignored.
    """

    student_index: torch.Tensor
    teacher_index: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self):
        shapes = {tuple(self.student_index.shape), tuple(self.teacher_index.shape), tuple(self.mask.shape)}
        if len(shapes) != 1 or self.mask.dim() != 2:
            raise ValueError(
                "student_index, teacher_index and mask must all have the same (batch, pairs) shape, got "
                f"{tuple(self.student_index.shape)}, {tuple(self.teacher_index.shape)}, {tuple(self.mask.shape)}"
            )

    @property
    def num_pairs(self) -> int:
        """How many real (unmasked) pairs there are in the whole batch."""
        return int(self.mask.sum())

    def pairs(self, b: int = 0) -> list[tuple[int, int]]:
        """The (student position, teacher position) pairs of sample ``b``, for display."""
        keep = self.mask[b]
        return list(zip(self.student_index[b][keep].tolist(), self.teacher_index[b][keep].tolist()))


def _answer_mask(mask, name: str) -> torch.Tensor:
    """A 2-D boolean (batch, length) mask of the positions that take part (e.g. the answer)."""
    m = torch.as_tensor(mask)
    if m.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, length), got {tuple(m.shape)}")
    if m.dtype != torch.bool:
        if m.is_floating_point() or not torch.all((m == 0) | (m == 1)):
            raise TypeError(f"{name} must be boolean (or 0/1 integers), got dtype {m.dtype}")
        m = m.bool()
    return m


def _first_true_positions(m: torch.Tensor, width: int) -> torch.Tensor:
    """For each row, the indices of its True entries in order, in the first ``width`` columns."""
    # A stable sort of ~m puts the True positions first, keeping their order: no Python loop.
    order = torch.sort((~m).to(torch.int8), dim=1, stable=True).indices
    return order[:, :width]


def positional_pairing(student_mask, teacher_mask) -> Alignment:
    """The paper's pairing: the k-th answer position of the student with the k-th of the teacher.

    ``student_mask`` (B, Ls) and ``teacher_mask`` (B, Lt) mark each sequence's answer positions
    (prompt and padding False). Each sample is truncated to the shorter of its two answers; the
    surplus positions of the longer one are simply not compared.
    """
    sm = _answer_mask(student_mask, "student_mask")
    tm = _answer_mask(teacher_mask, "teacher_mask")
    if sm.shape[0] != tm.shape[0]:
        raise ValueError(f"student_mask has batch {sm.shape[0]} but teacher_mask has batch {tm.shape[0]}")
    count = torch.minimum(sm.sum(1), tm.sum(1))
    width = int(count.max()) if count.numel() else 0
    if width == 0:
        raise ValueError("no position can be paired: every sample has an empty student or teacher answer")
    s_idx = _first_true_positions(sm, width)
    t_idx = _first_true_positions(tm, width)
    keep = torch.arange(width, device=sm.device)[None, :] < count[:, None]
    zero = torch.zeros_like(s_idx)
    return Alignment(torch.where(keep, s_idx, zero), torch.where(keep, t_idx, zero), keep)


def gather_pairs(student_logits, teacher_logits, alignment: Alignment):
    """Pick the paired positions: returns (student (B, P, Vs), teacher (B, P, Vt), mask (B, P)).

    The result goes straight into :func:`uldviz.losses.uld_loss` with ``mask=``.
    """
    s = torch.as_tensor(student_logits)
    t = torch.as_tensor(teacher_logits)
    if s.dim() != 3 or t.dim() != 3:
        raise ValueError(
            f"expected logits of shape (batch, length, vocab), got student {tuple(s.shape)}, teacher {tuple(t.shape)}"
        )
    b = alignment.mask.shape[0]
    if s.shape[0] != b or t.shape[0] != b:
        raise ValueError(f"alignment has batch {b} but logits have batch {s.shape[0]} (student), {t.shape[0]} (teacher)")
    for name, idx, x in (("student", alignment.student_index, s), ("teacher", alignment.teacher_index, t)):
        if bool(alignment.mask.any()) and int(idx[alignment.mask].max()) >= x.shape[1]:
            raise ValueError(f"alignment points past the end of the {name} sequence (length {x.shape[1]})")
    si = alignment.student_index.to(s.device)
    ti = alignment.teacher_index.to(t.device)
    ps = torch.gather(s, 1, si[..., None].expand(-1, -1, s.shape[-1]))
    pt = torch.gather(t, 1, ti[..., None].expand(-1, -1, t.shape[-1]))
    return ps, pt, alignment.mask.to(s.device)
