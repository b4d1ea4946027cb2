"""Notebook 03's checkers: right answers pass, each typical mistake gets its own message, no answer is given."""

from __future__ import annotations

import math

import torch


def test_ex03_checkers_say_what_is_wrong_without_the_answer():
    from uldviz.exercises import ex03

    assert not ex03.check_offset_pairs(None).ok
    assert ex03.check_offset_pairs({1: 2, 2: 4}).ok
    fb = ex03.check_offset_pairs({1: 1, 2: 4})
    assert not fb.ok and "middle" in fb.message
    fb = ex03.check_offset_pairs({1: 3, 2: 4})
    assert not fb.ok and "position 1" in fb.message and "3" not in fb.message.replace("position 1", "")
    n_bytes = len(ex03.EX2_TEXT.encode("utf-8"))
    right = ex03.EX2_NLL_NATS / math.log(2) / n_bytes
    assert ex03.check_bits_per_byte(right).ok
    fb = ex03.check_bits_per_byte(ex03.EX2_NLL_NATS / math.log(2) / len(ex03.EX2_TEXT))
    assert not fb.ok and "characters" in fb.message and f"{right:.3f}" not in fb.message
    assert "nats" in ex03.check_bits_per_byte(ex03.EX2_NLL_NATS / n_bytes).message
    assert "0.1 %" in ex03.check_bits_per_byte(right * 1.01).message  # the tolerance is stated


def test_check_shuffle_accepts_a_permutation_and_names_each_mistake():
    from uldviz.exercises import ex03

    def right(x, m, g):
        out = x.clone()
        rows = x[m]
        out[m] = rows[torch.randperm(rows.shape[0], generator=g)]
        return out

    def whole_batch(x, m, g):  # moves padding rows too
        flat = x.reshape(-1, x.shape[-1])
        return flat[torch.randperm(flat.shape[0], generator=g)].reshape(x.shape)

    def resample(x, m, g):  # draws rows with replacement: not a permutation
        out = x.clone()
        rows = x[m]
        out[m] = rows[torch.randint(0, rows.shape[0], (rows.shape[0],), generator=g)]
        return out

    assert ex03.check_shuffle(right).ok
    assert "Padding" in ex03.check_shuffle(whole_batch).message
    assert "permutation" in ex03.check_shuffle(resample).message
    fb = ex03.check_shuffle(lambda x, m, g: x)  # rows unchanged: said as such, not as a window problem
    assert "still where it was" in fb.message and "window" not in fb.message

    def half(x, m, g):  # permutes only the first sample's rows
        out = x.clone()
        out[0, :3] = x[0, [1, 2, 0]]
        return out

    assert "changed" in ex03.check_shuffle(half).message
    assert "raised" in ex03.check_shuffle(lambda x, m, g: 1 / 0).message
    assert not ex03.check_shuffle(None).ok


def test_check_uld_term_values_gradients_and_each_mistake():
    from uldviz.exercises import ex03
    from uldviz.maths.losses import uld_distance, uld_loss

    def right(s, t, p):
        return uld_loss(s[p.sample, p.student], t[p.sample, p.teacher])

    def own(s, t, p):  # written from scratch
        q, r = torch.softmax(s[p.sample, p.student], -1), torch.softmax(t[p.sample, p.teacher].detach(), -1)
        n = max(q.shape[-1], r.shape[-1])
        q = torch.nn.functional.pad(q.sort(-1, descending=True).values, (0, n - q.shape[-1]))
        r = torch.nn.functional.pad(r.sort(-1, descending=True).values, (0, n - r.shape[-1]))
        return (q - r).abs().sum(-1).mean()

    assert ex03.check_uld_term(right).ok and ex03.check_uld_term(own).ok
    assert "sum" in ex03.check_uld_term(lambda s, t, p: uld_loss(s[p.sample, p.student], t[p.sample, p.teacher],
                                                                 reduction="sum")).message
    assert "swapped" in ex03.check_uld_term(lambda s, t, p: uld_loss(s[p.sample, p.teacher],
                                                                     t[p.sample, p.student])).message
    assert "teacher" in ex03.check_uld_term(
        lambda s, t, p: uld_distance(torch.softmax(s[p.sample, p.student], -1),
                                     torch.softmax(t[p.sample, p.teacher], -1)).mean()).message
    assert "no gradient" in ex03.check_uld_term(lambda s, t, p: right(s, t, p).detach()).message
    assert "own function" in ex03.check_uld_term(ex03.reference_uld_term).message
    assert "raised" in ex03.check_uld_term(lambda s, t, p: 1 / 0).message
    assert not ex03.check_uld_term(None).ok


def test_check_paired_interval_names_each_mistake():
    import statistics

    from uldviz.exercises import ex03
    from uldviz.maths.stats import paired_difference, t_quantile

    assert ex03.check_paired_interval(lambda a, b, c: paired_difference(a, b).interval(c)).ok

    def make(quantile, spread, scale):
        def fn(a, b, level):
            d = [x - y for x, y in zip(a, b)]
            m, n = statistics.fmean(d), len(d)
            half = quantile(level, n) * spread(d, a, b) * scale(n)
            return m - half, m + half
        return fn

    t = lambda c, n: t_quantile(0.5 + c / 2, n - 1)  # noqa: E731
    sd = lambda d, a, b: statistics.stdev(d)  # noqa: E731
    root = lambda n: 1 / math.sqrt(n)  # noqa: E731
    assert ex03.check_paired_interval(make(t, sd, root)).ok
    cases = {
        "normal quantile": make(lambda c, n: statistics.NormalDist().inv_cdf(0.5 + c / 2), sd, root),
        "n − 1": make(t, lambda d, a, b: statistics.pstdev(d), root),
        "independent": make(t, lambda d, a, b: math.sqrt(statistics.variance(a) + statistics.variance(b)), root),
        "degrees of freedom": make(lambda c, n: t_quantile(0.5 + c / 2, n), sd, root),
        "two-sided": make(lambda c, n: t_quantile(c, n - 1), sd, root),
        "√n, not by n": make(t, sd, lambda n: 1 / n),
    }
    for words, fn in cases.items():
        fb = ex03.check_paired_interval(fn)
        assert not fb.ok and words in fb.message, (words, fb.message)
    assert "swapped" in ex03.check_paired_interval(lambda a, b, c: paired_difference(a, b).interval(c)[::-1]).message
    assert "centred" in ex03.check_paired_interval(lambda a, b, c: (0.0, 1.0)).message
    assert "two numbers" in ex03.check_paired_interval(lambda a, b, c: 3).message
    assert not ex03.check_paired_interval(None).ok


def test_check_interval_reading_wants_answer_and_reason():
    from uldviz.exercises import ex03

    right = {"S1": ("no", "c"), "S2": ("yes", "b"), "S3": ("no", "d"), "S4": ("yes", "a")}
    assert ex03.check_interval_reading(right).ok
    assert ex03.check_interval_reading({k: (v.upper(), r + ")") for k, (v, r) in right.items()}).ok
    fb = ex03.check_interval_reading({**right, "S1": ("no", "a")})  # right answer, wrong reason
    assert not fb.ok and "3 of 4" in fb.message and "not the reason" in fb.message
    fb = ex03.check_interval_reading({**right, "S3": ("yes", "d")})
    assert not fb.ok and "S3" in fb.message and "reconsider" in fb.message
    for answer in (None, {"S1": ("no", "c")}, {**right, "S2": "yes"}, {**right, "S2": ("maybe", "b")}):
        assert not ex03.check_interval_reading(answer).ok
    # the interval the exercise is about is undecided: it contains 0
    assert ex03.READING_INTERVAL["low"] < 0 < ex03.READING_INTERVAL["high"]


def test_prediction_is_recorded_then_compared_with_the_live_run():
    from uldviz.exercises import ex03

    runs = ["ce", "ce-ls", "uld-offset", "uld-shuffled"]
    assert not ex03.check_prediction(None, runs).ok
    assert "not one of" in ex03.check_prediction(["ce", "kl"], runs).message
    assert "exactly once" in ex03.check_prediction(["ce", "ce"], runs).message
    guess = ["ce-ls", "ce", "uld-offset", "uld-shuffled"]
    assert ex03.check_prediction(guess, runs).ok
    scores = {"ce": 2.70, "ce-ls": 2.68, "uld-offset": 2.75, "uld-shuffled": 2.74}
    fb = ex03.compare_prediction(guess, scores)
    assert not fb.ok and "2 of 4" in fb.message and "ce-ls (2.680) < ce (2.700)" in fb.message
    assert ex03.compare_prediction(["ce-ls", "ce", "uld-shuffled", "uld-offset"], scores).ok
    assert "No complete prediction" in ex03.compare_prediction(None, scores).message
