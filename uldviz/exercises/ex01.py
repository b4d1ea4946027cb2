"""Self-checking exercises of notebook 01 (why KL breaks across tokenizers).

Each ``check_*`` function returns a :class:`~uldviz.exercises._core.Feedback`: it says "right",
or what is wrong (too small, wrong log base, wrong direction, forgot to sort, ...), never the
answer itself. The exercise data are module constants so the notebook prints them from here.
"""

from __future__ import annotations

import math

from ..losses import kl_divergence
from ..vocab import aligned_probs, check_distribution, smoothed_kl, toy_pair, uld
from ._core import Feedback, as_number

__all__ = [
    "EX1_TEACHER",
    "EX1_STUDENT",
    "EX2_TARGET",
    "EX3_TEACHER",
    "EX3_STUDENT",
    "EX4_TEACHER",
    "EX4_STUDENT_TOKENS",
    "check_kl_by_hand",
    "check_epsilon",
    "check_uld_prediction",
    "check_blind_spot",
]

#: Exercise 1: one shared vocabulary, compute KL(p_T || p_S) by hand (natural log).
EX1_TEACHER = {"dog": 0.5, "cat": 0.3, "bird": 0.2}
EX1_STUDENT = {"dog": 0.25, "cat": 0.25, "bird": 0.5}
#: Exercise 2: find an ε whose smoothed KL of the toy pair exceeds this many nats.
EX2_TARGET = 10.0
#: Exercise 3: predict ULD (the student is listed in its own id order, not sorted).
EX3_TEACHER = {"dog": 0.6, "cat": 0.3, "moon": 0.1}
EX3_STUDENT = {"dog": 0.25, "sun": 0.5, "bird": 0.1, "cat": 0.15}
#: Exercise 4: a student over these tokens with ULD 0 to EX4_TEACHER but another favourite token.
EX4_TEACHER = {"dog": 0.6, "cat": 0.3, "moon": 0.1}
EX4_STUDENT_TOKENS = ("dog", "cat", "sun")


def _close(a: float, b: float, rel: float = 2e-3, abs_: float = 5e-4) -> bool:
    """Equal up to rounding a student may do by hand."""
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def _kl(p: dict, q: dict, log=math.log) -> float:
    """KL(p || q) on one vocabulary with a chosen logarithm (for diagnosing wrong answers)."""
    return sum(p[t] * log(p[t] / q[t]) for t in p if p[t] > 0)


# --------------------------------------------------------------------------- exercise 1
def check_kl_by_hand(answer) -> Feedback:
    """Exercise 1: KL(EX1_TEACHER || EX1_STUDENT) in nats, computed by hand."""
    x = as_number(answer, "Your KL")
    if isinstance(x, Feedback):
        return x
    p, q = aligned_probs(EX1_TEACHER, EX1_STUDENT)
    truth = float(kl_divergence(q.log(), p.log()))
    if math.isnan(x) or math.isinf(x):
        return Feedback(False, "Both models share the vocabulary and give every token some probability: "
                               "KL is finite here.")
    if _close(x, truth):
        return Feedback(True, "Right: that is KL(p_T ‖ p_S) in nats, the value uldviz.losses.kl_divergence gives.")
    if x < 0:
        return Feedback(False, "KL is never negative (Gibbs' inequality). Did you forget to weight each log ratio "
                               "by the teacher's probability, or flip the ratio?")
    if _close(x, _kl(EX1_TEACHER, EX1_STUDENT, math.log2)):
        return Feedback(False, "That is the value in bits: you used log base 2? The loss uses the natural log (nats).")
    if _close(x, _kl(EX1_TEACHER, EX1_STUDENT, math.log10)):
        return Feedback(False, "You used log base 10? The loss uses the natural log (nats).")
    if _close(x, _kl(EX1_STUDENT, EX1_TEACHER)):
        return Feedback(False, "You computed KL(p_S ‖ p_T): the teacher's probabilities weight the log "
                               "ratios and sit on top of the ratio: sum p_T · log(p_T / p_S).")
    return Feedback(False, "Too small: recheck each term p_T · log(p_T / p_S)." if x < truth
                    else "Too large: recheck each term p_T · log(p_T / p_S).")


# --------------------------------------------------------------------------- exercise 2
def check_epsilon(eps, target: float = EX2_TARGET) -> Feedback:
    """Exercise 2: an ε > 0 whose ε-smoothed KL of the toy pair exceeds ``target`` nats."""
    e = as_number(eps, "ε")
    if isinstance(e, Feedback):
        return e
    if not math.isfinite(e) or e <= 0:
        return Feedback(False, "ε must be a finite number > 0 (with ε = 0 there is no patch: KL is inf).")
    teacher, student = toy_pair()
    kl = smoothed_kl(teacher, student, e)
    if kl > target:
        return Feedback(True, f"Right: with ε = {e:.3g} the smoothed KL is {kl:.3g} nats > {target:g}. "
                              "Same two models, and the 'distance' is whatever ε you pick.")
    hint = " (ε ≥ 1 is not a small correction any more)" if e >= 1 else ""
    return Feedback(False, f"Not yet: with ε = {e:.3g}{hint} the smoothed KL is {kl:.3g} nats, not above "
                           f"{target:g}. Look at the KL-against-ε plot: which way must ε move?")


# --------------------------------------------------------------------------- exercise 3
def _l1_by_name(p: dict, q: dict) -> float:
    """L1 on the union of token strings (the mistake of comparing tokens by name)."""
    return sum(abs(p.get(t, 0.0) - q.get(t, 0.0)) for t in list(p) + [t for t in q if t not in p])


def _padded(p: dict, q: dict, sort: bool) -> tuple[list[float], list[float]]:
    """Both value lists, zero-padded to one length, sorted descending or in id order."""
    a, b = list(p.values()), list(q.values())
    if sort:
        a, b = sorted(a, reverse=True), sorted(b, reverse=True)
    n = max(len(a), len(b))
    return a + [0.0] * (n - len(a)), b + [0.0] * (n - len(b))


def check_uld_prediction(answer) -> Feedback:
    """Exercise 3: ULD(EX3_TEACHER, EX3_STUDENT), predicted by hand."""
    x = as_number(answer, "Your ULD")
    if isinstance(x, Feedback):
        return x
    truth = uld(EX3_TEACHER, EX3_STUDENT)
    if not math.isfinite(x):
        return Feedback(False, "ULD is always finite: it is a sum of differences between probabilities.")
    if _close(x, truth, rel=1e-3, abs_=1e-3):
        return Feedback(True, "Right: sort both, pad the shorter with zeros, sum the absolute differences.")
    if x < 0:
        return Feedback(False, "ULD is a sum of absolute values: it cannot be negative.")
    ps, qs = _padded(EX3_TEACHER, EX3_STUDENT, sort=True)
    pu, qu = _padded(EX3_TEACHER, EX3_STUDENT, sort=False)
    k = min(len(EX3_TEACHER), len(EX3_STUDENT))
    checks = [
        (_l1_by_name(EX3_TEACHER, EX3_STUDENT), "You compared tokens by name. ULD ignores the names: it sorts each "
                                               "distribution and compares the i-th largest with the i-th largest."),
        (sum(abs(a - b) for a, b in zip(pu, qu)), "You compared the probabilities in id order. Sort each "
                                                  "distribution in decreasing order first."),
        (sum(abs(a - b) for a, b in zip(ps[:k], qs[:k])), "You dropped the extra token of the larger vocabulary. "
                                                          "Pad the shorter list with zeros instead."),
        (truth / 2, "That is half of it (the total variation). ULD is the full sum of |differences|."),
        (sum((a - b) ** 2 for a, b in zip(ps, qs)), "You squared the differences: ULD sums absolute values."),
    ]
    for value, message in checks:
        if _close(x, value, rel=1e-3, abs_=1e-3):
            return Feedback(False, message)
    return Feedback(False, "Too small: check every rank, including the zero-padded one." if x < truth
                    else "Too large: did you sort both distributions before subtracting?")


# --------------------------------------------------------------------------- exercise 4
def check_blind_spot(student) -> Feedback:
    """Exercise 4: a student over EX4_STUDENT_TOKENS with ULD 0 to EX4_TEACHER but a different favourite token."""
    if student is None:
        return Feedback(False, "Replace None with your answer, then run the cell again.")
    if not isinstance(student, dict):
        return Feedback(False, f"Give a dict {{token: probability}} over {list(EX4_STUDENT_TOKENS)}.")
    if set(student) != set(EX4_STUDENT_TOKENS):
        return Feedback(False, f"Use exactly the student's vocabulary {list(EX4_STUDENT_TOKENS)}, got {list(student)}.")
    try:
        q = check_distribution(student, "student")
    except (TypeError, ValueError) as exc:
        return Feedback(False, f"Not a probability distribution: {exc}.")
    d = uld(EX4_TEACHER, q)
    if d > 1e-9:
        return Feedback(False, f"ULD is {d:.3g}, not 0. ULD only looks at the sorted values: which values must "
                               "the student's probabilities take?")
    fav_t = max(EX4_TEACHER, key=EX4_TEACHER.get)
    fav_s = max(q, key=q.get)
    if fav_s == fav_t:
        return Feedback(False, f"ULD is 0, but the student's favourite is '{fav_s}', like the teacher's. "
                               "Make it prefer another token while keeping ULD at 0.")
    return Feedback(True, f"Right: ULD = 0 although the student bets most on '{fav_s}' and the teacher on "
                          f"'{fav_t}'. That is the blind spot notebook 02 explains.")
