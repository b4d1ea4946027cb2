"""Exact OT (POT) versus ULD's closed form: the identity, gradients, metric properties, costs, safety limits."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch

from uldviz.maths import transport as uot
from uldviz.maths.losses import uld_distance, uld_reference

SIZE_PAIRS = [(3, 3), (5, 9), (9, 5), (20, 7), (64, 64), (100, 37), (1, 6), (250, 300)]
ALPHAS = [0.05, 0.3, 1.0, 5.0]  # from very peaked to nearly flat


def closed(p, q) -> float:
    """The reference closed form (pad, sort, L1) on float64 numpy inputs, as a float."""
    return float(uld_reference(torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)))


def dirichlet_cases(seed=0):
    """Random probability pairs of different sizes and peakedness."""
    rng = np.random.default_rng(seed)
    for n, m in SIZE_PAIRS:
        for alpha in ALPHAS:
            yield rng.dirichlet(np.full(n, alpha)), rng.dirichlet(np.full(m, alpha))


# --------------------------------------------------------------------------- the identity
def test_closed_form_equals_exact_ot_and_wasserstein_1d():
    worst_emd = worst_w1d = worst_kernel = 0.0
    count = 0
    for p, q in dirichlet_cases():
        u = closed(p, q)
        worst_emd = max(worst_emd, abs(float(uot.uld_emd(p, q)) - u))
        worst_w1d = max(worst_w1d, abs(float(uot.uld_wasserstein_1d(p, q)) - u))
        worst_kernel = max(worst_kernel, abs(float(uld_distance(torch.from_numpy(p), torch.from_numpy(q))) - u))
        # and by hand, straight from POT, without the package's wrapper
        a, b, M = uot.uld_ot_problem(p, q)
        N = max(len(p), len(q))
        assert a.shape == (N,) and M.shape == (N, N)
        assert abs(N * ot.emd2(a, b, M) - u) < 1e-9
        count += 1
    assert count == len(SIZE_PAIRS) * len(ALPHAS)
    assert worst_emd < 1e-9 and worst_w1d < 1e-9 and worst_kernel < 1e-12


def test_without_padding_differs_when_sizes_differ():
    gaps_unequal, gaps_equal = [], []
    for p, q in dirichlet_cases(seed=1):
        gap = abs(float(uot.unpadded_emd(p, q)) - closed(p, q))
        (gaps_equal if len(p) == len(q) else gaps_unequal).append(gap)
    assert max(gaps_equal) < 1e-9  # same size: nothing to pad, the same problem
    assert max(gaps_unequal) > 0.3  # measured up to 1.36 in the reference notes
    assert np.median(gaps_unequal) > 1e-3


def test_batched_exact_ot_matches_closed_form():
    rng = np.random.default_rng(2)
    P = rng.dirichlet(np.ones(6), size=(2, 3))
    Q = rng.dirichlet(np.ones(11) * 0.2, size=(2, 3))
    want = uld_distance(torch.from_numpy(P), torch.from_numpy(Q)).numpy()
    assert uot.uld_emd(P, Q).shape == (2, 3)
    np.testing.assert_allclose(uot.uld_emd(P, Q), want, atol=1e-12)
    np.testing.assert_allclose(uot.uld_wasserstein_1d(P, Q), want, atol=1e-12)


def test_plan_pairs_ranks():
    p = np.array([0.5, 0.1, 0.3, 0.1])
    q = np.array([0.2, 0.7, 0.1])
    res = uot.uld_emd(p, q, return_plan=True)
    N = 4
    assert res.plan.shape == (N, N)
    np.testing.assert_allclose(res.plan.sum(0), 1 / N)
    np.testing.assert_allclose(res.plan.sum(1), 1 / N)
    # p's largest (index 0) goes to q's largest (index 1); p's 0.3 (index 2) to q's 0.2 (index 0)
    assert res.plan[0, 1] == pytest.approx(1 / N)
    assert res.plan[2, 0] == pytest.approx(1 / N)
    assert abs(res.value - closed(p, q)) < 1e-12


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("n,m", [(7, 7), (12, 5), (4, 30)])
def test_gradient_wrt_student_logits_matches_pot_torch_backend(n, m):
    gen = torch.Generator().manual_seed(n * 100 + m)
    logits = torch.randn(n, generator=gen, dtype=torch.float64) * 2
    teacher = torch.softmax(torch.randn(m, generator=gen, dtype=torch.float64) * 2, -1)

    x1 = logits.clone().requires_grad_(True)
    uld_distance(torch.softmax(x1, -1), teacher).backward()

    x2 = logits.clone().requires_grad_(True)
    s = torch.softmax(x2, -1)
    N = max(n, m)
    sp = torch.nn.functional.pad(s, (0, N - n))
    tp = torch.nn.functional.pad(teacher, (0, N - m))
    M = (sp[:, None] - tp[None, :]).abs()
    a = torch.full((N,), 1.0 / N, dtype=torch.float64)
    (N * ot.emd2(a, a.clone(), M)).backward()

    x3 = logits.clone().requires_grad_(True)
    uot.uld_emd(torch.softmax(x3, -1), teacher).backward()

    assert x1.grad.abs().max() > 1e-3  # not a vacuous zero gradient
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-10, rtol=0)
    torch.testing.assert_close(x1.grad, x3.grad, atol=1e-10, rtol=0)


def test_torch_plan_and_wasserstein_1d_keep_the_backend():
    p = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([0.5, 0.5], dtype=torch.float64)
    res = uot.uld_emd(p, q, return_plan=True)
    assert isinstance(res.value, torch.Tensor) and isinstance(res.plan, torch.Tensor)
    w = uot.uld_wasserstein_1d(p, q)
    assert isinstance(w, torch.Tensor)
    assert abs(float(w.detach()) - 0.4) < 1e-12  # |0.6-0.5| + |0.3-0.5| + |0.1-0|
    w.backward()
    assert p.grad is not None


# --------------------------------------------------------------------------- properties
def test_symmetry_and_triangle_inequality_on_many_triples():
    rng = np.random.default_rng(3)
    T = 5000
    P = torch.from_numpy(rng.dirichlet(np.full(5, 0.5), size=T))
    Q = torch.from_numpy(rng.dirichlet(np.full(7, 0.5), size=T))
    R = torch.from_numpy(rng.dirichlet(np.full(9, 0.5), size=T))
    pq, qp = uld_distance(P, Q), uld_distance(Q, P)
    assert torch.equal(pq, qp)
    pr, qr = uld_distance(P, R), uld_distance(Q, R)
    assert bool((pr <= pq + qr + 1e-12).all())
    # the inequality is tight sometimes, so it is being checked, not trivially satisfied
    assert float((pq + qr - pr).min()) < 0.05


def test_zero_exactly_when_sorted_padded_vectors_equal():
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(6))
    q_same = np.concatenate([rng.permutation(p), np.zeros(3)])  # same sorted padded vector
    assert closed(p, q_same) == 0.0
    assert float(uot.uld_emd(p, q_same)) < 1e-15
    q_near = q_same.copy()
    q_near[0] += 1e-6
    q_near[1] -= 1e-6
    assert closed(p, q_near) > 0


def test_invariant_to_any_permutation_of_either_vocabulary():
    rng = np.random.default_rng(5)
    for _ in range(50):
        p = rng.dirichlet(np.ones(8) * 0.3)
        q = rng.dirichlet(np.ones(13) * 0.3)
        base = closed(p, q)
        assert closed(rng.permutation(p), q) == base
        assert closed(p, rng.permutation(q)) == base


def test_uld_at_most_l1_on_a_shared_vocabulary_equal_when_same_ranking():
    rng = np.random.default_rng(6)
    P = rng.dirichlet(np.ones(10), size=2000)
    Q = rng.dirichlet(np.ones(10), size=2000)
    uld = uld_distance(torch.from_numpy(P), torch.from_numpy(Q)).numpy()
    l1 = np.abs(P - Q).sum(-1)
    assert (uld <= l1 + 1e-12).all()
    assert (uld < l1 - 1e-3).mean() > 0.5  # usually strictly smaller
    # same ranking of tokens on both sides: equality
    perm = rng.permutation(10)
    ps, qs = np.sort(P[0])[::-1], np.sort(Q[0])[::-1]
    a, b = np.empty(10), np.empty(10)
    a[perm], b[perm] = ps, qs
    assert closed(a, b) == pytest.approx(np.abs(a - b).sum(), abs=1e-14)


# --------------------------------------------------------------------------- token costs
def test_zero_one_cost_gives_total_variation():
    rng = np.random.default_rng(7)
    tokens = ["the", "a", "cat", "dog", "moon", "sun"]
    for _ in range(20):
        p = rng.dirichlet(np.ones(6) * 0.5)
        q = rng.dirichlet(np.ones(6) * 0.5)
        perm = rng.permutation(6)  # list the second vocabulary in another order
        res = uot.token_ot(p, q[perm], uot.zero_one_cost(tokens, [tokens[i] for i in perm]))
        tv = 0.5 * np.abs(p - q).sum()
        assert res.value == pytest.approx(tv, abs=1e-12)
        assert res.value == pytest.approx(float(uot.total_variation(p, q)), abs=1e-12)
        np.testing.assert_allclose(res.plan.sum(1), p, atol=1e-12)
    assert res.value != pytest.approx(closed(p, q))  # and it is not ULD


def test_zero_one_cost_is_constant_one_for_disjoint_vocabularies():
    rng = np.random.default_rng(8)
    values = []
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(3) * 0.3), rng.dirichlet(np.ones(4) * 0.3)
        C = uot.zero_one_cost(["dog", "cat", "moon"], ["dog_", "Cat", "sun", "sky"])
        assert C.min() == 1.0
        values.append(uot.token_ot(p, q, C).value)
    assert np.allclose(values, 1.0, atol=1e-12)


def test_twice_emd_of_sorted_vectors_with_zero_one_cost_is_uld():
    for p, q in dirichlet_cases(seed=9):
        pp, qq = uot.pad_to_common(p, q)
        N = len(pp)
        C = 1.0 - np.eye(N)
        v = 2 * ot.emd2(np.sort(pp)[::-1].copy(), np.sort(qq)[::-1].copy(), C)
        assert abs(v - closed(p, q)) < 1e-9


def test_edit_distance_cost_and_levenshtein():
    assert uot.levenshtein("kitten", "sitting") == 3
    assert uot.levenshtein("", "abc") == 3
    assert uot.levenshtein("same", "same") == 0
    C = uot.edit_distance_cost(["cat", "dog"], ["cats", "dig", ""])
    np.testing.assert_allclose(C, [[1 / 4, 1.0, 1.0], [1.0, 1 / 3, 1.0]])
    C0 = uot.zero_one_cost(["a", "b"], ["b", "a", "c"])
    np.testing.assert_array_equal(C0, [[1, 0, 1], [0, 1, 1]])
    with pytest.raises(TypeError, match="list of token strings"):
        uot.zero_one_cost("abc", ["a"])
    with pytest.raises(ValueError, match="empty"):
        uot.edit_distance_cost([], ["a"])
    with pytest.raises(TypeError, match="strings"):
        uot.edit_distance_cost([1, 2], ["a"])


def test_value_cost_is_abs_difference():
    C = uot.value_cost([0.5, 0.2], [0.1, 0.5, 0.0])
    np.testing.assert_allclose(C, [[0.4, 0.0, 0.5], [0.1, 0.3, 0.2]])


# --------------------------------------------------------------------------- entropic OT
def test_sinkhorn_is_above_exact_and_plan_is_a_coupling():
    rng = np.random.default_rng(10)
    p, q = rng.dirichlet(np.ones(8) * 0.3), rng.dirichlet(np.ones(6) * 0.3)
    exact = closed(p, q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", uot.OTWarning)
        res = uot.uld_sinkhorn(p, q, 0.05, return_plan=True)
        big = uot.uld_sinkhorn(p, q, 1.0)
    assert res.value >= exact - 1e-9
    np.testing.assert_allclose(res.plan.sum(1), 1 / 8, atol=1e-6)
    assert big > res.value > exact  # more blur, more cost
    with pytest.raises(ValueError, match="reg"):
        uot.uld_sinkhorn(p, q, 0.0)


# --------------------------------------------------------------------------- safety limits
def test_memory_refusal_says_how_much_and_what_to_do():
    p = np.full(20_000, 1 / 20_000)
    with pytest.raises(ValueError, match=r"3\.2 GB.*uld_distance"):
        uot.uld_emd(p, np.array([1.0]))
    with pytest.raises(ValueError, match="max_bytes"):
        uot.uld_emd(np.ones(20) / 20, np.ones(20) / 20, max_bytes=1000)
    with pytest.raises(ValueError, match="GB"):
        uot.uld_sinkhorn(p, np.array([1.0]), 0.1)
    # a size under the cap is fine
    assert uot.uld_emd(np.ones(20) / 20, np.ones(20) / 20, max_bytes=20 * 20 * 8) == 0.0
    assert uot.cost_matrix_bytes(10_000) == 800_000_000


def test_num_itermax_is_raised_and_early_stops_are_surfaced():
    rng = np.random.default_rng(11)
    p, q = rng.dirichlet(np.ones(300) * 0.3), rng.dirichlet(np.ones(300) * 0.3)
    exact = closed(p, q)
    # too few iterations: POT stops early with a sub-optimal value -> the user is told, loudly
    with pytest.warns(uot.OTWarning, match="numItermax"):
        short = uot.uld_emd(p, q, num_itermax=500)
    assert abs(short - exact) > 1e-6  # the early stop really gave a wrong number
    # the default limit scales with N: no warning, the exact value
    with warnings.catch_warnings():
        warnings.simplefilter("error", uot.OTWarning)
        assert abs(uot.uld_emd(p, q) - exact) < 1e-12
    # POT's own default (100,000) warns at N = 10,000 (reference notes); ours is 1e9 there
    assert uot.default_num_itermax(10_000) >= 10**9
    assert uot.default_num_itermax(10) == 100_000


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "p,q,err,match",
    [
        (np.array([0.5, np.nan]), np.array([1.0]), ValueError, "NaN"),
        (np.array([1.5, -0.5]), np.array([1.0]), ValueError, "negative"),
        (np.array([]), np.array([1.0]), ValueError, "empty"),
        (np.array([0.5, np.inf]), np.array([1.0]), ValueError, "inf"),
        (np.ones((2, 3)) / 3, np.ones((3, 3)) / 3, ValueError, "leading"),
        (np.array(0.5), np.array([1.0]), ValueError, "scalar"),
        (["a", "b"], np.array([1.0]), TypeError, "numbers"),
        (torch.tensor([0.5, 0.5]), np.array([1.0]), TypeError, "both"),
    ],
)
def test_bad_input_is_named(p, q, err, match):
    with pytest.raises(err, match=match):
        uot.uld_emd(p, q)


def test_token_ot_checks_cost_shape_and_masses():
    p, q = np.array([0.5, 0.5]), np.array([0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="shape"):
        uot.token_ot(p, q, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="same total mass"):
        uot.token_ot(p, np.array([0.2, 0.3, 0.6]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        uot.token_ot(p, q, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="single vectors"):
        uot.uld_emd(np.ones((2, 3)) / 3, np.ones((2, 3)) / 3, return_plan=True)


def test_unrelated_warnings_during_a_solve_pass_through_unchanged(monkeypatch):
    """Only POT's own warnings become OTWarning; e.g. a ResourceWarning from garbage collection does not."""
    real = ot.emd2

    def noisy(*args, **kwargs):
        warnings.warn("an unclosed socket, nothing to do with OT", ResourceWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(ot, "emd2", noisy)
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.6, 0.4])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = uot.uld_emd(p, q)
    assert value == pytest.approx(float(uld_distance(p, q)), abs=1e-12)
    assert any(w.category is ResourceWarning for w in caught)
    assert not any(issubclass(w.category, uot.OTWarning) for w in caught)
