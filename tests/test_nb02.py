"""Notebook 02 (optimal transport) and its optional page 02b (speed) run headless in fast mode, with no error (their
run times: benchmarks/notebook_stress.py --budget)."""

from __future__ import annotations

import pytest
from nbrun import error_outputs

pytestmark = pytest.mark.slow


def test_notebook_02_runs_without_errors_fast(lesson):
    """Fast mode, the solutions run again at the end with SHOW_SOLUTIONS = True (the site test checks they stay
    hidden in the learner's cells)."""
    run = lesson("02_optimal_transport.ipynb")
    assert error_outputs(run.nb) == []
    # the identity and the blind spot were asserted by the notebook itself; check their prose came out
    text = "".join("".join(out.get("data", {}).get("text/markdown", "")) for out in run.outputs())
    assert "Largest difference between the closed form and POT" in text
    assert "ULD(student, teacher) = **0.000**" in text
    assert "not monotone (asserted" in text and "of its probability on them" in text
    streams = "".join(out.get("text", "") for out in run.outputs("solutions"))
    assert streams.count("✅") >= 7  # the solutions cell passes every checker
    assert "uncrossing until nothing crosses" in streams  # the drag exercise's answer


def test_speed_page_states_what_was_measured_and_extrapolates_only_a_little(lesson):
    """02b: exact OT is reported up to its largest measured size, extrapolated at most EXTRAPOLATE_AT_MOST times
    that size, never at real vocabulary sizes (no hours for a batch); the closed form's small-N slope is overhead."""
    import re

    run = lesson("02b_speed_appendix.ipynb")
    assert error_outputs(run.nb) == [] and run.own == len(run.nb.cells)  # no solutions to append
    text = "".join(
        "".join(out.get("data", {}).get("text/markdown", "")) + "".join(out.get("text", "")) for out in run.outputs()
    )
    assert "was measured up to N = " in text and "no time is given for them" in text
    factor = int(re.search(r"(\d+) times further, at N = ", text).group(1))
    assert factor <= 2
    assert not re.search(r"\d h\b|hours", text)  # no batch time at a vocabulary 25x past the data
    assert "fixed overhead" in text and "ValueError: exact OT at size" in text


def test_solutions_cell_is_hidden_and_tagged():
    import nbformat
    from nbrun import NOTEBOOKS

    nb = nbformat.read(NOTEBOOKS / "02_optimal_transport.ipynb", as_version=4)
    sol = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(sol) == 1
    assert sol[0].source.startswith("#@title Solutions (click to show)")
    assert sol[0].metadata["jupyter"]["source_hidden"] is True and sol[0].metadata["cellView"] == "form"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
