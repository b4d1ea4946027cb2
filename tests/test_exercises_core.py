"""The shared answer parsing of the self-checking exercises."""

import torch

from uldviz.exercises import Feedback
from uldviz.exercises._core import as_number


def test_as_number_accepts_numbers_and_one_element_tensors():
    assert as_number(0.25) == 0.25
    assert as_number("0.5") == 0.5
    assert as_number(torch.tensor(1.5)) == 1.5


def test_as_number_explains_unusable_answers_without_an_answer():
    cases = [(None, "Replace None"), (True, "True/False"), (torch.ones(3), "shape (3,)"), ("abc", "a number")]
    for bad, words in cases:
        fb = as_number(bad, "KL")
        assert isinstance(fb, Feedback) and not fb.ok and words in fb.message
