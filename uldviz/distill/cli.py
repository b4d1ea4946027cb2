"""Command line: ``python -m uldviz distill`` (named runs × seeds) and ``python -m uldviz protocol`` (the protocol).

Ctrl-C stops the whole experiment, not just the current run: what finished is written first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from uldviz.distill.core import DistillConfig, evaluate
from uldviz.distill.experiment import (
    DEFAULT_RUNS,
    RUNS,
    fast_config,
    run_config,
    run_experiment,
    run_parallel,
    summarize,
)
from uldviz.env import fast_mode, pick_device

__all__ = ["main", "protocol_main"]

INTERRUPTED = 130  # the shell's exit status for a process stopped by Ctrl-C


def _base(args) -> DistillConfig:
    """The base config from the common options (fast mode, steps, fraction, temperature, device)."""
    changes = {"device": args.device}
    for key, val in (("steps", args.steps), ("train_fraction", getattr(args, "train_fraction", None))):
        if val is not None:
            changes[key] = val
    if getattr(args, "temperature", None) is not None:
        changes.update(student_temperature=args.temperature, teacher_temperature=args.temperature)
    return fast_config(**changes) if (args.fast or fast_mode()) else DistillConfig(**changes)


def _parser() -> argparse.ArgumentParser:
    """The ``python -m uldviz distill`` options."""
    p = argparse.ArgumentParser(prog="python -m uldviz distill",
                                description="Distil the kit's teacher into small students with a different "
                                            "tokenizer (notebook 03); test bits per byte at the validation-selected "
                                            "step and at the last step, as a table and JSON.")
    p.add_argument("--runs", nargs="+", default=None,
                   help=f"named runs ({', '.join(RUNS)}), optionally NAME@VALUE (λ, or ε for ce-ls); "
                        f"default: {' '.join(DEFAULT_RUNS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (one run per seed), e.g. --seeds 0 1 2")
    p.add_argument("--steps", type=int, default=None, help="training steps per run")
    p.add_argument("--train-fraction", type=float, default=None, help="share of the training text the student sees")
    p.add_argument("--temperature", type=float, default=None, help="teacher and student softmax temperature")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, with mixed precision), cpu or cuda")
    p.add_argument("--preset", choices=["offline", "hub"], default="offline", help="offline kit models or hub models")
    p.add_argument("--fast", action="store_true", help="the tiny CI-sized configuration (seconds per run)")
    p.add_argument("--out", default=None, help="write the JSON result here")
    p.add_argument("--jobs", type=int, default=1,
                   help="train runs in this many worker processes of one thread each (default 1: in this process)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _checked(parser: argparse.ArgumentParser, base_of, runs) -> DistillConfig:
    """The base config, with every run's config built once: a bad option or run name ends as a usage error
    (exit status 2, one line naming the problem) before any model is loaded."""
    try:
        base = base_of()
        for r in runs:
            run_config(r, base)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    return base


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m uldviz distill``: train, print a table, optionally write JSON."""
    import signal

    from uldviz.distill.data import prepare

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C works even if the launcher ignored SIGINT

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    runs = args.runs or list(DEFAULT_RUNS)
    base = _checked(parser, lambda: _base(args), runs)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    device = pick_device(args.device)
    print(f"device: {device}" + (" (mixed precision)" if device.type == "cuda" else " (no GPU found: CPU, float32)"),
          file=sys.stderr)
    setup = prepare(args.preset)
    teacher_bpb = evaluate(setup.teacher, setup.teacher_tokenizer, setup.test_text, base.eval_block)
    start = time.perf_counter()

    def write(results: dict, complete: bool) -> None:
        if not args.out:
            return
        done = {k: [r for r in v if r is not None] for k, v in results.items()}
        done = {k: v for k, v in done.items() if v}
        record = {
            "command": "python -m uldviz distill " + " ".join(shlex.quote(a) for a in argv),
            "complete": complete, "base_config": asdict(base), "runs": summarize(done),
            "teacher_test_bpb": teacher_bpb, "wall_seconds": time.perf_counter() - start, "jobs": args.jobs,
            "cpu_count": os.cpu_count(), "device": str(device), "torch": torch.__version__,
            "python": platform.python_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "curves": {k: {"val_steps": [r.val_steps for r in v], "val_bpb": [r.val_bpb for r in v]}
                       for k, v in done.items()},
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=1, ensure_ascii=False))

    finished: dict = {}
    try:
        if args.jobs == 1:
            def keep(event):
                if event["type"] == "end":
                    finished.setdefault(event["name"], []).append(event["result"])

            results = run_experiment(runs, args.seeds, setup, base, callback=keep, progress=not args.quiet)
        else:
            results = run_parallel(runs, args.seeds, args.preset, base, args.jobs, progress=not args.quiet,
                                   on_result=lambda partial: (finished.update(partial), write(partial, False)))
    except KeyboardInterrupt:
        done = {k: [r for r in v if r is not None and not r.interrupted] for k, v in finished.items()}
        write(done, False)
        n = sum(len(v) for v in done.values())
        print(f"\ninterrupted: stopped the experiment after {n} finished run(s)"
              + (f", written to {args.out}" if args.out else ""), file=sys.stderr)
        return INTERRUPTED
    table = summarize(results)
    print(f"\n{'run':<24} {'test bpb, selected step':>24} {'test bpb, last step':>22}  seeds")
    for name, row in table.items():
        s, f = row["selected"], row["final"]
        print(f"{name:<24} {s['mean']:>14.4f} ± {s['std']:.4f} {f['mean']:>12.4f} ± {f['std']:.4f}  "
              f"{len(row['seeds'])}")
    print(f"{'teacher':<24} {teacher_bpb:>14.4f}")
    print(f"wall time {time.perf_counter() - start:.0f} s on {device}")
    if args.out:
        write(results, True)
        print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- the protocol
def _protocol_parser() -> argparse.ArgumentParser:
    """The ``python -m uldviz protocol`` options."""
    from uldviz.distill.protocol import GRID_SEEDS, REGIMES, SEEDS

    p = argparse.ArgumentParser(prog="python -m uldviz protocol",
                                description="Notebooks 03/04's experiment: grids on validation, then every run with "
                                            "5 seeds in both regimes, test bits per byte. Resumes from --out.")
    p.add_argument("--out", default=None, help="results file (JSON lines); default data/results/protocol_runs.jsonl")
    p.add_argument("--runs", nargs="+", default=list(RUNS), help="runs to include (default: all)")
    p.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), help="seeds of the reported runs")
    p.add_argument("--grid-seeds", nargs="+", type=int, default=list(GRID_SEEDS), help="seeds of the grids")
    p.add_argument("--jobs", type=int, default=2, help="worker processes of one thread each")
    p.add_argument("--steps", type=int, default=None, help="override the steps (tests only)")
    p.add_argument("--device", default="cpu", help="cpu (default: the shipped results are CPU runs) or cuda")
    p.add_argument("--fast", action="store_true", help="tiny CI-sized runs (tests only)")
    p.add_argument("--fresh", action="store_true", help="delete --out first instead of resuming")
    p.add_argument("--generate-text", nargs="+", type=float, metavar="FRACTION", default=None,
                   help="(re)generate the cached teacher-written text (seqkd) for these train fractions, then stop")
    p.add_argument("--report", action="store_true", help="print the summary tables of --out and stop")
    return p


def protocol_main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m uldviz protocol``."""
    from uldviz.distill.data import prepare, seqkd_path, write_teacher_text
    from uldviz.distill.protocol import REGIMES, load_records, results_path, run_protocol, summarize_protocol

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _protocol_parser()
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else results_path()
    if args.report:
        print(format_report(summarize_protocol(load_records(out), args.seeds, args.grid_seeds)))
        return 0
    base = _checked(parser, lambda: _base(argparse.Namespace(device=args.device, steps=args.steps, fast=args.fast)),
                    args.runs)
    if args.generate_text:
        setup = prepare()
        for fraction in args.generate_text:
            print(f"wrote {write_teacher_text(setup, fraction)}")
        return 0
    needs_text = any(RUNS[r].overrides.get("text") == "teacher" for r in args.runs)
    if needs_text:
        setup = None
        for regime in args.regimes:
            fraction = REGIMES[regime].changes["train_fraction"]
            if not seqkd_path(fraction).is_file():
                setup = setup or prepare()
                print(f"teacher-written text for {regime}: wrote {write_teacher_text(setup, fraction)}")
    if args.fresh and out.exists():
        out.unlink()
    start = time.perf_counter()
    try:
        records = run_protocol(out, args.regimes, args.runs, base, args.jobs, seeds=args.seeds,
                               grid_seeds=args.grid_seeds, log=lambda s: print(s, flush=True))
    except KeyboardInterrupt:
        print(f"\ninterrupted: the finished runs are in {out}; run the same command again to resume", file=sys.stderr)
        return INTERRUPTED
    print(f"{len(records)} runs in {out} ({time.perf_counter() - start:.0f} s this time)")
    print(format_report(summarize_protocol(records, args.seeds, args.grid_seeds)))
    return 0


def format_report(summary: dict) -> str:
    """Plain-text tables of :func:`~uldviz.distill.protocol.summarize_protocol` (per regime)."""
    lines = []
    for regime, s in summary.items():
        lines += ["", f"== {regime}: {s['label']} ({s['steps']} steps)"]
        for run, sel in s["selection"].items():
            grid = ", ".join(f"{k}: {v:.4f}" for k, v in sel["grid"].items())
            lines.append(f"   grid {run:<16} validation {grid}  -> {sel['chosen']}")
        lines.append(f"   {'run':<28} {'test, selected':>18} {'test, last step':>18}  n")
        for r in s["runs"].values():
            a, b = r["selected"], r["final"]
            lines.append(f"   {r['spec']:<28} {a['mean']:>9.4f} ± {a['std']:.4f} {b['mean']:>9.4f} ± {b['std']:.4f}"
                         f"  {a['n']}")
        for c in s["comparisons"]:
            if c["when"] == "selected":
                lines.append(f"   {c['a']} − {c['b']}: {c['diff']:+.4f}, {c['confidence']:.2%} interval "
                             f"[{c['low']:+.4f}, {c['high']:+.4f}] over {c['n']} seeds: {c['verdict']}")
    return "\n".join(lines)
