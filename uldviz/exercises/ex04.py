"""Self-checking exercises of notebook 04 (losses that keep token identity).

Each ``check_*`` returns a :class:`~uldviz.exercises._core.Feedback`: "right", or what is wrong, never the
answer. The exercise data are module constants so the notebook prints them.
"""

from __future__ import annotations

import math

import torch

from uldviz.exercises._core import Feedback, as_number, call_student, check_ranking, compare_ranking
from uldviz.maths.identity import generalized_kl, merged_group_logprobs
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
    "reference_merged_group",
    "check_merged_group",
    "check_prediction",
    "compare_prediction",
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


#: Exercise (derive): the teacher's mass on the shared strings of one group, and a scaling of it (c > 1: a student
#: that puts too much mass on the shared strings, where the plain sum fails).
EX4_MASS = 0.6
EX4_SCALE = 2.0


def check_scaled_gkl(answer) -> Feedback:
    r"""Derive: the generalised KL between p and q = c·p, :math:`P(c - 1 - \log c)` with :math:`P = \sum p`."""
    x = as_number(answer)
    if isinstance(x, Feedback):
        return x
    P, c = EX4_MASS, EX4_SCALE
    truth = P * (c - 1 - math.log(c))
    plain = -P * math.log(c)
    if abs(x - truth) <= 1e-3 * truth:
        return Feedback(True, "Right: P(c − 1 − log c) ≥ 0, zero only at c = 1 (log c ≤ c − 1). The plain sum "
                              "Σ p log(p/q) = −P log c is positive for c < 1 but negative for c > 1, as here: on "
                              "un-normalised vectors it rewards a student with too much shared mass. The −p + q "
                              "terms make it a divergence for every c.")
    if abs(x - plain) <= 1e-3 * abs(plain):
        return Feedback(False, "That is Σ p log(p/q) alone — negative here although the student is wrong (c ≠ 1): "
                               "add the −p + q terms, which bring P(c − 1).")
    if abs(x - (c - 1 - math.log(c))) <= 1e-3 * (c - 1 - math.log(c)):
        return Feedback(False, "Every term carries a factor p: the sum over the shared strings brings P = Σ p.")
    if abs(x - P * (c - 1 + math.log(c))) <= 1e-3 * abs(P * (c - 1 + math.log(c))):
        return Feedback(False, "Check the sign of the log term: log(p/q) = log(1/c) = −log c.")
    return Feedback(False, "Not quite (the checker accepts 0.1 % relative error): put q_v = c·p_v into "
                           "Σ p_v log(p_v/q_v) − p_v + q_v and sum.")


# --------------------------------------------------------------------------- the merged group distribution
def reference_merged_group(logits, ids, start: int, end: int) -> torch.Tensor:
    """The kit's merged distribution of one group (``anchor="first"``) for one sample: (L, V) logits, (L,) ids."""
    return merged_group_logprobs(logits[None], ids[None], [0], [start], [end])[0]


def _merge_cases():
    g = torch.Generator().manual_seed(7)
    logits = (2 * torch.randn(8, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    ids = torch.randint(0, 6, (8,), generator=g)
    return logits, ids, [(1, 2), (2, 4), (4, 7), (5, 8)]  # one-token and multi-token groups, one at the end


def check_merged_group(fn) -> Feedback:
    r"""Implement: ``fn(logits, ids, start, end)`` -> (V,) log of GOLD's merged distribution of the group
    ``[start, end)`` of one sample, anchored at its first token:
    :math:`\log q(\cdot\mid x_{<s}) + \sum_{t=s+1}^{e-1} \log q(x_t \mid x_{<t})`, with the logits at position
    :math:`t` predicting token :math:`t+1`. Checked against :func:`reference_merged_group`, values and gradients.
    """
    if fn is None or not callable(fn):
        return Feedback(False, "Define my_merged(logits, ids, start, end) and pass the function in.")
    if fn is reference_merged_group:
        return Feedback(False, "That is the kit's own function: write yours.")
    logits, ids, groups = _merge_cases()
    lp = torch.log_softmax(logits, -1)
    for start, end in groups:
        got = call_student(fn, logits, ids, start, end, where=f"the group [{start}, {end})")
        if isinstance(got, Feedback):
            return got
        want = reference_merged_group(logits, ids, start, end)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return Feedback(False, f"Return the log-distribution over the vocabulary: shape {tuple(want.shape)}.")
        if torch.allclose(got, want, rtol=1e-6, atol=1e-9):
            continue
        later = sum(lp[t - 1, ids[t]] for t in range(start + 1, end)) if end > start + 1 else 0.0
        wrong = [
            (want.exp(), "Return log-probabilities (the merged row is multiplied in probability, summed in log)."),
            (torch.log_softmax(want, -1), "That is the distribution over the first token alone (renormalising the "
                                          "merged row gives the same): multiply by the probabilities of the group's "
                                          "later tokens and do not renormalise — the merged row keeps the group's "
                                          "probability at its first token."),
            (lp[end - 2] + sum(lp[t - 1, ids[t]] for t in range(start, end - 1)) if end > start + 1 else want,
             "That is the merge anchored at the group's LAST token (GOLD's 'bayesian'); this one takes the "
             "distribution that predicts the FIRST token."),
            (lp[start] + sum(lp[t, ids[t]] for t in range(start + 1, end)) if end > start + 1 else lp[start],
             "Off by one: the logits at position t − 1 predict token t, so the group's first token is predicted at "
             "start − 1."),
            (lp[start - 1] + later + lp[start - 1, ids[start]], "The first token's probability is already in the row "
                                                                 "(the row is the distribution over it): multiply "
                                                                 "only by the LATER tokens' probabilities."),
        ]
        for value, message in wrong:
            if torch.allclose(got, value, rtol=1e-6, atol=1e-9) and not torch.allclose(value, want):
                return Feedback(False, message)
        return Feedback(False, f"The values differ from the kit's on the group [{start}, {end}): log q(· | x_<s) "
                               "at position start − 1, plus the log-probabilities of tokens start+1 … end−1.")
    got = fn(logits, ids, 2, 4)
    if not got.requires_grad:
        return Feedback(False, "The values are right but no gradient flows to the logits: use torch operations.")
    (g_got,) = torch.autograd.grad(got.sum(), logits)
    (g_want,) = torch.autograd.grad(reference_merged_group(logits, ids, 2, 4).sum(), logits)
    if not torch.allclose(g_got, g_want, rtol=1e-6, atol=1e-9):
        return Feedback(False, "The values are right but the gradient is not: avoid detaching or in-place tricks.")
    return Feedback(True, "Right, values and gradients on four groups: the row at the group's own first token is "
                          "the group's probability by the chain rule. The next cell uses your function.")


# --------------------------------------------------------------------------- predict before the live run
def check_prediction(prediction, runs) -> Feedback:
    """Predict: ``prediction`` ranks the live ``runs`` from best (lowest test bits per byte) to worst."""
    return check_ranking(prediction, runs)


def compare_prediction(prediction, scores: dict, fast: bool = False) -> Feedback:
    """After the run: the ranking predicted against the live one (``scores``: run -> test bits per byte)."""
    note = ("Fast mode: a few dozen steps of a tiny student, too short for a teacher to show its effect; the "
            "shipped results below are the test." if fast else
            "One seed: the shipped results below have five or more, judged with intervals.")
    return compare_ranking(prediction, scores, note=note)
