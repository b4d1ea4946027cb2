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
