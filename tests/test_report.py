"""The README's results block is the one `python -m uldviz.course.report` writes from the shipped files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uldviz.course import report
from uldviz.distill.protocol import load_records, summarize_protocol

ROOT = Path(__file__).resolve().parents[1]


def test_readme_results_block_is_current():
    assert report.update_readme(ROOT / "README.md", check=True), "run: python -m uldviz.course.report"


def test_block_numbers_come_from_the_files():
    block = report.results_block(ROOT)
    bench = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    assert f"{bench['targets']['uld_over_floor_cpu_worst']['value']:.2f}× the floor" in block
    summary = summarize_protocol(load_records(ROOT / "data" / "results" / "protocol_runs.jsonl"))
    for regime, s in summary.items():
        for run, r in s["runs"].items():
            if run in report.README_RUNS:
                assert f"{r['selected']['mean']:.3f} ± {r['selected']['std']:.3f}" in block, (regime, run)


def test_update_readme_needs_the_markers_and_rewrites_a_stale_block(tmp_path):
    (tmp_path / "README.md").write_text("no markers here\n")
    with pytest.raises(ValueError, match="results"):
        report.update_readme(tmp_path / "README.md")
    stale = tmp_path / "R.md"
    stale.write_text(f"head\n{report.START}\nold numbers\n{report.END}\ntail\n")
    assert not report.update_readme(stale, check=True) and "old numbers" in stale.read_text()
    assert not report.update_readme(stale) and "old numbers" not in stale.read_text()
    assert stale.read_text().startswith("head\n") and stale.read_text().endswith("tail\n")
