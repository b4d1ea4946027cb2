"""Self-checking exercises of notebook 01 (why KL breaks across tokenizers).

Each ``check_*`` function returns a :class:`~uldviz.exercises._core.Feedback`: it says "right",
or what is wrong (too small, wrong log base, wrong direction, forgot to sort, ...), never the
answer itself. The exercise data are module constants so the notebook prints them from here.
Notation as in :mod:`uldviz.course.notation`: p is the teacher's distribution, q the student's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from uldviz.exercises._core import Feedback, as_number, call_student, choice_feedback
from uldviz.maths.losses import kl_divergence, uld_loss
from uldviz.maths.patches import (
    aligned_probs,
    check_distribution,
    disagreeing_pair,
    smoothed_kl,
    smoothed_kl_gradient,
    toy_pair,
    uld,
)

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
    "check_uld_implementation",
    "check_limit_gradient",
    "EX7_CHOICES",
    "EX7_TEACHER",
    "check_gradient_verdict",
]

#: Exercise 1: one shared vocabulary, compute KL(p || q) by hand (natural log).
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


#: Exercise 1's tolerance: the answer is right when it rounds to the same significant digits as the truth.
EX1_DIGITS = 2
EX1_TOLERANCE = (f"your number and the exact KL are compared after rounding both to {EX1_DIGITS} significant "
                 "digits, so 0.1234 and 0.12 count the same")


def _significant(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` significant digits (0 stays 0)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


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
    if _close(x, truth) or _significant(x, EX1_DIGITS) == _significant(truth, EX1_DIGITS):
        return Feedback(True, "Right: that is KL(p ‖ q) in nats, what uldviz.maths.losses.kl_divergence gives. "
                              f"(Tolerance: {EX1_TOLERANCE}.)")
    if x < 0:
        return Feedback(False, "KL is never negative (Gibbs' inequality). Did you forget to weight each log ratio "
                               "by the teacher's probability, or flip the ratio?")
    if _close(x, _kl(EX1_TEACHER, EX1_STUDENT, math.log2)):
        return Feedback(False, "That is the value in bits: you used log base 2? The loss uses the natural log (nats).")
    if _close(x, _kl(EX1_TEACHER, EX1_STUDENT, math.log10)):
        return Feedback(False, "You used log base 10? The loss uses the natural log (nats).")
    if _close(x, _kl(EX1_STUDENT, EX1_TEACHER)):
        return Feedback(False, "You computed KL(q ‖ p): the teacher's probabilities p weight the log "
                               "ratios and sit on top of the ratio: sum p · log(p / q).")
    return Feedback(False, f"{'Too small' if x < truth else 'Too large'}, beyond the tolerance ({EX1_TOLERANCE}): "
                           "recheck each term p · log(p / q), natural log.")


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


# --------------------------------------------------------------------------- exercise 5 (implement)
#: (leading shape, student vocabulary, teacher vocabulary) of the random batches exercise 5 is checked on.
EX5_CASES = (((2, 3), 5, 8), ((4,), 7, 3), ((1,), 6, 6), ((3, 2), 1, 4))


def _uld_variants(s: torch.Tensor, t: torch.Tensor) -> list[tuple[float, str]]:
    """Values of typical wrong ULD implementations on (s, t), each with what to say about it."""
    q, p = torch.softmax(s, -1), torch.softmax(t, -1)
    n = max(q.shape[-1], p.shape[-1])
    pad = lambda x: torch.nn.functional.pad(x, (0, n - x.shape[-1]))  # noqa: E731
    desc = lambda x: torch.sort(x, -1, descending=True).values  # noqa: E731
    k = min(q.shape[-1], p.shape[-1])
    sorted_l1 = (desc(pad(q)) - desc(pad(p))).abs().sum(-1)
    return [
        (float(sorted_l1.sum()), "You summed over positions: average over them instead (one number, the mean)."),
        (float((pad(q) - pad(p)).abs().sum(-1).mean()), "You compared the probabilities in id order: sort each "
                                                         "distribution in decreasing order first."),
        (float((desc(q)[..., :k] - desc(p)[..., :k]).abs().sum(-1).mean()),
         "You cut the larger vocabulary to the smaller size: zero-pad the smaller one instead, so the mass of "
         "the extra ranks counts."),
        (float(sorted_l1.mean() / 2), "That is half of ULD (the total variation): ULD sums the full |differences|."),
        (float((desc(pad(s)) - desc(pad(t))).abs().sum(-1).mean()), "You sorted the logits: take the softmax first, "
                                                                     "ULD compares probabilities."),
    ]


def check_uld_implementation(fn) -> Feedback:
    """Exercise 5: ``fn(student_logits, teacher_logits)`` must equal :func:`uldviz.maths.losses.uld_loss`, value and
    gradient.

    It is called on random float64 batches of several shapes (:data:`EX5_CASES`), including a student
    vocabulary larger than the teacher's; the teacher must be a constant target (no gradient).
    """
    if fn is None:
        return Feedback(False, "Replace None with your function (e.g. my_uld_loss), then run the cell again.")
    if not callable(fn):
        return Feedback(False, f"Pass the function itself (my_uld_loss, without parentheses), got {type(fn).__name__}.")
    gen = torch.Generator().manual_seed(5)
    for lead, vs, vt in EX5_CASES:
        s = (2 * torch.randn(*lead, vs, generator=gen, dtype=torch.float64)).requires_grad_(True)
        t = (2 * torch.randn(*lead, vt, generator=gen, dtype=torch.float64)).requires_grad_(True)
        where = f"student logits of shape {tuple(s.shape)} and teacher logits of shape {tuple(t.shape)}"
        out = call_student(fn, s, t, where=where)
        if isinstance(out, Feedback):
            return out
        if not isinstance(out, torch.Tensor):
            return Feedback(False, f"Return a torch tensor (keep the computation in torch so gradients flow), "
                                   f"got {type(out).__name__}.")
        if out.numel() != 1:
            if tuple(out.shape) == tuple(lead):
                return Feedback(False, "You returned one value per position: average them into one number.")
            return Feedback(False, f"Return one number (a 0-d tensor), got shape {tuple(out.shape)} on {where}.")
        want = float(uld_loss(s.detach(), t.detach()))
        got = float(out.detach())
        if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            for value, message in _uld_variants(s.detach(), t.detach()):
                if math.isclose(got, value, rel_tol=1e-6, abs_tol=1e-9):
                    return Feedback(False, message + f" (seen on {where})")
            return Feedback(False, f"On {where} your value is {got:.6g}, uld_loss gives {want:.6g}. Check each "
                                   "step: softmax over the last dimension, zero-pad, sort descending, |differences| "
                                   "summed over the vocabulary, mean over positions.")
        if not out.requires_grad:
            return Feedback(False, "The value is right but carries no gradient: did you use .item(), numpy, "
                                   "or torch.no_grad()? Training needs the gradient w.r.t. the student's logits.")
        g_s, g_t = torch.autograd.grad(out, (s, t), allow_unused=True)
        if g_t is not None and g_t.abs().max() > 0:
            return Feedback(False, "The teacher's logits receive a gradient: in distillation the teacher is a fixed "
                                   "target. Detach it (teacher_logits.detach()) before the softmax.")
        leaf = s.detach().clone().requires_grad_(True)
        (want_g,) = torch.autograd.grad(uld_loss(leaf, t.detach()), leaf)
        if g_s is None or not torch.allclose(g_s, want_g, rtol=1e-6, atol=1e-9):
            diff = float("nan") if g_s is None else float((g_s - want_g).abs().max())
            return Feedback(False, f"The value is right but the gradient w.r.t. the student's logits is not (largest "
                                   f"difference {diff:.3g} on {where}). Did part of the computation leave torch?")
    return Feedback(True, f"Right: your ULD equals the kit's uld_loss in value and gradient on {len(EX5_CASES)} "
                          "random batches, student vocabulary smaller, larger and equal to the teacher's.")


# --------------------------------------------------------------------------- exercise 6 (derive)
#: ε at which the checker evaluates the gradient by autograd as the ε → 0 limit.
EX6_EPS = 1e-12


def _ex6_pairs() -> list[tuple[dict, dict]]:
    """The (teacher, student) pairs exercise 6 is checked on: the toy pair, the disagreeing pair, random ones."""
    pairs = [toy_pair(), disagreeing_pair()]
    gen = torch.Generator().manual_seed(6)
    for t_tokens, s_tokens in ((("dog", "cat", "moon", "the"), ("the", "sun", "dog")),
                               (("moon", "star"), ("dog", "cat", "sun"))):
        pt = torch.rand(len(t_tokens), generator=gen, dtype=torch.float64) + 0.1
        ps = torch.rand(len(s_tokens), generator=gen, dtype=torch.float64) + 0.1
        pairs.append(({k: float(v) for k, v in zip(t_tokens, pt / pt.sum())},
                      {k: float(v) for k, v in zip(s_tokens, ps / ps.sum())}))
    return pairs


def _as_gradient(answer, tokens: list[str]) -> "dict[str, float] | Feedback":
    """The student's gradient as {token: float} over the student's tokens, or a Feedback on what is wrong."""
    if isinstance(answer, Mapping):
        extra = [k for k in answer if k not in tokens]
        if extra:
            return Feedback(False, f"Your gradient has entries for {extra}, which the student does not have: the "
                                   "student has no logit for them, so there is nothing to differentiate.")
        missing = [k for k in tokens if k not in answer]
        if missing:
            return Feedback(False, f"Give one value per student token; missing {missing}.")
        values = [answer[k] for k in tokens]
    else:
        try:
            values = [float(v) for v in answer]
        except TypeError:
            return Feedback(False, f"Return a dict {{student token: gradient}}, got {type(answer).__name__}.")
        if len(values) != len(tokens):
            return Feedback(False, f"Give one value per student token {tokens}, got {len(values)} values.")
    out = {}
    for k, v in zip(tokens, values):
        x = as_number(v, f"The gradient for {k!r}")
        if isinstance(x, Feedback):
            return x
        out[k] = x
    return out


def check_limit_gradient(fn) -> Feedback:
    """Exercise 6: ``fn(teacher, student)`` gives the limit as ε → 0 of the gradient of KL_ε w.r.t. the student logits.

    Checked against autograd (:func:`uldviz.maths.patches.smoothed_kl_gradient` at ε = :data:`EX6_EPS`) on the
    toy pair, the disagreeing pair and random pairs, one of them sharing no token with the teacher.
    """
    if fn is None:
        return Feedback(False, "Replace None with your function (e.g. my_limit_gradient), then run the cell again.")
    if not callable(fn):
        return Feedback(False, f"Pass the function itself, without parentheses; got {type(fn).__name__}.")
    for teacher, student in _ex6_pairs():
        where = f"teacher {teacher} and student {student}"
        answer = call_student(fn, dict(teacher), dict(student), where=where)
        if isinstance(answer, Feedback):
            return answer
        got = _as_gradient(answer, list(student))
        if isinstance(got, Feedback):
            return got
        want = smoothed_kl_gradient(teacher, student, EX6_EPS)
        if all(math.isclose(got[k], want[k], abs_tol=1e-6) for k in want):
            continue
        if all(math.isclose(got[k], -want[k], abs_tol=1e-6) for k in want):
            return Feedback(False, "Opposite sign: that is the direction a training step moves the logits (minus the "
                                   "gradient). The exercise asks for the gradient itself.")
        plain = {k: student[k] - teacher.get(k, 0.0) for k in student}
        if all(math.isclose(got[k], plain[k], abs_tol=1e-6) for k in want):
            return Feedback(False, "That is q − p, the gradient of KL on ONE shared vocabulary. Here part of the "
                                   "teacher's mass sits on tokens the student lacks: where does that change the sum "
                                   "over v of p(v) in the derivative of the softmax?")
        worst = max(want, key=lambda k: abs(got[k] - want[k]))
        return Feedback(False, f"Not yet: for {where} your value for {worst!r} is {got[worst]:.4g}, autograd gives "
                               f"{want[worst]:.4g}. Write KL_ε's terms that depend on z, let ε → 0, then use "
                               "∂q(w)/∂z_v = q(w)(δ_wv − q(v)).")
    return Feedback(True, "Right: as ε → 0 the gradient is P·q(v) − p(v), with P the teacher's mass on the "
                          "student's tokens. ε has dropped out, and the teacher's tokens the student lacks only "
                          "enter through P.")


# --------------------------------------------------------------------------- exercise 7 (interpret)
#: The choices of exercise 7: where does training with the ε-smoothed KL take the toy student?
EX7_CHOICES = {
    "A": "dog 0.5, cat 0.3, sun 0.2: the teacher's probabilities, with moon's mass given to sun",
    "B": "dog 0.625, cat 0.375, sun → 0: the teacher renormalised on the tokens both vocabularies have",
    "C": "dog 0.4, cat 0.4, sun 0.2: it stays where it is, since the gradient does not depend on ε",
    "D": "nowhere: the loss grows as ε shrinks, so the steps grow too and training never settles",
}
#: Exercise 7's second teacher: apply your reason to it (the student keeps the vocabulary dog, cat, sun).
EX7_TEACHER = {"dog": 0.2, "cat": 0.1, "moon": 0.7}
_EX7_WHY = {
    "A": "At dog 0.5, cat 0.3, sun 0.2 the gradient is not 0 (try patches.smoothed_kl_gradient on it): the student "
         "is still pushed to lower sun. Nothing ties sun to moon: the student has no logit for moon.",
    "B": "B is the right letter. Training with patch (a) ends at the teacher renormalised on the shared tokens, what "
         "patch (b) compares; the teacher's moon never reaches the student.",
    "C": "The gradient at the current student is not 0 (the curves are away from 0): a training step moves it. "
         "Not depending on ε is not the same as being 0.",
    "D": "The value grows as ε shrinks, but the gradient curves are flat in ε: the steps do not grow, and they "
         "vanish where the gradient is 0.",
}


def _ex7_end(teacher: dict) -> dict:
    """Where patch (a) takes a student over EX4_STUDENT_TOKENS: the zero of exercise 6's P·q − p."""
    mass = sum(teacher.get(v, 0.0) for v in EX4_STUDENT_TOKENS)
    return {v: teacher.get(v, 0.0) / mass for v in EX4_STUDENT_TOKENS}


def check_gradient_verdict(choice, end=None) -> Feedback:
    """Exercise 7: the letter of :data:`EX7_CHOICES` that the measured gradient (and exercise 6) support, and the
    reason applied to a new case: ``end``, where the student over dog, cat, sun ends for :data:`EX7_TEACHER`.

    A letter alone can be guessed in four tries; the end point for another teacher cannot: it is checked by
    the ε → 0 gradient P·q − p, which must vanish there.
    """
    letter = choice_feedback(choice, _EX7_WHY, right="B")
    if not letter.ok:
        return letter
    if end is None:
        return Feedback(False, letter.message + " Now the reason: set my_end to where the same student (dog, cat, "
                                                "sun) ends when the teacher is EX7_TEACHER, then run the cell again.")
    if not isinstance(end, Mapping) or set(end) != set(EX4_STUDENT_TOKENS):
        return Feedback(False, f"my_end should be a dict over the student's tokens {list(EX4_STUDENT_TOKENS)}.")
    values = {}
    for k in EX4_STUDENT_TOKENS:
        x = as_number(end[k], f"my_end[{k!r}]")
        if isinstance(x, Feedback):
            return x
        values[k] = x
    total = sum(values.values())
    if min(values.values()) < 0 or abs(total - 1) > 1e-3:
        return Feedback(False, f"my_end is not a probability distribution (its values sum to {total:.3g}): a "
                               "softmax student always sums to 1. Where does the rest of its mass go?")
    mass = sum(EX7_TEACHER.get(v, 0.0) for v in EX4_STUDENT_TOKENS)
    gradient = {v: mass * values[v] - EX7_TEACHER.get(v, 0.0) for v in EX4_STUDENT_TOKENS}
    if max(abs(g) for g in gradient.values()) < 5e-3:
        return Feedback(True, "Right, and for the right reason: at that point the ε → 0 gradient P·q − p of "
                              "exercise 6 is 0 for every student token, whatever ε. The student copies the teacher on "
                              "the shared tokens, renormalised by P, and the teacher's moon mass is simply lost.")
    if abs(values["sun"] - EX7_TEACHER["moon"]) < 5e-3:
        return Feedback(False, "You gave moon's mass to sun (choice A's reasoning). Nothing in the loss ties sun to "
                               "moon: what does the gradient P·q − p say about sun, which the teacher gives 0?")
    worst = max(gradient, key=lambda v: abs(gradient[v]))
    return Feedback(False, f"At your point the ε → 0 gradient (exercise 6) is not 0: its {worst!r} entry is "
                           f"{gradient[worst]:+.3f}, so training would still move the student. Where does that "
                           "gradient vanish?")
