"""Tokenizers for the lessons: two that the kit trains in seconds, or two real ones from the Hugging Face Hub.

Offline (the default) the teacher uses byte-level BPE (like GPT-2) and the student a Unigram
model over Metaspace pieces (like SentencePiece), with different vocabulary sizes, so the two
disagree on both the vocabulary and the positions. Both are built with the ``tokenizers``
library and wrapped as ``transformers`` fast tokenizers, so offsets mappings work and the same
code runs on hub tokenizers. The shipped pair lives in ``data/tokenizers/{teacher,student}``
(rebuilt by ``python -m uldviz build-teacher``).

Hub access never hangs (see :mod:`uldviz.io.hub`): offline, only locally cached files are used and a
missing tokenizer raises :class:`~uldviz.io.hub.HubUnavailableError` naming it and the offline alternative.
What a tokenizer's entries are as text (surface strings, byte lengths, spans) is :mod:`uldviz.vocab.strings`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

# Re-exported: callers catch hub errors from here as well.
from uldviz.io.hub import HubUnavailableError, check_name, hub_is_offline, resolve_local_only, unavailable_error

__all__ = [
    "TEACHER_VOCAB_SIZE",
    "STUDENT_VOCAB_SIZE",
    "HubUnavailableError",
    "hub_is_offline",
    "train_bpe_tokenizer",
    "train_unigram_tokenizer",
    "TokenizerPair",
    "NUMERAL_WORDS",
    "numeral_tokenizers",
    "offline_tokenizers",
    "save_tokenizer",
    "load_tokenizer",
    "load_hub_tokenizers",
]

#: Vocabulary size of the shipped teacher tokenizer (byte-level BPE).
TEACHER_VOCAB_SIZE = 1024
#: Vocabulary size of the shipped student tokenizer (Unigram).
STUDENT_VOCAB_SIZE = 640

#: Special tokens. The teacher follows GPT-2 (one token for end of text and padding);
#: the student follows SentencePiece/Llama conventions.
BPE_EOS = "<|endoftext|>"
UNIGRAM_UNK, UNIGRAM_EOS, UNIGRAM_PAD = "<unk>", "</s>", "<pad>"

#: Extra characters the Unigram student always knows (so 'café — naïve' has no <unk>), besides the corpus's own.
_EXTRA_ALPHABET = sorted(set("àáâäãåæçèéêëìíîïñòóôöõøœùúûüýÿßÀÁÂÄÇÈÉÊËÎÏÑÒÓÔÖØŒÙÚÛÜ—–‘’“”…°€£§«»·×÷"))


# --------------------------------------------------------------------------- training
def _check_training_text(text, vocab_size: int, minimum: int) -> None:
    """Clear errors for text/vocab_size arguments of the trainers."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty: a tokenizer needs some text to learn from")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be at least {minimum} for this tokenizer (its alphabet and special tokens), "
            f"got {vocab_size}"
        )


def _chunks(text: str, size: int = 10_000) -> list[str]:
    """Line-aligned pieces of ``text`` of roughly ``size`` characters (the trainers read an iterator)."""
    lines = text.splitlines(keepends=True)
    out, cur, n = [], [], 0
    for line in lines:
        cur.append(line)
        n += len(line)
        if n >= size:
            out.append("".join(cur))
            cur, n = [], 0
    if cur:
        out.append("".join(cur))
    return out


def train_bpe_tokenizer(text: str, vocab_size: int = TEACHER_VOCAB_SIZE):
    """Train a byte-level BPE tokenizer (GPT-2 style) on ``text``; returns a ``transformers`` fast tokenizer.

    Every byte is in the base alphabet, so any string encodes without ``<unk>``; a character of
    several UTF-8 bytes may be split over tokens. ``<|endoftext|>`` is the eos and the pad token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    _check_training_text(text, vocab_size, minimum=257 + 1)
    tok = Tokenizer(models.BPE())
    # no prefix space and no offset trimming: text[start:end] is exactly what the token stands for
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BPE_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_chunks(text), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=BPE_EOS, pad_token=BPE_EOS, bos_token=BPE_EOS)


def _deterministic_pieces(pieces: list) -> list[tuple[str, float]]:
    """The Unigram trainer's (piece, score) list made reproducible: specials first, then by score, ties by piece.

    The trainer's parallel sums change scores in the last bit from run to run, and it appends the
    characters it must keep with made-up scores 1e-4 apart in hash order. Scores are rounded to
    1e-8 and that tail of single characters is re-dealt in character order.
    """
    specials = [(p, 0.0) for p in (UNIGRAM_UNK, UNIGRAM_EOS, UNIGRAM_PAD)]
    names = {p for p, _ in specials}
    rest = sorted(((p, round(float(s), 8)) for p, s in pieces if p not in names), key=lambda ps: (-ps[1], ps[0]))
    start = len(rest) - 1 if rest and len(rest[-1][0]) == 1 else len(rest)
    while 0 < start < len(rest) and len(rest[start - 1][0]) == 1 and rest[start - 1][1] - rest[start][1] < 1.5e-4:
        start -= 1
    tail = rest[start:]
    tail_chars = sorted(p for p, _ in tail)
    tail_scores = sorted((s for _, s in tail), reverse=True)
    return specials + rest[:start] + list(zip(tail_chars, tail_scores))


def train_unigram_tokenizer(text: str, vocab_size: int = STUDENT_VOCAB_SIZE):
    """Train a Unigram tokenizer over Metaspace pieces (SentencePiece style); returns a ``transformers`` fast tokenizer.

    Spaces become '▁' glued to the next word (no '▁' is added before the first word, so every
    token's offsets cover real text). Characters never seen are ``<unk>``; a few common accented
    letters and typographic marks are added to the alphabet. eos is ``</s>``, pad ``<pad>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(set(text) | set(_EXTRA_ALPHABET)) if isinstance(text, str) else []
    _check_training_text(text, vocab_size, minimum=len(alphabet) + 3 + 1)
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=[UNIGRAM_UNK, UNIGRAM_EOS, UNIGRAM_PAD],
        unk_token=UNIGRAM_UNK,
        initial_alphabet=_EXTRA_ALPHABET,
        show_progress=False,
    )
    tok.train_from_iterator(text.splitlines(keepends=True), trainer)
    tok.model = models.Unigram(_deterministic_pieces(json.loads(tok.to_str())["model"]["vocab"]), unk_id=0,
                               byte_fallback=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=UNIGRAM_EOS, pad_token=UNIGRAM_PAD, unk_token=UNIGRAM_UNK
    )


#: Words of the numeral pair (notebook 04): enough to write sentences about numbers.
NUMERAL_WORDS = ("In", "the", "The", "year", "was", "is", "in", "of", "and", "there", "were", "apples", "people",
                 "total", "answer", "page", "line", "list", "has", "items", "a", "it", "cost", "euros", "after",
                 "before")


def numeral_tokenizers() -> TokenizerPair:
    """Two word-level tokenizers that fragment numbers differently (the case X-Token names), built offline.

    The student keeps digit runs in pieces of up to three (Llama-3's rule: "2026" -> "202", "6") and has every
    1-, 2- and 3-digit string in its vocabulary (1,110 numerals, 1,100 of them multi-digit); the teacher splits
    every digit (Qwen's rule) and knows only "0".."9". Both share the words of :data:`NUMERAL_WORDS` and ``.``/``,``.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = list(NUMERAL_WORDS) + [".", ","]
    digits = [str(d) for d in range(10)]
    numerals = digits + [f"{n:02d}" for n in range(100)] + [f"{n:03d}" for n in range(1000)]

    def build(pieces, digit_rule):
        vocab = {w: i for i, w in enumerate(["[UNK]", "[EOS]"] + words + pieces)}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
            pre_tokenizers.Split(Regex(digit_rule), behavior="isolated")])
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]", pad_token="[EOS]")

    return TokenizerPair(build(numerals, r"\d{1,3}"), build(digits, r"\d"))


# --------------------------------------------------------------------------- saving and loading
def save_tokenizer(tok, directory) -> Path:
    """``save_pretrained`` into ``directory``, readable by transformers 4.x as well as 5.x (e.g. on Colab).

    transformers 5 records its new class name ``TokenizersBackend``, which 4.x does not know; the
    config is rewritten to name ``PreTrainedTokenizerFast``, which both versions load.
    """
    path = Path(directory)
    tok.save_pretrained(path)
    cfg_file = path / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("tokenizer_class") in (None, "TokenizersBackend"):
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return path


def _tokenizer_dir(which: str) -> Path:
    """``data/tokenizers/<which>``, with an error saying how to rebuild it when missing."""
    from uldviz.env import data_dir

    path = Path(data_dir()) / "tokenizers" / which
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"the shipped {which} tokenizer is missing at {path}; rebuild it with `python -m uldviz build-teacher`"
        )
    return path


class TokenizerPair(NamedTuple):
    """A student's and a teacher's tokenizer, in the kit's order: (student, teacher)."""

    student: object
    teacher: object


def offline_tokenizers() -> TokenizerPair:
    """The shipped pair: the student's Unigram and the teacher's byte-level BPE, from ``data/tokenizers/``."""
    return TokenizerPair(load_tokenizer(_tokenizer_dir("student")), load_tokenizer(_tokenizer_dir("teacher")))


def load_tokenizer(name_or_path, local_files_only: bool | None = None):
    """A fast tokenizer from a hub name or a local ``save_pretrained`` directory, via ``AutoTokenizer``.

    Hub names only hit the network when it answers (see :func:`uldviz.io.hub.hub_is_offline`); a name that cannot
    be loaded raises :class:`HubUnavailableError` quickly. A pad token is set (to eos) when missing.
    """
    from transformers import AutoTokenizer

    name = check_name(name_or_path)
    local_only = resolve_local_only(name, local_files_only)
    if Path(name).exists() and not Path(name).is_dir():
        raise ValueError(f"{name!r} is a file; give the directory that save_pretrained wrote")
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    except Exception as err:  # transformers raises OSError/ValueError/HTTP errors for missing models
        if Path(name).is_dir():
            raise ValueError(f"directory {name!r} does not hold a tokenizer saved with save_pretrained: {err}") from err
        fallback = "uldviz.io.tokenizers.offline_tokenizers()"
        raise unavailable_error("tokenizer", name, local_only, err, fallback) from err
    if not getattr(tok, "is_fast", False):
        raise TypeError(f"tokenizer {name!r} is not a fast tokenizer, so it has no offsets mapping")
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_hub_tokenizers(student_name: str, teacher_name: str, local_files_only: bool | None = None) -> TokenizerPair:
    """The (student, teacher) tokenizers of two hub names or local directories; :class:`HubUnavailableError` offline."""
    return TokenizerPair(load_tokenizer(student_name, local_files_only=local_files_only),
                         load_tokenizer(teacher_name, local_files_only=local_files_only))


# --------------------------------------------------------------------------- inspecting


