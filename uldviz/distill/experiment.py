"""Named runs and several seeds: the registry of notebook 03/04's runs, sequential and multi-process runners.

Each named run (:data:`RUNS`) overrides fields of a base :class:`~uldviz.distill.core.DistillConfig`;
``NAME@value`` sets the run's tuned hyper-parameter (λ for the distillation runs, ε for label
smoothing). :func:`run_experiment` trains runs × seeds in this process (tqdm progress),
:func:`run_parallel` in worker processes; both stop the whole experiment on Ctrl-C after keeping the
runs that finished.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from uldviz.distill.core import DistillConfig, RunResult, StopFlag, train

__all__ = [
    "RunSpec",
    "RUNS",
    "RUN_LABELS",
    "DEFAULT_RUNS",
    "parse_run",
    "shuffled_control",
    "run_config",
    "run_label",
    "fast_config",
    "default_config",
    "run_experiment",
    "run_parallel",
    "summarize",
]

#: λ grids, fixed before the protocol's runs from each term's gradient size at λ = 1 on a batch of the default
#: setting (CE's gradient norm ≈ 3-6; ULD's ≈ 0.11, hybrid's ≈ 0.6-1.2, chunk likelihood's ≈ 0.03-0.07, since
#: τ = 100 flattens it): each grid spans the range where the term's push goes from small to CE's size.
LAMBDA_GRID = (0.3, 1.0, 3.0)
ULD_GRID = (0.3, 1.0, 3.0, 10.0)
CHUNK_GRID = (3.0, 10.0, 30.0)
#: X-Token's terms push harder than the hybrid at λ = 1 (gradient norms ≈ 1.05 for P-KL and 0.82 for H-KL against
#: the hybrid's 0.47 and CE's 2.8 on a default batch; the hybrid's grid ended at λ = 9, a push of 1.5 × CE's):
#: the grid spans a push from 0.4 × to 3.4 × CE's.
XTOKEN_GRID = (1.0, 3.0, 9.0)


@dataclass(frozen=True)
class RunSpec:
    """A named run: its config overrides, its label, and how the protocol tunes it."""

    overrides: dict
    label: str
    tuned: str | None = "lam"  # the config field NAME@value sets (None: nothing to tune)
    grid: tuple = ()  # values tried on validation by the protocol
    inherits: str | None = None  # takes its tuned value from this run (a control uses its method's value)
    family: str = field(default="", compare=False)  # "ce", "uld", "identity", "seqkd", "same" (for tables)


#: Every run the kit knows. Controls (``*-shuffled``) inherit the tuned value of the method they control.
RUNS: dict[str, RunSpec] = {
    "ce": RunSpec(dict(loss="ce"), "CE only", tuned=None, family="ce"),
    "ce-ls": RunSpec(dict(loss="ce", label_smoothing=0.1), "CE + label smoothing (no teacher)",
                     tuned="label_smoothing", grid=(0.05, 0.1, 0.2), family="ce"),
    "uld-positional": RunSpec(dict(loss="uld", align="positional"), "CE + λ·ULD, positional",
                              grid=ULD_GRID, family="uld"),
    "uld-offset": RunSpec(dict(loss="uld", align="offset"), "CE + λ·ULD, offset-aligned", grid=ULD_GRID,
                          family="uld"),
    "uld-shuffled": RunSpec(dict(loss="uld", align="offset", shuffle_teacher=True),
                            "CE + λ·ULD, shuffled teacher (control)", inherits="uld-offset", family="uld"),
    "seqkd": RunSpec(dict(loss="ce", text="teacher"), "CE on teacher-generated text (seqkd)", tuned=None,
                     family="seqkd"),
    "seqkd+uld": RunSpec(dict(loss="uld", align="offset", text="teacher"), "seqkd + λ·ULD (the paper's pipeline)",
                         inherits="uld-offset", family="seqkd"),
    "hybrid": RunSpec(dict(loss="hybrid"), "CE + λ·hybrid (shared strings + ULD)", grid=LAMBDA_GRID,
                      family="identity"),
    "hybrid-shuffled": RunSpec(dict(loss="hybrid", shuffle_teacher=True), "CE + λ·hybrid, shuffled teacher (control)",
                               inherits="hybrid", family="identity"),
    "chunk-lik": RunSpec(dict(loss="chunk"), "CE + λ·chunk likelihood (ALM)", grid=CHUNK_GRID, family="identity"),
    "chunk-lik-shuffled": RunSpec(dict(loss="chunk", shuffle_teacher=True),
                                  "CE + λ·chunk likelihood, shuffled teacher (control)", inherits="chunk-lik",
                                  family="identity"),
    "xtoken-pkl": RunSpec(dict(loss="xtoken-pkl"), "CE + λ·P-KL (X-Token, projection W)", grid=XTOKEN_GRID,
                          family="identity"),
    "xtoken-pkl-shuffled": RunSpec(dict(loss="xtoken-pkl", shuffle_teacher=True),
                                   "CE + λ·P-KL, shuffled teacher (control)", inherits="xtoken-pkl", family="identity"),
    "xtoken-hkl": RunSpec(dict(loss="xtoken-hkl"), "CE + λ·H-KL (X-Token, matches read off W)", grid=XTOKEN_GRID,
                          family="identity"),
    "xtoken-hkl-shuffled": RunSpec(dict(loss="xtoken-hkl", shuffle_teacher=True),
                                   "CE + λ·H-KL, shuffled teacher (control)", inherits="xtoken-hkl", family="identity"),
    "ce-same": RunSpec(dict(loss="ce", same_tokenizer=True), "same tokenizer, CE only", tuned=None, family="same"),
    "kl-same": RunSpec(dict(loss="kl", same_tokenizer=True), "same tokenizer, CE + λ·KL", grid=LAMBDA_GRID,
                       family="same"),
}
#: Label of each run name (without a value).
RUN_LABELS = {name: spec.label for name, spec in RUNS.items()}
#: The runs notebook 03 trains live.
DEFAULT_RUNS = ("ce", "ce-ls", "uld-offset", "uld-shuffled")


def _spec(name: str) -> RunSpec:
    """The :class:`RunSpec` of a run name, with an error that lists the names."""
    if name not in RUNS:
        raise ValueError(f"unknown run {name!r}; choose from {', '.join(RUNS)} (optionally NAME@VALUE)")
    return RUNS[name]


def shuffled_control(name: str) -> str | None:
    """The shuffled-teacher control of run ``name``: the run that inherits its value and shuffles the teacher."""
    _spec(name)
    return next((n for n, s in RUNS.items() if s.inherits == name and s.overrides.get("shuffle_teacher")), None)


def tuned_field(name: str) -> str | None:
    """The config field ``NAME@value`` sets for run ``name`` (its own or the one of the run it inherits from)."""
    spec = _spec(name)
    return _spec(spec.inherits).tuned if spec.inherits else spec.tuned


def parse_run(spec: str) -> tuple[str, dict]:
    """``'uld-offset'`` or ``'uld-offset@0.3'`` (the tuned value: λ, or ε for ce-ls) -> (name, config overrides)."""
    if not isinstance(spec, str):
        raise TypeError(f"a run must be named by a string, got {type(spec).__name__}")
    base, _, value = spec.partition("@")
    over = dict(_spec(base).overrides)
    if value:
        key = tuned_field(base)
        if key is None:
            raise ValueError(f"run {base!r} has no tuned hyper-parameter, so {spec!r} has nothing to set")
        try:
            over[key] = float(value)
        except ValueError as exc:
            raise ValueError(f"in run {spec!r}, the part after @ must be a number ({key})") from exc
    return base, over


def run_config(spec: str, base: DistillConfig | None = None, **changes) -> DistillConfig:
    """The config of one named run (see :data:`RUNS`) on top of ``base``, plus keyword changes."""
    _, over = parse_run(spec)
    return replace(base or DistillConfig(), **{**over, **changes})


def run_label(spec: str) -> str:
    """Human label of ``NAME`` or ``NAME@value`` (e.g. 'CE + λ·ULD, offset-aligned (λ = 0.3)')."""
    base, _, value = spec.partition("@")
    label = _spec(base).label
    if not value:
        return label
    symbol = "α" if tuned_field(base) == "label_smoothing" else "λ"  # the course's notation (uldviz.course.notation)
    return f"{label} ({symbol} = {value})"


def fast_config(**changes) -> DistillConfig:
    """The CI-sized config (``ULDVIZ_FAST=1``): a few dozen steps of a tiny student, seconds per run."""
    small = dict(steps=30, batch_size=8, n_layer=1, n_embd=64, n_head=2, eval_every=10, eval_chars=3000)
    return DistillConfig(**{**small, **changes})


def default_config(**changes) -> DistillConfig:
    """:func:`fast_config` when ``ULDVIZ_FAST`` is set, else the default :class:`DistillConfig`."""
    from uldviz.env import fast_mode

    return fast_config(**changes) if fast_mode() else DistillConfig(**changes)


# --------------------------------------------------------------------------- runners
def _bar(total: int, desc: str, disable: bool):
    """A tqdm progress bar (``tqdm.auto``: a widget in notebooks, text in terminals), on stderr."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=disable, file=sys.stderr, leave=False, dynamic_ncols=True)


def run_experiment(runs, seeds, setup, base: DistillConfig | None = None, callback: Callable | None = None,
                   stop: StopFlag | None = None, progress: bool = False) -> dict:
    """Train every run (``NAME`` or ``NAME@value``) for every seed here; returns {run: [RunResult, ...]}.

    A KeyboardInterrupt (Ctrl-C) ends the whole experiment: the interrupted run is dropped, the finished
    ones are returned, and the interrupt is raised again after ``callback({"type": "interrupted"})``.
    """
    base = base or DistillConfig()
    out: dict = {}
    jobs = [(spec, seed) for spec in runs for seed in seeds]
    for k, (spec, seed) in enumerate(jobs, 1):
        cfg = run_config(spec, base, seed=seed)
        bar = _bar(cfg.steps, f"{spec} seed {seed} [{k}/{len(jobs)}]", not progress)

        def cb(event, bar=bar):
            if event["type"] == "step":
                bar.update(1)
                bar.set_postfix(ce=f"{event['ce']:.3f}", refresh=False)
            if callback is not None:
                callback(event)

        if stop is not None:
            stop.clear()
        res = train(cfg, setup, name=spec, callback=cb, stop=stop)
        bar.close()
        if res.interrupted:
            if callback is not None:
                callback({"type": "interrupted", "name": spec, "finished": out})
            raise KeyboardInterrupt(f"stopped during {spec} seed {seed}")
        if progress:
            print(f"[{k}/{len(jobs)}] {spec} seed {seed}: test {res.test_selected:.4f} bits/byte at step "
                  f"{res.selected_step} ({res.seconds:.0f} s)", file=sys.stderr, flush=True)
        out.setdefault(spec, []).append(res)
    return out


_WORKER_SETUP = None


def _worker_init(preset: str, threads: int) -> None:
    """Process-pool initialiser: load the shared setup once per worker, one thread, Ctrl-C left to the parent."""
    import signal

    import torch

    global _WORKER_SETUP
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    torch.set_num_threads(threads)
    from uldviz.distill.data import prepare

    _WORKER_SETUP = prepare(preset)


def _worker_run(spec: str, seed: int, base: dict) -> RunResult:
    """Process-pool task: one run for one seed."""
    return train(run_config(spec, DistillConfig(**base), seed=seed), _WORKER_SETUP, name=spec, sample_prompt=None)


def run_tasks(next_task: Callable, on_result: Callable, preset: str, jobs: int, worker: Callable = _worker_run) -> None:
    """Run tasks in ``jobs`` spawned worker processes, at most ``jobs`` at a time, best first.

    ``next_task(in_flight)`` returns the next task (a tuple of ``worker``'s arguments) or None when none is
    ready now; it is asked again whenever a task finishes (so tasks may become ready as results come
    in). ``on_result(task, result)`` receives each result. Ctrl-C terminates the workers at once and
    re-raises: what finished was already handed to ``on_result``.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(preset, 1))
    pending: dict = {}

    def fill() -> None:
        while len(pending) < jobs and (task := next_task(list(pending.values()))) is not None:
            pending[pool.submit(worker, *task)] = task

    try:
        fill()
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                on_result(pending.pop(fut), fut.result())
            fill()
    except BaseException:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):  # no public API stops running tasks
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def run_parallel(runs, seeds, preset: str, base: DistillConfig, jobs: int, progress: bool = False,
                 on_result: Callable | None = None) -> dict:
    """Like :func:`run_experiment`, in ``jobs`` worker processes of one thread each (CPU machines with spare cores).

    Runs are independent and seeded, so the results equal a sequential run's up to floating-point noise.
    ``on_result(partial)`` is called after each run with the results so far (None where not done yet).
    """
    out: dict = {spec: [None] * len(seeds) for spec in runs}
    tasks = [(spec, seed, asdict(base)) for seed in seeds for spec in runs]
    bar = _bar(len(tasks), "runs", not progress)

    def done(task, res):
        out[task[0]][list(seeds).index(task[1])] = res
        bar.update(1)
        if on_result is not None:
            on_result(out)

    queue = iter(tasks)
    try:
        run_tasks(lambda in_flight: next(queue, None), done, preset, jobs)
    finally:
        bar.close()
    return out


def mean_std(vals) -> dict:
    """Mean and sample standard deviation over seeds (0 for a single seed): the kit's one summary of runs."""
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}


def summarize(results: dict) -> dict:
    """Per run: seeds, test bits per byte at the selected step and at the end, their means and sample stds."""
    def stats(vals):
        return {"values": vals, **mean_std(vals)}

    out = {}
    for name, rs in results.items():
        rs = [r for r in rs if r is not None]
        if not rs:
            continue
        out[name] = {"label": run_label(name), "seeds": [r.config["seed"] for r in rs],
                     "selected": stats([r.test_selected for r in rs]), "final": stats([r.test_final for r in rs]),
                     "selected_step": [r.selected_step for r in rs], "seconds": [r.seconds for r in rs]}
    return out
