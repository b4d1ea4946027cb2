"""Static figures of the protocol's results (notebooks 03 and 04): paired differences per regime, validation curves.

Inputs are the plain dicts of :func:`uldviz.distill.protocol.summarize_protocol` and the run records of
:func:`~uldviz.distill.protocol.load_records`; each function returns a Figure for the caller to show and close.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_comparisons", "plot_validation_curves"]

#: Colours by kind of run: no teacher (grey), ULD (reds), identity-keeping (greens), controls hatched.
_COLOURS = {"ce": "#7f7f7f", "ce-ls": "#bdbdbd", "uld-positional": "#fdae6b", "uld-offset": "#d62728",
            "uld-shuffled": "#d62728", "seqkd": "#9467bd", "seqkd+uld": "#c5b0d5", "hybrid": "#2ca02c",
            "hybrid-shuffled": "#2ca02c", "chunk-lik": "#17becf", "chunk-lik-shuffled": "#17becf",
            "xtoken-pkl": "#8c564b", "xtoken-pkl-shuffled": "#8c564b", "xtoken-hkl": "#e377c2",
            "xtoken-hkl-shuffled": "#e377c2", "ce-same": "#9ecae1", "kl-same": "#1f77b4"}


def plot_comparisons(summary: dict, pairs=None, when: str = "selected", figsize=None):
    """Per regime, one row per comparison a − b: the paired differences and their interval, drawn from zero.

    The filled dot is the mean per-seed difference, the bar its interval at the level Holm's step-down tests it at
    (:mod:`uldviz.maths.stats`), the small dots the seeds' own differences; the axis always includes 0, so sign and
    size read honestly. Green: a better (interval below 0); red: worse (above 0); grey: no difference larger than
    the interval's farther end. Lower bits per byte is better.
    """
    regimes = [r for r in summary if summary[r]["comparisons"]]
    if not regimes:
        raise ValueError("the summary holds no comparison (no two runs finished in any regime)")
    keys = list(dict.fromkeys((c["a"], c["b"]) for r in regimes for c in summary[r]["comparisons"]
                              if c["when"] == when and (pairs is None or (c["a"], c["b"]) in pairs)))
    if pairs is not None:
        keys = [k for k in pairs if k in keys]
    fig, axes = plt.subplots(1, len(regimes), figsize=figsize or (4.6 * len(regimes), 0.36 * len(keys) + 1.5),
                             squeeze=False, sharey=True)
    y = np.arange(len(keys))[::-1]
    for ax, regime in zip(axes[0], regimes):
        comps = {(c["a"], c["b"]): c for c in summary[regime]["comparisons"] if c["when"] == when}
        ends = [0.0]
        for yi, key in zip(y, keys):
            c = comps.get(key)
            if c is None:
                continue
            colour = "#7f7f7f" if not c["decided"] else ("#2ca02c" if c["diff"] < 0 else "#d62728")
            ax.plot([c["low"], c["high"]], [yi, yi], "-", color=colour, lw=2.2, solid_capstyle="butt")
            ax.plot(c["diffs"], [yi] * len(c["diffs"]), ".", color=colour, ms=3, alpha=0.6)
            ax.plot(c["diff"], yi, "o", color=colour, ms=5)
            ends += [c["low"], c["high"], *c["diffs"]]
        lo, hi = min(ends), max(ends)
        pad = 0.06 * (hi - lo + 1e-3)
        ax.set_xlim(lo - pad, hi + pad)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(y, [f"{a} − {b}" for a, b in keys], fontsize=8)
        ax.set_title(f"{regime}: {summary[regime]['label']}", fontsize=9)
        ax.set_xlabel("difference in test bits per byte (a − b; < 0: a better)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_validation_curves(records: list, regime: str, runs, figsize=(7, 3.6)):
    """Mean validation bits per byte over the reported seeds along training, one line per run of ``regime``.

    The minimum of each curve is the checkpoint early stopping selects; a curve that turns up is over-fitting.
    """
    fig, ax = plt.subplots(figsize=figsize)
    drawn = 0
    for name in runs:
        recs = [r for r in records if r["regime"] == regime and r["run"] == name and r["phase"] == "final"]
        if not recs:
            continue
        steps = recs[0]["val_steps"]
        curves = np.array([r["val_bpb"] for r in recs if r["val_steps"] == steps])
        mean, std = curves.mean(0), curves.std(0)
        c = _COLOURS.get(name, "#8c564b")
        ax.plot(steps, mean, "-" if not name.endswith("shuffled") else "--", color=c, label=f"{name} ({len(curves)})")
        ax.fill_between(steps, mean - std, mean + std, color=c, alpha=0.12)
        drawn += 1
    if not drawn:
        raise ValueError(f"no finished runs of {list(runs)} in regime {regime!r}")
    ax.set(xlabel="step", ylabel="validation bits per byte",
           title=f"{regime}: validation curves (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside, not over, the curves
    fig.tight_layout()
    return fig
