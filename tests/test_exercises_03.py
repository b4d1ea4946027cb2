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
    bpb = {"ce": 3.0, "uld-offset": 2.8, "ce-same": 3.1, "kl-same": 2.3}
    assert ex03.check_kl_share(0.25, bpb).ok
    assert "percentage" in ex03.check_kl_share(25, bpb).message
    assert "sign" in ex03.check_kl_share(-0.25, bpb).message
    assert "no gain" in ex03.check_kl_share(0.25, {**bpb, "kl-same": 3.2}).message
    assert "no run" in ex03.check_kl_share(0.25, {"ce": 3.0}).message


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
    assert "changed" in ex03.check_shuffle(lambda x, m, g: x).message
    assert "raised" in ex03.check_shuffle(lambda x, m, g: 1 / 0).message
    assert not ex03.check_shuffle(None).ok


def test_check_paired_std_and_control_reading():
    from uldviz.distill.protocol import compare
    from uldviz.exercises import ex03

    a, b = [2.90, 2.95, 2.88, 2.91, 2.93], [2.91, 2.94, 2.90, 2.92, 2.95]
    truth = compare(a, b, list(range(5)), list(range(5)))["paired_std"]
    assert ex03.check_paired_std(truth, a, b).ok
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / 5
    pop = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 5)
    assert "n − 1" in ex03.check_paired_std(pop, a, b).message
    unpaired = math.sqrt(sum((x - sum(a) / 5) ** 2 for x in a) / 4 + sum((x - sum(b) / 5) ** 2 for x in b) / 4)
    assert "independent" in ex03.check_paired_std(unpaired, a, b).message
    assert not ex03.check_paired_std(None, a, b).ok
    assert ex03.check_control_reading("b").ok and ex03.check_control_reading(" B ").ok
    for wrong in "acd":
        assert not ex03.check_control_reading(wrong).ok
    assert not ex03.check_control_reading("z").ok and not ex03.check_control_reading(None).ok
