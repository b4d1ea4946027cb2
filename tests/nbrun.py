"""Run a notebook top to bottom headless (fast mode) and report errors by cell: shared by the notebook tests."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import nbformat

from uldviz.course.site import execute

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def run_notebook(name: str, timeout: int | None = None, fast: bool = True,
                 solutions: bool = False) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``notebooks/<name>`` in a fresh kernel (``ULDVIZ_FAST=1`` unless fast=False); return (nb, seconds).

    ``solutions=True`` runs it with ``SHOW_SOLUTIONS = True`` (the line in its set-up cell), so the solutions execute.
    The kernel is the site builder's (:func:`uldviz.course.site.execute`): one way to run a lesson headless.
    """
    with fast_env(fast):
        return execute(NOTEBOOKS / name, timeout=timeout, solutions=solutions)


def run_outputs(name: str, timeout: int | None = None, solutions: bool = True) -> str:
    """Run ``name`` in fast mode (solutions on), assert no cell shows an error, return all outputs as JSON text."""
    nb, _ = run_notebook(name, timeout=timeout, solutions=solutions)
    assert error_outputs(nb) == []
    return json.dumps([c.get("outputs", []) for c in nb.cells], ensure_ascii=False)


@contextlib.contextmanager
def fast_env(fast: bool = True):
    """``ULDVIZ_FAST`` set to 1 (or 0) inside the block, as it was afterwards (kernels started inside inherit it)."""
    before = os.environ.get("ULDVIZ_FAST")
    os.environ["ULDVIZ_FAST"] = "1" if fast else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ULDVIZ_FAST", None)
        else:
            os.environ["ULDVIZ_FAST"] = before


def error_outputs(nb) -> list[str]:
    """Every error output in an executed notebook, as 'cell N: ename: evalue'."""
    errors = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
    return errors
