r"""GOLD exactly as TRL computes it, next to the kit's hybrid: each convention that differs, measured on one batch.

TRL 1.16's ``ULDLoss`` (``trl/experimental/gold``) and the kit's :func:`uldviz.maths.identity.hybrid_uld_loss` share
one formula — on every span group, a divergence on the matched strings plus the sorted L1 of the rest, weighted
:math:`w = |S|/|V_T|` — and differ in conventions. ``tests/test_gold_parity.py`` checks that with TRL's conventions
(:func:`uldviz.maths.identity.gold_hybrid_loss`) the kit equals TRL's value and gradient to 1e-6. Here each
convention is switched on its own, so notebook 04 can show what it changes:

- **the mean**: TRL averages the groups of each sample, then the samples; the kit pools every group of the batch;
- **the matched strings**: TRL compares vocabulary entries as stored (raw), the kit their surface text;
- **the merge anchor**: the group's distribution is taken where its first token is predicted (the kit's default,
  GOLD's "observed" merge as intended) or where its last is (GOLD's "bayesian" = the kit's ``anchor="last"``);
  both are the chain rule. TRL's trainer passes unshifted logits and its "observed" branch reads them one position
  late — each group's distribution then comes from the position that has already read the group's first token;
- **the floor**: TRL floors the merge factors and both inputs of its JSD at :math:`10^{-8}`;
- **the divergence**: the kit's default is the generalised KL, GOLD's the JSD with β = 0.5.
"""

from __future__ import annotations

import torch

from uldviz.maths.checks import PROB_FLOOR
from uldviz.maths.identity import (
    chunk_log_likelihoods,
    gold_hybrid_loss,
    hybrid_uld_terms,
    merged_group_logprobs,
    per_sample_mean,
)
from uldviz.train.batch import encode_batch
from uldviz.train.objectives import pair_groups
from uldviz.vocab.shared import SharedVocab

__all__ = ["gold_conventions"]


def _logits(model, ids, valid) -> torch.Tensor:
    """float64 logits of a batch, without gradient, on the CPU."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    with torch.no_grad():
        out = model(input_ids=ids.to(device), attention_mask=valid.long().to(device)).logits
    return out.double().cpu()


def gold_conventions(student, teacher, student_tok, teacher_tok, texts) -> dict:
    """The hybrid loss of ``student`` against ``teacher`` on ``texts`` (one batch), under each convention.

    Returns floats: ``groups`` (per sample); ``gold`` (TRL's conventions: raw strings, JSD on floored inputs, floored
    merge factors, ``anchor="last"``, per-sample mean) and, each with one convention changed from ``gold``:
    ``pooled`` (the kit's mean), ``surface`` (the kit's strings), ``anchor_first`` (the kit's default anchor),
    ``observed_as_called`` (TRL's "observed" branch on the logits its trainer passes), ``no_floor``; ``kit_default``
    (the kit's default hybrid: generalised KL, surface strings, ``anchor="first"``, pooled, no floor); and
    ``chain_rule_gap``: for each merge, the largest |log merged probability of the group's own token − the group's
    log-probability by the chain rule| over the batch's groups (student side, nats; no floors).
    """
    texts = list(texts)
    batch = encode_batch(texts, student_tok, teacher_tok, student_len=128, teacher_len=128)
    g = pair_groups(batch, student_tok, teacher_tok)
    zs = _logits(student, batch.student_ids, batch.student_valid)
    zt = _logits(teacher, batch.teacher_ids, batch.teacher_valid)
    raw = SharedVocab.from_tokenizers(student_tok, teacher_tok, match="raw")
    surface = SharedVocab.from_tokenizers(student_tok, teacher_tok, match="surface")
    n = len(texts)

    def one_row_late(z):  # row k holds row k + 1: what "observed" reads when the trainer passes unshifted logits
        return torch.cat([z[:, 1:], z[:, -1:]], 1)

    def merged(anchor="last", floor=PROB_FLOOR, late=False):
        s = merged_group_logprobs(one_row_late(zs) if late else zs, batch.student_ids, g.sample, g.student_start,
                                  g.student_end, anchor=anchor, factor_floor=floor)
        t = merged_group_logprobs(one_row_late(zt) if late else zt, batch.teacher_ids, g.sample, g.teacher_start,
                                  g.teacher_end, anchor=anchor, factor_floor=floor)
        return s, t

    def terms(s, t, shared, floor=PROB_FLOOR):
        return hybrid_uld_terms(s, t, shared, divergence="jsd", floor=floor, empty_side="zero").total

    s_last, t_last = merged("last")
    out = {"groups": [int((g.sample == b).sum()) for b in range(n)],
           "gold": float(gold_hybrid_loss(s_last, t_last, raw, g.sample, n)),
           "pooled": float(terms(s_last, t_last, raw).mean()),
           "surface": float(gold_hybrid_loss(s_last, t_last, surface, g.sample, n)),
           "anchor_first": float(gold_hybrid_loss(*merged("first"), raw, g.sample, n)),
           "observed_as_called": float(gold_hybrid_loss(*merged("first", late=True), raw, g.sample, n))}
    s_plain, t_plain = merged("last", floor=None)
    out["no_floor"] = float(per_sample_mean(terms(s_plain, t_plain, raw, floor=None), g.sample, n))
    s_kit, t_kit = merged("first", floor=None)
    out["kit_default"] = float(hybrid_uld_terms(s_kit, t_kit, surface).total.mean())
    # the chain rule: the merged row's value at the group's own token is the group's probability
    chunk = chunk_log_likelihoods(zs, batch.student_ids, g.sample, g.student_start, g.student_end)
    first_tok = batch.student_ids[g.sample, g.student_start]
    last_tok = batch.student_ids[g.sample, g.student_end - 1]
    gaps = {}
    for name, rows, tok in (("first", merged("first", None)[0], first_tok), ("last", merged("last", None)[0], last_tok),
                            ("observed_as_called", merged("first", None, late=True)[0], first_tok)):
        gaps[name] = float((rows.gather(1, tok[:, None]).squeeze(1) - chunk).abs().max())
    out["chain_rule_gap"] = gaps
    return out
