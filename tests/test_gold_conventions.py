"""Notebook 04's GOLD section: each convention of TRL's GOLD switched on its own, on one ragged batch."""

from __future__ import annotations

import pytest

from uldviz.distill.gold import gold_conventions
from uldviz.io.models import tiny_causal_lm
from uldviz.io.tokenizers import offline_tokenizers

TEXTS = ["The café's crème brûlée costs £4.50, naïve? The for statement iterates over any sequence.",
         "def f(x):\n    return x ** 2"]


@pytest.fixture(scope="module")
def numbers():
    s, t = offline_tokenizers()
    return gold_conventions(tiny_causal_lm(len(s), seed=0), tiny_causal_lm(len(t), seed=1), s, t, TEXTS)


def test_each_convention_changes_the_number_it_should(numbers):
    n = numbers
    assert n["groups"][0] > 2 * n["groups"][1]  # ragged: the per-sample and pooled means differ
    assert abs(n["pooled"] - n["gold"]) > 1e-3 and abs(n["surface"] - n["gold"]) > 1e-3
    assert abs(n["no_floor"] - n["gold"]) < 1e-5  # the floor only matters near probabilities of 1e-8
    assert abs(n["kit_default"] - n["gold"]) > 1e-2


def test_both_kit_anchors_are_the_chain_rule_and_the_late_observed_read_is_not(numbers):
    gap = numbers["chain_rule_gap"]
    assert gap["first"] < 1e-12 and gap["last"] < 1e-12
    assert gap["observed_as_called"] > 1e-3
