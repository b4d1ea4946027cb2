"""Build the kit's shipped teacher: ``python -m uldviz build-teacher [--quick] [--out DIR]``.

Deterministically (fixed seeds, fixed data order, one thread count) it
1. splits the offline corpus (:func:`uldviz.io.corpus.train_val_split`),
2. trains the two tokenizers on the training part (byte-level BPE for the teacher, Unigram for
   the student) and saves them to ``<out>/tokenizers/{teacher,student}``,
3. pretrains a small GPT-2 teacher on the training part (nanoGPT-style loop below),
4. saves it (safetensors) with its tokenizer to ``<out>/teacher`` and writes ``card.json`` with
   the config, seed, command, library versions, training time and held-out bits per byte.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from uldviz.train.schedule import warmup_cosine_lr

__all__ = ["TeacherConfig", "QUICK", "build_teacher", "train_lm", "main"]


@dataclass
class TeacherConfig:
    """Every knob of the teacher build (the defaults are what ships in ``data/teacher``)."""

    teacher_vocab: int = 1024
    student_vocab: int = 640
    n_layer: int = 3
    n_embd: int = 192
    n_head: int = 6
    block_size: int = 128  # tokens per training/eval row (eos + 127 text tokens) = the model's context
    batch_size: int = 16
    steps: int = 400
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 30
    weight_decay: float = 0.1
    dropout: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    threads: int = 1  # one thread: bit-reproducible, and fastest on a busy 2-core machine

    def __post_init__(self):
        for name in ("teacher_vocab", "student_vocab", "n_layer", "n_embd", "n_head", "block_size",
                     "batch_size", "steps", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


#: A seconds-long build for tests: tiny tokenizers and model, a few steps.
QUICK = dict(teacher_vocab=300, student_vocab=200, n_layer=1, n_embd=32, n_head=2, block_size=32,
             batch_size=8, steps=8, warmup=2)


def train_lm(model, ids: torch.Tensor, cfg: TeacherConfig, eos_id: int, log=None, device="cpu"):
    """Pretrain ``model`` on the token stream ``ids`` for ``cfg.steps`` AdamW steps; returns the loss per step."""
    from uldviz.train.metrics import sample_blocks

    gen = torch.Generator().manual_seed(cfg.seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    model.train()
    losses = []
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = warmup_cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
        x, y = sample_blocks(ids, cfg.batch_size, cfg.block_size, eos_id, generator=gen)
        x = x.to(device)
        logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.to(device).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if log is not None:
            log(step, losses[-1])
    model.eval()
    return losses


def _versions() -> dict:
    """Library versions recorded in the card (what the score was measured with)."""
    import tokenizers
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def build_teacher(out_dir, cfg: TeacherConfig | None = None, device: str = "cpu", progress: bool = True,
                  command: str | None = None) -> dict:
    """Rebuild both tokenizers and the teacher into ``out_dir`` (``tokenizers/`` and ``teacher/``); returns the card.

    The global RNG state and torch's thread count are restored afterwards.
    """
    cfg = cfg or TeacherConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            return _build(Path(out_dir), cfg, device, progress, command)
    finally:
        torch.set_num_threads(threads)


def _build(out: Path, cfg: TeacherConfig, device, progress: bool, command: str | None) -> dict:
    """The body of :func:`build_teacher` (run with the seed set and the thread count fixed)."""
    from uldviz.io.corpus import load_corpus, train_val_split
    from uldviz.io.models import TEACHER_CARD, parameter_count, tiny_causal_lm
    from uldviz.io.tokenizers import save_tokenizer, train_bpe_tokenizer, train_unigram_tokenizer
    from uldviz.train.metrics import bits_per_byte, model_nll

    t_start = time.perf_counter()

    text = load_corpus()
    train_text, val_text = train_val_split(text, cfg.val_fraction)
    teacher_tok = train_bpe_tokenizer(train_text, cfg.teacher_vocab)
    student_tok = train_unigram_tokenizer(train_text, cfg.student_vocab)
    save_tokenizer(teacher_tok, out / "tokenizers" / "teacher")
    save_tokenizer(student_tok, out / "tokenizers" / "student")

    ids = torch.tensor(teacher_tok(train_text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    eos = teacher_tok.eos_token_id
    model = tiny_causal_lm(len(teacher_tok), n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head,
                           n_positions=cfg.block_size, seed=cfg.seed, dropout=cfg.dropout,
                           eos_token_id=eos, pad_token_id=eos).to(device)

    def log(step, loss):
        if progress and (step % 50 == 0 or step == cfg.steps - 1):
            print(f"step {step:4d}/{cfg.steps}  loss {loss:.3f}  ({time.perf_counter() - t_train:.0f} s)",
                  flush=True)

    t_train = time.perf_counter()
    losses = train_lm(model, ids, cfg, eos, log=log, device=device)
    train_seconds = time.perf_counter() - t_train

    model.to("cpu")
    nll, n_tokens = model_nll(model, teacher_tok, val_text, block_size=cfg.block_size)
    val_bpb = bits_per_byte(nll, val_text)
    tnll, t_tokens = model_nll(model, teacher_tok, train_text[: len(val_text)], block_size=cfg.block_size)

    tdir = out / "teacher"
    model.save_pretrained(tdir, safe_serialization=True)
    save_tokenizer(teacher_tok, tdir)
    weights = sum(f.stat().st_size for f in tdir.glob("*.safetensors"))
    card = {
        "name": "uldviz offline teacher",
        "architecture": "GPT2LMHeadModel",
        "parameters": parameter_count(model),
        "weights_bytes": weights,
        "config": asdict(cfg),
        "seed": cfg.seed,
        "command": command or "python -m uldviz build-teacher",
        "versions": _versions(),
        "device": str(device),
        "corpus": "pydoc_data.topics (uldviz.io.corpus.load_corpus), held out by uldviz.io.corpus.train_val_split",
        "train_chars": len(train_text),
        "train_tokens": int(len(ids)),
        "val_chars": len(val_text),
        "val_bytes": len(val_text.encode("utf-8")),
        "val_tokens": n_tokens,
        "val_bits_per_byte": val_bpb,
        "train_slice_bits_per_byte": bits_per_byte(tnll, train_text[: len(val_text)]),
        "eval": "uldviz.train.metrics.model_nll with block_size = config.block_size over the whole validation text",
        "final_train_loss": sum(losses[-20:]) / len(losses[-20:]),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "tokenizers": {"teacher": "byte-level BPE", "teacher_vocab": len(teacher_tok),
                       "student": "Unigram (Metaspace)", "student_vocab": len(student_tok)},
    }
    (tdir / TEACHER_CARD).write_text(json.dumps(card, indent=2) + "\n")
    return card


def main(argv: list[str] | None = None) -> int:
    """Command line entry: parse options, build, print the card's headline numbers."""
    parser = argparse.ArgumentParser(prog="python -m uldviz build-teacher", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output folder (default: the kit's data/ folder)")
    parser.add_argument("--quick", action="store_true", help="seconds-long tiny build (for tests)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default, reproducible), cuda or auto")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    from uldviz.env import data_dir, pick_device

    overrides = dict(QUICK) if args.quick else {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    cfg = TeacherConfig(seed=args.seed, **overrides)
    out = Path(args.out) if args.out else Path(data_dir())
    device = pick_device(args.device)
    command = " ".join(["python -m uldviz build-teacher", *(sys.argv[1:] if argv is None else argv)])
    card = build_teacher(out, cfg, device=device, progress=not args.quiet, command=command)
    print(f"teacher: {card['parameters']:,} parameters, {card['weights_bytes'] / 1e6:.1f} MB, "
          f"trained {card['train_seconds']} s, held-out {card['val_bits_per_byte']:.4f} bits per byte "
          f"-> {out / 'teacher'}")
    return 0
