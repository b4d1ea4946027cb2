"""A peer's implementation as the oracle: the kit's ``gold`` setting of the hybrid equals TRL's GOLD ``ULDLoss``
(the pinned TRL of the test extra) in value and gradient, to 1e-6, on the same logits, rows and byte offsets.

The conventions that make them equal are the ones notebook 04 teaches: TRL's raw-string matching
(``SharedVocab.from_tokenizers(..., match="raw")``), JSD with β = 0.5 on vectors floored at 1e-8, merge factors
floored at 1e-8, the mean over groups within a sample then over samples, no unmatched term where a side has none;
TRL's "bayesian" merge is the kit's ``anchor="last"``, and its "observed" merge, fed logits shifted by one row (as
its own slicing reads them one position late), the kit's ``anchor="first"``.
"""

from __future__ import annotations

import os
import types

import pytest
import torch

trl = pytest.importorskip("trl", reason="the GOLD parity test needs TRL (the [test] extra pins it)")
TRL_VERSION = "1.16"

from uldviz.alignment.spans import align_spans, utf8_byte_spans  # noqa: E402
from uldviz.io.tokenizers import offline_tokenizers  # noqa: E402
from uldviz.maths.identity import gold_hybrid_loss, merged_group_logprobs, per_sample_mean  # noqa: E402
from uldviz.maths.losses import uld_distance  # noqa: E402
from uldviz.vocab.encode import encode_texts  # noqa: E402
from uldviz.vocab.shared import SharedVocab  # noqa: E402
from uldviz.vocab.strings import batch_token_bytes  # noqa: E402

TEXTS = ["The café's crème brûlée costs £4.50, naïve?", "def f(x):\n    return x ** 2  # squared"]


def _uld_loss_class():
    if not trl.__version__.startswith(TRL_VERSION):
        pytest.fail(f"this parity test is written against TRL {TRL_VERSION}.x (ULDLoss.__call__ with byte offsets); "
                    f"found TRL {trl.__version__}: pin trl=={TRL_VERSION}.* or update the test to the new API")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gold.gold_trainer import ULDLoss

    return ULDLoss


def _config(strategy: str, hybrid: bool):
    """The attributes ULDLoss reads from a GOLDConfig (a stand-in: GOLDConfig wants a GPU for bf16 defaults)."""
    return types.SimpleNamespace(
        uld_crossentropy_weight=0.0, uld_distillation_weight=1.0, uld_student_temperature=1.0,
        uld_teacher_temperature=1.0, uld_skip_student_eos=False, uld_skip_teacher_eos=False, use_extended_uld=True,
        uld_token_merge_strategy=strategy, uld_use_hybrid_loss=hybrid, uld_hybrid_matched_weight=None,
        uld_hybrid_unmatched_weight=None, beta=0.5)


@pytest.fixture(scope="module")
def rows():
    """The kit's rows ([eos] + tokens), TRL's labels (-100 on the eos and padding), byte offsets, span groups."""
    toks = offline_tokenizers()
    out = {}
    for side, tok in (("s", toks.student), ("t", toks.teacher)):
        ids, valid, off = encode_texts(tok, TEXTS, None)
        nb = batch_token_bytes(tok, ids, valid)
        bo = torch.zeros_like(off)
        for b, text in enumerate(TEXTS):
            n = int(valid[b].sum())
            bo[b, :n] = torch.tensor(utf8_byte_spans(text, off[b, :n].numpy(), nb[b, :n].numpy()))
        labels = torch.where(valid, ids, torch.full_like(ids, -100))
        labels[:, 0] = -100
        out[side] = dict(ids=ids, valid=valid, off=off, nb=nb, bo=bo, labels=labels, tok=tok)
    groups = align_spans(TEXTS, out["s"]["off"], out["s"]["valid"], out["t"]["off"], out["t"]["valid"],
                         out["s"]["nb"], out["t"]["nb"])
    return out, groups


def _logits(d, seed):
    g = torch.Generator().manual_seed(seed)
    zs = (torch.randn(*d["s"]["ids"].shape, len(d["s"]["tok"]), generator=g, dtype=torch.float64) * 2)
    zt = torch.randn(*d["t"]["ids"].shape, len(d["t"]["tok"]), generator=g, dtype=torch.float64) * 2
    return zs.requires_grad_(True), zt


def _trl(loss, zs, zt, d, shift: bool):
    if shift:  # row k <- row k-1: 'observed' then reads each group's distributions where the kit's chain rule does
        zs = torch.cat([torch.zeros_like(zs[:, :1]), zs[:, :-1]], 1)
        zt = torch.cat([torch.zeros_like(zt[:, :1]), zt[:, :-1]], 1)
    return loss(student_logits=zs, teacher_logits=zt, student_labels=d["s"]["labels"], teacher_labels=d["t"]["labels"],
                student_input_ids=d["s"]["ids"], teacher_input_ids=d["t"]["ids"],
                student_byte_offsets=d["s"]["bo"], teacher_byte_offsets=d["t"]["bo"])


@pytest.mark.parametrize("strategy,anchor", [("bayesian", "last"), ("observed", "first")])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_kits_gold_hybrid_equals_trls_uldloss(rows, strategy, anchor, seed):
    d, groups = rows
    ULDLoss = _uld_loss_class()
    s_tok, t_tok = d["s"]["tok"], d["t"]["tok"]
    trl_loss = ULDLoss(_config(strategy, hybrid=True), student_tokenizer=s_tok, teacher_tokenizer=t_tok)
    zs, zt = _logits(d, seed)
    want = _trl(trl_loss, zs, zt, d, shift=strategy == "observed")
    (g_want,) = torch.autograd.grad(want, zs)
    raw = SharedVocab.from_tokenizers(s_tok, t_tok, match="raw")
    assert len(raw) == len(trl_loss._vocab_mapping)  # the same raw-string pairs
    merge = dict(anchor=anchor, factor_floor=1e-8)
    s_m = merged_group_logprobs(zs, d["s"]["ids"], groups.sample, groups.student_start, groups.student_end, **merge)
    t_m = merged_group_logprobs(zt, d["t"]["ids"], groups.sample, groups.teacher_start, groups.teacher_end, **merge)
    got = gold_hybrid_loss(s_m, t_m, raw, groups.sample, len(TEXTS))
    (g_got,) = torch.autograd.grad(got, zs)
    assert abs(got.item() - want.item()) < 1e-6
    assert (g_got - g_want).abs().max().item() < 1e-6


def test_the_kits_uld_on_merged_groups_equals_trls_plain_extended_uld(rows):
    d, groups = rows
    ULDLoss = _uld_loss_class()
    trl_loss = ULDLoss(_config("bayesian", hybrid=False))
    zs, zt = _logits(d, 3)
    want = _trl(trl_loss, zs, zt, d, shift=False)
    s_m = merged_group_logprobs(zs, d["s"]["ids"], groups.sample, groups.student_start, groups.student_end,
                                anchor="last", factor_floor=1e-8)
    t_m = merged_group_logprobs(zt, d["t"]["ids"], groups.sample, groups.teacher_start, groups.teacher_end,
                                anchor="last", factor_floor=1e-8)
    got = per_sample_mean(uld_distance(s_m.exp(), t_m.exp()), groups.sample, len(TEXTS))
    assert abs(got.item() - want.item()) < 1e-6


def test_the_teachable_differences_are_real(rows):
    """Each convention the notebook names changes the number: pooled vs per-sample mean, surface vs raw strings."""
    d, groups = rows
    zs, zt = _logits(d, 0)
    s_tok, t_tok = d["s"]["tok"], d["t"]["tok"]
    s_m = merged_group_logprobs(zs, d["s"]["ids"], groups.sample, groups.student_start, groups.student_end)
    t_m = merged_group_logprobs(zt, d["t"]["ids"], groups.sample, groups.teacher_start, groups.teacher_end)
    raw, surface = (SharedVocab.from_tokenizers(s_tok, t_tok, match=m) for m in ("raw", "surface"))
    per_sample = gold_hybrid_loss(s_m, t_m, raw, groups.sample, len(TEXTS))
    from uldviz.maths.identity import hybrid_uld_terms

    pooled = hybrid_uld_terms(s_m, t_m, raw, divergence="jsd", floor=1e-8, empty_side="zero").total.mean()
    assert abs(per_sample.item() - pooled.item()) > 1e-3  # the two samples have different numbers of groups
    assert len(surface) != len(raw)
