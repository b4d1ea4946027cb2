"""The checkers of notebook 02's exercises 4-6 (implement, derive, interpret): right answers pass, typical wrong ones
are explained, and a broken function becomes feedback, never a traceback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uldviz.exercises import ex02
from uldviz.maths import transport as uot
from uldviz.maths.losses import uld_distance, uld_topk_distance


# ------------------------------------------------------------------ exercise 4: the sorted plan
def right_plan(p, q):
    N = max(len(p), len(q))
    pp, qq = np.pad(p, (0, N - len(p))), np.pad(q, (0, N - len(q)))
    T = np.zeros((N, N))
    T[np.argsort(-pp), np.argsort(-qq)] = 1 / N
    return T


def test_sorted_plan_accepts_numpy_and_torch_answers():
    assert ex02.check_sorted_plan(right_plan).ok
    assert ex02.check_sorted_plan(lambda p, q: torch.from_numpy(right_plan(p, q))).ok
    assert ex02.check_sorted_plan(uot.sorted_plan).ok  # the kit's own plan agrees


def test_sorted_plan_explains_typical_mistakes():
    def by_index(p, q):
        N = max(len(p), len(q))
        return np.eye(N) / N

    def reversed_order(p, q):
        N = max(len(p), len(q))
        pp, qq = np.pad(p, (0, N - len(p))), np.pad(q, (0, N - len(q)))
        T = np.zeros((N, N))
        T[np.argsort(-pp), np.argsort(qq)] = 1 / N  # largest with smallest
        return T

    def probabilities_as_masses(p, q):
        N = max(len(p), len(q))
        pp, qq = np.pad(p, (0, N - len(p))), np.pad(q, (0, N - len(q)))
        return np.outer(pp, qq)  # rows sum to p, columns to q

    def unpadded(p, q):
        return right_plan(p, q)[: len(p), : len(q)]  # right when the sizes agree, n x m otherwise

    def doubled(p, q):
        return 2 * right_plan(p, q)

    def negative(p, q):
        T = right_plan(p, q)
        T[0, 0] = -T[0, 0]
        return T

    cases = [(by_index, "vocabulary order"), (reversed_order, "in reverse"), (probabilities_as_masses, "POSITIONS"),
             (unpadded, "Zero-pad"), (doubled, "1/N"), (negative, "non-negative"),
             (lambda p, q: [1, 2, 3], "2-dimensional"), (lambda p, q: p[10], "raised IndexError"),
             (None, "Replace None"), (3, "function itself")]
    for fn, words in cases:
        fb = ex02.check_sorted_plan(fn)
        assert not fb.ok and words in fb.message, (words, fb.message)


def test_sorted_plan_tells_reversed_ranks_from_vocabulary_order():
    """On the first 3 x 3 pair the reversed pairing IS the identity: the diagnosis must look at every pair."""
    def reversed_order(p, q):
        N = max(len(p), len(q))
        pp, qq = np.pad(p, (0, N - len(p))), np.pad(q, (0, N - len(q)))
        T = np.zeros((N, N))
        T[np.argsort(-pp), np.argsort(qq)] = 1 / N
        return T

    p, q = ex02._ex4_pairs()[0]
    assert np.allclose(reversed_order(p, q), np.eye(3) / 3)  # the coincidence that misled the old message
    fb = ex02.check_sorted_plan(reversed_order)
    assert not fb.ok and "not optimal" in fb.message and "in reverse" in fb.message
    assert "vocabulary order" not in fb.message


# ------------------------------------------------------------------ exercise 5: top-k + tail <= ULD, equality case
def test_topk_equality_accepts_a_same_sign_tail():
    assert ex02.check_topk_equality([0.6, 0.2, 0.2], [0.4, 0.3, 0.2, 0.1], 1).ok
    assert ex02.check_topk_equality(np.array([0.7, 0.3]), torch.tensor([0.4, 0.3, 0.3], dtype=torch.float64), 1).ok


def test_topk_equality_refuses_strict_inequality_and_trivial_or_invalid_answers():
    p, q = [0.6, 0.3, 0.1], [0.5, 0.25, 0.15, 0.1]  # after rank 1: +0.05, -0.05, -0.1: mixed signs
    tp, tq = torch.tensor(p, dtype=torch.float64), torch.tensor(q, dtype=torch.float64)
    assert float(uld_topk_distance(tp, tq, 1)) < float(uld_distance(tp, tq))
    fb = ex02.check_topk_equality(p, q, 1)
    assert not fb.ok and "below the full ULD" in fb.message
    same_tail = ex02.check_topk_equality([0.5, 0.3, 0.2], [0.6, 0.2, 0.2], 2)
    assert not same_tail.ok and "agree" in same_tail.message
    for bad_k in (0, 4, 1.5, True, None):
        assert not ex02.check_topk_equality(p, q, bad_k).ok
    assert "sum to 1" in ex02.check_topk_equality([0.5, 0.6], q, 1).message
    assert "Replace None" in ex02.check_topk_equality(None, q, 1).message
    assert "one non-empty vector" in ex02.check_topk_equality([[0.5, 0.5]], q, 1).message


# ------------------------------------------------------------------ exercise 6: the 0/1-cost floor
def test_zero_one_floor_right_and_explained_wrong_answers():
    shared = 0.68
    assert ex02.check_zero_one_floor(0.32, shared).ok
    assert ex02.check_zero_one_floor(0.321, shared).ok  # rounded to 3 decimals
    expectations = [(0.68, "CAN stay"), (0.0, "own strings"), (1.0, "disjoint"), (0.64, "L1"),
                    (0.5, "Not yet"), (None, "Replace None"), ("x", "a number")]
    for answer, words in expectations:
        fb = ex02.check_zero_one_floor(answer, shared)
        assert not fb.ok and words in fb.message, (answer, fb.message)
    with pytest.raises(ValueError, match="shared_mass"):
        ex02.check_zero_one_floor(0.3, 1.5)


def test_zero_one_floor_is_what_the_0_1_cost_reaches_at_best():
    """The best student copies the teacher on shared strings: its 0/1-cost OT equals 1 - shared mass."""
    teacher = np.array([0.5, 0.2, 0.3])  # strings ' a', ' b', ' only-teacher'
    student = np.array([0.5, 0.2, 0.3])  # strings ' a', ' b', ' only-student'
    C = uot.zero_one_cost([" a", " b", " t"], [" a", " b", " s"])
    assert uot.token_ot(teacher, student, C).value == pytest.approx(1 - 0.7)
    assert ex02.check_zero_one_floor(uot.token_ot(teacher, student, C).value, 0.7).ok
