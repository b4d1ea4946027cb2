"""The generated numbers of docs/scale.md: cache sizes, top-k error, the arithmetic, measured memory and feed.

``python -m uldviz.course.scale_docs --write`` re-measures and rewrites the blocks between ``<!-- scale:NAME -->`` and
``<!-- /scale:NAME -->`` in docs/scale.md; the tests check that the file holds what this code computes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from uldviz.course.textblocks import read_between, replace_between
from uldviz.scale.arithmetic import DOC_SHAPES, RunShape, estimate, render_markdown
from uldviz.scale.measure import FEED_RESULTS, load_coefficients

__all__ = ["DOC", "RESULTS", "CACHE_MEASURE", "measure_cache", "render_cache", "measure_q8_error", "render_q8_error",
           "topk_errors", "render_topk", "check_shape", "render_memory", "render_feed", "DRY_RUN_ARGS",
           "render_dry_run",
           "replace_block", "read_block", "main"]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "scale.md"
RESULTS = ROOT / "benchmarks" / "results.json"
#: How the cache sizes are measured: the kit's shipped teacher and student tokenizer on the start of its corpus.
CACHE_MEASURE = {"chars": 40_000, "window_chars": 400, "max_tokens": 128, "ks": (64, 1000),
                 "dtypes": ("q8", "float16"), "dtype": "q8"}


def measure_cache(k: int, chars: int, window_chars: int, max_tokens: int, dtype: str = "q8",
                  keep: str | None = None) -> dict:
    """Write a teacher cache of the shipped teacher (data/teacher) for the student tokenizer (data/tokenizers/student)
    on the first ``chars`` characters of the kit's corpus in a temporary folder (or ``keep``); return its size."""
    from uldviz.env import data_dir
    from uldviz.io.corpus import load_corpus
    from uldviz.scale.cache import cache_teacher
    from uldviz.scale.config import ScaleConfig

    with tempfile.TemporaryDirectory() as scratch:
        tmp = keep or scratch
        text = Path(tmp) / "text.txt"
        text.write_text(load_corpus()[:chars], encoding="utf-8")
        cfg = ScaleConfig(teacher=str(Path(data_dir()) / "teacher"),
                          student=str(Path(data_dir()) / "tokenizers" / "student"), data=[str(text)],
                          window_chars=window_chars, max_tokens=max_tokens, top_k=k, cache_dtype=dtype,
                          teacher_cache=str(Path(tmp) / "cache"), cpu=True, batch_size=16)
        meta = cache_teacher(cfg)
    return {key: meta[key] for key in ("k", "dtype", "positions", "bytes", "bytes_per_position", "row_bytes")}


def render_cache(rows: list[dict]) -> str:
    """The cache-size table: measured bytes, the row formula, and MB per million positions (= bytes per position)."""
    names = {"q8": "8-bit log codes + float16 row max", "float16": "float16 probs", "bfloat16": "bfloat16 probs",
             "float32": "float32 probs"}
    lines = ["| k | stored as (ids: int16) | positions measured | bytes on disk | bytes per position (formula) | "
             "**per million tokens** |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['k']:,} | {names[r['dtype']]} | {r['positions']:,} | {r['bytes']:,} | "
                     f"{r['bytes_per_position']:,.1f} ({r['row_bytes']:,}) | "
                     f"**{r['bytes_per_position']:,.0f} MB** |")
    return "\n".join(lines)


def measure_q8_error(k: int = 64, seed: int = 0) -> dict:
    """How much the 8-bit codes change the top-k ULD loss, against float32 storage of the same cache, for a random
    student (logits normal, standard deviation 2) on every cached position of :data:`CACHE_MEASURE`'s data."""
    import torch

    from uldviz.maths.losses import uld_topk_from_teacher_topk
    from uldviz.scale.cache import TeacherCache

    m = CACHE_MEASURE
    with tempfile.TemporaryDirectory() as tmp:
        caches = {}
        for dtype in ("float32", "q8"):
            Path(tmp, dtype).mkdir()
            measure_cache(k, m["chars"], m["window_chars"], m["max_tokens"], dtype, keep=str(Path(tmp, dtype)))
            caches[dtype] = TeacherCache(Path(tmp, dtype, "cache"))
        g = torch.Generator().manual_seed(seed)
        exact, coded = [], []
        for i in range(caches["q8"].meta["n_examples"]):
            a, b = caches["float32"].example(i), caches["q8"].example(i)
            s = torch.randn(len(a["pos"]), 640, generator=g) * 2
            exact.append(uld_topk_from_teacher_topk(s, a["probs"], a["tail"], reduction="none"))
            coded.append(uld_topk_from_teacher_topk(s, b["probs"], b["tail"], reduction="none"))
    exact, coded = torch.cat(exact), torch.cat(coded)
    rel = (coded - exact).abs() / exact
    return {"k": k, "positions": int(exact.numel()),
            "mean_loss_rel_change": float((coded.mean() - exact.mean()).abs() / exact.mean()),
            "per_position_mean_rel_change": float(rel.mean()), "per_position_max_rel_change": float(rel.max())}


def render_q8_error(r: dict) -> str:
    """One sentence with the measured effect of the 8-bit codes."""
    return (f"With k = {r['k']}, the 8-bit codes change the mean top-k ULD loss over all {r['positions']:,} cached "
            f"positions by {r['mean_loss_rel_change']:.3%} against float32 storage; per position by "
            f"{r['per_position_mean_rel_change']:.2%} on average ({r['per_position_max_rel_change']:.1%} at most) "
            "(a random student, logits normal with standard deviation 2).")


def topk_errors(path=RESULTS) -> list[dict]:
    """Relative error of top-k ULD against full ULD per position, from the benchmark's ``uld_speed`` entries."""
    data = json.loads(Path(path).read_text())
    rows = []
    for entry in data.get("uld_speed", []):
        for name, err in entry.get("topk_error", {}).items():
            rows.append({"device": entry["device"], "vocab_student": entry["vocab_student"],
                         "vocab_teacher": entry["vocab_teacher"], "positions": entry["positions"],
                         "k": int(name.removeprefix("top")), **err})
    if not rows:
        raise ValueError(f"{path} holds no top-k error measurement (run the benchmark first)")
    return rows


def render_topk(rows: list[dict]) -> str:
    """The top-k error table (mean and worst relative error over positions; never above the full value?)."""
    lines = ["| vocab student / teacher | positions | k | mean error | worst error | never above full ULD |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['vocab_student']:,} / {r['vocab_teacher']:,} | {r['positions']:,} | {r['k']:,} | "
                     f"{r['mean_rel_error']:.2%} | "
                     f"{r['max_rel_error']:.2%} | {'yes' if r['never_above_full'] else 'no'} |")
    return "\n".join(lines)


def check_shape(check: dict) -> RunShape:
    """The :class:`RunShape` of the measured whole step (:func:`uldviz.scale.measure.step_points`), CPU code path."""
    bf16 = check["precision"] == "bf16"
    return RunShape(teacher_params=check["teacher_params"], student_params=check["student_params"],
                    teacher_dtype="bfloat16" if bf16 else "float32", teacher_vocab=check["teacher_vocab"],
                    student_vocab=check["student_vocab"], student_layers=check["student_layers"],
                    student_width=check["student_width"], micro_batch=check["batch"], seq_len=check["student_len"],
                    loss=check["loss"], bf16=bf16, device="cpu")


def render_memory(coeffs: dict) -> str:
    """The measured coefficients (per loss and precision), the activation fit and the whole-step check."""
    bf16, fp32 = coeffs["objective"]["bf16"], coeffs["objective"]["fp32"]
    lines = ["| objective | bf16: B per student logit | B per teacher logit | × the two logits' bytes | "
             "float32: B per student logit | B per teacher logit | worst fit error |", "|---|---|---|---|---|---|---|"]
    failed = []

    def cells(fit, times: bool) -> list[str]:
        if "error" in fit:
            return ["fails¹"] * (3 if times else 2)
        teacher = fit["teacher_bytes_per_logit"] > 0
        out = [f"{fit['student_bytes_per_logit']:.1f}", f"{fit['teacher_bytes_per_logit']:.1f}" if teacher else "–"]
        both = (fit["student_bytes_per_logit"] + fit["teacher_bytes_per_logit"]) / (4 if teacher else 2)
        return out + [f"{both:.1f}×"] if times else out

    for key in bf16:
        b, f = bf16[key]["torch"], fp32[key]["torch"]
        failed += [f"`{key}` under {name}: {fit['error']}" for name, fit in (("bf16", b), ("float32", f))
                   if "error" in fit]
        err = max(fit.get("max_rel_residual", 0) for fit in (b, f))
        lines.append(f"| `{key}` | " + " | ".join(cells(b, True) + cells(f, False)) + f" | {err:.1%} |")
    cpu = [f"`{k}` {v['cpu']['student_bytes_per_logit']:.1f} / {v['cpu']['teacher_bytes_per_logit']:.1f}"
           for k, v in bf16.items() if "cpu" in v and "error" not in v["cpu"]]
    act = coeffs["activations"]
    acts = "; ".join(f"{p}: α = {a['per_layer_per_width']:.1f}, β = {a['per_width']:.1f}, "
                     f"γ = {a['per_layer_per_token_of_context']:.2f} B (worst fit error {a['max_rel_residual']:.1%})"
                     for p, a in (("bf16", act["bf16"]), ("float32", act["fp32"])))
    tau = coeffs["teacher"]
    sizes = act["fp32"]["bytes_per_token"]
    layers = sorted({p["layers"] for p in sizes})
    widths = sorted({p["width"] for p in sizes})
    seqs = sorted({p["seq"] for p in sizes})
    checks = []
    for precision, check in coeffs["check"].items():
        predicted = estimate(check_shape(check), coeffs)["total_bytes_per_gpu"]
        checks.append(f"{'bf16' if precision == 'bf16' else 'float32'}: measured {check['total_bytes'] / 1e6:,.0f} MB, "
                      f"formula {predicted / 1e6:,.0f} MB")
    c = coeffs["check"]["bf16"]
    note = f"\n\n¹ Not measurable on a CPU: {'; '.join(failed)}." if failed else ""
    return "\n".join(lines) + note + (
        f"\n\nThe CPU's numpy sorted-L1 kernel (bf16, B per student / teacher logit): {', '.join(cpu)}. "
        f"Student activations, bytes per token = (α n_layers + β) × width + γ n_layers L, fitted on GPT-2 bodies "
        f"({layers[0]}–{layers[-1]} layers, widths {widths[0]}–{widths[-1]}, L = "
        f"{' and '.join(f'{x:,}' for x in seqs)}, padded batches): {acts}. Whole step (GPT-2 student "
        f"{c['student_layers']} × {c['student_width']}, teacher of {c['teacher_params'] / 1e6:.1f}M parameters, "
        f"{c['batch']} × "
        f"{c['student_len']} tokens, `{c['loss']}`, AdamW, second step's peak above the process before the models): "
        f"{'; '.join(checks)}. The teacher's forward (no gradient) holds {tau['bf16']['per_width']:.0f} (bf16) / "
        f"{tau['fp32']['per_width']:.0f} (float32) B per token and unit of its width while it runs (measured on "
        f"GPT-2 bodies); the formula does not add it, as it is freed before the objective's peak. At the whole "
        f"step's small vocabularies that forward is the step's peak, hence the formula's shortfall there; for a "
        f"2,048-wide teacher at 8 × 1,024 tokens in bf16 it is {tau['bf16']['per_width'] * 2048 * 8192 / 1e9:.1f} GB,"
        f" far below the objective's term. Measured by `{coeffs['command']}` ({coeffs['method']}; torch "
        f"{coeffs['torch']}).")


def render_feed(r: dict) -> str:
    """The feed table: tokenization + pairing per step, the wait behind a simulated GPU step, the toy loop."""
    f = r["setup"]
    gpu_ms = 1e3 * f["gpu_step_seconds"]
    lines = ["| what (per optimizer step) | " + " | ".join(f"{w} workers" for w in f["workers"]) + " |",
             "|---|" + "---|" * len(f["workers"])]
    sim, loop = r["simulated_gpu"], r["loop"]
    w = [str(x) for x in f["workers"]]
    lines.append(f"| wait for the batch behind a {gpu_ms:.0f} ms GPU step ({f['batch_size']} × {f['gpu_tokens']}, "
                 "median) | " + " | ".join(f"{sim[x]['wait_ms']:.1f} ms" for x in w) + " |")
    lines.append("| step time behind it (GPU + wait) | " + " | ".join(f"{sim[x]['step_ms']:.1f} ms" for x in w) + " |")
    lines.append("| first batch (workers starting) | " + " | ".join(f"{sim[x]['first_wait_ms']:,.0f} ms" for x in w)
                 + " |")
    lines.append(f"| toy loop on this CPU ({f['batch_size']} × {f['loop_tokens']}): data wait | "
                 + " | ".join(f"{loop[x]['data_wait_ms_per_step']:.1f} ms" for x in w) + " |")
    lines.append("| toy loop: step time | " + " | ".join(f"{loop[x]['step_ms']:.1f} ms" for x in w) + " |")
    lines.append("| toy loop: student tokens/s | " + " | ".join(f"{loop[x]['tokens_per_second']:,}" for x in w) + " |")
    sb = "; ".join(f"{name}: {v['wall_ms']:.1f} ms wall, {v['cpu_ms']:.1f} ms CPU"
                   for name, v in r["step_batches"].items())
    load = lambda v: "/".join(f"{x:.1f}" for x in v) if v else "n/a"  # noqa: E731
    return "\n".join(lines) + (
        f"\n\nTokenization + pairing alone (`StepBatches.step`, one process, median of {r['steps']} steps): {sb}. "
        f"{r['cpus']} CPUs, load average {load(r['load_average_before'])} before and "
        f"{load(r['load_average_after'])} after (1/5/15 min); `{r['command']}`.")


#: The docs' dry run: configs shaped like Pythia-1b (teacher) and GPT-2 (student), written offline; 1e8 tokens of
#: 8 x 1024 on one GPU in bf16, as the first column of the memory table.
DRY_RUN_SETUP = ("python -c \"from transformers import GPTNeoXConfig, GPT2Config; "
                 "GPTNeoXConfig(hidden_size=2048, num_hidden_layers=16, num_attention_heads=8, intermediate_size=8192, "
                 "vocab_size=50304, max_position_embeddings=2048).save_pretrained('/tmp/cfg/pythia-1b'); "
                 "GPT2Config().save_pretrained('/tmp/cfg/gpt2')\"")
DRY_RUN_ARGS = ["--dry-run", "--teacher", "/tmp/cfg/pythia-1b", "--student", "/tmp/cfg/gpt2", "--bf16",
                "--batch-size", "8", "--max-tokens", "1024", "--grad-accum", "1", "--steps", "12207",
                "--warmup-steps", "200"]


def render_dry_run() -> str:
    """The dry run of :data:`DRY_RUN_ARGS` on the configs :data:`DRY_RUN_SETUP` writes: commands and output."""
    from transformers import GPT2Config, GPTNeoXConfig

    from uldviz.scale.config import ScaleConfig, add_dataclass_args, dataclass_from_args
    from uldviz.scale.plan import plan, render_plan

    with tempfile.TemporaryDirectory() as tmp:
        GPTNeoXConfig(hidden_size=2048, num_hidden_layers=16, num_attention_heads=8, intermediate_size=8192,
                      vocab_size=50304, max_position_embeddings=2048).save_pretrained(Path(tmp, "pythia-1b"))
        GPT2Config().save_pretrained(Path(tmp, "gpt2"))
        args = [a.replace("/tmp/cfg", tmp) for a in DRY_RUN_ARGS]
        cfg = dataclass_from_args(ScaleConfig, add_dataclass_args(argparse.ArgumentParser(), ScaleConfig)
                                  .parse_args(args))
        text = render_plan(plan(cfg), cfg).replace(tmp, "/tmp/cfg")
    command = "python -m uldviz train " + " ".join(DRY_RUN_ARGS[:5]) + " \\\n    " + " ".join(DRY_RUN_ARGS[5:])
    return f"```bash\n{DRY_RUN_SETUP}\n{command}\n```\n\n```text\n{text}\n```"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- scale:{name} -->\n", f"\n<!-- /scale:{name} -->"


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block between ``<!-- scale:name -->`` and ``<!-- /scale:name -->`` replaced by ``body``."""
    return replace_between(text, *_markers(name), body)


def read_block(text: str, name: str) -> str:
    """The body of a generated block."""
    return read_between(text, *_markers(name))


def main(argv: list[str] | None = None) -> int:
    """Print the generated blocks; ``--write`` puts them into docs/scale.md."""
    parser = argparse.ArgumentParser(prog="python -m uldviz.course.scale_docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the blocks of docs/scale.md")
    parser.add_argument("--skip-cache", action="store_true", help="keep the measured cache block as it is")
    # the memory coefficients and the feed figures are read from their files (python -m uldviz.scale.measure)
    args = parser.parse_args(argv)
    blocks = {"arithmetic": render_markdown(DOC_SHAPES), "memory": render_memory(load_coefficients()),
              "dryrun": render_dry_run(),
              "topk": render_topk(topk_errors())}
    if FEED_RESULTS.is_file():
        blocks["feed"] = render_feed(json.loads(FEED_RESULTS.read_text(encoding="utf-8")))
    if not args.skip_cache:
        m = CACHE_MEASURE
        blocks["cache"] = render_cache([measure_cache(k, m["chars"], m["window_chars"], m["max_tokens"], dtype)
                                        for k in m["ks"] for dtype in m["dtypes"]])
        blocks["q8"] = render_q8_error(measure_q8_error())
    for name, body in blocks.items():
        print(f"== {name}\n{body}\n")
    if args.write:
        text = DOC.read_text(encoding="utf-8")
        for name, body in blocks.items():
            text = replace_block(text, name, body)
        DOC.write_text(text, encoding="utf-8")
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
