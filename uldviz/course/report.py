"""``python -m uldviz.course.report``: the README's "Results measured with the kit" block, computed from the shipped
files.

Reads ``benchmarks/results.json`` (the benchmark), ``data/results/protocol_runs.jsonl`` (notebooks 03/04's
protocol) and ``data/lessons.json`` (the lessons' measured run times) and writes the Markdown between the
README's ``<!-- results -->`` markers. ``--check`` fails when the README is out of date (the tests run it),
so no number in that block is ever typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from uldviz.course.textblocks import replace_between

__all__ = ["START", "END", "results_block", "update_readme", "main"]

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- results -->", "<!-- /results -->"
#: Runs shown in the README's protocol table, in this order.
README_RUNS = ("ce", "ce-ls", "uld-offset", "uld-shuffled", "uld-positional", "seqkd", "seqkd+uld", "hybrid",
               "hybrid-shuffled", "chunk-lik", "chunk-lik-shuffled", "xtoken-pkl", "xtoken-pkl-shuffled", "xtoken-hkl",
               "xtoken-hkl-shuffled", "ce-same", "kl-same")
#: The verdict lines of the README: each method against early-stopped CE, label smoothing and its own control.
README_COMPARISONS = (("uld-offset", "ce"), ("uld-offset", "ce-ls"), ("uld-offset", "uld-shuffled"),
                      ("hybrid", "ce"), ("hybrid", "ce-ls"), ("hybrid", "hybrid-shuffled"), ("chunk-lik", "ce"),
                      ("chunk-lik", "chunk-lik-shuffled"), ("xtoken-pkl", "xtoken-pkl-shuffled"),
                      ("xtoken-pkl", "hybrid"), ("xtoken-hkl", "xtoken-hkl-shuffled"), ("xtoken-hkl", "hybrid"))


def _bench_lines(res: dict) -> list[str]:
    t, d = res["targets"], res.get("distill", {})
    line = (f"- **Benchmark** (`python benchmarks/bench.py --threads 1`), ULD forward + backward on "
            f"{res['sizes']['positions'] if 'sizes' in res and 'positions' in res['sizes'] else 512} positions, "
            f"float32 CPU: {t['uld_over_floor_cpu_worst']['value']:.2f}× the floor (two softmaxes + one `torch.sort` "
            f"per side, worst case), {t['uld_over_reference_worst']['value']:.2f}× the per-sample reference loop, "
            f"equal to the plain implementation to {t['equal_to_plain']['value']:.1e}; top-1000 ULD at vocabulary "
            f"50,257 takes {t['top1000_over_kl_at_50257']['value']:.2f}× KL's time with "
            f"{t['top1000_mean_rel_error_at_50257']['value']:.2%} mean relative error; extra peak memory "
            f"{t['uld_extra_peak_memory_multiple']['value']:.2f}× the logits.")
    if "distill_term_share" in d:
        line += (f" In notebook 03's default ULD run (`uld-offset`) the distillation term (pairing + ULD, forward + "
                 f"backward) takes {d['distill_term_share']:.0%} of a training step ({d['steps_per_s']:.1f} steps/s).")
    return [line]


def _protocol_lines(records: list) -> list[str]:
    from uldviz.distill.data import teacher_card_summary
    from uldviz.distill.protocol import REGIMES, find_comparison, summarize_protocol

    summary = summarize_protocol(records)
    out = [f"- **Distillation protocol** (`python -m uldviz protocol`; notebooks 03 and 04): test bits per byte at "
           "the validation-selected step, mean ± std over the seeds (5, or 10 where the declared rule added seeds); λ "
           f"and ε chosen on validation. Setting: {teacher_card_summary()}; a 2-layer student trained from scratch. "
           "Regimes: " + "; ".join(f"`{k}` = {v.label}" + (f" ({summary[k]['steps']} steps)" if v.pilot and k in summary
                                                           else "") for k, v in REGIMES.items()) + ".", ""]
    regimes = [r for r in summary if summary[r]["runs"]]
    if not regimes:
        return out + ["  (no finished runs shipped yet)"]
    out.append("  | run | " + " | ".join(regimes) + " |")
    out.append("  |---|" + "---|" * len(regimes))
    for run in README_RUNS:
        cells = []
        for regime in regimes:
            r = summary[regime]["runs"].get(run)
            cells.append("–" if r is None else f"{r['selected']['mean']:.3f} ± {r['selected']['std']:.3f}"
                         + (f" ({r['spec'].partition('@')[2]})" if "@" in r["spec"] else "")
                         + ("" if r["selected"]["n"] == 5 else f" [{r['selected']['n']} seeds]"))
        if any(c != "–" for c in cells):
            out.append(f"  | `{run}` | " + " | ".join(cells) + " |")
    out += ["", "  Verdicts (a − b, paired by seed; the interval is Student's at the level Holm's step-down tests it "
                "at within the regime's family, family-wise 5 %; lower is better):", ""]
    for regime in regimes:
        parts = []
        for a, b in README_COMPARISONS:
            c = find_comparison(summary, regime, a, b)
            if c is not None:
                parts.append(f"`{a}` − `{b}` {c['diff']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]: "
                             f"{'**' + c['verdict'] + '**' if c['decided'] else c['verdict']}")
        if parts:
            out.append(f"  - {regime} ({REGIMES[regime].label}): " + "; ".join(parts) + ".")
    return out


def _lesson_line(record: dict) -> str:
    items = []
    for name, n in sorted(record.get("notebooks", {}).items()):
        if "run_seconds" in n:
            items.append(f"`{name}` {n['run_seconds']:.0f} s")
    return "- **Notebook run times** (default mode, headless, Run All): " + ", ".join(items) + "."


def results_block(root: Path = ROOT) -> str:
    """The Markdown of the README's results block, from the shipped result files."""
    from uldviz.distill.protocol import load_records

    lines = ["Measured on a shared 2-core x86-64 CPU machine (no GPU); only ratios within one run are meaningful. "
             "Full tables: [`benchmarks/RESULTS.md`](benchmarks/RESULTS.md), "
             "[`data/results/README.md`](data/results/README.md).", ""]
    bench = root / "benchmarks" / "results.json"
    if bench.is_file():
        lines += _bench_lines(json.loads(bench.read_text()))
    lines += _protocol_lines(load_records(root / "data" / "results" / "protocol_runs.jsonl"))
    lessons = root / "data" / "lessons.json"
    if lessons.is_file():
        lines.append(_lesson_line(json.loads(lessons.read_text())))
    return "\n".join(lines)


def update_readme(path: Path = ROOT / "README.md", check: bool = False) -> bool:
    """Write the block between the markers; with ``check``, only say whether it is current. Returns True if current."""
    text = path.read_text(encoding="utf-8")
    try:
        new = replace_between(text, START, END, f"\n{results_block(path.parent)}\n")
    except ValueError as err:
        raise ValueError(f"{path} has no {START} ... {END} results block") from err
    if new == text:
        return True
    if not check:
        path.write_text(new, encoding="utf-8")
    return False


def main(argv: list[str] | None = None) -> int:
    """``python -m uldviz.course.report [--check]``."""
    p = argparse.ArgumentParser(prog="python -m uldviz.course.report", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if README.md's results block is out of date")
    args = p.parse_args(argv)
    current = update_readme(check=args.check)
    if args.check and not current:
        print("README.md's results block is out of date: run python -m uldviz.course.report", file=sys.stderr)
        return 1
    print("README.md results block is current" if current else "README.md results block updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
