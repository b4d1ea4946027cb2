"""The checkers of notebook 01's exercises 5-7 (implement, derive, interpret): right answers pass, typical wrong ones
are explained, and a broken function becomes feedback, never a traceback."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from uldviz.exercises import ex01
from uldviz.maths import patches


# ------------------------------------------------------------------ exercise 5: ULD from scratch
def _padded_sorted(student_logits, teacher_logits, sort=True, detach_teacher=True):
    q = torch.softmax(student_logits, -1)
    p = torch.softmax(teacher_logits.detach() if detach_teacher else teacher_logits, -1)
    n = max(q.shape[-1], p.shape[-1])
    q, p = F.pad(q, (0, n - q.shape[-1])), F.pad(p, (0, n - p.shape[-1]))
    if sort:
        q, p = q.sort(-1, descending=True).values, p.sort(-1, descending=True).values
    return q, p


def right_uld(s, t):
    q, p = _padded_sorted(s, t)
    return (q - p).abs().sum(-1).mean()


def test_uld_implementation_accepts_a_right_one():
    fb = ex01.check_uld_implementation(right_uld)
    assert fb.ok and "value and gradient" in fb.message


def test_uld_implementation_explains_typical_mistakes():
    def summed(s, t):
        q, p = _padded_sorted(s, t)
        return (q - p).abs().sum()

    def unsorted(s, t):
        q, p = _padded_sorted(s, t, sort=False)
        return (q - p).abs().sum(-1).mean()

    def truncated(s, t):
        q = torch.softmax(s, -1).sort(-1, descending=True).values
        p = torch.softmax(t.detach(), -1).sort(-1, descending=True).values
        k = min(q.shape[-1], p.shape[-1])
        return (q[..., :k] - p[..., :k]).abs().sum(-1).mean()

    def per_position(s, t):
        q, p = _padded_sorted(s, t)
        return (q - p).abs().sum(-1)

    def no_gradient(s, t):
        return torch.tensor(float(right_uld(s, t).detach()))

    def teacher_gradient(s, t):
        q, p = _padded_sorted(s, t, detach_teacher=False)
        return (q - p).abs().sum(-1).mean()

    def crashes(s, t):
        return s @ t  # shapes do not match

    cases = [(summed, "summed over positions"), (unsorted, "id order"), (truncated, "zero-pad"),
             (per_position, "one value per position"), (no_gradient, "no gradient"),
             (teacher_gradient, "fixed target"), (crashes, "raised RuntimeError"),
             (lambda s, t: 0.5, "torch tensor"), (None, "Replace None"), ("my_uld_loss", "function itself")]
    for fn, words in cases:
        fb = ex01.check_uld_implementation(fn)
        assert not fb.ok and words in fb.message, (fn, fb.message)


def test_uld_implementation_finds_a_wrong_gradient_with_a_right_value():
    def wrong_gradient(s, t):
        value = right_uld(s, t)
        return value + 0.0 * s.sum() + (s - s.detach()).sum() * 1e-3  # value unchanged, gradient shifted

    fb = ex01.check_uld_implementation(wrong_gradient)
    assert not fb.ok and "gradient" in fb.message


# ------------------------------------------------------------------ exercise 6: the ε -> 0 gradient
def right_limit(t, s):
    m = sum(t.get(v, 0.0) for v in s)
    return {v: m * s[v] - t.get(v, 0.0) for v in s}


def test_limit_gradient_accepts_the_formula_as_dict_or_list():
    assert ex01.check_limit_gradient(right_limit).ok
    assert ex01.check_limit_gradient(lambda t, s: list(right_limit(t, s).values())).ok
    assert ex01.check_limit_gradient(lambda t, s: torch.tensor(list(right_limit(t, s).values()))).ok


def test_limit_gradient_agrees_with_autograd_at_small_eps():
    t, s = patches.toy_pair()
    want = patches.smoothed_kl_gradient(t, s, 1e-12)
    got = right_limit(t, s)
    assert all(abs(got[k] - want[k]) < 1e-9 for k in s)


def test_limit_gradient_explains_wrong_formulas():
    cases = [
        (lambda t, s: {v: -g for v, g in right_limit(t, s).items()}, "Opposite sign"),
        (lambda t, s: {v: s[v] - t.get(v, 0.0) for v in s}, "ONE shared vocabulary"),
        (lambda t, s: {**right_limit(t, s), "moon": 0.0}, "does not have"),
        (lambda t, s: {v: g for v, g in list(right_limit(t, s).items())[:-1]}, "missing"),
        (lambda t, s: {v: 2 * g for v, g in right_limit(t, s).items()}, "Not yet"),
        (lambda t, s: [0.0], "one value per student token"),
        (lambda t, s: {v: None for v in s}, "Replace None"),
        (lambda t, s: 1 / 0, "ZeroDivisionError"),
        (None, "Replace None"),
    ]
    for fn, words in cases:
        fb = ex01.check_limit_gradient(fn)
        assert not fb.ok and words in fb.message, (words, fb.message)


def test_limit_gradient_catches_an_answer_that_only_fits_the_toy_pair():
    toy = right_limit(*patches.toy_pair())
    fb = ex01.check_limit_gradient(lambda t, s: toy if set(s) == set(toy) else {v: 0.0 for v in s})
    assert not fb.ok


# ------------------------------------------------------------------ exercise 7: where training ends
def right_end():
    """Where the student over dog, cat, sun ends for EX7_TEACHER: the teacher renormalised on the shared tokens."""
    mass = sum(ex01.EX7_TEACHER.get(v, 0.0) for v in ex01.EX4_STUDENT_TOKENS)
    return {v: ex01.EX7_TEACHER.get(v, 0.0) / mass for v in ex01.EX4_STUDENT_TOKENS}


def test_gradient_verdict_needs_the_right_letter_and_its_reason():
    assert set(ex01.EX7_CHOICES) == {"A", "B", "C", "D"}
    assert ex01.check_gradient_verdict("B", right_end()).ok and ex01.check_gradient_verdict(" b) ", right_end()).ok
    letter_only = ex01.check_gradient_verdict("B")
    assert not letter_only.ok and "reason" in letter_only.message  # four guesses are not enough
    for wrong in "ACD":
        fb = ex01.check_gradient_verdict(wrong, right_end())
        assert not fb.ok and len(fb.message) > 40
    assert "letters" in ex01.check_gradient_verdict("E").message
    assert "Replace None" in ex01.check_gradient_verdict(None).message


def test_gradient_verdict_explains_a_wrong_reason():
    moon_to_sun = {"dog": 0.2, "cat": 0.1, "sun": 0.7}
    cases = [(moon_to_sun, "choice A"), ({"dog": 0.5, "cat": 0.5, "sun": 0.0}, "not 0"),
             ({"dog": 0.2, "cat": 0.1, "sun": 0.0}, "sum to"), ({"dog": 1.0, "cat": 0.0}, "dict over"),
             ([0.6, 0.4, 0.0], "dict over"), ({"dog": None, "cat": 0.5, "sun": 0.5}, "Replace None")]
    for end, words in cases:
        fb = ex01.check_gradient_verdict("B", end)
        assert not fb.ok and words in fb.message, (end, fb.message)
    end = right_end()
    assert "0.667" not in ex01.check_gradient_verdict("B", {"dog": 0.5, "cat": 0.5, "sun": 0.0}).message
    grad = patches.smoothed_kl_gradient(ex01.EX7_TEACHER, {**end, "sun": 1e-12}, 1e-12)  # autograd agrees: 0
    assert max(abs(g) for g in grad.values()) < 1e-6


def test_gradient_verdict_b_is_where_the_gradient_vanishes():
    teacher, _ = patches.toy_pair()
    end = {"dog": 0.625, "cat": 0.375 - 1e-9, "sun": 1e-9}  # sun -> 0
    grad = patches.smoothed_kl_gradient(teacher, end, 1e-12)
    assert max(abs(g) for g in grad.values()) < 1e-6
    start = patches.smoothed_kl_gradient(teacher, {"dog": 0.4, "cat": 0.4, "sun": 0.2}, 1e-12)  # choice C: not 0
    assert max(abs(g) for g in start.values()) > 0.1
