r"""``python -m uldviz train``: distil a causal-LM teacher into a causal-LM student on 1..N processes.

The loop of :func:`train`, in order: load the examples and the models; pick the loss from the registry
(:mod:`uldviz.scale.objectives`); wrap the student with ``accelerate`` (DDP, or FSDP when ``accelerate config`` says
so); then per optimizer step take this process's share of the global batch, pair positions, divide every sum by the
*global* counts (so N processes compute the loss of one big batch), backward with gradient synchronisation on the
last micro-batch only, clip, step. Held-out bits per byte every ``eval_every`` steps; ``accelerate`` checkpoints
(model, optimizer, schedule, RNG) plus the step number, which fixes the data position. Launch with
``python -m uldviz train ...`` or ``accelerate launch --num_processes 8 -m uldviz train ...``.

.. math:: \mathcal L = w_{CE}\,\frac{\sum \mathrm{CE}}{N_{CE}} + \lambda\,\frac{\sum D}{N_D}
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from uldviz.scale.config import ScaleConfig, parse_and_run
from uldviz.scale.data import encode_examples, fingerprint, global_batch, load_examples, process_share
from uldviz.scale.evaluate import distributed_bits_per_byte, held_out_blocks
from uldviz.scale.loading import (
    check_context,
    load_student,
    load_teacher,
    output_vocab,
    require_teacher,
    same_tokenizer,
)
from uldviz.scale.objectives import LossContext, batch_sums, get_objective

__all__ = ["TrainState", "TrainResult", "train", "save_checkpoint", "find_checkpoint", "main"]

STATE_FILE = "trainer_state.json"


@dataclass
class TrainState:
    """What accelerate's checkpoint does not hold: the step (hence the data position) and the curves so far."""

    step: int = 0
    history: list = field(default_factory=list)  # per step: step, loss, ce, distill, lr, tokens
    evals: list = field(default_factory=list)  # step, val_bpb


@dataclass
class TrainResult:
    """A finished run: curves, final held-out bits per byte, throughput; identical on every process."""

    steps: int
    history: list
    evals: list
    final_bpb: float
    out_dir: str
    seconds: float
    tokens_per_second: float
    peak_memory_bytes: int | None
    processes: int
    global_batch: int


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(acc, cfg: ScaleConfig, state: TrainState, extra: dict) -> Path:
    """``accelerate`` state (model, optimizer, scheduler, RNG of every process) + ``trainer_state.json``."""
    path = Path(cfg.out_dir) / "checkpoints" / f"step_{state.step:07d}"
    acc.save_state(str(path))
    if acc.is_main_process:
        (path / STATE_FILE).write_text(json.dumps({**asdict(state), **extra, "config": asdict(cfg)}, indent=1))
        old = sorted((Path(cfg.out_dir) / "checkpoints").glob("step_*"))[:-cfg.keep_checkpoints]
        for p in old:
            shutil.rmtree(p, ignore_errors=True)
    acc.wait_for_everyone()
    return path


def find_checkpoint(cfg: ScaleConfig) -> Path:
    """The folder ``cfg.resume`` names; ``'latest'``: the newest under ``out_dir/checkpoints``."""
    if cfg.resume == "latest":
        found = sorted((Path(cfg.out_dir) / "checkpoints").glob("step_*"))
        if not found:
            raise FileNotFoundError(f"--resume latest: no checkpoint under {Path(cfg.out_dir) / 'checkpoints'}")
        return found[-1]
    path = Path(cfg.resume)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"--resume {cfg.resume}: not a checkpoint folder (no {STATE_FILE})")
    return path


def _resume(acc, cfg: ScaleConfig, extra: dict) -> TrainState:
    """Load a checkpoint; refuse one made with another global batch, process count or data (no exact resume)."""
    path = find_checkpoint(cfg)
    saved = json.loads((path / STATE_FILE).read_text())
    for key, value in extra.items():
        if saved.get(key) != value:
            raise ValueError(f"cannot resume exactly from {path}: it was made with {key} = {saved.get(key)!r}, "
                             f"this run has {value!r}")
    acc.load_state(str(path))
    return TrainState(saved["step"], saved["history"], saved["evals"])


# --------------------------------------------------------------------------- the loop
def train(cfg: ScaleConfig) -> TrainResult:
    """Run the distillation ``cfg`` describes (under ``accelerate launch``: on every process) and return its result."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    acc = Accelerator(cpu=cfg.cpu, mixed_precision="bf16" if cfg.bf16 else "no")
    world, rank = acc.num_processes, acc.process_index
    global_size = cfg.batch_size * cfg.grad_accum * world
    objective = get_objective(cfg.loss, cached=bool(cfg.teacher_cache))  # unknown loss: fail now
    if objective.teacher == "logits":
        require_teacher(cfg)  # before the data and the student are loaded
    set_seed(cfg.seed)

    # data and models (identical on every process)
    examples, val_text = load_examples(cfg)
    student, s_tok = load_student(cfg)
    teacher, t_tok = load_teacher(cfg, acc.device) if objective.teacher == "logits" else (None, None)
    check_context(student, cfg.student, cfg.max_tokens)
    check_context(student, cfg.student, cfg.eval_block, "--eval-block")
    if teacher is not None:
        check_context(teacher, cfg.teacher, cfg.max_tokens)
    ctx = LossContext(cfg, s_tok, t_tok, output_vocab(student, s_tok),
                      output_vocab(teacher, t_tok) if teacher is not None else 0)
    if objective.same_tokenizer and not same_tokenizer(s_tok, t_tok):
        raise ValueError(f"--loss {cfg.loss} compares token i with token i: the student ({cfg.student}) and the "
                         f"teacher ({cfg.teacher}) must share one tokenizer; with different tokenizers use --loss uld")
    if objective.teacher == "cache":
        from uldviz.scale.cache import TeacherCache

        ctx.store["cache"] = TeacherCache(cfg.teacher_cache)
        ctx.store["cache"].check_matches(cfg, s_tok, examples)
    eval_blocks = held_out_blocks(s_tok, val_text, cfg.eval_block, cfg.eval_batch, world)

    # optimiser, schedule (linear warm-up, cosine to lr * min_lr_ratio), distribution, resume
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    sched = get_cosine_with_min_lr_schedule_with_warmup(opt, cfg.warmup_steps, cfg.steps,
                                                        min_lr_rate=cfg.min_lr_ratio)
    student, opt = acc.prepare(student, opt)
    acc.register_for_checkpointing(sched)  # not prepared: accelerate would step it once per process
    same_run = {"global_batch": global_size, "processes": world, "fingerprint": fingerprint(examples)}
    state = _resume(acc, cfg, same_run) if cfg.resume else TrainState()

    def evaluate():
        bpb = distributed_bits_per_byte(acc, student, s_tok, val_text, eval_blocks, cfg.eval_batch)
        state.evals.append({"step": state.step, "val_bpb": bpb})
        return bpb

    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"distil ({cfg.loss})",
               disable=not (cfg.progress and acc.is_main_process))
    train_seconds, tokens = 0.0, 0
    while state.step < cfg.steps:
        if state.step % cfg.eval_every == 0:
            bar.set_postfix(val_bpb=f"{evaluate():.4f}")
        t0 = time.perf_counter()
        # 1. this process's micro-batches of the global batch, tokenized and paired on the CPU
        micro = []
        for idx in process_share(global_batch(state.step, len(examples), global_size, cfg.seed), rank, world,
                                 cfg.grad_accum):
            batch = encode_examples([examples[i] for i in idx], idx, s_tok, t_tok, cfg.max_tokens)
            pairs, n_pairs = objective.pair(batch, ctx) if objective.pair else (None, 0)
            micro.append((batch, pairs, n_pairs))
        # 2. global counts, so that every process divides by the same totals
        counts = torch.tensor([[int(b.student_answer.sum()), n, int(b.student_valid.sum())] for b, _, n in micro])
        n_ce, n_d, n_tok = acc.reduce(counts.sum(0).to(acc.device), reduction="sum").tolist()
        # 3. forward and backward; gradients are synchronised on the last micro-batch only
        sums = torch.zeros(2, device=acc.device)
        for i, (batch, pairs, _) in enumerate(micro):
            with nullcontext() if i == len(micro) - 1 else acc.no_sync(student), acc.autocast():
                ce, dist = batch_sums(objective, student, teacher, batch.to(acc.device), pairs, ctx)
                # DDP averages gradients over processes: times `world` makes it the gradient of the global sum
                loss = (cfg.ce_weight * ce / max(n_ce, 1) + cfg.lam * dist / max(n_d, 1)) * world
                acc.backward(loss)
            sums += torch.stack([ce.detach().float(), dist.detach().float()])
        if cfg.grad_clip:
            acc.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        # 4. the step's global loss, the same number on every process
        ce_sum, d_sum = acc.reduce(sums, reduction="sum").tolist()
        ce_mean, d_mean = ce_sum / max(n_ce, 1), d_sum / max(n_d, 1)
        state.step += 1
        state.history.append({"step": state.step, "loss": cfg.ce_weight * ce_mean + cfg.lam * d_mean, "ce": ce_mean,
                              "distill": d_mean, "lr": lr, "tokens": int(n_tok)})
        train_seconds += time.perf_counter() - t0
        tokens += int(n_tok)
        bar.update(1)
        if state.step % cfg.log_every == 0:
            bar.set_postfix(loss=f"{state.history[-1]['loss']:.4f}", ce=f"{ce_mean:.4f}", distill=f"{d_mean:.4f}")
        if (cfg.save_every and state.step % cfg.save_every == 0) or state.step == cfg.steps:
            save_checkpoint(acc, cfg, state, same_run)
    bar.close()

    final_bpb = evaluate()
    out = Path(cfg.out_dir)
    final = out / "final"
    acc.unwrap_model(student).save_pretrained(final, state_dict=acc.get_state_dict(student),
                                              is_main_process=acc.is_main_process, save_function=acc.save)
    peak = torch.cuda.max_memory_allocated(acc.device) if acc.device.type == "cuda" else None
    result = TrainResult(state.step, state.history, state.evals, final_bpb, str(out), round(train_seconds, 3),
                         tokens / train_seconds if train_seconds else 0.0, peak, world, global_size)
    if acc.is_main_process:
        s_tok.save_pretrained(final)
        (out / "result.json").write_text(json.dumps({**asdict(result), "config": asdict(cfg)}, indent=1) + "\n")
    acc.wait_for_everyone()
    return result


def _run(cfg: ScaleConfig) -> int:
    res = train(cfg)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"{res.steps} steps on {res.processes} process(es), global batch {res.global_batch}: held-out bits per "
              f"byte {res.evals[0]['val_bpb']:.4f} -> {res.final_bpb:.4f}; {res.tokens_per_second:,.0f} student "
              f"tokens/s; model and result.json in {res.out_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m uldviz train``: every field of :class:`~uldviz.scale.config.ScaleConfig` is a flag."""
    return parse_and_run(ScaleConfig, _run, argv, "python -m uldviz train", __doc__.split("\n\n")[0])
