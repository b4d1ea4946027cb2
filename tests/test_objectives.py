"""The one objective layer (uldviz.train): both loops' paths give the same term, value and gradient; the shuffled
control, label smoothing, empty pairings, options a loss ignores, and the one batch type."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from uldviz.distill import DistillConfig, make_objective, run_config
from uldviz.io.corpus import load_corpus
from uldviz.io.models import tiny_causal_lm
from uldviz.io.tokenizers import offline_tokenizers
from uldviz.maths.losses import uld_loss
from uldviz.scale.config import ScaleConfig
from uldviz.scale.data import Example, encode_examples
from uldviz.train.batch import encode_batch
from uldviz.train.objectives import TERMS, Objective, pair_positions, shuffle_rows

TEXTS = ["The name is bound to an object here, naïve café.", "Identifiers and keywords are names.",
         "A function definition is an executable statement."]


@pytest.fixture(scope="module")
def toks():
    return offline_tokenizers()  # (student Unigram, teacher byte-level BPE)


@pytest.fixture(scope="module")
def models(toks):
    student = tiny_causal_lm(len(toks.student), n_layer=1, n_embd=32, n_head=2, n_positions=96, seed=0)
    teacher = tiny_causal_lm(len(toks.teacher), n_layer=1, n_embd=32, n_head=2, n_positions=96, seed=1).eval()
    same = tiny_causal_lm(len(toks.teacher), n_layer=1, n_embd=32, n_head=2, n_positions=96, seed=0)
    return student, teacher, same


def _loss_and_grad(objective, model, teacher, batch, pairs, ce_count=None, distill_count=None):
    model.zero_grad()
    sums = objective.sums(model, teacher, batch, pairs)
    loss = objective.loss(sums, ce_count, distill_count)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


LOSSES = [dict(loss="uld", align="offset"), dict(loss="uld", align="positional"), dict(loss="uld", top_k=8),
          dict(loss="uld", shuffle_teacher=True), dict(loss="hybrid"), dict(loss="hybrid", divergence="jsd"),
          dict(loss="hybrid", shuffle_teacher=True), dict(loss="chunk", chunk_tau=10.0), dict(loss="xtoken-pkl"),
          dict(loss="xtoken-hkl"), dict(loss="xtoken-pkl", shuffle_teacher=True),
          dict(loss="ce", label_smoothing=0.1)]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda d: "-".join(f"{v}" for v in d.values()))
def test_both_loops_objective_paths_give_the_same_term_value_and_gradient(toks, models, loss):
    """The notebooks' loop (a window batch, divided per batch) and the scale-out loop (examples with empty prompts,
    divided by the counts it would reduce across processes) run the same term on the same batch."""
    student, teacher, _ = models
    dcfg = DistillConfig(**loss, lam=0.7, n_positions=96, device="cpu")
    scfg = ScaleConfig(**loss, lam=0.7, student="s", max_tokens=96)
    setup = type("S", (), {"student_tokenizer": toks.student, "teacher_tokenizer": toks.teacher})
    d_obj, s_obj = make_objective(dcfg, setup), Objective(scfg, toks.student, toks.teacher,
                                                            student_vocab=len(toks.student),
                                                            teacher_vocab=len(toks.teacher))
    assert d_obj.term is s_obj.term is TERMS[loss["loss"]]
    d_batch = encode_batch(TEXTS, toks.student, toks.teacher, student_len=96, teacher_len=96)
    s_batch = encode_examples([Example("", t) for t in TEXTS], [0, 1, 2], toks.student, toks.teacher, 96)
    assert torch.equal(d_batch.student_answer, s_batch.student_answer)  # the label mask = an empty prompt's mask
    d_pairs, s_pairs = d_obj.pair(d_batch), s_obj.pair(s_batch)
    n_ce, n_d = s_obj.counts(s_batch, s_pairs)
    d_loss, d_grad = _loss_and_grad(d_obj, student, teacher, d_batch, d_pairs)
    s_loss, s_grad = _loss_and_grad(s_obj, student, teacher, s_batch, s_pairs, n_ce, n_d)
    assert n_d == (d_pairs.count if d_pairs is not None else 0) and (loss["loss"] == "ce" or n_d > 5)
    assert s_loss.item() == pytest.approx(d_loss.item(), rel=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(d_grad, s_grad))


def test_kl_on_one_tokenizer_equals_the_position_by_position_kl(toks, models):
    _, teacher, same = models
    obj = make_objective(run_config("kl-same@1", DistillConfig(n_positions=96)),
                         type("S", (), {"student_tokenizer": toks.student, "teacher_tokenizer": toks.teacher}))
    batch = encode_batch(TEXTS, toks.teacher, toks.teacher, student_len=96, teacher_len=96)
    sums = obj.sums(same, teacher, batch, obj.pair(batch))
    s = same(input_ids=batch.student_ids, attention_mask=batch.student_valid.long()).logits
    t = teacher(input_ids=batch.teacher_ids, attention_mask=batch.teacher_valid.long()).logits
    m = batch.student_answer
    want = F.kl_div(torch.log_softmax(s[m], -1), torch.softmax(t[m], -1), reduction="sum")
    assert sums.distill.item() == pytest.approx(want.item(), rel=1e-5) and sums.distill_count == int(m.sum())


def test_shuffle_rows_keeps_the_multiset_and_changes_the_pairing():
    x = torch.randn(40, 4)
    y = shuffle_rows(x, torch.Generator().manual_seed(0))
    assert sorted(map(tuple, x.tolist())) == sorted(map(tuple, y.tolist()))
    assert (x != y).any(-1).float().mean() > 0.5
    p, t = shuffle_rows((x, x[:, 0]), torch.Generator().manual_seed(0))  # tuples (a cache's probs and tail) together
    assert torch.equal(p, y) and torch.equal(t, y[:, 0])


def test_the_shuffled_control_compares_each_student_row_with_another_rows_teacher(toks, models):
    student, teacher, _ = models
    setup = type("S", (), {"student_tokenizer": toks.student, "teacher_tokenizer": toks.teacher})
    batch = encode_batch(TEXTS, toks.student, toks.teacher, student_len=96, teacher_len=96)
    plain = make_objective(run_config("uld-offset@1", DistillConfig(n_positions=96, seed=3)), setup)
    shuffled = make_objective(run_config("uld-shuffled@1", DistillConfig(n_positions=96, seed=3)), setup)
    pairs = plain.pair(batch)
    with torch.no_grad():
        a = plain.sums(student, teacher, batch, pairs).distill
        b = shuffled.sums(student, teacher, batch, pairs).distill
        s = student(input_ids=batch.student_ids, attention_mask=batch.student_valid.long()).logits
        t = teacher(input_ids=batch.teacher_ids, attention_mask=batch.teacher_valid.long()).logits
    perm = torch.randperm(pairs.count, generator=torch.Generator().manual_seed(2003))  # the control's own seed
    want = uld_loss(s[pairs.sample, pairs.student], t[pairs.sample, pairs.teacher][perm], reduction="sum")
    assert b.item() == pytest.approx(want.item(), rel=1e-6)
    assert a.item() == pytest.approx(uld_loss(s[pairs.sample, pairs.student], t[pairs.sample, pairs.teacher],
                                              reduction="sum").item(), rel=1e-6)


def test_label_smoothing_is_torchs(toks, models):
    student, _, _ = models
    obj = Objective(run_config("ce-ls@0.1", DistillConfig()), toks.student)
    batch = encode_batch(TEXTS[:2], toks.student, None, student_len=96)
    sums = obj.sums(student, None, batch, obj.pair(batch))
    logits = student(input_ids=batch.student_ids, attention_mask=batch.student_valid.long()).logits[:, :-1]
    labels = batch.student_ids[:, 1:].masked_fill(~batch.student_answer[:, :-1], -100)
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), label_smoothing=0.1)
    assert obj.loss(sums).item() == pytest.approx(want.item(), rel=1e-6) and sums.distill_count == 0


def test_an_empty_pairing_is_a_zero_that_carries_a_gradient(toks, models):
    student, teacher, _ = models
    obj = Objective(ScaleConfig(student="s", loss="uld"), toks.student, toks.teacher)
    batch = encode_examples([Example("A prompt with no answer", "")], [0], toks.student, toks.teacher, 96)
    pairs = obj.pair(batch)
    assert pairs.count == 0
    sums = obj.sums(student, teacher, batch, pairs)
    assert sums.distill.item() == 0 and sums.distill.requires_grad
    obj.loss(sums).backward()
    assert all(p.grad is not None for p in student.parameters())
    assert pair_positions(batch, "positional").count == 0


@pytest.mark.parametrize("changes,match", [
    (dict(loss="hybrid", align="positional"), "does not use align"),
    (dict(loss="chunk", top_k=16), "does not use top_k"),
    (dict(loss="uld", chunk_tau=5.0), "does not use chunk_tau"),
    (dict(loss="uld", divergence="jsd"), "does not use divergence"),
    (dict(loss="kl", same_tokenizer=True, shuffle_teacher=True), "shuffled-teacher control"),
    (dict(loss="ce", shuffle_teacher=True), "shuffled-teacher control"),
    (dict(loss="wasserstein"), "loss must be one of"),
    (dict(loss="uld", divergence="tv"), "divergence must be one of"),
])
def test_an_option_a_loss_would_ignore_is_refused(changes, match):
    with pytest.raises(ValueError, match=match):
        DistillConfig(**changes)
    with pytest.raises(ValueError, match=match):
        ScaleConfig(student="s", **{k: v for k, v in changes.items() if k != "same_tokenizer"})


def test_a_term_that_needs_a_teacher_says_so(toks, models):
    student, _, _ = models
    obj = Objective(DistillConfig(loss="uld"), toks.student, toks.teacher)
    batch = encode_batch(TEXTS[:1], toks.student, toks.teacher, student_len=96, teacher_len=96)
    with pytest.raises(ValueError, match="needs a teacher"):
        obj.sums(student, None, batch, obj.pair(batch))


def test_windows_of_the_corpus_give_one_batch_for_both_loops(toks):
    text = load_corpus()[:4000]
    windows = [text[i:i + 160] for i in range(0, 1600, 160)]
    a = encode_batch(windows, toks.student, toks.teacher, student_len=128, teacher_len=128)
    b = encode_examples([Example("", w) for w in windows], list(range(10)), toks.student, toks.teacher, 128)
    for name in ("student_ids", "student_valid", "student_offsets", "student_answer", "teacher_answer"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.student_answer[:, :-1], a.student_valid[:, :-1] & a.student_valid[:, 1:])
    moved = replace(a).to("cpu")
    assert moved.texts == a.texts and torch.equal(moved.student_ids, a.student_ids)
