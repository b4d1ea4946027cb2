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


def test_scaled_gkl_checker_says_where_the_plain_sum_fails():
    P, c = ex04.EX4_MASS, ex04.EX4_SCALE
    assert c > 1  # the case where Σ p log(p/q) alone goes negative
    fb = ex04.check_scaled_gkl(P * (c - 1 - math.log(c)))
    assert fb.ok and "negative for c > 1" in fb.message and "positive for c < 1" in fb.message
    assert "punishes a student whose shared mass is too small" not in fb.message  # the retired wrong claim
    fb = ex04.check_scaled_gkl(-P * math.log(c))
    assert "alone" in fb.message and "negative" in fb.message
    assert "factor p" in ex04.check_scaled_gkl(c - 1 - math.log(c)).message
    assert "sign" in ex04.check_scaled_gkl(P * (c - 1 + math.log(c))).message
    assert "0.1 %" in ex04.check_scaled_gkl(1.0).message
    assert not ex04.check_scaled_gkl(None).ok
    # the derived formula is the kit's generalised KL, and the plain sum is negative here
    from uldviz.maths.identity import generalized_kl

    p = torch.tensor([0.3, 0.2, 0.1], dtype=torch.float64)
    assert float(generalized_kl(student_logprobs=(c * p).log(), teacher_logprobs=p.log())) == pytest.approx(
        P * (c - 1 - math.log(c)))
    assert float((p * (p.log() - (c * p).log())).sum()) < 0


def test_merged_group_checker_values_gradients_and_mistakes():
    def right(z, ids, s, e):
        lp = torch.log_softmax(z, -1)
        out = lp[s - 1]
        for t in range(s + 1, e):
            out = out + lp[t - 1, ids[t]]
        return out

    def anchored_last(z, ids, s, e):
        lp = torch.log_softmax(z, -1)
        out = lp[e - 2]
        for t in range(s, e - 1):
            out = out + lp[t - 1, ids[t]]
        return out

    def one_late(z, ids, s, e):
        lp = torch.log_softmax(z, -1)
        out = lp[s]
        for t in range(s + 1, e):
            out = out + lp[t, ids[t]]
        return out

    def with_first(z, ids, s, e):
        lp = torch.log_softmax(z, -1)
        out = lp[s - 1]
        for t in range(s, e):
            out = out + lp[t - 1, ids[t]]
        return out

    assert ex04.check_merged_group(right).ok
    assert "LAST" in ex04.check_merged_group(anchored_last).message
    assert "Off by one" in ex04.check_merged_group(one_late).message
    assert "already in the row" in ex04.check_merged_group(with_first).message
    assert "log-probabilities" in ex04.check_merged_group(lambda *a: right(*a).exp()).message
    assert "renormalis" in ex04.check_merged_group(lambda *a: torch.log_softmax(right(*a), -1)).message
    assert "no gradient" in ex04.check_merged_group(lambda *a: right(*a).detach()).message
    assert "shape" in ex04.check_merged_group(lambda *a: right(*a)[:3]).message
    assert "own function" in ex04.check_merged_group(ex04.reference_merged_group).message
    assert not ex04.check_merged_group(None).ok


def test_prediction_compares_and_says_fast_mode_is_too_short():
    runs = ["ce", "hybrid@1", "hybrid-shuffled@1"]
    assert ex04.check_prediction(["hybrid@1", "ce", "hybrid-shuffled@1"], runs).ok
    scores = {"ce": 2.9, "hybrid@1": 3.0, "hybrid-shuffled@1": 3.1}
    fb = ex04.compare_prediction(["hybrid@1", "ce", "hybrid-shuffled@1"], scores, fast=True)
    assert not fb.ok and "too short" in fb.message and "1 of 3" in fb.message
    assert "five or more" in ex04.compare_prediction(None, scores).message
