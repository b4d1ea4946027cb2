r"""Span alignment: the groups of student tokens and teacher tokens that cover exactly the same text.

Two tokenizers cut one text differently, so there is usually no token-to-token match. What they
always share are *boundaries*: byte positions where a token ends on both sides. Between two such
boundaries lies a **group**: some consecutive student tokens and some consecutive teacher tokens
spelling the same bytes. Losses that keep token identity (:mod:`uldviz.maths.identity`) compare the two
models group by group (GOLD's byte-offset alignment in TRL; the chunks of ALM in tokenkit).

Everything is measured in UTF-8 **bytes**, not characters: a byte-level BPE tokenizer may split one
character over several tokens (``'é'`` = 2 bytes, ``'🙂'`` = 4), and Hugging Face offsets then give
each of those tokens the same whole-character span. :func:`utf8_byte_spans` splits that span by
each token's byte length (:func:`token_byte_lengths`).

A group closes at byte :math:`b` when a student token and a teacher token (both of non-zero width)
end at :math:`b`. Token *ends* are the boundaries, so a tokenizer whose offsets leave a token's
leading space out (a gap between tokens) still groups correctly: the gap belongs to the token after it.

Entry points: :func:`span_groups` for one pair of token lists, :func:`align_spans` for a training
batch (called once per step), :class:`SpanAlignment` for its result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "char_to_byte",
    "utf8_byte_spans",
    "span_groups",
    "group_byte_spans",
    "SpanAlignment",
    "align_spans",
]


# --------------------------------------------------------------------------- bytes of characters and tokens
def char_to_byte(text: str) -> np.ndarray:
    """``c2b`` of length ``len(text) + 1``: ``c2b[i]`` is the UTF-8 byte offset of character ``i``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if text.isascii():
        return np.arange(len(text) + 1, dtype=np.int64)
    try:
        cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    except UnicodeEncodeError as err:
        raise ValueError(f"text is not valid Unicode (it holds a lone surrogate): {err}") from err
    width = 1 + (cp >= 0x80).astype(np.int64) + (cp >= 0x800) + (cp >= 0x10000)
    out = np.zeros(len(text) + 1, dtype=np.int64)
    np.cumsum(width, out=out[1:])
    return out


def _as_pairs(offsets, name: str) -> np.ndarray:
    """(n, 2) int64 array of (start, end) pairs from a list, array or tensor; named errors otherwise."""
    if isinstance(offsets, torch.Tensor):
        if offsets.is_floating_point() or offsets.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer offsets, got dtype {offsets.dtype}")
        arr = offsets.detach().cpu().numpy()
    else:
        try:
            arr = np.asarray(offsets)
        except Exception as exc:  # noqa: BLE001 - re-raised with a clear message
            raise TypeError(f"{name} must be a sequence of (start, end) pairs") from exc
        if arr.size == 0:
            arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be a sequence of (start, end) pairs, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer offsets, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def utf8_byte_spans(text: str, char_offsets, token_bytes=None) -> list[tuple[int, int]]:
    """Exact UTF-8 byte (start, end) of every token, from character offsets of ``text``.

    Tokens whose character spans overlap (a byte-level tokenizer split one character: Hugging Face
    gives each piece the whole character's span) share that span's bytes in order, each taking its
    own byte length from ``token_bytes`` (one int per token, see :func:`token_byte_lengths`). When the
    lengths add up to more than the span, the extra bytes must lie just before it in text no token
    covers (a leading space left out of the offsets). Zero-width tokens (specials) keep their point.
    """
    return [tuple(x) for x in _byte_spans(text, char_offsets, token_bytes).tolist()]


def _byte_spans(text: str, char_offsets, token_bytes=None) -> np.ndarray:
    """:func:`utf8_byte_spans` as an (n, 2) int64 array."""
    c2b = char_to_byte(text)
    off = _as_pairs(char_offsets, "char_offsets")
    n = len(off)
    if n == 0:
        return off
    starts, ends = off[:, 0], off[:, 1]
    bad = np.flatnonzero((starts < 0) | (ends > len(text)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"token {i} has character offsets {tuple(off[i].tolist())} outside the text (length {len(text)}): "
            "are the offsets from a tokenization of this text?"
        )
    bad = np.flatnonzero(ends < starts)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"token {i} has character offsets {tuple(off[i].tolist())}: its end is before its start")
    tb = None
    if token_bytes is not None:
        tb = np.asarray(token_bytes.detach().cpu() if isinstance(token_bytes, torch.Tensor) else token_bytes)
        if tb.shape != (n,):
            raise ValueError(f"token_bytes must have one entry per token ({n}), got shape {tb.shape}")
        if tb.size and (not np.issubdtype(tb.dtype, np.integer) or (tb < 0).any()):
            raise ValueError("token_bytes must be non-negative integers (each token's length in bytes)")
    out = np.stack([c2b[starts], c2b[ends]], axis=1)
    width = ends - starts
    run_max = np.maximum.accumulate(ends)
    # token i continues the previous token's character(s): it starts before everything so far has ended
    joins = np.zeros(n, dtype=bool)
    joins[1:] = (starts[1:] < run_max[:-1]) & (width[1:] > 0) & (width[:-1] > 0)
    if not joins.any():
        return out
    heads = np.flatnonzero(joins[1:] & ~joins[:-1])
    for first in heads.tolist():
        last = first + 1
        while last + 1 < n and joins[last + 1]:
            last += 1
        _split_run(text, c2b, off, tb, out, first, last)
    return out


def _split_run(text, c2b, off, tb, out: np.ndarray, first: int, last: int) -> None:
    """Give tokens first..last (overlapping character spans) consecutive byte spans, in place."""
    a = int(off[first:last + 1, 0].min())
    b = int(off[first:last + 1, 1].max())
    lo, hi = int(c2b[a]), int(c2b[b])
    if tb is None:
        raise ValueError(
            f"tokens {first}..{last} share the character(s) {text[a:b]!r} (a byte-level tokenizer split a "
            "multi-byte character): pass token_bytes (e.g. token_byte_lengths(tokenizer, ids)) to split its bytes"
        )
    lengths = tb[first:last + 1].astype(np.int64)
    extra = int(lengths.sum()) - (hi - lo)
    prev_end = int(out[:first, 1].max()) if first > 0 else 0
    if extra < 0 or lo - extra < prev_end:
        raise ValueError(
            f"the byte split does not add up: tokens {first}..{last} have byte lengths {lengths.tolist()} "
            f"(sum {int(lengths.sum())}) but share {text[a:b]!r}, {hi - lo} bytes"
        )
    cuts = (lo - extra) + np.concatenate([[0], np.cumsum(lengths)])
    out[first:last + 1, 0] = cuts[:-1]
    out[first:last + 1, 1] = cuts[1:]


# --------------------------------------------------------------------------- groups
def _ends(spans, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(ends, positive-width mask) of a side's byte spans; ends must never go backwards."""
    arr = _as_pairs(spans, name)
    if len(arr) == 0:
        raise ValueError(f"{name} is empty: there are no tokens to group")
    if (arr[:, 1] < arr[:, 0]).any():
        i = int(np.flatnonzero(arr[:, 1] < arr[:, 0])[0])
        raise ValueError(f"{name}[{i}] = {tuple(arr[i])}: its end is before its start")
    ends = arr[:, 1]
    back = np.flatnonzero(ends[1:] < ends[:-1])
    if back.size:
        i = int(back[0]) + 1
        raise ValueError(
            f"{name}[{i}] ends at byte {int(ends[i])}, before the token before it ({int(ends[i - 1])}): "
            "token ends must never go backwards (are these the spans of one tokenization, in order?)"
        )
    return ends, arr[:, 1] > arr[:, 0]


def _assign(ends: np.ndarray, positive: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Group index of each token: the first boundary >= its end; zero-width tokens join the group still open."""
    left = np.searchsorted(bounds, ends, side="left")
    right = np.searchsorted(bounds, ends, side="right")
    return np.maximum.accumulate(np.where(positive, left, right))


def span_groups(student_spans, teacher_spans) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Groups of consecutive student and teacher tokens covering exactly the same text, in text order.

    Each group is ``((s0, s1), (t0, t1))``: student tokens ``s0..s1-1`` and teacher tokens ``t0..t1-1``
    (indices into the given lists of byte spans). A group closes at a byte where a student token and
    a teacher token of non-zero width both END. Zero-width tokens (specials) at the start are
    skipped, elsewhere they join the group still open; tokens after the last common end (the end of
    a truncated window, not closed on both sides) are dropped, as is any group empty on one side.
    """
    cols = _group_arrays(_as_pairs(student_spans, "student_spans"), _as_pairs(teacher_spans, "teacher_spans"))
    return [((a, b), (c, d)) for a, b, c, d in zip(*(x.tolist() for x in cols))]


def _group_arrays(s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`span_groups` on (n, 2) byte-span arrays: the arrays (s0, s1, t0, t1), one entry per group."""
    s_end, s_pos = _ends(s, "student_spans")
    t_end, t_pos = _ends(t, "teacher_spans")
    bounds = np.intersect1d(s_end[s_pos], t_end[t_pos])  # sorted, unique
    s_grp, t_grp = _assign(s_end, s_pos, bounds), _assign(t_end, t_pos, bounds)
    s_first = int(np.argmax(s_pos)) if s_pos.any() else len(s_end)  # skip leading zero-width tokens
    t_first = int(np.argmax(t_pos)) if t_pos.any() else len(t_end)
    k = np.arange(bounds.size)
    s0 = np.maximum(np.searchsorted(s_grp, k, side="left"), s_first)
    s1 = np.searchsorted(s_grp, k, side="right")
    t0 = np.maximum(np.searchsorted(t_grp, k, side="left"), t_first)
    t1 = np.searchsorted(t_grp, k, side="right")
    keep = (s1 > s0) & (t1 > t0)
    return s0[keep], s1[keep], t0[keep], t1[keep]


def group_byte_spans(student_spans, teacher_spans, groups) -> list[tuple[int, int]]:
    """The byte (start, end) of text each group covers; consecutive groups tile the text.

    A group ends where its last tokens end; it starts where the group before it ended (the first
    group: at the earlier first-token start of the two sides), so a gap left by a tokenizer's offsets
    is counted in the group that follows it.
    """
    s = _as_pairs(student_spans, "student_spans")
    t = _as_pairs(teacher_spans, "teacher_spans")
    if not groups:
        return []
    cols = [np.asarray(x, dtype=np.int64) for x in zip(*((a, b, c, d) for (a, b), (c, d) in groups))]
    lo, hi = _group_bytes(s, t, *cols)
    return list(zip(lo.tolist(), hi.tolist()))


def _group_bytes(s, t, s0, s1, t0, t1) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) byte arrays of the groups given as index arrays (see :func:`group_byte_spans`)."""
    if s0.size == 0:
        return s0, s0
    hi = s[s1 - 1, 1]
    if not np.array_equal(hi, t[t1 - 1, 1]):
        g = int(np.flatnonzero(hi != t[t1 - 1, 1])[0])
        raise ValueError(f"group {g} does not end at the same byte on both sides")
    lo = np.concatenate([[min(s[s0[0], 0], t[t0[0], 0])], hi[:-1]])
    return lo, hi


# --------------------------------------------------------------------------- batches
@dataclass
class SpanAlignment:
    """All G groups of a batch, as 1-D long tensors (token indices into the encoded rows, end-exclusive).

    Group g covers ``student_ids[sample[g], student_start[g]:student_end[g]]`` and
    ``teacher_ids[sample[g], teacher_start[g]:teacher_end[g]]``; the text is bytes
    ``byte_start[g]:byte_end[g]`` of ``texts[sample[g]].encode()``. Every start is >= 1, so position
    ``start - 1`` holds the logits that predict the group's first token.
    """

    sample: torch.Tensor
    student_start: torch.Tensor
    student_end: torch.Tensor
    teacher_start: torch.Tensor
    teacher_end: torch.Tensor
    byte_start: torch.Tensor
    byte_end: torch.Tensor
    batch_size: int

    def __post_init__(self):
        tensors = [self.sample, self.student_start, self.student_end, self.teacher_start, self.teacher_end,
                   self.byte_start, self.byte_end]
        if len({tuple(t.shape) for t in tensors}) != 1 or self.sample.dim() != 1:
            raise ValueError("the fields of a SpanAlignment must all be 1-D tensors of the same length (one per group)")

    @property
    def num_groups(self) -> int:
        """G, the number of groups in the whole batch."""
        return int(self.sample.numel())

    def groups(self, b: int = 0) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Sample ``b``'s groups as ``((student_start, student_end), (teacher_start, teacher_end))``, for display."""
        if not isinstance(b, int) or isinstance(b, bool) or not 0 <= b < self.batch_size:
            raise IndexError(f"sample index must be an int in [0, {self.batch_size}), got {b!r}")
        keep = self.sample == b
        cols = [t[keep].tolist() for t in (self.student_start, self.student_end, self.teacher_start, self.teacher_end)]
        return [((a, c), (d, e)) for a, c, d, e in zip(*cols)]

    def to(self, device) -> "SpanAlignment":
        """The same alignment with its tensors on ``device``."""
        return SpanAlignment(*(t.to(device) for t in (self.sample, self.student_start, self.student_end,
                                                      self.teacher_start, self.teacher_end, self.byte_start,
                                                      self.byte_end)), self.batch_size)


def _side(offsets, valid, token_bytes, batch: int, name: str):
    """Validated numpy views of one side: offsets (B, L, 2), valid (B, L), token bytes (B, L) or None."""
    o = torch.as_tensor(offsets)
    if o.dim() != 3 or o.shape[-1] != 2:
        raise ValueError(f"{name}_offsets must have shape (batch, length, 2), got {tuple(o.shape)}")
    if o.is_floating_point() or o.dtype == torch.bool:
        raise TypeError(f"{name}_offsets must hold integer character offsets, got dtype {o.dtype}")
    v = torch.as_tensor(valid)
    if tuple(v.shape) != tuple(o.shape[:2]):
        raise ValueError(f"{name}_valid has shape {tuple(v.shape)} but {name}_offsets have (batch, length) "
                         f"{tuple(o.shape[:2])}")
    if v.dtype != torch.bool:
        if v.is_floating_point() or not torch.all((v == 0) | (v == 1)):
            raise TypeError(f"{name}_valid must be boolean (or 0/1 integers), got dtype {v.dtype}")
        v = v.bool()
    if o.shape[0] != batch:
        raise ValueError(f"there are {batch} texts but {name}_offsets have batch {o.shape[0]}")
    tb = None
    if token_bytes is not None:
        t = torch.as_tensor(token_bytes)
        if tuple(t.shape) != tuple(o.shape[:2]):
            raise ValueError(f"{name}_token_bytes has shape {tuple(t.shape)} but {name}_offsets have (batch, length) "
                             f"{tuple(o.shape[:2])}")
        tb = t.detach().cpu().long().numpy()
    return o.detach().cpu().long().numpy(), v.detach().cpu().numpy(), tb


def _row_tokens(valid_row: np.ndarray, name: str, b: int) -> np.ndarray:
    """Indices of a row's real tokens, which must be one contiguous block (right- or left-padded rows)."""
    idx = np.flatnonzero(valid_row)
    if idx.size and idx[-1] - idx[0] + 1 != idx.size:
        raise ValueError(f"{name}_valid of sample {b} has holes: real tokens must be one contiguous block")
    return idx


def align_spans(texts, student_offsets, student_valid, teacher_offsets, teacher_valid,
                student_token_bytes=None, teacher_token_bytes=None, *, empty: str = "raise") -> SpanAlignment:
    """The groups (:func:`span_groups`) of every sample of a batch, as one :class:`SpanAlignment`.

    ``texts`` are the B text windows; the offsets (B, L, 2) are each tokenizer's CHARACTER offsets
    into them (Hugging Face offsets mapping; rows ``[eos] + tokens``, right-padded, ``valid`` marks
    real tokens). ``*_token_bytes`` (B, L) (from :func:`batch_token_bytes`) are needed wherever a
    tokenizer split a character. Groups whose first token is at index 0 on either side (no position
    predicts it) are dropped. With no group at all, ``empty="raise"`` raises a ``ValueError`` and ``empty="zero"``
    returns an alignment of 0 groups (a loss over it is a zero with a gradient).
    """
    if empty not in ("raise", "zero"):
        raise ValueError(f"empty must be 'raise' or 'zero', got {empty!r}")
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a list of str (one text window per sample), got {type(texts).__name__}")
    batch = len(texts)
    if batch == 0:
        raise ValueError("texts is empty: there is no sample to align")
    so, sv, sb = _side(student_offsets, student_valid, student_token_bytes, batch, "student")
    to, tv, tb = _side(teacher_offsets, teacher_valid, teacher_token_bytes, batch, "teacher")
    parts = []
    for b, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{b}] must be a str, got {type(text).__name__}")
        si, ti = _row_tokens(sv[b], "student", b), _row_tokens(tv[b], "teacher", b)
        if si.size == 0 or ti.size == 0:
            continue
        try:
            s_spans = _byte_spans(text, so[b, si], None if sb is None else sb[b, si])
        except ValueError as err:
            raise ValueError(f"sample {b}, student side: {err}") from err
        try:
            t_spans = _byte_spans(text, to[b, ti], None if tb is None else tb[b, ti])
        except ValueError as err:
            raise ValueError(f"sample {b}, teacher side: {err}") from err
        s0, s1, t0, t1 = _group_arrays(s_spans, t_spans)
        lo, hi = _group_bytes(s_spans, t_spans, s0, s1, t0, t1)
        # back to row indices (real tokens are one block starting at si[0] / ti[0])
        row = np.stack([np.full_like(s0, b), s0 + si[0], s1 + si[0], t0 + ti[0], t1 + ti[0], lo, hi])
        parts.append(row[:, (row[1] >= 1) & (row[3] >= 1)])
    cols = np.concatenate(parts, axis=1) if parts else np.zeros((7, 0), dtype=np.int64)
    if cols.shape[1] == 0 and empty == "raise":
        raise ValueError(
            "no group of tokens closes on both sides in any sample: the two tokenizations share no token end "
            "(are they tokenizations of the same texts?)"
        )
    return SpanAlignment(*torch.from_numpy(np.ascontiguousarray(cols)), batch_size=batch)


# --------------------------------------------------------------------------- rows as the models read them


# --------------------------------------------------------------------------- one sentence, for display


