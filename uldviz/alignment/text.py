"""Span alignment of real text: a batch's rows or one sentence, encoded by both tokenizers and grouped.

The pure grouping is :mod:`uldviz.alignment.spans`; here the tokenizers supply the rows
(:func:`uldviz.vocab.encode.encode_texts`) and each token's byte length (:mod:`uldviz.vocab.strings`).
"""

from __future__ import annotations

from dataclasses import dataclass

from uldviz.alignment.spans import SpanAlignment, align_spans, utf8_byte_spans
from uldviz.vocab.encode import encode_texts
from uldviz.vocab.strings import batch_token_bytes, check_fast

__all__ = ["align_batch", "TextAlignment", "align_text"]


def align_batch(batch, student_tokenizer, teacher_tokenizer, *, empty: str = "raise") -> SpanAlignment:
    """:func:`align_spans` for a training batch (any object with ``texts`` and ``student_``/``teacher_`` ``ids``,
    ``valid``, ``offsets``), with the tokens' byte lengths taken from the two tokenizers.

    Runs on the CPU by design (numpy over byte offsets): the result is on the CPU; a loop moves it to the device
    once, with the batch."""
    side = {}
    for name, tok in (("student", student_tokenizer), ("teacher", teacher_tokenizer)):
        ids, valid, offsets = (getattr(batch, f"{name}_{k}").cpu() for k in ("ids", "valid", "offsets"))
        side[name] = (offsets, valid, batch_token_bytes(tok, ids, valid))
    (so, sv, sb), (to, tv, tb) = side["student"], side["teacher"]
    return align_spans(list(batch.texts), so, sv, to, tv, student_token_bytes=sb, teacher_token_bytes=tb,
                       empty=empty)


@dataclass
class TextAlignment:
    """One text encoded by both tokenizers as rows ``[eos] + tokens`` and its groups, for explorers and plots.

    ``*_ids`` are the rows (what the models read), ``*_spans`` each row token's UTF-8 byte span
    (the eos (0, 0)), ``alignment`` the :class:`SpanAlignment` of this one sample.
    """

    text: str
    student_ids: list
    student_spans: list
    teacher_ids: list
    teacher_spans: list
    alignment: SpanAlignment

    @property
    def groups(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """The groups as ``((student_start, student_end), (teacher_start, teacher_end))`` row indices."""
        return self.alignment.groups(0)

    @property
    def num_groups(self) -> int:
        """How many groups the text has."""
        return self.alignment.num_groups

    def group_bytes(self, g: int) -> tuple[int, int]:
        """Byte (start, end) of group ``g`` in ``text.encode()``."""
        self._check(g)
        return int(self.alignment.byte_start[g]), int(self.alignment.byte_end[g])

    def group_text(self, g: int) -> str:
        """The text group ``g`` covers."""
        lo, hi = self.group_bytes(g)
        return self.text.encode("utf-8")[lo:hi].decode("utf-8", errors="replace")

    def _check(self, g) -> None:
        if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g < self.num_groups:
            raise IndexError(f"group index must be an int in [0, {self.num_groups}), got {g!r}")


def align_text(text: str, student_tok, teacher_tok, max_len: int | None = None) -> TextAlignment:
    """Encode ``text`` with both tokenizers as training rows do and align them (:func:`align_spans`)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text:
        raise ValueError("text is empty: there is nothing to align")
    if max_len is not None and (not isinstance(max_len, int) or max_len < 2):
        raise ValueError(f"max_len must be an int >= 2 (the eos and one token), got {max_len!r}")
    rows = []
    for tok in (student_tok, teacher_tok):
        check_fast(tok)
        ids, valid, offsets = encode_texts(tok, [text], max_len)  # the rows training batches hold
        if not bool(valid.any()):
            raise ValueError("a tokenizer made no token of this text")
        n_bytes = batch_token_bytes(tok, ids, valid)
        spans = utf8_byte_spans(text, offsets[0].tolist(), n_bytes[0].tolist())
        rows.append((ids, valid, offsets, n_bytes, spans))
    (s_ids, s_valid, s_off, s_bytes, s_spans), (t_ids, t_valid, t_off, t_bytes, t_spans) = rows
    alignment = align_spans([text], s_off, s_valid, t_off, t_valid, s_bytes, t_bytes)
    return TextAlignment(text, s_ids[0].tolist(), s_spans, t_ids[0].tolist(), t_spans, alignment)
