"""Tests of the benchmark command and of the fast sorted-L1 kernel behind the ULD loss.

The kernel (uldviz._sorted_l1) must give the same values and gradients as the plain torch
implementation (zero-pad, stable descending torch.sort, abs, sum); no timing is asserted.
"""

import json

import pytest
import torch
import torch.nn.functional as F

from uldviz import _sorted_l1 as K
from uldviz import bench as B
from uldviz import losses as L


def plain_sorted_l1(a, b):
    """Independent plain version: pad the smaller side with zeros, stable sort both descending, L1."""
    n = max(a.shape[-1], b.shape[-1])
    a = F.pad(a, (0, n - a.shape[-1])).sort(dim=-1, descending=True, stable=True).values
    b = F.pad(b, (0, n - b.shape[-1])).sort(dim=-1, descending=True, stable=True).values
    return (a - b).abs().sum(-1)


def plain_uld(s, t, ts=1.0, tt=1.0, mask=None):
    """Plain ULD loss in float32 (float64 stays float64), teacher as a constant."""
    dtype = torch.float64 if torch.float64 in (s.dtype, t.dtype) else torch.float32
    q = torch.softmax(s.to(dtype) / ts, -1)
    p = torch.softmax(t.to(dtype) / tt, -1).detach()
    per = plain_sorted_l1(q, p)
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
        ref = plain_sorted_l1(a2, b2)
        ra, rb = torch.autograd.grad(ref.sum(), (a2, b2))
        assert out.dtype == dtype and (out - ref).abs().max() <= tol
        assert (ga - ra).abs().max() == 0 and (gb - rb).abs().max() == 0


def test_negative_zero_counts_as_zero():
    p = torch.tensor([[0.5, -0.0, 0.5, 0.0]])
    q = torch.tensor([[0.25, 0.75]])
    assert float(L.uld_distance(p, q)) == pytest.approx(float(plain_sorted_l1(p.abs(), q)), abs=1e-7)


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
    assert torch.allclose(K.sorted_l1_torch(a.half(), b.half()).float(), plain_sorted_l1(a, b), atol=2e-3)


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


# --------------------------------------------------------------------------- the benchmark's own pieces
def test_reference_loop_truncates_to_the_shorter_answer():
    torch.manual_seed(6)
    s, t = torch.randn(3, 10, 50), torch.randn(3, 8, 70)
    ssz, tsz = [10, 4, 7], [8, 6, 2]
    got = B.reference_uld_loss(s, t, ssz, tsz)
    want = torch.stack([plain_uld(s[i, : min(a, b)], t[i, : min(a, b)]) for i, (a, b) in enumerate(zip(ssz, tsz))])
    assert torch.allclose(got, want.mean(), atol=1e-6)
    full = B.reference_uld_loss(s[:, :8], t, [8] * 3, [8] * 3)
    assert torch.allclose(full, L.uld_loss(s[:, :8], t), atol=1e-6)
    assert torch.allclose(B.plain_uld_loss(s[:, :8], t), L.uld_loss(s[:, :8], t), atol=1e-6)


def test_memory_probe_measures_softmax_as_one_logits_and_uld_within_target():
    res = B.bench_memory(256, 32768, 32768, "cpu", variants=("softmax", "uld"))
    if "error" in res or res.get("method", "").startswith("unavailable"):
        pytest.skip(f"peak-RSS measurement unavailable here: {res.get('error') or res.get('method')}")
    soft = res["variants"]["softmax"]["multiple_of_logits"]
    uld = res["variants"]["uld"]["multiple_of_logits"]
    assert 0.8 <= soft <= 1.5, soft
    assert 1.0 <= uld <= 5.0, uld


def test_quick_benchmark_writes_valid_json_with_all_keys(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert B.main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in ("meta", "sizes", "uld_speed", "uld_batch", "memory", "ot_scaling", "distill", "targets"):
        assert key in res, key
    case = res["uld_speed"][0]
    for name in ("floor", "uld", "plain", "reference", "kl"):
        assert case["seconds"][name] > 0
    assert case["equal_to_plain"]["grad_max_abs_diff"] <= 1e-6
    assert all(e["never_above_full"] for c in res["uld_speed"] for e in c["topk_error"].values())
    assert res["uld_batch"][0]["value_abs_diff"] <= 1e-5
    assert "exponents" in res["ot_scaling"] and (tmp_path / "bench_ot_quick.json").exists()
    assert "steps_per_s" in res["distill"] or res["distill"].get("not_measured")
    md = (tmp_path / "RESULTS.md").read_text()
    assert "## Targets" in md and "ULD forward + backward" in md
    assert "uld_over_floor_cpu_worst" in capsys.readouterr().out
    # --update re-measures one part and keeps the others.
    assert B.main(["--quick", "--out", str(out), "--update", "--only", "batch"]) == 0
    again = json.loads(out.read_text())
    assert len(again["runs"]) == 2 and again["uld_speed"] == res["uld_speed"]
    with pytest.raises(SystemExit):
        B.main(["--quick", "--only", "speed,nonsense"])


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
