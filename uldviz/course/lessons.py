r"""How long a lesson takes: measure a notebook (reading, code, exercises, widgets, run time), state its time.

One rule, written down so that every stated time can be recomputed (``python -m uldviz.course.lessons``). Every
term is counted twice, at a *quick* and at a *careful* pace, and the stated time is the range between the two:

.. math::

    \text{minutes} = \frac{\text{words}}{r} + \frac{\text{code lines}}{c} + 1\cdot\text{code cells}
    + 3\cdot\text{widgets} + f\sum_{\text{exercises}} m(\text{kind}) + \frac{\text{run time (s)}}{60},

with the reading speed :math:`r` = 120 (quick) or 100 (careful) words a minute (:data:`READING_WPM`), the code read
at :math:`c` = 15 or 12 lines a minute (:data:`CODE_LINES_PER_MINUTE`), and the exercise factor :math:`f` = 1 or
1.2 (:data:`EXERCISE_FACTOR`); the quick total is rounded to the nearest 5 minutes, the careful one up to the next 5.

- **words**: all the text a learner reads: the markdown cells without their formulas, *and* the text the code
  writes (the string literals of ``Markdown(...)`` and ``print(...)`` calls, each computed value one word;
  :func:`generated_words`). Tables and plots are not words: they are looked at with their cell.
- **code lines**: the non-blank lines of the code cells (comments included: they are read too).
- **code cells**: a minute each to run it and look at its output (plots, tables).
- **widgets**: three minutes of trying what the prompt above an interactive widget suggests.
- **exercises**: the minutes of :data:`EXERCISE_MINUTES` for each kind.
- **run time**: the measured Run All in default mode (the learner waits for it once).

Launch cells (tag ``uldviz-launch``) and solution cells (tag ``solution``) are not counted; an optional appendix
(from a ``## Appendix`` heading to the next level-2 heading) is stated separately, not in the total. The statement
also gives the time without the exercises (a lecture that leaves them as homework).

Lessons are ``notebooks/NN_name.ipynb`` (:data:`LESSON_GLOB`); an optional page of a lesson is
``notebooks/NNx_name.ipynb`` (:data:`OPTIONAL_GLOB`, e.g. ``02b_speed_appendix.ipynb``): it states its time by the
same rule but follows no lesson conventions (no exercises needed).

Exercises are found by their heading in a markdown cell, ``**Exercise 5 (implement).**``; in a
notebook without such headings every code cell that calls a ``check_`` function outside the
solutions counts as one exercise of kind ``unlabelled``. Maths and file IO only: no widgets here.
"""

from __future__ import annotations

import argparse
import ast
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
    "CODE_LINES_PER_MINUTE",
    "EXERCISE_FACTOR",
    "PACES",
    "MINUTES_PER_CODE_CELL",
    "MINUTES_PER_WIDGET",
    "EXERCISE_MINUTES",
    "ROUND_TO",
    "TIME_START",
    "TIME_END",
    "LessonStats",
    "LESSON_GLOB",
    "OPTIONAL_GLOB",
    "notebooks_folder",
    "lesson_paths",
    "optional_paths",
    "page_paths",
    "prose_words",
    "generated_words",
    "code_lines",
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

#: The two paces of the rule, in the order of every (quick, careful) pair below.
PACES = ("quick", "careful")
#: Reading speed, words per minute (technical text, formulas not counted): (quick, careful).
READING_WPM = (120, 100)
#: Reading speed for code, non-blank lines per minute: (quick, careful).
CODE_LINES_PER_MINUTE = (15, 12)
#: Exercise minutes are multiplied by this: (quick, careful).
EXERCISE_FACTOR = (1.0, 1.2)
#: Minutes to run one code cell and look at its output (plots, tables).
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
#: Stated times are rounded to a multiple of this many minutes (the quick end to the nearest, the careful end up).
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
#: ``AnyModel``: an explorable (uldviz.viz.explorables), which the learner drags or types into.
_CONTROL = re.compile(r"(Slider|Text|Textarea|Button|Dropdown|Checkbox|Select|SelectMultiple|RadioButtons|Combobox"
                      r"|ToggleButtons|Play|ColorPicker|DatePicker|Any)Model$")
#: "**Exercise 3 (by hand).**", or an explorable's "**Predict, then drag (explore).**" (no number).
_EXERCISE = re.compile(r"\*\*(?:Exercise\s+(\d+)|Predict, then drag)\s+\(([a-z ]+)\)\.?\*\*")
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_GENERATED = re.compile(re.escape(TIME_START) + ".*?" + re.escape(TIME_END), re.S)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
#: Calls whose string arguments are text a learner reads in the output.
_TEXT_CALLS = ("Markdown", "print")
_WORD = re.compile(r"[^\W_][\w'’.-]*")


@dataclass
class LessonStats:
    """What :func:`estimate_minutes` needs to know about one notebook."""

    name: str
    words: int  # markdown prose
    code_cells: int
    exercises: dict = field(default_factory=dict)  # kind -> count
    widgets: int | None = None  # cells showing a widget, known from an executed run
    run_seconds: float | None = None  # Run All, default mode
    optional_words: int = 0  # prose of the optional appendix (not in the stated total)
    optional_code_cells: int = 0
    generated_words: int = 0  # text the code writes (Markdown(...) and print(...) literals)
    code_lines: int = 0  # non-blank lines of the counted code cells
    optional_generated_words: int = 0
    optional_code_lines: int = 0

    @property
    def n_exercises(self) -> int:
        """Number of exercises of every kind."""
        return sum(self.exercises.values())


def prose_words(markdown: str) -> int:
    """Words of a markdown text, without formulas, HTML comments, link targets and the generated time statement."""
    text = _GENERATED.sub(" ", markdown)
    text = _LINK_TARGET.sub("]", _MATH.sub(" ", _COMMENT.sub(" ", text)))
    return len(_WORD.findall(text))


def _text_words(node) -> int:
    """Words of the text an expression writes: its string literals, one word per value computed into an f-string."""
    if isinstance(node, ast.Constant):
        return prose_words(node.value) if isinstance(node.value, str) else 0
    if isinstance(node, ast.JoinedStr):
        return sum(_text_words(v) if isinstance(v, ast.Constant) else 1 for v in node.values)
    if isinstance(node, ast.BinOp):  # "..." + "..."
        return _text_words(node.left) + _text_words(node.right)
    return 0  # a variable, a call (a table, a figure): looked at with the cell, not read as prose


def generated_words(source: str) -> int:
    """Words of prose a code cell writes: the string literals passed to ``Markdown(...)`` and ``print(...)``.

    Formulas inside them are left out as in :func:`prose_words`; each ``{value}`` of an f-string counts one word.
    IPython lines (``%matplotlib``, ``!pip``) are skipped; a cell that does not parse counts 0.
    """
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return 0
    total = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name in _TEXT_CALLS:
                total += sum(_text_words(arg) for arg in node.args)
    return total


def code_lines(source: str) -> int:
    """Non-blank lines of a code cell (comments included: a learner reads them)."""
    return sum(1 for line in source.splitlines() if line.strip())


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
    """Count prose words, generated words, code cells and lines, exercises by kind and (if executed) widget cells."""
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
            which = number_kind[0] or "(predict, then drag)"
            raise ValueError(f"{name}: exercise {which} has kind {kind!r}; known kinds: "
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
    extra_code = [c for c in extra if c.cell_type == "code"]
    return LessonStats(name, sum(prose_words(m) for m in markdown), len(code), kinds,
                       widgets if executed else None, run_seconds,
                       optional_words=sum(prose_words(c.source) for c in extra if c.cell_type == "markdown"),
                       optional_code_cells=len(extra_code),
                       generated_words=sum(generated_words(c.source) for c in code),
                       code_lines=sum(code_lines(c.source) for c in code),
                       optional_generated_words=sum(generated_words(c.source) for c in extra_code),
                       optional_code_lines=sum(code_lines(c.source) for c in extra_code))


def _terms(stats: LessonStats, pace: int) -> dict:
    """The rule's terms in minutes at one pace (0 quick, 1 careful)."""
    return {
        "reading": (stats.words + stats.generated_words) / READING_WPM[pace],
        "code": stats.code_lines / CODE_LINES_PER_MINUTE[pace] + stats.code_cells * MINUTES_PER_CODE_CELL,
        "widgets": (stats.widgets or 0) * MINUTES_PER_WIDGET,
        "exercises": EXERCISE_FACTOR[pace] * sum(EXERCISE_MINUTES[k] * n for k, n in stats.exercises.items()),
        "run": (stats.run_seconds or 0.0) / 60.0,
    }


def _stated(quick: float, careful: float) -> tuple[int, int]:
    """(low, high) stated minutes: the quick total to the nearest :data:`ROUND_TO`, the careful one up to the next."""
    low = ROUND_TO * max(1, round(quick / ROUND_TO))
    return low, max(low, ROUND_TO * math.ceil(careful / ROUND_TO))


def estimate_minutes(stats: LessonStats) -> dict:
    """The rule of this module: its terms at both paces, the stated range, and the range without the exercises.

    Returns ``{"quick": {term: minutes}, "careful": {...}, "low", "high", "lecture_low", "lecture_high",
    "optional_low", "optional_high"}`` (the last two 0 when there is no optional appendix).
    """
    quick, careful = _terms(stats, 0), _terms(stats, 1)
    out = {"quick": quick, "careful": careful}
    out["low"], out["high"] = _stated(sum(quick.values()), sum(careful.values()))
    out["lecture_low"], out["lecture_high"] = _stated(sum(quick.values()) - quick["exercises"],
                                                      sum(careful.values()) - careful["exercises"])
    extra = [(stats.optional_words + stats.optional_generated_words) / READING_WPM[i]
             + stats.optional_code_lines / CODE_LINES_PER_MINUTE[i] + stats.optional_code_cells * MINUTES_PER_CODE_CELL
             for i in (0, 1)]
    out["optional_low"], out["optional_high"] = (math.floor(extra[0]), math.ceil(extra[1])) if any(extra) else (0, 0)
    return out


def _kinds(exercises: dict) -> str:
    """'2 by hand, 1 implement, ...' in the order of :data:`EXERCISE_MINUTES`."""
    return ", ".join(f"{exercises[k]} {k}" for k in EXERCISE_MINUTES if exercises.get(k))


def _span(quick: float, careful: float) -> str:
    """'12–15' (minutes of one term at both paces)."""
    a, b = round(quick), round(careful)
    return f"{a}" if a == b else f"{a}–{b}"


def time_sentence(stats: LessonStats, *, measured: bool = True) -> str:
    """The time statement a notebook shows, with the measurements it comes from.

    ``measured=False`` (an optional page not yet run by ``--record``) states the time without run and widgets.
    """
    if measured and (stats.run_seconds is None or stats.widgets is None):
        raise ValueError(f"{stats.name}: no measured run (run time and widgets); build with "
                         "`python -m uldviz.course.site --record` first")
    t = estimate_minutes(stats)
    q, c = t["quick"], t["careful"]
    generated = f" and {stats.generated_words:,} written by the code" if stats.generated_words else ""
    widgets = f" and {stats.widgets} widget{'s' if stats.widgets != 1 else ''}" if stats.widgets else ""
    parts = [f"about {t['low']}–{t['high']} minutes for a graduate student: "
             f"{_span(q['reading'], c['reading'])} to read ({stats.words:,} words of text{generated}), "
             f"{_span(q['code'] + q['widgets'], c['code'] + c['widgets'])} for {stats.code_cells} code cells "
             f"({stats.code_lines:,} lines){widgets}"]
    if stats.n_exercises:
        parts.append(f", {_span(q['exercises'], c['exercises'])} for {stats.n_exercises} exercises "
                     f"({_kinds(stats.exercises)})")
    parts.append(f", and {stats.run_seconds:.0f} s of Run All (measured)" if stats.run_seconds is not None
                 else ", and its Run All (not recorded yet)")
    if stats.n_exercises:
        parts.append(f"; with the exercises left as homework, about {t['lecture_low']}–{t['lecture_high']}")
    if t["optional_high"]:
        parts.append(f"; the optional appendix adds about {t['optional_low']}–{t['optional_high']} more")
    return "".join(parts) + "; the rule is in notebooks/README.md"


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
#: Optional pages of a lesson: ``NNx_name.ipynb`` (02b_speed_appendix.ipynb belongs to lesson 02).
OPTIONAL_GLOB = "[0-9][0-9][a-z]_*.ipynb"


def notebooks_folder() -> Path:
    """The repository's ``notebooks/`` folder."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def lesson_paths(folder=None) -> list[Path]:
    """The lesson notebooks of ``folder`` (default: the repository's ``notebooks/``), in lesson order."""
    return sorted((Path(folder) if folder is not None else notebooks_folder()).glob(LESSON_GLOB))


def optional_paths(folder=None) -> list[Path]:
    """The optional pages of ``folder`` (``NNx_name.ipynb``), in lesson order."""
    return sorted((Path(folder) if folder is not None else notebooks_folder()).glob(OPTIONAL_GLOB))


def page_paths(folder=None) -> list[Path]:
    """Lessons and optional pages together, each page after its lesson (02, 02b, 03, ...): what the site builds."""
    return sorted(lesson_paths(folder) + optional_paths(folder), key=lambda p: p.name.split("_", 1)[0])


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
        "generated_words": stats.generated_words, "code_lines": stats.code_lines,
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
    rows = ["| Notebook | Time by the rule | Without the exercises | Text read | Code | Widgets | Exercises "
            "| Run All (default mode) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in stats_list:
        t = estimate_minutes(s)
        run = "not recorded" if s.run_seconds is None else f"{s.run_seconds:.0f} s"
        widgets = "–" if s.widgets is None else str(s.widgets)
        optional = " (optional page)" if re.match(r"\d\d[a-z]_", s.name) else ""
        lecture = f"about {t['lecture_low']}–{t['lecture_high']} min" if s.n_exercises else "–"
        rows.append(f"| `{s.name}.ipynb`{optional} | about {t['low']}–{t['high']} min | {lecture} | "
                    f"{s.words + s.generated_words:,} words ({s.generated_words:,} written by the code) | "
                    f"{s.code_cells} cells, {s.code_lines:,} lines | {widgets} | "
                    f"{s.n_exercises} ({_kinds(s.exercises) or 'none'}) | {run} |")
    return "\n".join(rows)


def write_statements(notebooks_dir=None, record_path=None) -> list[Path]:
    """Rewrite the time statements of the lessons and optional pages (between the markers), the README's table of
    lessons and its table of symbols (:mod:`uldviz.course.notation`); return the changed files."""
    import nbformat

    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else notebooks_folder()
    record = read_record(record_path)
    changed, all_stats = [], []
    lessons = set(lesson_paths(notebooks_dir))
    for path in page_paths(notebooks_dir):
        nb = nbformat.read(str(path), as_version=4)
        stats = _measured(path, record, nb)
        all_stats.append(stats)
        cells = [c for c in nb.cells if c.cell_type == "markdown" and TIME_START in c.source]
        if not cells:
            continue  # a notebook that states its time by hand (not yet converted)
        measured = path in lessons or stats.run_seconds is not None  # an optional page may wait for --record
        new = replace_between(cells[0].source, TIME_START, TIME_END, time_sentence(stats, measured=measured))
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
                    help="rewrite the time statements in the notebooks and the tables (lessons, symbols) in "
                         "notebooks/README.md")
    ap.add_argument("--notebooks", default=None, help="folder of the notebooks (default: the repository's)")
    ap.add_argument("--record", default=None, help="measured runs (default: data/lessons.json)")
    args = ap.parse_args(argv)
    record = read_record(args.record)
    stats = [_measured(p, record) for p in page_paths(args.notebooks)]
    print(lesson_table(stats))
    for s in stats:
        t = estimate_minutes(s)
        terms = {pace: {k: round(v, 1) for k, v in t[pace].items()} for pace in PACES}
        print(f"{s.name}: about {t['low']}-{t['high']} min (without exercises {t['lecture_low']}-"
              f"{t['lecture_high']}) {json.dumps(terms)}")
    if args.write:
        for path in write_statements(args.notebooks, args.record):
            print("updated", path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
