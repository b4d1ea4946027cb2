"""Position alignment: the paper's positional pairing and character-offset pairing, on hand-made cases."""

from __future__ import annotations

import pytest
import torch

from uldviz.alignment.positions import (
    PositionAlignment,
    alignment_rows,
    gather_pairs,
    offset_pairing,
    positional_pairing,
    prediction_offsets,
)
from uldviz.maths.losses import uld_loss


def spans_to_offsets(*rows):
    """Pad lists of (start, end) to a (B, L, 2) tensor plus a validity mask."""
    width = max(len(r) for r in rows)
    off = torch.zeros(len(rows), width, 2, dtype=torch.long)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for b, r in enumerate(rows):
        off[b, : len(r)] = torch.tensor(r)
        valid[b, : len(r)] = True
    return off, valid


# ---------------------------------------------------------------- positional (the paper's)
def test_positional_pairs_by_index_and_truncates():
    sm = torch.tensor([[0, 1, 1, 1, 0]], dtype=torch.bool)
    tm = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    al = positional_pairing(sm, tm)
    assert al.pairs(0) == [(1, 0), (2, 1)]


def test_positional_rejects_empty():
    with pytest.raises(ValueError, match="no position can be paired"):
        positional_pairing(torch.zeros(1, 3, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool))


# ---------------------------------------------------------------- prediction offsets
def test_prediction_offsets_next_token_definition():
    # "the cat": position i predicts token i+1, i.e. text starting where token i ended
    off, valid = spans_to_offsets([(0, 3), (3, 7)])
    assert prediction_offsets(off, valid).tolist() == [[3, -1]]  # the last token predicts nothing in the text


def test_prediction_offsets_partial_utf8_bytes():
    # "café ok" in byte-level tokens: "é" is 2 bytes, both tokens carry the character range (3, 4)
    teacher = [(0, 3), (3, 4), (3, 4), (4, 7)]
    off, valid = spans_to_offsets(teacher)
    # position 1 ends in the middle of "é": the next token continues the same character -> no prediction point
    assert prediction_offsets(off, valid).tolist() == [[3, -1, 4, -1]]


def test_prediction_offsets_emoji_four_bytes():
    # "a🙂b": the emoji is 4 byte tokens sharing the range (1, 2)
    off, valid = spans_to_offsets([(0, 1), (1, 2), (1, 2), (1, 2), (1, 2), (2, 3)])
    assert prediction_offsets(off, valid).tolist() == [[1, -1, -1, -1, 2, -1]]


def test_prediction_offsets_eos_start_and_padding():
    # [eos] has offsets (0, 0) and predicts the text from character 0; padding never predicts
    off, valid = spans_to_offsets([(0, 0), (0, 2), (2, 5)], [(0, 0), (0, 4)])
    assert prediction_offsets(off, valid).tolist() == [[0, 2, -1], [0, -1, -1]]


def test_prediction_offsets_bad_input():
    with pytest.raises(ValueError, match="shape"):
        prediction_offsets(torch.zeros(2, 3, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        prediction_offsets(torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="end offset is before"):
        prediction_offsets(torch.tensor([[[3, 1]]]))


# ---------------------------------------------------------------- offset pairing
def test_offset_pairing_simple_known_pairs():
    # text "the cat sat": student [the][ cat][ sat], teacher [th][e][ c][at][ sat]
    student = [(0, 3), (3, 7), (7, 11)]
    teacher = [(0, 2), (2, 3), (3, 5), (5, 7), (7, 11)]
    s, sv = spans_to_offsets(student)
    t, tv = spans_to_offsets(teacher)
    al = offset_pairing(s, t, sv, tv)
    # student "the" (pos 0) and teacher "e" (pos 1) both predict text from char 3; "cat"/"at" from char 7
    assert al.pairs(0) == [(0, 1), (1, 3)]


def test_offset_pairing_tokens_that_split_a_range_differently():
    # "abcd ef": student [ab][cd][ ef], teacher [a][bc][d][ e][f]: only char 4 is a boundary of both
    s, sv = spans_to_offsets([(0, 2), (2, 4), (4, 7)])
    t, tv = spans_to_offsets([(0, 1), (1, 3), (3, 4), (4, 6), (6, 7)])
    al = offset_pairing(s, t, sv, tv)
    assert al.pairs(0) == [(1, 2)]
    assert al.num_pairs == 1


def test_offset_pairing_partial_utf8_never_pairs_mid_character():
    # "café ok": student [caf][é][ ok] (characters), teacher [caf][Ã][©][ ok] (bytes of é)
    s, sv = spans_to_offsets([(0, 3), (3, 4), (4, 7)])
    t, tv = spans_to_offsets([(0, 3), (3, 4), (3, 4), (4, 7)])
    al = offset_pairing(s, t, sv, tv)
    # student "caf" <-> teacher "caf" (both predict from char 3); student "é" <-> teacher "©" (from char 4).
    # Teacher position 1 (first byte of é) is mid-character and stays unpaired.
    assert al.pairs(0) == [(0, 0), (1, 2)]


def test_offset_pairing_emoji_split_over_bytes():
    # "a🙂 b": student [a][🙂][ b], teacher [a][4 byte tokens][ b]
    s, sv = spans_to_offsets([(0, 1), (1, 2), (2, 4)])
    t, tv = spans_to_offsets([(0, 1), (1, 2), (1, 2), (1, 2), (1, 2), (2, 4)])
    al = offset_pairing(s, t, sv, tv)
    assert al.pairs(0) == [(0, 0), (1, 4)]


def test_offset_pairing_robust_to_trimmed_leading_space():
    # teacher leaves the leading space out of " cat" (offsets (4, 7)); student includes it (3, 7)
    s, sv = spans_to_offsets([(0, 0), (0, 3), (3, 7), (7, 8)])
    t, tv = spans_to_offsets([(0, 0), (0, 3), (4, 7), (7, 8)])
    al = offset_pairing(s, t, sv, tv)
    assert al.pairs(0) == [(0, 0), (1, 1), (2, 2)]


def test_offset_pairing_batch_with_padding_and_masks():
    s, sv = spans_to_offsets([(0, 2), (2, 4), (4, 6)], [(0, 1), (1, 2)])
    t, tv = spans_to_offsets([(0, 4), (4, 6)], [(0, 1), (1, 2), (2, 3)])
    al = offset_pairing(s, t, sv, tv)
    assert al.pairs(0) == [(1, 0)]
    assert al.pairs(1) == [(0, 0)]
    assert al.mask.tolist() == [[True], [True]]


def test_offset_pairing_no_common_point_is_a_clear_error():
    s, sv = spans_to_offsets([(0, 2), (2, 4)])
    t, tv = spans_to_offsets([(0, 1), (1, 4)])
    with pytest.raises(ValueError, match="same text"):
        offset_pairing(s, t, sv, tv)


def test_offset_pairing_batch_mismatch():
    s, _ = spans_to_offsets([(0, 2), (2, 4)], [(0, 2), (2, 4)])
    t, _ = spans_to_offsets([(0, 2), (2, 4)])
    with pytest.raises(ValueError, match="batch"):
        offset_pairing(s, t)


def test_alignment_rows_both_ways():
    s, sv = spans_to_offsets([(0, 3), (3, 7), (7, 11)])
    t, tv = spans_to_offsets([(0, 2), (2, 3), (3, 5), (5, 7), (7, 11)])
    al = offset_pairing(s, t, sv, tv)
    srows = alignment_rows(al, ["the", " cat", " sat"], ["th", "e", " c", "at", " sat"], side="student")
    trows = alignment_rows(al, ["the", " cat", " sat"], ["th", "e", " c", "at", " sat"], side="teacher")
    assert [r["partner"] for r in srows] == [1, 3, None]
    assert [r["partner"] for r in trows] == [None, 0, None, 1, None]
    assert srows[0]["predicts"] == " cat" and srows[0]["partner_predicts"] == " c"
    with pytest.raises(ValueError, match="side"):
        alignment_rows(al, [], [], side="both")


def test_offset_pairing_on_real_tokenizers_reads_the_same_text():
    """With trained tokenizers (BPE bytes vs Unigram), every pair has read exactly the same characters."""
    from uldviz.io.tokenizers import offline_tokenizers
    from uldviz.train.batch import encode_batch
    from uldviz.train.objectives import pair_positions

    s_tok, t_tok = offline_tokenizers()
    texts = ["The café 🙂 serves crème brûlée; naïve lambda x: x**2.", "An identifier occurring as an atom is a name."]
    b = encode_batch(texts, s_tok, t_tok, student_len=128, teacher_len=128)
    al = pair_positions(b, "offset")
    assert al.count >= 10
    for k in range(len(texts)):
        here = al.sample == k
        for i, j in zip(al.student[here].tolist(), al.teacher[here].tolist()):
            s_read = s_tok.decode(b.student_ids[k, 1 : i + 1].tolist())
            t_read = t_tok.decode(b.teacher_ids[k, 1 : j + 1].tolist())
            # the Unigram student maps unknown characters to <unk>: compare lengths read, in characters
            assert int(b.student_offsets[k, i, 1]) == int(b.teacher_offsets[k, j, 1]) or i == 0 == j
            if "<unk>" not in s_read:
                assert s_read == t_read
    # positional pairing pairs the same number of positions as the shorter side, mostly different text
    pos = pair_positions(b, "positional")
    assert pos.count > al.count


def test_gather_pairs_feeds_uld_loss():
    torch.manual_seed(0)
    s, sv = spans_to_offsets([(0, 3), (3, 7), (7, 11)])
    t, tv = spans_to_offsets([(0, 2), (2, 3), (3, 5), (5, 7), (7, 11)])
    al = offset_pairing(s, t, sv, tv)
    s_logits = torch.randn(1, 3, 7, requires_grad=True)
    t_logits = torch.randn(1, 5, 11)
    ps, pt, m = gather_pairs(s_logits, t_logits, al)
    assert torch.equal(ps[0, 0], s_logits[0, 0].detach()) and torch.equal(pt[0, 1], t_logits[0, 3])
    loss = uld_loss(ps, pt, mask=m)
    manual = (uld_loss(s_logits[0, 0], t_logits[0, 1]) + uld_loss(s_logits[0, 1], t_logits[0, 3])) / 2
    assert torch.allclose(loss, manual)
    loss.backward()
    assert s_logits.grad[0, 2].abs().sum() == 0  # the unpaired last position gets no ULD gradient


def test_alignment_shape_check():
    with pytest.raises(ValueError, match="same"):
        PositionAlignment(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long),
                          torch.ones(1, 2).bool())
