"""uldviz.scale pieces that need no model: config and command line, data order, the loss registry, the top-k loss
from a cache, the memory/time arithmetic and the generated numbers of docs/scale.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from uldviz.course.scale_docs import CACHE_MEASURE, DOC, RESULTS, read_block, render_topk, replace_block, topk_errors
from uldviz.maths import losses as L
from uldviz.scale import arithmetic as A
from uldviz.scale.cache import cache_row_bytes
from uldviz.scale.config import ScaleConfig, add_dataclass_args, dataclass_from_args
from uldviz.scale.data import Example, global_batch, process_share, read_prompts, text_windows
from uldviz.train.batch import answer_mask
from uldviz.train.objectives import TERMS, Objective

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the loss from a teacher's top-k
@pytest.mark.parametrize("vs,vt,k", [(50, 80, 10), (80, 50, 10), (30, 80, 40), (64, 64, 64), (300, 1000, 100)])
def test_uld_from_teacher_topk_equals_uld_topk_on_the_full_teacher(vs, vt, k):
    """Value and gradient equal uld_loss(top_k=k) (= uld_topk_distance with the tail term) on the same inputs."""
    g = torch.Generator().manual_seed(vs + vt + k)
    s = torch.randn(3, 5, vs, generator=g, requires_grad=True)
    t = 2 * torch.randn(3, 5, vt, generator=g)
    mask = torch.rand(3, 5, generator=g) > 0.3
    ref = L.uld_loss(s, t, top_k=k, mask=mask)
    (g_ref,) = torch.autograd.grad(ref, s)
    p = torch.softmax(t, -1)
    top = torch.topk(p, min(k, vt)).values
    assert torch.allclose(L.uld_topk_distance(torch.softmax(s, -1), p, k), L.uld_loss(s, t, top_k=k,
                                                                                         reduction="none"), atol=1e-6)
    shuffled = top[..., torch.randperm(top.shape[-1], generator=g)]  # any order: the function sorts
    out = L.uld_topk_from_teacher_topk(s, shuffled, p.sum(-1) - top.sum(-1), mask=mask)
    (g_out,) = torch.autograd.grad(out, s)
    assert out.item() == pytest.approx(ref.item(), abs=1e-6)
    assert torch.allclose(g_out, g_ref, atol=1e-7)


def test_uld_from_teacher_topk_refuses_bad_input_by_name():
    s = torch.randn(2, 4, 10)
    with pytest.raises(ValueError, match="positions"):
        L.uld_topk_from_teacher_topk(s, torch.rand(2, 3, 5), torch.rand(2, 4))
    with pytest.raises(ValueError, match="teacher_tail"):
        L.uld_topk_from_teacher_topk(s, torch.rand(2, 4, 5), -torch.ones(2, 4))
    with pytest.raises(ValueError, match="negative"):
        L.uld_topk_from_teacher_topk(s, -torch.rand(2, 4, 5), torch.zeros(2, 4))


# --------------------------------------------------------------------------- config and command line
def test_every_config_field_is_a_flag_and_round_trips():
    parser = add_dataclass_args(argparse.ArgumentParser(), ScaleConfig)
    args = parser.parse_args(["--student", "s", "--data", "a.txt", "b.jsonl", "--bf16", "--top-k", "64",
                              "--no-progress", "--lam", "0.5"])
    cfg = dataclass_from_args(ScaleConfig, args)
    assert cfg.data == ["a.txt", "b.jsonl"] and cfg.bf16 and cfg.top_k == 64 and not cfg.progress and cfg.lam == 0.5
    assert cfg.lr == ScaleConfig(student="s").lr and cfg.lam != L.PAPER_LAMBDA
    assert ScaleConfig(student="s").lam == L.PAPER_LAMBDA
    helps = {a.dest: a.help for a in parser._actions}
    assert "global batch" not in helps["batch_size"] and "per process" in helps["batch_size"]


@pytest.mark.parametrize("changes,match", [
    ({"student": ""}, "student is required"), ({"align": "diagonal"}, "align"), ({"steps": 0}, "steps"),
    ({"lr": -1.0}, "lr"), ({"warmup_steps": 50, "steps": 10}, "warmup"), ({"cache_dtype": "int8"}, "cache_dtype"),
    ({"data": ["x.txt"], "dataset": "d"}, "not both"), ({"val_fraction": 1.5}, "val_fraction"),
    ({"chunk_tau": 0.0}, "chunk_tau must be a finite number > 0"), ({"top_k": -1}, "top_k must be an integer >= 0"),
    ({"batch_size": True}, "batch_size must be a positive integer"),
])
def test_bad_settings_are_refused_by_name(changes, match):
    with pytest.raises(ValueError, match=match):
        ScaleConfig(**{"student": "s", **changes})


def test_the_three_commands_are_registered():
    from uldviz.__main__ import COMMANDS

    assert {"train", "generate", "cache-teacher"} <= set(COMMANDS)


# --------------------------------------------------------------------------- data order
def test_the_global_batch_depends_on_seed_and_step_only_and_covers_each_epoch():
    n, size = 10, 4
    stream = [i for step in range(5) for i in global_batch(step, n, size, seed=3)]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]  # a new shuffle per epoch
    assert global_batch(2, n, size, 3) == stream[8:12]  # resuming at step 2 sees the same examples
    assert global_batch(0, n, size, 4) != global_batch(0, n, size, 3)


def test_processes_split_the_global_batch_without_overlap():
    batch = list(range(12))
    shares = [process_share(batch, r, 3, 2) for r in range(3)]
    assert [i for share in shares for mb in share for i in mb] == batch
    assert all(len(mb) == 2 for share in shares for mb in share)
    with pytest.raises(ValueError, match="does not split"):
        process_share(list(range(10)), 0, 3, 2)


def test_answer_mask_counts_positions_that_predict_answer_text():
    # "Q: hi A: yo": tokens [eos][Q: ][hi ][A: ][yo]; the prompt is the first 9 characters
    offsets = torch.tensor([[[0, 0], [0, 3], [3, 6], [6, 9], [9, 11]]])
    valid = torch.ones(1, 5, dtype=torch.bool)
    assert answer_mask(valid, offsets, [9]).tolist() == [[False, False, False, True, False]]
    assert answer_mask(valid, offsets, [0]).tolist() == [[True, True, True, True, False]]


def test_text_windows_and_prompt_files(tmp_path):
    assert [e.answer for e in text_windows("abcdefg", 3)] == ["abc", "def", "g"]
    assert Example("Q ", "A").text == "Q A"
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n\n{"prompt": "b"}\n')
    assert read_prompts(tmp_path / "p.jsonl") == ["a", "b"]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"question": "b"}\n')
    with pytest.raises(ValueError, match="prompt"):
        read_prompts(tmp_path / "bad.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"prompt": \n')
    with pytest.raises(ValueError, match="broken.jsonl:1"):
        read_prompts(tmp_path / "broken.jsonl")


# --------------------------------------------------------------------------- the loss registry
def test_the_registry_names_its_losses_and_refuses_unknown_ones():
    assert {"uld", "kl", "ce", "hybrid", "chunk"} <= set(TERMS)
    assert TERMS["uld"].teacher == "logits" and TERMS["kl"].same_tokenizer
    assert Objective(ScaleConfig(student="s", loss="uld"), cache=object()).term.teacher == "cache"
    with pytest.raises(ValueError, match="loss must be one of"):
        ScaleConfig(student="s", loss="wasserstein")
    with pytest.raises(ValueError, match="top-k targets"):
        Objective(ScaleConfig(student="s", loss="kl"), cache=object())


# --------------------------------------------------------------------------- arithmetic and docs
def test_time_and_cache_arithmetic_follows_its_formulas():
    """Compute, time and cache size; the memory terms (measured coefficients) are tests/test_scale_memory.py's."""
    base = A.RunShape(teacher_params=1e9, student_params=1e8, tokens=1e6, micro_batch=2, seq_len=10,
                      teacher_vocab=100, student_vocab=50)
    e = A.estimate(base)
    assert e["teacher_weights_bytes"] == 2e9  # bf16: 2 bytes per parameter
    assert A.estimate(A.RunShape(teacher_dtype="float32")).get("teacher_weights_bytes") == 4e9
    assert e["flops"] == 1e6 * (2 * 1e9 + 6 * 1e8)
    assert e["seconds"] == pytest.approx(e["flops"] / (base.peak_flops * base.mfu))
    eight = A.estimate(A.RunShape(**{**base.__dict__, "gpus": 8}))
    assert eight["seconds"] == pytest.approx(e["seconds"] / 8)
    assert e["cache_bytes"] == 1e6 * cache_row_bytes(64, "q8") == 1e6 * (64 * 3 + 8)
    with pytest.raises(ValueError, match="teacher_dtype"):
        A.estimate(A.RunShape(teacher_dtype="fp8"))


def test_docs_hold_the_numbers_the_code_computes():
    doc = DOC.read_text(encoding="utf-8")
    assert read_block(doc, "arithmetic") == A.render_markdown(A.DOC_SHAPES)
    assert read_block(doc, "topk") == render_topk(topk_errors(RESULTS))
    rows = [line.split("|") for line in read_block(doc, "cache").splitlines()[2:]]
    assert {int(r[1].replace(",", "")) for r in rows} == set(CACHE_MEASURE["ks"])
    for r in rows:  # measured bytes per position within 1 % of the row formula (headers are small)
        k = int(r[1].replace(",", ""))
        measured, formula = (float(x.strip(" )").replace(",", "")) for x in r[5].split("("))
        assert formula in {cache_row_bytes(k, d) for d in CACHE_MEASURE["dtypes"]}
        assert measured == pytest.approx(formula, rel=0.01)


def test_topk_errors_come_from_the_benchmark_file():
    data = json.loads(RESULTS.read_text())
    rows = topk_errors(RESULTS)
    first = data["uld_speed"][0]
    k = next(iter(first["topk_error"]))
    assert rows[0]["mean_rel_error"] == first["topk_error"][k]["mean_rel_error"]
    assert replace_block("a\n<!-- scale:x -->\nold\n<!-- /scale:x -->\nb", "x", "new") == \
        "a\n<!-- scale:x -->\nnew\n<!-- /scale:x -->\nb"


def test_span_groups_of_a_scaled_batch_are_exactly_the_answer_groups():
    """hybrid/chunk count a group when its first token is answer text: not the prompt's last group, and the
    answer's last group too (a position i marks token i+1, so the group starting at s is read at s - 1)."""
    from uldviz.alignment.text import align_batch
    from uldviz.io.tokenizers import offline_tokenizers
    from uldviz.scale.data import encode_examples
    from uldviz.train.objectives import pair_groups

    tok_b, tok_a = offline_tokenizers()
    ex = Example("The quick brown", " fox jumps over the lazy dog.")
    batch = encode_examples([ex], [0], tok_b, tok_a, 64)
    groups = pair_groups(batch, tok_b, tok_a)
    sp = align_batch(batch, tok_b, tok_a)
    want = [int(s0) for s0, lo in zip(sp.student_start, sp.byte_start) if int(lo) >= len(ex.prompt.encode())]
    assert groups.student_start.tolist() == want and groups.count == len(want) > 3
    last = int(sp.byte_end[-1])
    assert ex.text.encode()[:last].endswith(b".") and int(sp.student_start[-1]) in want



def test_a_loss_that_needs_a_teacher_says_so_before_loading_anything(tmp_path):
    """No student, data or teacher is read first: the missing file and folder below are never touched."""
    from uldviz.scale import train

    cfg = ScaleConfig(student=str(tmp_path / "no-student"), loss="uld", data=[str(tmp_path / "no-text.txt")],
                      cpu=True, out_dir=str(tmp_path / "out"), progress=False)
    with pytest.raises(ValueError, match="needs a teacher"):
        train(cfg)
