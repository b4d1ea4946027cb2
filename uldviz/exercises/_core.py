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
