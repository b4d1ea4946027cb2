"""Notebook 04 runs headless in fast mode; its checkers accept right answers and name each mistake."""

from __future__ import annotations

import nbformat
import pytest
from nbrun import NOTEBOOKS, error_outputs

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
                   "SimCT", "BLD", "VocAgnoLM", "CTPD", "P-KL", "H-KL", "numeral_tokenizers", "build_projection",
                   "logit_gradients", "GOLD exactly as TRL computes it", "compare_matchings", "gold_conventions",
                   "generalised KL", "surface", "xtoken-pkl", "plot_comparisons", "verdict_block", "regime_scope",
                   "What would have to change", "check_merged_group", "check_prediction", "compare_prediction",
                   "## Summary", "**Next:**", "pythia"):
        assert needed in text, needed
    for kind in ("(by hand)", "(implement)", "(derive)", "(interpret)"):
        assert kind in text
    for gone in ("2×", "2 ×", "beyond the noise", "beyond the kit's bar", "plot_protocol", "check_control_difference",
                 "punishes a student whose shared mass is too small", "(TRL's GOLD trainer)"):
        assert gone not in text, gone
    sources = [c.source for c in nb.cells]
    live = next(i for i, src in enumerate(sources) if "dash.run()" in src)
    assert any("check_prediction" in src for src in sources[:live])
    assert any("compare_prediction" in src for src in sources[live:])


@pytest.mark.slow
def test_nb04_runs_headless_in_fast_mode(lesson):
    run = lesson(NB)
    assert error_outputs(run.nb) == []
    outputs = run.text()
    assert "shared strings" in outputs and "groups" in outputs and "What this notebook showed" in outputs
    assert "not available here" in outputs  # the hub pair fails clearly offline
    assert "Fast mode" in outputs and "too short" in outputs  # fast mode says it cannot show the effect
    assert "multi-digit numerals" in outputs and "raises it" in outputs and "lowers it" in outputs
    assert "false matches" in outputs and "not the chain rule" in outputs and "X-Token head to head" in outputs
    # the exercise cells ask for an answer; the solutions cell passes every checker
    assert "Replace None" in run.text("learner") and run.text("solutions").count("✅") >= 6
    assert "groups: count the bytes where" in run.text("solutions")  # the drag exercise's answer
