"""Self-checking exercises for notebook 02 (optimal transport vs ULD's closed form).

Each ``check_*`` returns a :class:`~uldviz.exercises.Feedback`: right, or what is wrong, never the answer.
The exercise data come from the ``exercise*`` functions so the notebook and the checker agree. Notation as in
:mod:`uldviz.course.notation`: p is the teacher, q the student, π a transport plan, τ the temperature.
"""

from __future__ import annotations

import numpy as np
import torch

from uldviz.exercises._core import Feedback, as_number, call_student
from uldviz.maths import transport as uot
from uldviz.maths.losses import temperature_curve, uld_distance, uld_topk_distance

__all__ = [
    "exercise1_pair",
    "check_cost_matrix",
    "check_plan",
    "exercise2_pair",
    "check_closed_form",
    "exercise3_logits",
    "check_peak_temperature",
    "EX4_CASES",
    "check_sorted_plan",
    "check_topk_equality",
    "check_zero_one_floor",
]


def _array(x, none_message: str, not_numbers: str):
    """The student's answer as a float64 numpy array (lists, arrays, tensors), or a Feedback when it is not one."""
    if x is None:
        return Feedback(False, none_message)
    try:
        return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    except (TypeError, ValueError):
        return Feedback(False, not_numbers)


def _matrix(x, name: str):
    """The student's answer as a float matrix, or a Feedback explaining why it is not one."""
    a = _array(x, f"No answer yet: set {name} to your matrix and run the cell again.",
               f"{name} should be a matrix of numbers (a nested list or a numpy array).")
    if isinstance(a, Feedback):
        return a
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
    """Exercise 1b: an optimal plan π (coupling) for :func:`exercise1_pair`, each side uniform mass 1/N."""
    p, q = exercise1_pair()
    T = _matrix(T, "my_plan")
    if isinstance(T, Feedback):
        return T
    a, b, C = uot.uld_ot_problem(p, q)
    if T.shape != C.shape:
        return Feedback(False, f"my_plan has shape {T.shape}, the cost matrix {C.shape}: they must match.")
    if (T < -1e-12).any():
        return Feedback(False, "A plan moves non-negative amounts of mass: my_plan has negative entries.")
    if not np.allclose(T.sum(1), a, atol=1e-6):
        return Feedback(False, "Row sums must equal the teacher-side masses (1/N each): mass is created or lost.")
    if not np.allclose(T.sum(0), b, atol=1e-6):
        return Feedback(False, "Column sums must equal the student-side masses (1/N each).")
    cost = float((T * C).sum())
    best = float(uot.uld_emd(p, q)) / len(a)
    if cost > best + 1e-9:
        return Feedback(False, "my_plan is a valid coupling but not optimal: a cheaper way to move the mass exists. "
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
    """Exercise 3: a temperature τ where ULD of :func:`exercise3_logits` is (within 1 %) as large as it gets."""
    t = as_number(T, "The temperature")
    if isinstance(t, Feedback):
        return t
    if not (t > 0 and np.isfinite(t)):
        return Feedback(False, "A temperature is a finite number > 0.")
    grid = np.geomspace(1e-3, 1e4, 4001)
    best = float(_uld_at(grid).max())
    got = float(_uld_at([t])[0])
    if got >= 0.99 * best:
        return Feedback(True, f"Right: ULD at τ = {t:g} is within 1 % of its largest value.")
    side = "larger" if float(_uld_at([t * 1.1])[0]) > got else "smaller"
    return Feedback(False, f"ULD at τ = {t:g} is {got:.4f}, not the peak yet: try a {side} temperature.")


# --------------------------------------------------------------------------- exercise 4 (implement)
def _ex4_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """The (teacher, student) pairs exercise 4 is checked on: several size combinations, and ties."""
    rng = np.random.default_rng(4)
    pairs = [(rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))) for n, m in EX4_CASES]
    pairs.append((np.full(4, 0.25), np.array([0.5, 0.3, 0.2])))  # ties: all four teacher values equal
    return pairs


#: Vocabulary sizes (teacher, student) of the random pairs exercise 4 is checked on (plus one pair with ties).
EX4_CASES = ((3, 3), (5, 2), (2, 6), (12, 9))


def _pairing_cost(p: np.ndarray, q: np.ndarray, reverse: bool) -> float:
    """N·⟨π, C⟩ of a rank pairing: the i-th largest of p with the i-th largest of q, or (reverse) the i-th smallest."""
    pp, qq = uot.pad_to_common(p, q)
    a = np.sort(pp)[::-1]
    b = np.sort(qq) if reverse else np.sort(qq)[::-1]
    return float(np.abs(a - b).sum())


def _diagnose_pairing(plans: list, pairs: list) -> str:
    """Why valid but costly plans are not optimal, judged on every pair at once (one pair can fit two mistakes:
    on a 3 x 3 pair the reversed pairing may be the identity)."""
    if all(np.allclose(T, np.eye(len(T)) / len(T)) for T in plans):
        return "You paired the values in vocabulary order (index i with index i): pair them by rank."
    if all(abs(len(T) * float((T * uot.uld_ot_problem(p, q)[2]).sum()) - _pairing_cost(p, q, reverse=True)) < 1e-9
           for T, (p, q) in zip(plans, pairs)):
        return ("You paired the ranks in reverse: the largest teacher value with the smallest student value (the "
                "most expensive pairing there is). Sort both sides in the same direction.")
    return "Check the order: the largest teacher value goes to the largest student value."


def check_sorted_plan(fn) -> Feedback:
    """Exercise 4: ``fn(p, q)`` returns an optimal N x N plan of ULD's OT problem; checked against POT's optimum.

    The plan must be a coupling of the masses 1/N (rows: padded teacher values, columns: padded
    student values) whose cost N·⟨π, C⟩ equals N·``ot.emd2`` on every pair of :func:`_ex4_pairs`.
    A valid but costly plan is diagnosed on all pairs together (vocabulary order, reversed ranks, other).
    """
    if fn is None:
        return Feedback(False, "Replace None with your function (e.g. my_sorted_plan), then run the cell again.")
    if not callable(fn):
        return Feedback(False, f"Pass the function itself, without parentheses; got {type(fn).__name__}.")
    pairs = _ex4_pairs()
    plans, worse = [], None
    for p, q in pairs:
        where = f"p of size {len(p)} and q of size {len(q)}"
        T = call_student(fn, p.copy(), q.copy(), where=where)
        if isinstance(T, Feedback):
            return T
        T = _matrix(T, "The plan")
        if isinstance(T, Feedback):
            return T
        a, b, C = uot.uld_ot_problem(p, q)
        N = len(a)
        if T.shape != C.shape:
            pad = " Zero-pad the smaller vector first." if T.shape == (len(p), len(q)) else ""
            return Feedback(False, f"For {where} the plan has shape {T.shape}; it must be N x N = {C.shape}.{pad}")
        if (T < -1e-12).any():
            return Feedback(False, "A plan moves non-negative amounts of mass: yours has negative entries.")
        pp, qq = uot.pad_to_common(p, q)
        if np.allclose(T.sum(1), pp, atol=1e-9) and not np.allclose(pp, a):
            return Feedback(False, "Your row sums are the probabilities p. In ULD's problem the probabilities are the "
                                   "POSITIONS of the points; every point carries the same mass 1/N.")
        if not (np.allclose(T.sum(1), a, atol=1e-9) and np.allclose(T.sum(0), b, atol=1e-9)):
            return Feedback(False, f"For {where} the row and column sums must all be 1/N = 1/{N}: mass is created "
                                   "or lost.")
        plans.append(T)
        cost, best = N * float((T * C).sum()), float(uot.uld_emd(p, q))
        if cost > best + 1e-9 and worse is None:
            worse = (where, cost, best)
    if worse is not None:
        where, cost, best = worse
        return Feedback(False, f"A valid coupling, but not optimal for {where}: N·⟨π, C⟩ = {cost:.4g}, the "
                               f"optimum is {best:.4g}. {_diagnose_pairing(plans, pairs)}")
    return Feedback(True, f"Right: a coupling of the masses 1/N whose cost equals POT's exact optimum on all "
                          f"{len(pairs)} pairs, different sizes and ties included.")


# --------------------------------------------------------------------------- exercise 5 (derive)
def _as_distribution(x, name: str):
    """A 1-D probability vector (numpy float64) from the student's answer, or a Feedback on what is wrong."""
    v = _array(x, f"Replace None in {name} with your vector, then run the cell again.",
               f"{name} should be a list or array of probabilities.")
    if isinstance(v, Feedback):
        return v
    if v.ndim != 1 or v.size == 0:
        return Feedback(False, f"{name} should be one non-empty vector, got shape {v.shape}.")
    if not np.isfinite(v).all() or (v < 0).any() or abs(v.sum() - 1) > 1e-6:
        return Feedback(False, f"{name} should hold finite probabilities >= 0 that sum to 1 (sum {v.sum():.6g}).")
    return v


def check_topk_equality(p, q, k) -> Feedback:
    """Exercise 5: p, q and k < N with top-k + tail EQUAL to the full ULD although the ranks beyond k differ."""
    p, q = _as_distribution(p, "my_p"), _as_distribution(q, "my_q")
    for x in (p, q):
        if isinstance(x, Feedback):
            return x
    if k is None:
        return Feedback(False, "Replace None in my_k with a whole number, then run the cell again.")
    N = max(len(p), len(q))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < N:
        return Feedback(False, f"my_k must be a whole number from 1 to {N - 1} (smaller than N = {N}), got {k!r}.")
    tp, tq = (torch.from_numpy(x) for x in (p, q))
    full = float(uld_distance(tp, tq))
    approx = float(uld_topk_distance(tp, tq, int(k), tail=True))
    ps, qs = (np.sort(x)[::-1] for x in uot.pad_to_common(p, q))
    beyond = float(np.abs(ps[k:] - qs[k:]).sum())
    if beyond < 1e-6:
        return Feedback(False, "Beyond rank k your two sorted vectors agree, so there is nothing left out: choose p "
                               "and q whose ranks after k differ.")
    if full - approx > 1e-9:
        return Feedback(False, f"Here top-k + tail is {full - approx:.3g} below the full ULD. In your proof, when is "
                               "|d_1 + d_2 + ...| equal to |d_1| + |d_2| + ... for the differences beyond rank k?")
    return Feedback(True, "Right: every difference beyond rank k has the same sign, so the tail term loses nothing: "
                          "the equality case of the triangle inequality.")


# --------------------------------------------------------------------------- exercise 6 (interpret)
def check_zero_one_floor(answer, shared_mass) -> Feedback:
    """Exercise 6: the smallest average 0/1-cost OT value any student can reach, given the teacher's shared mass."""
    s = as_number(shared_mass, "shared_mass")
    if isinstance(s, Feedback) or not 0.0 <= s <= 1.0:
        raise ValueError(f"shared_mass must be the teacher's mean mass on shared strings, in [0, 1]: {shared_mass!r}")
    x = as_number(answer, "Your value")
    if isinstance(x, Feedback):
        return x
    close = lambda a, b: abs(a - b) < 0.005  # noqa: E731 - two decimals are enough
    if close(x, 1.0 - s):
        return Feedback(True, "Right: the teacher's mass on strings the student does not have must always move, "
                              "at cost 1; no student can do better than 1 minus the shared mass.")
    if close(x, s):
        return Feedback(False, "That is the mass that CAN stay in place. The cost counts what must move.")
    if close(x, 0.0):
        return Feedback(False, "A student can only put probability on its own strings: can the teacher's mass on "
                               "teacher-only strings ever stay in place?")
    if close(x, 1.0):
        return Feedback(False, "1 is the value for disjoint vocabularies. After normalisation these two share "
                               "strings: some mass can stay in place.")
    if close(x, 2.0 * (1.0 - s)):
        return Feedback(False, "That is the L1 distance; optimal transport moves each unit of mass once (total "
                               "variation is half the L1 distance).")
    return Feedback(False, "Not yet. Which part of the teacher's mass can never stay in place, whatever the "
                           "student predicts, and what does moving one unit cost?")
