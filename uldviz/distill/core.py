r"""The training core of notebook 03: one config, one batch, one objective, one loop. Reads in one sitting.

A small student learns from a teacher whose tokenizer it does not share. Every knob is a field of
:class:`DistillConfig`. Each step cuts the SAME text windows with both tokenizers (:func:`make_batch`,
so positions can be paired), and minimises

.. math:: \mathcal L = \mathrm{CE}_\varepsilon(\text{student}) + \lambda\, D(\text{student}, \text{teacher}),

where :math:`\mathrm{CE}_\varepsilon` is cross-entropy with label smoothing ε (0 by default) and D is the
distillation term chosen by ``cfg.loss`` — built by :func:`uldviz.train.objectives.make_objective` and
passed to :func:`train` as a parameter (ULD, KL, hybrid, chunk likelihood, or a custom callable).

Runs are compared on **bits per byte**, which does not depend on the tokenizer, on three disjoint
splits of whole documents: the student trains on the train split, the checkpoint is selected on the
**validation** split (early stopping), and the reported score comes from the **test** split, which
nothing was tuned on. :class:`RunResult` keeps the test score at the selected step and at the last.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Callable

import torch

from uldviz.alignment.spans import encode_texts
from uldviz.env import check_int_fields, pick_device
from uldviz.maths.losses import cross_entropy
from uldviz.train.metrics import context_length, model_bits_per_byte
from uldviz.train.schedule import warmup_cosine_lr

__all__ = [
    "DistillConfig",
    "LOSSES",
    "Batch",
    "encode_texts",
    "make_batch",
    "label_mask",
    "StopFlag",
    "RunResult",
    "step_loss",
    "evaluate",
    "train",
]

#: Distillation terms :func:`uldviz.train.objectives.make_objective` knows ("ce" means none).
LOSSES = ("ce", "uld", "kl", "hybrid", "chunk")


# --------------------------------------------------------------------------- configuration
@dataclass
class DistillConfig:
    """Every knob of one training run. The defaults are the notebook's data-poor run (CPU, about a minute)."""

    loss: str = "ce"  # distillation term D: "ce" (none), "uld", "kl" (same tokenizer), "hybrid", "chunk"
    align: str = "offset"  # ULD's position pairing: "positional" (the paper's) or "offset" (character offsets)
    lam: float = 1.0  # weight λ of D
    label_smoothing: float = 0.0  # ε of the CE term: the teacherless regulariser
    shuffle_teacher: bool = False  # control: teacher targets permuted among the batch's pairs (no context link)
    text: str = "corpus"  # "corpus": the student's share of the real text; "teacher": teacher-written (seqkd)
    student_temperature: float = 1.0
    teacher_temperature: float = 1.0
    hybrid_weight: float | None = None  # hybrid: weight of the shared-token part (None: GOLD's default)
    chunk_tau: float = 100.0  # chunk likelihood: temperature τ of the binarised divergence
    same_tokenizer: bool = False  # True: the student uses the teacher's tokenizer (the KL reference)
    steps: int = 300
    batch_size: int = 16
    window_chars: int = 160  # each training sample is a window of this many characters
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decay down to lr * min_lr_ratio
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    train_fraction: float = 0.03  # share of the training text the student sees (the teacher saw all of it)
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 128
    eval_every: int = 25  # validation bits per byte every this many steps (and at the last step)
    eval_block: int = 64  # evaluation blocks of this many tokens (the same for every run)
    eval_chars: int | None = None  # validation characters used (None: the whole validation split)
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda"
    amp: bool | None = None  # mixed precision; None = on for CUDA, off for CPU

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.align not in ("positional", "offset"):
            raise ValueError(f"align must be 'positional' or 'offset', got {self.align!r}")
        if self.text not in ("corpus", "teacher"):
            raise ValueError(f"text must be 'corpus' or 'teacher' (teacher-generated), got {self.text!r}")
        if self.loss == "kl" and not self.same_tokenizer:
            raise ValueError("loss='kl' needs one shared vocabulary: set same_tokenizer=True (or use loss='uld')")
        if self.same_tokenizer and self.loss in ("uld", "hybrid", "chunk"):
            raise ValueError(f"loss={self.loss!r} is a cross-tokenizer loss; with same_tokenizer=True use 'kl'")
        check_int_fields(self, ("steps", "batch_size", "window_chars", "n_layer", "n_embd", "n_head", "n_positions",
                                "eval_every", "eval_block"))
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.hybrid_weight is not None and not 0 <= self.hybrid_weight <= 1:
            raise ValueError(f"hybrid_weight must be in [0, 1] or None, got {self.hybrid_weight}")
        if not (self.chunk_tau > 0 and math.isfinite(self.chunk_tau)):
            raise ValueError(f"chunk_tau must be a finite number > 0, got {self.chunk_tau}")


# --------------------------------------------------------------------------- the batch
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
        return Batch(**{f.name: (v.to(device) if isinstance(v := getattr(self, f.name), torch.Tensor) else v)
                        for f in fields(self)})


def make_batch(texts, student_tokenizer, teacher_tokenizer, student_len: int, teacher_len: int) -> Batch:
    """Tokenize the same windows with both tokenizers (so positions can be paired by offsets)."""
    return Batch(list(texts), *encode_texts(student_tokenizer, texts, student_len),
                 *encode_texts(teacher_tokenizer, texts, teacher_len))


def label_mask(valid: torch.Tensor) -> torch.Tensor:
    """Positions whose next token exists (their logits have a label): (B, L) bool."""
    m = torch.zeros_like(valid)
    m[:, :-1] = valid[:, :-1] & valid[:, 1:]
    return m


# --------------------------------------------------------------------------- one step's objective
def step_loss(cfg: DistillConfig, student, batch: Batch, teacher=None, objective: Callable | None = None):
    r"""One batch's objective :math:`\mathcal L = \mathrm{CE}_\varepsilon + \lambda D`: returns (total, ce, D).

    ``objective(student_logits, teacher_logits, batch) -> D`` is the distillation term (None: CE only);
    the teacher runs without gradient. ``D`` is a zero tensor when there is no objective.
    """
    s_logits = student(input_ids=batch.student_ids, attention_mask=batch.student_valid.long()).logits
    labels = batch.student_ids[:, 1:].masked_fill(~label_mask(batch.student_valid)[:, :-1], -100)
    ce = cross_entropy(s_logits[:, :-1], labels, label_smoothing=cfg.label_smoothing)
    if objective is None or cfg.lam == 0:
        return ce, ce, torch.zeros((), device=ce.device)
    if teacher is None:
        raise ValueError(f"loss={cfg.loss!r} needs a teacher model")
    with torch.no_grad():
        t_logits = teacher(input_ids=batch.teacher_ids, attention_mask=batch.teacher_valid.long()).logits
    dist = objective(s_logits, t_logits, batch)
    return ce + cfg.lam * dist, ce, dist


# --------------------------------------------------------------------------- evaluation
def evaluate(model, tokenizer, text: str, block: int) -> float:
    """Bits per byte of ``model`` on ``text`` in blocks of ``block`` tokens: comparable across tokenizers."""
    return model_bits_per_byte(model, tokenizer, text, block_size=block)


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


@dataclass
class RunResult:
    """One finished (or stopped) run: curves, the validation-selected step, test scores there and at the end."""

    name: str
    config: dict
    steps_done: int = 0
    train_steps: list = field(default_factory=list)
    train_ce: list = field(default_factory=list)
    train_distill: list = field(default_factory=list)
    val_steps: list = field(default_factory=list)
    val_bpb: list = field(default_factory=list)
    selected_step: int = 0  # the evaluation step with the lowest validation bits per byte (early stopping)
    val_selected: float = float("nan")
    test_selected: float = float("nan")  # test bits per byte of the selected checkpoint: the reported score
    test_final: float = float("nan")  # test bits per byte after the last step
    seconds: float = 0.0
    stopped: bool = False  # the stop button (or an interrupt) ended it early
    interrupted: bool = False  # a KeyboardInterrupt ended it
    sample: str = ""
    model: object = field(default=None, repr=False, compare=False)  # the selected checkpoint, if kept

    def to_dict(self) -> dict:
        """A JSON-ready dict (without the model)."""
        return asdict(replace(self, model=None))


# --------------------------------------------------------------------------- the loop
def train(cfg: DistillConfig, setup, name: str = "run", objective: Callable | None | str = "auto",
          callback: Callable | None = None, stop: StopFlag | None = None,
          sample_prompt: str | None = "The ", keep_model: bool = False) -> RunResult:
    """Train one student with ``cfg`` on ``setup`` (:class:`uldviz.distill.data.Setup`); return its :class:`RunResult`.

    ``objective``: the distillation term, ``"auto"`` builds it from ``cfg`` (see
    :func:`~uldviz.train.objectives.make_objective`), ``None`` trains with CE only, a callable
    ``(student_logits, teacher_logits, batch) -> tensor`` replaces it. ``callback(event)`` receives
    ``{"type": "start"|"step"|"eval"|"end", ...}``; ``stop.set()`` or a KeyboardInterrupt ends the run
    after the current step, keeping its curve (it is then scored as it is). ``keep_model`` keeps the
    selected checkpoint's model in ``result.model`` (on the CPU).
    """
    from uldviz.distill.data import build_student, sample_windows, teacher_generated_text
    from uldviz.train.objectives import make_objective

    device = pick_device(cfg.device)
    amp = (device.type == "cuda") if cfg.amp is None else bool(cfg.amp)
    amp_dtype = torch.bfloat16 if (device.type == "cuda" and torch.cuda.is_bf16_supported()) else torch.float16
    if isinstance(objective, str):
        if objective != "auto":
            raise ValueError(f"objective must be 'auto', None or a callable, got {objective!r}")
        objective = make_objective(cfg, setup)
    s_tok = setup.teacher_tokenizer if cfg.same_tokenizer else setup.student_tokenizer
    t_tok, t_len = setup.teacher_tokenizer, context_length(setup.teacher)
    s_len = min(cfg.n_positions, t_len) if cfg.same_tokenizer else cfg.n_positions
    teacher = setup.teacher.to(device).eval() if objective is not None else None
    student = build_student(cfg, len(s_tok)).to(device).train()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    text = teacher_generated_text(setup, cfg.train_fraction) if cfg.text == "teacher" else \
        setup.student_text(cfg.train_fraction)
    gen = torch.Generator().manual_seed(1000 + cfg.seed)  # the same windows, in the same order, for every run
    val_text = setup.val_text if cfg.eval_chars is None else setup.val_text[:cfg.eval_chars]
    block = min(cfg.n_positions, cfg.eval_block)
    res, best_state = RunResult(name, asdict(cfg)), None
    emit = callback or (lambda event: None)
    emit({"type": "start", "name": name, "steps": cfg.steps, "config": asdict(cfg)})
    start = time.perf_counter()

    def validate(step: int) -> None:  # a point of the validation curve; keep the best checkpoint
        nonlocal best_state
        bpb = evaluate(student, s_tok, val_text, block)
        res.val_steps.append(step)
        res.val_bpb.append(bpb)
        if best_state is None or bpb < res.val_selected:
            res.selected_step, res.val_selected = step, bpb
            best_state = copy.deepcopy(student.state_dict())
        emit({"type": "eval", "name": name, "step": step, "val_bpb": bpb})

    try:
        for step in range(cfg.steps):
            batch = make_batch(sample_windows(text, cfg.batch_size, cfg.window_chars, gen), s_tok, t_tok,
                               s_len, t_len).to(device)
            for g in opt.param_groups:
                g["lr"] = warmup_cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                loss, ce, dist = step_loss(cfg, student, batch, teacher, objective)
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
            if stop is not None and stop.is_set():
                res.stopped = True
                break
            if (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
                validate(step + 1)
    except KeyboardInterrupt:  # interrupting the kernel stops the run like the stop button
        res.stopped = res.interrupted = True
    if not res.val_steps or res.val_steps[-1] != res.steps_done:
        validate(res.steps_done)  # the last step is always a candidate checkpoint
    res.test_final = evaluate(student, s_tok, setup.test_text, block)
    if res.selected_step == res.steps_done:  # the selected checkpoint is the final model: already scored
        res.test_selected = res.test_final
    else:
        student.load_state_dict(best_state)
        res.test_selected = evaluate(student, s_tok, setup.test_text, block)
    res.seconds = time.perf_counter() - start
    if sample_prompt:
        from uldviz.distill.data import generate

        res.sample = generate(student, s_tok, sample_prompt, max_new_tokens=30, seed=cfg.seed)
    if keep_model:
        res.model = student.to("cpu").eval()
    emit({"type": "end", "name": name, "result": res})
    if teacher is not None:
        setup.teacher.to("cpu")
    return res
