"""One batch type for every loop: the same texts tokenized by the student's and the teacher's tokenizer.

Rows are ``[eos] + tokens`` (:func:`uldviz.vocab.encode.encode_texts`), right-padded, with each token's character
offsets (so positions and span groups can be paired). Each text may start with a prompt that is read but not
learned: ``*_answer`` marks the positions whose *next* token covers answer text, the positions where the losses
count. The notebooks' windows are all answer (an empty prompt): their answer mask is the plain label mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from uldviz.vocab.encode import encode_texts

__all__ = ["TextBatch", "answer_mask", "encode_batch"]


@dataclass
class TextBatch:
    """Texts tokenized by both tokenizers (the teacher side is None without a teacher tokenizer)."""

    texts: list
    student_ids: torch.Tensor
    student_valid: torch.Tensor
    student_offsets: torch.Tensor
    student_answer: torch.Tensor
    teacher_ids: torch.Tensor | None = None
    teacher_valid: torch.Tensor | None = None
    teacher_offsets: torch.Tensor | None = None
    teacher_answer: torch.Tensor | None = None
    index: list = field(default_factory=list)  # which examples these are (teacher cache lookups)

    def to(self, device, non_blocking: bool = False) -> "TextBatch":
        """The batch with its tensors on ``device`` (texts and indices stay)."""
        return TextBatch(**{f.name: (v.to(device, non_blocking=non_blocking) if isinstance(v := getattr(self, f.name),
                                                                                           torch.Tensor) else v)
                            for f in fields(self)})

    def pin_memory(self) -> "TextBatch":
        """The batch in pinned CPU memory (a DataLoader with ``pin_memory=True`` calls this)."""
        return TextBatch(**{f.name: (v.pin_memory() if isinstance(v := getattr(self, f.name), torch.Tensor) else v)
                            for f in fields(self)})

    @property
    def size(self) -> int:
        """How many texts the batch holds."""
        return len(self.texts)


def answer_mask(valid: torch.Tensor, offsets: torch.Tensor, prompt_chars=None) -> torch.Tensor:
    """(B, L) bool: position i counts when token i+1 is real and ends inside the answer (after ``prompt_chars``).

    ``prompt_chars`` (one int per row; None: no prompt) is where each row's answer starts, in characters.
    """
    m = torch.zeros_like(valid)
    nxt = valid[:, :-1] & valid[:, 1:]
    if prompt_chars is not None:
        starts = torch.as_tensor(prompt_chars, dtype=offsets.dtype, device=offsets.device)[:, None]
        nxt = nxt & (offsets[:, 1:, 1] > starts)
    m[:, :-1] = nxt
    return m


def encode_batch(texts, student_tok, teacher_tok=None, *, student_len: int | None, teacher_len: int | None = None,
                 prompt_chars=None, index=None) -> TextBatch:
    """Tokenize ``texts`` with both tokenizers (``teacher_tok=None`` skips the teacher) into a :class:`TextBatch`.

    ``*_len`` truncate each side's rows (tokens, the eos included); ``prompt_chars`` marks each text's prompt.
    """
    texts = list(texts)
    if prompt_chars is not None and len(prompt_chars) != len(texts):
        raise ValueError(f"prompt_chars has {len(prompt_chars)} entries for {len(texts)} texts")
    s_ids, s_valid, s_off = encode_texts(student_tok, texts, student_len)
    batch = TextBatch(texts, s_ids, s_valid, s_off, answer_mask(s_valid, s_off, prompt_chars),
                      index=list(index) if index is not None else list(range(len(texts))))
    if teacher_tok is not None:
        t_ids, t_valid, t_off = encode_texts(teacher_tok, texts, teacher_len)
        batch.teacher_ids, batch.teacher_valid, batch.teacher_offsets = t_ids, t_valid, t_off
        batch.teacher_answer = answer_mask(t_valid, t_off, prompt_chars)
    return batch
