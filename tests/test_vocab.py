"""Tests of uldviz.maths.patches (toy vocabularies, KL patches, ULD) and its plots, against uldviz.maths.losses."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from uldviz.maths import losses  # noqa: E402
from uldviz.maths import patches as V  # noqa: E402
from uldviz.train.metrics import next_token_probs  # noqa: E402
from uldviz.viz.plots import vocab as P  # noqa: E402


def test_toy_pair_vocabularies_differ_and_are_copies():
    t, s = V.toy_pair()
    assert list(t) == ["dog", "cat", "moon"] and list(s) == ["dog", "cat", "sun"]
    t["dog"] = 0.0
    assert V.TOY_TEACHER["dog"] == 0.5


def test_union_and_intersection_keep_id_order():
    t, s = V.toy_pair()
    assert V.union_vocab(t, s) == ["dog", "cat", "moon", "sun"]
    assert V.intersection_vocab(t, s) == ["dog", "cat"]
    p, q = V.aligned_probs(t, s)
    assert p.tolist() == [0.5, 0.3, 0.2, 0.0] and q.tolist() == [0.4, 0.4, 0.0, 0.2]


def test_aligned_kl_is_inf_like_raw_torch():
    t, s = V.toy_pair()
    kl = V.aligned_kl(t, s)
    assert torch.isinf(kl) and kl > 0
    p, q = V.aligned_probs(t, s)
    assert torch.isinf(F.kl_div(q.log(), p, reduction="sum"))


def test_aligned_kl_is_nan_when_a_label_has_zero_on_both_sides():
    _, s = V.toy_pair()
    assert torch.isnan(V.aligned_kl({"dog": 1.0, "cat": 0.0, "moon": 0.0}, s))


def test_aligned_kl_is_finite_and_matches_kl_divergence_on_a_shared_vocabulary():
    p = {"a": 0.5, "b": 0.3, "c": 0.2}
    q = {"a": 0.25, "b": 0.25, "c": 0.5}
    pv, qv = V.aligned_probs(p, q)
    expected = losses.kl_divergence(qv.log(), pv.log())
    assert float(V.aligned_kl(p, q)) == pytest.approx(float(expected), rel=1e-12)
    by_hand = sum(p[k] * math.log(p[k] / q[k]) for k in p)
    assert float(expected) == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("bad, err", [
    ({"a": 0.5, "b": 0.6}, ValueError),
    ({"a": -0.1, "b": 1.1}, ValueError),
    ({"a": float("nan"), "b": 1.0}, ValueError),
    ({}, ValueError),
    ({1: 1.0}, TypeError),
    ({"a": "x"}, TypeError),
    ([0.5, 0.5], TypeError),
])
def test_bad_distributions_raise_clear_errors(bad, err):
    with pytest.raises(err):
        V.check_distribution(bad, "teacher")


def test_sum_error_message_names_the_total():
    with pytest.raises(ValueError, match="sums to 1.1"):
        V.check_distribution({"a": 0.5, "b": 0.6}, "teacher")


def test_normalise():
    assert V.normalise({"a": 2, "b": 6}) == {"a": 0.25, "b": 0.75}
    with pytest.raises(ValueError):
        V.normalise({"a": 0, "b": 0})


# ------------------------------------------------------------------ patch (a)
def test_smoothed_kl_matches_losses_and_explodes_as_eps_shrinks():
    t, s = V.toy_pair()
    eps = 1e-6
    p, q = V.aligned_probs(t, s)
    ps, qs = (p + eps) / (1 + 4 * eps), (q + eps) / (1 + 4 * eps)
    by_hand = float((ps * (ps / qs).log()).sum())
    assert V.smoothed_kl(t, s, eps) == pytest.approx(by_hand, rel=1e-10)
    assert V.smoothed_kl(t, s, eps) == pytest.approx(float(losses.kl_divergence(qs.log(), ps.log())), rel=1e-12)
    eps_grid = np.logspace(-16, -1, 16)
    kls = V.kl_vs_epsilon(t, s, eps_grid)
    assert all(a > b for a, b in zip(kls, kls[1:])), "smaller ε must give a larger KL here"
    ratio = V.swing_ratio(kls)
    assert ratio > 30
    # each factor 10 of ε adds about p_T(moon) * ln 10 nats at small ε
    assert kls[0] - kls[1] == pytest.approx(0.2 * math.log(10), rel=1e-3)


@pytest.mark.parametrize("eps", [0, -1e-3, float("inf"), float("nan")])
def test_smoothing_refuses_bad_eps(eps):
    t, s = V.toy_pair()
    with pytest.raises(ValueError):
        V.smoothed_kl(t, s, eps)


def test_smooth_sums_to_one_and_has_no_zero():
    x = V.smooth(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), 1e-3)
    assert float(x.sum()) == pytest.approx(1.0) and (x > 0).all()


def test_swing_ratio_refuses_non_positive():
    with pytest.raises(ValueError):
        V.swing_ratio([0.0, 1.0])


# ------------------------------------------------------------------ patch (b)
def test_intersection_kl_ignores_moon_and_sun():
    t, s = V.disagreeing_pair()
    assert V.intersection_kl(t, s) == 0.0
    assert V.shared_mass(t, s) == pytest.approx((0.1, 0.5))
    # ... while the predictions are very different: ULD sees it
    assert V.uld(t, s) == pytest.approx(0.8)


def test_intersection_kl_matches_kl_divergence_after_renormalising():
    t, s = V.toy_pair()
    p = torch.tensor([0.5, 0.3], dtype=torch.float64) / 0.8
    q = torch.tensor([0.4, 0.4], dtype=torch.float64) / 0.8
    assert V.intersection_kl(t, s) == pytest.approx(float(losses.kl_divergence(q.log(), p.log())), rel=1e-12)


def test_intersection_kl_errors():
    with pytest.raises(ValueError, match="share no token"):
        V.intersection_kl({"a": 1.0}, {"b": 1.0})
    with pytest.raises(ValueError, match="student puts no probability"):
        V.intersection_kl({"a": 0.5, "b": 0.5}, {"a": 0.0, "c": 1.0})


# ------------------------------------------------------------------ patch (c)
def test_blind_id_matching_compares_unrelated_tokens():
    t, s = V.toy_pair()
    assert V.blind_id_pairs(t, s)[2] == ("moon", "sun")
    r = V.reorder(s, ["sun", "dog", "cat"])
    assert V.blind_id_pairs(t, r) == [("dog", "sun"), ("cat", "dog"), ("moon", "cat")]
    # same predictions, another id numbering: blind KL changes, ULD does not
    assert V.blind_id_kl(t, r) > 5 * V.blind_id_kl(t, s)
    assert V.uld(t, r) == V.uld(t, s)


def test_blind_id_kl_equals_forced_kl_div():
    t, s = V.toy_pair()
    pv = torch.tensor(list(t.values()), dtype=torch.float64)
    qv = torch.tensor(list(s.values()), dtype=torch.float64)
    assert V.blind_id_kl(t, s) == pytest.approx(float(losses.forced_kl_div(qv.log(), pv.log())), rel=1e-12)
    by_hand = sum(a * math.log(a / b) for a, b in zip(pv.tolist(), qv.tolist()))
    assert V.blind_id_kl(t, s) == pytest.approx(by_hand, rel=1e-12)


def test_blind_id_agreement():
    out = V.blind_id_agreement(["a", "b", "c"], ["a", "x", "c", "d"])
    assert out == {"compared": 3, "same": 2, "fraction": pytest.approx(2 / 3)}
    with pytest.raises(ValueError):
        V.blind_id_agreement([], ["a"])


def test_reorder_refuses_wrong_tokens():
    with pytest.raises(ValueError):
        V.reorder(V.TOY_STUDENT, ["dog", "cat", "moon"])


# ------------------------------------------------------------------ ULD
def test_uld_matches_losses_and_is_zero_for_equal_values():
    t, s = V.toy_pair()
    assert V.uld(t, s) == pytest.approx(0.2)
    pv = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    qv = torch.tensor([0.4, 0.4, 0.2], dtype=torch.float64)
    assert V.uld(t, s) == pytest.approx(float(losses.uld_distance(pv, qv)))
    assert V.uld(t, t) == 0.0
    assert V.uld(t, {"x": 0.2, "y": 0.5, "z": 0.3, "w": 0.0}) == pytest.approx(0.0)


def test_swap_tokens_is_the_blind_spot():
    t, _ = V.toy_pair()
    swapped = V.swap_tokens(t, "dog", "moon")
    assert swapped == {"dog": 0.2, "cat": 0.3, "moon": 0.5}
    assert V.uld(t, swapped) == 0.0
    kl = 0.5 * math.log(0.5 / 0.2) + 0.2 * math.log(0.2 / 0.5)  # KL on the shared vocabulary sees the swap
    assert float(V.aligned_kl(t, swapped)) == pytest.approx(kl) and kl > 0.25
    with pytest.raises(ValueError):
        V.swap_tokens(t, "dog", "sun")


def test_format_value():
    assert V.format_value(float("inf")) == "inf"
    assert V.format_value(torch.tensor(float("nan"))) == "NaN"
    assert V.format_value(0.123456) == "0.1235"


# ------------------------------------------------------------------ plots
def test_plots_return_figures_with_expected_axes():
    t, s = V.toy_pair()
    a, b = V.disagreeing_pair()
    eps = np.logspace(-8, -1, 8)
    kls = V.kl_vs_epsilon(t, s, eps)
    figs = {
        "dist": P.plot_distributions(t, s),
        "aligned": P.plot_aligned(t, s),
        "eps": P.plot_kl_vs_epsilon(eps, kls, ratio=V.swing_ratio(kls)),
        "inter": P.plot_intersection_patch(a, b),
        "blind": P.plot_blind_matching(t, V.reorder(s, ["sun", "dog", "cat"])),
        "sorted": P.plot_sorted_padded(t, {"x": 0.5, "y": 0.3, "z": 0.1, "w": 0.1}),
    }
    try:
        d = figs["dist"].axes
        assert len(d) == 2
        assert [x.get_text() for x in d[0].get_xticklabels()] == ["dog", "cat", "moon"]
        assert [x.get_text() for x in d[1].get_xticklabels()] == ["dog", "cat", "sun"]
        ax = figs["eps"].axes[0]
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert "max / min" in ax.get_title()
        assert len(figs["sorted"].axes[0].patches) == 8  # 4 ranks x 2 sides, the teacher zero-padded
        assert "0.2" in figs["sorted"].axes[0].get_title()
        assert len(figs["inter"].axes) == 2
    finally:
        for f in figs.values():
            plt.close(f)


def test_plot_kl_vs_epsilon_refuses_mismatched_lengths():
    with pytest.raises(ValueError):
        P.plot_kl_vs_epsilon([1e-3, 1e-2], [1.0])


# ------------------------------------------------------------------ what each patch would teach (gradients)
def _finite_difference(fn, student, h=1e-6):
    """∂ fn(student probabilities) / ∂ z_v for z = log p_S, by central differences on the logits."""
    toks = list(student)
    z = torch.tensor([student[t] for t in toks], dtype=torch.float64).log()
    out = {}
    for i, t in enumerate(toks):
        vals = []
        for sign in (1, -1):
            zz = z.clone()
            zz[i] += sign * h
            vals.append(fn(dict(zip(toks, torch.softmax(zz, -1).tolist()))))
        out[t] = (vals[0] - vals[1]) / (2 * h)
    return out


def test_patch_gradients_agree_with_finite_differences_of_the_values():
    t, s = V.toy_pair()
    s = {"dog": 0.45, "cat": 0.4, "sun": 0.15}  # no tie within or across the sorted vectors: ULD is differentiable
    grads = V.patch_gradients(t, s, eps=1e-6)
    a, b, c, u = V.PATCH_NAMES
    checks = {a: lambda q: V.smoothed_kl(t, q, 1e-6), b: lambda q: V.intersection_kl(t, q),
              c: lambda q: V.blind_id_kl(t, q), u: lambda q: V.uld(t, q)}
    for name, fn in checks.items():
        fd = _finite_difference(fn, s)
        assert grads[name] == pytest.approx(fd, abs=1e-6), name


def test_smoothed_kl_gradient_hardly_moves_with_eps_and_tends_to_m_ps_minus_pt():
    t, s = V.toy_pair()
    m = sum(t.get(v, 0.0) for v in s)  # the teacher's mass on the student's tokens
    limit = {v: m * s[v] - t.get(v, 0.0) for v in s}
    assert V.smoothed_kl_gradient(t, s, 1e-12) == pytest.approx(limit, abs=1e-9)
    curves = V.gradient_vs_epsilon(t, s, np.logspace(-16, -4, 13))
    assert set(curves) == {"dog", "cat", "sun"}  # no entry for moon: the student has no logit for it
    for values in curves.values():
        assert max(values) - min(values) < 1e-3
    # ... while the value itself changes by a factor of more than 4 over the same range
    kls = V.kl_vs_epsilon(t, s, [1e-16, 1e-4])
    assert kls[0] / kls[1] > 4


def test_patch_gradients_what_each_patch_teaches():
    t, s = V.toy_pair()
    a, b, c, u = V.PATCH_NAMES
    g = V.patch_gradients(t, s)
    assert g[b]["sun"] == 0.0  # (b) never sees the student's own token
    renumbered = V.patch_gradients(t, V.reorder(s, ["sun", "dog", "cat"]))
    assert abs(renumbered[c]["sun"] - g[c]["sun"]) > 0.1  # (c) depends on the id numbering
    assert renumbered[a] == pytest.approx(g[a]) and renumbered[u] == pytest.approx(g[u])
    confident, hedging = V.disagreeing_pair()
    assert max(abs(x) for x in V.patch_gradients(confident, hedging)[b].values()) < 1e-12  # (b) teaches nothing
    none_shared = V.patch_gradients({"moon": 1.0}, {"dog": 0.5, "sun": 0.5})
    assert all(math.isnan(x) for x in none_shared[b].values())  # undefined, said with NaN


def test_gradients_refuse_a_student_with_a_zero_probability():
    t, _ = V.toy_pair()
    with pytest.raises(ValueError, match="probability 0"):
        V.patch_gradients(t, {"dog": 1.0, "cat": 0.0, "sun": 0.0})
    with pytest.raises(ValueError, match="empty"):
        V.gradient_vs_epsilon(t, V.toy_pair()[1], [])


# ------------------------------------------------------------------ a real teacher's next-token distributions
class _CountingLM(torch.nn.Module):
    """A fake causal LM: its logits at every position favour token (id + 1) mod V; it records the lengths it read."""

    def __init__(self, vocab_size=5):
        super().__init__()
        self.vocab_size, self.lengths = vocab_size, []
        self.device = torch.device("cpu")

    def forward(self, ids):
        self.lengths.append(ids.shape[1])
        logits = torch.full((*ids.shape, self.vocab_size), -5.0)
        logits.scatter_(-1, ((ids + 1) % self.vocab_size)[..., None], 5.0)
        return type("Out", (), {"logits": logits})()


def test_next_token_probs_reads_blocks_and_returns_one_distribution_per_position():
    model = _CountingLM()
    tokenizer = lambda text, add_special_tokens=False: {"input_ids": [ord(ch) % 5 for ch in text]}  # noqa: E731
    probs = next_token_probs(model, tokenizer, "abcdefghij", block=4, max_positions=7)
    assert probs.shape == (7, 5) and torch.allclose(probs.sum(-1), torch.ones(7))
    assert max(model.lengths) <= 4  # never more context than one block
    assert int(probs[0].argmax()) == (ord("a") + 1) % 5
    with pytest.raises(ValueError, match="empty"):
        next_token_probs(model, tokenizer, "  ")
    with pytest.raises(ValueError, match="single token"):
        next_token_probs(model, tokenizer, "a")


def test_gradient_plots():
    t, s = V.toy_pair()
    eps = np.logspace(-8, -1, 8)
    fig = P.plot_kl_vs_epsilon(eps, V.kl_vs_epsilon(t, s, eps), gradients=V.gradient_vs_epsilon(t, s, eps))
    fig2 = P.plot_patch_gradients(V.patch_gradients(t, s))
    fig3 = P.plot_patch_gradients(V.patch_gradients({"moon": 1.0}, {"dog": 0.5, "sun": 0.5}))
    try:
        assert len(fig.axes) == 2 and fig.axes[1].get_xscale() == "log"
        assert len(fig.axes[1].get_lines()) == 3 + 1  # one curve per student token, and the zero line
        assert len(fig2.axes) == len(V.PATCH_NAMES)
        assert "undefined" in [x.get_text() for x in fig3.axes[1].texts]
    finally:
        for f in (fig, fig2, fig3):
            plt.close(f)
    with pytest.raises(ValueError, match="one value per"):
        P.plot_kl_vs_epsilon(eps, V.kl_vs_epsilon(t, s, eps), gradients={"dog": [1.0]})
    with pytest.raises(ValueError, match="empty"):
        P.plot_patch_gradients({})
