"""``python -m uldviz generate``: the teacher answers a file of prompts, the first step of sequence-level KD.

The paper distils on teacher-written answers, with ULD on top of them. This writes one JSON line per prompt,
``{"prompt": ..., "completion": ...}``, which ``python -m uldviz train --data FILE.jsonl`` reads (losses count the
completion only). Prompts come from a ``.jsonl`` file (field ``prompt``) or a text file (one per line); they are
generated in batches (left padding), on the GPU when there is one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from uldviz.scale.config import parse_and_run
from uldviz.scale.data import read_prompts

__all__ = ["GenerateConfig", "generate_answers", "main"]


@dataclass
class GenerateConfig:
    """Every knob of ``generate``."""

    teacher: str = ""  # the model that answers (hub name or save_pretrained folder)
    prompts: str = ""  # .jsonl with a "prompt" field, or a text file with one prompt per line
    out: str = ""  # the JSON-lines file to write ({"prompt", "completion"} per line)
    prompt_field: str = "prompt"
    max_new_tokens: int = 128
    batch_size: int = 16
    sample: bool = False  # sample (temperature, top_p) instead of greedy decoding
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    bf16: bool = False  # teacher in bfloat16 (GPUs)
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda"
    limit: int = 0  # answer only the first N prompts (0: all)

    def __post_init__(self):
        for name in ("teacher", "prompts", "out"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        for name in ("max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")


@torch.no_grad()
def generate_answers(cfg: GenerateConfig) -> Path:
    """Write the teacher's completion of every prompt to ``cfg.out`` (input order kept); returns the file."""
    from uldviz.env import pick_device
    from uldviz.io.models import load_pretrained

    prompts = read_prompts(cfg.prompts, cfg.prompt_field)[: cfg.limit or None]
    empty = [i for i, p in enumerate(prompts, 1) if not p.strip()]
    if empty:
        raise ValueError(f"{cfg.prompts}: prompt(s) number {empty[:5]} are empty; the teacher needs text to continue")
    device = pick_device(cfg.device)
    model, tok = load_pretrained(cfg.teacher, device=device, dtype=torch.bfloat16 if cfg.bf16 else None)
    tok.padding_side = "left"  # generation continues at the right end of every row
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sampling = dict(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p) if cfg.sample else dict(
        do_sample=False)
    with out.open("w", encoding="utf-8") as f:
        for i in range(0, len(prompts), cfg.batch_size):
            chunk = prompts[i:i + cfg.batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            ids = model.generate(**enc, max_new_tokens=cfg.max_new_tokens, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id, **sampling)
            for prompt, row in zip(chunk, ids[:, enc["input_ids"].shape[1]:]):
                answer = tok.decode(row, skip_special_tokens=True)
                f.write(json.dumps({"prompt": prompt, "completion": answer}, ensure_ascii=False) + "\n")
    return out


def _run(cfg: GenerateConfig) -> int:
    path = generate_answers(cfg)
    print(f"wrote {sum(1 for _ in path.open(encoding='utf-8'))} answers to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: every field of :class:`GenerateConfig` is a flag."""
    return parse_and_run(GenerateConfig, _run, argv, "python -m uldviz generate", __doc__.split("\n\n")[0])
