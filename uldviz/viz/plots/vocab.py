"""Static matplotlib figures for notebook 01: two vocabularies, the KL patches, and ULD's sorted view.

Every function takes distributions as ``{token: probability}`` dicts (see :mod:`uldviz.maths.patches`)
and returns a :class:`matplotlib.figure.Figure`; the caller displays and closes it. No widgets here.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from uldviz.maths.losses import sorted_padded
from uldviz.maths.patches import blind_id_pairs, check_distribution, intersection_vocab, shared_mass, uld, union_vocab

__all__ = [
    "TEACHER_COLOUR",
    "STUDENT_COLOUR",
    "plot_distributions",
    "plot_aligned",
    "plot_kl_vs_epsilon",
    "plot_patch_gradients",
    "plot_intersection_patch",
    "plot_blind_matching",
    "plot_sorted_padded",
]

TEACHER_COLOUR = "#1f77b4"
STUDENT_COLOUR = "#ff7f0e"
_MISSING = "#d62728"
_TOKEN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")


def _bar_labels(ax, bars, values) -> None:
    """Write each bar's probability above it (2 decimals)."""
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.02, f"{v:.2f}",
                ha="center", va="bottom", fontsize=9)


def _checked_pair(teacher, student):
    """Both distributions checked (clear errors on bad input) and the union of their token strings, in order."""
    p = check_distribution(teacher, "teacher")
    q = check_distribution(student, "student")
    return p, q, union_vocab(p, q)


def plot_distributions(teacher, student, *, titles=("teacher", "student"), figsize=(8, 3)):
    """Two bar charts, each on its OWN vocabulary axis; tokens the other side lacks get a red hatched edge."""
    p, q, _ = _checked_pair(teacher, student)
    fig, axes = plt.subplots(1, 2, figsize=figsize, sharey=True)
    for ax, dist, other, colour, title in ((axes[0], p, q, TEACHER_COLOUR, titles[0]),
                                          (axes[1], q, p, STUDENT_COLOUR, titles[1])):
        toks = list(dist)
        vals = [dist[t] for t in toks]
        bars = ax.bar(range(len(toks)), vals, color=colour)
        for bar, t in zip(bars, toks):
            if t not in other:
                bar.set_hatch("//")
                bar.set_edgecolor(_MISSING)
        ax.set_xticks(range(len(toks)), toks)
        ax.set_ylim(0, 1.12)
        ax.set_title(f"{title}\nvocabulary of {len(toks)} tokens", fontsize=10)
        _bar_labels(ax, bars, vals)
    axes[0].set_ylabel("probability")
    if set(p) != set(q):
        fig.text(0.5, -0.04, "hatched red: a token the other model's vocabulary does not contain",
                 ha="center", fontsize=9, color=_MISSING)
    fig.tight_layout()
    return fig


def plot_aligned(teacher, student, *, figsize=(6, 3)):
    """Both distributions on the UNION of token strings: the zeros KL must take a log of are marked."""
    p, q, labels = _checked_pair(teacher, student)
    x = np.arange(len(labels))
    w = 0.38
    fig, ax = plt.subplots(figsize=figsize)
    pv = [p.get(t, 0.0) for t in labels]
    qv = [q.get(t, 0.0) for t in labels]
    ax.bar(x - w / 2, pv, w, color=TEACHER_COLOUR, label="teacher $p$")
    ax.bar(x + w / 2, qv, w, color=STUDENT_COLOUR, label="student $q$")
    for i, (a, b) in enumerate(zip(pv, qv)):
        if b == 0 and a > 0:
            ax.annotate("$q=0$: $\\log 0=-\\infty$", (x[i] + w / 2, 0.0), xytext=(0, 75),
                        textcoords="offset points", ha="center", color=_MISSING, fontsize=9,
                        arrowprops=dict(arrowstyle="->", color=_MISSING))
        elif a == 0 and b == 0:
            ax.annotate("$0\\cdot(-\\infty)$ = NaN in torch", (x[i], 0.0), xytext=(0, 75), textcoords="offset points",
                        ha="center", color=_MISSING, fontsize=9, arrowprops=dict(arrowstyle="->", color=_MISSING))
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("probability")
    ax.set_title("aligned on the union of token strings")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_kl_vs_epsilon(eps_values, kl_values, *, ratio: float | None = None, gradients=None, figsize=None):
    """Patch (a): smoothed KL against ε (log-log); ``ratio`` (max/min) goes in the title.

    With ``gradients`` (``{student token: [∂KL_ε/∂z at each ε]}``, see
    :func:`uldviz.maths.patches.gradient_vs_epsilon`) a second panel shows the gradient against the same ε:
    the value is what you read, the gradient is what training uses.
    """
    eps = np.asarray(list(eps_values), dtype=float)
    kls = np.asarray(list(kl_values), dtype=float)
    if eps.shape != kls.shape or eps.size == 0:
        raise ValueError(f"eps_values and kl_values must be non-empty and of equal length, "
                         f"got {eps.size} and {kls.size}")
    if gradients is not None and any(len(v) != eps.size for v in gradients.values()):
        raise ValueError("every gradient curve must have one value per ε")
    panels = 1 if gradients is None else 2
    fig, axes = plt.subplots(1, panels, figsize=figsize or (6 * panels, 3.5), squeeze=False)
    ax = axes[0, 0]
    ax.loglog(eps, kls, "o-", color=TEACHER_COLOUR)
    ax.set_xlabel("smoothing ε (added to every probability)")
    ax.set_ylabel("KL($p^ε$ ‖ $q^ε$)  [nats]")
    title = "patch (a): the 'same' KL for different ε"
    if ratio is not None and math.isfinite(ratio):
        title += f"\nmax / min over this range = {ratio:.3g}"
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if gradients is not None:
        gax = axes[0, 1]
        for i, (tok, vals) in enumerate(gradients.items()):
            gax.semilogx(eps, vals, "o-", ms=3, color=_TOKEN_COLOURS[i % len(_TOKEN_COLOURS)],
                         label=f"∂/∂z({tok})")
        gax.axhline(0, color="#888", lw=0.8)
        gax.set_xlabel("smoothing ε")
        gax.set_ylabel("gradient w.r.t. the student's logit")
        gax.set_title("its gradient: what a training step uses\n(one curve per student token)")
        gax.legend(fontsize=8)
        gax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_patch_gradients(gradients, *, figsize=None):
    """One small bar chart per loss: how a training step would move each student logit (minus the gradient).

    ``gradients`` is ``{loss name: {student token: ∂L/∂z}}`` (see :func:`uldviz.maths.patches.patch_gradients`).
    Green bars go up (the step raises that token's logit), red bars go down; NaN (undefined) is marked.
    """
    names = list(gradients)
    if not names:
        raise ValueError("gradients is empty: nothing to plot")
    fig, axes = plt.subplots(1, len(names), figsize=figsize or (2.6 * len(names), 2.8), sharey=True)
    axes = np.atleast_1d(axes)
    finite = [abs(v) for g in gradients.values() for v in g.values() if math.isfinite(v)]
    top = 1.25 * max(finite + [1e-3])
    for ax, name in zip(axes, names):
        toks = list(gradients[name])
        step = [0.0 if abs(g) < 1e-12 else -g for g in (gradients[name][t] for t in toks)]
        colours = ["#2ca02c" if v > 1e-12 else _MISSING if v < -1e-12 else "#999" for v in step]
        ax.bar(range(len(toks)), [0 if not math.isfinite(v) else v for v in step], color=colours)
        for i, v in enumerate(step):
            label = "undefined" if not math.isfinite(v) else "0" if v == 0 else f"{v:+.2f}"
            ax.text(i, (v if math.isfinite(v) else 0) + (0.04 * top if not v < 0 else -0.04 * top), label,
                    ha="center", va="bottom" if not v < 0 else "top", fontsize=8)
        ax.axhline(0, color="#888", lw=0.8)
        ax.set_xticks(range(len(toks)), toks)
        ax.set_ylim(-top, top)
        ax.set_title(name, fontsize=10)
    axes[0].set_ylabel("−∂L/∂z: a step moves\nthe logit this way")
    fig.tight_layout()
    return fig


def plot_intersection_patch(teacher, student, *, figsize=(9, 3)):
    """Patch (b): left, what is thrown away (tokens only one side has); right, the renormalised shared part."""
    p, q, labels = _checked_pair(teacher, student)
    shared = intersection_vocab(p, q)
    mp, mq = shared_mass(p, q)
    fig, axes = plt.subplots(1, 2, figsize=figsize, sharey=True)
    x = np.arange(len(labels))
    w = 0.38
    for off, dist, colour, name in ((-w / 2, p, TEACHER_COLOUR, "teacher"), (w / 2, q, STUDENT_COLOUR, "student")):
        vals = [dist.get(t, 0.0) for t in labels]
        bars = axes[0].bar(x + off, vals, w, color=colour, label=name)
        for bar, t in zip(bars, labels):
            if t not in shared:
                bar.set_alpha(0.25)
                bar.set_hatch("xx")
    axes[0].set_xticks(x, labels)
    axes[0].set_title(f"kept: teacher {mp:.2f}, student {mq:.2f} of the mass\n(faded = thrown away)")
    axes[0].set_ylabel("probability")
    axes[0].legend(fontsize=8)
    xs = np.arange(len(shared))
    if shared and mp > 0 and mq > 0:
        axes[1].bar(xs - w / 2, [p[t] / mp for t in shared], w, color=TEACHER_COLOUR)
        axes[1].bar(xs + w / 2, [q[t] / mq for t in shared], w, color=STUDENT_COLOUR)
    axes[1].set_xticks(xs, shared)
    axes[1].set_title("renormalised on the shared tokens:\nwhat the intersection KL compares")
    axes[1].set_ylim(0, 1.12)
    fig.tight_layout()
    return fig


def plot_blind_matching(teacher, student, *, figsize=(7, 3.4)):
    """Patch (c): teacher tokens (top) joined to the student tokens with the same id (bottom); red: other strings."""
    p, q, _ = _checked_pair(teacher, student)
    pairs = blind_id_pairs(p, q)
    n = max(len(p), len(q))
    fig, ax = plt.subplots(figsize=figsize)
    for i, (t, s) in enumerate(pairs):
        same = t == s
        ax.plot([i, i], [0.78, 0.22], color="#2ca02c" if same else _MISSING, lw=2 if same else 3,
                ls="-" if same else "--")
        ax.text(i + 0.05, 0.5, "same string" if same else f"{t} vs {s}?", color="#2ca02c" if same else _MISSING,
                fontsize=9, va="center")
    for row, dist, colour in ((1, p, TEACHER_COLOUR), (0, q, STUDENT_COLOUR)):
        for i, (tok, v) in enumerate(dist.items()):
            ax.text(i, row, f"id {i}: {tok}\n{v:.2f}", ha="center", va="center", fontsize=10,
                    bbox=dict(boxstyle="round", fc=colour, alpha=0.25, ec=colour))
    ax.set_xlim(-0.6, n - 0.2)
    ax.set_ylim(-0.4, 1.4)
    ax.set_yticks([0, 1], ["student", "teacher"])
    ax.set_xticks([])
    ax.set_title("patch (c): token id i compared with token id i")
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def plot_sorted_padded(teacher, student, *, figsize=(6, 3)):
    """What ULD compares: both distributions sorted descending and zero-padded to one length, with |differences|."""
    p, q, _ = _checked_pair(teacher, student)
    as_t = lambda d: torch.tensor(list(d.values()), dtype=torch.float64)
    ps, qs = (v.tolist() for v in sorted_padded(as_t(p), as_t(q)))
    x = np.arange(len(ps))
    w = 0.38
    fig, ax = plt.subplots(figsize=figsize)
    ax.bar(x - w / 2, ps, w, color=TEACHER_COLOUR, label="teacher, sorted")
    ax.bar(x + w / 2, qs, w, color=STUDENT_COLOUR, label="student, sorted")
    for i, (a, b) in enumerate(zip(ps, qs)):
        if abs(a - b) > 1e-12:
            ax.text(x[i], max(a, b) + 0.03, f"|Δ|={abs(a - b):.2f}", ha="center", fontsize=9)
    ax.set_xticks(x, [f"rank {i + 1}" for i in x])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("probability")
    ax.set_title(f"ULD = Σ |Δ| = {uld(p, q):.3g}  (token names ignored)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
