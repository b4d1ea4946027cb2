"""Position alignment: which student position is compared with which teacher position.

Different tokenizers cut the same text into different numbers of tokens, so the ULD loss
(:func:`uldviz.maths.losses.uld_loss`) takes *already paired* positions. This module makes the
pairing explicit. A :class:`PositionAlignment` holds, for every sample, a list of
(student position, teacher position) pairs plus a mask for the pairs that exist.

Two pairings are offered:

- :func:`positional_pairing`, the paper's: the k-th answer position of the student with the
  k-th of the teacher, truncated to the shorter answer;
- :func:`offset_pairing`, by character offsets: the logits at position i predict token i+1, so
  position i is paired with the teacher position whose prediction starts at the *same character*
  of the text (both models have read exactly the same characters). Positions with no such
  partner are masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uldviz.maths.checks import as_bool_mask

__all__ = [
    "PositionAlignment",
    "positional_pairing",
    "prediction_offsets",
    "offset_pairing",
    "alignment_rows",
    "gather_pairs",
]


@dataclass
class PositionAlignment:
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
    return as_bool_mask(m, name)


def _check_empty(empty: str) -> None:
    if empty not in ("raise", "zero"):
        raise ValueError(f"empty must be 'raise' or 'zero', got {empty!r}")


def _empty(batch: int, device) -> PositionAlignment:
    """An alignment with no pair: (batch, 0) tensors."""
    idx = torch.zeros(batch, 0, dtype=torch.long, device=device)
    return PositionAlignment(idx, idx.clone(), torch.zeros(batch, 0, dtype=torch.bool, device=device))


def _first_true_positions(m: torch.Tensor, width: int) -> torch.Tensor:
    """For each row, the indices of its True entries in order, in the first ``width`` columns."""
    # A stable sort of ~m puts the True positions first, keeping their order: no Python loop.
    order = torch.sort((~m).to(torch.int8), dim=1, stable=True).indices
    return order[:, :width]


def positional_pairing(student_mask, teacher_mask, *, empty: str = "raise") -> PositionAlignment:
    """The paper's pairing: the k-th answer position of the student with the k-th of the teacher.

    ``student_mask`` (B, Ls) and ``teacher_mask`` (B, Lt) mark each sequence's answer positions
    (prompt and padding False). Each sample is truncated to the shorter of its two answers; the
    surplus positions of the longer one are simply not compared. With nothing to pair, ``empty="raise"`` raises a
    ``ValueError`` and ``empty="zero"`` returns an alignment of width 0 (a loss over it is a zero with a gradient).
    """
    _check_empty(empty)
    sm = _answer_mask(student_mask, "student_mask")
    tm = _answer_mask(teacher_mask, "teacher_mask")
    if sm.shape[0] != tm.shape[0]:
        raise ValueError(f"student_mask has batch {sm.shape[0]} but teacher_mask has batch {tm.shape[0]}")
    count = torch.minimum(sm.sum(1), tm.sum(1))
    width = int(count.max()) if count.numel() else 0
    if width == 0:
        if empty == "zero":
            return _empty(sm.shape[0], sm.device)
        raise ValueError("no position can be paired: every sample has an empty student or teacher answer")
    s_idx = _first_true_positions(sm, width)
    t_idx = _first_true_positions(tm, width)
    keep = torch.arange(width, device=sm.device)[None, :] < count[:, None]
    zero = torch.zeros_like(s_idx)
    return PositionAlignment(torch.where(keep, s_idx, zero), torch.where(keep, t_idx, zero), keep)


def _offsets_tensor(offsets, name: str) -> torch.Tensor:
    """Offsets as an int64 (batch, length, 2) tensor of (start, end) character positions."""
    try:
        o = torch.as_tensor(offsets)
    except Exception as exc:  # noqa: BLE001 - re-raised with a clear message
        raise TypeError(f"{name} must be a (batch, length, 2) array of (start, end) character offsets") from exc
    if o.dim() == 2 and o.shape[-1] == 2:
        o = o[None]
    if o.dim() != 3 or o.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (batch, length, 2) of (start, end) pairs, got {tuple(o.shape)}")
    if o.is_floating_point() or o.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer character offsets, got dtype {o.dtype}")
    o = o.long()
    if (o < 0).any():
        raise ValueError(f"{name} contain negative character offsets")
    if (o[..., 1] < o[..., 0]).any():
        raise ValueError(f"{name} contain a token whose end offset is before its start offset")
    return o


def prediction_offsets(offsets, valid=None) -> torch.Tensor:
    """For each position, the character offset where the text it *predicts* begins; -1 where undefined.

    ``offsets`` (B, L, 2) are the (start, end) characters of each token (a tokenizer's offset
    mapping); ``valid`` (B, L) marks real tokens (False for padding). Position i has read the
    text up to ``c = max(end_0..end_i)`` and its logits predict token i+1, so it predicts text
    starting at character ``c``. Its offset is -1 (no clean prediction point) when

    - token i+1 does not exist (last real token, padding), or
    - token i+1 starts *before* ``c``: token i ended inside a character that token i+1 continues
      (byte-level tokens that split one UTF-8 character, e.g. "é" = 2 bytes), or token i+1 is a
      zero-width special token.

    Using the end of the text read so far (not token i+1's start) makes the pairing robust to
    tokenizers that leave a leading space out of a token's offsets.
    """
    o = _offsets_tensor(offsets, "offsets")
    b, n = o.shape[:2]
    if valid is None:
        v = torch.ones(b, n, dtype=torch.bool, device=o.device)
    else:
        v = _answer_mask(valid, "valid")
        if tuple(v.shape) != (b, n):
            raise ValueError(f"valid has shape {tuple(v.shape)} but offsets have (batch, length) {(b, n)}")
    ends = torch.where(v, o[..., 1], torch.zeros_like(o[..., 1]))
    read = torch.cummax(ends, dim=1).values  # characters read so far
    nxt_start = torch.full_like(read, -1)
    nxt_start[:, :-1] = o[:, 1:, 0]
    nxt_valid = torch.zeros_like(v)
    nxt_valid[:, :-1] = v[:, 1:]
    nxt_width = torch.zeros_like(read)
    nxt_width[:, :-1] = o[:, 1:, 1] - o[:, 1:, 0]
    ok = v & nxt_valid & (nxt_start >= read) & (nxt_width > 0)
    return torch.where(ok, read, torch.full_like(read, -1))


def offset_pairing(student_offsets, teacher_offsets, student_valid=None, teacher_valid=None, *,
                   empty: str = "raise") -> PositionAlignment:
    """Pair student and teacher positions that predict text starting at the same character.

    Both sequences must be tokenizations of the *same* text (same character numbering).
    See :func:`prediction_offsets` for which positions have a prediction point. Each offset is
    used once per side (the first position that reaches it); student positions without a teacher
    partner, and the other way round, are left out (masked). Pairs come in text order. Every tensor is made on
    the offsets' device. ``empty`` as in :func:`positional_pairing`.
    """
    _check_empty(empty)
    so = prediction_offsets(student_offsets, student_valid)
    to = prediction_offsets(teacher_offsets, teacher_valid)
    if so.shape[0] != to.shape[0]:
        raise ValueError(f"student offsets have batch {so.shape[0]} but teacher offsets have batch {to.shape[0]}")

    def first_use(x):
        # keep a position only if no earlier position of the same row has the same offset
        same = (x[:, :, None] == x[:, None, :]) & (x[:, None, :] >= 0)
        earlier = torch.tril(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device), diagonal=-1)
        return (x >= 0) & ~(same & earlier).any(-1)

    so = torch.where(first_use(so), so, torch.full_like(so, -1))
    to = torch.where(first_use(to), to, torch.full_like(to, -2))  # -1 never equals -2
    eq = so[:, :, None] == to[:, None, :]  # (B, Ls, Lt), at most one True per row
    matched = eq.any(-1)
    partner = eq.to(torch.int8).argmax(-1)
    count = matched.sum(1)
    width = int(count.max()) if count.numel() else 0
    if width == 0:
        if empty == "zero":
            return _empty(so.shape[0], so.device)
        raise ValueError(
            "no position can be paired by character offsets: the two tokenizations share no prediction "
            "point (are they tokenizations of the same text?)"
        )
    s_idx = _first_true_positions(matched, width)
    t_idx = torch.gather(partner, 1, s_idx)
    keep = torch.arange(width, device=count.device)[None, :] < count[:, None]
    zero = torch.zeros_like(s_idx)
    return PositionAlignment(torch.where(keep, s_idx, zero), torch.where(keep, t_idx, zero), keep)


def alignment_rows(alignment: PositionAlignment, student_tokens, teacher_tokens, b: int = 0, side: str = "student"):
    """Rows for a table of sample ``b``: every position of one side with its partner (or None).

    ``side='student'`` lists each student position i with its token, the token it predicts
    (i+1) and the paired teacher position; ``side='teacher'`` the other way round. Each row is a
    dict with keys position, token, predicts, partner, partner_token, partner_predicts.
    """
    if side not in ("student", "teacher"):
        raise ValueError(f"side must be 'student' or 'teacher', got {side!r}")
    pairs = alignment.pairs(b)
    mine, other = (student_tokens, teacher_tokens) if side == "student" else (teacher_tokens, student_tokens)
    partner = {s: t for s, t in pairs} if side == "student" else {t: s for s, t in pairs}
    rows = []
    for i, tok in enumerate(mine):
        j = partner.get(i)
        rows.append({
            "position": i,
            "token": tok,
            "predicts": mine[i + 1] if i + 1 < len(mine) else None,
            "partner": j,
            "partner_token": None if j is None else other[j],
            "partner_predicts": None if j is None or j + 1 >= len(other) else other[j + 1],
        })
    return rows


def gather_pairs(student_logits, teacher_logits, alignment: PositionAlignment):
    """Pick the paired positions: returns (student (B, P, Vs), teacher (B, P, Vt), mask (B, P)).

    The result goes straight into :func:`uldviz.maths.losses.uld_loss` with ``mask=``.
    """
    s = torch.as_tensor(student_logits)
    t = torch.as_tensor(teacher_logits)
    if s.dim() != 3 or t.dim() != 3:
        raise ValueError(
            f"expected logits of shape (batch, length, vocab), got student {tuple(s.shape)}, teacher {tuple(t.shape)}"
        )
    b = alignment.mask.shape[0]
    if s.shape[0] != b or t.shape[0] != b:
        raise ValueError(
            f"alignment has batch {b} but logits have batch {s.shape[0]} (student), {t.shape[0]} (teacher)"
        )
    for name, idx, x in (("student", alignment.student_index, s), ("teacher", alignment.teacher_index, t)):
        if bool(alignment.mask.any()) and int(idx[alignment.mask].max()) >= x.shape[1]:
            raise ValueError(f"alignment points past the end of the {name} sequence (length {x.shape[1]})")
    si = alignment.student_index.to(s.device)
    ti = alignment.teacher_index.to(t.device)
    ps = torch.gather(s, 1, si[..., None].expand(-1, -1, s.shape[-1]))
    pt = torch.gather(t, 1, ti[..., None].expand(-1, -1, t.shape[-1]))
    return ps, pt, alignment.mask.to(s.device)
