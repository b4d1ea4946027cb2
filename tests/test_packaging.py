"""Install and launch paths agree with each other: pyproject, environment.yml (Binder), README, notebooks, Colab, CI.

These are the checks a person would otherwise make by hand before a class: one repository address everywhere,
Binder installing the same packages as pip, Colab never upgrading its torch or ipywidgets, the README's two
commands and the CI script wired to each other.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import uldviz
from uldviz.course import colab

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: conda-forge name -> PyPI name, where they differ.
CONDA_TO_PYPI = {"pytorch-cpu": "torch", "matplotlib-base": "matplotlib"}


def _req(spec: str) -> tuple[str, str]:
    """('name', 'version constraint') of a requirement string, the name normalised (lower case, '-')."""
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*(.*)$", spec)
    assert m, f"cannot parse requirement {spec!r}"
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2).strip()


def _extra(name: str) -> dict[str, str]:
    """One optional-dependency group of pyproject.toml, without its references to the kit's own extras."""
    return dict(_req(d) for d in PYPROJECT["project"]["optional-dependencies"][name] if _req(d)[0] != "uldviz")


def _core() -> dict[str, str]:
    """pyproject.toml's core dependencies (name -> constraint)."""
    return dict(_req(d) for d in PYPROJECT["project"]["dependencies"])


def _pyproject_runtime() -> dict[str, str]:
    """The packages a notebook needs: core + [notebooks] + [lab] (what Binder must install)."""
    return _core() | _extra("notebooks") | _extra("lab")


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))


def _conda_deps() -> dict[str, str]:
    """environment.yml's conda packages as PyPI names -> constraint (python and pip left out)."""
    out = {}
    for dep in _environment()["dependencies"]:
        if isinstance(dep, str):
            name, constraint = _req(dep.replace("=", "==", 1) if re.match(r"^[\w-]+=[^=]", dep) else dep)
            if name not in {"python", "pip"}:
                out[CONDA_TO_PYPI.get(name, name)] = constraint
    return out


# ------------------------------------------------------------------ pyproject: Colab must not be upgraded
def test_runtime_dependencies_are_lower_bounds_only():
    """Colab ships its own torch and ipywidgets 7.7: any '==', '<' or '~=' would make pip replace them."""
    for name, constraint in _pyproject_runtime().items():
        assert re.fullmatch(r"(>=\s*[\w.]+)?", constraint), f"{name}{constraint}: only a '>=' lower bound is allowed"
    assert _extra("notebooks").get("ipywidgets") == ">=7.7", "ipywidgets must accept Colab's 7.7"


def test_core_is_the_loss_and_the_rest_is_behind_extras():
    """A loss user gets torch and numpy only; the notebooks' packages are the [notebooks] extra, which [lab] and
    [test] pull in; JupyterLab (heavy, and harmful to Colab's front end) is only in [lab]."""
    assert set(_core()) == {"torch", "numpy"}
    assert {"ipywidgets", "matplotlib", "transformers", "tokenizers", "safetensors", "pot", "jupyter-ui-poll",
            "tqdm"} <= set(_extra("notebooks"))
    for extra in ("lab", "test"):
        own = [d for d in PYPROJECT["project"]["optional-dependencies"][extra] if _req(d)[0] == "uldviz"]
        assert "uldviz[notebooks]" in own, f"[{extra}] must install the notebooks' packages too"
    assert "uldviz[scale]" in [d for d in PYPROJECT["project"]["optional-dependencies"]["test"]
                               if _req(d)[0] == "uldviz"], "[test] must install the scale engine's packages"
    assert "jupyterlab" in _extra("lab") and "jupyterlab" not in _core() | _extra("notebooks")


# Hides the optional packages from a fresh interpreter, as if they were not installed: a None entry in
# sys.modules makes `import x` raise ModuleNotFoundError and importlib.util.find_spec("x") return None.
_LIGHT_IMPORT = r"""
import sys
HIDDEN = {"transformers", "ot", "ipywidgets", "matplotlib", "tokenizers", "IPython", "safetensors", "tqdm",
          "jupyter_ui_poll", "nbformat", "scipy"}
for name in HIDDEN:
    sys.modules[name] = None
import torch
import uldviz, uldviz.maths.losses, uldviz.alignment.positions
s = torch.randn(2, 3, 50, requires_grad=True)
t = torch.randn(2, 3, 70)
pairs = uldviz.alignment.positions.positional_pairing(torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 3,
dtype=torch.bool))
loss = uldviz.uld_loss(s, t) + uldviz.maths.losses.uld_loss(s, t, top_k=5)
loss.backward()
assert torch.isfinite(loss) and s.grad.abs().sum() > 0 and pairs.num_pairs == 6
print("LOADED", sorted(m for m in sys.modules if m.partition(".")[0] in HIDDEN and sys.modules[m] is not None))
"""


def test_the_loss_imports_with_only_torch_and_numpy():
    """`import uldviz`, its losses and position pairing, and the loss with its gradient, with the extras hidden."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", _LIGHT_IMPORT], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "LOADED []"


# ------------------------------------------------------------------ Binder
def test_environment_yml_lists_the_same_packages_as_pyproject():
    """Binder installs exactly the runtime packages pip would (names mapped conda <-> PyPI), same lower bounds."""
    conda, pypi = _conda_deps(), _pyproject_runtime()
    only_conda, only_pypi = sorted(set(conda) - set(pypi)), sorted(set(pypi) - set(conda))
    assert not only_conda and not only_pypi, f"only in environment.yml: {only_conda}; only in pyproject: {only_pypi}"
    for name, constraint in pypi.items():
        assert conda[name].replace(" ", "") == constraint.replace(" ", ""), (
            f"{name}: environment.yml says {conda[name]!r}, pyproject says {constraint!r}"
        )


def test_environment_yml_is_conda_forge_cpu_only_and_installs_the_kit():
    env = _environment()
    assert env["channels"][0] == "conda-forge" and "defaults" not in env["channels"]
    names = [_req(d)[0] for d in env["dependencies"] if isinstance(d, str)]
    assert "pytorch-cpu" in names, "Binder must get the CPU-only PyTorch"
    assert not [n for n in names if "cuda" in n or n in {"pytorch-gpu", "pytorch", "torch"}], names
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_lists == [["-e ."]], "repo2docker does not install the package by itself: pip: [-e .]"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert tuple(int(x) for x in python.split("=")[-1].split(".")[:2]) >= (3, 10)


# ------------------------------------------------------------------ one repository address
def test_pyproject_url_is_uldviz_repo_url():
    assert PYPROJECT["project"]["urls"]["Repository"] == uldviz.REPO_URL


def test_readme_badges_point_at_repo_url():
    """Binder opens JupyterLab on notebooks/; every notebook has its Colab badge; no other address sneaks in."""
    assert f"]({colab.binder_url()})" in README
    assert "urlpath=lab/tree/notebooks" in colab.binder_url()
    expected = {f"notebooks/{p.name}" for p in NOTEBOOKS} | {
        "notebooks/01_kl_breaks.ipynb",
        "notebooks/02_optimal_transport.ipynb",
        "notebooks/03_distillation.ipynb",
    }
    for rel in sorted(expected):
        assert f"]({colab.colab_url(Path(rel).name)})" in README, f"README has no Colab badge for {rel}"
    owner_name = uldviz.REPO_URL.split("github.com/", 1)[1]
    for found in re.findall(r"(?:colab\.research\.google\.com/github|mybinder\.org/v2/gh)/([^/\s)]+/[^/\s)]+)", README):
        assert found == owner_name, f"README links to {found}, not to uldviz.REPO_URL ({owner_name})"
    for found in re.findall(r"github\.com/([\w.-]+/[\w.-]+)", README):
        assert found == owner_name, f"README names repository {found}; the kit's is {owner_name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_launch_cells_match_repo_url(path):
    """The first two cells are the current launch cells (badge + setup) for uldviz.REPO_URL: refresh them with
    ``python -m uldviz.course.colab`` after a change."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    badge, setup = nb.cells[0], nb.cells[1]
    for cell in (badge, setup):
        assert colab.LAUNCH_TAG in cell.metadata.get("tags", []), f"{path.name}: launch cells must come first"
    assert colab.colab_url(path.name) in badge.source
    assert setup.cell_type == "code" and setup.source == colab.setup_source(), (
        f"{path.name}: its setup cell is stale; run python -m uldviz.course.colab"
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec python3 missing"
    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not with_outputs, f"{path.name}: commit notebooks without outputs (cells {with_outputs})"


def test_colab_url_rejects_a_non_github_address():
    with pytest.raises(ValueError, match="github"):
        colab.colab_url("01_kl_breaks.ipynb", repo_url="https://gitlab.com/x/y")
    with pytest.raises(ValueError, match="OWNER/NAME"):
        colab.binder_url(repo_url="https://github.com/onlyowner")


def test_ensure_launch_cells_replaces_old_ones_and_keeps_the_rest():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("x = 1")]
    colab.ensure_launch_cells(nb, "99_demo.ipynb", repo_url="https://github.com/a/b")
    colab.ensure_launch_cells(nb, "99_demo.ipynb")  # a second call refreshes, never duplicates
    assert len(nb.cells) == 4
    assert [c.source for c in nb.cells[2:]] == ["# Title", "x = 1"]
    assert "github/a/b" not in nb.cells[0].source and uldviz.REPO_URL in nb.cells[1].source
    assert nb.metadata.kernelspec["name"] == "python3"


# ------------------------------------------------------------------ the Colab setup cell
def _run_setup_cell(monkeypatch, on_colab: bool):
    """Execute the setup cell's source; subprocess, chdir and Colab's output module are recorded, not run."""
    calls, widget_manager = [], []
    done = types.SimpleNamespace(returncode=0, stderr="")
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or done)
    monkeypatch.setattr(os, "chdir", lambda path: calls.append(["chdir", path]))
    monkeypatch.setattr(sys, "path", list(sys.path))
    if on_colab:
        output = types.SimpleNamespace(enable_custom_widget_manager=lambda: widget_manager.append(True))
        google = types.ModuleType("google")
        colab_mod = types.ModuleType("google.colab")
        colab_mod.output = output
        google.colab = colab_mod
        monkeypatch.setitem(sys.modules, "google", google)
        monkeypatch.setitem(sys.modules, "google.colab", colab_mod)
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(colab.setup_source(), "<setup cell>", "exec"), {})
    return calls, widget_manager


def test_setup_cell_does_nothing_outside_colab(monkeypatch):
    calls, widget_manager = _run_setup_cell(monkeypatch, on_colab=False)
    assert calls == [] and widget_manager == []


def test_setup_cell_on_colab_clones_installs_without_upgrades_and_enables_widgets(monkeypatch):
    calls, widget_manager = _run_setup_cell(monkeypatch, on_colab=True)
    clone = next(c for c in calls if c[:2] == ["git", "clone"])
    assert uldviz.REPO_URL in clone
    pip = next(c for c in calls if "pip" in c)
    assert "install" in pip and "-q" in pip
    assert not {"-U", "--upgrade", "--force-reinstall"} & set(pip), f"the setup cell must not upgrade: {pip}"
    target = pip[pip.index("-e") + 1]
    assert target == f"{clone[-1]}[notebooks]", f"Colab installs the notebooks' extra, not [lab]: {pip}"
    assert widget_manager == [True]


# ------------------------------------------------------------------ README, Makefile, CI
def _readme_commands() -> list[str]:
    """Every command line of the README's bash blocks (continuation lines joined, comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    return [line.split("#", 1)[0].strip() for b in blocks for line in b.replace("\\\n", " ").splitlines()
            if line.split("#", 1)[0].strip()]


def test_every_kit_command_the_readme_gives_starts():
    """The README's `python -m uldviz X` and `python -m uldviz.Y` lines name commands that exist and answer --help."""
    from uldviz.__main__ import COMMANDS

    named = set()
    for line in _readme_commands():
        for m in re.finditer(r"python -m (uldviz(?:\.[\w.]+)?)(?: (\S+))?", line):
            module, sub = m.group(1), m.group(2)
            named.add((module, sub if module == "uldviz" else None))
    assert ("uldviz", "train") in named and ("uldviz", "distill") in named
    for module, sub in sorted(named, key=str):
        if module == "uldviz":
            assert sub in COMMANDS, f"the README runs `python -m uldviz {sub}`, which is no command"
            argv = [sys.executable, "-m", "uldviz", sub, "--help"]
        else:
            argv = [sys.executable, "-m", module, "--help"]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert done.returncode == 0 and "usage" in done.stdout.lower(), (argv, done.stderr[-500:])


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_readme_make_targets_exist():
    targets = {m.group(1) for line in _readme_commands() for m in re.finditer(r"\bmake (\w+)", line)}
    assert {"lab", "test"} <= targets
    for target in targets:
        assert subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True).returncode == 0, target


def test_instructor_page_covers_every_lesson():
    from uldviz.course.lessons import lesson_paths

    page = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    for path in lesson_paths():
        assert path.name in page, f"notebooks/README.md does not mention {path.name}"


def _make_dry_run(target: str) -> str:
    done = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _run_test_target(tmp_path, target: str, pytest_rc: int) -> tuple[int, list[str]]:
    """Run a Makefile test target with a stand-in interpreter that records its arguments and exits ``pytest_rc``.

    ``-o`` marks the install steps as done, so only the target's own recipe runs (no virtual environment made).
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    fake, log = tmp_path / "python", tmp_path / "args"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexit {pytest_rc}\n')
    fake.chmod(0o755)
    done = subprocess.run(["make", "--no-print-directory", "-o", "install", "-o", ".venv/ipywidgets7/.installed",
                           target, f"PY={fake}", "VENV=.venv"], cwd=ROOT, capture_output=True, text=True)
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, [c for c in calls if c.startswith("-m pytest")]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_runs_the_suite_and_the_ipywidgets7_widget_tests(tmp_path):
    """`make test` = install into .venv + the widget tests under ipywidgets 7.7 + the whole, unfiltered suite."""
    plan = _make_dry_run("test")
    assert "pip install -e '.[lab,test]'" in plan and "ipywidgets==7.7" in plan
    rc, calls = _run_test_target(tmp_path / "main", "test-main", 0)
    assert rc == 0 and calls == ["-m pytest -ra"], f"the main pass must run every test, unfiltered: {calls}"
    assert _run_test_target(tmp_path / "main-fail", "test-main", 1)[0] != 0
    rc, calls = _run_test_target(tmp_path / "w7", "test-ipywidgets7", 0)
    assert rc == 0 and len(calls) == 1 and calls[0].startswith("-m pytest -m widgets")
    for failing in (1, 5):  # 5 = no test collected: a widget pass that runs nothing must fail
        assert _run_test_target(tmp_path / f"w7-{failing}", "test-ipywidgets7", failing)[0] != 0, failing
    lab = _make_dry_run("lab")
    assert "pip install -e '.[lab,test]'" in lab and "jupyterlab --notebook-dir=notebooks" in lab


def _version(text: str) -> tuple[int, ...]:
    """'2.13.0' -> (2, 13, 0)."""
    return tuple(int(x) for x in re.findall(r"\d+", text))


def test_ci_script_prepares_the_machine_then_runs_the_readme_command():
    ci = ROOT / ".ci" / "run"
    text = ci.read_text(encoding="utf-8")
    assert os.access(ci, os.X_OK), ".ci/run must be executable"
    assert "set -euo pipefail" in text
    assert "chromium" in text and "apt-get install" in text
    pins = [(m.start(), m.group(1)) for m in re.finditer(r"^[^#\n]*pip install[^\n]*\btorch==([\d.]+)", text, re.M)]
    make_at = text.find("exec make test")
    assert len(pins) == 1 and 0 < pins[0][0] < make_at, "torch must be installed (pinned) before `make test` runs"
    lower = _core()["torch"].removeprefix(">=")
    assert _version(pins[0][1]) >= _version(lower), f"CI pins torch {pins[0][1]}, below the kit's torch>={lower}"
    assert subprocess.run(["bash", "-n", str(ci)]).returncode == 0


@pytest.mark.widgets
def test_widget_tests_run_under_the_expected_ipywidgets():
    """`make test` reruns the widget tests with ULDVIZ_EXPECT_IPYWIDGETS=7: prove the overlay really is 7.7."""
    import ipywidgets

    expected = os.environ.get("ULDVIZ_EXPECT_IPYWIDGETS")
    major = int(ipywidgets.__version__.split(".")[0])
    assert major >= 7
    if expected:
        assert major == int(expected), f"expected ipywidgets {expected}.x, got {ipywidgets.__version__}"
