r"""Explorable 1: two distributions over two vocabularies of different sizes, every bar draggable.

Drag a teacher or student bar (the other bars of that side renormalise, keeping their proportions): the
raw KL on the union of token strings (inf or NaN where it breaks), the sorted pairing (rank r of the
teacher with rank r of the student), the optimal plan of ULD's transport problem and ULD's value,

.. math:: \mathrm{ULD}(q, p) = \sum_{r=1}^{N} \big|\,\tilde q_{(r)} - \tilde p_{(r)}\big| ,

all follow the hand in the browser. With a kernel, each state is recomputed here by
:func:`uldviz.maths.losses.uld_loss` and :func:`uldviz.maths.patches.aligned_kl` and the page shows both agree.
"""

from __future__ import annotations

import math

import torch
import traitlets

from uldviz.maths.losses import uld_loss
from uldviz.maths.patches import aligned_kl, check_distribution
from uldviz.viz.explorables._base import Explorable, module_source, number
from uldviz.viz.widgets.kl_explorer import rebalance

__all__ = ["DEFAULT_TEACHER", "DEFAULT_STUDENT", "DistributionsExplorable", "kit_uld"]

#: The teacher of explorables 1 and 2: four tokens, two of which ("moon", "the") the student lacks.
DEFAULT_TEACHER: dict[str, float] = {"dog": 0.45, "cat": 0.3, "moon": 0.15, "the": 0.1}
#: The student of explorables 1 and 2: three tokens, "sun" instead of "moon".
DEFAULT_STUDENT: dict[str, float] = {"dog": 0.2, "cat": 0.5, "sun": 0.3}
_SIDES = ("teacher", "student")


def kit_uld(*, student, teacher) -> float:
    """ULD of two probability vectors (any sizes) as the kit's training loss computes it: ``uld_loss`` on log p.

    Zero probabilities become logits of -inf, which :func:`uld_loss` accepts (probability exactly 0).
    """
    s = torch.as_tensor(list(student), dtype=torch.float64).log()
    t = torch.as_tensor(list(teacher), dtype=torch.float64).log()
    return float(uld_loss(s[None], t[None]))


class DistributionsExplorable(Explorable):
    """Teacher and student bars you drag; KL, the sorted pairing, the optimal plan and ULD follow (anywidget).

    ``teacher`` and ``student`` are ``{token: probability}`` dicts (defaults :data:`DEFAULT_TEACHER`,
    :data:`DEFAULT_STUDENT`). After a drag in the page the traits ``teacher``/``student`` hold the new
    probabilities (in token order); :attr:`uld` and :attr:`kl` are the kit's numbers for them.
    """

    _esm = module_source("distributions")
    teacher_tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    student_tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    teacher = traitlets.List(traitlets.Float()).tag(sync=True)
    student = traitlets.List(traitlets.Float()).tag(sync=True)
    #: The first state, for the page's reset button: ``{"teacher": [...], "student": [...]}``.
    initial = traitlets.Dict().tag(sync=True)

    def __init__(self, *, student=None, teacher=None):
        t = check_distribution(DEFAULT_TEACHER if teacher is None else teacher, "teacher")
        s = check_distribution(DEFAULT_STUDENT if student is None else student, "student")
        if len(t) > 12 or len(s) > 12:
            raise ValueError(f"at most 12 tokens a side fit the bars, got {len(t)} (teacher) and {len(s)} (student)")
        super().__init__(teacher_tokens=list(t), student_tokens=list(s), teacher=list(t.values()),
                         student=list(s.values()), initial={"teacher": list(t.values()), "student": list(s.values())})
        self._on_request()

    # ------------------------------------------------------------------ the state as the kit sees it
    @property
    def teacher_probs(self) -> dict[str, float]:
        """The teacher's bars as ``{token: probability}`` (checked: finite, non-negative, summing to 1)."""
        return check_distribution(dict(zip(self.teacher_tokens, self.teacher)), "teacher")

    @property
    def student_probs(self) -> dict[str, float]:
        """The student's bars as ``{token: probability}`` (checked)."""
        return check_distribution(dict(zip(self.student_tokens, self.student)), "student")

    @property
    def uld(self) -> float:
        """ULD of the current bars by :func:`uldviz.maths.losses.uld_loss` (the referee of the page's number)."""
        return kit_uld(student=self.student_probs.values(), teacher=self.teacher_probs.values())

    @property
    def kl(self) -> float:
        """KL(p ‖ q) on the union of token strings as raw torch computes it: inf or NaN where it breaks."""
        return float(aligned_kl(self.teacher_probs, self.student_probs))

    def referee(self) -> dict:
        """The kit's ULD and KL of the state the page sent."""
        return {"uld": number(self.uld), "kl": number(self.kl)}

    # ------------------------------------------------------------------ driving it from Python (tests, exercises)
    def _side(self, side: str) -> tuple[list, list]:
        if side not in _SIDES:
            raise ValueError(f"side must be 'teacher' or 'student', got {side!r}")
        return (self.teacher_tokens, self.teacher) if side == "teacher" else (self.student_tokens, self.student)

    def drag(self, side: str, token: str, value: float) -> None:
        """What dragging one bar does: ``token`` of ``side`` gets ``value``, the others renormalise."""
        tokens, values = self._side(side)
        if token not in tokens:
            raise ValueError(f"{token!r} is not a {side} token; the {side} tokens are {tokens}")
        v = float(value)
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise ValueError(f"a probability must lie in [0, 1], got {value!r}")
        setattr(self, side, list(rebalance(dict(zip(tokens, values)) | {token: v}, token).values()))

    def set_probs(self, side: str, dist) -> None:
        """Set every bar of one side (``{token: probability}`` over exactly that side's tokens)."""
        tokens, _ = self._side(side)
        d = check_distribution(dist, side)
        if set(d) != set(tokens):
            raise ValueError(f"{side} tokens must be {tokens}, got {list(d)}")
        setattr(self, side, [d[t] for t in tokens])

    def reset(self) -> None:
        """Back to the first state."""
        self.teacher, self.student = list(self.initial["teacher"]), list(self.initial["student"])
