"""Predict, then drag: the self-checking exercises of the three explorables (:mod:`uldviz.viz.explorables`).

The learner writes a number down *before* touching the explorable, then makes the state the exercise
asks for by hand; the checker reads that state back from the widget (its traits follow the page) and
compares the prediction with what the kit computes for it. Each ``check_*`` returns a
:class:`~uldviz.exercises._core.Feedback` that never gives the number away; :func:`solution` is for the
instructor's copy (printed only under ``SHOW_SOLUTIONS = True``).
"""

from __future__ import annotations

import math

from uldviz.exercises._core import Feedback, as_number
from uldviz.maths.patches import uld

__all__ = ["BARS_TOKEN", "GROUPS_TEXT", "check_bars_prediction", "check_plan_prediction",
           "check_groups_prediction", "solution"]

#: Explorable 1: predict ULD once the teacher puts all its mass on this token.
BARS_TOKEN = "dog"
#: Explorable 3: predict how many byte-offset groups this text has (the explorable's first example).
GROUPS_TEXT = "The teacher predicts the next token."


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-2, abs_tol=5e-3)


def _needs(obj, names: tuple, what: str) -> Feedback | None:
    """A Feedback when ``obj`` is not the explorable the exercise reads (it lacks one of ``names``)."""
    if not all(hasattr(obj, n) for n in names):
        return Feedback(False, f"Pass the {what} shown above as the second argument (the object you displayed).")
    return None


def _one_hot(tokens, token: str) -> dict:
    return {t: float(t == token) for t in tokens}


# --------------------------------------------------------------------------- explorable 1: the bars
def check_bars_prediction(prediction, bars) -> Feedback:
    """ULD after dragging the teacher's :data:`BARS_TOKEN` bar to 1 (student untouched), predicted before dragging."""
    wrong = _needs(bars, ("teacher_probs", "student_probs", "initial", "uld"), "two-distributions explorable")
    if wrong is not None:
        return wrong
    x = as_number(prediction, "Your prediction")
    if isinstance(x, Feedback):
        return x
    teacher, student = bars.teacher_probs, bars.student_probs
    if BARS_TOKEN not in teacher:
        return Feedback(False, f"This explorable's teacher has no token {BARS_TOKEN!r}: use the notebook's.")
    first_student = dict(zip(student, bars.initial["student"]))
    if any(abs(student[t] - first_student[t]) > 1e-6 for t in student):
        return Feedback(False, "You moved the student's bars too: press reset, then drag only the teacher's "
                               f"'{BARS_TOKEN}' bar.")
    if teacher[BARS_TOKEN] < 1 - 1e-9:
        return Feedback(False, f"Prediction noted ({x:g}). Now drag the teacher's '{BARS_TOKEN}' bar all the way up "
                               "(probability 1), then run this cell again: the checker reads the widget.")
    truth = bars.uld
    if _close(x, truth):
        return Feedback(True, f"Right: the widget's state gives ULD = {truth:.4g}, as you predicted. With a one-hot "
                              "teacher only the student's largest probability matters: ULD = 2 (1 − max q).")
    if x < 0 or not math.isfinite(x):
        return Feedback(False, "ULD is a finite sum of absolute differences: it cannot be negative or infinite.")
    by_name = sum(abs(teacher.get(t, 0.0) - student.get(t, 0.0)) for t in set(teacher) | set(student))
    if _close(x, by_name):
        return Feedback(False, "You compared tokens by name (dog with dog). ULD pairs the i-th largest teacher "
                               "probability with the i-th largest student probability, whatever the tokens are called.")
    if _close(x, truth / 2):
        return Feedback(False, "That is half of it (the total variation). ULD is the full sum of |differences|.")
    return Feedback(False, "Not what the widget now shows. Sort both sides, pad the student with a zero, and add up "
                           "the differences rank by rank — the green lines in the explorable.")


# --------------------------------------------------------------------------- explorable 2: the plan
def check_plan_prediction(prediction, plan) -> Feedback:
    """The cost N·⟨π, C⟩ of the best plan, predicted before touching, then reached by dragging (not by snapping)."""
    wrong = _needs(plan, ("cost_value", "optimum_value", "moves", "snapped", "crossings", "initial_plan"),
                   "plan explorable")
    if wrong is not None:
        return wrong
    x = as_number(prediction, "Your prediction")
    if isinstance(x, Feedback):
        return x
    if plan.snapped:
        return Feedback(False, "You snapped to POT's plan: press reset and reach the optimum by dragging dots "
                               "(uncross the arrows) — then run this cell again.")
    if plan.moves == 0:
        return Feedback(False, f"Prediction noted ({x:g}). Now push the plan: drag dots until the cost stops "
                               "falling, then run this cell again.")
    cost, best = plan.cost_value, plan.optimum_value
    if cost > best + 1e-9:
        return Feedback(False, f"Not optimal yet: {plan.crossings} pair(s) of arrows still cross. Uncross them "
                               "(drag one dot onto the other) and run this cell again.")
    if _close(x, best):
        return Feedback(True, f"Right: your dragged plan costs N·⟨π, C⟩ = {best:.4g}, POT's optimum, which is ULD. "
                              "Every uncrossing kept the cost or lowered it.")
    if x < 0 or not math.isfinite(x):
        return Feedback(False, "A cost is a finite sum of masses times |differences|: not negative, not infinite.")
    n = len(plan.initial_plan)
    first = n * sum(t * c for rt, rc in zip(plan.initial_plan, plan.cost) for t, c in zip(rt, rc))
    if _close(x, first):
        return Feedback(False, "That is the cost of the first plan (token id i with token id i). The best plan pairs "
                               "the values by rank instead.")
    if _close(x, best / n):
        return Feedback(False, "That is ⟨π, C⟩ without the factor N: ULD's units count each of the N values once.")
    return Feedback(False, "Not the optimum's cost. Sort both lists of values (pad with zeros) and pair rank with "
                           "rank: what does that plan cost?")


# --------------------------------------------------------------------------- explorable 3: the text
def check_groups_prediction(prediction, text_view) -> Feedback:
    """How many byte-offset groups :data:`GROUPS_TEXT` has, predicted from the two rows before showing the groups."""
    wrong = _needs(text_view, ("text", "result", "show_groups", "num_groups"), "text explorable")
    if wrong is not None:
        return wrong
    x = as_number(prediction, "Your prediction")
    if isinstance(x, Feedback):
        return x
    if x != int(x) or x < 1:
        return Feedback(False, "A number of groups is a whole number, at least 1.")
    if text_view.result.get("text") != GROUPS_TEXT:
        return Feedback(False, f"Prediction noted ({int(x)}). Show the exercise's text in the explorable first: "
                               f"{GROUPS_TEXT!r} (its first example button).")
    if not text_view.show_groups:
        return Feedback(False, f"Prediction noted ({int(x)}). Now press 'show groups' and run this cell again.")
    truth = text_view.num_groups
    if int(x) == truth:
        return Feedback(True, f"Right: {truth} groups — one wherever both rows end at the same byte.")
    n_t, n_s = (len(text_view.result[side]["tokens"]) for side in ("teacher", "student"))
    if int(x) in (n_t, n_s):
        return Feedback(False, "That is a number of tokens of one row. A group closes only where *both* rows end at "
                               "the same byte, so one group can hold several tokens of a row.")
    if int(x) == truth - 1:
        return Feedback(False, "One short: the end of the text closes the last group too.")
    return Feedback(False, "Too many: a group closes only where both rows end at the same byte." if x > truth
                    else "Too few: look for every byte where a teacher chip and a student chip end together.")


# --------------------------------------------------------------------------- the instructor's copy
def solution(name: str, explorable) -> str:
    """The answer of exercise ``name`` ('bars', 'plan' or 'groups') for this explorable, with its reason."""
    if name == "bars":
        student = dict(zip(explorable.student_tokens, explorable.initial["student"]))
        teacher = _one_hot(explorable.teacher_tokens, BARS_TOKEN)
        return (f"ULD = {uld(teacher, student):.4g}: the teacher sorted is (1, 0, …), the student sorted and padded "
                f"has largest value {max(student.values()):g}; the sum is (1 − max) + (1 − max) = 2 (1 − max q). "
                "KL on the union turns NaN: tokens both sides now give 0 make 0·(−∞).")
    if name == "plan":
        return (f"N·⟨π, C⟩ = {explorable.optimum_value:.4g} = ULD: pair the i-th largest teacher value with the i-th "
                "largest student value (each with mass 1/N); uncrossing two arrows never raises the cost, so "
                "uncrossing until nothing crosses reaches the sorted plan.")
    if name == "groups":
        count = len(explorable.tokenize(GROUPS_TEXT)["groups"])
        return (f"{count} groups: count the bytes where a teacher chip and a student chip end together (the end of "
                "the text included).")
    raise ValueError(f"name must be 'bars', 'plan' or 'groups', got {name!r}")
