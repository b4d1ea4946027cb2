"""Run a lesson notebook headless (fast mode) once, with its solutions, and read its outputs: shared by the tests.

conftest.py's ``lesson`` fixture keeps one :func:`run_lesson` per notebook for the whole session: the notebook tests
and the site build (tests/test_site.py) read the same run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from uldviz.course.site import MessageTrace, execute

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
#: The set-up cell's flag line, which the appended solution run does not repeat.
_FLAG_LINE = re.compile(r"^SHOW_SOLUTIONS = (True|False)\b", re.M)


@dataclass(frozen=True)
class LessonRun:
    """One headless run: the notebook's own cells as committed, then ``SHOW_SOLUTIONS = True`` and a copy of every
    code cell that reads the flag (the solutions cell, the instructor lines of the predict-then-drag cells)."""

    nb: nbformat.NotebookNode  # all the executed cells, the appended ones last
    own: int  # how many of them are the notebook's own
    seconds: float  # kernel start-up and the notebook's own cells (a learner's Run All)
    peak_mb: float | None  # the kernel's peak resident memory

    def learner(self) -> nbformat.NotebookNode:
        """A copy of the notebook as a learner's Run All leaves it (no appended cell): what the site renders."""
        nb = copy.deepcopy(self.nb)
        nb.cells = nb.cells[:self.own]
        return nb

    def outputs(self, part: str = "all") -> list:
        """The outputs of the learner's cells (``"learner"``), of the appended solution run (``"solutions"``) or all."""
        cells = {"all": self.nb.cells, "learner": self.nb.cells[:self.own], "solutions": self.nb.cells[self.own:]}[part]
        return [out for cell in cells for out in cell.get("outputs", [])]

    def text(self, part: str = "all") -> str:
        """Those outputs as JSON text (streams, Markdown, errors: everything a phrase can be searched in)."""
        return json.dumps(self.outputs(part), ensure_ascii=False)


def run_lesson(name: str) -> LessonRun:
    """Execute ``notebooks/<name>`` in a fresh kernel with ``ULDVIZ_FAST=1`` and the hub offline (see LessonRun)."""
    path = NOTEBOOKS / name
    own = nbformat.read(path, as_version=4).cells
    readers = [c.source for c in own if c.cell_type == "code" and "SHOW_SOLUTIONS" in c.source
               and not _FLAG_LINE.search(c.source)]
    memory, trace = {}, MessageTrace()
    with fast_env(), _env("HF_HUB_OFFLINE", "1"):
        nb, seconds = execute(path, append=["SHOW_SOLUTIONS = True", *readers] if readers else [], memory=memory,
                              trace=trace)
    appended = sum(s for i, s in trace.seconds.items() if i >= len(own))
    return LessonRun(nb, len(own), seconds - appended, memory.get("peak_mb"))


def fast_env():
    """``ULDVIZ_FAST=1`` inside the block, as it was afterwards (kernels started inside inherit it)."""
    return _env("ULDVIZ_FAST", "1")


@contextlib.contextmanager
def _env(name: str, value: str):
    """``os.environ[name]`` set to ``value`` inside the block, as it was afterwards."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def error_outputs(nb) -> list[str]:
    """Every error output in an executed notebook, as 'cell N: ename: evalue'."""
    errors = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
    return errors
