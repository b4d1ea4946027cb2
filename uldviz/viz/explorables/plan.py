r"""Explorable 2: a transport plan you can push, on ULD's own transport problem.

Zero-pad teacher and student to :math:`N` values, give each mass :math:`1/N` and let moving a unit from
:math:`\tilde p_i` to :math:`\tilde q_j` cost :math:`|\tilde p_i-\tilde q_j|`
(:func:`uldviz.maths.transport.uld_ot_problem`).
A plan :math:`\pi` keeps every row and column total at :math:`1/N`; its cost is :math:`N\langle \pi, C\rangle`,
whose minimum is ULD. The learner starts from the blind id pairing (token id i with token id i), drags
mass between cells (:func:`plan_move`: every move keeps the totals), sees arrows uncross and the cost
fall, and can snap to POT's optimum (:func:`uldviz.maths.transport.uld_emd`), computed here with a kernel
and stored in the widget for the static site.
"""

from __future__ import annotations

import math

import numpy as np
import traitlets

from uldviz.maths.patches import check_distribution
from uldviz.maths.transport import uld_emd, uld_ot_problem
from uldviz.viz.explorables._base import Explorable, module_source, number
from uldviz.viz.explorables.distributions import DEFAULT_STUDENT, DEFAULT_TEACHER

__all__ = ["plan_move", "plan_cost", "crossing_pairs", "check_plan", "PlanExplorable"]

_FRACTIONS = (1.0, 0.5, 0.25)


def _square(plan) -> np.ndarray:
    """A plan as a float64 N x N array, or a ValueError naming the problem."""
    T = np.asarray(plan, dtype=np.float64)
    if T.ndim != 2 or T.shape[0] != T.shape[1] or T.shape[0] == 0:
        raise ValueError(f"a plan is a non-empty N x N table, got shape {T.shape}")
    return T


def check_plan(plan, *, tol: float = 1e-9) -> np.ndarray:
    r"""A plan of ULD's problem: entries :math:`\ge 0`, every row and column total :math:`1/N`; returned as numpy."""
    T = _square(plan)
    n = T.shape[0]
    if not np.isfinite(T).all():
        raise ValueError("the plan holds NaN or inf")
    if (T < -tol).any():
        raise ValueError(f"the plan moves negative mass (smallest entry {T.min():.3g})")
    for name, totals in (("row", T.sum(1)), ("column", T.sum(0))):
        bad = np.flatnonzero(np.abs(totals - 1.0 / n) > tol)
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"{name} {k} of the plan carries {totals[k]:.6g}, not 1/N = {1.0 / n:.6g}")
    return np.clip(T, 0.0, None)


def plan_cost(plan, cost) -> float:
    r"""The plan's cost in ULD's units, :math:`N\langle \pi, C\rangle` (N = number of rows)."""
    T, C = _square(plan), _square(cost)
    if T.shape != C.shape:
        raise ValueError(f"plan {T.shape} and cost {C.shape} differ in shape")
    return float(T.shape[0] * (T * C).sum())


def crossing_pairs(plan, *, teacher, student) -> int:
    r"""How many pairs of arrows cross: cells with mass (i, j), (k, m) with
    :math:`(\tilde p_i-\tilde p_k)(\tilde q_j-\tilde q_m)<0`."""
    T = _square(plan)
    n = T.shape[0]
    x = np.pad(np.asarray(list(teacher), dtype=np.float64), (0, n - len(teacher)))
    y = np.pad(np.asarray(list(student), dtype=np.float64), (0, n - len(student)))
    cells = [(i, j) for i in range(n) for j in range(n) if T[i, j] > 1e-12]
    return sum(1 for u, (i, j) in enumerate(cells) for k, m in cells[u + 1:] if (x[i] - x[k]) * (y[j] - y[m]) < -1e-12)


def plan_move(plan, source, target, *, fraction: float = 1.0) -> np.ndarray:
    """What dragging cell ``source`` = (i, j) onto cell ``target`` = (a, b) does; every row and column total is kept.

    Another row and column: the arrows i→j and a→b swap partners (i→b, a→j), an uncrossing when they crossed.
    The same row: teacher i sends to b instead of j, and the row with the most mass at b sends that to j.
    The same column: student j receives from a instead of i, and row a's biggest other cell goes to i.
    ``fraction`` (1, 1/2 or 1/4 in the page) of the most that can move moves; the new plan is returned.
    """
    T = _square(plan).copy()
    n = T.shape[0]
    (i, j), (a, b) = (tuple(int(v) for v in c) for c in (source, target))
    for name, (r, c) in (("source", (i, j)), ("target", (a, b))):
        if not (0 <= r < n and 0 <= c < n):
            raise ValueError(f"{name} cell {(r, c)} is outside the {n} x {n} plan")
    f = float(fraction)
    if not (0.0 < f <= 1.0):
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    if T[i, j] <= 0 or (i, j) == (a, b):
        return T
    if i != a and j != b:
        corners = [(i, j, -1), (a, b, -1), (i, b, 1), (a, j, 1)]
    elif i == a:
        k = max((r for r in range(n) if r != i), key=lambda r: T[r, b])  # first row of the largest, as in the page
        corners = [(i, j, -1), (i, b, 1), (k, b, -1), (k, j, 1)]
    else:
        c = max((c for c in range(n) if c != j), key=lambda c: T[a, c])
        corners = [(i, j, -1), (a, j, 1), (a, c, -1), (i, c, 1)]
    room = min(T[r, c] for r, c, s in corners if s < 0)
    if room <= 0:
        return T
    for r, c, s in corners:
        T[r, c] = max(0.0, T[r, c] + s * f * room)
    return T


class PlanExplorable(Explorable):
    """ULD's transport problem as a plan you push with the mouse, its arrows on the value line (anywidget).

    ``teacher`` and ``student`` are ``{token: probability}`` dicts (defaults: explorable 1's pair); ``plan``
    the first plan (default: the blind id pairing, token id i with token id i). The traits ``plan``,
    ``moves`` and ``snapped`` follow the page; :attr:`cost_value` and :attr:`optimum_value` are the kit's numbers.
    """

    _esm = module_source("plan")
    teacher_tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    student_tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    teacher = traitlets.List(traitlets.Float()).tag(sync=True)
    student = traitlets.List(traitlets.Float()).tag(sync=True)
    #: C[i][j] = |p̃_i - q̃_j| on the zero-padded values.
    cost = traitlets.List(traitlets.List(traitlets.Float())).tag(sync=True)
    plan = traitlets.List(traitlets.List(traitlets.Float())).tag(sync=True)
    initial_plan = traitlets.List(traitlets.List(traitlets.Float())).tag(sync=True)
    #: POT's optimal plan (ot.emd), computed when the widget was made: what "snap" shows on the static site.
    pot_plan = traitlets.List(traitlets.List(traitlets.Float())).tag(sync=True)
    #: N·ot.emd2, as text (:func:`number`).
    optimum = traitlets.Unicode().tag(sync=True)
    #: Bumped by the page's "snap" button: the kernel then recomputes POT's plan and sets ``plan``.
    snap = traitlets.Int(0).tag(sync=True)
    #: Moves the learner made by dragging since the last reset; whether the plan is POT's (snapped) since.
    moves = traitlets.Int(0).tag(sync=True)
    snapped = traitlets.Bool(False).tag(sync=True)

    def __init__(self, *, student=None, teacher=None, plan=None):
        t = check_distribution(DEFAULT_TEACHER if teacher is None else teacher, "teacher")
        s = check_distribution(DEFAULT_STUDENT if student is None else student, "student")
        n = max(len(t), len(s))
        if n > 6:
            raise ValueError(f"at most 6 values a side fit the plan, got {len(t)} (teacher) and {len(s)} (student)")
        p, q = np.array(list(t.values())), np.array(list(s.values()))
        _, _, C = uld_ot_problem(p, q)
        first = np.eye(n) / n if plan is None else check_plan(plan)
        if first.shape != (n, n):
            raise ValueError(f"the plan must be {n} x {n} (N = max of the two vocabulary sizes), got {first.shape}")
        optimum = uld_emd(p, q, return_plan=True)
        super().__init__(teacher_tokens=list(t), student_tokens=list(s), teacher=p.tolist(), student=q.tolist(),
                         cost=C.tolist(), plan=first.tolist(), initial_plan=first.tolist(),
                         pot_plan=np.asarray(optimum.plan).tolist(), optimum=number(optimum.value))
        self._snaps_done = 0
        self._on_request()

    @property
    def cost_value(self) -> float:
        r"""The current plan's cost :math:`N\langle \pi, C\rangle` (the plan checked first)."""
        return plan_cost(check_plan(self.plan), self.cost)

    @property
    def optimum_value(self) -> float:
        """POT's optimum N·ot.emd2, which equals ULD."""
        return float(self.optimum)

    @property
    def crossings(self) -> int:
        """Pairs of arrows of the current plan that cross."""
        return crossing_pairs(self.plan, teacher=self.teacher, student=self.student)

    def referee(self) -> dict:
        """The kit's cost of the plan the page sent (after POT's solve if "snap" was pressed)."""
        if self.snap != self._snaps_done:
            self._snaps_done = self.snap
            self.snap_to_optimum()
            note = "POT's plan, computed now by ot.emd"
        else:
            note = "every row and column still carries 1/N"
        value = self.cost_value
        optimal = math.isclose(value, self.optimum_value, rel_tol=1e-9, abs_tol=1e-12)
        return {"cost": number(value), "valid": True, "note": note + ("; optimal" if optimal else "")}

    def move(self, source, target, *, fraction: float = 1.0) -> None:
        """Drag cell ``source`` onto ``target`` as the page does (:func:`plan_move`); a move that moves mass counts."""
        if float(fraction) not in _FRACTIONS:
            raise ValueError(f"the page moves a fraction in {_FRACTIONS} of what can move, got {fraction!r}")
        before = np.asarray(self.plan, dtype=np.float64)
        after = plan_move(before, source, target, fraction=fraction)
        if np.array_equal(after, before):
            return  # nothing could move (an empty cell): the page does not count it either
        self.plan = after.tolist()
        self.moves += 1
        self.snapped = False

    def snap_to_optimum(self) -> None:
        """Replace the plan by POT's optimal plan (``ot.emd`` through :func:`uldviz.maths.transport.uld_emd`)."""
        result = uld_emd(np.asarray(self.teacher), np.asarray(self.student), return_plan=True)
        self.plan = np.asarray(result.plan).tolist()
        self.snapped = True

    def reset(self) -> None:
        """Back to the first plan."""
        self.plan = [list(r) for r in self.initial_plan]
        self.moves = 0
        self.snapped = False
