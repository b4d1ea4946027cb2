"""Tokenizers for the lessons: two that the kit trains in seconds, or two real ones from the Hugging Face Hub.

Offline (the default) the teacher uses byte-level BPE (like GPT-2) and the student a Unigram
model over Metaspace pieces (like SentencePiece), with different vocabulary sizes, so the two
disagree on both the vocabulary and the positions. Both are built with the ``tokenizers``
library and wrapped as ``transformers`` fast tokenizers, so offsets mappings work and the same
code runs on hub tokenizers. The shipped pair lives in ``data/tokenizers/{teacher,student}``
(rebuilt by ``python -m uldviz build-teacher``).

Hub access never hangs (see :mod:`uldviz.io.hub`): offline, only locally cached files are used and a
missing tokenizer raises :class:`~uldviz.io.hub.HubUnavailableError` naming it and the offline alternative.
The vocabulary helpers at the end (:func:`tokenizer_kind`, :func:`surface_vocab_by_id`, :func:`cut_points`,
:func:`shared_cuts`, :func:`vocab_overlap`) are the maths behind notebook 01's token widgets.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

# Re-exported: callers catch hub errors from here as well.
from uldviz.io.hub import HubUnavailableError, check_name, hub_is_offline, resolve_local_only, unavailable_error

__all__ = [
    "TEACHER_VOCAB_SIZE",
    "STUDENT_VOCAB_SIZE",
    "HubUnavailableError",
    "hub_is_offline",
    "train_bpe_tokenizer",
    "train_unigram_tokenizer",
    "offline_tokenizers",
    "save_tokenizer",
    "load_tokenizer",
    "load_hub_tokenizers",
    "token_spans",
    "normalized_token",
    "vocab_overlap",
    "tokenizer_kind",
    "surface_vocab_by_id",
    "cut_points",
    "shared_cuts",
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


def offline_tokenizers():
    """The shipped (teacher, student) pair: byte-level BPE and Unigram, from ``data/tokenizers/``."""
    return load_tokenizer(_tokenizer_dir("teacher")), load_tokenizer(_tokenizer_dir("student"))


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


def load_hub_tokenizers(teacher_name: str, student_name: str, local_files_only: bool | None = None):
    """(teacher, student) tokenizers from two hub names or local directories; :class:`HubUnavailableError` offline."""
    return (
        load_tokenizer(teacher_name, local_files_only=local_files_only),
        load_tokenizer(student_name, local_files_only=local_files_only),
    )


# --------------------------------------------------------------------------- inspecting
def token_spans(tok, text: str) -> list[tuple[str, tuple[int, int]]]:
    """``(token string, (start, end))`` for every token of ``text`` (no special tokens), from the offsets mapping.

    ``text[start:end]`` is the text the token covers. Byte-level tokens that hold only part of a
    multi-byte character cover that whole character, so neighbouring spans may overlap.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text:
        raise ValueError("text is empty: there are no tokens to show")
    if not getattr(tok, "is_fast", False):
        raise TypeError("token_spans needs a fast tokenizer (one with an offsets mapping)")
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    strings = tok.convert_ids_to_tokens(enc["input_ids"])
    return [(s, (int(a), int(b))) for s, (a, b) in zip(strings, enc["offset_mapping"])]


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level map reversed: printable stand-in character -> byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _is_byte_level(tok) -> bool:
    """Whether the tokenizer's pre-tokenizer or decoder is byte-level (GPT-2 style 'Ġ' tokens)."""
    try:
        spec = json.loads(tok.backend_tokenizer.to_str())
    except Exception:
        return False
    return "ByteLevel" in json.dumps([spec.get("pre_tokenizer"), spec.get("decoder")])


def normalized_token(token: str, byte_level: bool) -> str:
    """The surface text of a vocabulary entry: byte-level symbols decoded to UTF-8 ('Ġ' -> ' '), '▁' -> ' '.

    A byte-level entry that holds an incomplete UTF-8 character (one byte of 'é') spells no text: it
    gives ``""``, which every comparison of surface strings leaves out. (Its raw form would be wrong:
    GPT-2 writes byte 0xC3 as the character 'Ã', which another vocabulary may really contain.)
    """
    if byte_level:
        table = _byte_decoder()
        if all(ch in table for ch in token):
            try:
                return bytes(table[ch] for ch in token).decode("utf-8")
            except UnicodeDecodeError:
                return ""
    return token.replace("▁", " ")


def vocab_overlap(tok_a, tok_b) -> dict:
    """How many token strings two tokenizers share: sizes, intersection, union and IoU of their surface strings.

    Special tokens are left out; entries are compared after :func:`normalized_token`, so GPT-2's
    'Ġthe' and SentencePiece's '▁the' both count as ' the'.
    """
    def surface(tok) -> set[str]:
        specials = set(getattr(tok, "all_special_tokens", []))
        byte_level = _is_byte_level(tok)
        return {normalized_token(t, byte_level) for t in tok.get_vocab() if t not in specials} - {""}

    a, b = surface(tok_a), surface(tok_b)
    if not a or not b:
        raise ValueError("a tokenizer has an empty vocabulary (apart from special tokens)")
    inter, union = len(a & b), len(a | b)
    return {"size_a": len(a), "size_b": len(b), "intersection": inter, "union": union, "iou": inter / union}


def tokenizer_kind(tok) -> str:
    """The tokenization algorithm of a fast tokenizer's backend model: 'BPE', 'Unigram', 'WordPiece', ..."""
    try:
        return type(tok.backend_tokenizer.model).__name__
    except AttributeError:
        return type(tok).__name__


def surface_vocab_by_id(tok) -> list[str]:
    """Every token id's surface string, in id order ('Ġthe' and '▁the' both become ' the'; '' for unused ids)."""
    byte_level = _is_byte_level(tok)
    inv = {i: t for t, i in tok.get_vocab().items()}
    return [normalized_token(inv[i], byte_level) if i in inv else "" for i in range(len(tok))]


def cut_points(spans) -> set[int]:
    """Character offsets where a tokenization ends a token (its cut points), from ``(token, (start, end))`` spans."""
    return {int(end) for _, (_, end) in spans}


def shared_cuts(spans_a, spans_b) -> tuple[int, int]:
    """(cut points both tokenizations share, cut points of either): how well their positions line up."""
    a, b = cut_points(spans_a), cut_points(spans_b)
    return len(a & b), len(a | b)
