"""Which token strings both vocabularies contain: the student id <-> teacher id map of a hybrid loss.

Two tokenizers write the same text differently ('Ġthe' in GPT-2's byte-level BPE, '▁the' in
SentencePiece), so entries are compared by their *surface* string
(:func:`uldviz.io.tokenizers.normalized_token`). Where both vocabularies hold a string, the two
models' probabilities for it can be compared token by token (a KL-type divergence); the rest can
only be compared by sorted value (ULD). See :func:`uldviz.maths.identity.hybrid_uld_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["SharedVocab", "surface_vocab", "surface_strings"]


def surface_vocab(tokenizer) -> dict[str, int]:
    """Surface string -> id for every entry of ``tokenizer`` that text can match, lowest id per string.

    Special tokens are left out. Byte-level symbols are decoded ('Ġ' -> ' '); a byte-level entry
    that holds an incomplete UTF-8 character (half of 'é') has no surface string and is left out,
    so it never matches. Other entries read '▁' as a space.
    """
    from uldviz.io.tokenizers import _is_byte_level

    if not hasattr(tokenizer, "get_vocab"):
        raise TypeError(f"expected a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    specials = set(getattr(tokenizer, "all_special_ids", []))
    vocab = {t: i for t, i in tokenizer.get_vocab().items() if i not in specials}
    return surface_strings(vocab, byte_level=_is_byte_level(tokenizer))


def surface_strings(vocab: dict, byte_level: bool) -> dict[str, int]:
    """:func:`surface_vocab` for a raw ``{token as stored: id}`` dict (specials already removed)."""
    from uldviz.io.tokenizers import normalized_token

    out: dict[str, int] = {}
    for token, i in sorted(vocab.items(), key=lambda kv: kv[1]):
        surface = normalized_token(token, byte_level)
        if surface:  # "" : part of a multi-byte character, no text is spelled by it alone
            out.setdefault(surface, i)
    return out


@dataclass
class SharedVocab:
    """Aligned ids: ``student_ids[k]`` and ``teacher_ids[k]`` both spell ``strings[k]`` (sorted by teacher id).

    ``student_size`` / ``teacher_size`` are the vocabulary sizes (number of ids) the map was built
    for. The map is one-to-one: when several ids of one side spell the same string, the lowest id
    is kept (e.g. an added token that duplicates a learned one).
    """

    student_ids: torch.Tensor
    teacher_ids: torch.Tensor
    strings: list = field(default_factory=list)
    student_size: int | None = None
    teacher_size: int | None = None
    _unshared: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # (side, size) -> ids

    def __post_init__(self):
        s, t = torch.as_tensor(self.student_ids), torch.as_tensor(self.teacher_ids)
        if s.dim() != 1 or t.dim() != 1 or s.shape != t.shape:
            raise ValueError(f"student_ids and teacher_ids must be 1-D of the same length, got {tuple(s.shape)} and "
                             f"{tuple(t.shape)}")
        if s.is_floating_point() or t.is_floating_point():
            raise TypeError("student_ids and teacher_ids must be integer token ids")
        if len(self.strings) != s.numel():
            raise ValueError(f"{len(self.strings)} strings for {s.numel()} shared ids")
        s, t = s.long(), t.long()
        for name, ids, size in (("student", s, self.student_size), ("teacher", t, self.teacher_size)):
            if ids.numel() and int(ids.min()) < 0:
                raise ValueError(f"{name}_ids contain negative ids")
            if ids.numel() and size is not None and int(ids.max()) >= size:
                raise ValueError(f"{name}_ids contain id {int(ids.max())}, outside its vocabulary of {size}")
            if ids.unique().numel() != ids.numel():
                raise ValueError(f"{name}_ids repeat an id: the map must be one-to-one")
        self.student_ids, self.teacher_ids = s, t

    def __len__(self) -> int:
        return int(self.student_ids.numel())

    def unshared_ids(self, side: str, size: int) -> torch.Tensor:
        """The ids of ``side``'s vocabulary of ``size`` (a logits width) that spell no shared string, in id order.

        Built once per (side, size) and kept: a training loop asks for them every step.
        """
        if (side, size) not in self._unshared:
            ids = {"student": self.student_ids, "teacher": self.teacher_ids}.get(side)
            if ids is None:
                raise ValueError(f"side must be 'student' or 'teacher', got {side!r}")
            keep = torch.ones(size, dtype=torch.bool)
            keep[ids] = False
            self._unshared[(side, size)] = keep.nonzero().squeeze(-1)
        return self._unshared[(side, size)]

    @property
    def num_shared(self) -> int:
        """How many strings both vocabularies contain."""
        return len(self)

    @classmethod
    def from_vocabs(cls, student_vocab: dict, teacher_vocab: dict, *, student_size: int | None = None,
                    teacher_size: int | None = None) -> "SharedVocab":
        """From two ``{surface string: id}`` dicts (already normalised): the strings both contain.

        Sizes default to the largest id + 1 of each dict.
        """
        for name, vocab in (("student_vocab", student_vocab), ("teacher_vocab", teacher_vocab)):
            if not isinstance(vocab, dict):
                raise TypeError(f"{name} must be a dict {{string: id}}, got {type(vocab).__name__}")
            if not vocab:
                raise ValueError(f"{name} is empty")
        common = sorted(set(student_vocab) & set(teacher_vocab), key=lambda w: teacher_vocab[w])
        return cls(
            torch.tensor([student_vocab[w] for w in common], dtype=torch.long),
            torch.tensor([teacher_vocab[w] for w in common], dtype=torch.long),
            common,
            student_size if student_size is not None else max(student_vocab.values()) + 1,
            teacher_size if teacher_size is not None else max(teacher_vocab.values()) + 1,
        )

    @classmethod
    def from_tokenizers(cls, student_tok, teacher_tok) -> "SharedVocab":
        """The strings two tokenizers share, by :func:`surface_vocab` (specials and partial characters excluded)."""
        return cls.from_vocabs(surface_vocab(student_tok), surface_vocab(teacher_tok),
                               student_size=len(student_tok), teacher_size=len(teacher_tok))

    def summary(self) -> dict:
        """Sizes and overlap, for display: shared count and its share of each vocabulary."""
        out = {"shared": len(self), "student_size": self.student_size, "teacher_size": self.teacher_size}
        for side in ("student", "teacher"):
            size = out[f"{side}_size"]
            out[f"share_of_{side}"] = len(self) / size if size else float("nan")
        return out
