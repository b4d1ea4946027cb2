"""The small result type every exercise checker returns."""

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
