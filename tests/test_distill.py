"""The mini-distillation: batching, the objective, bits per byte, the loop, stop flag, CLI."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from uldviz import distill
from uldviz.distill import (
    DistillConfig,
    Setup,
    StopFlag,
    encode_texts,
    fast_config,
    make_batch,
    parse_run,
    run_config,
    step_loss,
    student_subset,
    summarize,
    train,
    val_bits_per_byte,
)
from uldviz.models import tiny_causal_lm
from uldviz.tokenization import offline_tokenizers


@pytest.fixture(scope="module")
def toks():
    return offline_tokenizers()  # (teacher BPE, student Unigram)


@pytest.fixture(scope="module")
def tiny_setup(toks):
    from uldviz.corpus import load_corpus, train_val_split

    t_tok, s_tok = toks
    train_text, val_text = train_val_split(load_corpus()[:60_000], 0.1)
    teacher = tiny_causal_lm(len(t_tok), n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=1)
    return Setup(teacher, t_tok, s_tok, train_text, val_text[:3000])


def tiny_cfg(**kw):
    base = dict(steps=4, batch_size=4, n_layer=1, n_embd=32, n_head=2, n_positions=96, eval_every=2,
                eval_chars=1500, window_chars=120, train_fraction=0.5, device="cpu")
    return DistillConfig(**{**base, **kw})


# ---------------------------------------------------------------- config and names
def test_config_validation():
    with pytest.raises(ValueError, match="loss must be"):
        DistillConfig(loss="mse")
    with pytest.raises(ValueError, match="same_tokenizer"):
        DistillConfig(loss="kl")
    with pytest.raises(ValueError, match="align"):
        DistillConfig(align="greedy")
    with pytest.raises(ValueError, match="lam"):
        DistillConfig(lam=-1)
    with pytest.raises(ValueError, match="steps"):
        DistillConfig(steps=0)
    with pytest.raises(ValueError, match="divisible"):
        DistillConfig(n_embd=30, n_head=4)


def test_parse_run_and_run_config():
    assert parse_run("uld-offset@0.5") == ("uld-offset", {"loss": "uld", "align": "offset", "lam": 0.5})
    cfg = run_config("kl-same", DistillConfig(steps=7), seed=3)
    assert (cfg.loss, cfg.same_tokenizer, cfg.steps, cfg.seed) == ("kl", True, 7, 3)
    with pytest.raises(ValueError, match="unknown run"):
        parse_run("uld")
    with pytest.raises(ValueError, match="number"):
        parse_run("uld-offset@big")


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
    b = make_batch(["one text", "two texts"], s_tok, t_tok, 64, 64)
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
    assert val_bits_per_byte(Uniform(len(t_tok)), t_tok, text, 16) == pytest.approx(hand, rel=1e-6)


# ---------------------------------------------------------------- the objective
@pytest.mark.parametrize("spec", ["ce", "uld-positional", "uld-offset", "kl-same"])
def test_training_steps_decrease_the_loss_on_a_tiny_batch(toks, spec):
    t_tok, s_tok = toks
    cfg = run_config(spec, tiny_cfg(lam=0.5))
    teacher = tiny_causal_lm(len(t_tok), n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=1).eval()
    student_tok = t_tok if cfg.same_tokenizer else s_tok
    student = tiny_causal_lm(len(student_tok), n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=0)
    batch = make_batch(["The name is bound to an object.", "Identifiers and keywords."], student_tok, t_tok, 64, 64)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss, ce, dist = step_loss(cfg, student, batch, teacher)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if spec != "ce":
            assert dist.item() > 0
        else:
            assert dist.item() == 0
    assert losses[-1] < 0.8 * losses[0]


def test_step_loss_needs_teacher_and_shared_vocab_for_kl(toks):
    t_tok, s_tok = toks
    student = tiny_causal_lm(len(s_tok), n_layer=1, n_embd=32, n_head=2, n_positions=64)
    teacher = tiny_causal_lm(len(t_tok), n_layer=1, n_embd=32, n_head=2, n_positions=64)
    batch = make_batch(["some text here"], s_tok, t_tok, 64, 64)
    with pytest.raises(ValueError, match="teacher"):
        step_loss(run_config("uld-offset", tiny_cfg()), student, batch, None)
    with pytest.raises(ValueError, match="tokenizer"):
        step_loss(run_config("kl-same", tiny_cfg()), student, batch, teacher)


# ---------------------------------------------------------------- the loop
def test_train_records_curves_and_callbacks(tiny_setup):
    events = []
    res = train(run_config("uld-offset", tiny_cfg()), tiny_setup, "uld-offset", callback=events.append)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("step") == 4
    assert res.steps_done == 4 and len(res.train_ce) == 4 and not res.stopped
    assert res.val_steps == [2, 4] and all(1 < v < 20 for v in res.val_bpb)
    assert math.isfinite(res.final_bpb) and isinstance(res.sample, str)
    assert json.loads(json.dumps(res.to_dict()))["name"] == "uld-offset"


def test_stop_flag_ends_run_cleanly_keeping_its_curve(tiny_setup):
    stop = StopFlag()

    def cb(event):
        if event["type"] == "step" and event["step"] == 2:
            stop.set()

    res = train(run_config("ce", tiny_cfg(steps=50)), tiny_setup, "ce", callback=cb, stop=stop)
    assert res.stopped and res.steps_done == 2 and res.train_steps == [1, 2]
    assert math.isfinite(res.final_bpb) and res.val_steps[-1] == 2


def test_same_seed_same_run(tiny_setup):
    a = train(run_config("ce", tiny_cfg(steps=2)), tiny_setup, sample_prompt=None)
    b = train(run_config("ce", tiny_cfg(steps=2)), tiny_setup, sample_prompt=None)
    assert a.train_ce == b.train_ce and a.final_bpb == b.final_bpb


def test_summarize_mean_std(tiny_setup):
    fake = {"ce": [SimpleNamespace(final_bpb=v, config={"seed": s, "lam": 0.3}, seconds=1.0)
                   for s, v in enumerate([2.0, 2.2, 2.4])]}
    row = summarize(fake)["ce"]
    assert row["mean"] == pytest.approx(2.2) and row["std"] == pytest.approx(0.2)


def test_cli_writes_json_with_command(tiny_setup, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(distill, "prepare", lambda preset="offline": tiny_setup)
    monkeypatch.setattr(distill, "fast_config", lambda **kw: tiny_cfg(**{k: v for k, v in kw.items()}))
    out = tmp_path / "r.json"
    rc = distill.main(["--runs", "ce", "uld-offset@0.3", "--seeds", "0", "1", "--fast", "--device", "cpu",
                       "--out", str(out), "--quiet"])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["command"].startswith("python -m uldviz distill --runs ce uld-offset@0.3")
    assert set(rec["runs"]) == {"ce", "uld-offset@0.3"}
    assert len(rec["runs"]["ce"]["val_bpb"]) == 2 and rec["runs"]["ce"]["std"] >= 0
    assert "bits/byte" in capsys.readouterr().out


def test_cli_single_loss_option(tiny_setup, tmp_path, monkeypatch):
    monkeypatch.setattr(distill, "prepare", lambda preset="offline": tiny_setup)
    monkeypatch.setattr(distill, "fast_config", lambda **kw: tiny_cfg(**kw))
    out = tmp_path / "r.json"
    distill.main(["--loss", "uld", "--align", "positional", "--lam", "0.2", "--fast", "--out", str(out), "--quiet"])
    assert list(json.loads(out.read_text())["runs"]) == ["uld-positional@0.2"]


def test_cli_rejects_bad_run():
    with pytest.raises(ValueError, match="unknown run"):
        distill.main(["--runs", "nonsense", "--fast"])


def test_hub_preset_offline_fails_clearly(monkeypatch):
    from uldviz.tokenization import HubUnavailableError

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
    setup.val_text = setup.val_text[:1500]
    res = train(run_config("uld-offset", tiny_cfg(steps=2)), setup, sample_prompt=None)
    assert math.isfinite(res.final_bpb)


def test_cli_merge_pools_seeds(tiny_setup, tmp_path, monkeypatch):
    monkeypatch.setattr(distill, "prepare", lambda preset="offline": tiny_setup)
    monkeypatch.setattr(distill, "fast_config", lambda **kw: tiny_cfg(**kw))
    a, b, m = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "m.json"
    distill.main(["--runs", "ce", "--seeds", "0", "1", "--fast", "--out", str(a), "--quiet"])
    distill.main(["--runs", "ce", "--seeds", "1", "2", "--fast", "--out", str(b), "--quiet"])
    distill.main(["--merge", str(a), str(b), "--out", str(m)])
    ra, rb, rm = (json.loads(p.read_text()) for p in (a, b, m))
    assert rm["runs"]["ce"]["seeds"] == [0, 1, 2]
    vals = ra["runs"]["ce"]["val_bpb"] + rb["runs"]["ce"]["val_bpb"][1:]
    assert rm["runs"]["ce"]["val_bpb"] == vals
    assert rm["runs"]["ce"]["std"] == pytest.approx(__import__("statistics").stdev(vals))
    assert [p["command"] for p in rm["parts"]] == [ra["command"], rb["command"]]
    assert rm["command"].startswith("python -m uldviz distill --merge")
    assert len(rm["curves"]["ce"]["val_bpb"]) == 3
