"""Masked logits never make NaN, low precision stays within 1 % of float32, and the scale loop trains in the
precision the launcher asked for."""

from __future__ import annotations

import pytest
import torch

from uldviz.io.tokenizers import offline_tokenizers
from uldviz.maths.identity import (
    chunk_likelihood_loss,
    chunk_log_likelihoods,
    generalized_jsd,
    generalized_kl,
    hybrid_uld_loss,
    merged_group_logprobs,
)
from uldviz.maths.losses import uld_loss
from uldviz.maths.xtoken import projected_kl
from uldviz.vocab.projection import Projection
from uldviz.vocab.shared import SharedVocab

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _masked(shape, dtype, columns, seed=0):
    """Random logits with the given vocabulary columns set to -inf (a padded head, a banned token)."""
    z = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3
    z[..., columns] = float("-inf")
    return z.to(dtype).requires_grad_(True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_uld_with_masked_columns_is_finite_in_value_and_gradient(dtype):
    s, t = _masked((4, 50), dtype, [3, 7, 49]), _masked((4, 70), dtype, [0, 60, 61], seed=1)
    loss = uld_loss(s, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("divergence", ["gkl", "jsd"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_hybrid_with_a_shared_string_both_models_mask_is_finite(dtype, divergence):
    """The regression: JSD gave NaN gradients where both sides give probability 0 to a shared string, and the
    generalised KL +inf where only the student does. Shared pairs (0, 0), (1, 1), (2, 2): string 0 masked on both
    sides, string 1 masked on the student's only."""
    shared = SharedVocab.from_vocabs({"a": 0, "b": 1, "c": 2, "x": 3}, {"a": 0, "b": 1, "c": 2, "y": 3, "z": 4})
    s = _masked((5, 6), dtype, [0, 1])
    t = _masked((5, 5), dtype, [0], seed=1)
    loss = hybrid_uld_loss(torch.log_softmax(s.float(), -1), torch.log_softmax(t.float(), -1), shared,
                           divergence=divergence)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all() and not s.grad[:, :2].any()


def test_the_floor_departs_from_the_exact_value_only_where_it_is_infinite():
    import math

    p = torch.tensor([[0.5, 0.5]], dtype=torch.float64).log()
    q = torch.tensor([[0.6, 0.4]], dtype=torch.float64).log()
    exact = 0.5 * math.log(0.5 / 0.6) + 0.5 * math.log(0.5 / 0.4)
    assert float(generalized_kl(student_logprobs=q, teacher_logprobs=p)) == pytest.approx(exact, rel=1e-12)
    zero = torch.tensor([[0.0, float("-inf")]], dtype=torch.float64)  # the student gives string 2 probability 0
    floored = 0.5 * math.log(0.5) + 0.5 * math.log(0.5 / 1e-8)  # read as 1e-8 there; the rest exact
    assert float(generalized_kl(student_logprobs=zero, teacher_logprobs=p)) == pytest.approx(floored, rel=1e-12)
    both = torch.tensor([[0.0, float("-inf")]], requires_grad=True)
    jsd = generalized_jsd(student_logprobs=both, teacher_logprobs=torch.tensor([[0.0, float("-inf")]]))
    jsd.backward()
    assert float(jsd) == pytest.approx(0.0, abs=1e-12) and torch.isfinite(both.grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunk_likelihood_and_pkl_with_masked_columns_are_finite(dtype):
    ids = torch.tensor([[0, 2, 4, 5, 2, 3]])
    z = _masked((1, 6, 8), dtype, [6, 7])  # padded columns no token uses
    t = _masked((1, 6, 8), dtype, [1], seed=1)
    sample, start, end = torch.tensor([0, 0]), torch.tensor([1, 3]), torch.tensor([3, 6])
    ll_s = chunk_log_likelihoods(z, ids, sample, start, end)
    ll_t = chunk_log_likelihoods(t, ids, sample, start, end)
    loss = chunk_likelihood_loss(ll_s, ll_t)
    w = Projection(torch.arange(6), torch.arange(6), torch.ones(6), 8, 8)  # columns 6, 7 map nowhere
    ms = merged_group_logprobs(z, ids, sample, start, end)
    mt = merged_group_logprobs(t, ids, sample, start, end)
    pkl = projected_kl(ms, mt, w).sum()
    (loss + pkl).backward()
    assert torch.isfinite(loss) and torch.isfinite(pkl) and torch.isfinite(z.grad).all()


def test_cpu_autocast_bf16_keeps_every_term_within_one_percent_of_float32():
    """The terms as the loop runs them under autocast (student and teacher forwards in bfloat16, the kit's
    softmaxes promoted to float32, the sorted-L1 custom op included) against the same step in float32."""
    from uldviz.distill import DistillConfig, make_objective
    from uldviz.io.models import tiny_causal_lm
    from uldviz.train.batch import encode_batch

    toks = offline_tokenizers()
    setup = type("S", (), {"student_tokenizer": toks.student, "teacher_tokenizer": toks.teacher})
    student = tiny_causal_lm(len(toks.student), n_layer=1, n_embd=64, n_head=2, n_positions=96, seed=0)
    teacher = tiny_causal_lm(len(toks.teacher), n_layer=1, n_embd=64, n_head=2, n_positions=96, seed=1).eval()
    batch = encode_batch(["The name is bound to an object here, naïve café.", "Identifiers and keywords."],
                         toks.student, toks.teacher, student_len=96, teacher_len=96)
    for loss in ("uld", "hybrid", "chunk", "xtoken-pkl", "xtoken-hkl"):
        obj = make_objective(DistillConfig(loss=loss), setup)
        pairs = obj.pair(batch)
        with torch.no_grad():
            full = obj.sums(student, teacher, batch, pairs).distill
            with torch.autocast("cpu", dtype=torch.bfloat16):
                half = obj.sums(student, teacher, batch, pairs).distill
        assert half.dtype == torch.float32 and abs(half.item() / full.item() - 1) < 0.01, loss


def test_the_scale_loop_trains_in_the_launchers_precision(tmp_path, monkeypatch):
    """`accelerate launch --mixed_precision bf16` (the environment it sets) is no longer overridden by an explicit
    "no": without --bf16 the run is bf16, --no-bf16 overrides, and result.json records what was used."""
    pytest.importorskip("accelerate")
    import json

    from accelerate.state import AcceleratorState

    from uldviz.io.corpus import load_corpus
    from uldviz.scale import ScaleConfig, train
    from uldviz.scale.toy import save_toy_pair

    save_toy_pair(tmp_path / "pair", "tiny")
    (tmp_path / "text.txt").write_text(load_corpus()[:6000], encoding="utf-8")
    cfg = dict(teacher=str(tmp_path / "pair" / "teacher"), student=str(tmp_path / "pair" / "student"),
               data=[str(tmp_path / "text.txt")], window_chars=300, max_tokens=48, steps=1, batch_size=2,
               warmup_steps=0, eval_every=5, eval_chars=500, eval_block=32, cpu=True, progress=False, workers=0)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    for flag, want in ((None, "bf16"), (False, "no")):
        AcceleratorState._reset_state(True)
        res = train(ScaleConfig(**cfg, bf16=flag, out_dir=str(tmp_path / f"run_{want}")))
        assert res.mixed_precision == want
        assert json.loads((tmp_path / f"run_{want}" / "result.json").read_text())["mixed_precision"] == want
    AcceleratorState._reset_state(True)
