r"""Exact optimal transport with POT: the OT problem whose optimum *is* the ULD closed form.

ULD sorts two probability vectors and sums absolute differences (the one reference implementation
is :func:`uldviz.maths.losses.uld_reference`; the solvers here are checked against it). That is an optimal-transport
value in disguise: zero-pad ``p`` (n,) and ``q`` (m,) to :math:`N=\max(n,m)`, put N points of
mass :math:`1/N` on the real line at the *values* :math:`\tilde p_i` and N at :math:`\tilde q_j`,
and move one cloud onto the other at cost :math:`|\tilde p_i-\tilde q_j|`. Then

.. math:: \mathrm{ULD}(p,q)=\sum_i|\mathrm{sort}\!\downarrow(\tilde p)_i-\mathrm{sort}\!\downarrow(\tilde q)_i|
          = N\,W_1 = N\min_{\pi\in\Pi(\frac1N\mathbf 1,\frac1N\mathbf 1)}\langle \pi, C\rangle .

This module builds that problem (:func:`uld_ot_problem`) and solves it exactly with
``ot.emd2``/``ot.emd`` (:func:`uld_emd`), in 1-D with ``ot.wasserstein_1d``
(:func:`uld_wasserstein_1d`), approximately with entropic OT ``ot.sinkhorn2``
(:func:`uld_sinkhorn`); :func:`token_ot` solves OT between *tokens* for any cost matrix (for
example :func:`zero_one_cost`, whose optimum is total variation, or :func:`edit_distance_cost`).
numpy arrays and torch tensors both work (POT picks its backend from the input), so gradients
flow through ``ot.emd2`` with torch inputs.

Safety for large N: exact OT needs an N x N cost matrix (8 N^2 bytes in float64) and a network
simplex whose iteration count grows about like N^2. Sizes whose cost matrix exceeds
``max_bytes`` are refused with a ``ValueError`` that says how much memory they would need;
``numItermax`` is raised with N (:func:`default_num_itermax`); POT's warnings (iteration limit,
Sinkhorn not converged) are re-emitted as :class:`OTWarning` with the size and a remedy.
No plotting here.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import NamedTuple, Sequence

import numpy as np
import ot
import torch

__all__ = [
    "DEFAULT_MAX_BYTES",
    "OTWarning",
    "OTResult",
    "default_num_itermax",
    "cost_matrix_bytes",
    "check_cost_memory",
    "pad_to_common",
    "uld_ot_problem",
    "sorted_plan",
    "uld_emd",
    "uld_wasserstein_1d",
    "uld_sinkhorn",
    "unpadded_emd",
    "token_ot",
    "value_cost",
    "zero_one_cost",
    "levenshtein",
    "edit_distance_cost",
    "total_variation",
]

#: Default memory cap for one N x N float64 cost matrix: 2 GB (N about 15,800).
DEFAULT_MAX_BYTES = 2 * 10**9


class OTWarning(UserWarning):
    """A warning from POT re-emitted with context: which solver, what size, what to do about it."""


class OTResult(NamedTuple):
    """An OT value with its optimal plan (coupling) and the warnings POT raised while solving."""

    value: object
    plan: object
    warnings: tuple = ()


# --------------------------------------------------------------------------- input checks
def _is_torch(x) -> bool:
    """True for torch tensors (POT then uses its torch backend)."""
    return isinstance(x, torch.Tensor)


def _check_vector(x, name: str):
    """Probabilities/masses as a float64 numpy array or a floating torch tensor; clear errors otherwise."""
    if _is_torch(x):
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
        bad_nan = bool(torch.isnan(x).any()) if x.numel() else False
        bad_inf = bool(torch.isinf(x).any()) if x.numel() else False
        bad_neg = bool((x < 0).any()) if x.numel() else False
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - re-raised with a clear message
            raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
        if arr.dtype == bool:
            raise TypeError(f"{name} must hold numbers (probabilities), got booleans")
        x = arr.astype(np.float64)
        bad_nan = bool(np.isnan(x).any())
        bad_inf = bool(np.isinf(x).any())
        bad_neg = bool((x < 0).any())
    if x.ndim == 0:
        raise ValueError(f"{name} must be a vector of probabilities, got a scalar")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} is empty (vocabulary of size 0): there is nothing to transport")
    if (x.numel() if _is_torch(x) else x.size) == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    if bad_nan:
        raise ValueError(f"{name} contains NaN: not a probability vector")
    if bad_inf:
        raise ValueError(f"{name} contains inf: not a probability vector")
    if bad_neg:
        raise ValueError(f"{name} contains negative values: not a probability vector")
    return x


def _check_pair(p, q):
    """Check both vectors, refuse mixing numpy and torch, and require equal leading shapes."""
    p = _check_vector(p, "p")
    q = _check_vector(q, "q")
    if _is_torch(p) != _is_torch(q):
        raise TypeError("p and q must both be numpy arrays or both torch tensors (POT picks one backend)")
    if tuple(p.shape[:-1]) != tuple(q.shape[:-1]):
        raise ValueError(
            f"p and q have different leading (position) shapes: {tuple(p.shape)} vs {tuple(q.shape)}; "
            "only the last dimension, the vocabulary, may differ"
        )
    if _is_torch(p):
        dtype = torch.promote_types(p.dtype, q.dtype)
        p, q = p.to(dtype), q.to(dtype)
    return p, q


def cost_matrix_bytes(n: int, m: int | None = None, itemsize: int = 8) -> int:
    """Bytes of one n x m cost matrix (float64 by default): what exact OT must hold in memory."""
    m = n if m is None else m
    return int(n) * int(m) * int(itemsize)


def check_cost_memory(n: int, m: int | None = None, max_bytes: float | None = DEFAULT_MAX_BYTES) -> None:
    """Refuse an n x m float64 cost matrix above ``max_bytes`` with a message that says what to do instead."""
    if max_bytes is None:
        return
    need = cost_matrix_bytes(n, m)
    if need > max_bytes:
        m = n if m is None else m
        raise ValueError(
            f"exact OT at size {n} x {m} needs a {need / 1e9:.1f} GB float64 cost matrix (and several times "
            f"that while solving), above the cap of {max_bytes / 1e9:.1f} GB (max_bytes). Use the closed "
            "form uldviz.maths.losses.uld_distance (or uld_wasserstein_1d), which needs O(N) memory, or raise "
            "max_bytes if you really have the memory."
        )


def default_num_itermax(n: int) -> int:
    """Network-simplex iteration limit for an N x N problem: 10 N^2, at least POT's default 100,000.

    POT's default (100,000) is reached at N = 10,000 (measured: "numItermax reached before
    optimality"); 10 N^2 = 1e9 there removes the warning.
    """
    return int(max(100_000, 10 * int(n) ** 2))


_POT_DIR = os.path.dirname(os.path.abspath(ot.__file__))


def _from_pot(w: warnings.WarningMessage) -> bool:
    """A user warning raised inside POT's own code (not one that merely happened during the call)."""
    return issubclass(w.category, UserWarning) and os.path.abspath(str(w.filename)).startswith(_POT_DIR)


def _reemit(caught, solver: str, size: str, remedy: str) -> tuple:
    """Re-emit POT's warnings as :class:`OTWarning` with context; return their texts.

    torch's deprecation notice about ``x.T`` that ``ot.wasserstein_1d`` triggers is dropped: it
    says nothing about the result.
    """
    texts = []
    for w in caught:
        if not _from_pot(w):  # e.g. a ResourceWarning from garbage collection: pass it on unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            continue
        msg = str(w.message)
        if ("x.T" in msg and "deprecated" in msg) or msg in texts:
            continue
        texts.append(msg)
        warnings.warn(f"{solver} at {size}: {msg} {remedy}", OTWarning, stacklevel=3)
    return tuple(texts)


# --------------------------------------------------------------------------- the ULD problem
def pad_to_common(p, q):
    r"""Zero-pad the shorter last dimension so both have :math:`N=\max(n,m)` entries (numpy or torch)."""
    p, q = _check_pair(p, q)
    n, m = p.shape[-1], q.shape[-1]
    big = max(n, m)
    if _is_torch(p):
        p = torch.nn.functional.pad(p, (0, big - n))
        q = torch.nn.functional.pad(q, (0, big - m))
    else:
        width = [(0, 0)] * (p.ndim - 1)
        p = np.pad(p, width + [(0, big - n)])
        q = np.pad(q, width + [(0, big - m)])
    return p, q


def sorted_plan(p, q) -> np.ndarray:
    r"""The monotone coupling of ULD's problem: mass 1/N from the r-th largest p̃ to the r-th largest q̃.

    Always optimal (it is what sorting computes). It need not be the only optimum: with cost
    :math:`|x-y|`, swapping the targets of two points that lie on the same side of both targets
    costs nothing, so ``ot.emd`` may return a different plan with the same value. Rows and columns
    are the padded vectors in their original order (numpy, N x N).
    """
    to_np = lambda x: x.detach().cpu().numpy() if _is_torch(x) else x
    pp, qq = pad_to_common(to_np(p), to_np(q))
    if pp.ndim != 1:
        raise ValueError("sorted_plan takes single vectors p (n,) and q (m,)")
    big = pp.shape[0]
    plan = np.zeros((big, big))
    plan[np.argsort(-pp, kind="stable"), np.argsort(-qq, kind="stable")] = 1.0 / big
    return plan


def value_cost(x, y):
    r"""ULD's cost between values on the line: :math:`C_{ij}=|x_i-y_j|` for 1-D ``x`` (n,), ``y`` (m,)."""
    if _is_torch(x) or _is_torch(y):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        return (x[:, None] - y[None, :]).abs()
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return np.abs(x[:, None] - y[None, :])


def uld_ot_problem(p, q, *, max_bytes: float | None = DEFAULT_MAX_BYTES):
    r"""The OT problem ``(a, b, M)`` whose optimum times N is ULD, for single vectors ``p`` (n,), ``q`` (m,).

    Both are zero-padded to N = max(n, m); ``a = b = 1/N`` (uniform masses on the N values);
    ``M[i, j] = |p̃_i - q̃_j|``. numpy in, numpy out; torch in, torch out (gradients flow into M),
    so ``N * ot.emd2(a, b, M)`` equals :func:`uldviz.maths.losses.uld_distance`.
    """
    p, q = _check_pair(p, q)
    if p.ndim != 1:
        raise ValueError(f"uld_ot_problem takes single vectors (1-D), got shapes {tuple(p.shape)} and {tuple(q.shape)}")
    big = max(p.shape[-1], q.shape[-1])
    check_cost_memory(big, big, max_bytes)
    pp, qq = pad_to_common(p, q)
    if _is_torch(pp):
        a = torch.full((big,), 1.0 / big, dtype=pp.dtype, device=pp.device)
        b = a.clone()
    else:
        a = np.full(big, 1.0 / big)
        b = a.copy()
    return a, b, value_cost(pp, qq)


def _per_row(p, q, solve):
    """Apply ``solve(p_row, q_row)`` over leading dimensions (exact OT is per position); stack the values."""
    if p.ndim == 1:
        return solve(p, q)
    lead = tuple(p.shape[:-1])
    pf, qf = p.reshape(-1, p.shape[-1]), q.reshape(-1, q.shape[-1])
    vals = [solve(pf[i], qf[i]) for i in range(pf.shape[0])]
    if _is_torch(p):
        return torch.stack(vals).reshape(lead)
    return np.asarray(vals, dtype=np.float64).reshape(lead)


def uld_emd(
    p,
    q,
    return_plan: bool = False,
    *,
    num_itermax: int | None = None,
    max_bytes: float | None = DEFAULT_MAX_BYTES,
):
    r"""ULD computed by exact OT: ``N * ot.emd2(1/N, 1/N, |p̃_i - q̃_j|)``.

    Equals the closed form :func:`uldviz.maths.losses.uld_distance` to round-off. ``return_plan=True``
    (single vectors only) returns ``OTResult(value, plan, warnings)``: the N x N optimal coupling
    (rows: padded ``p`` in its original order; each row holds mass 1/N) from the same solve.
    Leading dimensions are solved one position at a time. ``num_itermax`` defaults to
    :func:`default_num_itermax` (N); if POT still stops early an :class:`OTWarning` says so.
    """
    p, q = _check_pair(p, q)
    if return_plan and p.ndim != 1:
        raise ValueError("return_plan=True needs single vectors p (n,) and q (m,), not a batch")
    big = max(p.shape[-1], q.shape[-1])
    check_cost_memory(big, big, max_bytes)
    iters = default_num_itermax(big) if num_itermax is None else int(num_itermax)

    def solve(pi, qi, want_plan=False):
        """One position: N * emd2 on the padded problem (plus the plan and warnings if asked)."""
        a, b, M = uld_ot_problem(pi, qi, max_bytes=None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            val, log = ot.emd2(a, b, M, numItermax=iters, log=True, return_matrix=want_plan)
        found = _reemit(caught, "ot.emd2", f"N = {big}", f"(numItermax = {iters}; pass a larger num_itermax)")
        value = val * big
        return (value, log.get("G"), found) if want_plan else value

    if return_plan:
        value, plan, found = solve(p, q, want_plan=True)
        return OTResult(value, plan, found)
    return _per_row(p, q, solve)


def unpadded_emd(p, q, *, num_itermax: int | None = None, max_bytes: float | None = DEFAULT_MAX_BYTES):
    r"""DEMO: the same OT *without* zero-padding: n points of mass 1/n against m of mass 1/m, scaled by max(n, m).

    Equal to ULD when n = m; different (and wrong) when the sizes differ, because the smaller
    vocabulary's probabilities are spread as if its missing tokens did not exist.
    """
    p, q = _check_pair(p, q)
    n, m = p.shape[-1], q.shape[-1]
    check_cost_memory(n, m, max_bytes)
    iters = default_num_itermax(max(n, m)) if num_itermax is None else int(num_itermax)

    def solve(pi, qi):
        """One position: OT with masses 1/n and 1/m on the raw values, scaled by max(n, m)."""
        if _is_torch(pi):
            a = torch.full((n,), 1.0 / n, dtype=pi.dtype, device=pi.device)
            b = torch.full((m,), 1.0 / m, dtype=pi.dtype, device=pi.device)
        else:
            a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            val = ot.emd2(a, b, value_cost(pi, qi), numItermax=iters)
        _reemit(caught, "ot.emd2 (unpadded)", f"{n} x {m}", "(pass a larger num_itermax)")
        return val * max(n, m)

    return _per_row(p, q, solve)


def uld_wasserstein_1d(p, q):
    r"""ULD computed by POT's 1-D solver: ``N * ot.wasserstein_1d(p̃, q̃, p=1)`` (no cost matrix, O(N log N)).

    Leading dimensions are handled as separate problems (POT treats extra columns that way).
    """
    p, q = _check_pair(p, q)
    pp, qq = pad_to_common(p, q)
    big = pp.shape[-1]
    lead = tuple(pp.shape[:-1])
    # POT wants the points along the first axis and independent problems along the second.
    u = pp.reshape(-1, big).T if pp.ndim > 1 else pp
    v = qq.reshape(-1, big).T if qq.ndim > 1 else qq
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        val = ot.wasserstein_1d(u, v, p=1)
    _reemit(caught, "ot.wasserstein_1d", f"N = {big}", "")
    val = val * big
    return val.reshape(lead) if pp.ndim > 1 else val


def uld_sinkhorn(
    p,
    q,
    reg: float,
    return_plan: bool = False,
    *,
    num_itermax: int = 10_000,
    stop_thr: float = 1e-9,
    max_bytes: float | None = DEFAULT_MAX_BYTES,
):
    r"""Entropic approximation of ULD: ``N * ot.sinkhorn2(1/N, 1/N, |p̃_i - q̃_j|, reg)``.

    Returns the transport part :math:`N\langle \pi_\eta, C\rangle` of the entropic optimum
    :math:`\pi_\eta = \arg\min_\pi \langle\pi, C\rangle - \eta H(\pi)`, with :math:`\eta` = ``reg``. When ``reg``
    is not small against the costs (here costs are below
    max p, often < 0.1) the plan blurs and the value is far above the exact one (measured: 20-600 %
    off at reg 0.01-0.1). If Sinkhorn stops before ``stop_thr`` an :class:`OTWarning` says so.
    ``return_plan=True`` returns ``OTResult(value, plan, warnings)``. Single vectors only.
    """
    reg = float(reg)
    if not (reg > 0 and math.isfinite(reg)):
        raise ValueError(f"reg (the entropic regularisation) must be a finite number > 0, got {reg}")
    p, q = _check_pair(p, q)
    if p.ndim != 1:
        raise ValueError("uld_sinkhorn takes single vectors p (n,) and q (m,)")
    a, b, M = uld_ot_problem(p, q, max_bytes=max_bytes)
    big = a.shape[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if return_plan:
            plan = ot.sinkhorn(a, b, M, reg, numItermax=num_itermax, stopThr=stop_thr, warn=True)
            value = (plan * M).sum()
        else:
            plan = None
            value = ot.sinkhorn2(a, b, M, reg, numItermax=num_itermax, stopThr=stop_thr, warn=True)
    found = _reemit(
        caught, "ot.sinkhorn2", f"N = {big}, reg = {reg:g}", f"(numItermax = {num_itermax}; raise it or reg)"
    )
    value = value * big
    if _is_torch(value) and value.dim() > 0:
        value = value.reshape(())
    return OTResult(value, plan, found) if return_plan else value


# --------------------------------------------------------------------------- token-level OT
def token_ot(p, q, C, *, num_itermax: int | None = None, max_bytes: float | None = DEFAULT_MAX_BYTES):
    r"""Exact OT between two token distributions under a user-given cost ``C`` (n x m): ``OTResult(value, plan)``.

    ``p`` (n,) and ``q`` (m,) are the masses on the two vocabularies (equal totals); ``C[i, j]``
    is the cost of moving mass from token i of the first to token j of the second. The cost decides
    what the distance rewards: :func:`zero_one_cost` gives total variation, :func:`edit_distance_cost`
    rewards mass on similar-looking strings, :func:`value_cost` on the sorted values gives ULD.
    """
    p, q = _check_pair(p, q)
    if p.ndim != 1:
        raise ValueError("token_ot takes single vectors p (n,) and q (m,)")
    n, m = p.shape[0], q.shape[0]
    if _is_torch(C):
        C = C.to(p.dtype) if _is_torch(p) else C.detach().cpu().numpy()
    elif _is_torch(p):
        C = torch.as_tensor(np.asarray(C, dtype=np.float64), dtype=p.dtype)
    else:
        C = np.asarray(C, dtype=np.float64)
    if tuple(C.shape) != (n, m):
        raise ValueError(f"the cost matrix C must have shape (len(p), len(q)) = ({n}, {m}), got {tuple(C.shape)}")
    finite = bool(torch.isfinite(C).all()) if _is_torch(C) else bool(np.isfinite(C).all())
    if not finite:
        raise ValueError("the cost matrix C contains NaN or inf")
    check_cost_memory(n, m, max_bytes)
    sp, sq = float(p.sum()), float(q.sum())
    if abs(sp - sq) > 1e-6 * max(sp, sq, 1e-300):
        raise ValueError(
            f"p and q must carry the same total mass for exact OT, got {sp:.8g} and {sq:.8g} (normalise them)"
        )
    iters = default_num_itermax(max(n, m)) if num_itermax is None else int(num_itermax)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value, log = ot.emd2(p, q, C, numItermax=iters, log=True, return_matrix=True)
    found = _reemit(caught, "ot.emd2 (token cost)", f"{n} x {m}", "(pass a larger num_itermax)")
    return OTResult(value, log["G"], found)


def zero_one_cost(tokens_a: Sequence[str], tokens_b: Sequence[str]) -> np.ndarray:
    """The 0/1 cost between token strings: 0 where the strings are equal, else 1. Its OT optimum is total variation."""
    a = _check_tokens(tokens_a, "tokens_a")
    b = _check_tokens(tokens_b, "tokens_b")
    return np.array([[0.0 if s == t else 1.0 for t in b] for s in a], dtype=np.float64).reshape(len(a), len(b))


def levenshtein(s: str, t: str) -> int:
    """Edit distance between two strings: the fewest insertions, deletions and substitutions turning s into t."""
    if len(s) < len(t):
        s, t = t, s
    prev = list(range(len(t) + 1))
    for i, cs in enumerate(s, 1):
        cur = [i]
        for j, ct in enumerate(t, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (cs != ct)))
        prev = cur
    return prev[-1]


def edit_distance_cost(tokens_a: Sequence[str], tokens_b: Sequence[str]) -> np.ndarray:
    """Normalised edit distance of token strings, ``lev(s, t) / max(len s, len t)`` in [0, 1] (0 for two empties)."""
    a = _check_tokens(tokens_a, "tokens_a")
    b = _check_tokens(tokens_b, "tokens_b")
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    for i, s in enumerate(a):
        for j, t in enumerate(b):
            longest = max(len(s), len(t))
            out[i, j] = levenshtein(s, t) / longest if longest else 0.0
    return out


def _check_tokens(tokens, name: str) -> list:
    """Token lists must be non-empty sequences of strings."""
    if isinstance(tokens, str):
        raise TypeError(f"{name} must be a list of token strings, not one string")
    try:
        tokens = list(tokens)
    except TypeError as exc:
        raise TypeError(f"{name} must be a list of token strings, got {type(tokens).__name__}") from exc
    if not tokens:
        raise ValueError(f"{name} is empty: a vocabulary needs at least one token")
    bad = [t for t in tokens if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{name} must hold strings, found {type(bad[0]).__name__} {bad[0]!r}")
    return tokens


def total_variation(p, q) -> float:
    r"""Total variation :math:`\tfrac12\|p-q\|_1` of two distributions on ONE shared vocabulary (same length)."""
    p, q = _check_pair(p, q)
    if p.shape != q.shape:
        raise ValueError(f"total variation needs one shared vocabulary, got sizes {p.shape[-1]} and {q.shape[-1]}")
    return 0.5 * (p - q).abs().sum(-1) if _is_torch(p) else 0.5 * np.abs(p - q).sum(-1)
