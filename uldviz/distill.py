"""A live mini-distillation: a small student learns from a teacher whose tokenizer it does not share.

Reads like nanoGPT: one config dataclass with every knob (:class:`DistillConfig`), a batch
maker that cuts the SAME text windows with both tokenizers (so positions can be paired),
one loss function (:func:`step_loss`: CE, CE + λ·ULD or CE + λ·KL) and one short loop
(:func:`train`). Runs are compared on held-out **bits per byte**, which does not depend on the
tokenizer. ``python -m uldviz distill`` runs the same experiment from a terminal (:func:`main`).

The runs of notebook 03 (:data:`RUNS`):

- ``ce``: cross-entropy only, student tokenizer, no teacher;
- ``uld-positional``: CE + λ·ULD, the paper's pairing (k-th position with k-th position);
- ``uld-offset``: CE + λ·ULD, positions paired by character offsets (:func:`uldviz.align.offset_pairing`);
- ``ce-same`` / ``kl-same``: a student that shares the teacher's tokenizer, trained with CE only /
  distilled with KL: the case ULD tries to approach.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import torch

from .align import offset_pairing, positional_pairing
from .config import fast_mode, pick_device
from .losses import cross_entropy, kl_divergence, uld_loss
from .metrics import model_bits_per_byte

__all__ = [
    "DistillConfig",
    "RUNS",
    "RUN_LABELS",
    "DEFAULT_RUNS",
    "StopFlag",
    "Batch",
    "Setup",
    "RunResult",
    "parse_run",
    "run_config",
    "student_subset",
    "encode_texts",
    "make_batch",
    "sample_windows",
    "pair_positions",
    "step_loss",
    "val_bits_per_byte",
    "generate",
    "build_student",
    "prepare",
    "train",
    "run_experiment",
    "run_parallel",
    "summarize",
    "merge_records",
    "main",
]


# --------------------------------------------------------------------------- configuration
@dataclass
class DistillConfig:
    """Every knob of one training run. The defaults are the notebook's default run (CPU, minutes)."""

    loss: str = "ce"  # "ce" (no teacher), "uld" (CE + lam * ULD) or "kl" (CE + lam * KL, same tokenizer only)
    align: str = "offset"  # ULD pairing: "positional" (the paper's) or "offset" (character offsets)
    lam: float = 1.0  # weight of the distillation term (the paper uses 1.5; see notebook 03)
    student_temperature: float = 1.0
    teacher_temperature: float = 1.0
    same_tokenizer: bool = False  # True: the student uses the teacher's tokenizer (the KL reference)
    steps: int = 300
    batch_size: int = 16
    window_chars: int = 160  # each training sample is a window of this many characters
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decay down to lr * min_lr_ratio
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    train_fraction: float = 0.03  # share of the training text the student sees (little: it overfits alone)
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 128
    eval_every: int = 50  # validation bits per byte every this many steps (curves)
    eval_block: int = 64  # evaluation blocks of this many tokens (the same for every run)
    eval_chars: int = 12_000  # validation characters used for the curves (the final score uses all)
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda"
    amp: bool | None = None  # mixed precision; None = on for CUDA, off for CPU

    def __post_init__(self):
        if self.loss not in ("ce", "uld", "kl"):
            raise ValueError(f"loss must be 'ce', 'uld' or 'kl', got {self.loss!r}")
        if self.align not in ("positional", "offset"):
            raise ValueError(f"align must be 'positional' or 'offset', got {self.align!r}")
        if self.loss == "kl" and not self.same_tokenizer:
            raise ValueError("loss='kl' needs one shared vocabulary: set same_tokenizer=True (or use loss='uld')")
        for name in ("steps", "batch_size", "window_chars", "n_layer", "n_embd", "n_head", "n_positions",
                     "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam}")
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


#: The runs the notebook compares; each entry overrides fields of the base :class:`DistillConfig`.
RUNS: dict[str, dict] = {
    "ce": dict(loss="ce"),
    "uld-positional": dict(loss="uld", align="positional"),
    "uld-offset": dict(loss="uld", align="offset"),
    "ce-same": dict(loss="ce", same_tokenizer=True),
    "kl-same": dict(loss="kl", same_tokenizer=True),
}
RUN_LABELS = {
    "ce": "CE only",
    "uld-positional": "CE + λ·ULD, positional",
    "uld-offset": "CE + λ·ULD, offset-aligned",
    "ce-same": "same tokenizer, CE only",
    "kl-same": "same tokenizer, CE + λ·KL",
}
DEFAULT_RUNS = ("ce", "uld-positional", "uld-offset", "ce-same", "kl-same")


def parse_run(spec: str) -> tuple[str, dict]:
    """``'uld-offset'`` or ``'uld-offset@0.3'`` (a λ override) -> (name, config overrides)."""
    if not isinstance(spec, str):
        raise TypeError(f"a run must be named by a string, got {type(spec).__name__}")
    base, _, lam = spec.partition("@")
    if base not in RUNS:
        raise ValueError(f"unknown run {base!r}; choose from {', '.join(RUNS)} (optionally NAME@LAMBDA)")
    over = dict(RUNS[base])
    if lam:
        try:
            over["lam"] = float(lam)
        except ValueError as exc:
            raise ValueError(f"in run {spec!r}, the part after @ must be a number (λ)") from exc
    return base, over


def run_config(spec: str, base: DistillConfig | None = None, **changes) -> DistillConfig:
    """The config of one named run (see :data:`RUNS`) on top of ``base``, plus keyword changes."""
    _, over = parse_run(spec)
    return replace(base or DistillConfig(), **{**over, **changes})


def fast_config(**changes) -> DistillConfig:
    """The CI-sized config (``ULDVIZ_FAST=1``): a few dozen steps of a tiny student, seconds per run."""
    small = dict(steps=30, batch_size=8, n_layer=1, n_embd=64, n_head=2, eval_every=15, eval_chars=3000)
    return DistillConfig(**{**small, **changes})


def default_config(**changes) -> DistillConfig:
    """:func:`fast_config` when ``ULDVIZ_FAST`` is set, else the default :class:`DistillConfig`."""
    return fast_config(**changes) if fast_mode() else DistillConfig(**changes)


class StopFlag:
    """A flag the dashboard's stop button sets; the loop checks it each step and ends the run cleanly."""

    def __init__(self):
        self._set = False

    def set(self) -> None:
        """Ask the running loop to stop after the current step."""
        self._set = True

    def clear(self) -> None:
        """Re-arm the flag before the next run."""
        self._set = False

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._set


# --------------------------------------------------------------------------- data
def student_subset(text: str, fraction: float, block_chars: int = 2000) -> str:
    """Every k-th block of ``block_chars`` characters, about ``fraction`` of ``text``, spread over all of it.

    The student sees only this part; the teacher saw all of the training text, so its soft
    targets carry information the student's data lacks.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return text
    blocks = [text[i:i + block_chars] for i in range(0, len(text), block_chars)]
    every = max(1, round(1 / fraction))
    return "\n".join(blocks[::every])


def sample_windows(text: str, n: int, chars: int, generator: torch.Generator) -> list[str]:
    """``n`` random windows of ``chars`` characters from ``text`` (reproducible with ``generator``)."""
    if len(text) <= chars:
        raise ValueError(f"text has {len(text)} characters, fewer than one window of {chars}")
    starts = torch.randint(0, len(text) - chars, (n,), generator=generator).tolist()
    return [text[s:s + chars] for s in starts]


def encode_texts(tokenizer, texts: list[str], max_len: int):
    """Tokenize ``texts`` as ``[eos, tokens...]``, right-padded to a rectangle truncated at ``max_len``.

    The leading eos (when the tokenizer has one, offsets (0, 0)) makes every token of the window
    predicted, as in :func:`uldviz.metrics.encode_blocks`. Returns (ids (B, L) long, valid (B, L)
    bool, offsets (B, L, 2) long): the tokens' character (start, end) in their own text; padding
    has valid False and offsets (0, 0).
    """
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    eos = getattr(tokenizer, "eos_token_id", None)
    head, head_off = ([eos], [(0, 0)]) if eos is not None else ([], [])
    rows = [(head + ids)[:max_len] for ids in enc["input_ids"]]
    offs = [(head_off + list(o))[:max_len] for o in enc["offset_mapping"]]
    width = max(1, max(len(r) for r in rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    offsets = torch.zeros(len(rows), width, 2, dtype=torch.long)
    for b, (r, o) in enumerate(zip(rows, offs)):
        if r:
            ids[b, :len(r)] = torch.tensor(r)
            valid[b, :len(r)] = True
            offsets[b, :len(r)] = torch.tensor([list(x) for x in o])
    return ids, valid, offsets


@dataclass
class Batch:
    """The same text windows tokenized by the student's and by the teacher's tokenizer."""

    texts: list
    student_ids: torch.Tensor
    student_valid: torch.Tensor
    student_offsets: torch.Tensor
    teacher_ids: torch.Tensor
    teacher_valid: torch.Tensor
    teacher_offsets: torch.Tensor

    def to(self, device) -> "Batch":
        """The batch with its tensors on ``device``."""
        moved = {f.name: (getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), torch.Tensor)
                          else getattr(self, f.name)) for f in fields(self)}
        return Batch(**moved)


def make_batch(texts, student_tokenizer, teacher_tokenizer, student_len: int, teacher_len: int) -> Batch:
    """Tokenize the same windows with both tokenizers (so positions can be paired by offsets)."""
    s = encode_texts(student_tokenizer, texts, student_len)
    t = encode_texts(teacher_tokenizer, texts, teacher_len)
    return Batch(list(texts), *s, *t)


def _label_mask(valid: torch.Tensor) -> torch.Tensor:
    """Positions whose next token exists (their logits have a label): (B, L) bool."""
    m = torch.zeros_like(valid)
    m[:, :-1] = valid[:, :-1] & valid[:, 1:]
    return m


def pair_positions(batch: Batch, how: str):
    """The :class:`~uldviz.align.Alignment` of a batch: ``'positional'`` or ``'offset'`` pairing.

    Only positions that predict a token inside the window take part, the same set for both ways.
    """
    if how == "positional":
        return positional_pairing(_label_mask(batch.student_valid), _label_mask(batch.teacher_valid))
    if how == "offset":
        return offset_pairing(batch.student_offsets, batch.teacher_offsets, batch.student_valid, batch.teacher_valid)
    raise ValueError(f"alignment must be 'positional' or 'offset', got {how!r}")


# --------------------------------------------------------------------------- the objective
def step_loss(cfg: DistillConfig, student, batch: Batch, teacher=None):
    r"""One batch's objective: :math:`\mathcal L = \mathrm{CE} + \lambda\, D`, D = ULD or KL (or 0 for CE only).

    Returns (total, ce, distill) tensors; ``distill`` is a zero tensor for ``loss='ce'``.
    """
    s_logits = student(input_ids=batch.student_ids, attention_mask=batch.student_valid.long()).logits
    labels = batch.student_ids[:, 1:].masked_fill(~_label_mask(batch.student_valid)[:, :-1], -100)
    ce = cross_entropy(s_logits[:, :-1], labels)
    if cfg.loss == "ce" or cfg.lam == 0:
        return ce, ce, torch.zeros((), device=ce.device)
    if teacher is None:
        raise ValueError(f"loss={cfg.loss!r} needs a teacher model")
    with torch.no_grad():
        t_logits = teacher(input_ids=batch.teacher_ids, attention_mask=batch.teacher_valid.long()).logits
    if cfg.loss == "kl":
        if s_logits.shape[-1] != t_logits.shape[-1] or batch.student_ids.shape != batch.teacher_ids.shape:
            raise ValueError("KL distillation needs the student to share the teacher's tokenizer (same_tokenizer=True)")
        dist = kl_divergence(s_logits, t_logits, temperature=cfg.teacher_temperature,
                             mask=_label_mask(batch.student_valid))
    else:
        al = pair_positions(batch, cfg.align)
        dev = s_logits.device
        si, ti, m = al.student_index.to(dev), al.teacher_index.to(dev), al.mask.to(dev)
        ps = torch.gather(s_logits, 1, si[..., None].expand(-1, -1, s_logits.shape[-1]))
        pt = torch.gather(t_logits, 1, ti[..., None].expand(-1, -1, t_logits.shape[-1]))
        dist = uld_loss(ps, pt, student_temperature=cfg.student_temperature,
                        teacher_temperature=cfg.teacher_temperature, mask=m)
    return ce + cfg.lam * dist, ce, dist


# --------------------------------------------------------------------------- evaluation
def val_bits_per_byte(model, tokenizer, text: str, block: int) -> float:
    """Held-out bits per byte of ``model`` on ``text`` in blocks of ``block`` tokens (see :mod:`uldviz.metrics`).

    Bits per byte does not depend on the tokenizer, so students with different tokenizers and
    the teacher are scored on the same footing.
    """
    return model_bits_per_byte(model, tokenizer, text, block_size=block)


@torch.no_grad()
def generate(model, tokenizer, prompt: str, max_new_tokens: int = 40, temperature: float = 0.8, top_k: int = 20,
             seed: int = 0) -> str:
    """Sample a continuation of ``prompt`` (temperature + top-k, reproducible with ``seed``); returns the new text."""
    device = next(model.parameters()).device
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("prompt is empty after tokenization")
    n_pos = model.config.n_positions if hasattr(model.config, "n_positions") else 10**9
    gen = torch.Generator().manual_seed(seed)
    x = torch.tensor([ids], device=device)
    was_training = model.training
    model.eval()
    for _ in range(max_new_tokens):
        logits = model(input_ids=x[:, -n_pos:]).logits[0, -1].float().cpu() / temperature
        v, i = torch.topk(logits, min(top_k, logits.shape[-1]))
        nxt = i[torch.multinomial(torch.softmax(v, -1), 1, generator=gen)]
        x = torch.cat([x, nxt.view(1, 1).to(device)], dim=1)
    model.train(was_training)
    full = tokenizer.decode(x[0].tolist())
    start = tokenizer.decode(ids)
    return full[len(start):] if full.startswith(start) else full


# --------------------------------------------------------------------------- models and data setup
def build_student(cfg: DistillConfig, vocab_size: int):
    """A fresh small GPT-2 student (seeded by ``cfg.seed``) for a vocabulary of ``vocab_size``."""
    try:
        from .models import tiny_causal_lm
    except ImportError:  # pragma: no cover - models.py ships with the kit
        tiny_causal_lm = None
    if tiny_causal_lm is not None:
        return tiny_causal_lm(vocab_size=vocab_size, n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head,
                              n_positions=cfg.n_positions, seed=cfg.seed)
    from transformers import GPT2Config, GPT2LMHeadModel  # pragma: no cover

    torch.manual_seed(cfg.seed)  # pragma: no cover
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_layer=cfg.n_layer, n_embd=cfg.n_embd,  # pragma: no cover
                                      n_head=cfg.n_head, n_positions=cfg.n_positions))


@dataclass
class Setup:
    """What every run shares: the teacher, both tokenizers, the student's training text, validation text."""

    teacher: object
    teacher_tokenizer: object
    student_tokenizer: object
    train_text: str  # the whole training split (the teacher's)
    val_text: str
    teacher_card: dict = field(default_factory=dict)
    preset: str = "offline"

    def student_text(self, fraction: float) -> str:
        """The part of the training text the student sees (see :func:`student_subset`)."""
        return student_subset(self.train_text, fraction)


def prepare(preset: str = "offline", val_fraction: float = 0.1, hub_teacher: str | None = None,
            hub_student: str | None = None) -> Setup:
    """Load the teacher, the tokenizers and the corpus split for ``preset``.

    ``'offline'``: the kit's shipped teacher (data/teacher) and its two tokenizers, the
    ``pydoc_data`` corpus. ``'hub'``: a pretrained teacher (default EleutherAI/pythia-160m) and
    the tokenizer of another model (default gpt2) for the student, which is still trained from
    scratch; names or local ``save_pretrained`` folders. Offline the hub preset raises
    ``HubUnavailableError`` (an ``OSError``) with a clear message.
    """
    from .corpus import load_corpus, train_val_split

    if preset == "offline":
        from .models import load_teacher
        from .tokenization import offline_tokenizers

        teacher, t_tok, card = load_teacher()
        s_tok = offline_tokenizers()[1]
        split = (card or {}).get("config", {}).get("val_fraction", val_fraction)
        train_text, val_text = train_val_split(load_corpus(), split)
        return Setup(teacher, t_tok, s_tok, train_text, val_text, dict(card or {}), preset)
    if preset == "hub":
        from .models import HUB_STUDENT, HUB_TEACHER, load_pretrained
        from .tokenization import load_tokenizer

        name = hub_teacher or HUB_TEACHER
        teacher, t_tok = load_pretrained(name)
        s_tok = load_tokenizer(hub_student or HUB_STUDENT)
        for tok in (t_tok, s_tok):
            if tok.eos_token_id is None:
                raise ValueError(f"tokenizer {tok.name_or_path!r} has no eos token; the kit starts windows with one")
        train_text, val_text = train_val_split(load_corpus(), val_fraction)
        return Setup(teacher, t_tok, s_tok, train_text, val_text, {"name": name}, preset)
    raise ValueError(f"preset must be 'offline' or 'hub', got {preset!r}")


# --------------------------------------------------------------------------- the loop
def _context(model) -> int:
    """A causal LM's context length (GPT-2 ``n_positions``, Llama/NeoX ``max_position_embeddings``)."""
    cfg = model.config
    return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 2048)


@dataclass
class RunResult:
    """One finished (or stopped) run: its curves, final held-out bits per byte and a sample."""

    name: str
    config: dict
    steps_done: int
    train_steps: list
    train_ce: list
    train_distill: list
    val_steps: list
    val_bpb: list
    final_bpb: float
    seconds: float
    stopped: bool = False
    sample: str = ""

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def _lr_at(cfg: DistillConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def train(cfg: DistillConfig, setup: Setup, name: str = "run", callback: Callable | None = None,
          stop: StopFlag | None = None, sample_prompt: str | None = "The ") -> RunResult:
    """Train one student with ``cfg`` and return its :class:`RunResult`.

    ``callback(event: dict)`` is called with ``{"type": "start"|"step"|"eval"|"end", ...}``;
    ``stop.set()`` (or interrupting the kernel) ends the run after the current step, keeping its
    curve (the final score is then computed on the model as it is).
    """
    device = pick_device(cfg.device)
    amp = (device.type == "cuda") if cfg.amp is None else bool(cfg.amp)
    amp_dtype = torch.bfloat16 if (device.type == "cuda" and torch.cuda.is_bf16_supported()) else torch.float16
    s_tok = setup.teacher_tokenizer if cfg.same_tokenizer else setup.student_tokenizer
    t_tok = setup.teacher_tokenizer
    teacher = setup.teacher.to(device).eval() if cfg.loss != "ce" else None
    t_len = _context(setup.teacher)
    s_len = min(cfg.n_positions, t_len) if cfg.same_tokenizer else cfg.n_positions
    student = build_student(cfg, len(s_tok)).to(device).train()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    text = setup.student_text(cfg.train_fraction)
    gen = torch.Generator().manual_seed(1000 + cfg.seed)  # same windows, in the same order, for every run
    val_small = setup.val_text[: cfg.eval_chars]
    ctx = min(cfg.n_positions, cfg.eval_block)
    res = RunResult(name, asdict(cfg), 0, [], [], [], [], [], float("nan"), 0.0)
    emit = callback or (lambda event: None)
    emit({"type": "start", "name": name, "steps": cfg.steps, "config": asdict(cfg)})
    start = time.perf_counter()
    try:
        for step in range(cfg.steps):
            texts = sample_windows(text, cfg.batch_size, cfg.window_chars, gen)
            batch = make_batch(texts, s_tok, t_tok, s_len, t_len).to(device)
            for g in opt.param_groups:
                g["lr"] = _lr_at(cfg, step)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                loss, ce, dist = step_loss(cfg, student, batch, teacher)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            res.steps_done = step + 1
            res.train_steps.append(step + 1)
            res.train_ce.append(ce.item())
            res.train_distill.append(dist.item())
            emit({"type": "step", "name": name, "step": step + 1, "steps": cfg.steps, "loss": loss.item(),
                  "ce": res.train_ce[-1], "distill": res.train_distill[-1]})
            stopping = stop is not None and stop.is_set()
            if (step + 1) % cfg.eval_every == 0 and not stopping and step + 1 < cfg.steps:
                bpb = val_bits_per_byte(student, s_tok, val_small, ctx)
                res.val_steps.append(step + 1)
                res.val_bpb.append(bpb)
                emit({"type": "eval", "name": name, "step": step + 1, "val_bpb": bpb})
            if stopping:
                res.stopped = True
                break
    except KeyboardInterrupt:  # interrupting the kernel stops the run like the stop button
        res.stopped = True
    res.final_bpb = val_bits_per_byte(student, s_tok, setup.val_text, ctx)
    res.val_steps.append(res.steps_done)
    res.val_bpb.append(val_bits_per_byte(student, s_tok, val_small, ctx))
    res.seconds = time.perf_counter() - start
    if sample_prompt:
        res.sample = generate(student, s_tok, sample_prompt, max_new_tokens=30, seed=cfg.seed)
    emit({"type": "eval", "name": name, "step": res.steps_done, "val_bpb": res.val_bpb[-1]})
    emit({"type": "end", "name": name, "result": res})
    if teacher is not None:
        setup.teacher.to("cpu")
    return res


# --------------------------------------------------------------------------- several runs, several seeds
def run_experiment(runs, seeds, setup: Setup, base: DistillConfig | None = None, callback: Callable | None = None,
                   stop: StopFlag | None = None, progress: bool = False) -> dict:
    """Train every run in ``runs`` (names, optionally ``NAME@λ``) for every seed; returns {run: [RunResult, ...]}."""
    base = base or DistillConfig()
    out: dict = {}
    total = len(runs) * len(seeds)
    done = 0
    for spec in runs:
        for seed in seeds:
            cfg = run_config(spec, base, seed=seed)
            bar = _ProgressBar(f"{spec} seed {seed} [{done + 1}/{total}]", cfg.steps) if progress else None

            def cb(event, bar=bar):
                if bar is not None and event["type"] == "step":
                    bar.update(event["step"], f"ce {event['ce']:.3f}")
                if callback is not None:
                    callback(event)

            if stop is not None:
                stop.clear()
            res = train(cfg, setup, name=spec, callback=cb, stop=stop)
            if bar is not None:
                bar.close(f"val {res.final_bpb:.4f} bits/byte, {res.seconds:.0f} s")
            out.setdefault(spec, []).append(res)
            done += 1
    return out


_WORKER_SETUP: Setup | None = None


def _worker_init(preset: str, threads: int) -> None:
    """Process-pool initialiser: load the shared setup once per worker, limit its threads."""
    global _WORKER_SETUP
    torch.set_num_threads(threads)
    _WORKER_SETUP = prepare(preset)


def _worker_run(spec: str, seed: int, base: dict) -> RunResult:
    """Process-pool task: one run for one seed."""
    return train(run_config(spec, DistillConfig(**base), seed=seed), _WORKER_SETUP, name=spec)


def run_parallel(runs, seeds, preset: str, base: DistillConfig, jobs: int, progress: bool = False,
                 on_result: Callable | None = None) -> dict:
    """Like :func:`run_experiment`, in ``jobs`` worker processes of one thread each (CPU machines with spare cores).

    Runs are independent and seeded, so the results match a sequential run up to floating-point noise.
    Tasks go seed by seed (all runs of seed 0 first); ``on_result(partial)`` is called after each one
    with the results so far (None where not done yet).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    tasks = [(spec, seed) for spec in runs for seed in seeds]
    out: dict = {spec: [None] * len(seeds) for spec in runs}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(preset, 1)) as pool:
        futures = {}
        for i, seed in enumerate(seeds):
            for spec in runs:
                futures[pool.submit(_worker_run, spec, seed, asdict(base))] = (spec, i)
        for k, fut in enumerate(as_completed(futures), 1):
            spec, i = futures[fut]
            res = fut.result()
            out[spec][i] = res
            if on_result is not None:
                on_result(out)
            if progress:
                print(f"[{k}/{len(tasks)}] {spec} seed {res.config['seed']}: {res.final_bpb:.4f} bits/byte "
                      f"({res.seconds:.0f} s)", file=sys.stderr, flush=True)
    return out


def _row(name: str, seeds: list, vals: list, config: dict, seconds: list) -> dict:
    """One run's summary: per-seed values, mean and sample standard deviation (n - 1)."""
    base, _, lam = name.partition("@")
    return {
        "label": RUN_LABELS.get(base, name) + (f" (λ = {lam})" if lam else ""),
        "seeds": list(seeds),
        "config_lam": config.get("lam"),
        "config_loss": config.get("loss"),
        "config_align": config.get("align"),
        "val_bpb": list(vals),
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "seconds": list(seconds),
    }


def summarize(results: dict) -> dict:
    """Mean and sample standard deviation (n-1) of the final bits per byte per run: {run: {...}}."""
    return {name: _row(name, [r.config["seed"] for r in rs], [r.final_bpb for r in rs], rs[0].config,
                       [r.seconds for r in rs]) for name, rs in results.items()}


def merge_records(records: list[dict]) -> dict:
    """Merge result files of the same experiment run over different seeds (e.g. in two processes).

    Per run, the seeds of all files are pooled (a seed present twice is kept once, from the first
    file); mean and std are recomputed. The commands of the parts are kept under ``"parts"``.
    """
    if not records:
        raise ValueError("nothing to merge")
    first = records[0]
    for rec in records[1:]:
        a = {k: v for k, v in first["base_config"].items() if k != "device"}
        b = {k: v for k, v in rec["base_config"].items() if k != "device"}
        if a != b:
            raise ValueError("cannot merge results made with different base configurations")
    runs: dict = {}
    for rec in records:
        for name, row in rec["runs"].items():
            pooled = runs.setdefault(name, {"seeds": [], "vals": [], "secs": [], "curves": [], "config": row})
            curves = rec.get("curves", {}).get(name, {}).get("val_bpb", [None] * len(row["seeds"]))
            for seed, val, sec, curve in zip(row["seeds"], row["val_bpb"], row["seconds"], curves):
                if seed not in pooled["seeds"]:
                    pooled["seeds"].append(seed)
                    pooled["vals"].append(val)
                    pooled["secs"].append(sec)
                    pooled["curves"].append(curve)
    merged = dict(first)
    merged["runs"] = {name: _row(name, p["seeds"], p["vals"],
                                 {"lam": p["config"]["config_lam"], "loss": p["config"]["config_loss"],
                                  "align": p["config"]["config_align"]}, p["secs"])
                      for name, p in runs.items()}
    merged["curves"] = {name: {"val_steps": first.get("curves", {}).get(name, {}).get("val_steps", []),
                               "val_bpb": p["curves"]} for name, p in runs.items()}
    merged["parts"] = [{"command": r["command"], "complete": r.get("complete", True),
                        "seeds": sorted({s for row in r["runs"].values() for s in row["seeds"]}),
                        "wall_seconds": r["wall_seconds"], "jobs": r.get("jobs", 1)} for r in records]
    merged["wall_seconds"] = sum(r["wall_seconds"] for r in records)
    merged["complete"] = all(r.get("complete", True) for r in records)
    return merged


class _ProgressBar:
    """A one-line text progress bar on stderr (no dependency)."""

    def __init__(self, title: str, total: int, width: int = 30):
        self.title, self.total, self.width = title, total, width
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int, note: str = "") -> None:
        """Redraw the bar at ``n`` of ``total`` (at most 4 times a second)."""
        if n < self.total and time.perf_counter() - self._last < 0.25:
            return
        self._last = time.perf_counter()
        filled = int(self.width * n / self.total)
        rate = (time.perf_counter() - self.start) / max(n, 1)
        sys.stderr.write(f"\r{self.title} |{'#' * filled}{'.' * (self.width - filled)}| {n}/{self.total} "
                         f"{rate:.2f}s/step {note}   ")
        sys.stderr.flush()

    def close(self, note: str = "") -> None:
        """End the line with a final note."""
        sys.stderr.write(f"\r{self.title} |{'#' * self.width}| done: {note}\n")
        sys.stderr.flush()


# --------------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    """The ``python -m uldviz distill`` options."""
    p = argparse.ArgumentParser(prog="python -m uldviz distill",
                                description="Distil the kit's teacher into a small student with a different "
                                            "tokenizer (notebook 03) and write the held-out bits per byte as JSON.")
    p.add_argument("--runs", nargs="+", default=None,
                   help=f"named runs ({', '.join(RUNS)}), optionally NAME@LAMBDA; default: all of them")
    p.add_argument("--loss", choices=["ce", "uld", "kl"], help="one custom run with this loss instead of --runs")
    p.add_argument("--align", choices=["positional", "offset"], default="offset", help="ULD pairing (with --loss uld)")
    p.add_argument("--lam", type=float, default=None, help="weight λ of the distillation term")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (one run per seed), e.g. --seeds 0 1 2")
    p.add_argument("--steps", type=int, default=None, help="training steps per run")
    p.add_argument("--train-fraction", type=float, default=None, help="share of the training text the student sees")
    p.add_argument("--temperature", type=float, default=None, help="teacher and student softmax temperature")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, with mixed precision), cpu or cuda")
    p.add_argument("--preset", choices=["offline", "hub"], default="offline", help="offline kit models or hub models")
    p.add_argument("--fast", action="store_true", help="the tiny CI-sized configuration (seconds per run)")
    p.add_argument("--out", default=None, help="write the JSON result here (e.g. data/results/multiseed.json)")
    p.add_argument("--jobs", type=int, default=1,
                   help="train runs in this many worker processes of one thread each (default 1: in this process)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="merge result files of the same experiment over different seeds into --out (no training)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m uldviz distill``: train, print a table, optionally write JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.merge:
        if not args.out:
            raise ValueError("--merge needs --out FILE for the merged result")
        merged = merge_records([json.loads(Path(f).read_text()) for f in args.merge])
        merged["command"] = "python -m uldviz distill " + " ".join(shlex.quote(a) for a in argv)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(merged, indent=1, ensure_ascii=False))
        for name, row in merged["runs"].items():
            print(f"{name:<28} {row['mean']:>12.4f} ± {row['std']:.4f}  {len(row['val_bpb'])}")
        print(f"wrote {args.out}")
        return 0
    changes = {"device": args.device}
    for key, val in (("steps", args.steps), ("train_fraction", args.train_fraction)):
        if val is not None:
            changes[key] = val
    if args.temperature is not None:
        changes.update(student_temperature=args.temperature, teacher_temperature=args.temperature)
    base = fast_config(**changes) if (args.fast or fast_mode()) else DistillConfig(**changes)
    if args.loss is not None:
        name = {"ce": "ce", "kl": "kl-same", "uld": f"uld-{args.align}"}[args.loss]
        runs = [name + (f"@{args.lam}" if args.lam is not None and args.loss != "ce" else "")]
    else:
        runs = args.runs or list(DEFAULT_RUNS)
        if args.lam is not None:
            runs = [r if ("@" in r or r.startswith("ce")) else f"{r}@{args.lam}" for r in runs]
    for r in runs:
        parse_run(r)  # fail early on a bad name
    device = pick_device(args.device)
    print(f"device: {device}" + (" (mixed precision)" if device.type == "cuda" else " (no GPU found: CPU, float32)"),
          file=sys.stderr)
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    setup = prepare(args.preset)
    teacher_bpb = val_bits_per_byte(setup.teacher.to(device), setup.teacher_tokenizer, setup.val_text,
                                    min(base.eval_block, _context(setup.teacher)))
    setup.teacher.to("cpu")
    start = time.perf_counter()

    def write(results: dict, complete: bool) -> None:
        if not args.out:
            return
        done = {k: [r for r in v if r is not None] for k, v in results.items()}
        done = {k: v for k, v in done.items() if v}
        record = {
            "command": "python -m uldviz distill " + " ".join(shlex.quote(a) for a in argv),
            "complete": complete,
            "base_config": asdict(base),
            "runs": summarize(done),
            "teacher_bpb": teacher_bpb,
            "teacher_card_bpb": setup.teacher_card.get("val_bits_per_byte"),
            "wall_seconds": time.perf_counter() - start,
            "jobs": args.jobs,
            "cpu_count": os.cpu_count(),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
            or platform.machine(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "samples": {name: rs[0].sample for name, rs in done.items()},
            "curves": {name: {"val_steps": rs[0].val_steps, "val_bpb": [r.val_bpb for r in rs]}
                       for name, rs in done.items()},
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=1, ensure_ascii=False))

    if args.jobs == 1:
        results = run_experiment(runs, args.seeds, setup, base, progress=not args.quiet)
    else:
        results = run_parallel(runs, args.seeds, args.preset, base, args.jobs, progress=not args.quiet,
                               on_result=lambda partial: write(partial, False))
    wall = time.perf_counter() - start
    table = summarize(results)
    print(f"\n{'run':<28} {'bits/byte mean ± std':>22}  seeds")
    for name, row in table.items():
        print(f"{name:<28} {row['mean']:>12.4f} ± {row['std']:.4f}  {len(row['val_bpb'])}")
    print(f"{'teacher':<28} {teacher_bpb:>12.4f}")
    print(f"wall time {wall:.0f} s on {device}")
    if args.out:
        write(results, True)
        print(f"wrote {args.out}")
    return 0
