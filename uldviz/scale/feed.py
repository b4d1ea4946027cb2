"""Feeding the GPU: a ``DataLoader`` whose workers tokenize and pair each step's micro-batches ahead of the loop.

Tokenizing an 8 × 512 batch with two tokenizers and pairing it (offsets or span groups) is CPU work of tens of
milliseconds; done in the loop it would leave the GPU idle for that time every step. Here each item is one
optimizer step: this process's ``grad_accum`` micro-batches as (:class:`~uldviz.train.batch.TextBatch`, pairs),
made by ``workers`` processes that run ``prefetch`` steps ahead. Worker w makes steps first + w, first + w + n, ...
and the DataLoader returns them round-robin, so the order is the one of ``workers=0`` (in-process): the data a
step sees depends only on (seed, step), whatever the number of workers or processes.
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from uldviz.scale.data import encode_examples, global_batch, process_share

__all__ = ["StepBatches", "micro_batches"]


class StepBatches(IterableDataset):
    """This process's micro-batches of every step from ``first_step`` on, tokenized and paired: one item per step."""

    def __init__(self, cfg, examples, objective, student_tok, teacher_tok, *, first_step: int, rank: int, world: int):
        self.cfg, self.examples, self.objective = cfg, examples, objective
        self.student_tok, self.teacher_tok = student_tok, teacher_tok
        self.first_step, self.rank, self.world = first_step, rank, world

    def step(self, step: int) -> list[tuple]:
        """The (batch, pairs) micro-batches of optimizer step ``step`` for this process (pairs on the CPU)."""
        cfg = self.cfg
        size = cfg.batch_size * cfg.grad_accum * self.world
        out = []
        for idx in process_share(global_batch(step, len(self.examples), size, cfg.seed), self.rank, self.world,
                                 cfg.grad_accum):
            batch = encode_examples([self.examples[i] for i in idx], idx, self.student_tok, self.teacher_tok,
                                    cfg.max_tokens)
            out.append((batch, self.objective.pair(batch)))
        return out

    def __iter__(self):
        info = get_worker_info()
        wid, n = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in range(self.first_step + wid, self.cfg.steps, n):
            yield self.step(step)


def micro_batches(cfg, examples, objective, student_tok, teacher_tok, *, first_step: int, rank: int, world: int):
    """A generator of each remaining step's micro-batches; ``cfg.workers`` > 0 makes them in worker processes.

    Close it (``.close()``) to stop the workers.
    """
    data = StepBatches(cfg, examples, objective, student_tok, teacher_tok, first_step=first_step, rank=rank,
                       world=world)
    if cfg.workers == 0:
        yield from data
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the workers are the parallelism
    loader = DataLoader(data, batch_size=None, num_workers=cfg.workers, prefetch_factor=cfg.prefetch,
                        pin_memory=torch.cuda.is_available() and not cfg.cpu)
    it = iter(loader)
    try:
        yield from it
    finally:
        del it  # shuts the workers down
