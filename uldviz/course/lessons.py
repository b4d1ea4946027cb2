r"""How long a lesson takes: measure a notebook (prose, code cells, exercises, widgets, run time), state its time.

One rule, written down so that every stated time can be recomputed (``python -m uldviz.course.lessons``):

.. math::

    \text{minutes} = \frac{\text{words of prose}}{100} + 1\cdot\text{code cells} + 3\cdot\text{widgets}
    + \sum_{\text{exercises}} m(\text{kind}) + \frac{\text{run time (s)}}{60},

rounded up to the next 5 minutes. Prose is the markdown cells without their formulas (100 words a
minute is a slow, technical reading speed that leaves time for the formulas); a code cell costs a
minute to read and to look at its output; a widget (a cell whose output is an interactive widget)
three minutes of trying what its prompt says; an exercise the minutes of :data:`EXERCISE_MINUTES`
for its kind; the run time is the measured Run All in default mode (the learner waits for it once).
Launch cells (tag ``uldviz-launch``) and solution cells (tag ``solution``) are not counted; an optional
appendix (from a ``## Appendix`` heading to the next level-2 heading) is stated separately, not in the total.

Exercises are found by their heading in a markdown cell, ``**Exercise 5 (implement).**``; in a
notebook without such headings every code cell that calls a ``check_`` function outside the
solutions counts as one exercise of kind ``unlabelled``. Maths and file IO only: no widgets here.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from uldviz.course.colab import LAUNCH_TAG
from uldviz.course.notation import write_readme_table
from uldviz.course.textblocks import replace_between

__all__ = [
    "READING_WPM",
    "MINUTES_PER_CODE_CELL",
    "MINUTES_PER_WIDGET",
    "EXERCISE_MINUTES",
    "ROUND_TO",
    "TIME_START",
    "TIME_END",
    "LessonStats",
    "LESSON_GLOB",
    "notebooks_folder",
    "lesson_paths",
    "prose_words",
    "notebook_stats",
    "estimate_minutes",
    "time_sentence",
    "set_flag",
    "replace_between",
    "read_record",
    "record_run",
    "lesson_table",
    "write_statements",
    "main",
]

#: Reading speed for the prose of a lesson, words per minute (technical text, formulas not counted).
READING_WPM = 100
#: Minutes to read one code cell and look at its output.
MINUTES_PER_CODE_CELL = 1.0
#: Minutes to try what an interactive widget's prompt suggests.
MINUTES_PER_WIDGET = 3.0
#: Minutes per exercise, by kind (the word in parentheses in the exercise's heading).
EXERCISE_MINUTES = {
    "by hand": 4.0,
    "explore": 4.0,
    "construct": 5.0,
    "interpret": 5.0,
    "derive": 10.0,
    "implement": 15.0,
    "unlabelled": 4.0,
}
#: Stated times are rounded up to a multiple of this many minutes.
ROUND_TO = 5
#: Markers around the generated time statement in a notebook's first markdown cells (invisible when rendered).
TIME_START, TIME_END = "<!-- uldviz:time -->", "<!-- /uldviz:time -->"
#: A markdown cell starting with this heading opens the optional part, until the next level-2 heading.
APPENDIX = "## Appendix"
#: Markers around the generated table of lessons in notebooks/README.md.
TABLE_START, TABLE_END = "<!-- uldviz:lessons -->", "<!-- /uldviz:lessons -->"
SOLUTION_TAG = "solution"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
#: Widget models a learner can act on; a view without any (a progress bar, a label) is not an interactive widget.
_CONTROL = re.compile(r"(Slider|Text|Textarea|Button|Dropdown|Checkbox|Select|SelectMultiple|RadioButtons|Combobox"
                      r"|ToggleButtons|Play|ColorPicker|DatePicker)Model$")
_EXERCISE = re.compile(r"\*\*Exercise\s+(\d+)\s+\(([a-z ]+)\)\.?\*\*")
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_GENERATED = re.compile(re.escape(TIME_START) + ".*?" + re.escape(TIME_END), re.S)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_WORD = re.compile(r"[^\W_][\w'’.-]*")


@dataclass
class LessonStats:
    """What :func:`estimate_minutes` needs to know about one notebook."""

    name: str
    words: int
    code_cells: int
    exercises: dict = field(default_factory=dict)  # kind -> count
    widgets: int | None = None  # cells showing a widget, known from an executed run
    run_seconds: float | None = None  # Run All, default mode
    optional_words: int = 0  # prose of the optional appendix (not in the stated total)
    optional_code_cells: int = 0

    @property
    def n_exercises(self) -> int:
        """Number of exercises of every kind."""
        return sum(self.exercises.values())


def prose_words(markdown: str) -> int:
    """Words of a markdown text, without formulas, HTML comments, link targets and the generated time statement."""
    text = _GENERATED.sub(" ", markdown)
    text = _LINK_TARGET.sub("]", _MATH.sub(" ", _COMMENT.sub(" ", text)))
    return len(_WORD.findall(text))


def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def _read(nb_or_path):
    """A notebook node from a node or a path (nbformat imported only when a path is given)."""
    if isinstance(nb_or_path, (str, Path)):
        import nbformat

        return nbformat.read(str(nb_or_path), as_version=4)
    return nb_or_path


def widget_state(nb) -> dict | None:
    """The widget models an executed notebook saved (nbclient ``store_widget_state``): {model id: model}, or None."""
    return nb.metadata.get("widgets", {}).get(STATE_MIME, {}).get("state")


def child_model_ids(model: dict) -> list[str]:
    """The model ids of a widget model's children (``"IPY_MODEL_<id>"`` references)."""
    children = model.get("state", {}).get("children", [])
    return [c[len("IPY_MODEL_"):] for c in children if isinstance(c, str) and c.startswith("IPY_MODEL_")]


def _is_interactive(view, state) -> bool:
    """Whether a widget view holds a control (slider, button, text box ...); True when no saved state says otherwise."""
    if not view:
        return False
    if state is None or view.get("model_id") not in state:
        return True
    todo, seen = [view["model_id"]], set()
    while todo:
        model_id = todo.pop()
        if model_id in seen or model_id not in state:
            continue
        seen.add(model_id)
        if _CONTROL.search(state[model_id].get("model_name", "")):
            return True
        todo += child_model_ids(state[model_id])
    return False


def notebook_stats(nb_or_path, name: str | None = None, run_seconds: float | None = None) -> LessonStats:
    """Count prose words, code cells, exercises by kind and (if executed) widget cells of a notebook."""
    nb = _read(nb_or_path)
    if name is None:
        name = Path(nb_or_path).stem if isinstance(nb_or_path, (str, Path)) else "notebook"
    cells = [c for c in nb.cells if LAUNCH_TAG not in _tags(c) and SOLUTION_TAG not in _tags(c)]
    optional, core, extra = False, [], []
    for c in cells:
        heading = c.source.lstrip() if c.cell_type == "markdown" else ""
        if heading.startswith("## "):
            optional = heading.startswith(APPENDIX)
        (extra if optional else core).append(c)
    markdown = [c.source for c in core if c.cell_type == "markdown"]
    code = [c for c in core if c.cell_type == "code"]
    kinds: dict[str, int] = {}
    for number_kind in _EXERCISE.findall("\n".join(markdown)):
        kind = number_kind[1].strip()
        if kind not in EXERCISE_MINUTES:
            raise ValueError(f"{name}: exercise {number_kind[0]} has kind {kind!r}; known kinds: "
                             f"{', '.join(EXERCISE_MINUTES)}")
        kinds[kind] = kinds.get(kind, 0) + 1
    if not kinds:
        unlabelled = sum(1 for c in code if re.search(r"\bcheck_\w+\(", c.source))
        if unlabelled:
            kinds["unlabelled"] = unlabelled
    every_code = [c for c in cells if c.cell_type == "code"]
    executed = any(c.get("outputs") for c in every_code)
    state = widget_state(nb)
    widgets = sum(1 for c in every_code if any(_is_interactive(o.get("data", {}).get(WIDGET_MIME), state)
                                               for o in c.get("outputs", [])))
    return LessonStats(name, sum(prose_words(m) for m in markdown), len(code), kinds,
                       widgets if executed else None, run_seconds,
                       optional_words=sum(prose_words(c.source) for c in extra if c.cell_type == "markdown"),
                       optional_code_cells=sum(1 for c in extra if c.cell_type == "code"))


def estimate_minutes(stats: LessonStats) -> dict:
    """The rule of this module, term by term, and the total rounded up to :data:`ROUND_TO` minutes."""
    terms = {
        "reading": stats.words / READING_WPM,
        "code": stats.code_cells * MINUTES_PER_CODE_CELL,
        "widgets": (stats.widgets or 0) * MINUTES_PER_WIDGET,
        "exercises": sum(EXERCISE_MINUTES[k] * n for k, n in stats.exercises.items()),
        "run": (stats.run_seconds or 0.0) / 60.0,
    }
    terms["total"] = ROUND_TO * math.ceil(sum(terms.values()) / ROUND_TO)
    optional = stats.optional_words / READING_WPM + stats.optional_code_cells * MINUTES_PER_CODE_CELL
    terms["optional"] = math.ceil(optional)
    return terms


def _kinds(exercises: dict) -> str:
    """'2 by hand, 1 implement, ...' in the order of :data:`EXERCISE_MINUTES`."""
    return ", ".join(f"{exercises[k]} {k}" for k in EXERCISE_MINUTES if exercises.get(k))


def time_sentence(stats: LessonStats) -> str:
    """The time statement a notebook shows, with the measurements it comes from."""
    if stats.run_seconds is None or stats.widgets is None:
        raise ValueError(f"{stats.name}: no measured run (run time and widgets); build with "
                         "`python -m uldviz.course.site --record` first")
    t = estimate_minutes(stats)
    return (f"about {t['total']} minutes: {t['reading']:.0f} to read ({stats.words:,} words), "
            f"{t['code'] + t['widgets']:.0f} for {stats.code_cells} code cells and {stats.widgets} widgets, "
            f"{t['exercises']:.0f} for {stats.n_exercises} exercises ({_kinds(stats.exercises)}), and "
            f"{stats.run_seconds:.0f} s of Run All (measured)"
            + (f"; the optional appendix adds about {t['optional']} more" if t["optional"] else "")
            + "; the rule is in notebooks/README.md")


def set_flag(nb, name: str, value: bool):
    """Set the line ``NAME = True/False`` of the notebook's code (e.g. SHOW_SOLUTIONS) in place; return the node."""
    pattern = re.compile(rf"^{re.escape(name)} = (True|False)\b", re.M)
    hits = [c for c in nb.cells if c.cell_type == "code" and pattern.search(c.source)]
    if len(hits) != 1:
        raise ValueError(f"expected one code cell that sets {name} = True/False, found {len(hits)}")
    hits[0].source = pattern.sub(f"{name} = {value}", hits[0].source, count=1)
    return nb


# --------------------------------------------------------------------------- the measured record
#: The lesson notebooks of a folder: ``NN_name.ipynb``.
LESSON_GLOB = "[0-9][0-9]_*.ipynb"


def notebooks_folder() -> Path:
    """The repository's ``notebooks/`` folder."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def lesson_paths(folder=None) -> list[Path]:
    """The lesson notebooks of ``folder`` (default: the repository's ``notebooks/``), in lesson order."""
    return sorted((Path(folder) if folder is not None else notebooks_folder()).glob(LESSON_GLOB))


def _default_record() -> Path:
    from uldviz.env import data_dir

    return Path(data_dir()) / "lessons.json"


def read_record(path=None) -> dict:
    """``data/lessons.json``: per notebook the measured default-mode run (seconds, widgets); {} when missing."""
    path = Path(path) if path is not None else _default_record()
    return json.loads(path.read_text()) if path.is_file() else {}


def record_run(stats: LessonStats, path=None, machine: dict | None = None) -> Path:
    """Store one notebook's measured run (default mode) in the record, keeping the other notebooks'.

    ``machine`` (e.g. CPU count and load average while it ran) is stored with the run: a busy machine runs slower.
    """
    path = Path(path) if path is not None else _default_record()
    record = read_record(path)
    record.setdefault("notebooks", {})[stats.name] = {
        "run_seconds": round(float(stats.run_seconds), 1), "widgets": stats.widgets,
        "words": stats.words, "code_cells": stats.code_cells, "exercises": stats.exercises,
        **({"machine": machine} if machine else {}),
    }
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return path


def _measured(path: Path, record: dict, nb=None) -> LessonStats:
    """The notebook's stats from its source (``nb``, if already read), with the run time and widgets of the record."""
    stats = notebook_stats(path if nb is None else nb, name=Path(path).stem)
    run = record.get("notebooks", {}).get(stats.name, {})
    stats.run_seconds, stats.widgets = run.get("run_seconds"), run.get("widgets")
    return stats


def lesson_table(stats_list: list[LessonStats]) -> str:
    """The instructor's table: measurements and the time the rule gives, one row per notebook."""
    rows = ["| Notebook | Time by the rule | Prose | Code cells | Widgets | Exercises | Run All (default mode) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in stats_list:
        t = estimate_minutes(s)
        run = "not measured" if s.run_seconds is None else f"{s.run_seconds:.0f} s"
        widgets = "–" if s.widgets is None else str(s.widgets)
        rows.append(f"| `{s.name}.ipynb` | about {t['total']} min | {s.words:,} words | {s.code_cells} | {widgets} | "
                    f"{s.n_exercises} ({_kinds(s.exercises) or 'none'}) | {run} |")
    return "\n".join(rows)


def write_statements(notebooks_dir=None, record_path=None) -> list[Path]:
    """Rewrite the notebooks' time statements (between the markers) and the README table; return the changed files."""
    import nbformat

    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else notebooks_folder()
    record = read_record(record_path)
    changed, all_stats = [], []
    for path in lesson_paths(notebooks_dir):
        nb = nbformat.read(str(path), as_version=4)
        stats = _measured(path, record, nb)
        all_stats.append(stats)
        cells = [c for c in nb.cells if c.cell_type == "markdown" and TIME_START in c.source]
        if not cells:
            continue  # a notebook that states its time by hand (not yet converted)
        new = replace_between(cells[0].source, TIME_START, TIME_END, time_sentence(stats))
        if new != cells[0].source:
            cells[0].source = new
            nbformat.write(nb, str(path))
            changed.append(path)
    readme = notebooks_dir / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    if TABLE_START in text:
        new = replace_between(text, TABLE_START, TABLE_END, "\n\n" + lesson_table(all_stats) + "\n\n")
        if new != text:
            readme.write_text(new)
            changed.append(readme)
    if readme.is_file() and write_readme_table(readme) and readme not in changed:  # the table of symbols
        changed.append(readme)
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m uldviz.course.lessons [--write]``: print each notebook's measures and time; --write updates them."""
    ap = argparse.ArgumentParser(prog="python -m uldviz.course.lessons", description=main.__doc__)
    ap.add_argument("--write", action="store_true",
                    help="rewrite the time statements in the notebooks and the table in notebooks/README.md")
    ap.add_argument("--notebooks", default=None, help="folder of the notebooks (default: the repository's)")
    ap.add_argument("--record", default=None, help="measured runs (default: data/lessons.json)")
    args = ap.parse_args(argv)
    record = read_record(args.record)
    stats = [_measured(p, record) for p in lesson_paths(args.notebooks)]
    print(lesson_table(stats))
    for s in stats:
        print(f"{s.name}: {json.dumps({k: round(v, 1) for k, v in estimate_minutes(s).items()})}")
    if args.write:
        for path in write_statements(args.notebooks, args.record):
            print("updated", path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
