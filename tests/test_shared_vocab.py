"""The shared-vocabulary map: hand-made vocabularies, a stub tokenizer, and the kit's real pair."""

from __future__ import annotations

import pytest
import torch

from uldviz.io.tokenizers import offline_tokenizers
from uldviz.vocab.shared import SharedVocab, surface_vocab
from uldviz.vocab.strings import byte_decoder


@pytest.fixture(scope="module")
def toks():
    pair = offline_tokenizers()
    return pair.teacher, pair.student  # (teacher byte-level BPE, student Unigram), as these tests unpack them


def test_from_vocabs_keeps_the_common_strings_in_teacher_id_order():
    sv = SharedVocab.from_vocabs({"a": 0, " the": 1, "x": 2}, {"y": 0, "a": 3, " the": 5})
    assert sv.strings == ["a", " the"]
    assert sv.student_ids.tolist() == [0, 1] and sv.teacher_ids.tolist() == [3, 5]
    assert (sv.student_size, sv.teacher_size, len(sv), sv.num_shared) == (3, 6, 2, 2)
    assert sv.summary()["share_of_teacher"] == pytest.approx(2 / 6)


def test_from_vocabs_with_nothing_in_common_is_empty():
    sv = SharedVocab.from_vocabs({"a": 0}, {"b": 0})
    assert len(sv) == 0 and sv.student_ids.dtype == torch.long


class StubTokenizer:
    """Enough of a tokenizer for surface_vocab: a vocabulary, special ids, no byte-level backend."""

    def __init__(self, vocab, specials=()):
        self._vocab, self.all_special_ids = vocab, list(specials)

    def get_vocab(self):
        return dict(self._vocab)

    def __len__(self):
        return len(self._vocab)


def test_views_mask_mass_and_overlap():
    sv = SharedVocab.from_vocabs({" the": 0, " dog": 1, " sun": 2}, {" dog": 0, " the": 1, "x": 2, "y": 3})
    assert sv.mask("teacher").tolist() == [True, True, False, False]
    assert sv.mask("student", size=5).tolist() == [True, True, False, False, False]  # a wider logits row
    assert sv.unshared_ids("teacher", 4).tolist() == [2, 3]
    probs = torch.tensor([[0.5, 0.2, 0.3, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert sv.mass("teacher", probs).tolist() == pytest.approx([0.7, 0.0])
    assert sv.overlap() == {"student_strings": 3, "teacher_strings": 4, "shared": 2, "union": 5, "iou": 0.4}
    with pytest.raises(ValueError, match="smaller than the largest"):
        sv.mask("teacher", size=1)
    with pytest.raises(ValueError, match="side"):
        sv.mask("both")


def test_surface_vocab_normalises_drops_specials_and_keeps_the_lowest_id():
    tok = StubTokenizer({"</s>": 0, "▁the": 4, " the": 2, "a": 1, "<pad>": 3}, specials=[0, 3])
    assert surface_vocab(tok) == {" the": 2, "a": 1}


def test_kit_pair_overlap(toks):
    teacher, student = toks
    sv = SharedVocab.from_tokenizers(student, teacher)
    s_surface, t_surface = surface_vocab(student), surface_vocab(teacher)
    assert len(sv) == len(set(s_surface) & set(t_surface))
    assert 100 < len(sv) < min(len(s_surface), len(t_surface))
    assert (sv.student_size, sv.teacher_size) == (len(student), len(teacher))
    # each pair spells the same text; no special token on either side
    s_tokens = student.convert_ids_to_tokens(sv.student_ids.tolist())
    assert all(tok.replace("▁", " ") == w for tok, w in zip(s_tokens, sv.strings))
    for i, w in zip(sv.teacher_ids.tolist(), sv.strings):
        assert teacher.decode([i]) == w
    assert not set(sv.student_ids.tolist()) & set(student.all_special_ids)
    assert not set(sv.teacher_ids.tolist()) & set(teacher.all_special_ids)
    assert " the" in sv.strings  # 'Ġthe' and '▁the' meet as ' the'


def test_partial_utf8_bytes_never_match(toks):
    # the teacher's single-byte entry for 0xE9 is written 'é' in GPT-2's byte map, but it is not the letter é
    teacher, student = toks
    symbol = next(ch for ch, b in byte_decoder().items() if b == 0xE9)
    assert symbol == "é" and symbol in teacher.get_vocab() and "é" in surface_vocab(student)
    sv = SharedVocab.from_tokenizers(student, teacher)
    assert teacher.convert_tokens_to_ids(symbol) not in sv.teacher_ids.tolist()
    assert "é" not in surface_vocab(teacher) or teacher.decode([surface_vocab(teacher)["é"]]) == "é"


@pytest.mark.parametrize("kwargs, match", [
    (dict(student_ids=torch.tensor([0, 1]), teacher_ids=torch.tensor([0]), strings=["a"]), "same length"),
    (dict(student_ids=torch.tensor([0, 0]), teacher_ids=torch.tensor([0, 1]), strings=["a", "b"]), "one-to-one"),
    (dict(student_ids=torch.tensor([5]), teacher_ids=torch.tensor([0]), strings=["a"], student_size=3), "outside"),
    (dict(student_ids=torch.tensor([-1]), teacher_ids=torch.tensor([0]), strings=["a"]), "negative"),
    (dict(student_ids=torch.tensor([0]), teacher_ids=torch.tensor([0]), strings=[]), "strings"),
    (dict(student_ids=torch.tensor([0.0]), teacher_ids=torch.tensor([0]), strings=["a"]), "integer"),
])
def test_bad_shared_vocab(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SharedVocab(**kwargs)


def test_bad_vocab_arguments():
    with pytest.raises(TypeError, match="dict"):
        SharedVocab.from_vocabs(["a"], {"a": 0})
    with pytest.raises(ValueError, match="empty"):
        SharedVocab.from_vocabs({}, {"a": 0})
    with pytest.raises(TypeError, match="tokenizer"):
        surface_vocab(object())


def test_unshared_ids_are_the_complement_in_id_order_built_once():
    sv = SharedVocab.from_vocabs({"a": 0, "b": 2, "c": 3}, {"b": 1, "c": 4, "d": 0})
    assert sv.unshared_ids("student", 5).tolist() == [0, 1, 4]
    assert sv.unshared_ids("teacher", 6).tolist() == [0, 2, 3, 5]
    assert sv.unshared_ids("teacher", 6) is sv.unshared_ids("teacher", 6)  # kept, not rebuilt each step
    with pytest.raises(ValueError, match="side must be"):
        sv.unshared_ids("both", 5)


def test_the_special_token_rule_on_a_pair_that_shares_endoftext():
    """Two tokenizers that both have the special <|endoftext|>: surface matching never shares it (it spells no
    text); TRL GOLD's raw matching does, and also pairs the byte symbol 'é' with the character 'é'."""
    student = StubTokenizer({"<|endoftext|>": 0, " the": 1, "é": 2, "cat": 3}, specials=[0])
    teacher = StubTokenizer({"<|endoftext|>": 0, "Ġthe": 1, "é": 2, "dog": 3, "the": 4}, specials=[0])
    teacher_is_byte_level = SharedVocab.from_vocabs  # the stub has no backend: pass its surface strings by hand
    surface = teacher_is_byte_level(surface_vocab(student), {" the": 1, "dog": 3, "the": 4})
    assert "<|endoftext|>" not in surface.strings and surface.strings == [" the"]
    raw = SharedVocab.from_tokenizers(student, teacher, match="raw")
    assert raw.strings == ["<|endoftext|>", "é"] and raw.match == "raw"
    with pytest.raises(ValueError, match="match"):
        SharedVocab.from_tokenizers(student, teacher, match="exact")


def test_the_special_token_rule_on_the_kit_pair(toks):
    teacher, student = toks
    for match in ("surface", "raw"):
        sv = SharedVocab.from_tokenizers(student, teacher, match=match)
        specials_t = set(teacher.all_special_ids)
        assert not specials_t & set(sv.teacher_ids.tolist()) or match == "raw"
    raw, surface = (SharedVocab.from_tokenizers(student, teacher, match=m) for m in ("raw", "surface"))
    symbols = {ch for ch, b in byte_decoder().items() if b >= 0x80}  # bytes >= 0x80 as GPT-2 writes them
    false_pairs = [w for w in raw.strings if len(w) == 1 and w in symbols]
    assert false_pairs and not set(false_pairs) & set(surface.strings)  # raw pairs half characters; surface never


def test_compare_matchings_counts_the_raw_and_surface_pairs_and_the_false_byte_matches():
    """TRL 1.16's raw matching (its ULDLoss finds 235 pairs here) against the kit's surface matching, pair by pair."""
    from uldviz.vocab.shared import compare_matchings

    pair = offline_tokenizers()
    m = compare_matchings(pair.student, pair.teacher)
    assert (len(m["raw"]), len(m["surface"]), len(m["both"])) == (235, 299, 176)
    assert (len(m["raw_only"]), len(m["surface_only"])) == (59, 123)
    # every raw-only pair is a GPT-2 byte symbol of one byte >= 0x80 meeting a real Latin-1 character
    assert len(m["byte_symbols"]) == 59 and all(b >= 0x80 for _, b, _, _ in m["byte_symbols"])
    e_acute = [x for x in m["byte_symbols"] if x[0] == "é"]
    assert e_acute and e_acute[0][1] == 0xE9 and "é".encode() == b"\xc3\xa9"  # 'é' is C3 A9, not the byte E9
    assert (pair.student.convert_tokens_to_ids("▁the"), pair.teacher.convert_tokens_to_ids("Ġthe"), " the") in \
        m["surface_only"]
