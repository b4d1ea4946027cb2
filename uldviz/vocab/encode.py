"""Rows as the models read them: texts tokenized as ``[eos] + tokens``, right-padded, with character offsets."""

from __future__ import annotations

import torch

__all__ = ["encode_texts"]


def encode_texts(tokenizer, texts: list[str], max_len: int | None):
    """Tokenize ``texts`` as ``[eos, tokens...]``, right-padded to a rectangle truncated at ``max_len``.

    The leading eos (offsets (0, 0)) makes every token of the window predicted, as in
    :func:`uldviz.train.metrics.encode_blocks` (``max_len=None``: no truncation). Returns (ids (B, L) long,
    valid (B, L) bool, offsets (B, L, 2) long): each token's character (start, end) in its own text;
    padding has valid False, offsets (0, 0). Training batches and :func:`align_text` use these rows.
    """
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    eos = getattr(tokenizer, "eos_token_id", None)
    head, head_off = ([eos], [(0, 0)]) if eos is not None else ([], [])
    rows = [(head + ids)[:max_len] for ids in enc["input_ids"]]
    offs = [(head_off + list(o))[:max_len] for o in enc["offset_mapping"]]
    width = max(1, max(len(r) for r in rows))
    cpu = dict(device="cpu")  # tokenizer output: made on the CPU, moved to a device with its batch
    ids = torch.zeros(len(rows), width, dtype=torch.long, **cpu)
    valid = torch.zeros(len(rows), width, dtype=torch.bool, **cpu)
    offsets = torch.zeros(len(rows), width, 2, dtype=torch.long, **cpu)
    for b, (r, o) in enumerate(zip(rows, offs)):
        if r:
            ids[b, :len(r)] = torch.tensor(r, **cpu)
            valid[b, :len(r)] = True
            offsets[b, :len(r)] = torch.tensor([list(x) for x in o], **cpu)
    return ids, valid, offsets
