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


def test_call_student_turns_an_exception_into_feedback():
    from uldviz.exercises._core import call_student

    assert call_student(lambda a, b: a + b, 1, 2, where="x") == 3
    fb = call_student(lambda a: a / 0, 1, where="the toy pair")
    assert isinstance(fb, Feedback) and not fb.ok
    assert "ZeroDivisionError" in fb.message and "the toy pair" in fb.message


def test_choice_feedback_accepts_a_letter_in_any_case_and_explains_every_choice():
    from uldviz.exercises._core import choice_feedback

    why = {"A": "no: a", "B": "yes", "C": "no: c"}
    assert choice_feedback("b", why, right="B").ok
    assert choice_feedback("B)", why, right="B").ok
    assert choice_feedback("A", why, right="B").message == "no: a"
    assert not choice_feedback("A", why, right="B").ok
    assert "A, B, C" in choice_feedback("Z", why, right="B").message
    assert "Replace None" in choice_feedback(None, why, right="B").message
