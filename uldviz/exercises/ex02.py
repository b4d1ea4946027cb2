"""Self-checking exercises for notebook 02 (optimal transport vs ULD's closed form).

Each ``check_*`` returns a :class:`~uldviz.exercises.Feedback`: right, or what is wrong, never the answer.
The exercise data come from the ``exercise*`` functions so the notebook and the checker agree.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import ot as uot
from ..losses import temperature_curve, uld_distance
from ._core import Feedback, as_number

__all__ = [
    "exercise1_pair",
    "check_cost_matrix",
    "check_plan",
    "exercise2_pair",
    "check_closed_form",
    "exercise3_logits",
    "check_peak_temperature",
    "check_disjoint_tv",
]


def _matrix(x, name: str):
    """The student's answer as a float matrix, or a Feedback explaining why it is not one."""
    if x is None:
        return Feedback(False, f"No answer yet: set {name} to your matrix and run the cell again.")
    try:
        a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    except (TypeError, ValueError):
        return Feedback(False, f"{name} should be a matrix of numbers (a nested list or a numpy array).")
    if a.ndim != 2:
        return Feedback(False, f"{name} should be 2-dimensional (rows: teacher values, columns: student values).")
    return a


# --------------------------------------------------------------------------- exercise 1
def exercise1_pair() -> tuple[np.ndarray, np.ndarray]:
    """Teacher p over 3 tokens, student q over 2 tokens."""
    return np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.7])


def check_cost_matrix(C) -> Feedback:
    """Exercise 1a: the cost matrix of ULD's OT problem for :func:`exercise1_pair` (teacher rows, student columns)."""
    p, q = exercise1_pair()
    C = _matrix(C, "C")
    if isinstance(C, Feedback):
        return C
    _, _, want = uot.uld_ot_problem(p, q)
    if C.shape == (len(p), len(q)):
        return Feedback(False, f"C has shape {C.shape}: the smaller vocabulary must be zero-padded first, "
                               "so both sides have N = max(n, m) points.")
    if C.shape != want.shape:
        return Feedback(False, f"C has shape {C.shape}; with padding both sides have N points, so C is N x N.")
    if np.allclose(C, want.T, atol=1e-9) and not np.allclose(C, want, atol=1e-9):
        return Feedback(False, "Rows and columns are swapped: rows are the teacher's values, columns the student's.")
    bad = ~np.isclose(C, want, atol=1e-9)
    if bad.any():
        return Feedback(False, f"{int(bad.sum())} entr{'y is' if bad.sum() == 1 else 'ies are'} off. "
                               "The cost of moving value p̃_i to value q̃_j is |p̃_i − q̃_j|.")
    return Feedback(True, "Right: C_ij = |p̃_i − q̃_j| on the zero-padded values.")


def check_plan(T) -> Feedback:
    """Exercise 1b: an optimal plan (coupling) for :func:`exercise1_pair`, each side uniform mass 1/N."""
    p, q = exercise1_pair()
    T = _matrix(T, "T")
    if isinstance(T, Feedback):
        return T
    a, b, C = uot.uld_ot_problem(p, q)
    if T.shape != C.shape:
        return Feedback(False, f"T has shape {T.shape}, the cost matrix {C.shape}: they must match.")
    if (T < -1e-12).any():
        return Feedback(False, "A plan moves non-negative amounts of mass: T has negative entries.")
    if not np.allclose(T.sum(1), a, atol=1e-6):
        return Feedback(False, "Row sums must equal the teacher-side masses (1/N each): mass is created or lost.")
    if not np.allclose(T.sum(0), b, atol=1e-6):
        return Feedback(False, "Column sums must equal the student-side masses (1/N each).")
    cost = float((T * C).sum())
    best = float(uot.uld_emd(p, q)) / len(a)
    if cost > best + 1e-9:
        return Feedback(False, "T is a valid coupling but not optimal: a cheaper way to move the mass exists. "
                               "Which teacher value should the largest student value receive?")
    return Feedback(True, "Right: an optimal coupling. It pairs the i-th largest value with the i-th largest.")


# --------------------------------------------------------------------------- exercise 2
def exercise2_pair() -> tuple[np.ndarray, np.ndarray]:
    """Teacher p over 3 tokens, student q over 4 tokens (listed in vocabulary order, not sorted)."""
    return np.array([0.1, 0.6, 0.3]), np.array([0.25, 0.05, 0.5, 0.2])


def check_closed_form(value) -> Feedback:
    """Exercise 2: ULD of :func:`exercise2_pair` computed by hand (pad, sort, sum |differences|)."""
    v = as_number(value, "value")
    if isinstance(v, Feedback):
        return v
    p, q = exercise2_pair()
    want = float(uld_distance(torch.from_numpy(p), torch.from_numpy(q)))
    if abs(v - want) < 1e-6:
        return Feedback(True, "Right: pad, sort both descending, sum the absolute differences.")
    pp, qq = uot.pad_to_common(p, q)
    if abs(v - float(np.abs(pp - qq).sum())) < 1e-6:
        return Feedback(False, "You compared tokens in vocabulary order. ULD sorts both vectors first.")
    k = min(len(p), len(q))
    if abs(v - float(np.abs(np.sort(p)[::-1][:k] - np.sort(q)[::-1][:k]).sum())) < 1e-6:
        return Feedback(False, "Close: you dropped the student's extra token. Pad the shorter vector with zeros.")
    if abs(v - want / max(len(p), len(q))) < 1e-6:
        return Feedback(False, "That is W1 with masses 1/N; ULD is N times it (no division by N).")
    return Feedback(False, "Not yet. Pad the shorter vector with zeros, sort both descending, sum |differences|.")


# --------------------------------------------------------------------------- exercise 3
def exercise3_logits() -> tuple[np.ndarray, np.ndarray]:
    """Student and teacher logits over the same number of tokens (6): ULD -> 0 at both temperature ends."""
    student = np.array([4.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    teacher = np.array([2.0, 1.8, 1.5, 0.0, -0.5, -2.0])
    return student, teacher


def _uld_at(temps) -> np.ndarray:
    """ULD of exercise 3's logits at each temperature (same T on both sides)."""
    return temperature_curve(*exercise3_logits(), temps)


def check_peak_temperature(T) -> Feedback:
    """Exercise 3: a temperature where ULD of :func:`exercise3_logits` is (within 1 %) as large as it gets."""
    t = as_number(T, "T")
    if isinstance(t, Feedback):
        return t
    if not (t > 0 and np.isfinite(t)):
        return Feedback(False, "A temperature is a finite number > 0.")
    grid = np.geomspace(1e-3, 1e4, 4001)
    best = float(_uld_at(grid).max())
    got = float(_uld_at([t])[0])
    if got >= 0.99 * best:
        return Feedback(True, f"Right: ULD({t:g}) is within 1 % of its largest value.")
    side = "larger" if float(_uld_at([t * 1.1])[0]) > got else "smaller"
    return Feedback(False, f"ULD({t:g}) = {got:.4f} is not the peak yet: try a {side} temperature.")


# --------------------------------------------------------------------------- exercise 4
def check_disjoint_tv(value) -> Feedback:
    """Exercise 4: the 0/1-cost OT value between ANY two distributions on disjoint vocabularies."""
    v = as_number(value, "value")
    if isinstance(v, Feedback):
        return v
    if abs(v - 1.0) < 1e-9:
        return Feedback(True, "Right: every unit of mass must move and every move costs 1, whatever the predictions.")
    if abs(v) < 1e-9:
        return Feedback(False, "Zero would mean nothing has to move. Can any token of one vocabulary stay put?")
    if abs(v - 2.0) < 1e-9:
        return Feedback(False, "That is the L1 distance; OT moves each unit of mass once.")
    return Feedback(False, "Not yet. With disjoint vocabularies, how much mass must move, and what does a move cost?")
