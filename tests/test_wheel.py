"""The kit installed from its wheel, outside a checkout: the loss API works, the commands start, and a notebook's
data (the shipped teacher, tokenizers, corpus split) is either found or asked for in one line that says how."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_python(tmp_path_factory):
    """A fresh environment holding the kit's wheel (no checkout on its path); torch and numpy come from this one."""
    tmp = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp / "dist").glob("uldviz-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True, timeout=120)
    site = next((tmp / "venv" / "lib").glob("python3*/site-packages"))
    # this environment's packages (torch, numpy, transformers ...) but not its editable install of the kit
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp / "venv" / "bin" / "python", tmp


def _run(python, code: str, cwd, env=None):
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **(env or {})})


@pytest.mark.slow
def test_the_wheel_gives_the_loss_api_and_the_commands(wheel_python):
    python, tmp = wheel_python
    done = _run(python, "import uldviz, torch; from uldviz import uld_loss\n"
                        "s = torch.randn(4, 50, requires_grad=True); loss = uld_loss(s, torch.randn(4, 70))\n"
                        "loss.backward(); print(uldviz.__file__, float(loss), bool(s.grad.abs().sum() > 0))", tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    where, value, grad = done.stdout.split()
    assert where.startswith(str(tmp)) and float(value) > 0 and grad == "True"  # the wheel's copy, not the checkout
    cmd = subprocess.run([str(python), "-m", "uldviz", "distill", "--help"], capture_output=True, text=True, cwd=tmp,
                         timeout=300)
    assert cmd.returncode == 0 and "usage" in cmd.stdout


@pytest.mark.slow
def test_a_notebook_run_from_the_wheel_says_in_one_line_how_to_get_its_data(wheel_python):
    python, tmp = wheel_python
    done = _run(python, "from uldviz import distill\ndistill.prepare('offline')", tmp)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0 and last.startswith("FileNotFoundError") and "ULDVIZ_DATA" in last
    code = "from uldviz.io.tokenizers import offline_tokenizers\nprint(len(offline_tokenizers().student))"
    found = _run(python, code, tmp, env={"ULDVIZ_DATA": str(ROOT / "data")})
    assert found.returncode == 0 and found.stdout.strip() == "640"  # pointed at a data folder, it finds it
