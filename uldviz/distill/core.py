r"""The notebooks' training loop: one config, one objective, one loop that reads in one sitting.

A small student learns from a teacher whose tokenizer it does not share. Every knob is a field of
:class:`DistillConfig`. Each step cuts the SAME text windows with both tokenizers
(:func:`uldviz.train.batch.encode_batch`, so positions can be paired) and minimises

.. math:: \mathcal L = w_{CE}\,\mathrm{CE}_\alpha(\text{student}) + \lambda\, D(\text{student}, \text{teacher}),

where :math:`\mathrm{CE}_\alpha` is cross-entropy with label smoothing α (0 by default) and D the term
named by ``cfg.loss`` in the objective layer every loop shares (:mod:`uldviz.train.objectives`: ULD, KL,
hybrid, chunk likelihood, and the shuffled-teacher control of each).

Runs are compared on **bits per byte**, which does not depend on the tokenizer, on three disjoint
splits of whole documents: the student trains on the train split, the checkpoint is selected on the
**validation** split (early stopping), and the reported score comes from the **test** split, which
nothing was tuned on. :class:`RunResult` keeps the test score at the selected step and at the last.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch

from uldviz.env import pick_device
from uldviz.train.batch import TextBatch, encode_batch
from uldviz.train.config import TrainConfig, check_int_fields
from uldviz.train.metrics import context_length, model_bits_per_byte
from uldviz.train.objectives import LOSS_NAMES, Objective
from uldviz.train.schedule import make_optimizer, set_lr

__all__ = [
    "DistillConfig",
    "LOSSES",
    "TextBatch",
    "make_objective",
    "StopFlag",
    "RunResult",
    "evaluate",
    "train",
]

#: Distillation terms the loop knows ("ce" means none): the objective layer's registry.
LOSSES = LOSS_NAMES


# --------------------------------------------------------------------------- configuration
@dataclass
class DistillConfig(TrainConfig):
    """Every knob of one training run: the loss and optimisation (:class:`~uldviz.train.config.TrainConfig`) plus
    the notebook's data and model. The defaults are the notebook's data-poor run (CPU, about a minute)."""

    decay: str = "all"  # weight decay on every parameter: the setting of the shipped protocol runs
    text: str = "corpus"  # "corpus": the student's share of the real text; "teacher": teacher-written (seqkd)
    same_tokenizer: bool = False  # True: the student uses the teacher's tokenizer (the KL reference)
    window_chars: int = 160  # each training sample is a window of this many characters
    train_fraction: float = 0.03  # share of the training text the student sees (the teacher saw all of it)
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 128
    eval_chars: int | None = None  # validation characters used (None: the whole validation split)
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda"
    amp: bool | None = None  # mixed precision; None = on for CUDA, off for CPU

    def __post_init__(self):
        super().__post_init__()
        if self.text not in ("corpus", "teacher"):
            raise ValueError(f"text must be 'corpus' or 'teacher' (teacher-generated), got {self.text!r}")
        if self.loss == "kl" and not self.same_tokenizer:
            raise ValueError("loss='kl' needs one shared vocabulary: set same_tokenizer=True (or use loss='uld')")
        if self.same_tokenizer and self.loss != "kl" and self.loss != "ce":
            raise ValueError(f"loss={self.loss!r} is a cross-tokenizer loss; with same_tokenizer=True use 'kl'")
        check_int_fields(self, ("window_chars", "n_layer", "n_embd", "n_head", "n_positions"))
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


def make_objective(cfg: DistillConfig, setup) -> Objective:
    """The run's :class:`~uldviz.train.objectives.Objective`: ``cfg``'s loss bound to the setup's tokenizers."""
    s_tok = setup.teacher_tokenizer if cfg.same_tokenizer else setup.student_tokenizer
    return Objective(cfg, s_tok, setup.teacher_tokenizer, seed=cfg.seed)


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
def train(cfg: DistillConfig, setup, name: str = "run", objective: Objective | None = None,
          callback: Callable | None = None, stop: StopFlag | None = None,
          sample_prompt: str | None = "The ", keep_model: bool = False) -> RunResult:
    """Train one student with ``cfg`` on ``setup`` (:class:`uldviz.distill.data.Setup`); return its :class:`RunResult`.

    ``objective``: the step's :class:`~uldviz.train.objectives.Objective` (None: built from ``cfg`` by
    :func:`make_objective`; pass your own, e.g. a subclass, to change or time a term). ``callback(event)``
    receives ``{"type": "start"|"step"|"eval"|"end", ...}``; ``stop.set()`` or a KeyboardInterrupt ends the
    run after the current step, keeping its curve (it is then scored as it is). ``keep_model`` keeps the
    selected checkpoint's model in ``result.model`` (on the CPU). Each step pairs the batch on the CPU, moves
    batch and pairs to the device once, and minimises ``objective.loss``.
    """
    from uldviz.distill.data import build_student, sample_windows, teacher_generated_text

    device = pick_device(cfg.device)
    amp = (device.type == "cuda") if cfg.amp is None else bool(cfg.amp)
    amp_dtype = torch.bfloat16 if (device.type == "cuda" and torch.cuda.is_bf16_supported()) else torch.float16
    if objective is None:
        objective = make_objective(cfg, setup)
    elif not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective (uldviz.train.objectives), not {type(objective).__name__}")
    s_tok = setup.teacher_tokenizer if cfg.same_tokenizer else setup.student_tokenizer
    t_tok, t_len = setup.teacher_tokenizer, context_length(setup.teacher)
    s_len = min(cfg.n_positions, t_len) if cfg.same_tokenizer else cfg.n_positions
    teacher = setup.teacher.to(device).eval() if objective.needs_teacher else None
    student = build_student(cfg, len(s_tok)).to(device).train()
    opt = make_optimizer(student, cfg)
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
            windows = sample_windows(text, cfg.batch_size, cfg.window_chars, gen)
            batch = encode_batch(windows, s_tok, t_tok if objective.distills else None, student_len=s_len,
                                 teacher_len=t_len)
            pairs = objective.pair(batch)  # on the CPU, before any forward pass; moved once below
            batch = batch.to(device)
            pairs = pairs.to(device) if pairs is not None else None
            set_lr(opt, step, cfg)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                sums = objective.sums(student, teacher, batch, pairs)
                loss = objective.loss(sums)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            ce, dist = (v.item() / max(n, 1) for v, n in ((sums.ce, sums.ce_count), (sums.distill, sums.distill_count)))
            res.steps_done = step + 1
            res.train_steps.append(step + 1)
            res.train_ce.append(ce)
            res.train_distill.append(dist)
            emit({"type": "step", "name": name, "step": step + 1, "steps": cfg.steps, "loss": loss.item(),
                  "ce": ce, "distill": dist})
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
