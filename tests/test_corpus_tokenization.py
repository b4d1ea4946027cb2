"""Corpus split and tokenizer helpers: determinism, offsets round trip, vocabulary overlap, the hub path offline."""

from __future__ import annotations

import json
import time

import pytest

from uldviz.io.corpus import (
    DOC_SEPARATOR,
    load_corpus,
    load_documents,
    load_text_file,
    split_documents,
    train_val_split,
)
from uldviz.io.hub import HubUnavailableError
from uldviz.io.tokenizers import (
    load_hub_tokenizers,
    load_tokenizer,
    offline_tokenizers,
    save_tokenizer,
    train_bpe_tokenizer,
    train_unigram_tokenizer,
)
from uldviz.maths import patches as V
from uldviz.vocab.shared import SharedVocab
from uldviz.vocab.strings import (
    cut_points,
    normalized_token,
    shared_cuts,
    surface_vocab_by_id,
    token_spans,
    tokenizer_kind,
)

SAMPLES = [
    "café — naïve",
    "The \"assert\" statement  is   a convenient way.\nNext line\tand a tab.",
    "日本語 and ü, ß, “quotes” … 𝔘nicode",
]


@pytest.fixture(scope="module")
def shipped():
    """The shipped (teacher, student) tokenizers."""
    pair = offline_tokenizers()
    return pair.teacher, pair.student  # as these tests unpack them


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No hub in the tests: the hub path must fail fast and clearly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --------------------------------------------------------------------------- corpus
def test_corpus_is_deterministic_and_documents_are_unique():
    docs = load_documents()
    assert len(docs) > 50 and len(set(docs)) == len(docs)
    assert all(DOC_SEPARATOR not in d for d in docs)
    assert load_corpus() == load_corpus() == DOC_SEPARATOR.join(docs)


def test_split_is_deterministic_by_document_and_about_the_fraction():
    text = load_corpus()
    train, val = train_val_split(text, 0.1)
    assert (train, val) == train_val_split(text, 0.1)
    assert 0.07 < len(val) / len(text) < 0.13
    train_docs, val_docs = split_documents(train), split_documents(val)
    assert set(train_docs).isdisjoint(val_docs)
    # whole documents: every piece is one of the original topics, none is cut
    assert sorted(train_docs + val_docs) == sorted(load_documents())
    # held-out topics are spread over the corpus, not one block at the end
    order = {d: i for i, d in enumerate(load_documents())}
    positions = sorted(order[d] for d in val_docs)
    assert positions[0] < len(order) / 3 and positions[-1] > 2 * len(order) / 3


def test_split_of_plain_text_uses_paragraphs_then_lines():
    text = "para one.\n\npara two.\n\npara three.\n\npara four."
    train, val = train_val_split(text, 0.3)
    assert train and val and "\n\n" in train
    assert sorted(split_documents(train) + split_documents(val)) == sorted(text.split("\n\n"))
    train, val = train_val_split("a\nb\nc", 0.5)
    assert set((train + "\n" + val).split("\n")) == {"a", "b", "c"}


@pytest.mark.parametrize("bad, err", [("", ValueError), ("   \n  ", ValueError), ("one line only", ValueError),
                                      (b"bytes", TypeError), (None, TypeError)])
def test_split_bad_text(bad, err):
    with pytest.raises(err):
        train_val_split(bad)


@pytest.mark.parametrize("frac", [0, 1, -0.1, 1.5])
def test_split_bad_fraction(frac):
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split("a\n\nb", frac)


def test_load_text_file(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("héllo\n\nworld", encoding="utf-8")
    assert load_text_file(p) == "héllo\n\nworld"
    with pytest.raises(FileNotFoundError):
        load_text_file(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        load_text_file(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="UTF-8|utf-8"):
        load_text_file(tmp_path / "latin1.txt")


# --------------------------------------------------------------------------- tokenizers
def test_shipped_pair_differs_in_algorithm_and_size(shipped):
    teacher, student = shipped
    assert teacher.is_fast and student.is_fast
    assert len(teacher) != len(student)
    assert teacher.eos_token == "<|endoftext|>" and teacher.pad_token is not None
    assert student.eos_token == "</s>" and student.pad_token == "<pad>"
    # byte-level: 'Ġ' marks a space; Unigram/Metaspace: '▁'
    assert any(t.startswith("Ġ") for t in teacher.get_vocab())
    assert any(t.startswith("▁") for t in student.get_vocab())
    s = "The assert statement"
    assert len(teacher(s)["input_ids"]) != len(student(s)["input_ids"]) or teacher.tokenize(s) != student.tokenize(s)


def test_tokenizer_kind_and_surface_vocabularies(shipped):
    t, s = shipped
    assert tokenizer_kind(t) == "BPE" and tokenizer_kind(s) == "Unigram"
    vt, vs = surface_vocab_by_id(t), surface_vocab_by_id(s)
    assert len(vt) == len(t) and len(vs) == len(s)
    assert " the" in vt and " the" in vs  # 'Ġthe' and '▁the' both become ' the'
    # blind id matching: id i is almost never the same string in both vocabularies
    assert V.blind_id_agreement(vt, vs)["fraction"] < 0.05


def test_cut_points_by_hand():
    a = [("ab", (0, 2)), ("c", (2, 3))]
    b = [("a", (0, 1)), ("bc", (1, 3))]
    assert cut_points(a) == {2, 3} and shared_cuts(a, b) == (1, 3)


@pytest.mark.parametrize("text", SAMPLES)
def test_offsets_round_trip(shipped, text):
    for tok in shipped:
        spans = token_spans(tok, text)
        assert spans, "no tokens"
        starts = [a for _, (a, _) in spans]
        assert starts == sorted(starts), "spans go backwards"
        assert all(0 <= a < b <= len(text) for _, (a, b) in spans)
        # every non-space character is covered by some token
        covered = set()
        for _, (a, b) in spans:
            covered.update(range(a, b))
        assert all(i in covered for i, ch in enumerate(text) if not ch.isspace() or ch == "\n")


def test_byte_level_surface_strings(shipped):
    teacher, _ = shipped
    text = "café — naïve"
    spans = token_spans(teacher, text)
    # without multi-byte splits the byte-level token decodes exactly to text[start:end]
    for tok_str, (a, b) in spans:
        surface = normalized_token(tok_str, byte_level=True)
        if surface == "":
            # a partial UTF-8 character spells no text; its offsets cover the whole character it belongs to
            assert b - a >= 1 and any(ord(c) > 127 for c in text[a:b])
        else:
            assert surface == text[a:b]
    assert teacher.decode(teacher(text)["input_ids"]) == text


def test_unigram_surface_strings_and_decode(shipped):
    _, student = shipped
    text = "café — naïve"
    for tok_str, (a, b) in token_spans(student, text):
        assert tok_str.replace("▁", " ") == text[a:b]
    assert student.decode(student(text)["input_ids"]) == text


def test_token_spans_errors(shipped):
    with pytest.raises(ValueError, match="empty"):
        token_spans(shipped[0], "")
    with pytest.raises(TypeError):
        token_spans(shipped[0], 42)


def test_trainers_are_deterministic_and_check_input():
    text = load_corpus()[:60_000]
    a, b = train_bpe_tokenizer(text, 400), train_bpe_tokenizer(text, 400)
    assert a.get_vocab() == b.get_vocab() and len(a) == 400
    u, v = train_unigram_tokenizer(text, 300), train_unigram_tokenizer(text, 300)
    assert u.get_vocab() == v.get_vocab() and len(u) == 300
    with pytest.raises(ValueError, match="empty"):
        train_bpe_tokenizer("  ", 400)
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe_tokenizer(text, 10)
    with pytest.raises(ValueError, match="vocab_size"):
        train_unigram_tokenizer(text, 5)
    with pytest.raises(TypeError):
        train_unigram_tokenizer(text, 300.0)


def _overlap(student, teacher) -> dict:
    return SharedVocab.from_tokenizers(student, teacher).overlap()


def test_vocab_overlap_values(shipped):
    teacher, student = shipped
    same = _overlap(teacher, teacher)
    assert same["iou"] == 1.0 and same["shared"] == same["union"] == same["student_strings"]
    ov = _overlap(student, teacher)
    half = sum(normalized_token(t, True) == "" for t in teacher.get_vocab())  # pieces of a multi-byte character
    # distinct texts: no specials, no half characters (the teacher's vocabulary spells each text once)
    assert half > 0 and ov["teacher_strings"] == len(teacher) - 1 - half and ov["student_strings"] == len(student) - 3
    assert ov["union"] == ov["student_strings"] + ov["teacher_strings"] - ov["shared"]
    assert ov["iou"] == pytest.approx(ov["shared"] / ov["union"])
    assert 0.05 < ov["iou"] < 0.8
    sym = _overlap(teacher, student)
    assert sym["iou"] == ov["iou"] and sym["student_strings"] == ov["teacher_strings"]


def test_vocab_overlap_maps_space_markers():
    """A hand-made case: 'Ġthe' (byte level) and '▁the' (Metaspace) are the same surface ' the'."""
    assert normalized_token("Ġthe", byte_level=True) == " the"
    assert normalized_token("▁the", byte_level=False) == " the"
    assert normalized_token("Ã©", byte_level=True) == "é"
    assert normalized_token("Ã", byte_level=True) == ""  # byte 0xC3, half of a character: spells no text
    text = "the cat the dog the end " * 50
    bpe = train_bpe_tokenizer(text, 270)
    uni = train_unigram_tokenizer(text, 120)
    ov = _overlap(uni, bpe)
    a = {normalized_token(t, True) for t in bpe.get_vocab() if t not in bpe.all_special_tokens} - {""}
    b = {t.replace("▁", " ") for t in uni.get_vocab() if t not in uni.all_special_tokens}
    assert ov["shared"] == len(a & b) > 0
    assert ov["iou"] == pytest.approx(len(a & b) / len(a | b))


# --------------------------------------------------------------------------- hub path
def test_hub_path_with_local_save_pretrained(tmp_path, shipped):
    teacher, student = shipped
    teacher.save_pretrained(tmp_path / "t")
    student.save_pretrained(tmp_path / "s")
    s2, t2 = load_hub_tokenizers(tmp_path / "s", str(tmp_path / "t"))
    text = SAMPLES[0]
    assert t2(text)["input_ids"] == teacher(text)["input_ids"]
    assert token_spans(s2, text) == token_spans(student, text)
    assert _overlap(s2, t2) == _overlap(student, teacher)


def test_hub_name_offline_fails_fast_and_clearly():
    t0 = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="nobody-here/no-such-tokenizer") as info:
        load_tokenizer("nobody-here/no-such-tokenizer")
    assert time.perf_counter() - t0 < 10
    assert "offline_tokenizers" in str(info.value)
    assert isinstance(info.value, OSError)
    with pytest.raises(HubUnavailableError):
        load_hub_tokenizers("gpt2-but-not-cached-xyz", "also-missing-xyz")


def test_load_tokenizer_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        load_tokenizer("")
    with pytest.raises(TypeError):
        load_tokenizer(3)
    with pytest.raises(ValueError, match="save_pretrained"):
        load_tokenizer(tmp_path)  # an empty directory


def test_save_tokenizer_is_portable_and_round_trips(tmp_path, shipped):
    teacher, _ = shipped
    save_tokenizer(teacher, tmp_path / "t")
    cfg = json.loads((tmp_path / "t" / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"  # a class transformers 4.x knows too
    again = load_tokenizer(tmp_path / "t")
    assert token_spans(again, SAMPLES[2]) == token_spans(teacher, SAMPLES[2])
    assert again.eos_token == teacher.eos_token and again.pad_token == teacher.pad_token


def test_hub_module_offline_switch_and_name_checks(monkeypatch):
    from uldviz.io import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_is_offline() and hub.resolve_local_only("some/name", None)
    assert hub.resolve_local_only("some/name", False) is False
    with pytest.raises(TypeError, match="name_or_path"):
        hub.check_name(3)
    with pytest.raises(ValueError, match="empty"):
        hub.check_name("  ")
    err = hub.unavailable_error("model", "x/y", True, OSError("not cached"), "the offline pair")
    assert isinstance(err, HubUnavailableError) and isinstance(err, OSError)
    assert "x/y" in str(err) and "offline" in str(err) and "the offline pair" in str(err)
