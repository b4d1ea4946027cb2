r"""Held-out bits per byte across processes: every block of the text scored once, sums gathered.

The held-out text is cut once into blocks (:func:`uldviz.train.metrics.encode_blocks`), independently of the number of
processes; process r scores its contiguous share with the kit's NLL core (:func:`uldviz.train.metrics.blocks_nll`)
and the
NLL sums are added across processes, so the value equals the one-process value:

.. math:: \mathrm{bpb} = \frac{\sum_r \mathrm{NLL}_r}{\ln 2 \cdot \text{bytes}}

Every process runs the same number of batches (padding rows predict nothing), which sharded models (FSDP) need.
"""

from __future__ import annotations

import math

import torch

from uldviz.train.metrics import bits_per_byte, blocks_nll, encode_blocks

__all__ = ["held_out_blocks", "distributed_bits_per_byte"]


def held_out_blocks(tokenizer, text: str, block: int, batch: int, world: int) -> torch.Tensor:
    """The text's blocks, padded with empty rows to a multiple of ``world * batch`` rows."""
    rows = encode_blocks(tokenizer, text, block)
    per = math.ceil(len(rows) / (world * batch)) * batch
    pad = torch.full((per * world - len(rows), block), -100, dtype=torch.long, device=rows.device)
    pad[:, 0] = tokenizer.eos_token_id
    return torch.cat([rows, pad])


def distributed_bits_per_byte(accelerator, model, tokenizer, text: str, blocks: torch.Tensor,
                              batch: int) -> float:
    """Bits per byte of ``model`` on ``text``; ``blocks`` from :func:`held_out_blocks`. Call on every process."""
    per = len(blocks) // accelerator.num_processes
    mine = blocks[accelerator.process_index * per:(accelerator.process_index + 1) * per]
    nll, _ = blocks_nll(model, mine, tokenizer.eos_token_id, batch_size=batch, device=accelerator.device)
    total = accelerator.reduce(torch.tensor([nll], dtype=torch.float64, device=accelerator.device), reduction="sum")
    return bits_per_byte(float(total), text)
