"""Memory you can plan with: the formula of uldviz.scale.arithmetic with measured coefficients, their fits, the dry run
(``python -m uldviz train --dry-run``: configs only) and its refusals, and docs/scale.md holding what the code computes.

The measurements themselves are commands (``python -m uldviz.scale.measure memory|feed --write``), not tests."""

from __future__ import annotations

import json

import pytest

from uldviz.course.scale_docs import DOC, read_block, render_dry_run, render_feed, render_memory
from uldviz.scale import arithmetic as A
from uldviz.scale.config import ScaleConfig
from uldviz.scale.measure import FEED_RESULTS, LOSS_KEYS, fit_activations, fit_objective, load_coefficients, loss_key

#: Made-up coefficients: the formula is checked term by term against them.
FAKE = {
    "objective": {
        "bf16": {"uld": {"torch": {"student_bytes_per_logit": 20.0, "teacher_bytes_per_logit": 10.0},
                         "cpu": {"student_bytes_per_logit": 5.0, "teacher_bytes_per_logit": 3.0}},
                 "ce": {"torch": {"student_bytes_per_logit": 8.0, "teacher_bytes_per_logit": 0.0}}},
        "fp32": {"uld": {"torch": {"student_bytes_per_logit": 30.0, "teacher_bytes_per_logit": 15.0}}},
    },
    "activations": {"bf16": {"per_layer_per_width": 50.0, "per_width": 10.0, "per_layer_per_token_of_context": 2.0},
                    "fp32": {"per_layer_per_width": 100.0, "per_width": 20.0, "per_layer_per_token_of_context": 4.0}},
}


# --------------------------------------------------------------------------- the formula
def test_memory_formula_adds_states_activations_and_measured_logit_bytes():
    s = A.RunShape(teacher_params=1e9, student_params=1e8, teacher_vocab=100, student_vocab=50, student_layers=3,
                   student_width=64, micro_batch=2, seq_len=10, tokens=1e6)
    e = A.estimate(s, FAKE)
    assert e["teacher_weights_bytes"] == 2e9
    assert e["student_states_bytes"] == (16 + 2) * 1e8  # AdamW's fp32 states + autocast's bf16 weight copies
    assert e["activation_bytes"] == 2 * 10 * ((50 * 3 + 10) * 64 + 2 * 3 * 10)
    assert e["logits_bytes"] == 2 * 10 * (20 * 50 + 10 * 100)
    assert e["total_bytes_per_gpu"] == sum(e[k] for k in ("teacher_weights_bytes", "student_states_bytes",
                                                          "activation_bytes", "logits_bytes"))
    fp32 = A.estimate(A.RunShape(**{**s.__dict__, "bf16": False, "teacher_dtype": "float32"}), FAKE)
    assert fp32["student_states_bytes"] == 16e8 and fp32["teacher_weights_bytes"] == 4e9
    assert fp32["activation_bytes"] == 2 * 10 * ((100 * 3 + 20) * 64 + 4 * 3 * 10)
    assert fp32["logits_bytes"] == 2 * 10 * (30 * 50 + 15 * 100)
    fsdp = A.estimate(A.RunShape(**{**s.__dict__, "gpus": 8, "fsdp": True}), FAKE)
    assert fsdp["student_states_bytes"] == (16 / 8 + 2) * 1e8 and fsdp["logits_bytes"] == e["logits_bytes"]
    cpu = A.estimate(A.RunShape(**{**s.__dict__, "device": "cpu"}), FAKE)  # the CPU's numpy kernel
    assert cpu["logits_bytes"] == 2 * 10 * (5 * 50 + 3 * 100)
    ce = A.estimate(A.RunShape(**{**s.__dict__, "loss": "ce", "device": "cpu"}), FAKE)  # same code on every device
    assert ce["logits_bytes"] == 2 * 10 * 8 * 50
    assert e["flops"] == 1e6 * (2e9 + 6e8) and e["seconds"] == pytest.approx(e["flops"] / (s.peak_flops * s.mfu))
    assert A.estimate(A.RunShape(**{**s.__dict__, "gpus": 8}), FAKE)["seconds"] == pytest.approx(e["seconds"] / 8)
    assert e["cache_bytes"] == 1e6 * (3 * 64 + 8)  # q8 rows, as the cache writes them by default
    failed = {**FAKE, "objective": {**FAKE["objective"], "bf16": {"uld": {"torch": {"error": "no bf16 kernel"}}}}}
    with pytest.raises(ValueError, match="could not be measured under bf16"):  # a loss the measurement could not run
        A.estimate(s, failed)
    for bad, match in [({"loss": "wasserstein"}, "no measured memory"), ({"device": "tpu"}, "device"),
                       ({"teacher_dtype": "fp8"}, "teacher_dtype"), ({"gpus": 0}, "gpus")]:
        with pytest.raises(ValueError, match=match):
            A.estimate(A.RunShape(**{**s.__dict__, **bad}), FAKE)


def test_fits_recover_known_coefficients():
    points = [{"student_vocab": vs, "teacher_vocab": vt, "n_student": b * 7 * vs, "n_teacher": b * 5 * vt,
               "extra_bytes": 9 * b * 7 * vs + 4 * b * 5 * vt + 1000} for vs, vt in ((640, 1024), (1024, 640))
              for b in (8, 16)]
    fit = fit_objective(points)
    assert (fit["student_bytes_per_logit"], fit["teacher_bytes_per_logit"]) == pytest.approx((9, 4))
    assert fit["max_rel_residual"] < 1e-9
    same = [{"student_vocab": v, "teacher_vocab": v, "n_student": b * 7 * v, "n_teacher": b * 7 * v,
             "extra_bytes": 6 * 2 * b * 7 * v} for v in (640, 1024) for b in (8, 16)]  # one vocabulary: c_S = c_T
    assert fit_objective(same)["student_bytes_per_logit"] == fit_objective(same)["teacher_bytes_per_logit"] == \
        pytest.approx(6)
    assert fit_objective(same)["max_rel_residual"] < 1e-9
    acts = [{"layers": n, "width": d, "seq": seq, "tokens": b * seq,
             "extra_bytes": b * seq * ((30 * n + 7) * d + 4 * n * seq) + 5e5}
            for n, d in ((1, 128), (2, 128), (4, 256)) for seq, b in ((256, 2), (256, 4), (1024, 1), (1024, 2))]
    fit = fit_activations(acts)  # the slopes drop the constant (weights, gradients)
    assert (fit["per_layer_per_width"], fit["per_width"], fit["per_layer_per_token_of_context"]) == \
        pytest.approx((30, 7, 4))
    assert fit["max_rel_residual"] < 1e-9


def test_a_run_maps_to_its_measured_entry():
    assert loss_key("uld") == "uld" and loss_key("uld", 64) == "uld-topk" and loss_key("uld", 64, True) == "uld-cache"
    assert loss_key("hybrid") == "hybrid"


def test_the_stored_coefficients_cover_every_loss_and_fit_their_points():
    from uldviz.train.objectives import TERMS

    coeffs = load_coefficients()
    assert set(LOSS_KEYS) >= set(TERMS) and "--write" in coeffs["command"]
    for precision in ("bf16", "fp32"):
        assert set(coeffs["objective"][precision]) == set(LOSS_KEYS)
        for key, entry in coeffs["objective"][precision].items():
            for fit in entry.values():
                if "error" in fit:  # the one known failure: CPU autocast has no bf16 sparse matmul (X-Token's W)
                    assert (precision, key) == ("bf16", "xtoken-pkl") and "BFloat16" in fit["error"]
                    continue
                assert fit["student_bytes_per_logit"] > 0 and fit["max_rel_residual"] < 0.05, (precision, key)
                assert (fit["teacher_bytes_per_logit"] > 0) == (key not in ("ce", "uld-cache")), (precision, key)
        act = coeffs["activations"][precision]
        assert act["per_layer_per_width"] > 0 and act["max_rel_residual"] < 0.05
        assert coeffs["teacher"][precision]["per_width"] > 0
    # the parts, added by the formula, predict a whole measured step (models, AdamW, ULD) within 15 %
    from uldviz.course.scale_docs import check_shape

    for check in coeffs["check"].values():
        predicted = A.estimate(check_shape(check), coeffs)["total_bytes_per_gpu"]
        assert predicted == pytest.approx(check["total_bytes"], rel=0.15)


# --------------------------------------------------------------------------- the dry run
def _configs(tmp_path, n_positions=256):
    """A teacher and a student saved as configs only: no weights, no tokenizer (a dry run must not need them)."""
    from transformers import GPT2Config

    paths = []
    for name, (layers, width, vocab) in {"teacher": (3, 96, 700), "student": (2, 64, 500)}.items():
        GPT2Config(n_layer=layers, n_embd=width, n_head=2, vocab_size=vocab, n_positions=n_positions
                   ).save_pretrained(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


def test_dry_run_reads_only_the_configs_and_prints_the_estimate(tmp_path, capsys, monkeypatch):
    from transformers import AutoConfig, AutoModelForCausalLM

    from uldviz.scale.loop import main
    from uldviz.scale.plan import plan

    for var in ("WORLD_SIZE", "ACCELERATE_USE_FSDP", "ACCELERATE_MIXED_PRECISION", "RANK"):
        monkeypatch.delenv(var, raising=False)
    teacher, student = _configs(tmp_path)
    args = ["--dry-run", "--teacher", teacher, "--student", student, "--batch-size", "4", "--max-tokens", "128",
            "--grad-accum", "3", "--steps", "100", "--warmup-steps", "10", "--top-k", "16", "--bf16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    real = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(student))
    params = sum(p.numel() for p in real.parameters())
    assert out.startswith("dry run") and f"{params:,} parameters, 2 layers x 64, vocabulary 500" in out
    cfg = ScaleConfig(teacher=teacher, student=student, batch_size=4, max_tokens=128, grad_accum=3, steps=100,
                      warmup_steps=10, top_k=16, bf16=True, dry_run=True)
    p = plan(cfg)
    want = A.RunShape(teacher_params=p["teacher"]["params"], student_params=params, teacher_dtype="bfloat16",
                      teacher_vocab=700, student_vocab=500, student_layers=2, student_width=64, micro_batch=4,
                      seq_len=128, tokens=100 * 4 * 3 * 128.0, loss="uld-topk", bf16=True)
    assert p["shape"] == want and p["estimate"] == A.estimate(want)
    assert f"{A.gigabytes(p['estimate']['total_bytes_per_gpu']):>10}" in out and "s per optimizer step" in out
    # the launcher's processes and FSDP come from accelerate's environment
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    eight = plan(cfg)
    assert eight["shape"].gpus == 8 and eight["shape"].fsdp and eight["shape"].tokens == 8 * want.tokens
    assert eight["estimate"]["student_states_bytes"] < p["estimate"]["student_states_bytes"]
    with pytest.raises(ValueError, match="dry_run trains nothing"):
        from uldviz.scale import train

        train(cfg)


@pytest.mark.parametrize("case,match", [
    ("offline hub name", "cannot load the config of 'nobody-xyz/not-a-model': the Hugging Face Hub is offline"),
    ("too long", "--max-tokens 512 is longer than the context"),
    ("no teacher", "needs a teacher"),
    ("no config", "holds no model config"),
    ("ignored option", "does not use top_k"),
])
def test_dry_run_refuses_in_one_line(tmp_path, capsys, monkeypatch, case, match):
    from uldviz.scale.loop import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    teacher, student = _configs(tmp_path)
    (tmp_path / "empty").mkdir()
    args = {"offline hub name": ["--teacher", "nobody-xyz/not-a-model", "--student", student],
            "too long": ["--teacher", teacher, "--student", student, "--max-tokens", "512"],
            "no teacher": ["--student", student],
            "no config": ["--teacher", str(tmp_path / "empty"), "--student", student],
            "ignored option": ["--teacher", teacher, "--student", student, "--loss", "chunk", "--top-k", "8"]}[case]
    assert main(["--dry-run", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and match in captured.err


# --------------------------------------------------------------------------- the docs
def test_docs_hold_the_measured_memory_dry_run_and_feed():
    doc = DOC.read_text(encoding="utf-8")
    assert read_block(doc, "arithmetic") == A.render_markdown(A.DOC_SHAPES)
    assert read_block(doc, "memory") == render_memory(load_coefficients())
    assert read_block(doc, "dryrun") == render_dry_run()
    assert read_block(doc, "feed") == render_feed(json.loads(FEED_RESULTS.read_text(encoding="utf-8")))
    assert "python -m uldviz.scale.measure memory --write" in doc and "python -m uldviz.scale.measure feed" in doc


def test_the_feed_figures_name_their_load_and_command():
    r = json.loads(FEED_RESULTS.read_text(encoding="utf-8"))
    assert r["load_average_before"] and r["command"].endswith("feed --write")
    assert set(r["loop"]) == set(r["simulated_gpu"]) == {"0", "2"}
    assert all(v["cpu_ms"] > 0 for v in r["step_batches"].values())
