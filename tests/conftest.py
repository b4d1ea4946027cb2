"""Shared pytest set-up: off-screen matplotlib, the automatic ``widgets`` marker, kernels that show figures, and
each lesson notebook executed at most once per session (the ``lesson`` fixture)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib
import pytest

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # never fetch a browser
matplotlib.use("Agg")  # figures made inside the test process are drawn off-screen

#: A test module that imports ipywidgets, anywidget, uldviz.viz.widgets or uldviz.viz.explorables at its top is a
#: widget test: `make test` reruns it under ipywidgets 7.7. Other tests can opt in with @pytest.mark.widgets.
_USES_WIDGETS = re.compile(
    r"^(import ipywidgets|from ipywidgets\b|import anywidget|from anywidget\b"
    r"|import uldviz\.viz\.(widgets|explorables)|from uldviz\.viz\.(widgets|explorables)\b"
    r"|from uldviz\.viz import .*(widgets|explorables))",
    re.M,
)


def pytest_configure(config):
    """Register the markers this file adds (the others are in pyproject.toml)."""
    config.addinivalue_line(
        "markers", "widgets: Python-side widget tests; `make test` also runs them under ipywidgets 7.7 (Colab)"
    )


def pytest_collection_modifyitems(config, items):
    """Mark the fast tests of every widget-using module ``widgets`` (notebook runs and the browser test excluded)."""
    uses_widgets: dict[Path, bool] = {}
    for item in items:
        path = Path(str(item.fspath))
        if path not in uses_widgets:
            uses_widgets[path] = bool(_USES_WIDGETS.search(path.read_text(encoding="utf-8")))
        if uses_widgets[path] and not ({"slow", "browser"} & set(item.keywords)):
            item.add_marker(pytest.mark.widgets)
    # Test modules may set MPLBACKEND=Agg while being imported; kernels started later must not inherit it.
    os.environ.pop("MPLBACKEND", None)


@pytest.fixture(autouse=True)
def _kernels_keep_inline_backend(monkeypatch):
    """Kernels started by a test inherit os.environ: MPLBACKEND=Agg there would turn every figure into text."""
    monkeypatch.delenv("MPLBACKEND", raising=False)


@pytest.fixture(scope="session")
def lesson():
    """``lesson(name)``: the :class:`nbrun.LessonRun` of ``notebooks/<name>``, executed on the first request only.

    The notebook tests and the site build share it (a run that failed fails every test that asks for it, unrun).
    """
    from nbrun import run_lesson

    runs: dict = {}

    def get(name: str):
        if name not in runs:
            try:
                runs[name] = run_lesson(name)
            except RuntimeError as err:  # a cell failed or stalled: execute() names it
                runs[name] = str(err)
        if isinstance(runs[name], str):
            pytest.fail(runs[name], pytrace=False)
        return runs[name]

    return get
