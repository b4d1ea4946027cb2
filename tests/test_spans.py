"""Span alignment by UTF-8 byte offsets: hand-made cases, the kit's real tokenizers, corpus-window properties."""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from uldviz.alignment.spans import (
    SpanAlignment,
    align_spans,
    char_to_byte,
    group_byte_spans,
    span_groups,
    utf8_byte_spans,
)
from uldviz.io.corpus import load_corpus
from uldviz.io.tokenizers import offline_tokenizers
from uldviz.vocab.strings import batch_token_bytes, byte_decoder, token_byte_lengths, vocab_byte_lengths


@pytest.fixture(scope="module")
def toks():
    pair = offline_tokenizers()
    return pair.teacher, pair.student  # (teacher byte-level BPE, student Unigram), as these tests unpack them


def encode(tok, texts, max_len=10_000):
    """Rows ``[eos] + tokens`` right-padded, as the training batch builds them: ids, valid, character offsets."""
    enc = tok(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    rows = [([tok.eos_token_id] + ids)[:max_len] for ids in enc["input_ids"]]
    offs = [([(0, 0)] + list(o))[:max_len] for o in enc["offset_mapping"]]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    offsets = torch.zeros(len(rows), width, 2, dtype=torch.long)
    for b, (r, o) in enumerate(zip(rows, offs)):
        ids[b, :len(r)] = torch.tensor(r)
        valid[b, :len(r)] = True
        offsets[b, :len(r)] = torch.tensor(o)
    return ids, valid, offsets


def tokens_and_spans(tok, text):
    """(token strings, exact byte spans) of ``text`` under ``tok`` (no special tokens)."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = utf8_byte_spans(text, enc["offset_mapping"], token_byte_lengths(tok, enc["input_ids"]))
    return tok.convert_ids_to_tokens(enc["input_ids"]), spans


def grouped_tokens(s_tokens, t_tokens, groups):
    return [(s_tokens[a:b], t_tokens[c:d]) for (a, b), (c, d) in groups]


# ---------------------------------------------------------------- bytes of characters and tokens
def test_char_to_byte_counts_utf8_lengths():
    assert char_to_byte("ab").tolist() == [0, 1, 2]
    assert char_to_byte("aé🙂—b").tolist() == [0, 1, 3, 7, 10, 11]
    assert char_to_byte("").tolist() == [0]


def test_utf8_byte_spans_without_shared_characters_is_a_plain_conversion():
    assert utf8_byte_spans("né le", [(0, 2), (2, 5)]) == [(0, 3), (3, 6)]


def test_utf8_byte_spans_splits_a_shared_character_by_token_bytes():
    # 'é' (2 bytes) in two byte-level tokens: both carry the character span (3, 4)
    assert utf8_byte_spans("café", [(0, 3), (3, 4), (3, 4)], [3, 1, 1]) == [(0, 3), (3, 4), (4, 5)]
    # one token holding 'a' and the first byte of 'é', the next one the second byte: spans overlap, not equal
    assert utf8_byte_spans("aé", [(0, 2), (1, 2)], [2, 1]) == [(0, 2), (2, 3)]


def test_utf8_byte_spans_extra_bytes_go_into_a_gap_before_the_run():
    # offsets left the leading space out of a split token (" é" = 3 bytes, offsets (1, 2) twice)
    assert utf8_byte_spans("a é", [(0, 1), (2, 3), (2, 3)], [1, 2, 1]) == [(0, 1), (1, 3), (3, 4)]


@pytest.mark.parametrize("offsets, token_bytes, match", [
    ([(0, 3), (3, 4), (3, 4)], None, "pass token_bytes"),
    ([(0, 3), (3, 4), (3, 4)], [3, 1, 2], "does not add up"),
    ([(0, 3), (3, 4), (3, 4)], [3, 0, 1], "does not add up"),
    ([(0, 3), (3, 9)], None, "outside the text"),
    ([(0, 3), (4, 3)], None, "end is before its start"),
    ([(-1, 3)], None, "outside the text"),
    ([(0, 3), (3, 4)], [1], "one entry per token"),
    ([(0, 1.5)], None, "integer"),
    ([0, 1, 2], None, r"\(start, end\) pairs"),
])
def test_utf8_byte_spans_bad_input(offsets, token_bytes, match):
    with pytest.raises((ValueError, TypeError), match=match):
        utf8_byte_spans("café", offsets, token_bytes)


def test_vocab_byte_lengths_of_the_kit_tokenizers(toks):
    teacher, student = toks
    tb = vocab_byte_lengths(teacher)
    assert tb.shape == (len(teacher),) and int(tb[teacher.eos_token_id]) == 0
    assert token_byte_lengths(teacher, teacher("café", add_special_tokens=False)["input_ids"]) == [1, 1, 1, 1, 1]
    # GPT-2 symbols: 'Ġthe'-style entries count the space byte
    ids = teacher(" the", add_special_tokens=False)["input_ids"]
    assert sum(token_byte_lengths(teacher, ids)) == 4
    sb = vocab_byte_lengths(student)
    assert all(int(sb[i]) == 0 for i in student.all_special_ids)
    assert token_byte_lengths(student, student(" é", add_special_tokens=False)["input_ids"]) in ([3], [1, 2])
    assert vocab_byte_lengths(teacher) is tb  # cached


def test_batch_token_bytes_masks_padding(toks):
    teacher, _ = toks
    ids, valid, _ = encode(teacher, ["a", "café au lait"])
    tb = batch_token_bytes(teacher, ids, valid)
    assert tb.shape == ids.shape
    assert tb[0, 2:].eq(0).all() and int(tb[0, 0]) == 0 and int(tb[0, 1]) == 1
    assert int(tb[1].sum()) == len("café au lait".encode())


def test_a_tokenizer_without_offsets_is_refused():
    class SlowTokenizer:  # what a Python ("slow") tokenizer looks like here: no offsets mapping
        is_fast = False

    with pytest.raises(TypeError, match="not a fast tokenizer"):
        vocab_byte_lengths(SlowTokenizer())
    with pytest.raises(TypeError, match="not a fast tokenizer"):
        batch_token_bytes(SlowTokenizer(), torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool))


# ---------------------------------------------------------------- groups, hand-made
def test_one_to_one():
    spans = [(0, 3), (3, 7)]
    assert span_groups(spans, spans) == [((0, 1), (0, 1)), ((1, 2), (1, 2))]


def test_one_to_many_both_ways():
    one, two = [(0, 7)], [(0, 3), (3, 7)]
    assert span_groups(one, two) == [((0, 1), (0, 2))]
    assert span_groups(two, one) == [((0, 2), (0, 1))]


def test_many_to_many_closes_only_where_both_sides_end():
    # student "ca|tch", teacher "cat|ch": no common end inside, one group
    assert span_groups([(0, 2), (2, 5)], [(0, 3), (3, 5)]) == [((0, 2), (0, 2))]


def test_leading_space_left_out_of_offsets_joins_the_next_group():
    # "the cat": the student's offsets leave the space out of '▁cat' (a gap at byte 3)
    student, teacher = [(0, 3), (4, 7)], [(0, 3), (3, 7)]
    groups = span_groups(student, teacher)
    assert groups == [((0, 1), (0, 1)), ((1, 2), (1, 2))]
    assert group_byte_spans(student, teacher, groups) == [(0, 3), (3, 7)]


def test_zero_width_tokens_skipped_at_the_start_and_joining_the_open_group_elsewhere():
    student = [(0, 0), (0, 3), (3, 3), (3, 7)]
    teacher = [(0, 0), (0, 3), (3, 7)]
    assert span_groups(student, teacher) == [((1, 2), (1, 2)), ((2, 4), (2, 3))]


def test_end_of_a_truncated_window_is_dropped():
    # "hello world": the teacher row was cut after 'hello wo'; the student's ' world' has no partner end
    assert span_groups([(0, 5), (5, 11)], [(0, 5), (5, 8)]) == [((0, 1), (0, 1))]
    # a trailing zero-width token (an appended eos) is not a group either
    assert span_groups([(0, 5), (5, 5)], [(0, 5)]) == [((0, 1), (0, 1))]
    assert span_groups([(0, 5)], [(0, 2)]) == []


@pytest.mark.parametrize("student, teacher, match", [
    ([], [(0, 1)], "student_spans is empty"),
    ([(0, 1)], [], "teacher_spans is empty"),
    ([(0, 3), (1, 2)], [(0, 3)], "never go backwards"),
    ([(0, 3)], [(2, 1)], "end is before its start"),
])
def test_span_groups_bad_input(student, teacher, match):
    with pytest.raises(ValueError, match=match):
        span_groups(student, teacher)


# ---------------------------------------------------------------- the kit's real tokenizers
def test_multibyte_character_split_by_the_byte_level_teacher(toks):
    teacher, student = toks
    t_tok, t_spans = tokens_and_spans(teacher, "café")
    s_tok, s_spans = tokens_and_spans(student, "café")
    assert t_tok[-2:] == ["Ã", "©"] and t_spans[-2:] == [(3, 4), (4, 5)]
    assert s_tok[-1] == "é" and s_spans[-1] == (3, 5)
    groups = span_groups(s_spans, t_spans)
    assert grouped_tokens(s_tok, t_tok, groups)[-1] == (["é"], ["Ã", "©"])
    enc = teacher("café", add_special_tokens=False, return_offsets_mapping=True)
    with pytest.raises(ValueError, match="pass token_bytes"):
        utf8_byte_spans("café", enc["offset_mapping"])


def test_emoji_four_bytes_against_the_students_unk(toks):
    teacher, student = toks
    text = "I 🙂 you"
    t_tok, t_spans = tokens_and_spans(teacher, text)
    s_tok, s_spans = tokens_and_spans(student, text)
    groups = span_groups(s_spans, t_spans)
    emoji = [g for g in grouped_tokens(s_tok, t_tok, groups) if len(g[1]) == 4]
    assert emoji == [(["<unk>"], ["ð", "Ł", "Ļ", "Ĥ"])]
    assert group_byte_spans(s_spans, t_spans, groups)[2] == (2, 6)


def test_leading_spaces_of_the_unigram_student(toks):
    teacher, student = toks
    text = "café au lait"
    s_tok, s_spans = tokens_and_spans(student, text)
    t_tok, t_spans = tokens_and_spans(teacher, text)
    pairs = grouped_tokens(s_tok, t_tok, span_groups(s_spans, t_spans))
    assert (["▁a"], ["Ġa"]) in pairs and (["▁", "l", "a"], ["Ġla"]) in pairs


def _check_tiling(text, s_spans, t_spans, groups, t_ids, teacher):
    """Groups tile the covered text identically on both sides; teacher tokens spell exactly the group's bytes."""
    raw = text.encode()
    table = byte_decoder()
    t_strings = teacher.convert_ids_to_tokens(t_ids)
    spans = group_byte_spans(s_spans, t_spans, groups)
    for ((s0, s1), (t0, t1)), (lo, hi) in zip(groups, spans):
        assert s1 > s0 and t1 > t0
        for side, a, b in ((s_spans, s0, s1), (t_spans, t0, t1)):
            assert side[a][0] == lo and side[b - 1][1] == hi
            assert all(side[i][1] == side[i + 1][0] for i in range(a, b - 1))  # contiguous inside the group
        spelled = bytes(table[ch] for tok in t_strings[t0:t1] for ch in tok)
        assert spelled == raw[lo:hi]
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))


def _windows(n, chars=160, seed=0):
    text = load_corpus()
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(text) - chars, (n,), generator=g).tolist()
    extra = "naïve café — “quoted” 🙂 Ω≈ç "
    return [text[a:a + chars] if i % 3 else (extra + text[a:a + chars]) for i, a in enumerate(starts)]


def test_property_groups_tile_corpus_windows_on_both_sides(toks):
    teacher, student = toks
    windows = _windows(30)
    for text in windows:
        s_enc = student(text, add_special_tokens=False, return_offsets_mapping=True)
        t_enc = teacher(text, add_special_tokens=False, return_offsets_mapping=True)
        s_spans = utf8_byte_spans(text, s_enc["offset_mapping"], token_byte_lengths(student, s_enc["input_ids"]))
        t_spans = utf8_byte_spans(text, t_enc["offset_mapping"], token_byte_lengths(teacher, t_enc["input_ids"]))
        groups = span_groups(s_spans, t_spans)
        assert groups, text
        _check_tiling(text, s_spans, t_spans, groups, t_enc["input_ids"], teacher)
        # untruncated: the groups cover the whole text, every token is in a group
        assert group_byte_spans(s_spans, t_spans, groups)[-1][1] == len(text.encode())
        assert groups[-1][0][1] == len(s_spans) and groups[-1][1][1] == len(t_spans)


# ---------------------------------------------------------------- batches
def test_align_spans_matches_span_groups_row_by_row_and_starts_after_the_eos(toks):
    teacher, student = toks
    texts = _windows(8, seed=1)
    si, sv, so = encode(student, texts, max_len=90)  # truncated rows: each side's window ends elsewhere
    ti, tv, to = encode(teacher, texts, max_len=60)
    al = align_spans(texts, so, sv, to, tv, batch_token_bytes(student, si, sv), batch_token_bytes(teacher, ti, tv))
    assert isinstance(al, SpanAlignment) and al.num_groups > 8 * 20
    assert al.student_start.min() >= 1 and al.teacher_start.min() >= 1
    for b, text in enumerate(texts):
        n_s, n_t = int(sv[b].sum()), int(tv[b].sum())
        s_spans = utf8_byte_spans(text, so[b, 1:n_s], token_byte_lengths(student, si[b, 1:n_s]))
        t_spans = utf8_byte_spans(text, to[b, 1:n_t], token_byte_lengths(teacher, ti[b, 1:n_t]))
        expected = [((a + 1, c + 1), (d + 1, e + 1)) for (a, c), (d, e) in span_groups(s_spans, t_spans)]
        assert al.groups(b) == expected
        _check_tiling(text, s_spans, t_spans, span_groups(s_spans, t_spans), ti[b, 1:n_t].tolist(), teacher)
        assert int(al.student_end[al.sample == b].max()) <= n_s and int(al.teacher_end[al.sample == b].max()) <= n_t
        # byte spans of the batch result: the text of each group is spelled by its teacher tokens
        keep = al.sample == b
        for lo, hi, t0, t1 in zip(al.byte_start[keep].tolist(), al.byte_end[keep].tolist(),
                                  al.teacher_start[keep].tolist(), al.teacher_end[keep].tolist()):
            strings = teacher.convert_ids_to_tokens(ti[b, t0:t1].tolist())
            assert bytes(byte_decoder()[ch] for s in strings for ch in s) == text.encode()[lo:hi]


def test_align_spans_is_fast_enough_for_a_training_step(toks):
    teacher, student = toks
    texts = _windows(16, seed=2)
    si, sv, so = encode(student, texts, 128)
    ti, tv, to = encode(teacher, texts, 128)
    align_spans(texts, so, sv, to, tv, batch_token_bytes(student, si, sv), batch_token_bytes(teacher, ti, tv))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        align_spans(texts, so, sv, to, tv, batch_token_bytes(student, si, sv), batch_token_bytes(teacher, ti, tv))
        times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 0.05  # measured ~2.5 ms on the dev machine; generous for shared CPUs


def test_align_spans_drops_groups_no_position_predicts():
    # no eos at index 0: the first group starts at token 0 and cannot be predicted
    off = torch.tensor([[[0, 3], [3, 7]]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    al = align_spans(["the cat"], off, valid, off, valid)
    assert al.groups(0) == [((1, 2), (1, 2))]
    assert al.byte_start.tolist() == [3] and al.byte_end.tolist() == [7]


def test_span_alignment_groups_display_and_bad_index():
    off = torch.tensor([[[0, 0], [0, 3], [3, 7]]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    al = align_spans(["the cat"], off, valid, off, valid)
    assert al.groups(0) == [((1, 2), (1, 2)), ((2, 3), (2, 3))]
    with pytest.raises(IndexError, match="sample index"):
        al.groups(1)
    assert al.to("cpu").num_groups == 2


def _batch():
    off = torch.tensor([[[0, 0], [0, 3], [3, 7]]])
    return off, torch.ones(1, 3, dtype=torch.bool)


@pytest.mark.parametrize("change, match", [
    (lambda a: {**a, "texts": ["the cat", "a dog"]}, "2 texts but student_offsets have batch 1"),
    (lambda a: {**a, "texts": []}, "texts is empty"),
    (lambda a: {**a, "texts": "the cat"}, "list of str"),
    (lambda a: {**a, "student_valid": torch.ones(1, 2, dtype=torch.bool)}, "student_valid has shape"),
    (lambda a: {**a, "teacher_offsets": torch.zeros(1, 3, 2)}, "integer character offsets"),
    (lambda a: {**a, "teacher_offsets": torch.zeros(1, 3, 3, dtype=torch.long)}, r"\(batch, length, 2\)"),
    (lambda a: {**a, "texts": ["cat"]}, "sample 0, student side: .*outside the text"),
    (lambda a: {**a, "student_valid": torch.tensor([[True, False, True]])}, "holes"),
    (lambda a: {**a, "teacher_token_bytes": torch.zeros(1, 5, dtype=torch.long)}, "teacher_token_bytes has shape"),
])
def test_align_spans_bad_input(change, match):
    off, valid = _batch()
    args = dict(texts=["the cat"], student_offsets=off, student_valid=valid, teacher_offsets=off.clone(),
                teacher_valid=valid)
    with pytest.raises((ValueError, TypeError), match=match):
        align_spans(**change(args))


def test_align_spans_with_no_common_token_end_says_so():
    off, valid = _batch()  # student ends 3, 7
    other = torch.tensor([[[0, 0], [0, 5], [5, 6]]])  # teacher ends 5, 6: not the same text's tokens
    with pytest.raises(ValueError, match="no group of tokens closes"):
        align_spans(["the cat"], off, valid, other, valid)
