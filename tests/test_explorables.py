"""The explorables' Python side (uldviz.viz.explorables): state, the kernel referee, the moves, the exercises.

The page sends its state the way a front end does (``set_state``, as the comm delivers it); the reply must be
the kit's own numbers. Runs under ipywidgets 8 and, in `make test`, under 7.7 (Colab's).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from uldviz.exercises import drag
from uldviz.maths import patches
from uldviz.maths.transport import uld_emd
from uldviz.viz.explorables import DistributionsExplorable, PlanExplorable, TextExplorable
from uldviz.viz.explorables._base import module_source, number
from uldviz.viz.explorables.distributions import DEFAULT_STUDENT, DEFAULT_TEACHER, kit_uld
from uldviz.viz.explorables.plan import check_plan, crossing_pairs, plan_cost, plan_move
from uldviz.viz.explorables.text import MAX_BYTES, tokenize_pair
from uldviz.viz.widgets.kl_explorer import rebalance


@pytest.fixture(scope="module")
def text_view():
    """One text explorable on the kit's offline pair (the tokenizers load once for the module)."""
    return TextExplorable()


def _send(widget, **state):
    """What the page does: set traits and bump ``request`` in one message (ipywidgets' set_state)."""
    widget.set_state({**state, "request": widget.request + 1})
    assert widget.reply["request"] == widget.request
    return widget.reply


# ------------------------------------------------------------------ the shipped modules
@pytest.mark.parametrize("name", ["distributions", "plan", "text"])
def test_each_module_is_self_contained_and_offline(name):
    src = module_source(name)
    assert src.count("export default") == 1 and src.index("function referee") < src.index("function render")
    assert not re.search(r"^\s*(import|export \*)\b|\bimport\(", src, re.M)  # nothing to fetch: works offline
    assert set(re.findall(r"https?://[^\s\"']+", src)) == {"http://www.w3.org/2000/svg"}  # a namespace, not a CDN
    with pytest.raises(ValueError, match="no explorable module 'nope'"):
        module_source("nope")


def test_numbers_travel_as_text_json_can_hold():
    assert [number(x) for x in (0.25, math.inf, -math.inf, math.nan)] == ["0.25", "Infinity", "-Infinity", "NaN"]
    assert float(number(1 / 3)) == 1 / 3  # repr round-trips exactly


# ------------------------------------------------------------------ explorable 1: the bars
def test_bars_start_with_the_kits_numbers():
    w = DistributionsExplorable()
    assert w.teacher_probs == DEFAULT_TEACHER and w.student_probs == DEFAULT_STUDENT
    assert len(w.teacher) != len(w.student)  # two vocabulary sizes
    assert w.reply == {"request": 0, "uld": number(w.uld), "kl": "Infinity"}
    assert w.uld == pytest.approx(patches.uld(DEFAULT_TEACHER, DEFAULT_STUDENT), abs=1e-12)
    assert w.initial == {"teacher": w.teacher, "student": w.student}
    assert "AnyModel" == w.get_state()["_model_name"] and w.get_state()["_esm"] == module_source("distributions")


def test_bars_referee_a_dragged_state_with_uld_loss_and_raw_kl():
    w = DistributionsExplorable()
    teacher = list(rebalance(dict(zip(w.teacher_tokens, w.teacher)) | {"dog": 0.8}, "dog").values())
    reply = _send(w, teacher=teacher)
    assert float(reply["uld"]) == pytest.approx(patches.uld(w.teacher_probs, w.student_probs), abs=1e-12)
    assert reply["kl"] == "Infinity"  # moon and the: teacher mass where the student has no token
    one_hot = _send(w, teacher=[1.0, 0.0, 0.0, 0.0])
    assert one_hot["kl"] == "NaN" and float(one_hot["uld"]) == pytest.approx(1.0)  # 0·(−∞), and 2(1 − max q)
    broken = _send(w, student=[0.5, 0.5, 0.5])
    assert "student sums to 1.5" in broken["error"]  # a state the kit refuses is answered with the reason


def test_bars_drag_is_the_pages_rule():
    w = DistributionsExplorable()
    w.drag("teacher", "moon", 0.6)
    expected = rebalance(DEFAULT_TEACHER | {"moon": 0.6}, "moon")
    assert w.teacher_probs == pytest.approx(expected) and sum(w.teacher) == pytest.approx(1.0)
    w.drag("student", "sun", 0.0)  # the teacher has no 'sun' either: 0·log 0 in torch is 0·(−∞)
    assert w.student_probs["sun"] == 0.0 and math.isnan(w.kl)
    w.reset()
    assert w.teacher_probs == DEFAULT_TEACHER and w.student_probs == DEFAULT_STUDENT
    with pytest.raises(ValueError, match="'moon' is not a student token"):
        w.drag("student", "moon", 0.1)
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        w.drag("teacher", "dog", 1.5)
    with pytest.raises(ValueError, match="side must be"):
        w.set_probs("both", DEFAULT_TEACHER)


def test_bars_refuse_bad_distributions_by_name():
    with pytest.raises(ValueError, match="teacher sums to"):
        DistributionsExplorable(teacher={"a": 0.5})
    with pytest.raises(ValueError, match="at most 12 tokens"):
        DistributionsExplorable(student={f"t{i}": 1 / 13 for i in range(13)})


def test_kit_uld_equals_the_closed_form_with_zeros():
    gen = np.random.default_rng(0)
    for n, m in ((3, 5), (4, 4), (6, 2)):
        p, q = gen.dirichlet(np.ones(n)), gen.dirichlet(np.ones(m))
        p[0], q[-1] = 0.0, 0.0
        p, q = p / p.sum(), q / q.sum()
        closed = patches.uld({f"t{i}": v for i, v in enumerate(p)}, {f"s{j}": v for j, v in enumerate(q)})
        assert kit_uld(student=q, teacher=p) == pytest.approx(closed, abs=1e-12)


# ------------------------------------------------------------------ explorable 2: the plan
def test_plan_starts_at_the_blind_id_pairing_and_knows_pots_optimum():
    w = PlanExplorable()
    n = len(w.cost)
    assert n == max(len(DEFAULT_TEACHER), len(DEFAULT_STUDENT)) and np.allclose(w.plan, np.eye(n) / n)
    best = uld_emd(np.array(w.teacher), np.array(w.student))
    assert w.optimum_value == pytest.approx(float(best)) == pytest.approx(patches.uld(DEFAULT_TEACHER,
                                                                                       DEFAULT_STUDENT))
    assert plan_cost(w.pot_plan, w.cost) == pytest.approx(w.optimum_value)
    assert w.cost_value > w.optimum_value and w.crossings == 2
    assert w.reply["request"] == 0 and float(w.reply["cost"]) == pytest.approx(w.cost_value)


def test_every_move_keeps_the_totals_and_uncrossing_never_raises_the_cost():
    gen = np.random.default_rng(1)
    p, q = gen.dirichlet(np.ones(5)), gen.dirichlet(np.ones(4))
    w = PlanExplorable(teacher={f"t{i}": v for i, v in enumerate(p)}, student={f"s{j}": v for j, v in enumerate(q)})
    n = len(w.cost)
    x, y = np.pad(p, (0, n - len(p))), np.pad(q, (0, n - len(q)))
    for _ in range(300):
        T = np.asarray(w.plan)
        i, j = (int(v) for v in np.argwhere(T > 1e-12)[gen.integers(int((T > 1e-12).sum()))])
        a, b = (int(v) for v in gen.integers(n, size=2))
        crossed = T[a, b] > 1e-12 and a != i and b != j and (x[i] - x[a]) * (y[j] - y[b]) < 0
        before = w.cost_value
        w.move((i, j), (a, b), fraction=float(gen.choice([1.0, 0.5, 0.25])))
        check_plan(w.plan)  # rows and columns still carry 1/N, nothing negative
        if crossed:
            assert w.cost_value <= before + 1e-12
    assert w.moves > 0 and not w.snapped


def test_uncrossing_by_hand_reaches_pots_optimum_and_snap_recomputes_it():
    w = PlanExplorable()
    w.move((0, 0), (1, 1))  # dog→dog, cat→cat cross: swap partners
    w.move((1, 0), (2, 2))  # cat→dog, moon→sun cross
    assert w.crossings == 0 and w.cost_value == pytest.approx(w.optimum_value)
    w.reset()
    assert w.moves == 0 and w.cost_value > w.optimum_value
    reply = _send(w, snap=w.snap + 1)  # the page's snap button: the kernel solves with ot.emd
    assert w.snapped and float(reply["cost"]) == pytest.approx(w.optimum_value) and "ot.emd" in reply["note"]
    assert reply["note"].endswith("optimal")


def test_plan_moves_and_checks_name_the_problem():
    n = 3
    T = np.eye(n) / n
    assert np.array_equal(plan_move(T, (0, 1), (1, 1)), T)  # an empty source cell: nothing moves
    same_row = plan_move(T, (0, 0), (0, 2))  # teacher 0 sends to column 2; row 2 makes room
    assert same_row[0, 2] == same_row[2, 0] == pytest.approx(1 / n) and same_row[0, 0] == 0
    assert crossing_pairs(T, teacher=[0.5, 0.3, 0.2], student=[0.2, 0.3, 0.5]) == 3
    with pytest.raises(ValueError, match="outside the 3 x 3 plan"):
        plan_move(T, (0, 0), (3, 0))
    with pytest.raises(ValueError, match="fraction"):
        plan_move(T, (0, 0), (1, 1), fraction=0)
    with pytest.raises(ValueError, match="row 0 of the plan carries"):
        check_plan([[0.6, 0.0], [0.0, 0.4]])
    with pytest.raises(ValueError, match="negative mass"):
        check_plan([[0.6, -0.1], [-0.1, 0.6]])
    w = PlanExplorable()
    assert "row 0" in _send(w, plan=[[1.0, 0, 0, 0]] + [[0, 0, 0, 0]] * 3)["error"]
    with pytest.raises(ValueError, match="the page moves a fraction"):
        w.move((0, 0), (1, 1), fraction=0.3)
    with pytest.raises(ValueError, match="must be 4 x 4"):
        PlanExplorable(plan=np.eye(3) / 3)


# ------------------------------------------------------------------ explorable 3: the text
def test_text_rows_groups_and_shared_strings(text_view):
    r = text_view.result
    assert r["text"] == text_view.text and set(text_view.examples) >= {r["text"]}
    for side in ("student", "teacher"):
        toks = r[side]["tokens"]
        assert toks[0]["start"] == 0 and toks[-1]["end"] == r["bytes"]  # every byte covered, eos left out
        assert all(t["start"] < t["end"] for t in toks)
        assert all(a["start"] <= b["start"] for a, b in zip(toks, toks[1:]))
        assert any(t["shared"] for t in toks) and r[side]["name"].startswith(side)
    ends = [g[1] for g in r["groups"]]
    assert ends == sorted(ends) and ends[-1] == r["bytes"] and text_view.num_groups == len(ends)
    for b0, b1, s0, s1, t0, t1 in r["groups"]:  # both rows cover exactly the group's bytes
        assert r["student"]["tokens"][s0]["start"] == r["teacher"]["tokens"][t0]["start"] == b0
        assert r["student"]["tokens"][s1 - 1]["end"] == r["teacher"]["tokens"][t1 - 1]["end"] == b1


def test_text_is_tokenized_by_the_kernel_on_request(text_view):
    reply = _send(text_view, text="déjà vu")
    assert "error" not in reply and text_view.result["text"] == "déjà vu"
    partial = [t for t in text_view.result["teacher"]["tokens"] if t["partial"]]
    assert partial and all(re.fullmatch(r"[0-9a-f]{2}( [0-9a-f]{2})*", t["label"]) for t in partial)  # bytes of é
    assert "text is empty" in _send(text_view, text="")["error"]
    assert f"at most {MAX_BYTES}" in _send(text_view, text="x" * (MAX_BYTES + 1))["error"]
    first = next(iter(text_view.examples))
    text_view.type_text(first)
    assert text_view.result["text"] == first and text_view.result == text_view.examples[first]
    with pytest.raises(ValueError, match="give both tokenizers"):
        TextExplorable(object())
    with pytest.raises(TypeError, match="text must be a str"):
        tokenize_pair(3, None, None)


# ------------------------------------------------------------------ predict, then drag
def test_bars_exercise_reads_the_widget_and_never_gives_the_number():
    w = DistributionsExplorable()
    truth = 2 * (1 - max(DEFAULT_STUDENT.values()))
    assert "Replace None" in drag.check_bars_prediction(None, w).message
    waiting = drag.check_bars_prediction(truth, w)
    assert not waiting and "drag the teacher's 'dog' bar" in waiting.message
    assert "Pass the two-distributions explorable" in drag.check_bars_prediction(truth, object()).message
    w.drag("teacher", "dog", 1.0)
    assert drag.check_bars_prediction(truth, w)
    for wrong, why in ((1.6, "by name"), (truth / 2, "half"), (0.3, "rank by rank")):
        fb = drag.check_bars_prediction(wrong, w)
        assert not fb and why in fb.message and f"{truth:g}" not in fb.message
    w.drag("student", "sun", 0.4)
    assert "moved the student" in drag.check_bars_prediction(truth, w).message
    assert f"ULD = {truth:.4g}" in drag.solution("bars", w)


def test_plan_exercise_wants_the_optimum_reached_by_hand():
    w = PlanExplorable()
    best = w.optimum_value
    assert "Now push the plan" in drag.check_plan_prediction(best, w).message
    w.move((0, 0), (1, 1))
    fb = drag.check_plan_prediction(best, w)
    assert not fb and "still cross" in fb.message and f"{best:g}" not in fb.message
    w.move((1, 0), (2, 2))
    assert drag.check_plan_prediction(best, w)
    assert "first plan" in drag.check_plan_prediction(0.7, w).message
    assert "factor N" in drag.check_plan_prediction(best / 4, w).message
    w.snap_to_optimum()
    assert "snapped" in drag.check_plan_prediction(best, w).message
    assert f"{best:.4g}" in drag.solution("plan", w)


def test_groups_exercise_wants_the_groups_shown(text_view):
    text_view.type_text(drag.GROUPS_TEXT)
    text_view.show_groups = False
    truth = text_view.num_groups
    assert "show groups" in drag.check_groups_prediction(truth, text_view).message
    text_view.show_groups = True
    assert drag.check_groups_prediction(truth, text_view)
    assert "One short" in drag.check_groups_prediction(truth - 1, text_view).message
    n_teacher = len(text_view.result["teacher"]["tokens"])
    assert "tokens of one row" in drag.check_groups_prediction(n_teacher, text_view).message
    assert "whole number" in drag.check_groups_prediction(2.5, text_view).message
    text_view.type_text("another text")
    assert "first example" in drag.check_groups_prediction(truth, text_view).message
    assert f"{truth} groups" in drag.solution("groups", text_view)
    with pytest.raises(ValueError, match="name must be"):
        drag.solution("nope", text_view)
