"""Static figures of the protocol's results (notebooks 03 and 04): test scores per regime, validation curves.

Inputs are the plain dicts of :func:`uldviz.distill.protocol.summarize_protocol` and the run records of
:func:`~uldviz.distill.protocol.load_records`; each function returns a Figure for the caller to show and close.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_protocol", "plot_validation_curves"]

#: Colours by kind of run: no teacher (grey), ULD (reds), identity-keeping (greens), controls hatched.
_COLOURS = {"ce": "#7f7f7f", "ce-ls": "#bdbdbd", "uld-positional": "#fdae6b", "uld-offset": "#d62728",
            "uld-shuffled": "#d62728", "seqkd": "#9467bd", "seqkd+uld": "#c5b0d5", "hybrid": "#2ca02c",
            "hybrid-shuffled": "#2ca02c", "chunk-lik": "#17becf", "chunk-lik-shuffled": "#17becf",
            "ce-same": "#9ecae1", "kl-same": "#1f77b4"}


def plot_protocol(summary: dict, runs=None, figsize=None):
    """Per regime, test bits per byte at the validation-selected step (bar: mean ± std over seeds; dot: each seed).

    A hollow diamond marks the mean at the last step, so over-fitting shows as the diamond to the right of
    the bar. Shuffled-teacher controls are hatched. Lower is better.
    """
    regimes = [r for r in summary if summary[r]["runs"]]
    if not regimes:
        raise ValueError("the summary holds no finished run")
    names = [n for n in (runs or list(_COLOURS)) if any(n in summary[r]["runs"] for r in regimes)]
    fig, axes = plt.subplots(1, len(regimes), figsize=figsize or (5.2 * len(regimes), 0.42 * len(names) + 1.4),
                             squeeze=False, sharey=True)
    for ax, regime in zip(axes[0], regimes):
        rs = summary[regime]["runs"]
        y = np.arange(len(names))[::-1]
        for yi, name in zip(y, names):
            if name not in rs:
                continue
            r = rs[name]
            ax.barh(yi, r["selected"]["mean"], xerr=r["selected"]["std"], color=_COLOURS.get(name, "#8c564b"),
                    alpha=0.75, hatch="//" if name.endswith("shuffled") else None, edgecolor="k", capsize=3)
            ax.plot(r["test_selected"], [yi] * len(r["test_selected"]), "k.", ms=3)
            ax.plot(r["final"]["mean"], yi, "D", mfc="none", mec="k", ms=6)
        vals = [v for n in names if n in rs for v in rs[n]["test_selected"] + [rs[n]["final"]["mean"]]]
        lo, hi = min(vals), max(vals)
        ax.set_xlim(lo - 0.1 * (hi - lo + 0.02), hi + 0.1 * (hi - lo + 0.02))
        ax.set_yticks(y, [rs[n]["label"].split(" (")[0] if n in rs else n for n in names], fontsize=8)
        ax.set_title(f"{regime}: test bits per byte (lower is better)", fontsize=10)
        ax.set_xlabel("bar: selected step (mean ± std), ◇: last step")
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
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
