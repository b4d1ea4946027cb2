r"""The course's one table of symbols: the notebooks, the instructor's page and the package's docstrings use it.

Each symbol has one meaning in the whole course. The choices that matter most:

- :math:`p` is always the **teacher's** next-token distribution and :math:`q` the **student's** (the
  letters of :math:`\mathrm{KL}(p\,\|\,q)`); the subscripts T and S only ever mean teacher and student
  (:math:`V_T`, :math:`V_S`);
- the temperature is :math:`\tau`, a transport plan is :math:`\pi`, a permutation is :math:`\sigma`:
  a bare :math:`T` is never a symbol;
- :math:`\varepsilon` is only the additive smoothing of notebook 01's patch (a); Sinkhorn's entropic
  regularisation is :math:`\eta` and label smoothing is :math:`\alpha`.

:data:`SYMBOLS` holds the table; :func:`notation_table` renders it as markdown (all of it, or the rows
one lesson uses) and :func:`show_notation` displays it in a notebook, one call::

    from uldviz.course.notation import show_notation
    show_notation("03")

``python -m uldviz.course.lessons --write`` also writes the whole table into ``notebooks/README.md``
(between :data:`TABLE_START` and :data:`TABLE_END`). :func:`retired_symbols` finds the old notations
(:math:`p_T`, :math:`p_S`, a bare :math:`T`) in the formulas of a markdown text or a docstring: the tests
run it on the lessons and on the maths modules.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Symbol", "SYMBOLS", "LESSONS", "TABLE_START", "TABLE_END", "notation_table", "show_notation",
           "math_segments", "retired_symbols", "write_readme_table", "main"]

#: The lessons, by number.
LESSONS = ("01", "02", "03", "04")
#: Markers around the generated table of symbols in notebooks/README.md.
TABLE_START, TABLE_END = "<!-- uldviz:notation -->", "<!-- /uldviz:notation -->"


@dataclass(frozen=True)
class Symbol:
    """One row of the table: the symbol (LaTeX, without dollars), what it means, the lessons that use it, and
    where it lives in the kit's code (an argument name, a function), if anywhere."""

    latex: str
    meaning: str
    lessons: tuple[str, ...]
    code: str = ""


#: The table, in reading order: distributions, the two losses, training, transport, smoothing, the rest.
SYMBOLS: tuple[Symbol, ...] = (
    Symbol("p", "the **teacher's** next-token distribution; $p(v)$ its probability of token $v$", LESSONS,
           "teacher (probabilities) / teacher_logits"),
    Symbol("q", "the **student's** next-token distribution; $q(v)$ its probability of token $v$", LESSONS,
           "student (probabilities) / student_logits"),
    Symbol("V_T,\\ V_S", "the teacher's and the student's vocabularies (subscripts T and S only ever mean "
           "teacher and student)", LESSONS),
    Symbol("n,\\ m,\\ N", "the lengths of the teacher's and the student's probability vectors (their vocabulary "
           "sizes) and $N=\\max(n,m)$", ("01", "02", "03")),
    Symbol("z", "logits; $q=\\mathrm{softmax}(z)$: the student's (what training changes); $z_p$ the teacher's",
           ("01", "02")),
    Symbol("\\tilde p_{(i)},\\ \\tilde q_{(i)}", "the $i$-th largest entry of $p$, $q$ after zero-padding both to "
           "length $N$", ("01", "02", "03"), "uldviz.maths.losses.sorted_padded"),
    Symbol("\\mathrm{KL}(p\\,\\Vert\\,q)", "$\\sum_v p(v)\\log\\frac{p(v)}{q(v)}$ on **one** shared vocabulary, "
           "in nats",
           LESSONS, "uldviz.maths.losses.kl_divergence"),
    Symbol("\\mathrm{ULD}(p,q)", "$\\sum_{i=1}^{N}\\lvert\\tilde p_{(i)}-\\tilde q_{(i)}\\rvert$: sort, zero-pad, "
           "subtract", LESSONS, "uldviz.maths.losses.uld_loss"),
    Symbol("P", "the teacher's probability mass on tokens (strings) the student also has, "
           "$P=\\sum_{v\\in V_S}p(v)$", ("01", "02", "04")),
    Symbol("\\mathcal L_{CE}", "cross-entropy $-\\log q(y)$ of the token $y$ that comes next in the text",
           LESSONS, "uldviz.maths.losses.cross_entropy"),
    Symbol("\\lambda", "the weight of the distillation term: $\\mathcal L=\\mathcal L_{CE}+\\lambda\\,\\mathrm{ULD}$ "
           "(1.5 in the ULD paper)", LESSONS, "PAPER_LAMBDA, lam"),
    Symbol("\\tau", "temperature: $\\mathrm{softmax}(z/\\tau)$; ALM's likelihood temperature $p^{1/\\tau}$",
           ("02", "04"), "student_temperature, teacher_temperature, tau"),
    Symbol("k", "top-$k$: the $k$ largest probabilities are kept", ("02",), "top_k"),
    Symbol("\\pi", "a transport plan (coupling): $\\pi_{ij}$ is the mass moved from point $i$ to point $j$",
           ("02",), "plan"),
    Symbol("\\Pi(a,b)", "the couplings of the masses $a$ and $b$: $\\pi\\ge0$, $\\pi\\mathbf 1=a$, "
           "$\\pi^\\top\\mathbf 1=b$", ("02",)),
    Symbol("C,\\ \\langle\\pi,C\\rangle", "a cost matrix ($C_{ij}$ per unit of mass moved from $i$ to $j$) and the "
           "total cost $\\sum_{ij}\\pi_{ij}C_{ij}$ of a plan", ("02",)),
    Symbol("W_1", "the 1-Wasserstein distance: the cheapest plan's cost with $C_{ij}=\\lvert x_i-y_j\\rvert$ on the "
           "real line; $\\mathrm{ULD}=N\\cdot W_1$ between uniform masses on the padded values", ("02",)),
    Symbol("\\mathrm{TV}(p,q)", "total variation $\\tfrac12\\sum_w\\lvert p(w)-q(w)\\rvert$", ("02",)),
    Symbol("\\delta", "a point mass $\\delta_x$ at $x$; $\\delta_{wv}=1$ if $w=v$, else 0", ("01", "02")),
    Symbol("\\sigma", "a permutation: of the tokens (a permuted student) or of the positions (the shuffled "
           "teacher)", ("02", "03")),
    Symbol("\\varepsilon", "**only** the additive smoothing of patch (a): "
           "$p^\\varepsilon(v)=\\frac{p(v)+\\varepsilon}{1+\\lvert U\\rvert\\varepsilon}$ on the union $U$ "
           "of the vocabularies", ("01",), "eps (uldviz.maths.patches)"),
    Symbol("\\eta", "Sinkhorn's entropic regularisation: $\\min_\\pi\\langle\\pi,C\\rangle-\\eta H(\\pi)$",
           ("02",), "reg (POT, uldviz.maths.transport.uld_sinkhorn)"),
    Symbol("\\alpha", "label smoothing: the target $(1-\\alpha)\\cdot$one-hot $+\\ \\alpha\\cdot$uniform",
           ("03",), "label_smoothing"),
    Symbol("\\kappa", "the concentration of a random Dirichlet pair (small $\\kappa$: peaked)", ("02",)),
    Symbol("g", "a span group: tokens of both sides that cover the same bytes; $p(g)$, $q(g)$ its probability "
           "by the chain rule", ("04",), "uldviz.alignment.spans"),
    Symbol("W", "X-Token's sparse projection from the student's vocabulary to the teacher's", ("04",),
           "uldviz.vocab.projection"),
)


def _lesson_key(lesson) -> str | None:
    """'01' from '01', 1, '01_kl_breaks' or '01_kl_breaks.ipynb'; None for the whole table."""
    if lesson is None:
        return None
    key = f"{lesson:02d}" if isinstance(lesson, int) else str(lesson)[:2]
    if key not in LESSONS:
        raise ValueError(f"no lesson {lesson!r}: the lessons are {', '.join(LESSONS)}")
    return key


def notation_table(lesson=None, *, code: bool = False) -> str:
    """The table of symbols as markdown: all of it (with a column of the lessons using each), or one lesson's rows.

    ``lesson``: '01' ... '04' (or 1, or a notebook name). ``code=True`` adds where each symbol lives in the kit.
    """
    key = _lesson_key(lesson)
    rows = [s for s in SYMBOLS if key is None or key in s.lessons]
    head = ["symbol", "meaning"] + (["used in"] if key is None else []) + (["in the code"] if code else [])
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for s in rows:
        cells = [f"${s.latex}$", s.meaning]
        if key is None:
            cells.append(", ".join(s.lessons))
        if code:
            cells.append(f"`{s.code}`" if s.code else "")
        lines.append("| " + " | ".join(cells) + " |")  # no "|" inside a cell: formulas use \\vert, \\Vert
    return "\n".join(lines)


def show_notation(lesson) -> None:
    """Display one lesson's symbols in a notebook (IPython Markdown), with a pointer to the whole table."""
    from IPython.display import Markdown, display

    key = _lesson_key(lesson)
    display(Markdown(f"**Symbols in this notebook** (one table for the whole course: every symbol keeps its "
                     f"meaning in all four notebooks; the full table is in `notebooks/README.md`)\n\n"
                     f"{notation_table(key)}"))


# --------------------------------------------------------------------------- finding the old notation
_MATH = re.compile(r"\$\$(.+?)\$\$|\$([^$\n]+)\$|:math:`([^`]+)`|\.\. math::\s*\n((?:[ \t]+\S[^\n]*\n?)+)", re.S)
#: Old notations, each with the symbol of the table that replaces it.
_RETIRED = (
    (re.compile(r"p_\{?T\}?(?![A-Za-z])"), "p_T: write p (the teacher's distribution)"),
    (re.compile(r"p_\{?S\}?(?![A-Za-z])"), "p_S: write q (the student's distribution)"),
    (re.compile(r"(?<![A-Za-z_{\\])T(?![A-Za-z}])"), "a bare T: temperature τ, plan π, or V_T for the teacher"),
)


def math_segments(text: str) -> list[str]:
    """The formulas of a markdown text or docstring: ``$...$``, ``$$...$$``, ``:math:`...```, ``.. math::`` blocks."""
    return [next(g for g in m.groups() if g is not None) for m in _MATH.finditer(text)]


def retired_symbols(text: str) -> list[str]:
    """The old notations found in the formulas of ``text`` (each as 'formula: what to write instead')."""
    found = []
    for segment in math_segments(text):
        for pattern, advice in _RETIRED:
            if pattern.search(segment):
                found.append(f"${segment.strip()}$ -> {advice}")
    return found


# --------------------------------------------------------------------------- the instructor's page
def write_readme_table(readme=None) -> bool:
    """Write the whole table (with the code column) between the markers of ``notebooks/README.md``; True if changed."""
    from uldviz.course.textblocks import replace_between

    if readme is None:
        from uldviz.course.lessons import notebooks_folder

        readme = notebooks_folder() / "README.md"
    readme = Path(readme)
    text = readme.read_text() if readme.is_file() else ""
    if TABLE_START not in text:
        return False
    new = replace_between(text, TABLE_START, TABLE_END, "\n\n" + notation_table(code=True) + "\n\n")
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    """``python -m uldviz.course.notation [LESSON]``: print the table (all of it, or one lesson's rows)."""
    argv = sys.argv[1:] if argv is None else argv
    print(notation_table(argv[0] if argv else None, code=not argv))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
