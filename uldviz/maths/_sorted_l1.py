r"""Fast sorted-L1 distance, the kernel of the ULD loss.

It computes :math:`\sum_i |\mathrm{sort}\!\downarrow(\tilde a)_i - \mathrm{sort}\!\downarrow(\tilde b)_i|`
for zero-padded probability vectors.

Internal module: :mod:`uldviz.maths.losses` calls :func:`sorted_l1` after validating its input.

Why a custom kernel: on CPU ``torch.sort`` (values + int64 indices) costs about ten times
``np.sort`` and dominates a plain ULD implementation. This one

- never materialises the zero-padding: the padded zeros sort last, so it compares the first
  ``min(n, m)`` sorted values and adds the sum of the longer side's remaining values;
- sorts a side that needs no gradient (the teacher) by value only (``np.sort``);
- for a side that needs a gradient, sorts float32 values *and* indices in ONE ``np.sort`` of
  64-bit keys ``(~bits(value) << 32) | index`` (non-negative float32 bit patterns are ordered
  like the values, so ascending keys are descending values, ties broken by the lower index,
  exactly like a stable descending ``torch.sort``), which is about twice as fast as ``np.argsort``;
- works in blocks of rows (a few MB each, spread over threads), so the temporaries stay small;
- keeps for the backward pass only the subgradient :math:`\mathrm{sign}(a_{(r)} - b_{(r)})`
  scattered back to the original token order, as int8 (a quarter of the probabilities' size).

The result and the gradients equal those of the reference :func:`uldviz.maths.losses.uld_reference`
(pad, stable descending ``torch.sort``, ``abs().sum()``); ``tests/test_sorted_l1.py`` checks this.
On CUDA, or for dtypes other than float32/float64, a pure-torch version without padding is used
(``torch.sort`` is fast on GPUs).

The numpy work is one opaque operator per kernel (``torch.library.custom_op``: ``uldviz::sorted_l1``
and ``uldviz::sorted_l1_topk``, each with a fake implementation for ``torch.compile``), wrapped in a
``setup_context``-style ``autograd.Function`` so ``torch.func.grad`` and ``torch.compile(fullgraph=True)``
work. Forward-mode AD (``torch.func.jvp``, ``torch.autograd.forward_ad``) takes the pure-torch path,
whose ``torch.sort`` has a forward rule: same values, same derivatives, slower.

The thread pool is per process: a child made by ``fork`` starts without it, with one torch thread
(``os.register_at_fork``), because the parent's worker threads (ours and torch's OpenMP ones) do not
exist there and waiting on them would hang.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

__all__ = ["sorted_l1", "sorted_l1_torch", "sorted_l1_topk"]

Tensor = torch.Tensor

#: Elements per block of rows processed at once (4 MB of 64-bit keys): bounds the temporaries.
BLOCK_ELEMENTS = 1 << 19

_EXECUTOR: ThreadPoolExecutor | None = None


def _after_fork_in_child() -> None:
    """In a forked child: drop the parent's pool and use one torch thread, so the loss does not wait forever.

    Neither our pool's worker threads nor torch's OpenMP threads are copied by ``fork``; waiting on
    either hangs (measured: a child computing the loss after threaded use in the parent never returns).
    The next call makes a fresh pool; one torch thread is what torch's own ``DataLoader`` workers use
    (a child may raise it again with ``torch.set_num_threads``).
    """
    global _EXECUTOR
    _EXECUTOR = None
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _workers() -> int:
    """Threads for the numpy work: torch's intra-op thread count, at most the CPUs we may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cpus = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cpus, 8))


def _run_blocks(fn, rows: int, width: int) -> None:
    """Call ``fn(r0, r1)`` on blocks of rows, in parallel threads when there are several blocks.

    numpy releases the GIL in sorts and large ufuncs, so threads give real parallelism here.
    """
    global _EXECUTOR
    step = max(1, BLOCK_ELEMENTS // max(width, 1))
    blocks = [(r, min(r + step, rows)) for r in range(0, rows, step)]
    workers = _workers()
    if workers == 1 or len(blocks) == 1:
        for r0, r1 in blocks:
            fn(r0, r1)
        return
    if _EXECUTOR is None or _EXECUTOR._max_workers != workers:  # noqa: SLF001 - cheap re-creation check
        _EXECUTOR = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="uldviz-sort")
    for fut in [_EXECUTOR.submit(fn, r0, r1) for r0, r1 in blocks]:
        fut.result()


# --------------------------------------------------------------------------- sorting helpers
def _sorted_values(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` sorted descending (values only): a reversed view of one ascending ``np.sort``."""
    return np.sort(x, axis=-1)[:, ::-1]


def _sorted_values_and_perm(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``x`` sorted descending and the int64 permutation (stable: ties keep index order)."""
    if x.dtype == np.float32:
        n = x.shape[-1]
        key = x.view(np.uint32).astype(np.uint64)
        key &= np.uint64(0x7FFFFFFF)  # -0.0 -> +0.0, so it ties with 0 as in a float sort
        key ^= np.uint64(0xFFFFFFFF)  # larger value -> smaller key: ascending keys = descending values
        key <<= np.uint64(32)
        key |= np.arange(n, dtype=np.uint64)
        key.sort(axis=-1)
        vals = (key >> np.uint64(32)).astype(np.uint32)
        vals ^= np.uint32(0xFFFFFFFF)
        key &= np.uint64(0xFFFFFFFF)
        return vals.view(np.float32), key.view(np.int64)
    # float64: no room for the index in the key; a stable argsort of -x gives the same order.
    perm = np.argsort(-x, axis=-1, kind="stable")
    return np.take_along_axis(x, perm, axis=-1), perm


def _scatter_signs(dst: torch.Tensor, perm: np.ndarray, signs: np.ndarray) -> None:
    """``dst[r, perm[r, i]] = signs[r, i]``: the per-rank subgradient back in token order."""
    dst.scatter_(1, torch.from_numpy(perm), torch.from_numpy(signs))


# --------------------------------------------------------------------------- forward-mode AD
def _has_tangent(*xs: Tensor) -> bool:
    """Whether an input carries a forward-mode tangent (``torch.func.jvp`` or ``torch.autograd.forward_ad``)."""
    if torch.compiler.is_compiling():  # compiled graphs get no dual tensors
        return False
    return any(fwAD.unpack_dual(x).tangent is not None for x in xs)


# --------------------------------------------------------------------------- full sort
def _empty_sign() -> Tensor:
    """The placeholder returned for a side that needs no gradient (custom ops always return their tensors)."""
    return torch.empty(0, dtype=torch.int8, device="cpu")  # the numpy kernel runs on the CPU only


@torch.library.custom_op("uldviz::sorted_l1", mutates_args=(), device_types="cpu")
def _sorted_l1_op(a: Tensor, b: Tensor, need_a: bool, need_b: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Distances (R,) for rows a (R, n) and b (R, m), and the int8 sign of each side that needs a gradient."""
    an = a.detach().contiguous().numpy()
    bn = b.detach().contiguous().numpy()
    rows, n = an.shape
    m = bn.shape[1]
    short = min(n, m)
    dist = np.empty(rows, dtype=an.dtype)
    ga = torch.empty((rows, n), dtype=torch.int8, device="cpu") if need_a else _empty_sign()
    gb = torch.empty((rows, m), dtype=torch.int8, device="cpu") if need_b else _empty_sign()

    def block(r0: int, r1: int) -> None:
        """Sort one block of rows, sum |differences| (+ the longer side's tail), keep signs."""
        if need_a:
            av, pa = _sorted_values_and_perm(an[r0:r1])
        else:
            av = _sorted_values(an[r0:r1])
        if need_b:
            bv, pb = _sorted_values_and_perm(bn[r0:r1])
        else:
            bv = _sorted_values(bn[r0:r1])
        diff = av[:, :short] - bv[:, :short]
        sign = np.sign(diff).astype(np.int8) if (need_a or need_b) else None
        total = np.abs(diff, out=diff).sum(-1)
        if n > short:
            total += av[:, short:].sum(-1)
        if m > short:
            total += bv[:, short:].sum(-1)
        dist[r0:r1] = total
        if need_a:
            sa = np.empty((r1 - r0, n), dtype=np.int8)
            sa[:, :short] = sign
            sa[:, short:] = av[:, short:] > 0  # |x - 0| has subgradient sign(x): 0 at x = 0
            _scatter_signs(ga[r0:r1], pa, sa)
        if need_b:
            sb = np.empty((r1 - r0, m), dtype=np.int8)
            np.negative(sign, out=sb[:, :short])
            sb[:, short:] = bv[:, short:] > 0
            _scatter_signs(gb[r0:r1], pb, sb)

    _run_blocks(block, rows, max(n, m))
    return torch.from_numpy(dist), ga, gb


@_sorted_l1_op.register_fake
def _(a: Tensor, b: Tensor, need_a: bool, need_b: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Shapes and dtypes only, for ``torch.compile``."""
    sign = lambda x, need: x.new_empty(x.shape if need else (0,), dtype=torch.int8)  # noqa: E731
    return a.new_empty(a.shape[0]), sign(a, need_a), sign(b, need_b)


class _ScaledSubgradient(torch.autograd.Function):
    """Base of both kernels: the operator returns (distances, subgradient of a, subgradient of b); the backward
    pass scales the saved subgradient of each side that needs it by the incoming gradient of its row."""

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        """Keep both subgradients and which sides need a gradient (the last two inputs)."""
        _, sub_a, sub_b = output
        ctx.mark_non_differentiable(sub_a, sub_b)
        ctx.save_for_backward(sub_a, sub_b)
        ctx.need = inputs[-2:]
        ctx.n_inputs = len(inputs)

    @staticmethod
    def backward(ctx, grad_dist: Tensor, _grad_sub_a, _grad_sub_b):  # noqa: D401 - autograd API
        """Gradient = saved subgradient (in token order) times the incoming gradient of each row."""
        go = grad_dist.unsqueeze(-1)
        grads = [
            # int8 signs: convert, then scale in place (measured about twice as fast as a mixed int8 * float
            # multiply); float subgradients are scaled out of place, so a second backward finds them intact.
            (sub.to(go.dtype).mul_(go) if sub.dtype != go.dtype else sub.mul(go)) if need else None
            for sub, need in zip(ctx.saved_tensors, ctx.need)
        ]
        return (*grads, *([None] * (ctx.n_inputs - 2)))


class _SortedL1(_ScaledSubgradient):
    """Per-row sorted L1 of two 2-D CPU tensors; the subgradients are int8 signs in token order."""

    @staticmethod
    def forward(a: Tensor, b: Tensor, need_a: bool, need_b: bool):  # noqa: D401 - autograd API
        """The opaque numpy operator: (distances, sign of a, sign of b)."""
        return _sorted_l1_op(a, b, need_a, need_b)


def sorted_l1_torch(a: Tensor, b: Tensor) -> Tensor:
    """Pure-torch sorted L1 over the last dimension without materialising the zero-padding.

    Used on CUDA (where ``torch.sort`` is fast), for dtypes other than float32/float64, and for
    forward-mode AD (``torch.sort`` has a forward rule, the numpy operator does not).
    """
    n, m = a.shape[-1], b.shape[-1]
    short = min(n, m)
    av = torch.sort(a, dim=-1, descending=True, stable=True).values
    bv = torch.sort(b, dim=-1, descending=True, stable=True).values
    out = (av[..., :short] - bv[..., :short]).abs().sum(-1)
    if n > short:
        out = out + av[..., short:].abs().sum(-1)
    if m > short:
        out = out + bv[..., short:].abs().sum(-1)
    return out


def _numpy_ok(a: Tensor, b: Tensor) -> bool:
    """The numpy kernel handles CPU float32/float64 tensors of one dtype, without forward-mode tangents."""
    return (
        a.device.type == "cpu"
        and b.device.type == "cpu"
        and a.dtype == b.dtype
        and a.dtype in (torch.float32, torch.float64)
        and not _has_tangent(a, b)
    )


def _needs_grad(x: Tensor) -> bool:
    """Whether a graph will be built through ``x`` (grad mode on and ``x`` tracked)."""
    return torch.is_grad_enabled() and x.requires_grad


def sorted_l1(a: Tensor, b: Tensor) -> Tensor:
    r"""Per-position sorted L1 of zero-padded (..., n) and (..., m) vectors.

    That is :math:`\sum_i |\mathrm{sort}\!\downarrow(\tilde a)_i - \mathrm{sort}\!\downarrow(\tilde b)_i|`.

    Inputs are non-negative (already validated) with equal leading shapes; gradients flow to each
    input that requires them. Picks the numpy kernel on CPU, the torch one elsewhere.
    """
    if not _numpy_ok(a, b):
        return sorted_l1_torch(a, b)
    lead = a.shape[:-1]
    # A side without a graph skips the index sort entirely.
    dist, _, _ = _SortedL1.apply(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), _needs_grad(a), _needs_grad(b))
    return dist.reshape(lead)


# --------------------------------------------------------------------------- top-k
def _topk_sorted(x: np.ndarray, top_k: int, with_index: bool):
    """The top_k largest values of each row, sorted descending, and (optionally) their int64 indices."""
    n = x.shape[-1]
    if top_k >= n:
        if with_index:
            return _sorted_values_and_perm(x)
        return _sorted_values(x), None
    if not with_index:
        part = np.partition(x, n - top_k, axis=-1)[:, n - top_k :]
        return _sorted_values(part), None
    idx = np.argpartition(x, n - top_k, axis=-1)[:, n - top_k :]
    vals = np.take_along_axis(x, idx, axis=-1)
    order = np.argsort(-vals, axis=-1, kind="stable")
    return np.take_along_axis(vals, order, axis=-1), np.take_along_axis(idx, order, axis=-1)


@torch.library.custom_op("uldviz::sorted_l1_topk", mutates_args=(), device_types="cpu")
def _sorted_l1_topk_op(a: Tensor, b: Tensor, top_k: int, tail: bool, need_a: bool,
                       need_b: bool) -> tuple[Tensor, Tensor, Tensor]:
    """sum_r<k |a_(r) - b_(r)| (+ |tail_a - tail_b|) per row, and the dense subgradient of each side that needs it."""
    an = a.detach().contiguous().numpy()
    bn = b.detach().contiguous().numpy()
    rows, n = an.shape
    m = bn.shape[1]
    dist = np.empty(rows, dtype=an.dtype)
    alloc = torch.empty if tail else torch.zeros  # with the tail term every entry is written
    ga = alloc((rows, n), dtype=a.dtype) if need_a else a.new_empty(0)
    gb = alloc((rows, m), dtype=b.dtype) if need_b else b.new_empty(0)

    def block(r0: int, r1: int) -> None:
        """Top-k of one block of rows, head L1, tail term and the subgradients."""
        av, ia = _topk_sorted(an[r0:r1], min(top_k, n), need_a)
        bv, ib = _topk_sorted(bn[r0:r1], min(top_k, m), need_b)
        ka, kb = av.shape[1], bv.shape[1]
        short = min(ka, kb)
        diff = av[:, :short] - bv[:, :short]
        head_sign = np.sign(diff)
        total = np.abs(diff).sum(-1)
        if ka > short:
            total += av[:, short:].sum(-1)
        if kb > short:
            total += bv[:, short:].sum(-1)
        tail_sign = None
        if tail:
            tail_a = an[r0:r1].sum(-1) - av.sum(-1)
            tail_b = bn[r0:r1].sum(-1) - bv.sum(-1)
            total += np.abs(tail_a - tail_b)
            tail_sign = np.sign(tail_a - tail_b)[:, None]
        dist[r0:r1] = total
        for need, vals, idx, g, sgn in ((need_a, av, ia, ga, 1), (need_b, bv, ib, gb, -1)):
            if not need:
                continue
            kk = vals.shape[1]
            s = np.empty((r1 - r0, kk), dtype=an.dtype)
            s[:, :short] = sgn * head_sign
            s[:, short:] = vals[:, short:] > 0
            gblock = g[r0:r1]
            if tail_sign is not None:
                gblock.copy_(torch.from_numpy(sgn * tail_sign).expand_as(gblock))
            # In the top k the tail term's +1 (from the total) and -1 (from the kept) cancel.
            gblock.scatter_(1, torch.from_numpy(np.ascontiguousarray(idx)), torch.from_numpy(s))

    _run_blocks(block, rows, max(n, m))
    return torch.from_numpy(dist), ga, gb


@_sorted_l1_topk_op.register_fake
def _(a: Tensor, b: Tensor, top_k: int, tail: bool, need_a: bool, need_b: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Shapes and dtypes only, for ``torch.compile``."""
    return a.new_empty(a.shape[0]), a.new_empty(a.shape if need_a else (0,)), b.new_empty(b.shape if need_b else (0,))


class _SortedL1TopK(_ScaledSubgradient):
    """Top-k ULD with the tail-mass term on 2-D CPU tensors; the subgradients are dense, in the inputs' dtype."""

    @staticmethod
    def forward(a: Tensor, b: Tensor, top_k: int, tail: bool, need_a: bool, need_b: bool):  # noqa: D401
        """The opaque numpy operator: (distances, subgradient of a, subgradient of b)."""
        return _sorted_l1_topk_op(a, b, top_k, tail, need_a, need_b)


def sorted_l1_topk(a: Tensor, b: Tensor, top_k: int, tail: bool = True) -> Tensor | None:
    """Top-k sorted L1 with the tail term on CPU float32/float64; ``None`` where the caller should use torch."""
    if not _numpy_ok(a, b):
        return None
    lead = a.shape[:-1]
    dist, _, _ = _SortedL1TopK.apply(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), int(top_k), bool(tail),
                                     _needs_grad(a), _needs_grad(b))
    return dist.reshape(lead)
