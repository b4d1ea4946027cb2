"""Run a notebook top to bottom headless (fast mode) and report errors by cell: shared by the notebook tests."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from uldviz.lessons import set_flag

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def run_notebook(name: str, timeout: int = 600, fast: bool = True,
                 solutions: bool = False) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``notebooks/<name>`` in a fresh kernel (``ULDVIZ_FAST=1`` unless fast=False); return (nb, seconds).

    ``solutions=True`` runs it with ``SHOW_SOLUTIONS = True`` (the line in its set-up cell), so the solutions execute.
    """
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    if solutions:
        set_flag(nb, "SHOW_SOLUTIONS", True)
    # IPC sockets in a private folder: no TCP port race when several kernels start at once.
    with fast_env(fast), tempfile.TemporaryDirectory(prefix="uldviz-kernel-") as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "kernel"))
        client = NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(NOTEBOOKS)}})
        start = time.perf_counter()
        client.execute()
        elapsed = time.perf_counter() - start
    return nb, elapsed


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
