"""Self-checking exercises of notebook 03 (the live mini-distillation).

Each ``check_*`` function returns a :class:`~uldviz.exercises._core.Feedback`: "right", or what
is wrong (which position, counted characters instead of bytes, forgot ln 2, sign, percent...),
never the answer itself. The exercise data are module constants so the notebook prints them.
"""

from __future__ import annotations

import math

import torch

from uldviz.alignment.positions import offset_pairing
from uldviz.distill.protocol import compare, kl_share
from uldviz.exercises._core import Feedback, as_number

__all__ = [
    "EX1_TEXT",
    "EX1_STUDENT",
    "EX1_TEACHER",
    "EX2_TEXT",
    "EX2_NLL_NATS",
    "check_offset_pairs",
    "check_bits_per_byte",
    "check_kl_share",
    "check_shuffle",
    "check_paired_std",
    "CONTROL_CHOICES",
    "check_control_reading",
]

#: Exercise 1: the same text cut by two tokenizers, as (token, (start, end)) character spans.
#: The teacher is byte-level: "é" (2 UTF-8 bytes) is two tokens that both cover character 3.
EX1_TEXT = "café au lait"
EX1_STUDENT = [("ca", (0, 2)), ("fé", (2, 4)), (" au", (4, 7)), (" la", (7, 10)), ("it", (10, 12))]
EX1_TEACHER = [("caf", (0, 3)), ("\\xc3", (3, 4)), ("\\xa9", (3, 4)), (" a", (4, 6)), ("u", (6, 7)),
               (" lait", (7, 12))]

#: Exercise 2: a model's total negative log-likelihood (nats, natural log) of this text.
EX2_TEXT = "naïve café 🙂"
EX2_NLL_NATS = 25.0


def _pairs_of(student, teacher) -> list[tuple[int, int]]:
    """The offset pairing of two span lists (what exercise 1 asks for)."""
    s = torch.tensor([[list(o) for _, o in student]])
    t = torch.tensor([[list(o) for _, o in teacher]])
    return offset_pairing(s, t).pairs(0)


def check_offset_pairs(answer) -> Feedback:
    """Exercise 1: ``answer`` is a dict {student position: teacher position} of every offset-aligned pair."""
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
    """Exercise 2: bits per byte of :data:`EX2_TEXT` given :data:`EX2_NLL_NATS`."""
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
    return Feedback(False, "Not quite: total NLL in bits divided by the number of UTF-8 bytes of the text.")


def check_kl_share(answer, bpb: dict, uld_run: str = "uld-offset") -> Feedback:
    """Exercise 3: the share (a fraction, not percent) of the KL gain that ``uld_run`` recovers in ``bpb``."""
    x = as_number(answer)
    if isinstance(x, Feedback):
        return x
    missing = [k for k in ("ce", "ce-same", "kl-same", uld_run) if k not in bpb]
    if missing:
        return Feedback(False, f"This table cannot be checked: it has no run {missing[0]!r}.")
    truth = kl_share(bpb, uld_run)
    if not math.isfinite(truth):
        return Feedback(False, "In this table KL did not beat its CE run, so there is no gain to share.")

    def close(a, b):
        return abs(a - b) <= 1e-3 * max(abs(b), 1e-3)

    if close(x, truth):
        return Feedback(True, "Right: the gain of ULD over CE, as a fraction of the gain of KL over CE with one "
                              "shared tokenizer.")
    if close(x, 100 * truth):
        return Feedback(False, "That looks like a percentage: give the fraction (e.g. 0.25, not 25).")
    if close(x, -truth):
        return Feedback(False, "The sign is flipped: a gain is CE's bits per byte minus the distilled run's.")
    if close(x, 1 / truth if truth else float("inf")):
        return Feedback(False, "Upside down: divide ULD's gain by KL's gain.")
    return Feedback(False, "Not quite: compare each distilled run with the CE-only run *of its own tokenizer*.")


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
    if moved < 0.5:
        return Feedback(False, f"Only {moved:.0%} of the pairs changed: permute across the whole batch, not "
                               "within a tiny window.")
    return Feedback(True, f"Right: {moved:.0%} of the pairs now meet another position's teacher distribution, "
                          "and the set of distributions (their confidence profile) is unchanged.")


def check_paired_std(answer, a_values, b_values) -> Feedback:
    """Derive: the sample std of the per-seed differences a_i − b_i (same seeds, same windows)."""
    x = as_number(answer)
    if isinstance(x, Feedback):
        return x
    seeds = list(range(len(a_values)))
    truth = compare(list(a_values), list(b_values), seeds, seeds)["paired_std"]
    diffs = [p - q for p, q in zip(a_values, b_values)]
    pop = math.sqrt(sum((d - sum(diffs) / len(diffs)) ** 2 for d in diffs) / len(diffs))
    unpaired = math.sqrt(_var(a_values) + _var(b_values))
    if abs(x - truth) <= 1e-3 * max(truth, 1e-4):
        return Feedback(True, f"Right: the paired std is {truth:.4f}; the unpaired std of the difference would be "
                              f"{unpaired:.4f} — pairing by seed removes the noise both runs share.")
    if abs(x - pop) <= 1e-3 * max(pop, 1e-4):
        return Feedback(False, "Use the sample standard deviation (divide by n − 1), as the tables do.")
    if abs(x - unpaired) <= 1e-3 * max(unpaired, 1e-4):
        return Feedback(False, "That is sqrt(var a + var b), the std for independent runs; the runs share seeds "
                               "and windows, so take the std of the per-seed differences.")
    return Feedback(False, "Not quite: form d_i = a_i − b_i seed by seed, then the sample std of the d_i.")


def _var(v) -> float:
    m = sum(v) / len(v)
    return sum((x - m) ** 2 for x in v) / (len(v) - 1)


#: Interpret: what would ``uld-shuffled ≈ uld-offset`` (within noise) mean?
CONTROL_CHOICES = {
    "a": "The teacher transfers knowledge of THIS context: ULD teaches which continuation fits here.",
    "b": "ULD's effect comes from the teacher's overall confidence profile, which any position's distribution "
         "carries: a regulariser, not context-specific knowledge.",
    "c": "The shuffle is broken: a shuffled teacher must always make the student worse.",
    "d": "Offset pairing is wrong and positional pairing should be used instead.",
}


def check_control_reading(choice) -> Feedback:
    """Interpret: pick the reading of ``uld-shuffled ≈ uld-offset`` from :data:`CONTROL_CHOICES`."""
    if choice is None:
        return Feedback(False, "Replace None with one letter: " + ", ".join(CONTROL_CHOICES) + ".")
    c = str(choice).strip().lower()
    if c not in CONTROL_CHOICES:
        return Feedback(False, f"Choose one of {', '.join(CONTROL_CHOICES)}.")
    if c == "b":
        return Feedback(True, "Right: a teacher that is right about *some other* position helps as much, so the "
                              "context link carries nothing measurable here; compare with label smoothing.")
    return Feedback(False, {
        "a": "If the context mattered, cutting the link (shuffling) would hurt: equal scores say it does not.",
        "c": "A shuffled teacher keeps the same distributions; it can still regularise, so it need not hurt.",
        "d": "The pairing is a separate question (see positional vs offset); the shuffle cuts *any* pairing.",
    }[c])
