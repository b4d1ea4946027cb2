"""Tests of the benchmark suite, ``python benchmarks/bench.py`` (outside the package; loaded here from its file).

The kernel itself is tested in tests/test_sorted_l1.py; here: the benchmark's baselines agree with the kit,
the memory probe measures what it claims, and a quick run writes complete, consistent results.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uldviz.maths import losses as L

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"


def _load_bench():
    """benchmarks/bench.py as a module (it is a script of the repository, not part of the package)."""
    spec = importlib.util.spec_from_file_location("uldviz_benchmarks_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


B = _load_bench()


def test_baselines_are_the_reference_and_the_loop_truncates_to_the_shorter_answer():
    torch.manual_seed(6)
    s, t = torch.randn(3, 10, 50), torch.randn(3, 8, 70)
    ssz, tsz = [10, 4, 7], [8, 6, 2]
    got = B.reference_uld_loss(s, t, ssz, tsz)
    per_sample = [L.uld_reference(torch.softmax(s[i, :n], -1), torch.softmax(t[i, :n], -1)).mean()
                  for i, n in enumerate(min(a, b) for a, b in zip(ssz, tsz))]
    assert torch.allclose(got, torch.stack(per_sample).mean(), atol=1e-6)
    full = B.reference_uld_loss(s[:, :8], t, [8] * 3, [8] * 3)
    assert torch.allclose(full, L.uld_loss(s[:, :8], t), atol=1e-6)
    assert torch.allclose(B.plain_uld_loss(s[:, :8], t), L.uld_loss(s[:, :8], t), atol=1e-6)


@pytest.mark.slow
def test_memory_probe_measures_softmax_as_one_logits_and_uld_within_target():
    res = B.bench_memory(256, 32768, 32768, "cpu", variants=("softmax", "uld"))
    assert "error" not in res, f"the memory probe crashed:\n{res.get('error')}"
    if res["method"].startswith("unavailable"):  # no /proc/self/clear_refs (not Linux): nothing to measure with
        pytest.skip(res["method"])
    soft = res["variants"]["softmax"]["multiple_of_logits"]
    uld = res["variants"]["uld"]["multiple_of_logits"]
    assert 0.8 <= soft <= 1.5, soft
    assert 1.0 <= uld <= 5.0, uld


@pytest.mark.slow
def test_quick_benchmark_writes_complete_consistent_results(tmp_path, capsys):
    out = tmp_path / "results.json"
    parts = "speed,profile,batch,memory,ot"  # the distillation step has its own test below
    assert B.main(["--quick", "--out", str(out), "--only", parts]) == 0
    res = json.loads(out.read_text())
    case = res["uld_speed"][0]
    for name in ("floor", "uld", "plain", "reference", "kl"):
        assert case["seconds"][name] > 0
    assert case["equal_to_plain"]["value_abs_diff"] <= 1e-6 and case["equal_to_plain"]["grad_max_abs_diff"] <= 1e-6
    assert all(e["never_above_full"] for c in res["uld_speed"] for e in c["topk_error"].values())
    assert res["uld_batch"][0]["value_abs_diff"] <= 1e-5
    # at --quick's tiny size the extra memory is below the resolution of RSS: only the run is checked here
    assert set(res["memory"]["variants"]) == set(B.MEMORY_VARIANTS) and res["memory"]["method"].startswith("peak RSS")
    assert set(res["ot_scaling"]["exponents"]) == {"closed_numpy", "closed_torch", "wasserstein_1d", "emd2",
                                                   "sinkhorn2"}
    assert json.loads((tmp_path / "bench_ot_quick.json").read_text())["methods"]  # not the shipped data file
    assert res["distill"] == {"not_measured": True, "reason": "not run"}
    assert res["meta"]["command"].startswith("python benchmarks/bench.py --quick")
    assert set(res["targets"]) >= {"uld_over_floor_cpu_worst", "uld_over_reference_worst", "equal_to_plain"}
    md = (tmp_path / "RESULTS.md").read_text()
    assert "## Targets" in md and "ULD forward + backward" in md and "Not measured: not run" in md
    assert "uld_over_floor_cpu_worst" in capsys.readouterr().out
    # --update re-measures one part and keeps the others.
    assert B.main(["--quick", "--out", str(out), "--update", "--only", "batch"]) == 0
    again = json.loads(out.read_text())
    assert len(again["runs"]) == 2 and again["uld_speed"] == res["uld_speed"]
    assert again["uld_batch"] != res["uld_batch"]  # re-measured: new timings
    with pytest.raises(SystemExit):
        B.main(["--quick", "--only", "speed,nonsense"])
    with pytest.raises(SystemExit):  # a lone part without --update: refused before anything runs
        B.main(["--quick", "--only", "distill"])
    assert "leaves out speed or batch" in capsys.readouterr().err


@pytest.mark.slow
def test_distillation_step_benchmark_times_the_objective_passed_to_the_loop():
    """Pairing and term are timed inside the loop's steps. The term timed alone is a separate measurement: whether it
    stays below a step is the benchmark's target ``distill_term_share_of_step``, not a test (a loaded machine)."""
    res = B.bench_distill(steps=8, skip=2, quick=True)
    assert res["steps_per_s"] > 0 and res["steps_timed"] == 8 - 1 - 2
    assert 0 < res["distill_term_forward_in_loop_s"] < res["step_s"] and 0 < res["pairing_in_loop_s"] < res["step_s"]
    assert res["distill_term_s"] > 0 and res["distill_term_share"] == res["distill_term_s"] / res["step_s"]


def test_the_benchmark_is_one_command_and_not_part_of_the_package():
    done = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "usage: python benchmarks/bench.py" in done.stdout
    assert not (ROOT / "uldviz" / "bench.py").exists()
    from uldviz.__main__ import COMMANDS

    assert "bench" not in COMMANDS
