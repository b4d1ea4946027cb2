"""Notebook 04's checkers: right answers pass, each typical mistake gets its own message, no answer is given."""

from __future__ import annotations

import math

import pytest
import torch

from uldviz.exercises import ex04


def test_chunk_probability_checker():
    t = math.prod(p for _, p in ex04.EX1_TEACHER)
    s = math.prod(p for _, p in ex04.EX1_STUDENT)
    assert ex04.check_chunk_probabilities((t, s)).ok
    assert "swapped" in ex04.check_chunk_probabilities((s, t)).message
    assert "multiply" in ex04.check_chunk_probabilities((0.7, 1.6)).message
    assert "first token" in ex04.check_chunk_probabilities((0.2, 0.3)).message
    assert "student" in ex04.check_chunk_probabilities((t, 0.5)).message
    assert not ex04.check_chunk_probabilities(None).ok and not ex04.check_chunk_probabilities("x").ok


def test_shared_strings_checker():
    right = {" the", " cat", "s"}
    assert ex04.check_shared_strings(right).ok
    assert "missing" in ex04.check_shared_strings({" the"}).message
    assert "not in both" in ex04.check_shared_strings(right | {"the"}).message
    assert "Ġ" in ex04.check_shared_strings({"Ġthe"}).message
    assert "byte" in ex04.check_shared_strings(right | {"é"}).message
    assert "Special" in ex04.check_shared_strings(right | {"</s>"}).message
    assert not ex04.check_shared_strings(None).ok


def test_generalized_kl_checker():
    def right(log_p, log_q):
        p, q = log_p.exp(), log_q.exp()
        return (p * (log_p - log_q) - p + q).sum(-1)

    assert ex04.check_generalized_kl(right).ok
    assert "−p + q" in ex04.check_generalized_kl(lambda lp, lq: (lp.exp() * (lp - lq)).sum(-1)).message
    assert "gradient" in ex04.check_generalized_kl(lambda lp, lq: right(lp, lq).detach()).message
    assert "shape" in ex04.check_generalized_kl(lambda lp, lq: right(lp, lq).sum()).message
    assert "differ" in ex04.check_generalized_kl(lambda lp, lq: right(lp, lq) * 2).message

    def stub(lp, lq):
        raise NotImplementedError

    assert "NotImplementedError" in ex04.check_generalized_kl(stub).message
    assert not ex04.check_generalized_kl(None).ok


def test_scaled_gkl_and_control_checkers():
    P, c = ex04.EX4_MASS, ex04.EX4_SCALE
    assert ex04.check_scaled_gkl(P * (c - 1 - math.log(c))).ok
    assert "alone" in ex04.check_scaled_gkl(-P * math.log(c)).message
    assert "factor p" in ex04.check_scaled_gkl(c - 1 - math.log(c)).message
    assert not ex04.check_scaled_gkl(None).ok
    # the derived formula is the kit's generalised KL
    from uldviz.maths.identity import generalized_kl

    p = torch.tensor([0.3, 0.2, 0.1], dtype=torch.float64)
    assert float(generalized_kl(student_logprobs=(c * p).log(), teacher_logprobs=p.log())) == pytest.approx(
        P * (c - 1 - math.log(c)))
    within = {"beyond": False, "diff": -0.01}
    assert ex04.check_control_difference(False, within).ok and not ex04.check_control_difference(True, within).ok
    assert ex04.check_control_difference(True, {"beyond": True, "diff": -0.1}).ok
    assert not ex04.check_control_difference(None, within).ok
    assert "do not hold" in ex04.check_control_difference(True, None).message
