"""X-Token in the kit: W from string rules, P-KL against its formula, H-KL's relaxed matches, and the numeral
failure of an exact partition on a pair that fragments numbers differently."""

from __future__ import annotations

import pytest
import torch

from uldviz.io.tokenizers import numeral_tokenizers, offline_tokenizers
from uldviz.maths.identity import hybrid_uld_terms
from uldviz.maths.xtoken import matched_vocab, projected_kl
from uldviz.vocab.projection import Projection, build_projection, piece_weights
from uldviz.vocab.shared import SharedVocab


@pytest.fixture(scope="module")
def numerals():
    student, teacher = numeral_tokenizers()
    return student, teacher, build_projection(student, teacher)


def _dense(w: Projection) -> torch.Tensor:
    out = torch.zeros(w.student_size, w.teacher_size, dtype=torch.float64)
    out[w.student, w.teacher] = w.weight.double()
    return out


def test_piece_weights_decay_and_sum_to_one():
    assert piece_weights(1) == [1.0]
    w = piece_weights(3)
    assert sum(w) == pytest.approx(1) and w[0] == pytest.approx(0.9 / 0.999) and w[0] > 9 * w[1] > 81 * w[2] * 0.99


def test_w_of_the_kit_pair_is_row_stochastic_sparse_and_pins_exact_strings():
    student, teacher = offline_tokenizers()
    w = build_projection(student, teacher)
    dense = _dense(w)
    rows = dense.sum(1)
    assert torch.allclose(rows[rows > 0], torch.ones_like(rows[rows > 0]), atol=1e-6)
    assert int((dense > 0).sum(1).max()) <= 4
    shared = SharedVocab.from_tokenizers(student, teacher)
    assert torch.equal(dense[shared.student_ids, shared.teacher_ids], torch.ones(len(shared), dtype=torch.float64))
    assert not rows[list(student.all_special_ids)].any()  # special tokens map nowhere


def test_the_numeral_pair_fragments_numbers_as_llama_and_qwen_do(numerals):
    student, teacher, w = numerals
    text = "In the year 2026 there were 201 apples."
    assert student.tokenize(text)[3:5] == ["202", "6"] and teacher.tokenize(text)[3:7] == ["2", "0", "2", "6"]
    multi = [student.convert_tokens_to_ids(f"{n:0{k}d}") for k in (2, 3) for n in range(10 ** k)]
    assert len(set(multi)) == 1100
    gold = SharedVocab.from_tokenizers(student, teacher)  # the exact (surface) partition GOLD uses
    assert not set(multi) & set(gold.student_ids.tolist())  # every multi-digit numeral is unmatched
    row = w.row(student.convert_tokens_to_ids("201"))
    assert list(row) == [teacher.convert_tokens_to_ids(d) for d in "201"]
    assert list(row.values()) == pytest.approx([0.9009, 0.0901, 0.0090], abs=1e-4)
    assert all(w.row(m) for m in multi)  # W sends every numeral somewhere
    relaxed = matched_vocab(w)  # H-KL: "201" -> "2" clears 0.6, but the student's own "2" (weight 1) wins "2"
    assert not set(multi) & set(relaxed.student_ids.tolist())


def test_an_exact_partition_pushes_the_right_numeral_down_and_pkl_pushes_it_up(numerals):
    """The text continues " 201"; the teacher (digit by digit) is sure of "2". A student that hedges gets, on the
    logit of "201", a positive gradient (pushed down) from the exact-partition hybrid and a negative one from P-KL."""
    student, teacher, w = numerals
    z_s = torch.zeros(1, len(student), dtype=torch.float64, requires_grad=True)
    z_t = torch.full((1, len(teacher)), -4.0, dtype=torch.float64)
    z_t[0, teacher.convert_tokens_to_ids("2")] = 4.0
    i201 = student.convert_tokens_to_ids("201")
    gold = SharedVocab.from_tokenizers(student, teacher)
    partition = hybrid_uld_terms(torch.log_softmax(z_s, -1), torch.log_softmax(z_t, -1), gold).total.sum()
    (g_partition,) = torch.autograd.grad(partition, z_s)
    (g_pkl,) = torch.autograd.grad(projected_kl(z_s, z_t, w).sum(), z_s)
    assert g_partition[0, i201] > 0 and g_pkl[0, i201] < 0
    # and a student sure of "201" is closer to the teacher under P-KL than a student sure of "7"
    sure = {tok: torch.where(torch.arange(len(student)) == student.convert_tokens_to_ids(tok), 8.0, -8.0)[None]
            for tok in ("201", "7")}
    assert projected_kl(sure["201"], z_t, w) < projected_kl(sure["7"], z_t, w)


def test_pkl_equals_its_formula_with_a_dense_w_and_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    w = Projection(torch.tensor([0, 0, 1, 2, 3]), torch.tensor([0, 1, 1, 2, 0]),
                   torch.tensor([0.75, 0.25, 1.0, 1.0, 1.0]), 5, 3)  # student 4 maps nowhere
    s = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 3, generator=g, dtype=torch.float64)
    q = torch.softmax(s, -1) @ _dense(w)
    q = q / q.sum(-1, keepdim=True)
    p = torch.softmax(t, -1)
    want = (p * (p.log() - q.log())).sum(-1)
    assert torch.allclose(projected_kl(s, t, w), want, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: projected_kl(x, t, w), (s,))


def test_a_teacher_token_no_student_token_maps_to_gives_a_finite_floored_value():
    w = Projection(torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([1.0, 1.0]), 2, 2)  # nothing -> 1
    s = torch.zeros(1, 2, requires_grad=True)
    t = torch.tensor([[0.0, 0.0]])
    value = projected_kl(s, t, w)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(s.grad).all()
    assert value.item() == pytest.approx(0.5 * (torch.log(torch.tensor(0.5)) - torch.log(torch.tensor(1e-8))).item()
                                         + 0.5 * torch.log(torch.tensor(0.5)).item(), rel=1e-5)


def test_matched_vocab_follows_the_threshold_and_the_collision_rule():
    w = Projection(torch.tensor([0, 1, 1, 2, 3, 3]), torch.tensor([0, 0, 1, 0, 2, 1]),
                   torch.tensor([1.0, 0.7, 0.3, 1.0, 0.5, 0.5]), 4, 3)
    c = matched_vocab(w)
    # teacher 0 is claimed by students 0 (1.0), 1 (0.7) and 2 (1.0): the largest weight, then the lowest id wins;
    # student 3's best weight is 0.5 < 0.6: unmatched
    assert list(zip(c.student_ids.tolist(), c.teacher_ids.tolist())) == [(0, 0)] and c.match == "projection"
    with pytest.raises(ValueError, match="threshold"):
        matched_vocab(w, threshold=0)


@pytest.mark.parametrize("bad,match", [
    (dict(student=torch.tensor([5]), teacher=torch.tensor([0]), weight=torch.tensor([1.0])), "outside"),
    (dict(student=torch.tensor([0, 0]), teacher=torch.tensor([0, 1]), weight=torch.tensor([0.5, 0.4])), "sum to 1"),
    (dict(student=torch.tensor([0]), teacher=torch.tensor([0]), weight=torch.tensor([-1.0])), ">= 0"),
])
def test_a_malformed_w_is_refused_by_name(bad, match):
    with pytest.raises(ValueError, match=match):
        Projection(**bad, student_size=3, teacher_size=2)


def test_pkl_refuses_rows_of_other_vocabularies():
    w = Projection(torch.tensor([0]), torch.tensor([0]), torch.tensor([1.0]), 3, 2)
    with pytest.raises(ValueError, match="other tokenizers"):
        projected_kl(torch.zeros(1, 4), torch.zeros(1, 2), w)


def test_logit_gradients_show_where_each_loss_pushes_the_numeral(numerals):
    from uldviz.maths.xtoken import logit_gradients

    student, teacher, w = numerals
    z_t = torch.full((1, len(teacher)), -4.0)
    z_t[0, teacher.convert_tokens_to_ids("2")] = 4.0
    g = logit_gradients(torch.zeros(1, len(student)), z_t, w, SharedVocab.from_tokenizers(student, teacher))
    i201, i2 = student.convert_tokens_to_ids("201"), student.convert_tokens_to_ids("2")
    assert g["hybrid (exact partition)"][0, i201] > 0 and g["H-KL"][0, i201] > 0  # pushed down
    assert g["P-KL"][0, i201] < 0  # pushed up
    assert all(v[0, i2] < 0 for v in g.values())  # every loss raises the student's own "2"


def test_describe_rows_reads_w_as_text(numerals):
    from uldviz.vocab.projection import describe_rows

    student, teacher, w = numerals
    rows = describe_rows(w, student, teacher, [student.convert_tokens_to_ids(x) for x in ("201", "the")]
                         + [student.eos_token_id])
    assert rows == [["'201'", "'2' 0.901, '0' 0.090, '1' 0.009"], ["'the'", "'the' 1.000"], ["''", "(maps nowhere)"]]
