"""Tokenizer-independent evaluation: bits per byte of held-out text.

Loss per token cannot compare two models whose tokenizers cut the text differently; the total
negative log-likelihood of the *same text*, divided by its number of UTF-8 bytes, can:

    bits per byte = (sum over predicted tokens of -ln p(token)) / ln 2 / (number of UTF-8 bytes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "bits_per_byte",
    "utf8_bytes",
    "encode_blocks",
    "sample_blocks",
    "model_nll",
    "blocks_nll",
    "model_bits_per_byte",
    "context_length",
    "next_token_probs",
]


def context_length(model) -> int:
    """A causal LM's context length in tokens: GPT-2's ``n_positions`` or Llama/NeoX's ``max_position_embeddings``.

    A model whose config has neither raises a ``ValueError`` instead of a guessed default.
    """
    cfg = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"cannot tell the context length of {type(model).__name__}: its config has no n_positions or "
                     "max_position_embeddings; pass block_size explicitly")


def utf8_bytes(text: str) -> int:
    """Number of UTF-8 bytes of ``text`` (the denominator of bits per byte)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return len(text.encode("utf-8"))


def bits_per_byte(total_nll_nats: float, n_bytes_or_text) -> float:
    """Total NLL in nats (summed over tokens, natural log) converted to bits per UTF-8 byte of the text.

    ``n_bytes_or_text`` is the byte count or the text itself. Errors for negative/NaN NLL or zero bytes.
    """
    if isinstance(total_nll_nats, torch.Tensor):
        if total_nll_nats.numel() != 1:
            raise ValueError(f"total_nll_nats must be one number (a sum), got shape {tuple(total_nll_nats.shape)}")
        total_nll_nats = float(total_nll_nats)
    total = float(total_nll_nats)
    if math.isnan(total) or total < 0:
        raise ValueError(f"total_nll_nats must be a non-negative number, got {total}")
    n = utf8_bytes(n_bytes_or_text) if isinstance(n_bytes_or_text, str) else n_bytes_or_text
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n_bytes_or_text must be an int byte count or a str, got {type(n).__name__}")
    if n <= 0:
        raise ValueError(f"the text has {n} bytes: bits per byte needs a non-empty text")
    return total / math.log(2) / n


def encode_blocks(tokenizer, text: str, block_size: int) -> torch.Tensor:
    """``text`` tokenised once and cut into rows ``[eos, t_1 .. t_{block_size-1}]`` (last row eos-padded).

    Each row starts with the eos token so that *every* token of the text is predicted once, from
    at most ``block_size - 1`` tokens of context. Returns a (rows, block_size) long tensor; the
    padding is marked by the separate mask from :func:`model_nll`.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty str")
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size must be an int >= 2, got {block_size!r}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token; bits per byte needs one to start each block")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    step = block_size - 1
    rows = []
    for i in range(0, len(ids), step):
        chunk = ids[i : i + step]
        rows.append([eos] + chunk + [-100] * (step - len(chunk)))
    return torch.tensor(rows, dtype=torch.long, device="cpu")  # tokenizer output; moved per batch


def sample_blocks(ids: torch.Tensor, batch_size: int, block_size: int, eos_id: int,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch in the same format as :func:`encode_blocks`: ``(inputs, targets)``, each (batch, block_size-1).

    Random windows of ``ids`` (a 1-D long tensor, the tokenised training text) drawn with
    ``generator``; each input row is ``[eos, t_s .. t_{s+block_size-3}]`` and its target row
    ``[t_s .. t_{s+block_size-2}]``, so training sees exactly the situation evaluation measures.
    """
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
        raise TypeError("ids must be a 1-D tensor of token ids")
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size must be an int >= 2, got {block_size!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    span = block_size - 1
    if len(ids) < span:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than one block of {span}")
    starts = torch.randint(0, len(ids) - span + 1, (batch_size,), generator=generator, device=ids.device)
    targets = torch.stack([ids[s : s + span] for s in starts.tolist()])
    inputs = torch.cat([torch.full((batch_size, 1), int(eos_id), dtype=ids.dtype, device=ids.device), targets[:, :-1]],
                       dim=1)
    return inputs, targets


@torch.no_grad()
def model_nll(model, tokenizer, text: str, block_size: int | None = None, batch_size: int = 32,
              device=None) -> tuple[float, int]:
    """(total NLL in nats, number of predicted tokens) of a causal LM over ``text``, every token predicted once.

    ``block_size`` defaults to the model's context length (``config.n_positions`` or
    ``max_position_embeddings``). Runs in eval mode on ``device`` (default: the model's).
    """
    if block_size is None:
        block_size = context_length(model)
    blocks = encode_blocks(tokenizer, text, int(block_size))
    return blocks_nll(model, blocks, tokenizer.eos_token_id, batch_size=batch_size, device=device)


@torch.no_grad()
def blocks_nll(model, blocks: torch.Tensor, eos_id: int, batch_size: int = 32, device=None) -> tuple[float, int]:
    """(total NLL in nats, number of predicted tokens) over rows from :func:`encode_blocks` (-100 = padding).

    The core of :func:`model_nll`; a distributed evaluation gives each process its share of the rows.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, len(blocks), batch_size):
            rows = blocks[i : i + batch_size].to(device)
            targets = rows[:, 1:]
            valid = targets != -100
            inputs = rows.clone()
            inputs[inputs == -100] = eos_id
            x = inputs[:, :-1]
            logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits.float()
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                                  reduction="sum")
            total += float(nll)
            count += int(valid.sum())
    finally:
        model.train(was_training)
    return total, count


def model_bits_per_byte(model, tokenizer, text: str, block_size: int | None = None, batch_size: int = 32,
                        device=None) -> float:
    """Held-out bits per byte of a causal LM on ``text`` (see :func:`model_nll` for how the text is cut)."""
    total, _ = model_nll(model, tokenizer, text, block_size=block_size, batch_size=batch_size, device=device)
    return bits_per_byte(total, text)


@torch.no_grad()
def next_token_probs(model, tokenizer, text: str, *, block: int = 128, max_positions: int = 2048) -> torch.Tensor:
    """A causal LM's next-token distributions on ``text``: (positions, V), at most ``max_positions`` rows.

    The text is cut into consecutive blocks of ``block`` tokens, each read on its own, so every row
    is a prediction the model makes with at most ``block`` tokens of context.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text is empty: there is nothing to predict")
    if block < 2 or max_positions < 1:
        raise ValueError(f"block must be >= 2 and max_positions >= 1, got {block} and {max_positions}")
    ids = torch.as_tensor(tokenizer(text, add_special_tokens=False)["input_ids"], device="cpu")[: max_positions + 1]
    rows = []
    for start in range(0, max(len(ids) - 1, 0), block):
        chunk = ids[start:start + block]
        if len(chunk) >= 2 or not rows:
            logits = model(chunk[None].to(model.device)).logits[0].float().cpu()
            rows.append(torch.softmax(logits, -1))
    if not rows:
        raise ValueError("text is a single token: there is no next token to predict")
    return torch.cat(rows)[:max_positions]
