"""The generated numbers of docs/scale.md: cache sizes measured on the kit's data, top-k error, the arithmetic.

``python -m uldviz.scale.report --write`` re-measures and rewrites the blocks between ``<!-- scale:NAME -->`` and
``<!-- /scale:NAME -->`` in docs/scale.md; the tests check that the file holds what this code computes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from uldviz.course.textblocks import read_between, replace_between
from uldviz.scale.arithmetic import DOC_SHAPES, render_markdown

__all__ = ["DOC", "RESULTS", "CACHE_MEASURE", "measure_cache", "render_cache", "measure_q8_error", "render_q8_error",
           "topk_errors", "render_topk",
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
    parser = argparse.ArgumentParser(prog="python -m uldviz.scale.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the blocks of docs/scale.md")
    parser.add_argument("--skip-cache", action="store_true", help="keep the measured cache block as it is")
    args = parser.parse_args(argv)
    blocks = {"arithmetic": render_markdown(DOC_SHAPES), "topk": render_topk(topk_errors())}
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
