"""uldviz.course.notation: the course's one table of symbols, rendered once, used by the lessons and the maths modules.

The retired notations (p_T / p_S for teacher and student, a bare T for a plan or a temperature) must not come back
in the notebooks this table is applied to (APPLIED) nor in the docstrings of the maths modules; ε means only the
additive smoothing of notebook 01 (uldviz.maths.patches)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
from nbrun import NOTEBOOKS

from uldviz.course import notation as N

ROOT = Path(__file__).resolve().parents[1]
#: The notebooks written in the table's notation (the lead adds 03 and 04 as they are converted).
APPLIED = ["01_kl_breaks.ipynb", "02_optimal_transport.ipynb", "02b_speed_appendix.ipynb", "03_distillation.ipynb",
           "04_beyond_uld.ipynb"]
#: Where ε may appear in a formula: its one meaning, the smoothing of notebook 01's patch (a).
EPSILON_HOMES = {"01_kl_breaks.ipynb", "patches.py"}
MATHS_MODULES = sorted((ROOT / "uldviz" / "maths").glob("*.py")) + [ROOT / "uldviz" / "vocab" / "shared.py"]


def test_one_meaning_per_symbol_and_a_table_markdown_can_render():
    latex = [s.latex for s in N.SYMBOLS]
    assert len(latex) == len(set(latex))
    full = N.notation_table(code=True)
    lines = full.splitlines()
    assert lines[0] == "| symbol | meaning | used in | in the code |" and len(lines) == 2 + len(N.SYMBOLS)
    for line in lines:
        assert line.count("|") == 5, line  # no pipe inside a cell: formulas use \vert and \Vert
    for symbol in ("$p$", "$q$", "$\\tau$", "$\\pi$", "$\\varepsilon$", "$\\eta$", "$\\alpha$"):
        assert f"| {symbol} |" in full
    assert all(s.lessons and set(s.lessons) <= set(N.LESSONS) for s in N.SYMBOLS)


def test_one_lesson_gets_its_rows():
    t01, t02 = N.notation_table("01"), N.notation_table("02_optimal_transport.ipynb")
    assert "$\\varepsilon$" in t01 and "$\\varepsilon$" not in t02
    assert "$\\eta$" in t02 and "$\\pi$" in t02 and "used in" not in t02
    assert N.notation_table(3) == N.notation_table("03")
    with pytest.raises(ValueError, match="no lesson"):
        N.notation_table("07")


def test_retired_symbols_are_found_only_in_formulas():
    assert N.retired_symbols("the plan $T$ and $p_T(v)$, $\\mathrm{KL}(p_{S})$") and \
        len(N.retired_symbols("$T\\to\\infty$ and $q = p_S$")) == 2
    for fine in ("$V_T$ and $V_{S}$", "$\\mathrm{TV}(p,q)$", "$\\pi^\\top\\mathbf 1=b$", "GPT-2 and T5, text",
                 ":math:`\\tau\\to\\infty`", "$p_{(i)}$", "$\\mathrm{KL}(p\\,\\Vert\\,q)$"):
        assert N.retired_symbols(fine) == [], fine
    assert N.math_segments("a :math:`x^2` b $y$ c $$z$$") == ["x^2", "y", "z"]


@pytest.mark.parametrize("path", MATHS_MODULES, ids=[p.name for p in MATHS_MODULES])
def test_maths_docstrings_use_the_table(path):
    tree = ast.parse(path.read_text())
    docs = "\n".join(ast.get_docstring(n, clean=False) or "" for n in ast.walk(tree)
                     if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
    assert N.retired_symbols(docs) == []
    if path.name not in EPSILON_HOMES:
        assert not [s for s in N.math_segments(docs) if "varepsilon" in s or "ε" in s]


@pytest.mark.parametrize("name", APPLIED)
def test_lessons_use_the_table_and_show_it(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert N.retired_symbols(prose) == []
    if name not in EPSILON_HOMES:
        assert not [s for s in N.math_segments(prose) if "varepsilon" in s]
    if not name.startswith("02b"):  # an optional page links to its lesson's table
        assert any(c.cell_type == "code" and f'show_notation("{name[:2]}")' in c.source for c in nb.cells)


def test_instructor_page_holds_the_generated_table(tmp_path):
    readme = (NOTEBOOKS / "README.md").read_text()
    block = readme.split(N.TABLE_START)[1].split(N.TABLE_END)[0]
    assert block.strip() == N.notation_table(code=True)
    copy = tmp_path / "README.md"
    copy.write_text(f"x\n{N.TABLE_START}\nold\n{N.TABLE_END}\ny\n")
    assert N.write_readme_table(copy) and not N.write_readme_table(copy)
    assert copy.read_text().startswith("x\n") and "old" not in copy.read_text()


def test_show_notation_displays_markdown(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    N.show_notation("02")
    assert len(shown) == 1 and N.notation_table("02") in shown[0].data and "README" in shown[0].data


#: What a learner reads outside the notebooks: widgets, explorables (Python and their ES modules), exercise checkers.
SHOWN = sorted(p for folder in ("viz", "exercises") for ext in ("py", "js")
               for p in (ROOT / "uldviz" / folder).rglob(f"*.{ext}"))


@pytest.mark.parametrize("path", SHOWN, ids=[str(p.relative_to(ROOT / "uldviz")) for p in SHOWN])
def test_what_widgets_and_checkers_show_uses_the_table(path):
    """Plain text too (a widget's label is no formula): no p_T / p_S, no plan called T."""
    old = re.compile(r"\bp_\{?[TS]\}?(?![A-Za-z])|\bplan T\b|⟨T,|langle T,")
    found = [f"{path.name}:{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
             if old.search(line)]
    assert not found, "\n".join(found)
