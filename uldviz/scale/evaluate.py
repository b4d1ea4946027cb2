r"""Held-out bits per byte across processes: every block of the text and every held-out answer scored once.

The held-out text is cut once into blocks (:func:`uldviz.train.metrics.encode_blocks`), independently of the number of
processes; process r scores its contiguous share with the kit's NLL core (:func:`uldviz.train.metrics.blocks_nll`)
and the
NLL sums are added across processes, so the value equals the one-process value:

.. math:: \mathrm{bpb} = \frac{\sum_r \mathrm{NLL}_r}{\ln 2 \cdot \text{bytes}}

Every process runs the same number of batches (padding rows predict nothing), which sharded models (FSDP) need.
Prompt/answer examples are scored on their answers only (the prompt is context), over the answers' bytes.
"""

from __future__ import annotations

import math

import torch

from uldviz.train.metrics import bits_per_byte, blocks_nll, encode_blocks

__all__ = ["held_out_blocks", "answer_nll", "distributed_bits_per_byte"]


def held_out_blocks(tokenizer, text: str, block: int, batch: int, world: int) -> torch.Tensor:
    """The text's blocks, padded with empty rows to a multiple of ``world * batch`` rows (none for no text)."""
    if not text:
        return torch.zeros(0, block, dtype=torch.long, device="cpu")
    rows = encode_blocks(tokenizer, text, block)
    per = math.ceil(len(rows) / (world * batch)) * batch
    pad = torch.full((per * world - len(rows), block), -100, dtype=torch.long, device=rows.device)
    pad[:, 0] = tokenizer.eos_token_id
    return torch.cat([rows, pad])


@torch.no_grad()
def answer_nll(model, tokenizer, examples, batch: int, max_tokens: int, device) -> tuple[float, int]:
    """(NLL in nats of the answers' tokens given their prompts, UTF-8 bytes of the answer text scored)."""
    from uldviz.scale.data import encode_examples

    was_training = model.training
    model.eval()
    nll, n_bytes = 0.0, 0
    try:
        for i in range(0, len(examples), batch):
            chunk = examples[i:i + batch]
            b = encode_examples(chunk, list(range(len(chunk))), tokenizer, None, max_tokens)
            ids, answer = b.student_ids.to(device), b.student_answer.to(device)
            logits = model(input_ids=ids, attention_mask=b.student_valid.long().to(device)).logits.float()
            lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            nll -= float((lp * answer[:, :-1]).sum())
            for row, e in enumerate(chunk):  # the answer bytes the kept (possibly truncated) tokens cover
                end = int(b.student_offsets[row][b.student_valid[row]][:, 1].max())
                n_bytes += len(e.text[len(e.prompt):max(end, len(e.prompt))].encode("utf-8"))
    finally:
        model.train(was_training)
    return nll, n_bytes


def distributed_bits_per_byte(accelerator, model, tokenizer, held, blocks: torch.Tensor, batch: int,
                              max_tokens: int = 512) -> float:
    """Bits per byte of ``model`` on the held-out part (:class:`uldviz.scale.data.HeldOut`): the text's ``blocks``
    (:func:`held_out_blocks`) and the examples' answers, each process its share. Call on every process."""
    per = len(blocks) // accelerator.num_processes
    mine = blocks[accelerator.process_index * per:(accelerator.process_index + 1) * per]
    nll, _ = blocks_nll(model, mine, tokenizer.eos_token_id, batch_size=batch, device=accelerator.device) \
        if len(mine) else (0.0, 0)
    from uldviz.scale.data import Example

    world = accelerator.num_processes
    ex = held.examples[accelerator.process_index::world]
    ex += [Example(" ", "")] * (-(-len(held.examples) // world) - len(ex))  # same batches on every process (FSDP)
    a_nll, a_bytes = answer_nll(model, tokenizer, ex, batch, max_tokens, accelerator.device) if ex else (0.0, 0)
    sums = torch.tensor([nll + a_nll, a_bytes], dtype=torch.float64, device=accelerator.device)
    total, answer_bytes = accelerator.reduce(sums, reduction="sum").tolist()
    n_bytes = len(held.text.encode("utf-8")) + int(answer_bytes)
    return bits_per_byte(total, n_bytes)
