"""Tests of uldviz.maths.losses: KL on one vocabulary, ULD's closed form vs the reference, top-k ULD and bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from uldviz.maths import losses as L


def plain_uld(student_logits, teacher_logits, ts=1.0, tt=1.0):
    """Per-position ULD in float64 from the package's one reference (pad, sort, L1), tested below by hand."""
    q = torch.softmax(student_logits.double() / ts, -1)
    p = torch.softmax(teacher_logits.double() / tt, -1)
    return L.uld_reference(q, p)


def test_reference_by_hand():
    # p sorted: .5 .3 .2; q padded and sorted: .7 .3 0 -> |.5-.7| + |.3-.3| + |.2-0| = 0.4
    p, q = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), torch.tensor([0.3, 0.7], dtype=torch.float64)
    assert float(L.uld_reference(p, q)) == pytest.approx(0.4, abs=1e-15)
    a, b = L.sorted_padded(p, q)
    assert a.tolist() == [0.5, 0.3, 0.2] and b.tolist() == [0.7, 0.3, 0.0]


# --------------------------------------------------------------------------- KL
def test_kl_matches_definition_and_is_zero_on_equal_inputs():
    torch.manual_seed(0)
    s, t = torch.randn(4, 10, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64)
    p, q = torch.softmax(t, -1), torch.softmax(s, -1)
    expected = (p * (p.log() - q.log())).sum(-1).mean()
    assert torch.allclose(L.kl_divergence(s, t), expected, atol=1e-12)
    assert float(L.kl_divergence(t, t)) == pytest.approx(0.0, abs=1e-12)


def test_kl_refuses_different_vocabularies_and_names_both_sizes():
    with pytest.raises(ValueError) as err:
        L.kl_divergence(torch.randn(2, 3), torch.randn(2, 5))
    msg = str(err.value)
    assert "3" in msg and "5" in msg and "ULD" in msg


def test_kl_handles_zero_teacher_probability_without_nan():
    # teacher (0.5, 0.5, 0): the token it rules out contributes exactly 0, not 0 * log 0 = NaN
    t = torch.tensor([[0.0, 0.0, float("-inf")]], dtype=torch.float64)
    s = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    z = 1 + math.e + math.e**2
    by_hand = 0.5 * math.log(0.5 / (1 / z)) + 0.5 * math.log(0.5 / (math.e / z))
    assert float(L.kl_divergence(s, t)) == pytest.approx(by_hand, rel=1e-12)


def test_batchmean_is_the_kits_mean_and_torchs_batchmean():
    torch.manual_seed(14)
    s, t = torch.randn(6, 10, dtype=torch.float64), torch.randn(6, 10, dtype=torch.float64)
    torch_batchmean = F.kl_div(torch.log_softmax(s, -1), torch.softmax(t, -1), reduction="batchmean")
    assert float(L.kl_divergence(s, t, reduction="batchmean")) == pytest.approx(float(torch_batchmean), rel=1e-12)
    assert float(L.kl_divergence(s, t, reduction="mean")) == pytest.approx(float(torch_batchmean), rel=1e-12)
    per_pos = L.kl_divergence(s, t, reduction="none")
    assert per_pos.shape == (6,) and float(L.kl_divergence(s, t, reduction="sum")) == pytest.approx(
        float(per_pos.sum()), rel=1e-12)
    t2 = torch.randn(6, 13, dtype=torch.float64)
    assert float(L.uld_loss(s, t2, reduction="batchmean")) == float(L.uld_loss(s, t2, reduction="mean"))
    assert float(L.uld_loss(s, t2, reduction="batchmean")) == pytest.approx(float(plain_uld(s, t2).mean()), rel=1e-12)
    for fn in (L.kl_divergence, L.uld_loss):
        with pytest.raises(ValueError, match="batchmean"):
            fn(s, t, reduction="elementwise_mean")


def test_naive_kl_shows_inf_and_nan_as_raw_torch_does():
    # teacher {dog, cat, moon, sun=0}, student {dog, cat, moon=0, sun}
    # (student, teacher): the teacher has mass on 'moon', which the student rules out
    assert math.isinf(float(L.naive_kl_div([0.4, 0.4, 0.0, 0.2], [0.5, 0.3, 0.2, 0.0])))
    # KL(teacher || student), not the reverse: student (0.5, 0.5), teacher (0.9, 0.1)
    want = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert float(L.naive_kl_div([0.5, 0.5], [0.9, 0.1])) == pytest.approx(want, rel=1e-12)
    assert math.isnan(float(L.naive_kl_div([0.5, 0.5, 0.0], [0.5, 0.5, 0.0])))
    with pytest.raises(RuntimeError):
        L.naive_kl_div([0.5, 0.5, 0.0], [0.5, 0.5])


def test_forced_kl_is_finite_but_depends_on_the_arbitrary_choice():
    torch.manual_seed(1)
    t, s = torch.randn(7, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    a, b = L.forced_kl_div(s, t, "truncate"), L.forced_kl_div(s, t, "pad")
    assert torch.isfinite(a) and torch.isfinite(b) and abs(float(a - b)) > 1e-3
    # truncate = KL(teacher || student) on the first 4 ids, each renormalised
    p, q = torch.softmax(t[:4], -1), torch.softmax(s, -1)
    assert float(a) == pytest.approx(float((p * (p / q).log()).sum()), rel=1e-12)
    with pytest.raises(ValueError, match="how"):
        L.forced_kl_div(s, t, "interpolate")


# --------------------------------------------------------------------------- ULD closed form
@pytest.mark.parametrize("vs,vt", [(7, 7), (5, 11), (13, 3)])
def test_uld_loss_equals_plain_implementation(vs, vt):
    torch.manual_seed(vs * 100 + vt)
    s, t = torch.randn(3, 4, vs, dtype=torch.float64), torch.randn(3, 4, vt, dtype=torch.float64)
    expected = plain_uld(s, t).mean()
    assert torch.allclose(L.uld_loss(s, t), expected, atol=1e-12)
    per_pos = L.uld_loss(s, t, reduction="none")
    assert per_pos.shape == (3, 4)
    assert torch.allclose(per_pos, plain_uld(s, t), atol=1e-12)


def test_uld_separate_temperatures():
    torch.manual_seed(2)
    s, t = torch.randn(5, 9, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    got = L.uld_loss(s, t, student_temperature=2.0, teacher_temperature=0.5)
    assert torch.allclose(got, plain_uld(s, t, 2.0, 0.5).mean(), atol=1e-12)
    assert not torch.allclose(got, L.uld_loss(s, t))


def test_uld_mask_averages_only_selected_positions():
    torch.manual_seed(3)
    s, t = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 5, 6, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    expected = plain_uld(s, t)[mask].mean()
    assert torch.allclose(L.uld_loss(s, t, mask=mask), expected, atol=1e-12)
    assert torch.allclose(L.uld_loss(s, t, mask=mask.int()), expected, atol=1e-12)
    assert torch.allclose(L.uld_loss(s, t, mask=mask, reduction="sum"), plain_uld(s, t)[mask].sum(), atol=1e-12)


def test_uld_is_differentiable_and_teacher_gets_no_gradient():
    torch.manual_seed(4)
    s = torch.randn(4, 6, 10, requires_grad=True)
    t = torch.randn(4, 6, 12, requires_grad=True)
    L.uld_loss(s, t).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


def test_uld_gradient_matches_finite_differences():
    torch.manual_seed(5)
    s = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 9, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: L.uld_loss(x, t), (s,), eps=1e-7, atol=1e-6)


def test_uld_zero_for_identical_and_permuted_distributions():
    torch.manual_seed(6)
    t = torch.randn(3, 50, dtype=torch.float64)
    assert float(L.uld_loss(t, t)) == 0.0
    perm = torch.randperm(50)
    assert float(L.uld_loss(t[:, perm], t)) == pytest.approx(0.0, abs=1e-15)
    # padding the student vocabulary with -inf logits (probability 0) changes nothing
    padded = torch.cat([t, torch.full((3, 20), float("-inf"), dtype=torch.float64)], -1)
    assert float(L.uld_loss(padded, t)) == pytest.approx(0.0, abs=1e-15)


def test_uld_bounded_by_l1_on_shared_vocabulary_and_by_two():
    torch.manual_seed(7)
    for _ in range(50):
        p = torch.distributions.Dirichlet(torch.full((20,), 0.3)).sample().double()
        q = torch.distributions.Dirichlet(torch.full((20,), 0.3)).sample().double()
        u = float(L.uld_distance(p, q))
        assert u <= float((p - q).abs().sum()) + 1e-12
        assert 0.0 <= u <= 2.0 + 1e-12


def test_uld_limits_in_temperature():
    torch.manual_seed(8)
    s, t = torch.randn(200, dtype=torch.float64), torch.randn(500, dtype=torch.float64)
    assert float(L.uld_loss(s, t, student_temperature=1e-4, teacher_temperature=1e-4)) < 1e-6
    # as T -> inf both become uniform: sorted padded vectors differ by 2(1 - m/n)
    hot = float(L.uld_loss(s, t, student_temperature=1e6, teacher_temperature=1e6))
    assert hot == pytest.approx(2 * (1 - 200 / 500), rel=1e-4)


def test_vocab_of_size_one_is_a_documented_result():
    # the size-1 side always has probability [1]; ULD = 2 (1 - max q)
    s = torch.tensor([[3.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    q = torch.softmax(t, -1)
    assert float(L.uld_loss(s, t)) == pytest.approx(float(2 * (1 - q.max())), abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_within_one_percent_of_float64(dtype):
    torch.manual_seed(9)
    s, t = torch.randn(64, 3000) * 3, torch.randn(64, 2000) * 3
    ref = float(plain_uld(s.to(dtype).double(), t.to(dtype).double()).mean())
    got = L.uld_loss(s.to(dtype), t.to(dtype))
    assert got.dtype == torch.float32
    assert abs(float(got) - ref) / ref < 0.01


# --------------------------------------------------------------------------- top-k
def test_topk_with_tail_is_close_and_never_exceeds_full():
    torch.manual_seed(10)
    s, t = torch.randn(32, 4000, dtype=torch.float64) * 3, torch.randn(32, 3000, dtype=torch.float64) * 3
    q, p = torch.softmax(s, -1), torch.softmax(t, -1)
    full = L.uld_distance(q, p)
    tail = L.uld_topk_distance(q, p, 500)
    trunc = L.uld_topk_distance(q, p, 500, tail=False)
    assert (tail <= full + 1e-12).all() and (trunc <= tail + 1e-12).all()
    rel_tail = ((full - tail) / full).mean()
    rel_trunc = ((full - trunc) / full).mean()
    assert rel_tail < 0.02 and rel_trunc > 3 * rel_tail
    # k covering both vocabularies is exact
    assert torch.allclose(L.uld_topk_distance(q, p, 4000), full, atol=1e-12)


def test_topk_through_uld_loss_is_differentiable():
    s = torch.randn(3, 100, requires_grad=True)
    out = L.uld_loss(s, torch.randn(3, 80), top_k=10)
    out.backward()
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize(
    "k,exc", [(0, ValueError), (-3, ValueError), (101, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_topk_bad_k(k, exc):
    with pytest.raises(exc, match="top_k"):
        L.uld_topk_distance(torch.rand(2, 100), torch.rand(2, 50), top_k=k)
    with pytest.raises(exc, match="top_k"):
        L.uld_loss(torch.rand(2, 100), torch.rand(2, 50), top_k=k)


# --------------------------------------------------------------------------- bad input
BAD_LOGITS = {
    "NaN": (torch.tensor([[0.0, float("nan"), 1.0]]), "NaN"),
    "+inf": (torch.tensor([[0.0, float("inf"), 1.0]]), r"\+inf"),
    "all -inf": (torch.full((2, 3), float("-inf")), "all -inf"),
    "empty batch": (torch.zeros(0, 4), "empty batch"),
    "vocab 0": (torch.zeros(2, 0), "size 0"),
}


@pytest.mark.parametrize("case", list(BAD_LOGITS))
@pytest.mark.parametrize("side", ["student", "teacher"])
def test_bad_logits_raise_clear_errors(case, side):
    bad, pattern = BAD_LOGITS[case]
    good = torch.zeros(bad.shape[:-1] + (5,)) if bad.numel() else torch.zeros(2, 5)
    args = (bad, good) if side == "student" else (good, bad)
    with pytest.raises(ValueError, match=pattern) as err:
        L.uld_loss(*args)
    assert f"{side}_logits" in str(err.value)


def test_neg_inf_entries_are_allowed_and_give_finite_gradients():
    s = torch.tensor([[0.0, float("-inf"), 1.0]], requires_grad=True)
    out = L.uld_loss(s, torch.tensor([[1.0, 2.0]]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(s.grad).all()


def test_mismatched_positions_and_masks():
    with pytest.raises(ValueError, match="positions do not match"):
        L.uld_loss(torch.randn(2, 3, 5), torch.randn(2, 4, 7))
    with pytest.raises(ValueError, match="positions do not match"):
        L.uld_loss(torch.randn(3, 5), torch.randn(2, 5))
    with pytest.raises(ValueError, match="mask has shape"):
        L.uld_loss(torch.randn(2, 3, 5), torch.randn(2, 3, 7), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="selects no position"):
        L.uld_loss(torch.randn(2, 5), torch.randn(2, 7), mask=torch.zeros(2, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask"):
        L.uld_loss(torch.randn(2, 5), torch.randn(2, 7), mask=torch.tensor([0.5, 1.0]))


@pytest.mark.parametrize("temp", [0, -1.0, float("inf"), float("nan")])
def test_bad_temperatures(temp):
    with pytest.raises(ValueError, match="temperature"):
        L.uld_loss(torch.randn(2, 5), torch.randn(2, 7), student_temperature=temp)


def test_non_float_inputs_are_type_errors():
    with pytest.raises(TypeError, match="floating"):
        L.uld_loss(torch.ones(2, 5, dtype=torch.long), torch.randn(2, 7))
    with pytest.raises(TypeError):
        L.uld_loss("logits", torch.randn(2, 7))


def test_distance_refuses_non_probabilities():
    with pytest.raises(ValueError, match="negative"):
        L.uld_distance(torch.tensor([0.5, -0.1]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        L.uld_distance(torch.tensor([0.5, float("nan")]), torch.tensor([1.0]))


def test_cross_entropy_and_objective():
    torch.manual_seed(11)
    x, y = torch.randn(2, 4, 9), torch.randint(0, 9, (2, 4))
    y[0, 0] = -100
    ce = L.cross_entropy(x, y)
    assert torch.allclose(ce, F.cross_entropy(x.reshape(-1, 9), y.reshape(-1), ignore_index=-100))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        L.cross_entropy(x, torch.full((2, 4), 9))
    with pytest.raises(ValueError, match="labels have shape"):
        L.cross_entropy(x, torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="ignore_index"):
        L.cross_entropy(x, torch.full((2, 4), -100))


# --------------------------------------------------------------------------- two devices
def _every_public_loss(student, teacher):
    """Each public loss called with (student, teacher) on whatever devices they are."""
    return {
        "uld_loss": lambda: L.uld_loss(student, teacher),
        "uld_loss top_k": lambda: L.uld_loss(student, teacher, top_k=2),
        "kl_divergence": lambda: L.kl_divergence(student, teacher),
        "uld_distance": lambda: L.uld_distance(student, teacher),
        "uld_topk_distance": lambda: L.uld_topk_distance(student, teacher, 2),
        "uld_reference": lambda: L.uld_reference(student, teacher),
        "sorted_padded": lambda: L.sorted_padded(student, teacher),
        "naive_kl_div": lambda: L.naive_kl_div(student, teacher),
        "forced_kl_div": lambda: L.forced_kl_div(student, teacher),
        "temperature_curve": lambda: L.temperature_curve(student[0], teacher[0], [1.0]),
    }


@pytest.mark.parametrize("name", list(_every_public_loss(None, None)))
@pytest.mark.parametrize("meta_side", ["student", "teacher"])
def test_logits_on_two_devices_are_refused_by_name(name, meta_side):
    """A 'meta' tensor stands for a second device (no GPU needed): the error names both devices."""
    cpu = torch.rand(2, 5)
    meta = torch.empty(2, 5, device="meta")
    student, teacher = (meta, cpu) if meta_side == "student" else (cpu, meta)
    with pytest.raises(ValueError, match="device") as err:
        _every_public_loss(student, teacher)[name]()
    assert "meta" in str(err.value) and "cpu" in str(err.value)


# --------------------------------------------------------------------------- temperature
def test_temperature_curve_limits_and_values():
    torch.manual_seed(15)
    s, t = torch.randn(200, dtype=torch.float64), torch.randn(500, dtype=torch.float64)
    temps = [1e-4, 0.7, 3.0, 1e6]
    curve = L.temperature_curve(s, t, temps)
    assert curve.shape == (4,) and curve[0] < 1e-6
    assert curve[-1] == pytest.approx(L.large_temperature_limit(200, 500), rel=1e-4)
    assert L.large_temperature_limit(200, 500) == pytest.approx(2 * (1 - 200 / 500))
    for T, v in zip(temps[1:3], curve[1:3]):
        assert v == pytest.approx(float(L.uld_loss(s, t, student_temperature=T, teacher_temperature=T)), rel=1e-12)
    with pytest.raises(ValueError, match="temperatures"):
        L.temperature_curve(s, t, [1.0, 0.0])
    with pytest.raises(ValueError, match=">= 1"):
        L.large_temperature_limit(0, 5)


# --------------------------------------------------------------------------- the GPU code path
def test_torch_kernel_used_on_gpu_matches_plain_values_and_gradients():
    """The pure-torch sorted L1 (what CUDA runs) equals the plain padded sort, gradients included."""
    from uldviz.maths._sorted_l1 import sorted_l1_torch

    torch.manual_seed(12)
    s = torch.randn(3, 4, 40, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, 25, dtype=torch.float64)
    got = sorted_l1_torch(torch.softmax(s, -1), torch.softmax(t, -1)).mean()
    (g_got,) = torch.autograd.grad(got, s)
    want = plain_uld(s, t).mean()
    (g_want,) = torch.autograd.grad(want, s)
    assert torch.allclose(got, want, atol=1e-12) and torch.allclose(g_got, g_want, atol=1e-12)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_uld_loss_on_cuda_matches_cpu(dtype):
    torch.manual_seed(13)
    s, t = torch.randn(8, 16, 3000), torch.randn(8, 16, 2000)
    cpu = L.uld_loss(s.to(dtype).float(), t.to(dtype).float())
    sc = s.to("cuda", dtype).requires_grad_()
    gpu = L.uld_loss(sc, t.to("cuda", dtype))
    gpu.backward()
    assert gpu.device.type == "cuda" and torch.isfinite(sc.grad).all()
    assert abs(float(gpu) - float(cpu)) / float(cpu) < 1e-4
