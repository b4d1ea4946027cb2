"""Identity-keeping losses: token/chunk log-likelihoods, GOLD's merge, hybrid ULD and ALM's chunk loss."""

from __future__ import annotations

import math

import pytest
import torch

from uldviz.maths.identity import (
    ALM_TAU,
    chunk_likelihood_loss,
    chunk_log_likelihoods,
    generalized_jsd,
    generalized_kl,
    hybrid_uld_loss,
    hybrid_uld_terms,
    log1mexp,
    merged_group_logprobs,
    token_logprobs,
)
from uldviz.maths.losses import kl_divergence, uld_distance, uld_loss
from uldviz.vocab.shared import SharedVocab


def logits_with_probs(rows):
    """Logits (1, L, V) whose softmax at each position is the given probability row."""
    return torch.tensor(rows, dtype=torch.float64).log()[None]


# ---------------------------------------------------------------- token and chunk log-likelihoods
def test_token_logprobs_reads_the_previous_position():
    torch.manual_seed(0)
    z = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    lp = token_logprobs(z, ids)
    assert lp.shape == (2, 5) and lp.dtype == torch.float32 and lp[:, 0].eq(0).all()
    for b in range(2):
        for t in range(1, 5):
            assert float(lp[b, t]) == pytest.approx(float(torch.log_softmax(z[b, t - 1], -1)[ids[b, t]]), abs=1e-6)
    assert token_logprobs(z.half(), ids).dtype == torch.float32


def test_chunk_log_likelihood_of_a_3_token_group_is_the_chain_rule():
    # positions 0..2 predict tokens 1..3 with probabilities 0.5, 0.25, 0.8 (ids 0, 1, 2)
    probs = [[0.5, 0.3, 0.2], [0.25, 0.25, 0.5], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]
    z, ids = logits_with_probs(probs), torch.tensor([[2, 0, 1, 2]])
    ll = chunk_log_likelihoods(z, ids, torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([4, 3]))
    assert ll.tolist() == pytest.approx([math.log(0.5 * 0.25 * 0.8), math.log(0.25)], abs=1e-12)


def test_merged_group_logprobs_first_and_last_anchor_by_hand():
    probs = [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.7, 0.2, 0.1]]
    z, ids = logits_with_probs(probs), torch.tensor([[2, 0, 1]])
    g = (torch.tensor([0]), torch.tensor([1]), torch.tensor([3]))  # the group is tokens 1..2 ('0', '1')
    first = merged_group_logprobs(z, ids, *g).exp()[0]
    # the distribution predicting token 1 (position 0) times P(token 2 = 1 | position 1) = 0.5
    assert first.tolist() == pytest.approx([0.6 * 0.5, 0.3 * 0.5, 0.1 * 0.5], abs=1e-12)
    last = merged_group_logprobs(z, ids, *g, anchor="last").exp()[0]
    # the distribution predicting token 2 (position 1) times P(token 1 = 0 | position 0) = 0.6
    assert last.tolist() == pytest.approx([0.2 * 0.6, 0.5 * 0.6, 0.3 * 0.6], abs=1e-12)
    # both give the chunk likelihood at the actual tokens; a one-token group is just the softmax
    ll = float(chunk_log_likelihoods(z, ids, *g)[0])
    assert math.log(first[0]) == pytest.approx(ll) and math.log(last[1]) == pytest.approx(ll)
    single = merged_group_logprobs(z, ids, torch.tensor([0]), torch.tensor([2]), torch.tensor([3]))
    assert single.exp()[0].tolist() == pytest.approx(probs[1], abs=1e-12)


def test_merged_group_logprobs_batched_matches_a_loop():
    torch.manual_seed(1)
    z = torch.randn(3, 8, 11, dtype=torch.float64)
    ids = torch.randint(0, 11, (3, 8))
    sample, start, end = torch.tensor([0, 2, 2, 1]), torch.tensor([1, 3, 5, 2]), torch.tensor([4, 5, 8, 3])
    merged = merged_group_logprobs(z, ids, sample, start, end)
    lp = token_logprobs(z, ids)
    for g in range(4):
        b, s, e = int(sample[g]), int(start[g]), int(end[g])
        expected = torch.log_softmax(z[b, s - 1], -1) + lp[b, s + 1:e].sum()
        torch.testing.assert_close(merged[g], expected)


@pytest.mark.parametrize("groups, match", [
    (([0], [0], [2]), "start at token index >= 1"),
    (([0], [2], [2]), "at least one token"),
    (([0], [1], [9]), "past the sequence length"),
    (([3], [1], [2]), r"sample indices must be in \[0, 1\)"),
    (([], [], []), "G = 0"),
    (([0, 0], [1], [2]), "one entry per group"),
    (([0.0], [1], [2]), "integer"),
])
def test_bad_groups(groups, match):
    z, ids = torch.randn(1, 4, 3), torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises((ValueError, TypeError), match=match):
        chunk_log_likelihoods(z, ids, *(torch.tensor(g) for g in groups))


def test_bad_logits_and_ids():
    z = torch.randn(1, 4, 3)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        token_logprobs(z, torch.full((1, 4), 3))
    with pytest.raises(ValueError, match="ids have shape"):
        token_logprobs(z, torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        token_logprobs(torch.full((1, 4, 3), float("nan")), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(batch, length, vocab\)"):
        token_logprobs(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="anchor"):
        merged_group_logprobs(z, torch.zeros(1, 4, dtype=torch.long), [0], [1], [2], anchor="middle")


# ---------------------------------------------------------------- hybrid ULD
def test_hybrid_with_nothing_shared_is_uld():
    torch.manual_seed(2)
    s, t = torch.randn(6, 9, dtype=torch.float64), torch.randn(6, 13, dtype=torch.float64)
    empty = SharedVocab.from_vocabs({"a": 0}, {"b": 0}, student_size=9, teacher_size=13)
    got = hybrid_uld_loss(torch.log_softmax(s, -1), torch.log_softmax(t, -1), empty)
    torch.testing.assert_close(got, uld_loss(s, t))


def _same_vocab(v):
    names = {f"w{i}": i for i in range(v)}
    return SharedVocab.from_vocabs(names, names)


@pytest.mark.parametrize("divergence", ["gkl", "jsd"])
def test_hybrid_on_one_vocabulary_all_shared_is_the_divergence(divergence):
    torch.manual_seed(3)
    s, t = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    got = hybrid_uld_loss(torch.log_softmax(s, -1), torch.log_softmax(t, -1), _same_vocab(8), divergence=divergence)
    if divergence == "gkl":
        torch.testing.assert_close(got, kl_divergence(s, t))
    else:
        p, q = torch.softmax(t, -1), torch.softmax(s, -1)
        m = (p + q) / 2
        jsd = 0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)
        torch.testing.assert_close(got, jsd.mean())


def test_hybrid_default_weight_and_parts_on_a_partial_overlap():
    torch.manual_seed(4)
    ls, lt = torch.log_softmax(torch.randn(4, 5, dtype=torch.float64), -1), torch.log_softmax(
        torch.randn(4, 7, dtype=torch.float64), -1)
    shared = SharedVocab.from_vocabs({"a": 0, "b": 3, "c": 4}, {"c": 1, "a": 6, "z": 2})  # 'a' and 'c'
    terms = hybrid_uld_terms(ls, lt, shared)
    assert terms.weight == pytest.approx(2 / 7)
    p, q = lt.exp(), ls.exp()
    div = (p[:, [1, 6]] * (lt[:, [1, 6]] - ls[:, [4, 0]]) - p[:, [1, 6]] + q[:, [4, 0]]).sum(-1)
    rest = uld_distance(q[:, [1, 2, 3]], p[:, [0, 2, 3, 4, 5]])
    torch.testing.assert_close(terms.shared, div)
    torch.testing.assert_close(terms.unshared, rest)
    torch.testing.assert_close(hybrid_uld_loss(ls, lt, shared), (2 / 7 * div + 5 / 7 * rest).mean())
    half = hybrid_uld_loss(ls, lt, shared, weight=0.5, reduction="sum")
    torch.testing.assert_close(half, (0.5 * div + 0.5 * rest).sum())
    mask = torch.tensor([True, False, True, False])
    per = hybrid_uld_loss(ls, lt, shared, reduction="none")
    torch.testing.assert_close(hybrid_uld_loss(ls, lt, shared, mask=mask), per[mask].mean())


def test_hybrid_on_merged_unnormalised_distributions_is_finite_and_non_negative():
    torch.manual_seed(5)
    zs, zt = torch.randn(1, 6, 5, dtype=torch.float64), torch.randn(1, 6, 7, dtype=torch.float64)
    ids_s, ids_t = torch.randint(0, 5, (1, 6)), torch.randint(0, 7, (1, 6))
    g = [torch.tensor([0]), torch.tensor([1]), torch.tensor([4])]
    ms, mt = merged_group_logprobs(zs, ids_s, *g), merged_group_logprobs(zt, ids_t, *g)
    assert float(ms.exp().sum()) < 1
    shared = SharedVocab.from_vocabs({"a": 0, "b": 1}, {"a": 3, "b": 5})
    for div in ("gkl", "jsd"):
        terms = hybrid_uld_terms(ms, mt, shared, divergence=div)
        assert torch.isfinite(terms.shared).all() and (terms.shared >= 0).all()


@pytest.mark.parametrize("divergence", ["gkl", "jsd"])
def test_hybrid_gradcheck_and_no_teacher_gradient(divergence):
    torch.manual_seed(6)
    zs = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    lt = torch.log_softmax(torch.randn(3, 8, dtype=torch.float64), -1).requires_grad_()
    shared = SharedVocab.from_vocabs({"a": 0, "b": 2, "c": 5}, {"a": 7, "b": 1, "c": 3})

    def f(z):
        return hybrid_uld_loss(torch.log_softmax(z, -1), lt, shared, divergence=divergence)

    assert torch.autograd.gradcheck(f, (zs,), eps=1e-7, atol=1e-6)
    f(zs).backward()
    assert lt.grad is None and zs.grad is not None


def test_divergences_by_hand_on_unnormalised_vectors():
    p, q = torch.tensor([0.2, 0.0, 0.3], dtype=torch.float64), torch.tensor([0.1, 0.4, 0.3], dtype=torch.float64)
    gkl = 0.2 * math.log(2) - 0.2 + 0.1 + 0.4  # the third term is 0.3 log 1 - 0.3 + 0.3 = 0
    assert float(generalized_kl(student_logprobs=q.log(), teacher_logprobs=p.log())) == pytest.approx(gkl)
    m = (p + q) / 2
    jsd = 0.5 * (0.2 * math.log(0.2 / 0.15)) + 0.5 * (0.1 * math.log(0.1 / 0.15) + 0.4 * math.log(0.4 / 0.2))
    assert float(generalized_jsd(student_logprobs=q.log(), teacher_logprobs=p.log())) == pytest.approx(jsd)
    assert float(generalized_jsd(student_logprobs=p.log(), teacher_logprobs=p.log())) == pytest.approx(0, abs=1e-15)
    assert float(m.sum()) == pytest.approx(0.65)


def test_hybrid_bad_input():
    ls, lt = torch.log_softmax(torch.randn(2, 4), -1), torch.log_softmax(torch.randn(2, 6), -1)
    shared = SharedVocab.from_vocabs({"a": 0}, {"a": 1})
    with pytest.raises(ValueError, match="above 0"):
        hybrid_uld_loss(ls + 1, lt, shared)
    with pytest.raises(ValueError, match="NaN"):
        hybrid_uld_loss(ls, torch.full_like(lt, float("nan")), shared)
    with pytest.raises(ValueError, match="same groups"):
        hybrid_uld_loss(ls, lt[:1], shared)
    with pytest.raises(ValueError, match="other tokenizers"):
        hybrid_uld_loss(ls, lt, SharedVocab.from_vocabs({"a": 9}, {"a": 1}))
    with pytest.raises(ValueError, match="divergence"):
        hybrid_uld_loss(ls, lt, shared, divergence="kl")
    with pytest.raises(ValueError, match="weight"):
        hybrid_uld_loss(ls, lt, shared, weight=1.5)
    with pytest.raises(ValueError, match="beta"):
        hybrid_uld_loss(ls, lt, shared, divergence="jsd", beta=1.0)
    with pytest.raises(TypeError, match="SharedVocab"):
        hybrid_uld_loss(ls, lt, {"a": 1})
    with pytest.raises(ValueError, match="empty batch"):
        hybrid_uld_loss(ls[:0], lt[:0], shared)
    with pytest.raises(ValueError, match="mask"):
        hybrid_uld_loss(ls, lt, shared, mask=torch.tensor([True]))


# ---------------------------------------------------------------- ALM chunk likelihood
def test_log1mexp_is_accurate_at_both_ends():
    x = torch.tensor([-1e-10, -1e-3, -0.5, -0.7, -5.0, -50.0], dtype=torch.float64)
    expected = [math.log(-math.expm1(v)) for v in x.tolist()]
    assert log1mexp(x).tolist() == pytest.approx(expected, rel=1e-12)
    y = x.clone().requires_grad_()
    log1mexp(y).sum().backward()
    assert torch.isfinite(y.grad).all()


def _bce(ll_t, ll_s, tau, eps):
    a, b = ll_t / tau - eps, ll_s / tau - eps
    return -(math.exp(a) * b + (1 - math.exp(a)) * math.log(1 - math.exp(b)))


def test_chunk_likelihood_loss_on_a_3_token_example_by_hand():
    # the teacher reads the 3-token chunk with probabilities 0.5, 0.25, 0.8; the student 0.2, 0.5, 0.5
    zt = logits_with_probs([[0.5, 0.5], [0.75, 0.25], [0.2, 0.8], [0.5, 0.5]])
    zs = logits_with_probs([[0.2, 0.8], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    g = (torch.tensor([0]), torch.tensor([1]), torch.tensor([4]))
    ll_t = chunk_log_likelihoods(zt, torch.tensor([[0, 0, 1, 1]]), *g)
    ll_s = chunk_log_likelihoods(zs, torch.tensor([[0, 0, 0, 1]]), *g)
    assert float(ll_t) == pytest.approx(math.log(0.1)) and float(ll_s) == pytest.approx(math.log(0.05))
    # tau = 1, no eps: BCE of 0.05 against 0.1
    by_hand = -(0.1 * math.log(0.05) + 0.9 * math.log(0.95))
    assert float(chunk_likelihood_loss(ll_s, ll_t, tau=1.0, eps=0.0)) == pytest.approx(by_hand, rel=1e-12)
    # tokenkit's defaults: tau = 100, eps = 1e-6
    assert ALM_TAU == 100.0
    assert float(chunk_likelihood_loss(ll_s, ll_t)) == pytest.approx(_bce(math.log(0.1), math.log(0.05), 100, 1e-6),
                                                                     rel=1e-12)


def test_chunk_likelihood_loss_is_smallest_where_the_student_matches_the_teacher():
    ll_t = torch.tensor([-2.0, -30.0, -0.01], dtype=torch.float64)
    for tau in (1.0, 100.0):
        s = ll_t.clone().requires_grad_()
        chunk_likelihood_loss(s, ll_t, tau=tau, reduction="sum").backward()
        assert s.grad.abs().max() < 1e-9
        low = (ll_t - 1).requires_grad_()
        chunk_likelihood_loss(low, ll_t, tau=tau, reduction="sum").backward()
        assert (low.grad < 0).all()  # raising a too-low student likelihood lowers the loss


def test_chunk_likelihood_loss_gradcheck_reductions_and_no_teacher_gradient():
    ll_s = torch.tensor([-1.0, -4.0, -0.2], dtype=torch.float64, requires_grad=True)
    ll_t = torch.tensor([-2.0, -3.0, -0.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: chunk_likelihood_loss(s, ll_t, tau=5.0), (ll_s,))
    per = chunk_likelihood_loss(ll_s, ll_t, reduction="none")
    torch.testing.assert_close(chunk_likelihood_loss(ll_s, ll_t), per.mean())
    mask = torch.tensor([True, False, True])
    torch.testing.assert_close(chunk_likelihood_loss(ll_s, ll_t, mask=mask), per[mask].mean())
    chunk_likelihood_loss(ll_s, ll_t).backward()
    assert ll_t.grad is None


def test_chunk_likelihood_loss_bad_input():
    good = torch.tensor([-1.0, -2.0])
    with pytest.raises(ValueError, match="NaN"):
        chunk_likelihood_loss(torch.tensor([float("nan"), -1.0]), good)
    with pytest.raises(ValueError, match="above 0"):
        chunk_likelihood_loss(good, torch.tensor([0.5, -1.0]))
    with pytest.raises(ValueError, match="one value per group"):
        chunk_likelihood_loss(good, good[:1])
    with pytest.raises(ValueError, match="empty"):
        chunk_likelihood_loss(good[:0], good[:0])
    with pytest.raises(ValueError, match="tau"):
        chunk_likelihood_loss(good, good, tau=0)
    with pytest.raises(ValueError, match="eps > 0"):
        chunk_likelihood_loss(torch.tensor([0.0, -1.0]), good, eps=0.0)
    with pytest.raises(TypeError, match="floating"):
        chunk_likelihood_loss(torch.tensor([-1, -2]), good)
    with pytest.raises(ValueError, match="1-D"):
        chunk_likelihood_loss(good[None], good[None])
