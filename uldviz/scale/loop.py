r"""``python -m uldviz train``: distil a causal-LM teacher into a causal-LM student on 1..N processes.

The loop of :func:`train`, in order: load the examples and the models; bind the loss to them (the objective layer
every loop shares, :class:`uldviz.train.objectives.Objective`); wrap the student with ``accelerate`` (DDP, or FSDP
when ``accelerate config`` says so); then per optimizer step take this process's share of the global batch from a
``DataLoader`` whose workers tokenize and pair it (:mod:`uldviz.scale.feed`), divide every sum by the *global*
counts (so N processes compute the loss of one big batch), backward with gradient synchronisation on the last
micro-batch only, clip, step. Held-out bits per byte every ``eval_every`` steps; checkpoints (model, optimizer, RNG
of every process, the step, which fixes the data position) written to a temporary folder and renamed when
complete. Launch with ``python -m uldviz train ...`` or ``accelerate launch --num_processes 8 -m uldviz train ...``;
``--dry-run`` prints the memory per GPU and the time first (:mod:`uldviz.scale.plan`).

.. math:: \mathcal L = w_{CE}\,\frac{\sum \mathrm{CE}}{N_{CE}} + \lambda\,\frac{\sum D}{N_D}
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from uldviz.scale.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from uldviz.scale.config import ScaleConfig, parse_and_run
from uldviz.scale.data import fingerprint, load_examples
from uldviz.scale.evaluate import distributed_bits_per_byte, held_out_blocks
from uldviz.scale.feed import micro_batches
from uldviz.scale.loading import (
    check_context,
    load_student,
    load_teacher,
    make_accelerator,
    output_vocab,
    require_teacher,
    same_tokenizer,
)
from uldviz.train.objectives import Objective
from uldviz.train.schedule import make_optimizer, set_lr

__all__ = ["TrainState", "TrainResult", "train", "main"]


@dataclass
class TrainState:
    """What the model and optimizer states do not hold: the step (hence the data position) and the curves so far."""

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
    mixed_precision: str = "no"
    resumed_from: str = ""
    resume_overrides: dict = field(default_factory=dict)
    teacher: str = ""
    data_wait_seconds: float = 0.0


def train(cfg: ScaleConfig) -> TrainResult:
    """Run the distillation ``cfg`` describes (under ``accelerate launch``: on every process) and return its result."""
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    if cfg.dry_run:
        raise ValueError("dry_run trains nothing: call uldviz.scale.plan.dry_run(cfg) (python -m uldviz train "
                         "--dry-run) instead of train()")
    acc = make_accelerator(cfg)
    world, rank = acc.num_processes, acc.process_index
    global_size = cfg.batch_size * cfg.grad_accum * world
    cached = bool(cfg.teacher_cache)
    probe = Objective(cfg, cache=object() if cached else None)  # an unknown loss or a bad option fails now
    if probe.needs_teacher:
        require_teacher(cfg)  # before the data and the student are loaded
    set_seed(cfg.seed)

    # data and models (identical on every process)
    examples, held = load_examples(cfg)
    student, s_tok = load_student(cfg)
    bf16 = acc.mixed_precision == "bf16"
    teacher, t_tok = load_teacher(cfg, acc.device, bf16=bf16) if probe.needs_teacher else (None, None)
    check_context(student, cfg.student, cfg.max_tokens)
    check_context(student, cfg.student, cfg.eval_block, "--eval-block")
    if teacher is not None:
        check_context(teacher, cfg.teacher, cfg.max_tokens)
    cache = None
    if cached:
        from uldviz.scale.cache import TeacherCache

        cache = TeacherCache(cfg.teacher_cache)
        cache.check_matches(cfg, s_tok, examples)
    objective = Objective(cfg, s_tok, t_tok, student_vocab=output_vocab(student, s_tok),
                          teacher_vocab=output_vocab(teacher, t_tok) if teacher is not None else None, cache=cache)
    if objective.term.same_tokenizer and not same_tokenizer(s_tok, t_tok):
        raise ValueError(f"--loss {cfg.loss} compares token i with token i: the student ({cfg.student}) and the "
                         f"teacher ({cfg.teacher}) must share one tokenizer; with different tokenizers use --loss uld")
    eval_blocks = held_out_blocks(s_tok, held.text, cfg.eval_block, cfg.eval_batch, world)

    # optimiser (AdamW, the kit's decay rule), distribution, resume; the lr is a function of the step
    opt = make_optimizer(student, cfg)
    student, opt = acc.prepare(student, opt)
    same_run = {"global_batch": global_size, "processes": world, "fingerprint": fingerprint(examples),
                "mixed_precision": acc.mixed_precision}
    state, resumed_from, overrides = TrainState(), "", {}
    if cfg.resume:
        path = find_checkpoint(cfg)
        saved, overrides = load_checkpoint(acc, path, cfg, same_run)
        state, resumed_from = TrainState(saved["step"], saved["history"], saved["evals"]), str(path)

    def evaluate():
        bpb = distributed_bits_per_byte(acc, student, s_tok, held, eval_blocks, cfg.eval_batch,
                                        cfg.max_tokens)
        state.evals.append({"step": state.step, "val_bpb": bpb})
        return bpb

    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"distil ({cfg.loss})",
               disable=not (cfg.progress and acc.is_main_process))
    train_seconds, wait_seconds, tokens = 0.0, 0.0, 0
    feed = micro_batches(cfg, examples, objective, s_tok, t_tok if objective.distills and not cached else None,
                         first_step=state.step, rank=rank, world=world)
    while state.step < cfg.steps:
        if state.step % cfg.eval_every == 0:
            bar.set_postfix(val_bpb=f"{evaluate():.4f}")
        t0 = time.perf_counter()
        micro = next(feed)  # (batch, pairs) x grad_accum, tokenized and paired by the DataLoader's workers
        wait_seconds += time.perf_counter() - t0
        # global counts, so that every process divides by the same totals
        counts = torch.tensor([objective.counts(b, p) + (int(b.student_valid.sum()),) for b, p in micro], device="cpu")
        n_ce, n_d, n_tok = acc.reduce(counts.sum(0).to(acc.device), reduction="sum").tolist()
        lr = set_lr(opt, state.step, cfg)
        # forward and backward; gradients are synchronised on the last micro-batch only
        sums = torch.zeros(2, device=acc.device)
        for i, (batch, pairs) in enumerate(micro):
            batch = batch.to(acc.device, non_blocking=True)
            pairs = pairs.to(acc.device) if pairs is not None else None
            with nullcontext() if i == len(micro) - 1 else acc.no_sync(student):
                with acc.autocast():  # the forward only: a backward under autocast would recast its kernels too
                    step_sums = objective.sums(student, teacher, batch, pairs)
                    # DDP averages gradients over processes: times `world` makes it the gradient of the global sum
                    loss = objective.loss(step_sums, n_ce, n_d) * world
                acc.backward(loss)
            sums += torch.stack([step_sums.ce.detach().float(), step_sums.distill.detach().float()])
        if cfg.grad_clip:
            acc.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        # the step's global loss, the same number on every process
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
            save_checkpoint(acc, cfg, asdict(state), same_run)
    bar.close()
    feed.close()

    final_bpb = evaluate()
    out = Path(cfg.out_dir)
    final = out / "final"
    acc.unwrap_model(student).save_pretrained(final, state_dict=acc.get_state_dict(student),
                                              is_main_process=acc.is_main_process, save_function=acc.save)
    peak = torch.cuda.max_memory_allocated(acc.device) if acc.device.type == "cuda" else None
    result = TrainResult(state.step, state.history, state.evals, final_bpb, str(out), round(train_seconds, 3),
                         tokens / train_seconds if train_seconds else 0.0, peak, world, global_size,
                         acc.mixed_precision, resumed_from, overrides,
                         cache.meta.get("teacher", "") if cache is not None else cfg.teacher, round(wait_seconds, 3))
    if acc.is_main_process:
        s_tok.save_pretrained(final)
        (out / "result.json").write_text(json.dumps({**asdict(result), "config": asdict(cfg)}, indent=1) + "\n")
    acc.wait_for_everyone()
    return result


def _run(cfg: ScaleConfig) -> int:
    if cfg.dry_run:  # memory and time from the configs, before anything loads
        from uldviz.scale.plan import dry_run

        return dry_run(cfg)
    res = train(cfg)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"{res.steps} steps on {res.processes} process(es), global batch {res.global_batch}, precision "
              f"{res.mixed_precision}: held-out bits per byte {res.evals[0]['val_bpb']:.4f} -> {res.final_bpb:.4f}; "
              f"{res.tokens_per_second:,.0f} student tokens/s; model and result.json in {res.out_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m uldviz train``: every field of :class:`~uldviz.scale.config.ScaleConfig` is a flag."""
    return parse_and_run(ScaleConfig, _run, argv, "python -m uldviz train", __doc__.split("\n\n")[0])
