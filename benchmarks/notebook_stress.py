"""Run lessons headless N times each through the kit's runner and report every stall (issue 24's stress test).

Per run: the seconds, the cell that stalled (index and first line), the last messages the client read, and the
IOPub messages each cell sent (bursts). The command behind the shipped figures (data/results/notebook_stress.jsonl):

    ULDVIZ_FAST=0 nice -n 10 python benchmarks/notebook_stress.py notebooks/0[12]_*.ipynb -n 20 \\
        --load busy:1 --load-every 2 --out data/results/notebook_stress.jsonl
    ULDVIZ_FAST=1 nice -n 10 python benchmarks/notebook_stress.py notebooks/0[34]_*.ipynb -n 20 \\
        --load busy:1 --load-every 2 --out data/results/notebook_stress.jsonl

(01 and 02 as a learner runs them, 03 and 04 in the fast mode CI runs; every other run with one spin loop as extra
load.) Exit status 1 if any run failed, or took longer than ``--budget`` seconds. The fast mode's time budget (the
tests assert no run time; two minutes a page for 01, 02 and 02b is the target):

    ULDVIZ_FAST=1 python benchmarks/notebook_stress.py notebooks/01_*.ipynb notebooks/02*.ipynb -n 3 --budget 120

``--load KIND:N`` starts N background jobs for a run (``busy``: spin loops; ``train``: notebook 03 headless in a
loop; ``churn``: kernels started and shut down in a loop), killed when the run ends.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from uldviz.course import site

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHURN = ("from jupyter_client.manager import start_new_kernel\nwhile True:\n"
         "    km, kc = start_new_kernel()\n    kc.execute_interactive('x = 1', timeout=60)\n"
         "    kc.stop_channels(); km.shutdown_kernel()")
LOADS = {"busy": [sys.executable, "-c", "while True: pass"], "churn": [sys.executable, "-c", CHURN],
         "train": [sys.executable, str(HERE / "notebook_stress.py"), str(ROOT / "notebooks/03_distillation.ipynb"),
                   "-n", "1000", "--quiet"]}


class RunTooLong(Exception):
    """The whole run passed --run-limit (a watchdog above the runner's own timeouts)."""


def _alarm(signum, frame):
    raise RunTooLong("run passed --run-limit")


def run_once(path: Path, timeout: int | None, run_limit: int) -> dict:
    """One headless run; what happened (seconds, error, stalled cell, last messages, IOPub counts per cell)."""
    trace = site.MessageTrace(size=30)
    start, error = time.perf_counter(), None
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(run_limit)
    try:
        site.execute(path, timeout=timeout, trace=trace)
    except (RuntimeError, RunTooLong) as err:
        error = str(err).splitlines()[0]
    finally:
        signal.alarm(0)
    rec = {"notebook": path.name, "seconds": round(time.perf_counter() - start, 2), "ok": error is None,
           "error": error, "counts": {cell: dict(c) for cell, c in trace.counts.items()}, "cell_s": trace.seconds,
           "late_messages": trace.late}
    slow = max(trace.seconds.items(), key=lambda kv: kv[1], default=(None, 0))
    rec["slowest_cell"] = slow
    if error:
        nb = nbformat.read(str(path), as_version=4)
        rec.update(cell=trace.cell, line=site._first_line(nb, trace.cell), last=list(trace.last))
    return rec


def start_load(spec: str) -> list[subprocess.Popen]:
    """Background jobs ``KIND:N`` in their own process groups (so stop_load ends them and their kernels)."""
    kind, _, n = spec.partition(":")
    return [subprocess.Popen(LOADS[kind], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True) for _ in range(int(n or 1))]


def stop_load(procs: list[subprocess.Popen]) -> None:
    """Kill the background jobs this script started (by process group)."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def main(argv=None) -> int:
    """Command line: N runs of one notebook, a line per run, a summary line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", type=Path, nargs="+")
    ap.add_argument("-n", type=int, default=10, help="runs")
    ap.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: site.cell_timeout)")
    ap.add_argument("--run-limit", type=int, default=1800, help="seconds a whole run may take (watchdog)")
    ap.add_argument("--load", default=None, help="background load while running, KIND:N (busy, train, churn)")
    ap.add_argument("--load-every", type=int, default=1, help="load only every k-th run (1: all)")
    ap.add_argument("--budget", type=float, default=None, help="seconds a run may take; a slower run counts as failed")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per run")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    failed = 0
    for notebook in args.notebooks:
        times, bad = [], 0
        for i in range(args.n):
            load = args.load if args.load and i % args.load_every == 0 else None
            procs = start_load(load) if load else []
            try:
                rec = run_once(notebook, args.timeout, args.run_limit)
            finally:
                stop_load(procs)
            rec.update(run=i, load=load or "none", fast=os.environ.get("ULDVIZ_FAST", ""),
                       loadavg=os.getloadavg()[0], budget=args.budget,
                       over_budget=args.budget is not None and rec["seconds"] > args.budget)
            times.append(rec["seconds"])
            bad += not rec["ok"] or rec["over_budget"]
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
            if not args.quiet:
                print(f"run {i}: {rec['seconds']:.1f} s{' (over budget)' * rec['over_budget']} load={rec['load']} "
                      f"ok={rec['ok']} slowest cell "
                      f"{rec['slowest_cell']}" + ("" if rec["ok"] else
                      f"\n  {rec['error']}\n  cell {rec['cell']}: {rec['line']}\n  last: {rec['last'][-8:]}"),
                      flush=True)
        failed += bad
        if not args.quiet:
            print(f"{notebook.name}: {args.n} runs, {bad} failed or over budget, seconds min {min(times):.1f} "
                  f"median {statistics.median(times):.1f} max {max(times):.1f}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
