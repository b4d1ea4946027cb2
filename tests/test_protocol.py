"""The protocol's logic on synthetic records: choices on validation only, grid extension, scheduling, summaries."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from uldviz.distill import DistillConfig
from uldviz.distill import protocol as P

ROOT = Path(__file__).resolve().parents[1]


def rec(run, value, seed, val, test, phase="grid", regime="data-poor", final=None):
    spec = run if value is None else f"{run}@{value:g}"
    return {"regime": regime, "run": run, "spec": spec, "value": value, "seed": seed, "phase": phase,
            "val_selected": val, "test_selected": test, "test_final": test + 0.1 if final is None else final,
            "selected_step": 100, "seconds": 1.0, "val_steps": [100], "val_bpb": [val], "config": {}}


def grid(run, scores, seeds=P.GRID_SEEDS, **kw):
    """Grid records: value -> validation score (the same for every grid seed); test scores chosen adversarially."""
    return [rec(run, v, s, val, test=10 - val, **kw) for v, val in scores.items() for s in seeds]


def test_choice_reads_validation_only():
    records = grid("uld-offset", {0.3: 3.0, 1.0: 2.9, 3.0: 2.95, 10.0: 3.2})  # interior minimum at λ = 1
    assert P.grid_values(records, "data-poor", "uld-offset") == ([0.3, 1.0, 3.0, 10.0], 1.0)
    # the test scores (10 - val) would have chosen λ = 10: they are never read
    assert P.select_value(records[:-1], "data-poor", "uld-offset") is None  # a grid run missing: no choice yet


def test_a_winner_at_an_edge_extends_the_grid_at_most_twice():
    records = grid("hybrid", {0.3: 3.0, 1.0: 2.9, 3.0: 2.8})
    assert P.grid_values(records, "data-poor", "hybrid") == ([0.3, 1.0, 3.0, 9.0], None)  # 9 is asked for
    records += grid("hybrid", {9.0: 2.85})  # the extension loses: 3 is now an interior winner
    assert P.grid_values(records, "data-poor", "hybrid") == ([0.3, 1.0, 3.0, 9.0], 3.0)
    low = grid("ce-ls", {0.05: 2.8, 0.1: 2.9, 0.2: 3.0}) + grid("ce-ls", {0.0167: 2.7}) + grid("ce-ls", {0.00557: 2.6})
    values, chosen = P.grid_values(low, "data-poor", "ce-ls")
    assert values == [0.00557, 0.0167, 0.05, 0.1, 0.2] and chosen == 0.00557  # stopped after two: still an edge
    s = P.summarize_protocol(low)["data-poor"]["selection"]["ce-ls"]
    assert s["chosen"] == 0.00557 and s["extended"] and s["at_edge"]


def test_ready_tasks_run_grids_first_and_controls_wait_for_their_method():
    base = DistillConfig(device="cpu")
    tasks = P.ready_tasks([], ["data-poor"], ["ce", "uld-shuffled"], base)
    phases = [t[4] for t in tasks]
    assert phases == sorted(phases, key=lambda p: p != "grid")  # grid runs come first
    assert {t[1] for t in tasks if t[4] == "grid"} == {f"uld-offset@{v:g}" for v in (0.3, 1, 3, 10)}
    assert [t[1] for t in tasks if t[4] == "final"] == ["ce"] * len(P.SEEDS)  # the control waits for the choice
    done = grid("uld-offset", {0.3: 3.0, 1.0: 2.9, 3.0: 2.95, 10.0: 3.2})
    finals = [t for t in P.ready_tasks(done, ["data-poor"], ["ce", "uld-shuffled"], base) if t[4] == "final"]
    assert {t[1] for t in finals} == {"ce", "uld-shuffled@1"} and len(finals) == 2 * len(P.SEEDS)
    assert P.ready_tasks(done + [rec("ce", None, s, 3, 3, "final") for s in P.SEEDS], ["data-poor"], ["ce"],
                         base) == []


def test_kl_share():
    means = {"ce": 3.0, "ce-same": 3.2, "kl-same": 2.2, "x": 2.5}
    assert P.kl_share(means, "x") == pytest.approx(0.5)
    assert P.kl_share({**means, "kl-same": 3.3}, "x") != P.kl_share({**means, "kl-same": 3.3}, "x")  # NaN
    assert P.kl_share({"ce": 3.0}, "x") != P.kl_share({"ce": 3.0}, "x")


def _finals(run, value, tests, regime="data-poor"):
    return [rec(run, value, seed, 3.0, t, "final", regime=regime) for seed, t in zip(P.SEEDS, tests)]


def test_paired_intervals_decide_where_the_old_two_std_rule_saw_noise():
    """Seeds that disagree a lot (std 0.3) but pair tightly (every seed ~0.05 better): the retired rule
    (|difference| > 2 × the larger std) called this noise; the paired interval excludes 0."""
    base = [2.4, 2.9, 2.6, 3.1, 2.7]
    records = _finals("ce", None, base) + _finals("ce-ls", 0.1, [x - 0.05 + 0.002 * i for i, x in enumerate(base)])
    records += grid("ce-ls", {0.05: 3.1, 0.1: 3.0, 0.2: 3.05})
    c = P.find_comparison(P.summarize_protocol(records), "data-poor", "ce-ls", "ce")
    assert statistics.stdev(base) > 0.25 and abs(c["diff"]) < 2 * statistics.stdev(base)  # the old "within noise"
    assert c["decided"] and c["verdict"] == "better" and c["high"] < 0 and c["family_size"] == 1
    assert c["level"] == pytest.approx(0.05) and c["n"] == 5


def test_an_undecided_comparison_reads_no_difference_larger_than_its_interval():
    records = _finals("ce", None, [2.70, 2.75, 2.72, 2.68, 2.74])
    records += _finals("ce-ls", 0.1, [2.71, 2.73, 2.74, 2.70, 2.72]) + grid("ce-ls", {0.05: 3.1, 0.1: 3.0, 0.2: 3.05})
    c = P.find_comparison(P.summarize_protocol(records), "data-poor", "ce-ls", "ce")
    assert not c["decided"] and c["low"] < 0 < c["high"]
    assert c["verdict"] == f"no difference larger than {max(-c['low'], c['high']):.3f}"
    assert "effect" not in c["verdict"]


def test_the_converged_budget_follows_the_pilot_rule():
    def pilot(steps, seed, selected):
        r = rec("ce", None, seed, 2.5, 2.4, "pilot", regime="converged")
        r["config"], r["selected_step"] = {"steps": steps}, selected
        return r

    assert P.converged_budget([]) == (None, P.PILOT_BUDGETS[0])
    ran = [pilot(600, s, 600) for s in P.GRID_SEEDS]  # still improving at its last step
    assert P.converged_budget(ran) == (None, 1200)
    ran += [pilot(1200, 100, 900), pilot(1200, 101, 1000)]  # 1000 > 0.8 × 1200: one seed has not turned
    assert P.converged_budget(ran) == (None, 2400)
    ran += [pilot(2400, 100, 1500), pilot(2400, 101, 1700)]
    assert P.converged_budget(ran) == (2400, None)
    cfg = P.regime_config("converged", DistillConfig(), ran)
    assert (cfg.steps, cfg.eval_every, cfg.train_fraction) == (2400, 100, 1.0)
    tasks = P.ready_tasks(ran[:2], ["converged"], ["ce", "hybrid"], DistillConfig())
    assert [(t[1], t[2], t[4], t[3]["steps"]) for t in tasks] == [("ce", 100, "pilot", 1200),
                                                                 ("ce", 101, "pilot", 1200)]


def test_extra_seeds_follow_the_declared_rule():
    wide = _finals("uld-offset", 1.0, [2.70, 2.80, 2.60, 2.90, 2.75]) + grid("uld-offset", {0.3: 3.0, 1.0: 2.9,
                                                                                          3.0: 2.95, 10.0: 3.2})
    records = wide + _finals("ce", None, [2.72, 2.71, 2.74, 2.69, 2.73])
    assert P.extension_runs(records, "data-poor") == {"uld-offset", "ce"}  # undecided and too wide: 5 more seeds
    tasks = P.ready_tasks(records, ["data-poor"], ["ce", "uld-offset"], DistillConfig())
    assert {t[2] for t in tasks} == set(P.EXTRA_SEEDS)
    tight = _finals("ce", None, [2.70, 2.80, 2.60, 2.90, 2.75])
    assert P.extension_runs(wide + [dict(r, test_selected=r["test_selected"] + 0.3) for r in tight],
                            "data-poor") == set()  # decided: no more seeds


def test_summary_uses_the_finals_at_the_chosen_value_only():
    records = grid("uld-offset", {0.3: 3.0, 1.0: 2.9, 3.0: 2.95, 10.0: 3.2})
    records += [rec("uld-offset", 1.0, s, 2.9, 2.7 + 0.01 * s, "final") for s in P.SEEDS]
    records += [rec("uld-offset", 0.3, s, 3.0, 1.0, "final") for s in P.SEEDS]  # left over from another choice
    records += [rec("uld-shuffled", 1.0, s, 2.9, 2.75 + 0.01 * s, "final") for s in P.SEEDS]
    records += [rec("ce", None, s, 3.0, 2.8 + 0.02 * s, "final") for s in P.SEEDS]
    s = P.summarize_protocol(records)["data-poor"]
    assert s["runs"]["uld-offset"]["spec"] == "uld-offset@1" and s["runs"]["uld-offset"]["selected"]["n"] == 5
    assert s["runs"]["uld-offset"]["selected"]["mean"] == pytest.approx(2.72)
    c = P.find_comparison({"data-poor": s}, "data-poor", "uld-offset", "uld-shuffled")
    assert c["diff"] == pytest.approx(-0.05) and c["paired_std"] == pytest.approx(0, abs=1e-12) and c["decided"]
    assert P.beats({"data-poor": s}, "data-poor", "uld-offset", ("ce",))["ce"] is True
    assert [r[0] for r in P.result_rows({"data-poor": s}, "data-poor", ["ce", "uld-offset"])] == [
        "CE only", "CE + λ·ULD, offset-aligned"]


def test_results_file_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "runs.jsonl"
    other = rec("ce", None, 0, 3.0, 3.0, "final")
    other["config"] = {"steps": 7}
    path.write_text(json.dumps(other) + "\n")
    with pytest.raises(ValueError, match="other settings"):
        P.run_protocol(path, ["data-poor"], ["ce"], DistillConfig(device="cpu"), jobs=1)
    path.write_text("not json\n")
    with pytest.raises(ValueError, match="not a JSON record"):
        P.load_records(path)


@pytest.mark.slow
def test_protocol_command_runs_resumes_and_reports(tmp_path):
    """The one command, tiny: grids, selection, finals; a second call finds nothing left to do."""
    out = tmp_path / "runs.jsonl"
    cmd = [sys.executable, "-m", "uldviz", "protocol", "--fast", "--runs", "ce", "ce-ls", "--regimes", "data-poor",
           "--seeds", "0", "1", "--grid-seeds", "100", "--jobs", "2", "--out", str(out)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    records = P.load_records(out)
    assert all(r["command"] == P.COMMAND for r in records)
    grid_runs = [r for r in records if r["phase"] == "grid"]
    assert {r["run"] for r in grid_runs} == {"ce-ls"} and len(grid_runs) >= 3
    chosen = P.select_value(records, "data-poor", "ce-ls", (100,))
    assert chosen is not None
    assert sorted(r["spec"] for r in records if r["phase"] == "final") == sorted(
        ["ce", "ce"] + [f"ce-ls@{chosen:g}"] * 2)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and len(P.load_records(out)) == len(records)
    assert "ce-ls − ce" in second.stdout and "interval" in second.stdout


def test_verdict_lines_read_the_interval_and_say_what_is_missing():
    base = [2.4, 2.9, 2.6, 3.1, 2.7]
    records = _finals("ce", None, base) + _finals("ce-ls", 0.1, [x - 0.05 + 0.002 * i for i, x in enumerate(base)])
    records += grid("ce-ls", {0.05: 3.1, 0.1: 3.0, 0.2: 3.05})
    records += _finals("uld-offset", 1.0, [x + 0.01 * (-1) ** i for i, x in enumerate(base)])
    records += grid("uld-offset", {0.3: 3.0, 1.0: 2.9, 3.0: 2.95, 10.0: 3.2})
    s = P.summarize_protocol(records)
    c = P.find_comparison(s, "data-poor", "ce-ls", "ce")
    line = P.verdict_line(s, "data-poor", "ce-ls", "ce")
    assert f"{c['diff']:+.3f}" in line and f"[{c['low']:+.3f}, {c['high']:+.3f}]" in line
    assert f"{c['confidence']:.1%}" in line and "**`ce-ls` better than `ce`**" in line and "5 paired seeds" in line
    undecided = P.verdict_line(s, "data-poor", "uld-offset", "ce")
    assert "no difference larger than" in undecided and "effect" not in undecided
    assert P.verdict_line(s, "data-poor", "hybrid", "ce") == "`hybrid` − `ce`: not run yet"
    block = P.verdict_block(s, "data-poor", [("ce-ls", "ce"), ("hybrid", "ce")])
    assert block.startswith("*data-poor* (3 % of the text, 300 steps; a ") and "not run yet" in block
    assert "(300 steps)" not in block  # the label already says the steps
    assert P.verdict_block(s, "converged", [("ce-ls", "ce")]).endswith("not run yet.")
    assert "steps not fixed yet" in P.verdict_block(s, "converged", [("ce-ls", "ce")])


def test_pilot_rows_show_how_the_budget_was_fixed():
    def pilot(steps, seed, selected):
        r = rec("ce", None, seed, 2.5, 2.4, "pilot", regime="converged")
        r["config"], r["selected_step"] = {"steps": steps}, selected
        return r

    rows = P.pilot_rows([pilot(1200, 101, 1000), pilot(600, 100, 600), pilot(1200, 100, 900)])
    assert [r[:3] for r in rows] == [[600, 100, 600], [1200, 100, 900], [1200, 101, 1000]]
    assert rows[1][3:] == ["960", "yes"] and rows[2][4].startswith("no")


def test_paired_values_are_what_a_comparison_pairs():
    from uldviz.maths.stats import paired_difference

    records = _finals("ce", None, [2.70, 2.75, 2.72, 2.68, 2.74])
    records += _finals("ce-ls", 0.1, [2.71, 2.73, 2.74, 2.70, 2.72]) + grid("ce-ls", {0.05: 3.1, 0.1: 3.0, 0.2: 3.05})
    s = P.summarize_protocol(records)
    a, b = P.paired_values(s, "data-poor", "ce-ls", "ce")
    c = P.find_comparison(s, "data-poor", "ce-ls", "ce")
    assert paired_difference(a, b).interval(c["confidence"]) == pytest.approx((c["low"], c["high"]))
    assert P.paired_values(s, "data-poor", "hybrid", "ce") == ([], [])
