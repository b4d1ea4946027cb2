"""Notebook 04 runs headless in fast mode; its checkers accept right answers and name each mistake."""

from __future__ import annotations

import json
import math

import nbformat
import pytest
import torch
from nbrun import NOTEBOOKS, error_outputs, run_notebook

from uldviz.exercises import ex04

NB = "04_beyond_uld.ipynb"


def test_nb04_committed_without_outputs_and_follows_the_conventions():
    nb = nbformat.read(NOTEBOOKS / NB, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert "uldviz-launch" in nb.cells[0].metadata.get("tags", [])
    sol = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(sol) == 1 and "if not SHOW_SOLUTIONS:" in sol[0].source
    assert sol[0].metadata["jupyter"]["source_hidden"] and sol[0].metadata["cellView"] == "form"
    text = "\n".join(c.source for c in nb.cells)
    for needed in ("able to", "**Words used in this notebook**", "SHOW_SOLUTIONS = False", "AlignmentExplorer",
                   "hybrid-shuffled", "chunk-lik-shuffled", "DSKD", "Multi-Level OT", "CDM", "X-Token", "on-policy",
                   "## Summary", "**Next:**", "pythia"):
        assert needed in text, needed
    for kind in ("(by hand)", "(implement)", "(derive)", "(interpret)"):
        assert kind in text


@pytest.mark.slow
def test_nb04_runs_headless_in_fast_mode():
    nb, seconds = run_notebook(NB, timeout=600)
    assert error_outputs(nb) == []
    outputs = json.dumps([c.get("outputs", []) for c in nb.cells], ensure_ascii=False)
    assert "shared strings" in outputs and "groups" in outputs and "What this notebook showed" in outputs
    assert "not available here" in outputs  # the hub pair fails clearly offline
    assert "Replace None" in outputs and "Solutions are hidden" in outputs and "✅" not in outputs


def test_chunk_probability_checker():
    t = math.prod(p for _, p in ex04.EX1_TEACHER)
    s = math.prod(p for _, p in ex04.EX1_STUDENT)
    assert ex04.check_chunk_probabilities((t, s)).ok
    assert "swapped" in ex04.check_chunk_probabilities((s, t)).message
    assert "multiply" in ex04.check_chunk_probabilities((0.7, 1.6)).message
    assert "first token" in ex04.check_chunk_probabilities((0.2, 0.3)).message
    assert "student" in ex04.check_chunk_probabilities((t, 0.5)).message
    assert not ex04.check_chunk_probabilities(None).ok and not ex04.check_chunk_probabilities("x").ok


def test_shared_strings_checker():
    right = {" the", " cat", "s"}
    assert ex04.check_shared_strings(right).ok
    assert "missing" in ex04.check_shared_strings({" the"}).message
    assert "not in both" in ex04.check_shared_strings(right | {"the"}).message
    assert "Ġ" in ex04.check_shared_strings({"Ġthe"}).message
    assert "byte" in ex04.check_shared_strings(right | {"é"}).message
    assert "Special" in ex04.check_shared_strings(right | {"</s>"}).message
    assert not ex04.check_shared_strings(None).ok


def test_generalized_kl_checker():
    def right(log_p, log_q):
        p, q = log_p.exp(), log_q.exp()
        return (p * (log_p - log_q) - p + q).sum(-1)

    assert ex04.check_generalized_kl(right).ok
    assert "−p + q" in ex04.check_generalized_kl(lambda lp, lq: (lp.exp() * (lp - lq)).sum(-1)).message
    assert "gradient" in ex04.check_generalized_kl(lambda lp, lq: right(lp, lq).detach()).message
    assert "shape" in ex04.check_generalized_kl(lambda lp, lq: right(lp, lq).sum()).message
    assert "differ" in ex04.check_generalized_kl(lambda lp, lq: right(lp, lq) * 2).message

    def stub(lp, lq):
        raise NotImplementedError

    assert "NotImplementedError" in ex04.check_generalized_kl(stub).message
    assert not ex04.check_generalized_kl(None).ok


def test_scaled_gkl_and_control_checkers():
    P, c = ex04.EX4_MASS, ex04.EX4_SCALE
    assert ex04.check_scaled_gkl(P * (c - 1 - math.log(c))).ok
    assert "alone" in ex04.check_scaled_gkl(-P * math.log(c)).message
    assert "factor p" in ex04.check_scaled_gkl(c - 1 - math.log(c)).message
    assert not ex04.check_scaled_gkl(None).ok
    # the derived formula is the kit's generalised KL
    from uldviz.identity import generalized_kl

    p = torch.tensor([0.3, 0.2, 0.1], dtype=torch.float64)
    assert float(generalized_kl(p.log(), (c * p).log())) == pytest.approx(P * (c - 1 - math.log(c)))
    within = {"beyond": False, "diff": -0.01}
    assert ex04.check_control_difference(False, within).ok and not ex04.check_control_difference(True, within).ok
    assert ex04.check_control_difference(True, {"beyond": True, "diff": -0.1}).ok
    assert not ex04.check_control_difference(None, within).ok
    assert "do not hold" in ex04.check_control_difference(True, None).message
