"""Tests of the benchmark command and of the fast sorted-L1 kernel behind the ULD loss.

The kernel (uldviz._sorted_l1) must give the same values and gradients as the plain torch
implementation (zero-pad, stable descending torch.sort, abs, sum); no timing is asserted.
"""

import json

import pytest
import torch
import torch.nn.functional as F

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
