"""uldviz.course.lessons: counting a notebook, the time rule, the generated statements; and the conventions every lesson
notebook follows (objectives and measured time, glossary, SHOW_SOLUTIONS guard, exercise kinds, summary cell)."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbrun import NOTEBOOKS

from uldviz.course import lessons as L

#: Every lesson notebook follows the conventions of notebooks/README.md (a new lesson is checked as it lands).
CONVERTED = [p.name for p in L.lesson_paths(NOTEBOOKS)]
#: Optional pages of a lesson (NNx_name.ipynb): a stated time by the same rule, launch cells, a summary; no exercises.
OPTIONAL = [p.name for p in L.optional_paths(NOTEBOOKS)]


def _toy_notebook(executed: bool = False):
    nb = new_notebook()
    launch = new_code_cell("import sys  # launch")
    launch.metadata["tags"] = ["uldviz-launch"]
    solution = new_code_cell("#@title Solutions\nif SHOW_SOLUTIONS:\n    print(1)")
    solution.metadata["tags"] = ["solution"]
    widget = new_code_cell("display(explorer.ui)")
    if executed:
        widget.outputs = [new_output("display_data", data={L.WIDGET_MIME: {"model_id": "abc"}, "text/plain": "VBox"})]
    nb.cells = [
        launch,
        new_markdown_cell("# Title\n\nOne two three <!-- hidden words here --> four $x^2 + y$ five [six](http://a.b/c)."),
        new_code_cell("SHOW_SOLUTIONS = False\nx = 1"),
        widget,
        new_markdown_cell("**Exercise 1 (implement).** Write it.\n\n$$\\sum_i a_i$$"),
        new_code_cell("check_thing(my_answer)"),
        new_markdown_cell("**Exercise 2 (interpret).** Say why."),
        solution,
    ]
    return nb


def test_prose_words_skip_formulas_comments_and_link_targets():
    assert L.prose_words("One two $a+b$ three") == 3
    assert L.prose_words("<!-- not read --> word\n$$\\frac{1}{2}$$") == 1
    assert L.prose_words("[the link](https://example.com/a-b) and `F.kl_div`") == 4
    assert L.prose_words(f"Time: {L.TIME_START}about 5 minutes{L.TIME_END}.") == 1  # the generated part is not prose


def test_notebook_stats_count_what_a_learner_reads():
    stats = L.notebook_stats(_toy_notebook(), name="toy")
    # launch and solution cells are left out
    assert stats.code_cells == 3
    assert stats.words == 7 + 5 + 5  # "Title" and the sentence, then the two exercise texts
    assert stats.exercises == {"implement": 1, "interpret": 1} and stats.n_exercises == 2
    assert stats.code_lines == 2 + 1 + 1 and stats.generated_words == 0  # no Markdown(...) or print(...) text
    assert stats.widgets is None  # not executed: unknown
    executed = _toy_notebook(executed=True)
    assert L.notebook_stats(executed).widgets == 1  # no saved widget state: every widget view counts
    state = {"abc": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_bar"]}},
             "bar": {"model_name": "FloatProgressModel", "state": {}}}
    executed.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    assert L.notebook_stats(executed).widgets == 0  # a progress bar alone is nothing to try
    executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]["bar"]["model_name"] = \
        "FloatSliderModel"
    assert L.notebook_stats(executed).widgets == 1


def test_text_the_code_writes_is_read_too():
    """Markdown(...) and print(...) literals are prose (formulas out, one word per computed value); tables are not."""
    assert L.generated_words('display(Markdown(f"ULD is {x:.3f} here, $a+b$ apart"))') == 5  # ULD is {x} here apart
    assert L.generated_words('print("one two", three)\nprint(f"four {five}")') == 4
    assert L.generated_words('display(Markdown(tplots.markdown_table(rows, fmt=".4g")))') == 0
    assert L.generated_words('display(Markdown("a " + "b c"))\n%matplotlib inline') == 3
    assert L.generated_words("def broken(:") == 0
    assert L.code_lines("a = 1\n\n# a comment is read\n   \nb = 2") == 3
    nb = _toy_notebook()
    nb.cells.insert(3, new_code_cell('print("the teacher puts", share, "on them")'))
    stats = L.notebook_stats(nb)
    assert stats.generated_words == 5 and stats.code_lines == 5 and stats.code_cells == 4  # the variable: no word


def test_explorables_count_as_widgets_and_their_predictions_as_exercises():
    """An explorable (an anywidget AnyModel) is something to try; "Predict, then drag (kind)" is an exercise."""
    executed = _toy_notebook(executed=True)
    executed.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
        "abc": {"model_name": "AnyModel", "state": {"_esm": "export default {}"}}}}}
    assert L.notebook_stats(executed).widgets == 1
    executed.cells.append(new_markdown_cell("**Predict, then drag (explore).** Predict, then drag the bar."))
    assert L.notebook_stats(executed).exercises == {"implement": 1, "interpret": 1, "explore": 1}
    executed.cells.append(new_markdown_cell("**Predict, then drag (guess).** ?"))
    with pytest.raises(ValueError, match="predict, then drag"):
        L.notebook_stats(executed)


def test_unlabelled_exercises_are_counted_from_checker_calls_and_unknown_kinds_refused():
    nb = _toy_notebook()
    nb.cells = [c for c in nb.cells if "Exercise" not in c.source]
    assert L.notebook_stats(nb).exercises == {"unlabelled": 1}
    nb.cells.append(new_markdown_cell("**Exercise 3 (guess).** ?"))
    with pytest.raises(ValueError, match="guess"):
        L.notebook_stats(nb)


def test_an_appendix_is_counted_apart_from_the_lesson():
    nb = _toy_notebook()
    core = L.notebook_stats(nb)
    nb.cells[-1:-1] = [new_markdown_cell("## Appendix (optional): speed\n\n" + "word " * 200), new_code_cell("t()"),
                       new_markdown_cell("## Summary"), new_code_cell("display(Markdown('x'))")]
    stats = L.notebook_stats(nb)
    assert (stats.optional_words, stats.optional_code_cells) == (2 + 1 + 200, 1)  # "Appendix optional speed"
    assert (stats.words, stats.code_cells) == (core.words + 1, core.code_cells + 1)  # the summary is the lesson's
    stats.run_seconds, stats.widgets = 10, 0
    t = L.estimate_minutes(stats)
    # quick: 203 / 120 + 1 line / 15 + 1 cell = 2.8 -> 2; careful: 203 / 100 + 1 / 12 + 1 = 3.1 -> 4
    assert (t["optional_low"], t["optional_high"]) == (2, 4)
    assert "the optional appendix adds about 2–4 more" in L.time_sentence(stats)


def test_estimate_minutes_is_the_documented_rule():
    """Every term at both paces: reading (markdown + text the code writes), code lines and cells, widgets, exercises
    (times a factor), the measured run; the quick total to the nearest 5, the careful one up to the next 5."""
    stats = L.LessonStats("x", words=1000, code_cells=10, exercises={"implement": 1, "by hand": 2}, widgets=2,
                          run_seconds=90, generated_words=200, code_lines=120)
    t = L.estimate_minutes(stats)
    exercises = L.EXERCISE_MINUTES["implement"] + 2 * L.EXERCISE_MINUTES["by hand"]
    totals = []
    for pace, name in enumerate(L.PACES):
        terms = t[name]
        assert terms["reading"] == 1200 / L.READING_WPM[pace]
        assert terms["code"] == 120 / L.CODE_LINES_PER_MINUTE[pace] + 10 * L.MINUTES_PER_CODE_CELL
        assert terms["widgets"] == 2 * L.MINUTES_PER_WIDGET and terms["run"] == 1.5
        assert terms["exercises"] == L.EXERCISE_FACTOR[pace] * exercises
        totals.append(sum(terms.values()))
    assert totals[0] < totals[1]  # careful is slower
    assert t["low"] % L.ROUND_TO == 0 and abs(t["low"] - totals[0]) <= L.ROUND_TO / 2
    assert t["high"] % L.ROUND_TO == 0 and totals[1] <= t["high"] < totals[1] + L.ROUND_TO
    lecture = [totals[i] - t[name]["exercises"] for i, name in enumerate(L.PACES)]
    assert abs(t["lecture_low"] - lecture[0]) <= L.ROUND_TO / 2 and lecture[1] <= t["lecture_high"]
    sentence = L.time_sentence(stats)
    assert sentence.startswith(f"about {t['low']}–{t['high']} minutes for a graduate student")
    for part in ("1,000 words of text and 200 written by the code", "10 code cells (120 lines)", "90 s of Run All",
                 f"homework, about {t['lecture_low']}–{t['lecture_high']}"):
        assert part in sentence, part
    with pytest.raises(ValueError, match="no measured run"):
        L.time_sentence(L.LessonStats("y", 10, 1))
    unmeasured = L.time_sentence(L.LessonStats("02b_page", 100, 2, code_lines=10), measured=False)
    assert "not recorded yet" in unmeasured and "homework" not in unmeasured


def test_set_flag_and_replace_between():
    nb = _toy_notebook()
    L.set_flag(nb, "SHOW_SOLUTIONS", True)
    assert "SHOW_SOLUTIONS = True\nx = 1" in nb.cells[2].source
    with pytest.raises(ValueError, match="found 0"):
        L.set_flag(nb, "USE_HUB", True)
    assert L.replace_between("a [x] b", "[", "]", "yz") == "a [yz] b"
    with pytest.raises(ValueError, match="not found"):
        L.replace_between("a ] b [", "[", "]", "")


def test_record_and_write_statements_round_trip(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = _toy_notebook()
    nb.cells[1].source += f"\n\n**Time:** {L.TIME_START}old{L.TIME_END}."
    nbformat.write(nb, folder / "01_toy.ipynb")
    (folder / "README.md").write_text(f"intro\n{L.TABLE_START}\nold table\n{L.TABLE_END}\nrest\n")
    record = tmp_path / "lessons.json"
    stats = L.notebook_stats(_toy_notebook(executed=True), name="01_toy", run_seconds=12.34)
    L.record_run(stats, record, machine={"cpus": 2})
    saved = json.loads(record.read_text())
    entry = saved["notebooks"]["01_toy"]
    assert entry["run_seconds"] == 12.3 and entry["machine"] == {"cpus": 2}
    changed = L.write_statements(folder, record)
    assert sorted(p.name for p in changed) == ["01_toy.ipynb", "README.md"]
    text = nbformat.read(folder / "01_toy.ipynb", as_version=4).cells[1].source
    assert "about " in text and "12 s of Run All" in text and "old" not in text
    table = (folder / "README.md").read_text()
    assert "`01_toy.ipynb`" in table and "old table" not in table and table.endswith("rest\n")
    assert L.write_statements(folder, record) == []  # nothing left to change


# ------------------------------------------------------------------ the lesson notebooks themselves
@pytest.mark.parametrize("name", CONVERTED)
def test_lesson_follows_the_conventions(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cells = [c for c in nb.cells if "uldviz-launch" not in c.metadata.get("tags", [])]
    header = cells[0].source
    assert header.startswith("# ") and L.TIME_START in header and "able to" in header
    assert "Words used in this notebook" in cells[1].source  # the glossary
    setup = next(c for c in cells if c.cell_type == "code")
    assert "\nSHOW_SOLUTIONS = False" in "\n" + setup.source
    sol = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(sol) == 1 and "if not SHOW_SOLUTIONS:" in sol[0].source
    assert sol[0].metadata["jupyter"]["source_hidden"] is True and sol[0].metadata["cellView"] == "form"
    kinds = L.notebook_stats(nb).exercises
    assert {"implement", "derive", "interpret"} <= set(kinds), kinds
    last = nb.cells[-1]
    assert last.cell_type == "code" and "display(Markdown(" in last.source and "**Next:**" in last.source


@pytest.mark.parametrize("name", CONVERTED)
def test_stated_time_is_the_rule_applied_to_the_measurements(name):
    """Fails when the prose, cells or exercises change without `python -m uldviz.course.lessons --write`."""
    record = L.read_record()
    stats = L.notebook_stats(NOTEBOOKS / name)
    run = record["notebooks"][stats.name]
    stats.run_seconds, stats.widgets = run["run_seconds"], run["widgets"]
    header = nbformat.read(NOTEBOOKS / name, as_version=4).cells[2].source
    stated = header.split(L.TIME_START)[1].split(L.TIME_END)[0]
    assert stated == L.time_sentence(stats), "run `python -m uldviz.course.lessons --write`"


@pytest.mark.parametrize("name", OPTIONAL)
def test_optional_page_states_its_time_and_closes_with_a_summary(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert name[:2] + "_" in "".join(p.name[:3] for p in L.lesson_paths(NOTEBOOKS))  # it belongs to a lesson
    assert "uldviz-launch" in nb.cells[0].metadata.get("tags", [])
    header = nb.cells[2].source
    assert header.startswith(f"# {name[:3]} ") and L.TIME_START in header
    stats = L.notebook_stats(nb, name=name[:-len(".ipynb")])
    run = L.read_record().get("notebooks", {}).get(stats.name, {})
    stats.run_seconds, stats.widgets = run.get("run_seconds"), run.get("widgets")
    stated = header.split(L.TIME_START)[1].split(L.TIME_END)[0]
    assert stated == L.time_sentence(stats, measured=bool(run)), "run `python -m uldviz.course.lessons --write`"
    last = nb.cells[-1]
    assert last.cell_type == "code" and "display(Markdown(" in last.source and "**Next:**" in last.source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_site_builds_lessons_and_their_optional_pages_in_order(tmp_path):
    for n in ("01_a", "02_b", "02b_extra", "03_c", "2_not_a_lesson", "x02_c"):
        (tmp_path / f"{n}.ipynb").write_text("{}")
    assert [p.name for p in L.page_paths(tmp_path)] == ["01_a.ipynb", "02_b.ipynb", "02b_extra.ipynb", "03_c.ipynb"]
    assert [p.name for p in L.lesson_paths(tmp_path)] == ["01_a.ipynb", "02_b.ipynb", "03_c.ipynb"]


def test_instructor_table_is_the_generated_one(tmp_path):
    copy = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, copy, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    assert L.write_statements(copy, None) == [], "run `python -m uldviz.course.lessons --write`"
