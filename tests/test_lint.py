"""The linter is part of the suite: ruff (configured in pyproject.toml) must pass on the package and the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    """The ruff command of this environment (the module, else the executable on PATH)."""
    probe = subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "ruff"]
    exe = shutil.which("ruff")
    assert exe, "ruff is not installed: pip install -e '.[test]'"
    return [exe]


def test_ruff_check_passes():
    """`ruff check uldviz tests benchmarks` reports nothing; on failure the assertion shows ruff's own output."""
    cmd = [*_ruff(), "check", "--no-cache", "--output-format=concise", "uldviz", "tests", "benchmarks"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"ruff found problems:\n{done.stdout}\n{done.stderr}"
