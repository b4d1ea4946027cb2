"""Toy vocabularies and the patches people try when two models do not share a vocabulary.

A *distribution over a vocabulary* is a plain ``dict`` ``{token string: probability}`` whose key
order is the tokenizer's id order (token id 0 first). The functions here align two such
dictionaries and compute the KL "patches" of notebook 01 with the loss functions of
:mod:`uldviz.maths.losses`, so every number agrees with the core:

- :func:`aligned_kl`: KL on the union of the token strings, zeros where a model lacks a token;
  the raw torch computation (``F.kl_div``) returns ``inf`` or ``NaN``;
- :func:`smoothed_kl`: patch (a), add ε to every union entry and renormalise;
- :func:`intersection_kl`: patch (b), keep the shared strings only and renormalise;
- :func:`blind_id_kl`: patch (c), compare token id i with token id i whatever their strings;
- :func:`uld`: the ULD distance, which needs no alignment at all.

Training uses a loss's *gradient*, not its value: :func:`patch_gradients` gives, for each patch and
for ULD, the gradient with respect to the student's logits, i.e. what one training step would teach.

Notation (:mod:`uldviz.course.notation`): p is the teacher's distribution, q the student's, z the student's logits;
ε is only this module's additive smoothing.

Pure maths: no plotting, no widgets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from uldviz.maths.checks import check_positive
from uldviz.maths.losses import forced_kl_div, kl_divergence, naive_kl_div, uld_distance, uld_loss

__all__ = [
    "TOY_TEACHER",
    "TOY_STUDENT",
    "DISAGREEING_TEACHER",
    "DISAGREEING_STUDENT",
    "toy_pair",
    "disagreeing_pair",
    "check_distribution",
    "normalise",
    "union_vocab",
    "intersection_vocab",
    "aligned_probs",
    "aligned_kl",
    "smooth",
    "smoothed_kl",
    "kl_vs_epsilon",
    "swing_ratio",
    "smoothed_kl_gradient",
    "gradient_vs_epsilon",
    "shared_mass",
    "intersection_kl",
    "PATCH_NAMES",
    "patch_gradients",
    "blind_id_pairs",
    "blind_id_kl",
    "blind_id_agreement",
    "uld",
    "reorder",
    "swap_tokens",
    "format_value",
]

#: The teacher of notebook 01: its vocabulary is {dog, cat, moon} (in this id order).
TOY_TEACHER: dict[str, float] = {"dog": 0.5, "cat": 0.3, "moon": 0.2}
#: The student of notebook 01: its vocabulary is {dog, cat, sun}: "moon" does not exist for it.
TOY_STUDENT: dict[str, float] = {"dog": 0.4, "cat": 0.4, "sun": 0.2}
#: A confident teacher (moon) and a hedging student (sun) whose dog:cat ratio is the same:
#: very different predictions that the intersection patch scores 0.
DISAGREEING_TEACHER: dict[str, float] = {"dog": 0.05, "cat": 0.05, "moon": 0.9}
DISAGREEING_STUDENT: dict[str, float] = {"dog": 0.25, "cat": 0.25, "sun": 0.5}

_TOL = 1e-6


def _clip_rounding(kl: float) -> float:
    """KL is >= 0: a value like -5e-17 is float rounding of an exact 0, shown as 0."""
    return 0.0 if -1e-12 < kl < 0 else kl


def toy_pair() -> tuple[dict[str, float], dict[str, float]]:
    """Fresh copies of the toy (teacher, student) distributions over {dog, cat, moon} and {dog, cat, sun}."""
    return dict(TOY_TEACHER), dict(TOY_STUDENT)


def disagreeing_pair() -> tuple[dict[str, float], dict[str, float]]:
    """Fresh copies of a (teacher, student) pair that predict very differently but agree on dog:cat."""
    return dict(DISAGREEING_TEACHER), dict(DISAGREEING_STUDENT)


# --------------------------------------------------------------------------- validation
def check_distribution(dist, name: str = "distribution", *, tol: float = _TOL) -> dict[str, float]:
    """Validate ``{token: probability}``: string keys, finite non-negative floats summing to 1.

    Returns a new dict of Python floats (key order kept). Raises a ``TypeError``/``ValueError``
    that names the problem, so a wrong input never becomes a silent wrong number.
    """
    if not isinstance(dist, Mapping):
        raise TypeError(f"{name} must be a dict {{token: probability}}, got {type(dist).__name__}")
    if len(dist) == 0:
        raise ValueError(f"{name} is empty: a vocabulary needs at least one token")
    out: dict[str, float] = {}
    for tok, val in dist.items():
        if not isinstance(tok, str):
            raise TypeError(f"{name} has a token {tok!r} that is not a string")
        try:
            v = float(val)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}[{tok!r}] must be a number, got {val!r}") from exc
        if not math.isfinite(v):
            raise ValueError(f"{name}[{tok!r}] is {v}: probabilities must be finite")
        if v < 0:
            raise ValueError(f"{name}[{tok!r}] is {v}: probabilities cannot be negative")
        out[tok] = v
    total = sum(out.values())
    if abs(total - 1.0) > tol:
        raise ValueError(f"{name} sums to {total:.6g}, not 1: normalise it first (uldviz.maths.patches.normalise)")
    return out


def normalise(dist: Mapping[str, float], name: str = "distribution") -> dict[str, float]:
    """Divide non-negative weights by their sum, so that they become probabilities (key order kept)."""
    if not isinstance(dist, Mapping) or len(dist) == 0:
        raise ValueError(f"{name} must be a non-empty dict {{token: weight}}")
    vals = {k: float(v) for k, v in dist.items()}
    if any(not math.isfinite(v) or v < 0 for v in vals.values()):
        raise ValueError(f"{name} has a negative or non-finite weight: {vals}")
    total = sum(vals.values())
    if total <= 0:
        raise ValueError(f"{name} has total weight 0: there is nothing to normalise")
    return {k: v / total for k, v in vals.items()}


# --------------------------------------------------------------------------- aligning by strings
def union_vocab(teacher: Mapping[str, float], student: Mapping[str, float]) -> list[str]:
    """Token strings of either side: the teacher's in its id order, then the student's extra ones."""
    return list(teacher) + [t for t in student if t not in teacher]


def intersection_vocab(teacher: Mapping[str, float], student: Mapping[str, float]) -> list[str]:
    """Token strings both vocabularies contain, in the teacher's id order."""
    return [t for t in teacher if t in student]


def aligned_probs(teacher, student, vocab: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The two distributions as float64 vectors on one label set (default: the union), 0 where a token is missing."""
    p = check_distribution(teacher, "teacher")
    q = check_distribution(student, "student")
    labels = union_vocab(p, q) if vocab is None else list(vocab)
    pv = torch.tensor([p.get(t, 0.0) for t in labels], dtype=torch.float64)
    qv = torch.tensor([q.get(t, 0.0) for t in labels], dtype=torch.float64)
    return pv, qv


def aligned_kl(teacher, student) -> torch.Tensor:
    r"""KL(p ‖ q) on the union of token strings, computed the way naive code does: raw ``F.kl_div``.

    Every token the teacher has and the student lacks contributes :math:`p\log(p/0)=+\infty`;
    a label both give probability 0 contributes :math:`0\cdot(-\infty)=\mathrm{NaN}` in torch.
    """
    p, q = aligned_probs(teacher, student)
    return naive_kl_div(q, p)


# --------------------------------------------------------------------------- patch (a): ε-smoothing
def _check_eps(eps) -> float:
    """ε must be a finite number > 0 (ε = 0 is the unpatched, infinite KL)."""
    return check_positive(eps, "epsilon")


def smooth(probs: torch.Tensor, eps: float) -> torch.Tensor:
    r"""ε-smoothing of a probability vector: :math:`(p_i+\varepsilon)/(1+V\varepsilon)`, no zero left."""
    e = _check_eps(eps)
    return (probs + e) / (1.0 + probs.shape[-1] * e)


def smoothed_kl(teacher, student, eps: float) -> float:
    r"""Patch (a): KL(p^ε ‖ q^ε) on the union vocabulary after ε-smoothing both sides.

    Finite for every ε > 0, but it grows like :math:`p(\text{moon})\ln(1/\varepsilon)`
    as ε shrinks: the number measures your choice of ε as much as the two models.
    """
    p, q = aligned_probs(teacher, student)
    return float(_smoothed_kl(p, q, eps))


def _smoothed_kl(p: torch.Tensor, q: torch.Tensor, eps: float) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p^\varepsilon \| q^\varepsilon)` of two vectors on one label set (differentiable in q)."""
    return kl_divergence(smooth(q, eps).log(), smooth(p, eps).log())


def kl_vs_epsilon(teacher, student, eps_values) -> list[float]:
    """:func:`smoothed_kl` for every ε in ``eps_values`` (for the KL-against-ε plot)."""
    eps_list = [float(e) for e in eps_values]
    if not eps_list:
        raise ValueError("eps_values is empty")
    return [smoothed_kl(teacher, student, e) for e in eps_list]


def swing_ratio(values) -> float:
    """max/min of positive values: how many times the 'same' KL changes over a sweep."""
    vals = [float(v) for v in values]
    if not vals or min(vals) <= 0 or not all(math.isfinite(v) for v in vals):
        raise ValueError("swing_ratio needs finite values > 0")
    return max(vals) / min(vals)


# --------------------------------------------------------------------------- what a training step would teach
def _student_logits(student) -> tuple[list[str], torch.Tensor]:
    r"""The student's tokens and logits :math:`z = \log q` as a float64 leaf that records gradients."""
    q = check_distribution(student, "student")
    zero = [t for t, v in q.items() if v <= 0]
    if zero:
        raise ValueError(f"the student gives probability 0 to {zero}: its logit would be -inf and gradients "
                         "undefined; give every student token some probability")
    z = torch.tensor(list(q.values()), dtype=torch.float64).log().requires_grad_(True)
    return list(q), z


def _on_labels(probs: torch.Tensor, tokens: Sequence[str], labels: Sequence[str]) -> torch.Tensor:
    """A probability vector over ``tokens`` placed on ``labels`` (0 where a label is not a token), keeping the graph."""
    index = {t: i for i, t in enumerate(tokens)}
    zero = probs.new_zeros(())
    return torch.stack([probs[index[t]] if t in index else zero for t in labels])


def _gradient(loss: torch.Tensor, tokens: list[str], z: torch.Tensor) -> dict[str, float]:
    r""":math:`\partial\,\text{loss} / \partial z_v` for every student token v, as a dict."""
    (grad,) = torch.autograd.grad(loss, z)
    return {t: float(g) for t, g in zip(tokens, grad)}


def smoothed_kl_gradient(teacher, student, eps: float) -> dict[str, float]:
    r"""Gradient of patch (a), :math:`\partial\,\mathrm{KL}_\varepsilon / \partial z_v`, for the student's logits z.

    The student's logits are :math:`z = \log q` over its own vocabulary (a token it does not have,
    such as *moon*, has no logit). Unlike the value, this hardly changes with ε once ε is small.
    """
    p, _ = aligned_probs(teacher, student)
    tokens, z = _student_logits(student)
    q = _on_labels(torch.softmax(z, -1), tokens, union_vocab(check_distribution(teacher, "teacher"), tokens))
    return _gradient(_smoothed_kl(p, q, eps), tokens, z)


def gradient_vs_epsilon(teacher, student, eps_values) -> dict[str, list[float]]:
    """:func:`smoothed_kl_gradient` for every ε: ``{student token: [gradient at each ε]}`` (for the plot)."""
    eps_list = [float(e) for e in eps_values]
    if not eps_list:
        raise ValueError("eps_values is empty")
    grads = [smoothed_kl_gradient(teacher, student, e) for e in eps_list]
    return {t: [g[t] for g in grads] for t in grads[0]}


# --------------------------------------------------------------------------- patch (b): intersection only
def shared_mass(teacher, student) -> tuple[float, float]:
    """(teacher mass, student mass) on the tokens both vocabularies share: what patch (b) keeps."""
    p = check_distribution(teacher, "teacher")
    q = check_distribution(student, "student")
    shared = intersection_vocab(p, q)
    return sum(p[t] for t in shared), sum(q[t] for t in shared)


def intersection_kl(teacher, student) -> float:
    """Patch (b): KL on the shared token strings only, each side renormalised there.

    The mass on tokens only one side has (moon, sun) is thrown away, so two models that bet
    everything on different words can score 0. Raises a ``ValueError`` if nothing is shared
    or one side puts no mass on the shared tokens.
    """
    p = check_distribution(teacher, "teacher")
    q = check_distribution(student, "student")
    shared = intersection_vocab(p, q)
    if not shared:
        raise ValueError("the two vocabularies share no token string: the intersection patch has nothing to compare")
    mp, mq = shared_mass(p, q)
    if mp <= 0 or mq <= 0:
        who = "teacher" if mp <= 0 else "student"
        raise ValueError(f"the {who} puts no probability on the shared tokens {shared}: cannot renormalise 0/0")
    pv = torch.tensor([p[t] for t in shared], dtype=torch.float64)
    qv = torch.tensor([q[t] for t in shared], dtype=torch.float64)
    return _clip_rounding(float(_renormalised_kl(pv, qv)))


def _renormalised_kl(p_shared: torch.Tensor, q_shared: torch.Tensor) -> torch.Tensor:
    """KL between the two sides' masses on the shared tokens, each divided by its total (differentiable in q)."""
    return kl_divergence((q_shared / q_shared.sum()).log(), (p_shared / p_shared.sum()).log())


# --------------------------------------------------------------------------- patch (c): blind id matching
def blind_id_pairs(teacher: Mapping[str, float], student: Mapping[str, float]) -> list[tuple[str, str]]:
    """(teacher token, student token) compared by patch (c): same id, whatever the strings (shorter length)."""
    return list(zip(list(teacher), list(student)))


def blind_id_kl(teacher, student) -> float:
    """Patch (c): KL comparing token id i of the teacher with token id i of the student.

    Uses :func:`uldviz.maths.losses.forced_kl_div` (truncate to the smaller vocabulary, renormalise).
    Finite and silent, but it compares e.g. "moon" with "sun".
    """
    p = check_distribution(teacher, "teacher")
    q = check_distribution(student, "student")
    pv = torch.tensor(list(p.values()), dtype=torch.float64)
    qv = torch.tensor(list(q.values()), dtype=torch.float64)
    if (pv[: len(qv)] <= 0).all() or (qv[: len(pv)] <= 0).all():
        raise ValueError("one side has no probability on the ids both vocabularies have: cannot renormalise")
    return _clip_rounding(float(forced_kl_div(qv.log(), pv.log(), how="truncate")))


def blind_id_agreement(vocab_a: Sequence[str], vocab_b: Sequence[str]) -> dict:
    """Patch (c) on real vocabularies (token strings in id order): how often id i is the same string on both sides.

    Returns ``{"compared": n, "same": k, "fraction": k / n}`` over the ids both vocabularies have.
    """
    a, b = list(vocab_a), list(vocab_b)
    n = min(len(a), len(b))
    if n == 0:
        raise ValueError("a vocabulary is empty: no ids to compare")
    same = sum(1 for i in range(n) if a[i] == b[i])
    return {"compared": n, "same": same, "fraction": same / n}


# --------------------------------------------------------------------------- ULD
def uld(teacher, student) -> float:
    """ULD distance between the two distributions, each on its own vocabulary (sort, zero-pad, L1)."""
    p = check_distribution(teacher, "teacher")
    q = check_distribution(student, "student")
    pv = torch.tensor(list(p.values()), dtype=torch.float64)
    qv = torch.tensor(list(q.values()), dtype=torch.float64)
    return float(uld_distance(pv, qv))


#: Names of the losses compared by :func:`patch_gradients`, in the notebook's order.
PATCH_NAMES = ("(a) ε-smoothed KL", "(b) shared tokens only", "(c) blind id matching", "ULD")


def patch_gradients(teacher, student, eps: float = 1e-8) -> dict[str, dict[str, float]]:
    r"""For each patch and for ULD: :math:`\partial L/\partial z_v` for the student's logits :math:`z=\log q`.

    A training step moves every logit against its gradient, so this is what each loss would teach
    the student, token by token. (a) uses ε; (b) renormalises on the shared tokens; (c) compares
    token id i with token id i on the ids both have (KL on the first min(n, m) logits of each side,
    as :func:`blind_id_kl` does); ULD is :func:`uldviz.maths.losses.uld_loss` with the teacher as target.
    """
    p = check_distribution(teacher, "teacher")
    tokens, z = _student_logits(student)
    out = {PATCH_NAMES[0]: smoothed_kl_gradient(p, dict(zip(tokens, torch.softmax(z, -1).tolist())), eps)}
    shared = intersection_vocab(p, dict.fromkeys(tokens, 0.0))
    if shared and sum(p[t] for t in shared) > 0:
        q_shared = _on_labels(torch.softmax(z, -1), tokens, shared)
        p_shared = torch.tensor([p[t] for t in shared], dtype=torch.float64)
        out[PATCH_NAMES[1]] = _gradient(_renormalised_kl(p_shared, q_shared), tokens, z)
    else:  # the patch is undefined: no shared token carries teacher mass
        out[PATCH_NAMES[1]] = {t: math.nan for t in tokens}
    teacher_logits = torch.tensor(list(p.values()), dtype=torch.float64).log()
    k = min(len(p), len(tokens))
    out[PATCH_NAMES[2]] = _gradient(kl_divergence(z[:k], teacher_logits[:k]), tokens, z)
    out[PATCH_NAMES[3]] = _gradient(uld_loss(z[None], teacher_logits[None]), tokens, z)
    return out


def reorder(dist: Mapping[str, float], order: Sequence[str]) -> dict[str, float]:
    """The same distribution with its tokens in another id order (as another tokenizer might number them)."""
    d = check_distribution(dist)
    if sorted(order) != sorted(d) or len(set(order)) != len(order):
        raise ValueError(f"order must list each token of {list(d)} exactly once, got {list(order)}")
    return {t: d[t] for t in order}


def swap_tokens(dist: Mapping[str, float], a: str, b: str) -> dict[str, float]:
    """A copy of ``dist`` with the probabilities of tokens ``a`` and ``b`` exchanged (the ULD blind spot)."""
    d = check_distribution(dist)
    for t in (a, b):
        if t not in d:
            raise ValueError(f"token {t!r} is not in the vocabulary {list(d)}")
    d[a], d[b] = d[b], d[a]
    return d


def format_value(x) -> str:
    """A loss value for display: 'inf', 'NaN' or 4 significant digits (also for 0-d tensors)."""
    v = float(x)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"
