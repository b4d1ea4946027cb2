"""Notebook 01: its exercise checkers, its structure, and a headless run (fast mode) with no error output."""

from __future__ import annotations

import math
import os

import nbformat
import pytest
import torch
from nbrun import NOTEBOOKS, error_outputs

from uldviz.exercises import ex01
from uldviz.maths.patches import smoothed_kl, toy_pair, uld

NB = "01_kl_breaks.ipynb"


# ------------------------------------------------------------------ exercise checkers
def _kl(p, q, log=math.log):
    return sum(p[t] * log(p[t] / q[t]) for t in p)


def test_ex1_accepts_the_right_kl_and_diagnoses_mistakes():
    right = _kl(ex01.EX1_TEACHER, ex01.EX1_STUDENT)
    assert ex01.check_kl_by_hand(right).ok
    assert ex01.check_kl_by_hand(round(right, 3)).ok
    bits = ex01.check_kl_by_hand(_kl(ex01.EX1_TEACHER, ex01.EX1_STUDENT, math.log2))
    assert not bits.ok and "base 2" in bits.message
    flipped = ex01.check_kl_by_hand(_kl(ex01.EX1_STUDENT, ex01.EX1_TEACHER))
    assert not flipped.ok and "KL(q ‖ p)" in flipped.message
    assert "Too small" in ex01.check_kl_by_hand(right / 2).message
    assert "Too large" in ex01.check_kl_by_hand(right * 2).message
    assert "never negative" in ex01.check_kl_by_hand(-0.1).message
    assert "Replace None" in ex01.check_kl_by_hand(None).message
    assert not ex01.check_kl_by_hand("abc").ok
    assert "one number" in ex01.check_kl_by_hand(torch.tensor([0.1, 0.2])).message
    assert ex01.check_kl_by_hand(torch.tensor(right)).ok


def test_ex1_states_its_tolerance_and_accepts_two_significant_digits():
    """0.22 for a KL of 0.2180 is right to the 2 digits a learner rounds to; 0.21 is not, and the message says why."""
    right = _kl(ex01.EX1_TEACHER, ex01.EX1_STUDENT)
    assert f"{right:.4f}" == "0.2180"
    for ok in (0.22, 0.218, 0.2175, round(right, 5)):
        fb = ex01.check_kl_by_hand(ok)
        assert fb.ok and "2 significant digits" in fb.message, ok
    for wrong, words in ((0.21, "Too small"), (0.23, "Too large"), (0.2, "Too small")):
        fb = ex01.check_kl_by_hand(wrong)
        assert not fb.ok and words in fb.message and "2 significant digits" in fb.message, wrong
        assert "recheck each term" in fb.message and "0.22" not in fb.message  # never the answer


def test_ex2_epsilon():
    t, s = toy_pair()
    assert smoothed_kl(t, s, 1e-30) > ex01.EX2_TARGET
    assert ex01.check_epsilon(1e-30).ok
    small = ex01.check_epsilon(1e-3)
    assert not small.ok and "which way" in small.message
    assert not ex01.check_epsilon(0).ok and not ex01.check_epsilon(-1).ok
    assert not ex01.check_epsilon(float("nan")).ok


def test_ex3_uld_prediction_and_typical_mistakes():
    right = uld(ex01.EX3_TEACHER, ex01.EX3_STUDENT)
    assert ex01.check_uld_prediction(right).ok
    names = sum(abs(ex01.EX3_TEACHER.get(k, 0) - ex01.EX3_STUDENT.get(k, 0))
                for k in set(ex01.EX3_TEACHER) | set(ex01.EX3_STUDENT))
    assert "by name" in ex01.check_uld_prediction(names).message
    assert "half" in ex01.check_uld_prediction(right / 2).message
    unsorted = [0.6, 0.3, 0.1, 0.0], list(ex01.EX3_STUDENT.values())
    assert "id order" in ex01.check_uld_prediction(sum(abs(a - b) for a, b in zip(*unsorted))).message
    assert not ex01.check_uld_prediction(-1).ok


def test_ex4_blind_spot():
    assert ex01.check_blind_spot({"sun": 0.6, "cat": 0.3, "dog": 0.1}).ok
    same_fav = ex01.check_blind_spot({"dog": 0.6, "cat": 0.3, "sun": 0.1})
    assert not same_fav.ok and "favourite" in same_fav.message
    assert not ex01.check_blind_spot({"dog": 0.5, "cat": 0.3, "sun": 0.2}).ok
    assert not ex01.check_blind_spot({"dog": 0.6, "cat": 0.3, "moon": 0.1}).ok
    assert not ex01.check_blind_spot({"sun": 0.7, "cat": 0.3, "dog": 0.1}).ok  # sums to 1.1
    assert "Replace None" in ex01.check_blind_spot(None).message


def test_checkers_never_reveal_the_answer():
    right_kl = f"{_kl(ex01.EX1_TEACHER, ex01.EX1_STUDENT):.3f}"
    right_uld = f"{uld(ex01.EX3_TEACHER, ex01.EX3_STUDENT):.2f}"
    for wrong in (0.0, 0.1, 0.5, 1.0, 0.3145):
        assert right_kl not in ex01.check_kl_by_hand(wrong).message
    for wrong in (0.0, 0.1, 0.2, 0.7, 1.2):
        assert right_uld not in ex01.check_uld_prediction(wrong).message


# ------------------------------------------------------------------ notebook structure
def test_notebook_is_committed_without_outputs_and_has_a_hidden_solution():
    nb = nbformat.read(NOTEBOOKS / NB, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert "uldviz-launch" in nb.cells[0].metadata.get("tags", [])
    sol = [c for c in code if "solution" in c.metadata.get("tags", [])]
    assert len(sol) == 1
    assert sol[0].source.startswith("#@title Solutions (click to show)")
    assert sol[0].metadata["jupyter"]["source_hidden"] is True and sol[0].metadata["cellView"] == "form"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "\\mathrm{KL}" in text and "\\mathrm{ULD}" in text
    assert "minutes" in text.split("## 1.")[0]  # time stated at the top
    n_checks = sum(c.source.count("ex01.check_") for c in code if c not in sol)
    assert n_checks >= 3


# ------------------------------------------------------------------ headless run
@pytest.mark.slow
def test_notebook_runs_headless_without_errors(lesson):
    """Fast mode, the solutions run again at the end with SHOW_SOLUTIONS = True (the site test checks they stay
    hidden in the learner's cells)."""
    run = lesson(NB)
    assert error_outputs(run.nb) == []
    outputs = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")) for o in run.outputs())
    # the real torch computation ran and printed inf and nan, and kl_divergence's error was shown
    assert "= inf" in outputs and "= nan" in outputs
    assert "KL divergence needs one shared vocabulary" in outputs
    assert run.text("solutions").count("✅") >= 7  # the solutions cell passes every checker
    assert "the teacher sorted is (1, 0, …)" in run.text("solutions")  # the drag exercise's answer
    assert "Replace None" in run.text("learner") and "✅" not in run.text("learner")
    assert "no component of the gradient moves by more than" in outputs  # the gradient, next to the value
    assert outputs.count("Verdict") >= 3  # each patch judged by what it would teach
    pngs = sum("image/png" in o.get("data", {}) for o in run.outputs("learner"))
    assert pngs >= 8
    assert os.environ.get("ULDVIZ_FAST") != "1"  # the run restores the environment
