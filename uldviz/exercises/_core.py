"""What every exercise checker shares: the Feedback it returns and the parsing of the student's answer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Feedback:
    """Outcome of checking a student's answer: ``ok`` and a message that never reveals the answer."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return ("✅ " if self.ok else "❌ ") + self.message

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.ok else "#cf222e"
        return f'<div style="color:{colour};font-weight:600">{str(self)}</div>'


def as_number(answer, what: str = "The answer") -> "float | Feedback":
    """The student's answer as a float, or a Feedback saying why it is not one usable number."""
    if answer is None:
        return Feedback(False, "Replace None with your answer, then run the cell again.")
    if isinstance(answer, bool):
        return Feedback(False, f"{what} should be a number, not True/False.")
    if hasattr(answer, "numel") and answer.numel() != 1:
        return Feedback(False, f"{what} should be one number, got a tensor of shape {tuple(answer.shape)}.")
    try:
        return float(answer)
    except (TypeError, ValueError):
        return Feedback(False, f"{what} should be a number (e.g. 0.123), got {answer!r}.")


def call_student(fn, *args, where: str):
    """``fn(*args)``, or a Feedback naming the exception the student's function raised and on which input."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any error in the student's code becomes feedback
        return Feedback(False, f"Your function raised {type(exc).__name__}: {exc} (on {where}).")


def choice_feedback(choice, why: dict, right: str) -> Feedback:
    """A multiple-choice answer: ``why`` maps every letter to its explanation; ``right`` is the correct letter."""
    if choice is None:
        return Feedback(False, "Replace None with the letter of your choice (e.g. \"A\"), then run the cell again.")
    letter = str(choice).strip().strip(".)").upper()
    if letter not in why:
        return Feedback(False, f"Answer with one of the letters {', '.join(why)}, got {choice!r}.")
    return Feedback(letter == right, why[letter])


def check_ranking(prediction, runs) -> Feedback:
    """A prediction made before a live run: ``prediction`` lists every one of ``runs`` once, best first.

    It is not graded (nothing has run yet): the feedback says whether it is complete and records it.
    """
    runs = list(runs)
    if prediction is None:
        return Feedback(False, f"Replace None with a list of the {len(runs)} run names, best (lowest test bits per "
                               "byte) first — before running the next cell.")
    if isinstance(prediction, str) or not hasattr(prediction, "__iter__"):
        return Feedback(False, "Give a list of run names, best (lowest test bits per byte) first.")
    given = [str(r).strip() for r in prediction]
    unknown = [r for r in given if r not in runs]
    if unknown:
        return Feedback(False, f"{unknown[0]!r} is not one of the live runs: {', '.join(runs)}.")
    if sorted(given) != sorted(runs):
        return Feedback(False, f"Rank each of the {len(runs)} live runs exactly once.")
    return Feedback(True, "Prediction recorded: " + " < ".join(given) + ". Run the next cell; the notebook compares "
                          "after the runs.")


def compare_ranking(prediction, scores: dict, note: str = "") -> Feedback:
    """After the live run: the predicted ranking against the measured one (``scores``: run -> a lower-is-better
    score). ``ok`` when the whole ranking came true; the message gives the measured order either way."""
    order = sorted(scores, key=lambda r: scores[r])
    measured = " < ".join(f"{r} ({scores[r]:.3f})" for r in order)
    if prediction is None or check_ranking(prediction, list(scores)).ok is False:
        return Feedback(False, f"No complete prediction was recorded. Measured, best first: {measured}. {note}".strip())
    given = [str(r).strip() for r in prediction]
    places = sum(g == o for g, o in zip(given, order))
    best = "right" if given[0] == order[0] else "wrong"
    return Feedback(places == len(order), f"Your ranking had {places} of {len(order)} places right (the best run: "
                                          f"{best}). Measured, best first: {measured}. {note}".strip())
