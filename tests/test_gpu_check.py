"""The prepared GPU script's CPU dry run: every step still runs, so the script is ready the day a GPU is lent."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_step(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc["dry_run"] is True and doc["failed"] == []
    assert set(doc["steps"]) == {"tests", "notebooks", "scale", "speed"}
    # the shipped files are for GPU measurements only: a dry run never writes them
    assert (tmp_path / "GPU.md").read_text().strip()
    assert not (ROOT / "benchmarks" / "gpu_check.json").exists() or \
        json.loads((ROOT / "benchmarks" / "gpu_check.json").read_text())["dry_run"] is False


def test_gpu_check_refuses_to_pretend_without_a_gpu():
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is here")
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "no CUDA GPU here" in done.stderr
