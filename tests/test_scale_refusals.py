"""The scale-out refuses what would make a run drift silently, and explains in one line what it cannot do:
resume with other settings, half-written or corrupt checkpoints, a missing RNG state, another teacher's cache,
negative numbers on the command line, options a loss ignores; held-out answers are scored as the docs say; weight
decay leaves biases, norms and embeddings alone."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate", reason="the scale tests need the [scale] extra (make test installs it)")

from uldviz.io.corpus import load_corpus  # noqa: E402
from uldviz.scale import ScaleConfig, cache_teacher, train  # noqa: E402
from uldviz.scale.config import parse_and_run  # noqa: E402
from uldviz.scale.data import Example, load_examples  # noqa: E402
from uldviz.scale.toy import save_toy_pair  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("refusals")
    save_toy_pair(root / "pair", "tiny")
    (root / "text.txt").write_text(load_corpus()[:12_000], encoding="utf-8")
    return root


def config(work: Path, out: str, **changes) -> ScaleConfig:
    base = ScaleConfig(teacher=str(work / "pair" / "teacher"), student=str(work / "pair" / "student"),
                       data=[str(work / "text.txt")], window_chars=300, max_tokens=64, steps=4, batch_size=2,
                       lr=3e-3, warmup_steps=1, eval_every=10, eval_chars=1000, eval_block=32, save_every=2,
                       keep_checkpoints=5, cpu=True, progress=False, workers=0, out_dir=str(work / out))
    return replace(base, **changes)


@pytest.fixture(scope="module")
def finished(work):
    """One finished run with checkpoints at steps 2 and 4."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    res = train(config(work, "base"))
    AcceleratorState._reset_state(True)
    return res, work / "base" / "checkpoints"


def test_resuming_with_a_setting_that_changes_the_trajectory_is_refused_unless_allowed(work, finished):
    _, ckpts = finished
    ckpt = str(ckpts / "step_0000002")
    for change in (dict(lr=1e-3), dict(loss="hybrid"), dict(steps=6)):
        with pytest.raises(ValueError, match=f"--resume-allow {next(iter(change))}"):
            train(config(work, "r1", resume=ckpt, **change))
    res = train(config(work, "r2", resume=ckpt, lr=1e-3, resume_allow=["lr"]))
    saved = json.loads((work / "r2" / "result.json").read_text())
    assert res.resume_overrides == {"lr": {"checkpoint": 3e-3, "run": 1e-3}} == saved["resume_overrides"]
    assert saved["resumed_from"].endswith("step_0000002") and saved["config"]["lr"] == 1e-3


def test_latest_skips_a_half_written_checkpoint(work, finished):
    _, ckpts = finished
    partial = work / "partial" / "checkpoints"
    shutil.copytree(ckpts, partial)
    (partial / "step_0000004" / "trainer_state.json").unlink()  # the state file is written last: incomplete
    (partial / ".tmp_step_0000006").mkdir()  # an interrupted write
    from uldviz.scale.checkpoint import find_checkpoint

    assert find_checkpoint(config(work, "partial", resume="latest")).name == "step_0000002"


def test_a_missing_rng_state_is_refused_unless_allowed(work, finished):
    _, ckpts = finished
    ckpt = work / "norng"
    shutil.copytree(ckpts / "step_0000002", ckpt)
    (ckpt / "random_states_0.pkl").unlink()
    with pytest.raises(ValueError, match="random_states_0.pkl is missing"):
        train(config(work, "r3", resume=str(ckpt)))
    res = train(config(work, "r4", resume=str(ckpt), resume_allow=["rng"]))
    assert "rng" in res.resume_overrides


@pytest.mark.parametrize("name,damage", [("model.safetensors", b"\x00\x01 truncated"),
                                         ("optimizer.bin", b"this is not a checkpoint")])
def test_a_corrupt_checkpoint_file_is_one_line_naming_it(work, finished, capsys, name, damage):
    _, ckpts = finished
    ckpt = work / f"bad_{name}"
    shutil.copytree(ckpts / "step_0000002", ckpt)
    (ckpt / name).write_bytes(damage)
    with pytest.raises(ValueError, match=f"{name}.* is unreadable"):
        train(config(work, "r5", resume=str(ckpt)))
    argv = ["--teacher", str(work / "pair" / "teacher"), "--student", str(work / "pair" / "student"), "--data",
            str(work / "text.txt"), "--max-tokens", "64", "--window-chars", "300", "--steps", "4", "--batch-size",
            "2", "--eval-chars", "1000", "--eval-block", "32", "--cpu", "--no-progress", "--workers", "0",
            "--lr", "3e-3", "--warmup-steps", "1", "--resume", str(ckpt), "--out-dir", str(work / "r6")]
    assert parse_and_run(ScaleConfig, train, argv, "python -m uldviz train", "") == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in err


def test_a_cache_of_another_teacher_is_refused_and_the_result_names_the_caches_teacher(work, tmp_path):
    cfg = config(work, "cache_run", top_k=8, teacher_cache=str(tmp_path / "cache"), save_every=0, steps=1)
    cache_teacher(cfg)
    with pytest.raises(ValueError, match="teacher"):
        train(replace(cfg, teacher=str(work / "pair" / "student")))  # another model named as the teacher
    res = train(replace(cfg, teacher=""))
    assert res.teacher == cfg.teacher


def test_negative_numbers_parse_as_values_and_are_refused_by_name(capsys):
    code = parse_and_run(ScaleConfig, lambda c: 0, ["--student", "s", "--lr", "-1e-3"], "train", "")
    err = capsys.readouterr().err
    assert code == 2 and "lr must be a finite number > 0, got -0.001" in err and "usage" not in err


def test_an_option_a_loss_ignores_is_refused(capsys):
    assert parse_and_run(ScaleConfig, lambda c: 0, ["--student", "s", "--loss", "hybrid", "--align", "positional"],
                         "train", "") == 2
    assert "does not use align" in capsys.readouterr().err


def test_held_out_examples_are_scored_on_their_answers(work, tmp_path):
    from accelerate import Accelerator

    from uldviz.scale.evaluate import answer_nll, distributed_bits_per_byte, held_out_blocks
    from uldviz.scale.loading import load_student

    rows = [{"prompt": "Question: what is a name? Answer:", "completion": " an identifier bound to an object."},
            {"prompt": "Say it:", "completion": " the assert statement checks a condition."}]
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = config(work, "answers", val_data=str(val))
    _, held = load_examples(cfg)
    assert held.text == "" and [e.answer for e in held.examples] == [r["completion"] for r in rows]
    model, tok = load_student(cfg)
    acc = Accelerator(cpu=True)
    bpb = distributed_bits_per_byte(acc, model, tok, held, held_out_blocks(tok, "", 32, 4, 1), 4, 64)
    nll, n_bytes = answer_nll(model, tok, held.examples, 4, 64, "cpu")
    assert n_bytes == sum(len(r["completion"].encode()) for r in rows)
    assert bpb == pytest.approx(nll / (torch.log(torch.tensor(2.0)).item() * n_bytes))
    whole = Example("", rows[0]["prompt"] + rows[0]["completion"])  # what the old scoring measured
    assert answer_nll(model, tok, [whole], 4, 64, "cpu")[1] > len(rows[0]["completion"].encode())


def test_weight_decay_skips_biases_norms_and_embeddings():
    from uldviz.io.models import tiny_causal_lm
    from uldviz.train.schedule import decay_groups

    model = tiny_causal_lm(50, n_layer=1, n_embd=16, n_head=2, n_positions=16)
    decayed, kept = decay_groups(model, 0.1, "matrices")
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.1 and kept["weight_decay"] == 0.0
    assert all(p.dim() >= 2 and "wte" not in names[id(p)] and "wpe" not in names[id(p)] for p in decayed["params"])
    assert {n for n in names.values() if n.endswith("bias") or ".ln_" in n or "wte" in n} <= {
        names[id(p)] for p in kept["params"]}
    assert len(decay_groups(model, 0.1, "all")) == 1
