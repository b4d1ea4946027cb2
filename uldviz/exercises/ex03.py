"""Self-checking exercises of notebook 03 (the live mini-distillation and its statistics).

Each ``check_*`` function returns a :class:`~uldviz.exercises._core.Feedback`: "right", or what
is wrong (which position, counted characters instead of bytes, forgot ln 2, sum instead of mean, z instead of t,
population instead of sample standard deviation...), never the answer itself. The exercise data are module
constants so the notebook prints them.
"""

from __future__ import annotations

import math
import statistics

import torch

from uldviz.alignment.positions import offset_pairing
from uldviz.exercises._core import Feedback, as_number, call_student, check_ranking, compare_ranking
from uldviz.maths.losses import uld_loss
from uldviz.maths.stats import paired_difference, t_quantile
from uldviz.train.objectives import PositionPairs

__all__ = [
    "EX1_TEXT",
    "EX1_STUDENT",
    "EX1_TEACHER",
    "EX2_TEXT",
    "EX2_NLL_NATS",
    "check_offset_pairs",
    "check_bits_per_byte",
    "reference_uld_term",
    "check_uld_term",
    "check_prediction",
    "compare_prediction",
    "check_shuffle",
    "check_paired_interval",
    "READING_INTERVAL",
    "READING_STATEMENTS",
    "READING_REASONS",
    "check_interval_reading",
]

#: Exercise: the same text cut by two tokenizers, as (token, (start, end)) character spans.
#: The teacher is byte-level: "é" (2 UTF-8 bytes) is two tokens that both cover character 3.
EX1_TEXT = "café au lait"
EX1_STUDENT = [("ca", (0, 2)), ("fé", (2, 4)), (" au", (4, 7)), (" la", (7, 10)), ("it", (10, 12))]
EX1_TEACHER = [("caf", (0, 3)), ("\\xc3", (3, 4)), ("\\xa9", (3, 4)), (" a", (4, 6)), ("u", (6, 7)),
               (" lait", (7, 12))]

#: Exercise: a model's total negative log-likelihood (nats, natural log) of this text.
EX2_TEXT = "naïve café 🙂"
EX2_NLL_NATS = 25.0


def _pairs_of(student, teacher) -> list[tuple[int, int]]:
    """The offset pairing of two span lists (what the by-hand exercise asks for)."""
    s = torch.tensor([[list(o) for _, o in student]])
    t = torch.tensor([[list(o) for _, o in teacher]])
    return offset_pairing(s, t).pairs(0)


def check_offset_pairs(answer) -> Feedback:
    """By hand: ``answer`` is a dict {student position: teacher position} of every offset-aligned pair."""
    if answer is None:
        return Feedback(False, "Replace None with a dict such as {0: 1, 2: 5}, then run the cell again.")
    if not isinstance(answer, dict):
        return Feedback(False, f"The answer should be a dict {{student position: teacher position}}, got "
                               f"{type(answer).__name__}.")
    try:
        given = {int(k): int(v) for k, v in answer.items()}
    except (TypeError, ValueError):
        return Feedback(False, "Keys and values should be integer positions (0 is the first token).")
    truth = dict(_pairs_of(EX1_STUDENT, EX1_TEACHER))
    ns, nt = len(EX1_STUDENT), len(EX1_TEACHER)
    bad_range = [k for k, v in given.items() if not (0 <= k < ns and 0 <= v < nt)]
    if bad_range:
        return Feedback(False, f"Student positions go from 0 to {ns - 1} and teacher positions from 0 to {nt - 1}; "
                               f"check the entry for student position {bad_range[0]}.")
    if ns - 1 in given:
        return Feedback(False, "The last student token predicts text outside the example: it has no pair.")
    if 1 in given.values():
        return Feedback(False, "Teacher position 1 ends in the middle of 'é' (its first byte): the text it "
                               "predicts starts inside a character, so no student position can share it.")
    wrong = sorted(k for k in given if k in truth and given[k] != truth[k])
    extra = sorted(k for k in given if k not in truth)
    missing = sorted(k for k in truth if k not in given)
    if wrong:
        return Feedback(False, f"Student position {wrong[0]} is paired with the wrong teacher position: pair the "
                               "positions whose *next* tokens start at the same character.")
    if extra:
        return Feedback(False, f"Student position {extra[0]} has no partner: no teacher position predicts text "
                               "starting at the same character.")
    if missing:
        return Feedback(False, f"{len(missing)} pair(s) are missing.")
    return Feedback(True, f"Right: {len(truth)} pairs; the other positions are masked out of the ULD term.")


def check_bits_per_byte(answer) -> Feedback:
    """By hand: bits per byte of :data:`EX2_TEXT` given :data:`EX2_NLL_NATS`."""
    x = as_number(answer)
    if isinstance(x, Feedback):
        return x
    n_bytes = len(EX2_TEXT.encode("utf-8"))
    truth = EX2_NLL_NATS / math.log(2) / n_bytes

    def close(a, b):
        return abs(a - b) <= 1e-3 * abs(b)

    if close(x, truth):
        return Feedback(True, "Right: nats → bits (divide by ln 2), then per UTF-8 byte.")
    if close(x, EX2_NLL_NATS / math.log(2) / len(EX2_TEXT)):
        return Feedback(False, "You divided by the number of characters; bits per *byte* counts UTF-8 bytes "
                               "(ï, é and the emoji take more than one byte).")
    if close(x, EX2_NLL_NATS / n_bytes):
        return Feedback(False, "That is nats per byte: the NLL is in nats (natural log), convert it to bits.")
    if close(x, EX2_NLL_NATS * math.log(2) / n_bytes):
        return Feedback(False, "Check the conversion: bits = nats / ln 2, not nats × ln 2.")
    return Feedback(False, "Not quite (the checker accepts 0.1 % relative error): total NLL in bits divided by the "
                           "number of UTF-8 bytes of the text.")


# --------------------------------------------------------------------------- the ULD term of a training step
def reference_uld_term(student_logits, teacher_logits, pairs) -> torch.Tensor:
    """The kit's ULD term of a step: the mean over the pairs of ULD between the two softmaxes at the paired rows."""
    return uld_loss(student_logits[pairs.sample, pairs.student], teacher_logits[pairs.sample, pairs.teacher])


def _term_case(seed: int):
    """Random logits of two vocabularies and a few offset pairs (some samples with more pairs than others)."""
    g = torch.Generator().manual_seed(seed)
    s = (2 * torch.randn(3, 9, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    t = (2 * torch.randn(3, 9, 8, generator=g, dtype=torch.float64)).requires_grad_(True)
    pairs = PositionPairs(torch.tensor([0, 0, 0, 1, 2, 2]), torch.tensor([1, 2, 5, 0, 3, 6]),
                          torch.tensor([2, 4, 8, 0, 3, 7]))
    return s, t, pairs


def _sorted_l1_rows(a, b, descending=True, softmax=True):
    """Sorted L1 of rows a (N, m) and b (N, n) zero-padded to one length (diagnoses of a student's ULD)."""
    if softmax:
        a, b = torch.softmax(a, -1), torch.softmax(b, -1)
    n = max(a.shape[-1], b.shape[-1])
    a = torch.nn.functional.pad(a.sort(-1, descending=descending).values, (0, n - a.shape[-1]))
    b = torch.nn.functional.pad(b.sort(-1, descending=descending).values, (0, n - b.shape[-1]))
    return (a - b).abs().sum(-1)


def check_uld_term(fn) -> Feedback:
    """Implement: ``fn(student_logits, teacher_logits, pairs)`` -> the step's ULD term (a 0-d tensor).

    ``student_logits`` (B, L_S, V_S), ``teacher_logits`` (B, L_T, V_T), ``pairs`` a
    :class:`~uldviz.train.objectives.PositionPairs` (``sample``, ``student``, ``teacher`` index tensors): the mean
    over the pairs of ULD between the softmax of the student's row and the teacher's. Checked against
    :func:`reference_uld_term` on random inputs, values and gradients; the teacher must get no gradient.
    """
    if fn is None or not callable(fn):
        return Feedback(False, "Define my_uld_term(student_logits, teacher_logits, pairs) and pass the function in.")
    if fn is reference_uld_term:
        return Feedback(False, "That is the kit's own function: write yours (you may use uld_loss for one row).")
    for seed in (0, 1):
        s, t, pairs = _term_case(seed)
        got = call_student(fn, s, t, pairs, where="random logits with 6 pairs")
        if isinstance(got, Feedback):
            return got
        want = reference_uld_term(s, t, pairs)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            return Feedback(False, "Return one number for the whole step (a 0-d tensor): the mean over the pairs.")
        got = got.reshape(())
        rows_s, rows_t = s[pairs.sample, pairs.student], t[pairs.sample, pairs.teacher]
        per_row = _sorted_l1_rows(rows_s, rows_t)
        diagnoses = [
            (per_row.sum(), "That is the sum over the pairs; the term is their mean (so λ does not depend on how "
                            "many pairs a batch has)."),
            (_sorted_l1_rows(s[pairs.sample, pairs.teacher], t[pairs.sample, pairs.student]).mean(),
             "The indices are swapped: pairs.student indexes the student's rows, pairs.teacher the teacher's."),
            (_sorted_l1_rows(rows_s, rows_t, softmax=False).mean(), "ULD compares probabilities: take the softmax "
                                                                     "of each row first."),
            (_sorted_l1_rows(rows_s, rows_t, descending=False).mean(), "Sort in decreasing order before padding "
                                                                        "with zeros: the largest values are compared "
                                                                        "with each other."),
            ((torch.nn.functional.pad(torch.softmax(rows_s, -1), (0, 2)) - torch.softmax(rows_t, -1)).abs().sum(-1)
             .mean(), "Sort each distribution before subtracting: ULD compares the k-th largest with the k-th "
                      "largest, not token id with token id."),
        ]
        if not torch.allclose(got, want, rtol=1e-6, atol=1e-9):
            for value, message in diagnoses:
                if torch.allclose(got.detach(), value.detach(), rtol=1e-6, atol=1e-9):
                    return Feedback(False, message)
            return Feedback(False, "The value differs from the mean over the pairs of ULD(softmax(student row), "
                                   "softmax(teacher row)); check the indexing rows[pairs.sample, pairs.student].")
        if not got.requires_grad:
            return Feedback(False, "The value is right but no gradient flows to the student: use torch operations.")
        grads = torch.autograd.grad(got, (s, t), allow_unused=True)
        (g_want,) = torch.autograd.grad(want, s)
        if grads[1] is not None and grads[1].abs().max() > 0:
            return Feedback(False, "The value is right but a gradient reaches the teacher: it is a fixed target "
                                   "(detach its logits).")
        if grads[0] is None or not torch.allclose(grads[0], g_want, rtol=1e-6, atol=1e-9):
            return Feedback(False, "The value is right but the student's gradient is not: avoid detaching or "
                                   "in-place tricks on the student's side.")
    return Feedback(True, "Right, values and gradients on two random batches: the notebook uses your function in "
                          "the next cell.")


# --------------------------------------------------------------------------- predict before the live run
def check_prediction(prediction, runs) -> Feedback:
    """Predict: ``prediction`` ranks the live ``runs`` from best (lowest test bits per byte) to worst."""
    return check_ranking(prediction, runs)


def compare_prediction(prediction, scores: dict) -> Feedback:
    """After the run: the ranking predicted against the live one (``scores``: run -> test bits per byte)."""
    return compare_ranking(prediction, scores, note="one seed on one setting: the shipped results below have five "
                                                     "or more, judged with intervals.")


# --------------------------------------------------------------------------- the controls
def check_shuffle(fn) -> Feedback:
    """Implement: ``fn(teacher_rows, mask, generator)`` must permute the rows at ``mask`` among themselves.

    Checked on random inputs: same shape, unmasked rows unchanged, the multiset of masked rows kept exactly,
    most masked positions now holding another row, and no error on a batch with a single masked row.
    """
    if fn is None or not callable(fn):
        return Feedback(False, "Define a function my_shuffle(teacher_rows, mask, generator) and pass it in.")
    x = torch.randn(3, 6, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    try:
        y = fn(x.clone(), mask, torch.Generator().manual_seed(0))
    except Exception as err:  # noqa: BLE001 - the learner's code: report, do not crash
        return Feedback(False, f"Your function raised {type(err).__name__}: {err}")
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        return Feedback(False, f"Return a tensor of the same shape {tuple(x.shape)}.")
    if not torch.equal(y[~mask], x[~mask]):
        return Feedback(False, "Padding rows (mask False) must stay where they are: they are not pairs.")
    if sorted(map(tuple, y[mask].tolist())) != sorted(map(tuple, x[mask].tolist())):
        return Feedback(False, "The masked rows must be the same rows, only in another order (a permutation): "
                               "the control keeps every teacher distribution, it only moves them.")
    moved = float((y[mask] != x[mask]).any(-1).float().mean())
    if moved == 0:
        return Feedback(False, "Every row is still where it was: the control must give each paired position the "
                               "teacher row of another position (a random permutation of the masked rows).")
    if moved < 0.5:
        return Feedback(False, f"Only {moved:.0%} of the pairs changed: draw one random permutation of all the "
                               "masked rows of the batch, not of a few of them.")
    return Feedback(True, f"Right: {moved:.0%} of the pairs now meet another position's teacher distribution, "
                          "and the set of distributions (their confidence profile) is unchanged.")


# --------------------------------------------------------------------------- the paired interval
#: Fixed cases of :func:`check_paired_interval`: (a, b, level); 5 and 10 seeds, a wide and a narrow level.
_INTERVAL_CASES = [
    ([2.90, 2.95, 2.88, 2.91, 2.93], [2.91, 2.94, 2.90, 2.92, 2.95], 0.95),
    ([2.40, 2.90, 2.60, 3.10, 2.70], [2.46, 2.94, 2.63, 3.16, 2.77], 0.99),
    ([1.70, 1.73, 1.69, 1.75, 1.71, 1.72, 1.74, 1.70, 1.73, 1.71],
     [1.72, 1.74, 1.72, 1.74, 1.73, 1.72, 1.77, 1.71, 1.73, 1.74], 0.9975),
]


def _wrong_intervals(a, b, level) -> list[tuple[tuple[float, float], str]]:
    """Typical wrong intervals for one case, each with the message that names the mistake."""
    d = [x - y for x, y in zip(a, b)]
    n, mean = len(d), statistics.fmean(d)
    sd, pop = statistics.stdev(d), statistics.pstdev(d)
    t = t_quantile(0.5 + level / 2, n - 1)
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2)
    unpaired = math.sqrt(statistics.variance(a) / n + statistics.variance(b) / n)

    def iv(half):
        return (mean - half, mean + half)

    return [
        (iv(z * sd / math.sqrt(n)), "You used the normal quantile; with n − 1 degrees of freedom take Student's t "
                                     "(t_quantile): with 5 seeds it is much wider."),
        (iv(t * pop / math.sqrt(n)), "Use the sample standard deviation of the differences (divide by n − 1)."),
        (iv(t * unpaired), "That is the interval for independent runs (sqrt(var a / n + var b / n)); the runs share "
                           "seeds and windows, so use the standard deviation of the per-seed differences."),
        (iv(t_quantile(0.5 + level / 2, n) * sd / math.sqrt(n)), "Student's t has n − 1 degrees of freedom, not n."),
        (iv(t_quantile(level, n - 1) * sd / math.sqrt(n)), "A two-sided interval at confidence c cuts (1 − c)/2 from "
                                                            "each tail: the quantile is at 0.5 + c/2, not at c."),
        (iv(t * sd / n), "The standard error of a mean divides the standard deviation by √n, not by n."),
        (iv(t * sd), "The interval is for the MEAN difference: divide the standard deviation by √n."),
    ]


def check_paired_interval(fn) -> Feedback:
    """Derive and implement: ``fn(a, b, level)`` -> (low, high), Student's interval for the mean of a_i − b_i.

    Checked against :meth:`uldviz.maths.stats.PairedDifference.interval` on fixed cases (5 and 10 seeds, three
    confidence levels); each typical mistake (z for t, n for n − 1, unpaired variance, one-sided quantile, n for √n)
    gets its own message.
    """
    if fn is None or not callable(fn):
        return Feedback(False, "Define my_paired_interval(a, b, level) returning (low, high) and pass it in.")
    for a, b, level in _INTERVAL_CASES:
        got = call_student(fn, list(a), list(b), level, where=f"{len(a)} seeds at confidence {level}")
        if isinstance(got, Feedback):
            return got
        try:
            lo, hi = (float(x) for x in got)
        except (TypeError, ValueError):
            return Feedback(False, "Return two numbers: (low, high).")
        want = paired_difference(a, b).interval(level)

        def close(u, v):
            return abs(u[0] - v[0]) <= 1e-6 and abs(u[1] - v[1]) <= 1e-6

        if close((lo, hi), want):
            continue
        if close((hi, lo), want):
            return Feedback(False, "The two ends are swapped: return (low, high).")
        for wrong, message in _wrong_intervals(a, b, level):
            if close((lo, hi), wrong):
                return Feedback(False, message)
        if abs((lo + hi) / 2 - statistics.fmean(x - y for x, y in zip(a, b))) > 1e-6:
            return Feedback(False, "The interval should be centred on the mean of the per-seed differences a_i − b_i.")
        return Feedback(False, f"Not quite on {len(a)} seeds at confidence {level} (the checker allows 1e-6): "
                               "mean ± t · s_d / √n, t at 0.5 + level/2 with n − 1 degrees of freedom.")
    return Feedback(True, "Right on all three cases: the mean of the per-seed differences ± Student's t (n − 1 "
                          "degrees of freedom) times their standard error. The notebook draws its verdicts with it.")


# --------------------------------------------------------------------------- what an interval licenses
#: The interval the reading exercise is about: a − b at its Holm level, undecided.
READING_INTERVAL = {"a": "uld-offset", "b": "uld-shuffled", "low": -0.027, "high": 0.015, "confidence": 0.994}
#: Statements about it: is each licensed by the interval?
READING_STATEMENTS = {
    "S1": "ULD has no effect on this student: offset pairing and a shuffled teacher train it equally well.",
    "S2": "If the right teacher helps here at all, it lowers test bits per byte by at most 0.027 relative to the "
          "shuffled one (at this confidence).",
    "S3": "The right teacher would not beat a shuffled one for a larger, pretrained student on the paper's task "
          "data either.",
    "S4": "These seeds cannot tell whether the right teacher is slightly better or slightly worse than a shuffled one.",
}
#: The reasons to choose from.
READING_REASONS = {
    "a": "the interval holds differences of both signs",
    "b": "the interval's ends bound how large the difference can be, at its confidence",
    "c": "not finding a difference is not showing that there is none",
    "d": "the runs were made in one setting (model sizes, text, steps) only",
}
_READING_TRUTH = {"S1": ("no", "c"), "S2": ("yes", "b"), "S3": ("no", "d"), "S4": ("yes", "a")}
_READING_HINT = {
    "S1": "an interval that contains 0 also contains differences of up to its ends",
    "S2": "read the interval's lower end: what is the largest gain it allows?",
    "S3": "what did the runs vary, and what did they keep fixed?",
    "S4": "look at the signs of the two ends",
}


def check_interval_reading(answers) -> Feedback:
    """Interpret: ``answers`` maps each of :data:`READING_STATEMENTS` to ("yes" or "no", a reason letter).

    "yes": the interval licenses the statement; the reason (from :data:`READING_REASONS`) says why or why not. Only
    a statement with the right answer AND the right reason counts; the first one that does not gets a hint.
    """
    if answers is None:
        return Feedback(False, "Replace None with a dict such as {\"S1\": (\"yes\", \"a\"), ...} for S1 to S4.")
    if not isinstance(answers, dict) or set(answers) != set(READING_STATEMENTS):
        return Feedback(False, f"Give a dict with exactly the keys {', '.join(READING_STATEMENTS)}.")
    right = 0
    first_wrong = None
    for key, (verdict, reason) in _READING_TRUTH.items():
        try:
            v, r = answers[key]
        except (TypeError, ValueError):
            return Feedback(False, f"{key}: give a pair (\"yes\" or \"no\", a reason letter).")
        v, r = str(v).strip().lower(), str(r).strip().lower().strip(".)")
        if v not in ("yes", "no") or r not in READING_REASONS:
            return Feedback(False, f"{key}: the first item is \"yes\" or \"no\", the second one of the letters "
                                   f"{', '.join(READING_REASONS)}.")
        if (v, r) == (verdict, reason):
            right += 1
        elif first_wrong is None:
            first_wrong = (key, v == verdict)
    if first_wrong is None:
        return Feedback(True, "Right: an undecided interval bounds the difference (both ways) at its confidence; it "
                              "does not show that there is none, and it speaks for the setting it was measured in "
                              "only.")
    key, verdict_ok = first_wrong
    what = "the answer is right but not the reason" if verdict_ok else "reconsider whether it is licensed"
    return Feedback(False, f"{right} of 4 right. {key}: {what} — {_READING_HINT[key]}.")
