"""Notebook 03 runs headless in fast mode, with the structure the lesson promises."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbrun import NOTEBOOKS, error_outputs, run_notebook

NB = "03_distillation.ipynb"


def test_nb03_committed_without_outputs_and_with_hidden_solutions():
    nb = nbformat.read(NOTEBOOKS / NB, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    sol = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(sol) == 1 and sol[0].source.startswith("#@title Solutions (click to show)")
    assert sol[0].metadata["jupyter"]["source_hidden"] and sol[0].metadata["cellView"] == "form"
    text = "\n".join(c.source for c in nb.cells)
    for needed in ("Learning objectives", "\\mathrm{ULD}", "check_offset_pairs", "check_bits_per_byte",
                   "check_kl_share", "DistillDashboard", "multiseed.json", "PRESET"):
        assert needed in text


@pytest.mark.slow
def test_nb03_runs_headless_in_fast_mode():
    nb, seconds = run_notebook(NB, timeout=600)
    assert error_outputs(nb) == []
    outputs = json.dumps([c.get("outputs", []) for c in nb.cells], ensure_ascii=False)
    assert "bits per byte" in outputs and "Student → teacher" in outputs
    # the exercise checkers ran (unanswered: they ask for an answer) and the solutions pass
    assert "Replace None" in outputs and outputs.count("Right") >= 2


def test_ex03_checkers_say_what_is_wrong_without_the_answer():
    import math

    from uldviz.exercises import ex03

    assert not ex03.check_offset_pairs(None).ok
    assert ex03.check_offset_pairs({1: 2, 2: 4}).ok
    fb = ex03.check_offset_pairs({1: 1, 2: 4})
    assert not fb.ok and "middle" in fb.message
    fb = ex03.check_offset_pairs({1: 3, 2: 4})
    assert not fb.ok and "position 1" in fb.message and "3" not in fb.message.replace("position 1", "")
    n_bytes = len(ex03.EX2_TEXT.encode("utf-8"))
    right = ex03.EX2_NLL_NATS / math.log(2) / n_bytes
    assert ex03.check_bits_per_byte(right).ok
    fb = ex03.check_bits_per_byte(ex03.EX2_NLL_NATS / math.log(2) / len(ex03.EX2_TEXT))
    assert not fb.ok and "characters" in fb.message and f"{right:.3f}" not in fb.message
    assert "nats" in ex03.check_bits_per_byte(ex03.EX2_NLL_NATS / n_bytes).message
    bpb = {"ce": 3.0, "uld-offset": 2.8, "ce-same": 3.1, "kl-same": 2.3}
    assert ex03.check_kl_share(0.25, bpb).ok
    assert "percentage" in ex03.check_kl_share(25, bpb).message
    assert "sign" in ex03.check_kl_share(-0.25, bpb).message
    assert "no gain" in ex03.check_kl_share(0.25, {**bpb, "kl-same": 3.2}).message
    assert math.isnan(ex03.kl_gain_share({**bpb, "kl-same": 3.2}, "uld-offset", strict=False))
