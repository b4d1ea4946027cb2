"""Self-checking exercises of notebook 04 (losses that keep token identity).

Each ``check_*`` returns a :class:`~uldviz.exercises._core.Feedback`: "right", or what is wrong, never the
answer. The exercise data are module constants so the notebook prints them.
"""

from __future__ import annotations

import math

import torch

from uldviz.exercises._core import Feedback, as_number
from uldviz.maths.identity import generalized_kl
from uldviz.vocab.shared import SharedVocab, surface_strings

__all__ = [
    "EX1_TEACHER",
    "EX1_STUDENT",
    "check_chunk_probabilities",
    "EX2_STUDENT_VOCAB",
    "EX2_TEACHER_VOCAB",
    "check_shared_strings",
    "check_generalized_kl",
    "EX4_MASS",
    "EX4_SCALE",
    "check_scaled_gkl",
    "check_control_difference",
]

#: Exercise 1: one span group, "␣lambda", as each model cuts it, with the probability each model gave each of
#: its tokens given everything before it (the chain rule's factors).
EX1_TEACHER = [(" lam", 0.20), ("bda", 0.50)]
EX1_STUDENT = [("▁la", 0.30), ("mb", 0.40), ("da", 0.90)]


def _product(tokens) -> float:
    return math.prod(p for _, p in tokens)


def check_chunk_probabilities(answer) -> Feedback:
    """Exercise 1: ``answer`` = (teacher's, student's) probability of the group's text, by the chain rule."""
    if answer is None:
        return Feedback(False, "Replace None with a pair (teacher probability, student probability).")
    try:
        t, s = (float(x) for x in answer)
    except (TypeError, ValueError):
        return Feedback(False, "Give two numbers: (teacher probability, student probability).")
    truth_t, truth_s = _product(EX1_TEACHER), _product(EX1_STUDENT)

    def close(a, b):
        return abs(a - b) <= 1e-3 * max(abs(b), 1e-6)

    if close(t, truth_t) and close(s, truth_s):
        return Feedback(True, "Right: each side multiplies its own tokens' conditional probabilities; the two numbers "
                              "are probabilities of the same text, so they can be compared although the tokens differ.")
    if close(t, truth_s) and close(s, truth_t):
        return Feedback(False, "The two numbers are swapped: the teacher first, then the student.")
    sums = (sum(p for _, p in EX1_TEACHER), sum(p for _, p in EX1_STUDENT))
    if close(t, sums[0]) or close(s, sums[1]):
        return Feedback(False, "Probabilities of consecutive tokens multiply (chain rule), they do not add.")
    if close(t, EX1_TEACHER[0][1]) or close(s, EX1_STUDENT[0][1]):
        return Feedback(False, "That is only the first token's probability: the group's text needs every token.")
    if close(t, truth_t):
        return Feedback(False, "The teacher's number is right; check the student's (it has three tokens).")
    if close(s, truth_s):
        return Feedback(False, "The student's number is right; check the teacher's.")
    return Feedback(False, "Not quite: p(text) = p(token 1) × p(token 2 | token 1) × … on each side.")


#: Exercise 2: two tiny vocabularies, written as their tokenizers store them (GPT-2 byte-level 'Ġ' = space,
#: SentencePiece '▁' = space; '\\xc3' is half of the two UTF-8 bytes of 'é').
EX2_TEACHER_VOCAB = {"Ġthe": 0, "the": 1, "Ġcat": 2, "Ãł": 3, "Ã": 4, "s": 5, "Ġcaf": 6, "<|endoftext|>": 7}
EX2_STUDENT_VOCAB = {"▁the": 0, "▁cat": 1, "s": 2, "é": 3, "▁café": 4, "th": 5, "</s>": 6}
_EX2_SPECIAL = {"<|endoftext|>", "</s>"}


def _ex2_truth() -> set[str]:
    """The surface strings both EX2 vocabularies hold (specials and half characters excluded)."""
    t = {k: v for k, v in EX2_TEACHER_VOCAB.items() if k not in _EX2_SPECIAL}
    s = {k: v for k, v in EX2_STUDENT_VOCAB.items() if k not in _EX2_SPECIAL}
    shared = SharedVocab.from_vocabs(surface_strings(s, byte_level=False), surface_strings(t, byte_level=True))
    return set(shared.strings)


def check_shared_strings(answer) -> Feedback:
    """Exercise 2: the set of surface strings (spaces as ' ') on which a hybrid loss can compare token by token."""
    if answer is None:
        return Feedback(False, "Replace None with a set of strings, e.g. {' dog', 'x'} (a space, not 'Ġ' or '▁').")
    if isinstance(answer, str) or not hasattr(answer, "__iter__"):
        return Feedback(False, "Give a set of strings.")
    given = {str(a) for a in answer}
    truth = _ex2_truth()
    if any(("Ġ" in a or "▁" in a) for a in given):
        return Feedback(False, "Write the surface text: 'Ġ' and '▁' are each tokenizer's way to store a space.")
    if given & {"<|endoftext|>", "</s>"}:
        return Feedback(False, "Special tokens are left out: they are not text both models could write.")
    if "é" in given:
        return Feedback(False, "The teacher's 'Ã' alone is one byte of 'é' (0xC3), not the character: it matches "
                               "nothing.")
    if given == truth:
        return Feedback(True, f"Right: {len(truth)} strings; on these the hybrid compares probabilities token by "
                              "token, the rest only by sorted value.")
    missing, extra = truth - given, given - truth
    if missing and not extra:
        return Feedback(False, f"{len(missing)} shared string(s) missing: normalise both sides, then intersect.")
    if extra and not missing:
        return Feedback(False, f"{len(extra)} string(s) in your set are not in both vocabularies.")
    return Feedback(False, "Not quite: decode each entry to its text (Ġ/▁ → space), drop specials and half "
                           "characters, then intersect.")


def check_generalized_kl(fn) -> Feedback:
    r"""Implement: ``fn(log_p, log_q)`` -> (G,) generalised KL :math:`\sum p\log\frac pq - p + q` per row."""
    if fn is None or not callable(fn):
        return Feedback(False, "Define my_gkl(log_p, log_q) and pass the function in.")
    gen = torch.Generator().manual_seed(4)
    log_p = torch.randn(5, 7, generator=gen, dtype=torch.float64) - 2.0  # un-normalised sub-vectors
    log_q = (torch.randn(5, 7, generator=gen, dtype=torch.float64) - 2.0).requires_grad_(True)
    try:
        got = fn(log_p, log_q)
    except NotImplementedError:
        return Feedback(False, "Your function still raises NotImplementedError: write its body.")
    except Exception as err:  # noqa: BLE001 - the learner's code: report, do not crash
        return Feedback(False, f"Your function raised {type(err).__name__}: {err}")
    want = generalized_kl(student_logprobs=log_q, teacher_logprobs=log_p)
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return Feedback(False, f"Return one value per row: a tensor of shape {tuple(want.shape)}.")
    if torch.allclose(got, (log_p.exp() * (log_p - log_q)).sum(-1), atol=1e-8):
        return Feedback(False, "That is Σ p log(p/q) alone: on un-normalised vectors add the −p + q terms, or it "
                               "can go negative.")
    if not torch.allclose(got, want, rtol=1e-6, atol=1e-9):
        return Feedback(False, "The values differ from the formula Σ p log(p/q) − p + q (with p = exp(log_p)).")
    if not got.requires_grad:
        return Feedback(False, "The values are right but no gradient flows to log_q: use torch operations only.")
    (g_got,) = torch.autograd.grad(got.sum(), log_q)
    (g_want,) = torch.autograd.grad(generalized_kl(student_logprobs=log_q, teacher_logprobs=log_p).sum(), log_q)
    if not torch.allclose(g_got, g_want, rtol=1e-6, atol=1e-9):
        return Feedback(False, "The values are right but the gradient is not: avoid detaching or in-place tricks.")
    return Feedback(True, "Right, values and gradients: ∂/∂log q = q − p, zero exactly where the student matches.")


#: Exercise 4: the teacher's mass on the shared strings of one group, and a scaling of it.
EX4_MASS = 0.6
EX4_SCALE = 0.5


def check_scaled_gkl(answer) -> Feedback:
    r"""Derive: the generalised KL between p and q = c·p, :math:`P(c - 1 - \log c)` with :math:`P = \sum p`."""
    x = as_number(answer)
    if isinstance(x, Feedback):
        return x
    P, c = EX4_MASS, EX4_SCALE
    truth = P * (c - 1 - math.log(c))
    if abs(x - truth) <= 1e-3 * truth:
        return Feedback(True, "Right: P(c − 1 − log c) ≥ 0 with equality only at c = 1, since log c ≤ c − 1: the "
                              "divergence notices a student whose shared mass is too small even when its shape is "
                              "exactly the teacher's.")
    if abs(x - P * (-math.log(c))) <= 1e-3 * abs(P * math.log(c)):
        return Feedback(False, "That is Σ p log(p/q) alone; the −p + q terms add P(c − 1).")
    if abs(x - (c - 1 - math.log(c))) <= 1e-3 * truth:
        return Feedback(False, "Every term carries a factor p: the sum over the shared strings brings P = Σ p.")
    return Feedback(False, "Not quite: put q_v = c·p_v into Σ p_v log(p_v/q_v) − p_v + q_v and sum.")


def check_control_difference(answer, comparison: dict | None) -> Feedback:
    """Interpret: is a method − control difference (a ``protocol.compare`` dict) beyond the kit's bar? True/False."""
    if comparison is None:
        return Feedback(False, "The shipped results do not hold this comparison yet.")
    if answer is None or not isinstance(answer, bool):
        return Feedback(False, "Answer True (beyond 2 × the larger std) or False (within noise).")
    truth = bool(comparison["beyond"])
    if answer == truth:
        return Feedback(True, "Right: |difference| " + (">" if truth else "≤") + " 2 × the larger std, so it "
                              + ("counts." if truth else "does not count as an effect here."))
    return Feedback(False, "Compare |difference| with the bar: 2 × the larger of the two runs' seed stds, not the "
                           "paired std.")
