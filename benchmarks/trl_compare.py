"""Both training paths on the toy pair, on CPU: the kit's loop (``python -m uldviz train``) and the TRL bridge.

    python benchmarks/trl_compare.py                    # about 2-4 minutes on 2 CPU cores
    python benchmarks/trl_compare.py --two-processes    # + the bridge on 2 CPU processes (torchrun + gloo)

1. the loss of the first optimizer step on the same 4 prompt/completion examples (global batch 4, float32), per
   loss: the kit's loop (:func:`uldviz.scale.train`) and the bridge (:class:`uldviz.scale.trl_bridge.KitGOLDTrainer`,
   2 micro-batches of 2);
2. seconds per optimizer step over ``--steps`` steps (batch 4, ULD): the kit's loop, the bridge off-policy
   (``lmbda=0``; with TRL's default gradient checkpointing and without) and on-policy (``lmbda=1``, 16 new tokens
   per completion, generated with transformers);
3. with ``--two-processes``: the bridge's first-step loss on 2 processes × 2 examples against 1 process × 4.

Prints a markdown table (docs/scale.md quotes it). Timings on a shared CPU are noisy: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
ROOT = Path(__file__).resolve().parents[1]
LOSSES = ("uld", "hybrid", "chunk", "xtoken-pkl")
MAX_TOKENS = 96


def _reset():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)


def prepare(work: Path) -> None:
    """The toy pair and 4 training + 4 held-out prompt/completion examples from the kit's corpus."""
    from uldviz.io.corpus import load_corpus
    from uldviz.scale.toy import save_toy_pair

    save_toy_pair(work, "tiny")
    text = load_corpus()
    for name, start in (("train.jsonl", 0), ("val.jsonl", 20_000)):
        rows = [{"prompt": text[i:i + 50], "completion": text[i + 50:i + 120]}
                for i in range(start, start + 4000, 1000)]
        (work / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def kit_loop(work: Path, loss: str, steps: int) -> dict:
    """``python -m uldviz train`` as a function: (first-step loss, seconds per step)."""
    from uldviz.scale import ScaleConfig, train

    _reset()
    cfg = ScaleConfig(teacher=str(work / "teacher"), student=str(work / "student"), data=[str(work / "train.jsonl")],
                      val_data=str(work / "val.jsonl"), loss=loss, max_tokens=MAX_TOKENS, steps=steps, batch_size=4,
                      grad_accum=1, lr=1e-3, warmup_steps=0, eval_every=10_000, eval_block=32, eval_chars=2000,
                      save_every=0, cpu=True, progress=False, workers=0, out_dir=str(work / f"kit-{loss}"))
    res = train(cfg)
    return {"loss": res.history[0]["loss"], "step_seconds": res.seconds / res.steps}


def bridge_config(work: Path, loss: str, steps: int, per_device: int, accum: int, lmbda: float,
                  checkpointing: bool = True, new_tokens: int = 16):
    from uldviz.scale.trl_bridge import KitGOLDConfig

    return KitGOLDConfig(output_dir=str(work / f"trl-{loss}"), loss=loss, max_steps=steps, learning_rate=1e-3,
                         per_device_train_batch_size=per_device, gradient_accumulation_steps=accum, lmbda=lmbda,
                         max_length=MAX_TOKENS, max_completion_length=new_tokens, logging_steps=1, report_to=[],
                         use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0,
                         gradient_checkpointing=checkpointing)


def bridge(work: Path, loss: str, steps: int, per_device: int = 2, accum: int = 2, lmbda: float = 0.0,
           checkpointing: bool = True):
    """The TRL bridge: (first-step loss, seconds per step, the trainer's log)."""
    from datasets import load_dataset
    from transformers import PrinterCallback

    from uldviz.scale.trl_bridge import KitGOLDTrainer

    _reset()
    data = load_dataset("json", data_files=str(work / "train.jsonl"), split="train")
    trainer = KitGOLDTrainer(str(work / "student"), str(work / "teacher"), train_dataset=data,
                             args=bridge_config(work, loss, steps, per_device, accum, lmbda, checkpointing))
    trainer.remove_callback(PrinterCallback)  # the logs are read from the trainer's state
    out = trainer.train()
    first = next(x for x in trainer.state.log_history if "loss" in x)
    return {"loss": first["loss"], "step_seconds": out.metrics["train_runtime"] / steps, "world":
            trainer.accelerator.num_processes, "rank": trainer.accelerator.process_index}


def two_processes(work: Path, loss: str) -> dict:
    """The bridge's first step under ``accelerate launch --multi_gpu --num_processes 2`` on CPU (gloo)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", __file__, "--worker",
           str(work), loss]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="steps of the timing runs")
    parser.add_argument("--two-processes", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("WORK", "LOSS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # one process of the --two-processes run: 2 examples each, the same global batch of 4
        res = bridge(Path(args.worker[0]), args.worker[1], 1, per_device=2, accum=1)
        if res["rank"] == 0:
            print(json.dumps(res), flush=True)
        return 0

    import torch

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s); torch threads "
              f"{torch.get_num_threads()}\n")
        print("| loss | kit loop, step 1 | TRL bridge, step 1 | abs. difference |\n|---|---|---|---|")
        for loss in LOSSES:
            kit, trl = kit_loop(work, loss, 1), bridge(work, loss, 1)
            print(f"| {loss} | {kit['loss']:.7f} | {trl['loss']:.7f} | {abs(kit['loss'] - trl['loss']):.1e} |")
        if args.two_processes:
            one, two = bridge(work, "uld", 1, per_device=4, accum=1), two_processes(work, "uld")
            print(f"\nbridge, uld, step 1: 1 process x 4 = {one['loss']:.7f}; {two['world']} processes x 2 = "
                  f"{two['loss']:.7f}; difference {abs(one['loss'] - two['loss']):.1e}")
        n = args.steps
        rows = [("kit loop (`python -m uldviz train`)", kit_loop(work, "uld", n)),
                ("TRL bridge, off-policy (`lmbda=0`)", bridge(work, "uld", n, per_device=4, accum=1)),
                ("TRL bridge, off-policy, `gradient_checkpointing=False`",
                 bridge(work, "uld", n, per_device=4, accum=1, checkpointing=False)),
                ("TRL bridge, on-policy (`lmbda=1`, 16 new tokens)",
                 bridge(work, "uld", n, per_device=4, accum=1, lmbda=1.0))]
        print(f"\n| path (ULD, batch 4, {n} steps, CPU) | seconds per step |\n|---|---|")
        for name, res in rows:
            print(f"| {name} | {res['step_seconds']:.3f} |")
    return 0


if __name__ == "__main__":
    started = time.time()
    code = main()
    if "--worker" not in sys.argv:
        print(f"\n({time.time() - started:.0f} s)")
    sys.exit(code)
