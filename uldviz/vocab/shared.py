r"""Which token strings both vocabularies contain: the student id <-> teacher id map, and its views.

Two tokenizers write the same text differently ('Ġthe' in GPT-2's byte-level BPE, '▁the' in
SentencePiece), so the kit compares entries by their *surface* string
(:func:`uldviz.vocab.strings.normalized_token`). Where both vocabularies hold a string, the two models'
probabilities for it can be compared token by token (a KL-type divergence); the rest only by sorted
value (ULD). :class:`SharedVocab` is the one source of "shared strings" in the kit: notebook 01's
overlap counts (:meth:`SharedVocab.overlap`), notebook 02's teacher mass on shared strings
(:meth:`SharedVocab.mask`, :meth:`SharedVocab.mass`) and notebook 04's hybrid loss all read it.

**The rule, stated once** (:data:`SPECIAL_TOKEN_RULE`): special tokens (``all_special_ids``) are never
shared strings, even when both tokenizers have one of the same name (GPT-2 and Pythia both have
``<|endoftext|>``): a special token spells no text, so it has zero width in every byte-offset group and
no group ever predicts it. A byte-level entry holding part of a UTF-8 character (one byte of 'é')
spells no text either and is left out. Several ids of one side with one string keep the lowest id.

``match="raw"`` reproduces TRL GOLD's convention instead (:func:`raw_vocab`): entries compared as stored,
special tokens included, so 'Ġthe' never meets '▁the' while GPT-2's byte symbol 'é' (the byte 0xE9, half
of a character) meets the student's real character 'é'.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from uldviz.vocab.strings import is_byte_level, normalized_token

__all__ = ["SPECIAL_TOKEN_RULE", "MATCH_RULES", "SharedVocab", "surface_vocab", "surface_strings", "raw_vocab",
           "compare_matchings"]

#: The special-token rule of surface matching, in words (the module docstring gives the reason).
SPECIAL_TOKEN_RULE = "special tokens are never shared strings: they spell no text"
#: How entries are compared: "surface" (the kit's: decoded text, no specials) or "raw" (TRL GOLD's: as stored);
#: "projection" marks a map read off X-Token's W (:func:`uldviz.maths.xtoken.matched_vocab`).
MATCH_RULES = ("surface", "raw", "projection")
_SIDES = ("student", "teacher")


def _check_tokenizer(tokenizer) -> None:
    if not hasattr(tokenizer, "get_vocab"):
        raise TypeError(f"expected a Hugging Face tokenizer, got {type(tokenizer).__name__}")


def surface_vocab(tokenizer) -> dict[str, int]:
    """Surface string -> id for every entry of ``tokenizer`` that text can match, lowest id per string.

    Special tokens are left out (:data:`SPECIAL_TOKEN_RULE`). Byte-level symbols are decoded ('Ġ' -> ' ');
    a byte-level entry that holds an incomplete UTF-8 character has no surface string and never matches.
    Other entries read '▁' as a space.
    """
    _check_tokenizer(tokenizer)
    specials = set(getattr(tokenizer, "all_special_ids", []))
    vocab = {t: i for t, i in tokenizer.get_vocab().items() if i not in specials}
    return surface_strings(vocab, byte_level=is_byte_level(tokenizer))


def surface_strings(vocab: dict, byte_level: bool) -> dict[str, int]:
    """:func:`surface_vocab` for a raw ``{token as stored: id}`` dict (specials already removed)."""
    out: dict[str, int] = {}
    for token, i in sorted(vocab.items(), key=lambda kv: kv[1]):
        surface = normalized_token(token, byte_level)
        if surface:  # "" : part of a multi-byte character, no text is spelled by it alone
            out.setdefault(surface, i)
    return out


def raw_vocab(tokenizer) -> dict[str, int]:
    """TRL GOLD's matching: every entry as stored (``get_vocab()``), special tokens included, lowest id per string."""
    _check_tokenizer(tokenizer)
    out: dict[str, int] = {}
    for token, i in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        out.setdefault(token, i)
    return out


@dataclass
class SharedVocab:
    """Aligned ids: ``student_ids[k]`` and ``teacher_ids[k]`` both spell ``strings[k]`` (sorted by teacher id).

    ``student_size`` / ``teacher_size`` are the vocabulary sizes (number of ids) the map was built for;
    ``student_strings`` / ``teacher_strings`` how many distinct strings each side had to offer (for
    :meth:`overlap`). The map is one-to-one: when several ids of one side spell one string, the lowest
    id is kept (e.g. an added token that duplicates a learned one).
    """

    student_ids: torch.Tensor
    teacher_ids: torch.Tensor
    strings: list = field(default_factory=list)
    student_size: int | None = None
    teacher_size: int | None = None
    student_strings: int | None = None
    teacher_strings: int | None = None
    match: str = "surface"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # built once per key

    def __post_init__(self):
        s, t = torch.as_tensor(self.student_ids), torch.as_tensor(self.teacher_ids)
        if s.dim() != 1 or t.dim() != 1 or s.shape != t.shape:
            raise ValueError(f"student_ids and teacher_ids must be 1-D of the same length, got {tuple(s.shape)} and "
                             f"{tuple(t.shape)}")
        if s.is_floating_point() or t.is_floating_point():
            raise TypeError("student_ids and teacher_ids must be integer token ids")
        if len(self.strings) != s.numel():
            raise ValueError(f"{len(self.strings)} strings for {s.numel()} shared ids")
        if self.match not in MATCH_RULES:
            raise ValueError(f"match must be one of {MATCH_RULES}, got {self.match!r}")
        s, t = s.long().cpu(), t.long().cpu()
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

    @property
    def num_shared(self) -> int:
        """How many strings both vocabularies contain."""
        return len(self)

    def _ids(self, side: str) -> torch.Tensor:
        if side not in _SIDES:
            raise ValueError(f"side must be 'student' or 'teacher', got {side!r}")
        return self.student_ids if side == "student" else self.teacher_ids

    def _once(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def shared_ids(self, side: str, device=None) -> torch.Tensor:
        """``side``'s shared ids (aligned with the other side's: entry k spells ``strings[k]``) on ``device``."""
        ids = self._ids(side)
        return self._once(("shared", side, str(device)), lambda: ids.to(device) if device is not None else ids)

    def mask(self, side: str, size: int | None = None, device=None) -> torch.Tensor:
        """(size,) bool over ``side``'s vocabulary: True at the ids that spell a shared string.

        ``size`` defaults to the vocabulary size the map was built for (a logits width may be larger).
        """
        ids = self._ids(side)
        n = size if size is not None else getattr(self, f"{side}_size")
        if n is None:
            raise ValueError(f"the {side} vocabulary size is unknown: pass size=")
        if len(self) and int(ids.max()) >= n:
            raise ValueError(f"size {n} is smaller than the largest shared {side} id ({int(ids.max())})")

        def build():
            m = torch.zeros(n, dtype=torch.bool, device=device)
            m[ids.to(device)] = True
            return m

        return self._once(("mask", side, n, str(device)), build)

    def unshared_ids(self, side: str, size: int, device=None) -> torch.Tensor:
        """The ids of ``side``'s vocabulary of ``size`` (a logits width) that spell no shared string, in id order.

        Built once per (side, size, device) and kept: a training loop asks for them every step.
        """
        return self._once(("unshared", side, size, str(device)),
                          lambda: (~self.mask(side, size, device)).nonzero().squeeze(-1))

    def mass(self, side: str, probs: torch.Tensor) -> torch.Tensor:
        r"""Probability each distribution in ``probs`` (..., V) of ``side`` puts on shared strings.

        For the teacher's distribution p this is the course's :math:`P=\sum_{v\text{ shared}} p(v)`
        (:mod:`uldviz.course.notation`): the mass KL-type terms can compare token by token.
        """
        p = torch.as_tensor(probs)
        return (p * self.mask(side, p.shape[-1], p.device).to(p.dtype)).sum(-1)

    def overlap(self) -> dict:
        """Distinct strings each side offers, how many both have, their union and IoU (notebook 01's numbers).

        ``student_strings`` / ``teacher_strings`` count distinct *texts* (special tokens and byte pieces of a
        character left out, ids that spell the same text counted once), not ids: a vocabulary of 1,024 ids may
        spell 893 texts.
        """
        if self.student_strings is None or self.teacher_strings is None:
            raise ValueError("this map does not know how many strings each side had: build it with from_vocabs")
        union = self.student_strings + self.teacher_strings - len(self)
        return {"student_strings": self.student_strings, "teacher_strings": self.teacher_strings,
                "shared": len(self), "union": union, "iou": len(self) / union if union else float("nan")}

    @classmethod
    def from_vocabs(cls, student_vocab: dict, teacher_vocab: dict, *, student_size: int | None = None,
                    teacher_size: int | None = None, match: str = "surface") -> "SharedVocab":
        """From two ``{string: id}`` dicts (already normalised for ``match``): the strings both contain.

        Sizes default to the largest id + 1 of each dict.
        """
        for name, vocab in (("student_vocab", student_vocab), ("teacher_vocab", teacher_vocab)):
            if not isinstance(vocab, dict):
                raise TypeError(f"{name} must be a dict {{string: id}}, got {type(vocab).__name__}")
            if not vocab:
                raise ValueError(f"{name} is empty")
        common = sorted(set(student_vocab) & set(teacher_vocab), key=lambda w: teacher_vocab[w])
        return cls(
            torch.tensor([student_vocab[w] for w in common], dtype=torch.long, device="cpu"),  # index maps: CPU
            torch.tensor([teacher_vocab[w] for w in common], dtype=torch.long, device="cpu"),
            common,
            student_size if student_size is not None else max(student_vocab.values()) + 1,
            teacher_size if teacher_size is not None else max(teacher_vocab.values()) + 1,
            len(student_vocab),
            len(teacher_vocab),
            match,
        )

    @classmethod
    def from_tokenizers(cls, student_tok, teacher_tok, *, match: str = "surface") -> "SharedVocab":
        """The strings two tokenizers share: ``match="surface"`` (the kit's rule) or ``"raw"`` (TRL GOLD's)."""
        if match not in ("surface", "raw"):
            raise ValueError(f"match must be 'surface' or 'raw' to read two tokenizers, got {match!r}")
        read = surface_vocab if match == "surface" else raw_vocab
        return cls.from_vocabs(read(student_tok), read(teacher_tok), student_size=len(student_tok),
                               teacher_size=len(teacher_tok), match=match)

    def summary(self) -> dict:
        """Sizes and overlap, for display: shared count and its share of each vocabulary."""
        out = {"shared": len(self), "student_size": self.student_size, "teacher_size": self.teacher_size}
        for side in _SIDES:
            size = out[f"{side}_size"]
            out[f"share_of_{side}"] = len(self) / size if size else float("nan")
        return out


def compare_matchings(student_tok, teacher_tok) -> dict:
    """The kit's surface matching against TRL GOLD's raw matching, pair by pair (notebook 04 counts them).

    Returns ``raw`` and ``surface`` (the two :class:`SharedVocab`), ``both`` (the (student id, teacher id) pairs
    both rules make), ``raw_only`` and ``surface_only`` (lists of (student id, teacher id, string) — the raw
    string for ``raw_only``, the surface one for ``surface_only``), and ``byte_symbols``: the raw-only pairs
    where one side is a byte-level entry standing for a single byte of 0x80 or more — no whole UTF-8 character
    (a lead or continuation byte, or a byte UTF-8 never uses) — matched to a real character of the other side,
    as (string, byte value, student id, teacher id): false matches.
    """
    from uldviz.vocab.strings import byte_decoder

    raw, surface = (SharedVocab.from_tokenizers(student_tok, teacher_tok, match=m) for m in ("raw", "surface"))

    def pairs(v: SharedVocab) -> dict:
        return {(int(s), int(t)): w for s, t, w in zip(v.student_ids.tolist(), v.teacher_ids.tolist(), v.strings)}

    r, s = pairs(raw), pairs(surface)
    table = byte_decoder()
    levels = (is_byte_level(student_tok), is_byte_level(teacher_tok))
    symbols = []
    for (si, ti), w in sorted(r.items(), key=lambda kv: kv[0][1]):
        if (si, ti) in s or len(w) != 1 or w not in table or table[w] < 0x80 or levels[0] == levels[1]:
            continue
        symbols.append((w, table[w], si, ti))
    return {"raw": raw, "surface": surface, "both": sorted(set(r) & set(s)),
            "raw_only": [(si, ti, w) for (si, ti), w in sorted(r.items()) if (si, ti) not in s],
            "surface_only": [(si, ti, w) for (si, ti), w in sorted(s.items()) if (si, ti) not in r],
            "byte_symbols": symbols}
