"""Device-true by construction, proven on a CPU: every objective of both loops, and both loops' entry points, run
with the kit's device-less factory calls sent to ``meta`` (tests/devicecheck.py), and give the plain run's values."""

from __future__ import annotations

from dataclasses import replace

import helpers
import pytest
import torch
from devicecheck import StrayFactories

from uldviz.distill import DistillConfig, run_config, train
from uldviz.io.models import tiny_causal_lm
from uldviz.io.tokenizers import offline_tokenizers
from uldviz.scale.data import Example, encode_examples
from uldviz.train.batch import encode_batch
from uldviz.train.objectives import Objective

TEXTS = ["The café serves naïve lambda expressions 🙂 to every identifier.", "An identifier is a name; keywords too.",
         "A function definition is an executable statement."]


@pytest.fixture(scope="module")
def kit():
    toks = offline_tokenizers()
    student = tiny_causal_lm(len(toks.student), n_layer=1, n_embd=32, n_head=2, n_positions=96, seed=0)
    teacher = tiny_causal_lm(len(toks.teacher), n_layer=1, n_embd=32, n_head=2, n_positions=96, seed=1).eval()
    same = tiny_causal_lm(len(toks.teacher), n_layer=1, n_embd=32, n_head=2, n_positions=96, seed=2)
    return toks, student, teacher, same


def _step(objective, student, teacher, batch):
    """One step of the objective as a loop runs it: pair on the CPU batch, sums, loss, backward."""
    student.zero_grad()
    pairs = objective.pair(batch)
    loss = objective.loss(objective.sums(student, teacher, batch, pairs))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in student.parameters()]


CASES = [dict(loss="ce"), dict(loss="ce", label_smoothing=0.1), dict(loss="uld", align="offset"),
         dict(loss="uld", align="positional"), dict(loss="uld", top_k=8), dict(loss="uld", shuffle_teacher=True),
         dict(loss="hybrid"), dict(loss="hybrid", divergence="jsd"), dict(loss="hybrid", shuffle_teacher=True),
         dict(loss="chunk"), dict(loss="chunk", shuffle_teacher=True), dict(loss="xtoken-pkl"),
         dict(loss="xtoken-hkl"), dict(loss="xtoken-pkl", shuffle_teacher=True)]


@pytest.mark.parametrize("loop", ["distill", "scale"])
@pytest.mark.parametrize("case", CASES, ids=lambda d: "-".join(str(v) for v in d.values()))
def test_every_objective_of_both_loops_makes_no_tensor_off_its_inputs_device(kit, case, loop):
    toks, student, teacher, _ = kit
    if loop == "distill":
        cfg = DistillConfig(**case, device="cpu", n_positions=96)
        batch = encode_batch(TEXTS, toks.student, toks.teacher, student_len=96, teacher_len=96)
    else:
        from uldviz.scale.config import ScaleConfig

        cfg = ScaleConfig(**case, student="s", max_tokens=96)
        batch = encode_examples([Example("Q: ", t) for t in TEXTS], [0, 1, 2], toks.student, toks.teacher, 96)
    plain = _step(Objective(cfg, toks.student, toks.teacher), student, teacher, batch)
    with StrayFactories():
        checked = _step(Objective(cfg, toks.student, toks.teacher), student, teacher, batch)
    assert torch.equal(plain[0], checked[0])
    assert all(torch.equal(a, b) for a, b in zip(plain[1], checked[1]))


def test_kl_on_one_tokenizer_makes_no_tensor_off_its_inputs_device(kit):
    toks, _, teacher, same = kit
    cfg = run_config("kl-same@1", DistillConfig(n_positions=96))
    batch = encode_batch(TEXTS, toks.teacher, toks.teacher, student_len=96, teacher_len=96)
    plain = _step(Objective(cfg, toks.teacher, toks.teacher), same, teacher, batch)
    with StrayFactories():
        checked = _step(Objective(cfg, toks.teacher, toks.teacher), same, teacher, batch)
    assert torch.equal(plain[0], checked[0])


def test_the_teacher_cache_path_makes_no_tensor_off_its_inputs_device(kit, tmp_path):
    from uldviz.scale.cache import TeacherCache, write_teacher_cache
    from uldviz.scale.config import ScaleConfig

    toks, student, teacher, _ = kit
    examples = [Example("", t) for t in TEXTS]
    shards = write_teacher_cache(teacher, toks.teacher, toks.student, examples, tmp_path, k=8, max_tokens=96)
    (tmp_path / "cache.json").write_text(__import__("json").dumps(
        {"format": "uldviz-teacher-topk-cache/1", "k": 8, "shards": shards}))
    cfg = ScaleConfig(student="s", loss="uld", top_k=8, max_tokens=96)
    batch = encode_examples(examples, [0, 1, 2], toks.student, None, 96)
    plain = _step(Objective(cfg, toks.student, cache=TeacherCache(tmp_path)), student, None, batch)
    with StrayFactories():
        checked = _step(Objective(cfg, toks.student, cache=TeacherCache(tmp_path)), student, None, batch)
    assert torch.equal(plain[0], checked[0]) and plain[0] > 0


@pytest.mark.parametrize("spec", ["uld-offset@1", "hybrid-shuffled@1", "chunk-lik@3", "xtoken-pkl@1", "ce-ls@0.1"])
def test_the_notebooks_live_training_runs_device_true(spec):
    """``distill.train`` (notebooks 03 and 04's live runs) under the check, a few steps: the same result."""
    setup = helpers.tiny_setup()
    cfg = run_config(spec, helpers.tiny_config(steps=3))
    plain = train(cfg, setup, sample_prompt=None)
    with StrayFactories():
        checked = train(cfg, setup, sample_prompt=None)
    assert checked.train_ce == plain.train_ce and checked.test_selected == plain.test_selected


def test_the_scale_loop_runs_device_true(tmp_path):
    """``python -m uldviz train`` on the toy pair (hybrid, two micro-batches, a worker process) under the check."""
    pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState

    from uldviz.io.corpus import load_corpus
    from uldviz.scale import ScaleConfig
    from uldviz.scale import train as scale_train
    from uldviz.scale.toy import save_toy_pair

    save_toy_pair(tmp_path / "pair", "tiny")
    (tmp_path / "text.txt").write_text(load_corpus()[:8000], encoding="utf-8")
    base = ScaleConfig(teacher=str(tmp_path / "pair" / "teacher"), student=str(tmp_path / "pair" / "student"),
                       data=[str(tmp_path / "text.txt")], window_chars=300, max_tokens=64, steps=2, batch_size=2,
                       grad_accum=2, lr=3e-3, warmup_steps=1, eval_every=2, eval_chars=1000, eval_block=32,
                       save_every=0, cpu=True, progress=False, workers=0, loss="hybrid", out_dir=str(tmp_path / "a"))
    AcceleratorState._reset_state(True)
    plain = scale_train(base)
    AcceleratorState._reset_state(True)
    with StrayFactories():
        checked = scale_train(replace(base, out_dir=str(tmp_path / "b")))
    AcceleratorState._reset_state(True)
    assert [h["loss"] for h in checked.history] == [h["loss"] for h in plain.history]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
@pytest.mark.parametrize("case", CASES, ids=lambda d: "-".join(str(v) for v in d.values()))
def test_every_objective_on_cuda_equals_the_cpu(kit, case):
    """The real thing where a GPU is lent: the same step on CUDA, value and gradient close to the CPU's."""
    import copy

    toks, student, teacher, _ = kit
    cfg = DistillConfig(**case, device="cuda", n_positions=96)
    batch = encode_batch(TEXTS, toks.student, toks.teacher, student_len=96, teacher_len=96)
    cpu = _step(Objective(cfg, toks.student, toks.teacher), student, teacher, batch)
    s_gpu, t_gpu = copy.deepcopy(student).cuda(), copy.deepcopy(teacher).cuda()
    obj = Objective(cfg, toks.student, toks.teacher)
    pairs = obj.pair(batch)
    gpu_batch, gpu_pairs = batch.to("cuda"), (pairs.to("cuda") if pairs is not None else None)
    loss = obj.loss(obj.sums(s_gpu, t_gpu, gpu_batch, gpu_pairs))
    loss.backward()
    assert abs(loss.item() - cpu[0].item()) <= 1e-4 * max(1.0, abs(cpu[0].item()))
    assert all(torch.allclose(p.grad.cpu(), g, rtol=1e-3, atol=1e-5) for p, g in zip(s_gpu.parameters(), cpu[1]))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
@pytest.mark.parametrize("spec", ["uld-offset@1", "hybrid@1", "chunk-lik@3", "xtoken-pkl@1"])
def test_the_notebook_loop_trains_on_cuda_with_autocast(spec):
    """Notebooks 03/04's live runs on a GPU: autocast (bf16 where supported, else fp16 with a scaler)."""
    setup = helpers.tiny_setup()
    res = train(run_config(spec, helpers.tiny_config(steps=3, device="cuda")), setup, sample_prompt=None)
    assert res.steps_done == 3 and all(torch.isfinite(torch.tensor(res.train_distill)))
