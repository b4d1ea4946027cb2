"""The mini-distillation: config, batches, objectives and controls, the loop's checkpoint selection, runners, CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import helpers
import pytest
import torch

from uldviz import distill
from uldviz.distill import (
    DistillConfig,
    StopFlag,
    evaluate,
    fast_config,
    make_objective,
    parse_run,
    run_config,
    run_label,
    student_subset,
    summarize,
    train,
)
from uldviz.distill import core as dcore
from uldviz.distill.data import generate_teacher_text, sample_tokens, teacher_generated_text
from uldviz.io.models import tiny_causal_lm
from uldviz.io.tokenizers import offline_tokenizers
from uldviz.train.batch import encode_batch
from uldviz.train.objectives import Objective
from uldviz.vocab.encode import encode_texts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toks():
    pair = offline_tokenizers()
    return pair.teacher, pair.student  # (teacher BPE, student Unigram), as these tests unpack them


@pytest.fixture(scope="module")
def tiny_setup():
    return helpers.tiny_setup()


tiny_cfg = helpers.tiny_config


# ---------------------------------------------------------------- config and names
def test_config_validation():
    for bad, match in [(dict(loss="mse"), "loss must be"), (dict(loss="kl"), "same_tokenizer"),
                       (dict(loss="uld", same_tokenizer=True), "cross-tokenizer"), (dict(align="greedy"), "align"),
                       (dict(lam=-1), "lam"), (dict(steps=0), "steps"), (dict(n_embd=30, n_head=4), "divisible"),
                       (dict(label_smoothing=1.0), "label_smoothing"), (dict(text="web"), "text"),
                       (dict(hybrid_weight=2.0), "hybrid_weight"), (dict(chunk_tau=0), "chunk_tau")]:
        with pytest.raises(ValueError, match=match):
            DistillConfig(**bad)


def test_parse_run_sets_the_tuned_value_of_each_run():
    assert parse_run("uld-offset@0.5") == ("uld-offset", {"loss": "uld", "align": "offset", "lam": 0.5})
    name, over = parse_run("ce-ls@0.2")
    assert name == "ce-ls" and over["label_smoothing"] == 0.2 and "lam" not in over
    assert parse_run("uld-shuffled@3")[1]["lam"] == 3.0  # a control takes its method's λ
    cfg = run_config("kl-same", DistillConfig(steps=7), seed=3)
    assert (cfg.loss, cfg.same_tokenizer, cfg.steps, cfg.seed) == ("kl", True, 7, 3)
    assert run_config("seqkd").text == "teacher" and run_config("uld-shuffled").shuffle_teacher
    with pytest.raises(ValueError, match="unknown run"):
        parse_run("uld")
    with pytest.raises(ValueError, match="number"):
        parse_run("uld-offset@big")
    with pytest.raises(ValueError, match="nothing to set"):
        parse_run("ce@0.1")
    assert run_label("ce-ls@0.1").endswith("(α = 0.1)") and run_label("uld-offset@3").endswith("(λ = 3)")


def test_fast_config_is_smaller():
    assert fast_config().steps < DistillConfig().steps


# ---------------------------------------------------------------- data
def test_student_subset_fraction_and_spread():
    text = "".join(chr(65 + i % 26) * 100 for i in range(100))  # 10,000 characters
    sub = student_subset(text, 0.1, block_chars=1000)
    assert abs(len(sub) - 1000) < 20 and sub.count("\n") == 0
    assert student_subset(text, 1.0) == text
    with pytest.raises(ValueError):
        student_subset(text, 0)


def test_splits_are_disjoint_documents_and_the_teacher_never_saw_val_or_test():
    from uldviz.io.corpus import load_corpus, split_documents, train_val_split, train_val_test_split

    text = load_corpus()
    train_text, val_text, test_text = train_val_test_split(text, 0.1)
    docs = [set(split_documents(t)) for t in (train_text, val_text, test_text)]
    assert not (docs[0] & docs[1]) and not (docs[0] & docs[2]) and not (docs[1] & docs[2])
    assert all(docs) and len(set.union(*docs)) == len(split_documents(text))
    assert train_val_split(text, 0.1)[0] == train_text  # exactly the teacher's training split
    assert 0.3 < len(val_text) / (len(val_text) + len(test_text)) < 0.7


def test_encode_texts_prepends_eos_pads_and_keeps_offsets(toks):
    t_tok, s_tok = toks
    ids, valid, off = encode_texts(s_tok, ["The cat", "A much longer sentence here."], 64)
    assert ids[0, 0] == s_tok.eos_token_id and tuple(off[0, 0].tolist()) == (0, 0)
    n0 = int(valid[0].sum())
    assert n0 < ids.shape[1] and not valid[0, n0:].any()
    assert s_tok.decode(ids[0, 1:n0].tolist()).replace("▁", " ").strip() == "The cat"
    ids, valid, off = encode_texts(t_tok, ["x" * 500], 16)
    assert ids.shape == (1, 16)


def test_make_batch_same_windows_both_tokenizers(toks):
    t_tok, s_tok = toks
    b = encode_batch(["one text", "two texts"], s_tok, t_tok, student_len=64, teacher_len=64)
    for k in range(2):
        last_s = int(b.student_offsets[k][b.student_valid[k]][-1, 1])
        last_t = int(b.teacher_offsets[k][b.teacher_valid[k]][-1, 1])
        assert last_s == last_t == len(b.texts[k])


# ---------------------------------------------------------------- bits per byte
class Uniform(torch.nn.Module):
    """A 'model' that gives every token the same probability 1/V: NLL per token is ln V exactly."""

    def __init__(self, vocab):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.vocab = vocab
        self.config = SimpleNamespace(n_positions=32)

    def forward(self, input_ids, **kwargs):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab) + 0 * self.w)


def test_bits_per_byte_against_hand_computation(toks):
    t_tok, _ = toks
    text = "Bits per byte: café, naïve — 🙂."
    n_tokens = len(t_tok(text, add_special_tokens=False)["input_ids"])
    n_bytes = len(text.encode("utf-8"))
    hand = n_tokens * math.log2(len(t_tok)) / n_bytes  # every token predicted once, -log2(1/V) bits each
    assert evaluate(Uniform(len(t_tok)), t_tok, text, 16) == pytest.approx(hand, rel=1e-6)


# ---------------------------------------------------------------- the objectives (tests/test_objectives.py too)
@pytest.mark.parametrize("spec", ["ce", "uld-positional", "uld-offset", "uld-shuffled", "kl-same", "hybrid",
                                  "hybrid-shuffled", "chunk-lik@3", "chunk-lik-shuffled@3"])
def test_training_steps_decrease_the_loss_on_a_tiny_batch(toks, spec):
    t_tok, s_tok = toks
    cfg = run_config(spec, tiny_cfg(lam=0.5))
    setup = SimpleNamespace(student_tokenizer=s_tok, teacher_tokenizer=t_tok)
    teacher = tiny_causal_lm(len(t_tok), n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=1).eval()
    student_tok = t_tok if cfg.same_tokenizer else s_tok
    student = tiny_causal_lm(len(student_tok), n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=0)
    batch = encode_batch(["The name is bound to an object.", "Identifiers and keywords."], student_tok, t_tok,
                         student_len=64, teacher_len=64)
    objective = make_objective(cfg, setup)
    assert objective.distills == (spec != "ce")
    pairs = objective.pair(batch)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        sums = objective.sums(student, teacher, batch, pairs)
        loss = objective.loss(sums)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        assert (sums.distill.item() > 0) == (spec != "ce")
    assert losses[-1] < 0.8 * losses[0]


# ---------------------------------------------------------------- the loop
def test_train_records_curves_selection_and_callbacks(tiny_setup):
    events = []
    res = train(run_config("uld-offset", tiny_cfg()), tiny_setup, "uld-offset", callback=events.append)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("step") == 4
    assert res.steps_done == 4 and len(res.train_ce) == 4 and not res.stopped
    assert res.val_steps == [2, 4] and all(1 < v < 20 for v in res.val_bpb)
    assert res.selected_step in res.val_steps and res.val_selected == min(res.val_bpb)
    assert math.isfinite(res.test_selected) and math.isfinite(res.test_final) and isinstance(res.sample, str)
    assert json.loads(json.dumps(res.to_dict()))["name"] == "uld-offset"


def test_selected_step_is_chosen_on_validation_only(tiny_setup, monkeypatch):
    """Validation decides the checkpoint; the test score is read from that checkpoint, never used to choose."""
    val_scores = iter([3.0, 2.5, 2.7, 2.9])  # the validation minimum is at the 2nd evaluation (step 4)
    seen = {}

    def fake_evaluate(model, tokenizer, text, block):
        fingerprint = float(sum(p.detach().double().sum() for p in model.parameters()))
        if text == tiny_setup.test_text:
            return fingerprint  # a "test score" that identifies the weights it was computed on
        score = next(val_scores)
        seen[score] = fingerprint
        return score

    monkeypatch.setattr(dcore, "evaluate", fake_evaluate)
    res = train(run_config("ce", tiny_cfg(steps=8)), tiny_setup, sample_prompt=None)
    assert res.val_steps == [2, 4, 6, 8] and res.selected_step == 4 and res.val_selected == 2.5
    assert res.test_selected == seen[2.5]  # the checkpoint of step 4 was scored on test
    assert res.test_final == seen[2.9] != res.test_selected  # the last step's weights give the final score


def test_stop_flag_ends_run_cleanly_keeping_its_curve(tiny_setup):
    stop = StopFlag()

    def cb(event):
        if event["type"] == "step" and event["step"] == 3:
            stop.set()

    res = train(run_config("ce", tiny_cfg(steps=50)), tiny_setup, "ce", callback=cb, stop=stop)
    assert res.stopped and not res.interrupted and res.steps_done == 3 and res.train_steps == [1, 2, 3]
    assert res.val_steps == [2, 3] and math.isfinite(res.test_selected)


def test_objective_is_a_parameter_of_the_loop(tiny_setup):
    """A subclass of the run's Objective replaces the term the loop minimises (the benchmark times one this way)."""
    calls = []

    class Probe(Objective):
        def sums(self, student, teacher, batch, pairs):
            out = super().sums(student, teacher, batch, pairs)
            calls.append((batch.student_ids.shape[0], pairs.count))
            return out

    cfg = tiny_cfg(loss="uld", steps=3)
    res = train(cfg, tiny_setup, objective=Probe(cfg, tiny_setup.student_tokenizer, tiny_setup.teacher_tokenizer),
                sample_prompt=None)
    assert len(calls) == 3 and calls[0][0] == 4 and all(n > 0 for _, n in calls)
    assert all(d > 0 for d in res.train_distill)
    res = train(tiny_cfg(loss="uld", lam=0.0, steps=2), tiny_setup, sample_prompt=None)
    assert res.train_distill == [0.0, 0.0]
    with pytest.raises(TypeError, match="objective"):
        train(tiny_cfg(steps=1), tiny_setup, objective="uld")


def test_same_seed_same_run(tiny_setup):
    a = train(run_config("ce", tiny_cfg(steps=2)), tiny_setup, sample_prompt=None)
    b = train(run_config("ce", tiny_cfg(steps=2)), tiny_setup, sample_prompt=None)
    assert a.train_ce == b.train_ce and a.test_selected == b.test_selected


def test_summarize_mean_std():
    fake = {"ce": [SimpleNamespace(test_selected=v, test_final=v + 0.1, selected_step=10, config={"seed": s},
                                   seconds=1.0) for s, v in enumerate([2.0, 2.2, 2.4])]}
    row = summarize(fake)["ce"]
    assert row["selected"]["mean"] == pytest.approx(2.2) and row["selected"]["std"] == pytest.approx(0.2)
    assert row["final"]["mean"] == pytest.approx(2.3) and row["seeds"] == [0, 1, 2]


# ---------------------------------------------------------------- teacher-written text and sampling
def test_sample_tokens_slides_past_the_context(toks):
    t_tok, _ = toks
    model = tiny_causal_lm(len(t_tok), n_layer=1, n_embd=32, n_head=2, n_positions=16, seed=0)
    out = sample_tokens(model, torch.tensor([[1, 2, 3], [4, 5, 6]]), 40, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 43) and torch.equal(out[:, :3], torch.tensor([[1, 2, 3], [4, 5, 6]]))
    again = sample_tokens(model, torch.tensor([[1, 2, 3], [4, 5, 6]]), 40, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="prompt_ids"):
        sample_tokens(model, torch.tensor([1, 2]), 3)


def test_teacher_text_has_the_students_character_budget(toks, tiny_setup):
    t_tok, _ = toks
    text = generate_teacher_text(tiny_setup.teacher, t_tok, tiny_setup.train_text, 0.2, block_chars=500)
    real_blocks = student_subset(tiny_setup.train_text, 0.2, block_chars=500).split("\n")
    assert abs(len(text) - sum(len(b) + 1 for b in real_blocks) + 1) < 5
    assert text[:5] == tiny_setup.train_text[:5]  # each block starts with its prompt, the real text's start


def test_shipped_teacher_text_is_found_and_missing_text_is_explained(tiny_setup):
    from uldviz.distill.data import seqkd_path

    for fraction in (0.03, 1.0):
        card = json.loads(seqkd_path(fraction).with_suffix(".json").read_text())
        assert card["command"].startswith("python -m uldviz protocol --generate-text")
        assert len(teacher_generated_text(SimpleNamespace(generated={}), fraction)) == card["chars"]
    with pytest.raises(FileNotFoundError, match="--generate-text 0.77"):
        teacher_generated_text(SimpleNamespace(generated={}), 0.77)


# ---------------------------------------------------------------- command line and runners
def test_cli_writes_json_with_command(tiny_setup, tmp_path, monkeypatch, capsys):
    from uldviz.distill import cli, data

    monkeypatch.setattr(data, "prepare", lambda preset="offline": tiny_setup)
    monkeypatch.setattr(cli, "fast_config", lambda **kw: tiny_cfg(**kw))
    out = tmp_path / "r.json"
    rc = cli.main(["--runs", "ce", "uld-offset@0.3", "--seeds", "0", "1", "--fast", "--device", "cpu",
                   "--out", str(out), "--quiet"])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["command"].startswith("python -m uldviz distill --runs ce uld-offset@0.3")
    assert set(rec["runs"]) == {"ce", "uld-offset@0.3"} and rec["complete"]
    assert len(rec["runs"]["ce"]["selected"]["values"]) == 2 and rec["runs"]["ce"]["selected"]["std"] >= 0
    assert "test bpb" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--runs", "nonsense"], "unknown run 'nonsense'"),
    (["--runs", "ce-ls@-1"], "label_smoothing must be in"),
    (["--runs", "hybrid@abc"], "must be a number"),
    (["--runs", "ce", "--steps", "0"], "steps must be a positive integer"),
    (["--runs", "ce", "--jobs", "0"], "--jobs must be >= 1"),
])
def test_cli_rejects_bad_input_with_a_usage_error(argv, message, capsys):
    """One line naming the problem and exit status 2, before any model is loaded (no traceback)."""
    from uldviz.distill import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--fast"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.protocol_main(["--runs", "nonsense", "--fast"])
    assert "unknown run 'nonsense'" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_stops_the_whole_experiment_after_saving_what_finished(tmp_path):
    """Ctrl-C during the 2nd run: the command exits 130, the 1st run is saved, no further run starts."""
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "uldviz", "distill", "--runs", "ce", "uld-offset", "ce-ls",
                             "--fast", "--steps", "400", "--device", "cpu", "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:  # the progress line of each finished run goes to stderr (merged here)
            lines.append(line)
            if "[1/3] ce seed 0:" in line:  # the finished-run line (a progress bar's redraws may share it)
                time.sleep(2)  # well inside the 2nd run (400 steps)
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=600)  # bounded: after Ctrl-C the run still validates, scores its test text
    finally:
        proc.kill()
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted" in rest and "[3/3]" not in rest  # the 3rd run never started (not even its progress bar)
    assert "[2/3] uld-offset seed 0:" not in rest  # the 2nd run never finished
    rec = json.loads(out.read_text())
    assert list(rec["runs"]) == ["ce"] and not rec["complete"]


@pytest.mark.slow
def test_run_parallel_matches_sequential_runs():
    """The --jobs path (worker processes) gives the runs a sequential loop gives, seed by seed."""
    from uldviz.distill import run_experiment, run_parallel

    base = fast_config(steps=6, device="cpu", eval_every=3)
    par = run_parallel(["ce", "uld-offset@0.3"], [0, 1], "offline", base, jobs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers
    try:
        seq = run_experiment(["ce", "uld-offset@0.3"], [0, 1], distill.prepare("offline"), base)
    finally:
        torch.set_num_threads(threads)
    for name in ("ce", "uld-offset@0.3"):
        assert [r.config["seed"] for r in par[name]] == [0, 1]
        for a, b in zip(par[name], seq[name]):
            assert a.train_ce == pytest.approx(b.train_ce, rel=1e-4)
            assert a.test_selected == pytest.approx(b.test_selected, rel=1e-4)
            assert a.selected_step == b.selected_step


def test_hub_preset_offline_fails_clearly(monkeypatch):
    from uldviz.io.tokenizers import HubUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="pythia|offline|Hub"):
        distill.prepare("hub")
    with pytest.raises(ValueError, match="preset"):
        distill.prepare("cloud")


def test_hub_preset_loads_local_save_pretrained_models(tmp_path, toks):
    """The hub code path, offline: a 'pretrained' teacher and a student tokenizer saved with save_pretrained."""
    t_tok, s_tok = toks
    teacher = tiny_causal_lm(len(t_tok), n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=2)
    teacher.save_pretrained(tmp_path / "teacher")
    t_tok.save_pretrained(tmp_path / "teacher")
    s_tok.save_pretrained(tmp_path / "student")
    setup = distill.prepare("hub", hub_teacher=str(tmp_path / "teacher"), hub_student=str(tmp_path / "student"))
    assert setup.preset == "hub" and len(setup.student_tokenizer) == len(s_tok)
    setup.val_text, setup.test_text = setup.val_text[:1500], setup.test_text[:1500]
    res = train(run_config("uld-offset", tiny_cfg(steps=2)), setup, sample_prompt=None)
    assert math.isfinite(res.test_selected)


def test_each_method_names_its_shuffled_control():
    from uldviz.distill.experiment import shuffled_control

    assert [shuffled_control(m) for m in ("uld-offset", "hybrid", "chunk-lik", "ce", "seqkd+uld")] == [
        "uld-shuffled", "hybrid-shuffled", "chunk-lik-shuffled", None, None]
    with pytest.raises(ValueError, match="unknown run"):
        shuffled_control("nonsense")

