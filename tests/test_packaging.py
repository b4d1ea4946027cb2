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
from uldviz import colab

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


def _pyproject_runtime() -> dict[str, str]:
    """The packages a notebook needs: core dependencies plus the [lab] extra (what Binder must install)."""
    deps = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["lab"]
    return dict(_req(d) for d in deps)


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
def test_core_dependencies_are_lower_bounds_only():
    """Colab ships its own torch and ipywidgets 7.7: any '==', '<' or '~=' would make pip replace them."""
    for spec in PYPROJECT["project"]["dependencies"]:
        name, constraint = _req(spec)
        assert re.fullmatch(r"(>=\s*[\w.]+)?", constraint), f"{spec!r}: only a '>=' lower bound is allowed"
    core = dict(_req(d) for d in PYPROJECT["project"]["dependencies"])
    assert core.get("ipywidgets") == ">=7.7", "ipywidgets must accept Colab's 7.7"
    assert "torch" in core


def test_jupyterlab_is_an_extra_not_a_core_dependency():
    """Installing JupyterLab on Colab is heavy and can break its front end: it belongs to the [lab] extra."""
    core = dict(_req(d) for d in PYPROJECT["project"]["dependencies"])
    lab = dict(_req(d) for d in PYPROJECT["project"]["optional-dependencies"]["lab"])
    assert "jupyterlab" not in core and "notebook" not in core
    assert "jupyterlab" in lab


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
    ``python -m uldviz.colab`` after a change."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    badge, setup = nb.cells[0], nb.cells[1]
    for cell in (badge, setup):
        assert colab.LAUNCH_TAG in cell.metadata.get("tags", []), f"{path.name}: launch cells must come first"
    assert colab.colab_url(path.name) in badge.source
    assert setup.cell_type == "code" and setup.source == colab.setup_source(), (
        f"{path.name}: its setup cell is stale; run python -m uldviz.colab"
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
    assert not any("[" in arg for arg in pip), f"no extras on Colab (no JupyterLab): {pip}"
    assert widget_manager == [True]


# ------------------------------------------------------------------ README, Makefile, CI
def test_readme_gives_the_two_commands_and_what_students_need():
    head = README.split("\n## ", 1)[0]
    assert "Universal Logit Distillation" in head, "the README must start with what the kit is"
    for text in [
        "make lab",
        "make test",
        "python benchmarks/bench.py",
        "python -m uldviz distill",
        "--index-url https://download.pytorch.org/whl/cpu",
        "## Troubleshooting",
        "ipywidgets 7.7",
    ]:
        assert text in README, f"README does not mention {text!r}"
    trouble = README.split("## Troubleshooting", 1)[1].lower()
    for topic in ["widgets do not show", "kernel dies", "no gpu"]:
        assert topic in trouble, f"troubleshooting lacks {topic!r}"
    assert "notebooks/README.md" in README and (ROOT / "notebooks" / "README.md").exists()


def test_instructor_page_covers_every_notebook():
    page = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    for name in ["01_kl_breaks.ipynb", "02_optimal_transport.ipynb", "03_distillation.ipynb"]:
        assert name in page
    for word in ["Objectives", "Prerequisites", "heavy"]:
        assert word.lower() in page.lower()


def _make_dry_run(target: str) -> str:
    done = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_runs_the_suite_and_the_ipywidgets7_widget_tests():
    """`make test` = install into .venv + the widget tests under ipywidgets 7.7 + the whole suite."""
    plan = _make_dry_run("test")
    assert "pip install -e '.[lab,test]'" in plan
    assert "ipywidgets==7.7" in plan and "-m widgets" in plan
    assert re.search(r"pytest -ra(\s|$)", plan) or "python -m pytest" in plan
    assert "exit code 5" in plan, "pytest's exit code 5 must be handled"
    lab = _make_dry_run("lab")
    assert "pip install -e '.[lab,test]'" in lab and "jupyterlab --notebook-dir=notebooks" in lab


def test_ci_script_prepares_the_machine_then_runs_the_readme_command():
    ci = ROOT / ".ci" / "run"
    text = ci.read_text(encoding="utf-8")
    assert os.access(ci, os.X_OK), ".ci/run must be executable"
    assert "set -euo pipefail" in text
    assert "chromium" in text and "apt-get install" in text
    torch_at, make_at = text.find("pip install -q torch==2.13.0"), text.find("exec make test")
    assert 0 < torch_at < make_at, "CPU torch must be installed before `make test` pulls the dependencies"
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
