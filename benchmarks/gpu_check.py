"""The one prepared GPU check of the kit: run it once where a CUDA GPU is lent; CI runs its CPU dry run.

    python benchmarks/gpu_check.py             # one or more CUDA GPUs: about 6-8 minutes on one
    python benchmarks/gpu_check.py --dry-run   # CPU, tiny sizes, under a minute: the script itself never rots

Steps, each timed and recorded (a failing step is recorded and the script exits 1 at the end):

1. ``tests``: the CUDA-marked tests (``pytest -m cuda``; the dry run only collects them);
2. ``notebooks``: notebooks 03 and 04 executed headless in default mode through the kit's runner
   (:func:`uldviz.course.site.execute`), so their live runs train on the GPU (the dry run executes a two-cell
   notebook that trains two steps through the same runner);
3. ``scale``: ``python -m uldviz train`` on the toy pair with ``--bf16`` for ULD with offset pairing, the hybrid,
   chunk likelihood and training from a teacher top-k cache, with student tokens/s and peak GPU memory per loss
   (and ULD on two processes where the machine has two GPUs);
4. ``speed``: ULD forward + backward at 512 positions × 32,000 / 50,257 in float32 and bfloat16 against the floor
   (two softmaxes and one ``torch.sort`` per side), and the identity-keeping losses at the same size.

Writes ``benchmarks/gpu_check.json`` and ``benchmarks/GPU.md`` (the dry run writes under ``--out``, a temporary
folder by default, so the shipped files only ever hold GPU measurements).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

LOSSES = {"uld": ["--loss", "uld", "--align", "offset"], "hybrid": ["--loss", "hybrid"], "chunk": ["--loss", "chunk"]}


def _run(cmd: list[str], timeout: int, env: dict | None = None, in_process: bool = False) -> dict:
    """A subprocess, its exit code and the tail of its output; ``in_process`` runs ``python -m uldviz ...`` commands
    through their ``main`` here instead (the dry run: the same command lines without a second of imports each)."""
    start = time.perf_counter()
    if in_process and cmd[1:3] == ["-m", "uldviz"]:
        from accelerate.state import AcceleratorState

        from uldviz.__main__ import main as uldviz_main

        AcceleratorState._reset_state(True)
        rc = uldviz_main(cmd[3:])
        AcceleratorState._reset_state(True)
        return {"cmd": " ".join(cmd), "rc": rc, "seconds": round(time.perf_counter() - start, 1), "tail": ""}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    return {"cmd": " ".join(cmd), "rc": done.returncode, "seconds": round(time.perf_counter() - start, 1),
            "tail": (done.stdout + done.stderr)[-1500:]}


def step_tests(dry: bool) -> dict:
    """The CUDA-marked tests (collected only in the dry run)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
    out = _run(cmd + (["--collect-only"] if dry else []), timeout=300)
    if out["rc"] not in (0, 5) or (not dry and out["rc"] == 5):
        raise RuntimeError(f"pytest -m cuda failed (rc {out['rc']}):\n{out['tail']}")
    return out


def _tiny_notebook(path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from uldviz import distill\nfrom uldviz.env import pick_device\n"
                                          "setup = distill.prepare('offline')"),
                nbformat.v4.new_code_cell("cfg = distill.fast_config(steps=2, device='auto')\n"
                                          "res = distill.train(distill.run_config('uld-offset@1', cfg), setup)\n"
                                          "print(pick_device('auto'), res.steps_done)")]
    nbformat.write(nb, str(path))
    return path


def step_notebooks(dry: bool, out: Path) -> dict:
    """Notebooks 03 and 04 in default mode through the kit's runner (the dry run: a two-cell notebook)."""
    from uldviz.course.site import execute

    env_fast = os.environ.pop("ULDVIZ_FAST", None)
    try:
        paths = [_tiny_notebook(out / "tiny.ipynb")] if dry else \
            [ROOT / "notebooks" / "03_distillation.ipynb", ROOT / "notebooks" / "04_beyond_uld.ipynb"]
        runs = {}
        for path in paths:
            memory: dict = {}
            nb, seconds = execute(path, timeout=900, memory=memory)
            text = json.dumps([c.get("outputs", []) for c in nb.cells])
            runs[path.name] = {"seconds": round(seconds, 1), "kernel_peak_mb": memory.get("peak_mb"),
                               "says_cuda": "cuda" in text.lower()}
        return runs
    finally:
        if env_fast is not None:
            os.environ["ULDVIZ_FAST"] = env_fast


def step_scale(dry: bool, out: Path) -> dict:
    """The scale path on the toy pair, bf16 (CPU bf16 in the dry run): one run per loss, and from a teacher cache."""
    size, steps, tokens = ("tiny", 2, 64) if dry else ("hub-like", 40, 512)
    pair = out / "pair"
    made = _run([sys.executable, "-m", "uldviz.scale.toy", str(pair), "--size", size], timeout=300)
    if made["rc"]:
        raise RuntimeError(made["tail"])
    common = ["--teacher", str(pair / "teacher"), "--student", str(pair / "student"), "--student-init", "fresh",
              "--bf16", "--steps", str(steps), "--warmup-steps", "1", "--lr", "3e-4", "--max-tokens", str(tokens),
              "--window-chars", str(4 * tokens), "--eval-every", "100000", "--eval-chars", "4000",
              "--save-every", "0", "--no-progress", "--batch-size", "4" if dry else "16", "--eval-block", "64",
              "--max-chars", "200000"] + (["--cpu", "--workers", "0"] if dry else [])
    runs = {}

    def train(name: str, extra: list[str], launcher: list[str] | None = None) -> None:
        run = _run((launcher or [sys.executable, "-m", "uldviz"]) + ["train"] + common + extra
                   + ["--out-dir", str(out / name)], timeout=600, in_process=dry)
        if run["rc"]:
            raise RuntimeError(f"{name} failed:\n{run['tail']}")
        res = json.loads((out / name / "result.json").read_text())
        runs[name] = {k: res[k] for k in ("tokens_per_second", "peak_memory_bytes", "mixed_precision", "processes",
                                          "final_bpb", "data_wait_seconds", "seconds")}

    for name, extra in LOSSES.items():
        train(name, extra)
    cache = out / "cache"
    made = _run([sys.executable, "-m", "uldviz", "cache-teacher"] + common
                + ["--top-k", "64", "--teacher-cache", str(cache), "--out-dir", str(out / "cache_run")], timeout=600,
                in_process=dry)
    if made["rc"]:
        raise RuntimeError(f"cache-teacher failed:\n{made['tail']}")
    train("uld-cache", ["--loss", "uld", "--top-k", "64", "--teacher-cache", str(cache)])
    if not dry and torch.cuda.device_count() >= 2:
        train("uld-2-processes", LOSSES["uld"],
              [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--mixed_precision", "bf16", "-m", "uldviz"])
    return runs


def step_speed(dry: bool) -> dict:
    """ULD and the identity-keeping losses, forward + backward, against the floor, in float32 and bfloat16."""
    import bench

    device = torch.device("cpu" if dry else "cuda")
    positions, vs, vt = (16, 500, 800) if dry else (512, 32000, 50257)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        out[str(dtype).replace("torch.", "")] = bench.bench_identity_case(
            positions, vs, vt, device, dtype, repeats=2 if dry else 5, shared=min(vs, 20000) // (4 if dry else 1))
    return out


def render(doc: dict) -> str:
    """The markdown table of a GPU check."""
    lines = [f"# GPU check ({doc['when']}, {doc['device']})", "",
             f"`{doc['command']}` — {doc['seconds']:.0f} s; steps failed: {', '.join(doc['failed']) or 'none'}.", ""]
    if "notebooks" in doc["steps"]:
        lines += ["| notebook (default mode) | seconds | kernel peak MB | mentions CUDA |", "|---|---|---|---|"]
        for name, r in doc["steps"]["notebooks"].items():
            lines.append(f"| {name} | {r['seconds']} | {r['kernel_peak_mb'] and round(r['kernel_peak_mb'])} | "
                         f"{r['says_cuda']} |")
        lines.append("")
    if "scale" in doc["steps"]:
        lines += ["| scaled run (toy pair) | precision | processes | student tokens/s | peak memory (GiB) |",
                  "|---|---|---|---|---|"]
        for name, r in doc["steps"]["scale"].items():
            mem = r["peak_memory_bytes"]
            lines.append(f"| {name} | {r['mixed_precision']} | {r['processes']} | {r['tokens_per_second']:,.0f} | "
                         f"{'-' if mem is None else f'{mem / 2**30:.2f}'} |")
        lines.append("")
    if "speed" in doc["steps"]:
        lines += ["| loss, forward + backward | dtype | ms | × ULD | × floor |", "|---|---|---|---|---|"]
        for dtype, case in doc["steps"]["speed"].items():
            for name, r in case["timing"].items():
                ms = r["median_s"] * 1e3
                lines.append(f"| {name} | {dtype} | {ms:.1f} | {r['x_uld']:.2f} | {r['x_floor']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check that every step still runs")
    ap.add_argument("--out", default=None, help="folder for the files (default: benchmarks/, or a temp dir dry)")
    ap.add_argument("--only", nargs="*", default=None, help="steps to run (tests notebooks scale speed)")
    args = ap.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        ap.error("no CUDA GPU here: run with --dry-run, or on a machine with a GPU")
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="gpu_check_")) if args.dry_run
                                           else ROOT / "benchmarks")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_work_"))
    start = time.perf_counter()
    doc = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry_run": args.dry_run,
           "device": "CPU (dry run)" if args.dry_run else torch.cuda.get_device_name(0),
           "gpus": torch.cuda.device_count(), "torch": torch.__version__,
           "command": "python benchmarks/gpu_check.py" + (" --dry-run" if args.dry_run else ""),
           "steps": {}, "failed": []}
    steps = {"tests": lambda: step_tests(args.dry_run), "notebooks": lambda: step_notebooks(args.dry_run, work),
             "scale": lambda: step_scale(args.dry_run, work), "speed": lambda: step_speed(args.dry_run)}
    for name, fn in steps.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            doc["steps"][name] = fn()
        except Exception as err:  # noqa: BLE001 - recorded, the next step still runs
            doc["failed"].append(name)
            doc["steps"][f"{name}_error"] = "".join(traceback.format_exception_only(err))[-3000:]
            print(doc["steps"][f"{name}_error"], file=sys.stderr, flush=True)
        print(f"   {time.perf_counter() - t0:.0f} s", flush=True)
    doc["seconds"] = time.perf_counter() - start
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "GPU.md").write_text(render({k: v for k, v in doc.items()}))
    print(f"wrote {out / 'gpu_check.json'} and {out / 'GPU.md'}; failed: {doc['failed'] or 'none'}")
    return 1 if doc["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
