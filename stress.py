"""Run a lesson headless N times with uldviz.site.execute and report every stall: per run the seconds, the cell that
stalled (index and first line), the last messages the client read, and the IOPub messages each cell sent (bursts).

    ULDVIZ_FAST=1 python stress.py notebooks/02_optimal_transport.ipynb -n 20 --load busy:2 --load-every 2 \\
        --out runs.jsonl

``--load KIND:N`` starts N background jobs for a run (``busy``: spin loops; ``train``: notebook 03 headless in a
loop; ``churn``: kernels started and shut down in a loop), killed when the run ends. Exit status 1 if any run failed.
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

from uldviz import site

HERE = Path(__file__).resolve().parent
CHURN = ("from jupyter_client.manager import start_new_kernel\nwhile True:\n"
         "    km, kc = start_new_kernel()\n    kc.execute_interactive('x = 1', timeout=60)\n"
         "    kc.stop_channels(); km.shutdown_kernel()")
LOADS = {"busy": [sys.executable, "-c", "while True: pass"], "churn": [sys.executable, "-c", CHURN],
         "train": [sys.executable, str(HERE / "stress.py"), str(HERE / "notebooks/03_distillation.ipynb"),
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
    ap.add_argument("notebook", type=Path)
    ap.add_argument("-n", type=int, default=10, help="runs")
    ap.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: site.cell_timeout)")
    ap.add_argument("--run-limit", type=int, default=1800, help="seconds a whole run may take (watchdog)")
    ap.add_argument("--load", default=None, help="background load while running, KIND:N (busy, train, churn)")
    ap.add_argument("--load-every", type=int, default=1, help="load only every k-th run (1: all)")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per run")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    times, failed = [], 0
    for i in range(args.n):
        load = args.load if args.load and i % args.load_every == 0 else None
        procs = start_load(load) if load else []
        try:
            rec = run_once(args.notebook, args.timeout, args.run_limit)
        finally:
            stop_load(procs)
        rec.update(run=i, load=load or "none", fast=os.environ.get("ULDVIZ_FAST", ""), loadavg=os.getloadavg()[0])
        times.append(rec["seconds"])
        failed += not rec["ok"]
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(rec) + "\n")
        if not args.quiet:
            print(f"run {i}: {rec['seconds']:.1f} s load={rec['load']} ok={rec['ok']} slowest cell "
                  f"{rec['slowest_cell']}" + ("" if rec["ok"] else
                  f"\n  {rec['error']}\n  cell {rec['cell']}: {rec['line']}\n  last: {rec['last'][-8:]}"), flush=True)
    if not args.quiet:
        print(f"{args.notebook.name}: {args.n} runs, {failed} failed, seconds min {min(times):.1f} "
              f"median {statistics.median(times):.1f} max {max(times):.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
