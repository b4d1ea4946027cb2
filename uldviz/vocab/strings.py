r"""What a tokenizer's entries and tokens are as text: surface strings, byte lengths, spans and cut points.

Two tokenizers write the same text differently (GPT-2's byte-level BPE stores ' the' as 'Ġthe', SentencePiece as
'▁the'), so every comparison across tokenizers in the kit goes through the functions here. Pure functions of a
fast tokenizer object (nothing is loaded or trained here; see :mod:`uldviz.io.tokenizers` for that).
"""

from __future__ import annotations

import functools
import json
import re
import weakref

import torch

__all__ = [
    "byte_decoder",
    "is_byte_level",
    "normalized_token",
    "tokenizer_kind",
    "surface_vocab_by_id",
    "token_spans",
    "cut_points",
    "shared_cuts",
    "check_fast",
    "vocab_byte_lengths",
    "token_byte_lengths",
    "batch_token_bytes",
]


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
def byte_decoder() -> dict[str, int]:
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


def is_byte_level(tok) -> bool:
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
        table = byte_decoder()
        if all(ch in table for ch in token):
            try:
                return bytes(table[ch] for ch in token).decode("utf-8")
            except UnicodeDecodeError:
                return ""
    return token.replace("▁", " ")


def tokenizer_kind(tok) -> str:
    """The tokenization algorithm of a fast tokenizer's backend model: 'BPE', 'Unigram', 'WordPiece', ..."""
    try:
        return type(tok.backend_tokenizer.model).__name__
    except AttributeError:
        return type(tok).__name__


def surface_vocab_by_id(tok) -> list[str]:
    """Every token id's surface string, in id order ('Ġthe' and '▁the' both become ' the'; '' for unused ids)."""
    byte_level = is_byte_level(tok)
    inv = {i: t for t, i in tok.get_vocab().items()}
    return [normalized_token(inv[i], byte_level) if i in inv else "" for i in range(len(tok))]


def cut_points(spans) -> set[int]:
    """Character offsets where a tokenization ends a token (its cut points), from ``(token, (start, end))`` spans."""
    return {int(end) for _, (_, end) in spans}


def shared_cuts(spans_a, spans_b) -> tuple[int, int]:
    """(cut points both tokenizations share, cut points of either): how well their positions line up."""
    a, b = cut_points(spans_a), cut_points(spans_b)
    return len(a & b), len(a | b)


_BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


_VOCAB_BYTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_fast(tokenizer) -> None:
    """Only fast tokenizers have offsets mappings (and a backend to inspect)."""
    if not getattr(tokenizer, "is_fast", False) or not hasattr(tokenizer, "backend_tokenizer"):
        raise TypeError(
            f"{type(tokenizer).__name__} is not a fast tokenizer, so it has no offsets mapping: load it with "
            "uldviz.io.tokenizers.load_tokenizer (or AutoTokenizer.from_pretrained(..., use_fast=True))"
        )


def vocab_byte_lengths(tokenizer) -> torch.Tensor:
    """(V,) long: how many bytes of text each vocabulary id stands for; special tokens 0 (cached per tokenizer).

    Byte-level entries count their GPT-2 byte symbols ('Ã' and '©' are one byte each of 'é');
    SentencePiece byte-fallback pieces ``<0xE9>`` one byte; other entries the UTF-8 length of their
    surface text ('▁' read as a space).
    """
    check_fast(tokenizer)
    size = len(tokenizer)
    try:
        cached = _VOCAB_BYTES.get(tokenizer)
    except TypeError:  # not weak-referenceable: no cache
        cached = None
    if cached is not None and cached.numel() == size:
        return cached
    byte_level = is_byte_level(tokenizer)
    table = byte_decoder()
    specials = set(getattr(tokenizer, "all_special_ids", []))
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    out = torch.zeros(size, dtype=torch.long, device="cpu")  # a table of the vocabulary, kept on the CPU
    for i, tok in enumerate(tokens):
        if i in specials or tok is None:
            continue
        if byte_level and all(ch in table for ch in tok):
            out[i] = len(tok)
        elif _BYTE_FALLBACK.match(tok):
            out[i] = 1
        else:
            out[i] = len(normalized_token(tok, False).encode("utf-8"))
    try:
        _VOCAB_BYTES[tokenizer] = out
    except TypeError:
        pass
    return out


def token_byte_lengths(tokenizer, ids) -> list[int]:
    """Bytes of text each token of ``ids`` (one sequence) stands for, via :func:`vocab_byte_lengths`."""
    table = vocab_byte_lengths(tokenizer)
    x = torch.as_tensor(ids)
    if x.dim() != 1 or x.is_floating_point() or x.dtype == torch.bool:
        raise ValueError(f"ids must be a 1-D sequence of integer token ids, got shape {tuple(x.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= table.numel()):
        raise ValueError(f"ids contain values outside the vocabulary [0, {table.numel()})")
    return table[x.long()].tolist()


def batch_token_bytes(tokenizer, ids, valid) -> torch.Tensor:
    """(B, L) long: each token's byte length (see :func:`vocab_byte_lengths`), 0 where ``valid`` is False."""
    table = vocab_byte_lengths(tokenizer)
    x = torch.as_tensor(ids)
    v = torch.as_tensor(valid)
    if x.dim() != 2 or x.is_floating_point() or x.dtype == torch.bool:
        raise ValueError(f"ids must be a (batch, length) tensor of integer token ids, got shape {tuple(x.shape)}")
    if tuple(v.shape) != tuple(x.shape):
        raise ValueError(f"valid has shape {tuple(v.shape)} but ids have {tuple(x.shape)}")
    v = v.bool()
    x = torch.where(v, x.long(), torch.zeros_like(x, dtype=torch.long))
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= table.numel()):
        raise ValueError(f"ids contain values outside the vocabulary [0, {table.numel()})")
    return torch.where(v, table[x], torch.zeros_like(x))
