"""Tests of the fast sorted-L1 kernel behind the ULD loss (uldviz.maths._sorted_l1).

The kernel must give the same values and gradients as the one reference, uldviz.maths.losses.uld_reference
(zero-pad, stable descending torch.sort, abs, sum), in eager mode, under torch.func and torch.compile,
and must not hang in a forked child; no timing is asserted.
"""

import multiprocessing
import os
import time

import pytest
import torch
import torch.nn.functional as F

from uldviz.maths import _sorted_l1 as K
from uldviz.maths import losses as L


def plain_uld(s, t, ts=1.0, tt=1.0, mask=None):
    """Reference ULD loss in float32 (float64 stays float64), teacher as a constant."""
    dtype = torch.float64 if torch.float64 in (s.dtype, t.dtype) else torch.float32
    q = torch.softmax(s.to(dtype) / ts, -1)
    p = torch.softmax(t.to(dtype) / tt, -1).detach()
    per = L.uld_reference(q, p)
    if mask is None:
        return per.mean()
    return (per * mask).sum() / mask.sum()


def plain_topk(a, b, k, tail=True):
    """Independent top-k ULD: torch.topk of each side, zero-padded to k, plus |tail_a - tail_b|."""
    ta = torch.topk(a, min(k, a.shape[-1]), dim=-1).values
    tb = torch.topk(b, min(k, b.shape[-1]), dim=-1).values
    ta, tb = F.pad(ta, (0, k - ta.shape[-1])), F.pad(tb, (0, k - tb.shape[-1]))
    out = (ta - tb).abs().sum(-1)
    if tail:
        out = out + ((a.sum(-1) - ta.sum(-1)) - (b.sum(-1) - tb.sum(-1))).abs()
    return out


def grads(fn, x):
    """Value and gradient of fn(x) with respect to x (a fresh leaf)."""
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    (g,) = torch.autograd.grad(y, x)
    return y.detach(), g


# --------------------------------------------------------------------------- the kernel = the plain version
@pytest.mark.parametrize("vs,vt", [(300, 300), (200, 500), (500, 200), (1, 50), (4000, 3999)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_uld_loss_equals_plain_values_and_gradients(vs, vt, dtype):
    torch.manual_seed(vs + vt)
    s = (torch.randn(3, 5, vs) * 3).to(dtype)
    t = (torch.randn(3, 5, vt) * 3).to(dtype)
    mask = torch.rand(3, 5) > 0.3
    for ts, tt, m in [(1.0, 1.0, None), (2.0, 0.5, mask), (0.7, 1.3, mask)]:
        v1, g1 = grads(lambda x, ts=ts, tt=tt, m=m: L.uld_loss(x, t, student_temperature=ts,
                                                            teacher_temperature=tt, mask=m), s)
        v2, g2 = grads(lambda x, ts=ts, tt=tt, m=m: plain_uld(x, t, ts, tt, m), s)
        assert abs(float(v1) - float(v2)) <= 1e-6
        assert (g1.float() - g2.float()).abs().max() <= 1e-6


def test_equal_with_ties_zeros_and_half_precision_duplicates():
    # bf16 logits have many exact duplicates, -inf gives exact zeros: tie-breaking must match.
    torch.manual_seed(1)
    s = (torch.randn(8, 600) * 2).to(torch.bfloat16).float()
    s[:, ::7] = float("-inf")
    s[:, 1::11] = s[:, 2::11]  # exact duplicate logits
    t = (torch.randn(8, 900) * 2).to(torch.bfloat16).float()
    t[:, ::5] = float("-inf")
    v1, g1 = grads(lambda x: L.uld_loss(x, t), s)
    v2, g2 = grads(lambda x: plain_uld(x, t), s)
    assert abs(float(v1) - float(v2)) <= 1e-6
    assert torch.isfinite(g1).all() and (g1 - g2).abs().max() <= 1e-6


def test_distance_gradients_flow_to_both_inputs_like_the_plain_version():
    torch.manual_seed(2)
    p = torch.softmax(torch.randn(4, 70), -1)
    q = torch.softmax(torch.randn(4, 40), -1)
    p[0, :5] = 0.0  # exact zeros
    for dtype, tol in [(torch.float32, 1e-6), (torch.float64, 1e-12)]:
        a = p.to(dtype).requires_grad_(True)
        b = q.to(dtype).requires_grad_(True)
        out = L.uld_distance(a, b)
        ga, gb = torch.autograd.grad(out.sum(), (a, b))
        a2 = p.to(dtype).requires_grad_(True)
        b2 = q.to(dtype).requires_grad_(True)
        ref = L.uld_reference(a2, b2)
        ra, rb = torch.autograd.grad(ref.sum(), (a2, b2))
        assert out.dtype == dtype and (out - ref).abs().max() <= tol
        assert (ga - ra).abs().max() == 0 and (gb - rb).abs().max() == 0


def test_negative_zero_counts_as_zero():
    p = torch.tensor([[0.5, -0.0, 0.5, 0.0]])
    q = torch.tensor([[0.25, 0.75]])
    assert float(L.uld_distance(p, q)) == pytest.approx(float(L.uld_reference(p.abs(), q)), abs=1e-7)


def test_many_blocks_and_threads_give_the_same_result(monkeypatch):
    # Force many small blocks so the threaded path runs and its pieces are stitched correctly.
    monkeypatch.setattr(K, "BLOCK_ELEMENTS", 1000)
    torch.manual_seed(3)
    s, t = torch.randn(67, 333) * 3, torch.randn(67, 250) * 3
    v1, g1 = grads(lambda x: L.uld_loss(x, t), s)
    v2, g2 = grads(lambda x: plain_uld(x, t), s)
    assert abs(float(v1) - float(v2)) <= 1e-6 and (g1 - g2).abs().max() <= 1e-6


def test_torch_fallback_matches_numpy_kernel():
    torch.manual_seed(4)
    a = torch.softmax(torch.randn(6, 90), -1)
    b = torch.softmax(torch.randn(6, 130), -1)
    assert torch.allclose(K.sorted_l1_torch(a, b), K.sorted_l1(a, b), atol=1e-6)
    assert torch.allclose(K.sorted_l1_torch(a.half(), b.half()).float(), L.uld_reference(a, b), atol=2e-3)


@pytest.mark.parametrize("k", [1, 50, 120, 200])
@pytest.mark.parametrize("tail", [True, False])
def test_topk_equals_plain_topk(k, tail):
    torch.manual_seed(k)
    p = torch.softmax(torch.randn(5, 200) * 3, -1)
    q = torch.softmax(torch.randn(5, 120) * 3, -1)
    v1, g1 = grads(lambda x: L.uld_topk_distance(torch.softmax(x, -1), p, k, tail=tail).sum(), q.log())
    v2, g2 = grads(lambda x: plain_topk(torch.softmax(x, -1), p, k, tail).sum(), q.log())
    assert abs(float(v1) - float(v2)) <= 1e-5
    assert (g1 - g2).abs().max() <= 1e-6


def test_topk_through_uld_loss_matches_plain_with_mask_and_temperature():
    torch.manual_seed(5)
    s, t = torch.randn(2, 6, 400) * 3, torch.randn(2, 6, 300) * 3
    mask = torch.rand(2, 6) > 0.4
    mask[0, 0] = True

    def ref(x):
        q = torch.softmax(x / 1.5, -1)
        p = torch.softmax(t / 0.8, -1)
        return (plain_topk(q, p, 40) * mask).sum() / mask.sum()

    v1, g1 = grads(lambda x: L.uld_loss(x, t, student_temperature=1.5, teacher_temperature=0.8, mask=mask,
                                        top_k=40), s)
    v2, g2 = grads(ref, s)
    assert abs(float(v1) - float(v2)) <= 1e-6 and (g1 - g2).abs().max() <= 1e-6


def test_no_grad_mode_gives_the_same_value_without_a_graph():
    torch.manual_seed(7)
    s = (torch.randn(4, 300) * 3).requires_grad_(True)
    t = torch.randn(4, 200) * 3
    with_graph = L.uld_loss(s, t)
    with torch.no_grad():
        without = L.uld_loss(s, t)
        topk = L.uld_loss(s, t, top_k=20)
    assert with_graph.requires_grad and not without.requires_grad and not topk.requires_grad
    assert float(without) == pytest.approx(float(with_graph.detach()), abs=1e-7)


# --------------------------------------------------------------------------- which path runs
def test_non_cpu_tensors_take_the_pure_torch_path(monkeypatch):
    """What CUDA runs: tensors off the CPU never reach the numpy operator ('meta' stands in for a GPU)."""
    calls = []
    real = K.sorted_l1_torch
    monkeypatch.setattr(K, "sorted_l1_torch", lambda a, b: calls.append(a.device.type) or real(a, b))
    monkeypatch.setattr(K, "_sorted_l1_op", lambda *a: pytest.fail("the numpy operator ran on a non-CPU tensor"))
    out = K.sorted_l1(torch.empty(3, 7, device="meta"), torch.empty(3, 5, device="meta"))
    assert calls == ["meta"] and out.shape == (3,) and out.device.type == "meta"
    assert K.sorted_l1_topk(torch.empty(3, 7, device="meta"), torch.empty(3, 5, device="meta"), 2) is None


def test_operators_pass_torch_library_opcheck():
    """Schema, fake (meta) implementation and dispatch of both numpy operators, as torch.compile needs them."""
    torch.manual_seed(20)
    a, b = torch.softmax(torch.randn(5, 30), -1), torch.softmax(torch.randn(5, 20), -1)
    for op, args in [(torch.ops.uldviz.sorted_l1.default, (a, b, True, True)),
                     (torch.ops.uldviz.sorted_l1_topk.default, (a, b, 7, True, True, False))]:
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, result


# --------------------------------------------------------------------------- torch.func and torch.compile
def _losses(t, mask):
    """The full and the top-k ULD loss as functions of the student logits (mask and temperatures included)."""
    return {
        "full": lambda x: L.uld_loss(x, t, mask=mask, student_temperature=1.5),
        "top_k": lambda x: L.uld_loss(x, t, mask=mask, top_k=30, teacher_temperature=0.8),
    }


@pytest.mark.parametrize("kind", ["full", "top_k"])
def test_torch_func_grad_equals_eager_backward(kind):
    torch.manual_seed(21)
    s, t = torch.randn(3, 4, 120) * 3, torch.randn(3, 4, 90) * 3
    fn = _losses(t, torch.rand(3, 4) > 0.3)[kind]
    value, grad = grads(fn, s)
    func_grad, func_value = torch.func.grad_and_value(fn)(s)
    assert float(func_value) == float(value)
    assert torch.equal(func_grad, grad) and grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["full", "top_k"])
def test_forward_mode_ad_equals_the_gradient_along_the_tangent(kind):
    """torch.func.jvp and torch.autograd.forward_ad take the pure-torch path: d loss . v = grad . v."""
    torch.manual_seed(22)
    s, t = torch.randn(3, 4, 120, dtype=torch.float64), torch.randn(3, 4, 90, dtype=torch.float64)
    fn = _losses(t, torch.rand(3, 4) > 0.3)[kind]
    v = torch.randn_like(s)
    value, grad = grads(fn, s)
    jvp_value, jvp = torch.func.jvp(fn, (s,), (v,))
    assert float(jvp_value) == pytest.approx(float(value), rel=1e-12)
    assert float(jvp) == pytest.approx(float((grad * v).sum()), rel=1e-9)
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        out = fn(fwAD.make_dual(s, v))
        assert float(fwAD.unpack_dual(out).tangent) == pytest.approx(float(jvp), rel=1e-12)


@pytest.mark.slow
def test_torch_compile_fullgraph_equals_eager_values_and_gradients():
    """One compiled graph (no graph break allowed) holding the full and the top-k loss; measured about 10 s on CPU."""
    torch.manual_seed(23)
    s, t = torch.randn(2, 5, 300) * 3, torch.randn(2, 5, 200) * 3
    fns = _losses(t, torch.rand(2, 5) > 0.3)
    both = lambda x: torch.stack([fns["full"](x), fns["top_k"](x)])  # noqa: E731
    compiled = torch.compile(both, fullgraph=True, backend="inductor")
    for x_in in (s, s * 0.5):  # a second call reuses the graph
        eager_x, comp_x = x_in.clone().requires_grad_(True), x_in.clone().requires_grad_(True)
        eager, comp = both(eager_x), compiled(comp_x)
        weights = torch.tensor([1.0, 0.7])
        (eager * weights).sum().backward()
        (comp * weights).sum().backward()
        assert torch.allclose(comp, eager, rtol=1e-6, atol=1e-7)
        assert torch.allclose(comp_x.grad, eager_x.grad, rtol=1e-5, atol=1e-8) and eager_x.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="NaN"):  # value checks survive compilation (torch._assert_async)
        bad = s.clone()
        bad[0, 0, 0] = float("nan")
        compiled(bad)


# --------------------------------------------------------------------------- fork
def _loss_in_child(s, t, queue):
    """Child of the fork test: compute the loss (threaded path) and report it with the child's pool state."""
    queue.put((float(L.uld_loss(s, t)), K._EXECUTOR is not None))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_forked_child_computes_the_loss_after_threaded_use(monkeypatch):
    """Regression: a child made by fork after the threaded path used to wait forever on the parent's pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _fork_after_threaded_use(monkeypatch)
    finally:
        torch.set_num_threads(threads)


def _fork_after_threaded_use(monkeypatch):
    """The fork test's body: threaded loss in this process, then the same loss in a forked child, 60 s at most."""
    monkeypatch.setattr(K, "_workers", lambda: 2)  # two worker threads even on a one-CPU machine
    torch.manual_seed(24)
    s, t = torch.randn(32, 32000) * 3, torch.randn(32, 32000) * 3  # 2 blocks of rows: the threaded path
    parent = float(L.uld_loss(s, t))
    assert K._EXECUTOR is not None, "the parent did not use the thread pool: the test would prove nothing"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_loss_in_child, args=(s, t, queue))
    start = time.monotonic()
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail(f"the forked child was still computing the loss after {time.monotonic() - start:.0f} s (hang)")
    assert child.exitcode == 0
    value, child_made_a_pool = queue.get(timeout=5)
    assert value == pytest.approx(parent, rel=1e-6) and child_made_a_pool


@pytest.mark.parametrize("top_k", [None, 30])
def test_a_second_backward_through_the_same_graph_gives_the_same_gradient(top_k):
    """The saved subgradients are scaled into new tensors, never in place (retain_graph, gradient accumulation)."""
    torch.manual_seed(25)
    s = (torch.randn(4, 120) * 3).requires_grad_(True)
    loss = L.uld_loss(s, torch.randn(4, 90) * 3, top_k=top_k)
    (first,) = torch.autograd.grad(loss, s, retain_graph=True)
    (second,) = torch.autograd.grad(loss * 2, s)
    assert torch.equal(second, 2 * first) and first.abs().sum() > 0
