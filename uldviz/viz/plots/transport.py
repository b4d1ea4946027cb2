"""Static figures for notebook 02 (optimal transport): cost/plan heatmaps, plans as arrows, scaling, curves.

Every function returns a matplotlib ``Figure`` and draws nothing on screen by itself; the
numbers come from :mod:`uldviz.maths.transport` / :mod:`uldviz.maths.losses`. Arrow patches carry the gid
``"uldviz-plan-arrow"`` so tests (and curious students) can count them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch

__all__ = [
    "ARROW_GID",
    "plot_cost_and_plan",
    "plot_plan_arrows",
    "plot_sinkhorn_vs_exact",
    "plot_scaling",
    "plot_temperature_curve",
    "plot_topk_error",
    "plot_blind_spot",
    "plot_shared_mass",
]

ARROW_GID = "uldviz-plan-arrow"
TEACHER_COLOUR = "#1f77b4"
STUDENT_COLOUR = "#ff7f0e"


def _np(x) -> np.ndarray:
    """numpy copy of an array or torch tensor (detached)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _heatmap(ax, A, title, row_labels, col_labels, cmap, annotate):
    """One annotated heatmap on ``ax``."""
    im = ax.imshow(A, cmap=cmap, aspect="auto")
    ax.set_title(title)
    ax.set_xticks(range(A.shape[1]))
    ax.set_yticks(range(A.shape[0]))
    ax.set_xticklabels(col_labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(row_labels, fontsize=8)
    if annotate:
        hi = A.max() if A.size else 0
        for i in range(A.shape[0]):
            for j in range(A.shape[1]):
                ax.text(j, i, f"{A[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if A[i, j] > 0.6 * hi else "black")
    return im


def plot_cost_and_plan(
    C,
    plan,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    *,
    titles: tuple[str, str] = ("cost matrix C", "optimal plan π"),
    annotate: bool | None = None,
):
    """Side-by-side heatmaps of a cost matrix C (n x m) and a transport plan π (n x m)."""
    C, T = _np(C), _np(plan)
    if C.shape != T.shape or C.ndim != 2:
        raise ValueError(f"C and plan must be matrices of one shape, got {C.shape} and {T.shape}")
    n, m = C.shape
    rows = list(row_labels) if row_labels is not None else [str(i) for i in range(n)]
    cols = list(col_labels) if col_labels is not None else [str(j) for j in range(m)]
    annotate = (max(n, m) <= 10) if annotate is None else annotate
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    fig.colorbar(_heatmap(axes[0], C, titles[0], rows, cols, "viridis", annotate), ax=axes[0])
    fig.colorbar(_heatmap(axes[1], T, titles[1], rows, cols, "Greens", annotate), ax=axes[1])
    axes[0].set_ylabel("from (rows)")
    axes[0].set_xlabel("to (columns)")
    axes[1].set_xlabel("to (columns)")
    fig.tight_layout()
    return fig


def plot_plan_arrows(
    top,
    bottom,
    plan,
    top_labels: Sequence[str] | None = None,
    bottom_labels: Sequence[str] | None = None,
    *,
    sort: bool = True,
    names: tuple[str, str] = ("teacher p", "student q"),
    tol: float = 1e-12,
    title: str | None = None,
):
    """Two bar charts (``top`` upward, ``bottom`` mirrored downward) with the plan drawn as arrows between bars.

    ``top`` (n,) and ``bottom`` (m,) are the bar heights; ``plan`` (n', m') with n' >= n and m' >= m
    (extra rows/columns are zero padding, drawn as empty "pad" slots). With ``sort=True`` both sides
    are shown sorted descending and the plan is permuted to match, so ULD's optimal plan appears as
    straight vertical arrows: the i-th largest goes to the i-th largest. Arrow width is proportional
    to the mass moved. The figure's ``uldviz_arrows`` lists (i, j, mass) in drawn positions.
    """
    T = _np(plan)
    a, b = _np(top), _np(bottom)
    if T.ndim != 2 or T.shape[0] < a.size or T.shape[1] < b.size:
        raise ValueError(f"plan of shape {T.shape} does not cover bars of sizes {a.size} and {b.size}")
    a = np.pad(a, (0, T.shape[0] - a.size))
    b = np.pad(b, (0, T.shape[1] - b.size))
    la = list(top_labels) if top_labels is not None else [str(i) for i in range(len(_np(top)))]
    lb = list(bottom_labels) if bottom_labels is not None else [str(j) for j in range(len(_np(bottom)))]
    la += ["pad"] * (len(a) - len(la))
    lb += ["pad"] * (len(b) - len(lb))
    ia = np.argsort(-a, kind="stable") if sort else np.arange(len(a))
    ib = np.argsort(-b, kind="stable") if sort else np.arange(len(b))
    a, b, T = a[ia], b[ib], T[np.ix_(ia, ib)]
    la, lb = [la[i] for i in ia], [lb[j] for j in ib]

    width = max(len(a), len(b))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * width + 2), 4.6))
    gap = 0.25 * max(a.max(), b.max(), 1e-12)
    xa = np.arange(len(a))
    xb = np.arange(len(b))
    ax.bar(xa, a, bottom=gap, color=TEACHER_COLOUR, label=names[0])
    ax.bar(xb, -b, bottom=-gap, color=STUDENT_COLOUR, label=names[1])
    for x, h, lab in zip(xa, a, la):
        ax.text(x, gap + h, f"{lab}\n{h:.2f}", ha="center", va="bottom", fontsize=7)
    for x, h, lab in zip(xb, b, lb):
        ax.text(x, -gap - h, f"{h:.2f}\n{lab}", ha="center", va="top", fontsize=7)
    mass_max = T.max() if T.size and T.max() > 0 else 1.0
    arrows = []
    for i, j in zip(*np.nonzero(T > tol)):
        mass = float(T[i, j])
        arrow = FancyArrowPatch(
            (xa[i], gap * 0.95), (xb[j], -gap * 0.95), arrowstyle="-|>", mutation_scale=10,
            linewidth=0.8 + 3.5 * mass / mass_max, color="0.25", alpha=0.75,
        )
        arrow.set_gid(ARROW_GID)
        ax.add_patch(arrow)
        arrows.append((int(i), int(j), mass))
    top_lim = gap + a.max() * 1.35 + 1e-12
    bot_lim = -gap - b.max() * 1.35 - 1e-12
    ax.set_ylim(bot_lim, top_lim)
    ax.set_xlim(-0.7, width - 0.3)
    ax.axhline(gap, color="0.6", lw=0.5)
    ax.axhline(-gap, color="0.6", lw=0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="lower right", fontsize=8)
    ranks = "sorted ↓" if sort else "vocabulary order"
    ax.set_title(title or f"plan as arrows ({ranks}; width ∝ mass)", fontsize=10)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.uldviz_arrows = arrows
    return fig


def plot_sinkhorn_vs_exact(
    exact_plan,
    sinkhorn_plan,
    *,
    reg: float,
    exact_value: float,
    sinkhorn_value: float,
    regs: Sequence[float] | None = None,
    values: Sequence[float] | None = None,
):
    """Exact plan vs entropic plan (heatmaps) and, if given, the Sinkhorn value against reg with the exact line."""
    E, S = _np(exact_plan), _np(sinkhorn_plan)
    ncols = 3 if regs is not None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.6))
    vmax = max(E.max(), S.max())
    axes[0].imshow(E, cmap="Greens", vmin=0, vmax=vmax)
    axes[0].set_title(f"exact plan, sorted pairing\n(ULD = {exact_value:.4f})", fontsize=9)
    axes[1].imshow(S, cmap="Greens", vmin=0, vmax=vmax)
    err = abs(sinkhorn_value - exact_value) / max(exact_value, 1e-300)
    axes[1].set_title(f"Sinkhorn plan, reg = {reg:.3g}\nvalue {sinkhorn_value:.4f} ({100 * err:.0f} % off)", fontsize=9)
    for ax in axes[:2]:
        ax.set_xlabel("student value (sorted ↓)")
        ax.set_ylabel("teacher value (sorted ↓)")
    if regs is not None:
        ax = axes[2]
        ax.semilogx(regs, values, "o-", ms=3, label="N · sinkhorn2")
        ax.axhline(exact_value, color="k", ls="--", label="exact (N · emd2 = ULD)")
        ax.axvline(reg, color="C3", lw=1)
        ax.set_xlabel("reg (entropic regularisation)")
        ax.set_ylabel("value")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_scaling(
    live: Mapping[str, Mapping] | None = None,
    saved: Mapping[str, Mapping] | None = None,
    *,
    title: str = "time for one pair of vectors",
):
    """Log-log time against N: ``live`` (filled markers) and ``saved`` results (hollow, dashed), slopes in labels.

    Each mapping is ``{method: {"label", "sizes", "seconds", "exponent" (optional)}}``, as written by
    :func:`uldviz.course.timing.time_ot_methods` / :func:`uldviz.course.timing.write_ot_scaling`.
    """
    fig, ax = plt.subplots(figsize=(10, 4.8))
    methods = list(dict.fromkeys(list((saved or {}).keys()) + list((live or {}).keys())))
    for k, name in enumerate(methods):
        colour = f"C{k}"
        for rec, style, tag in (((saved or {}).get(name), dict(ls="--", mfc="none"), "file"),
                                ((live or {}).get(name), dict(ls="-"), "live")):
            if not rec or not rec.get("sizes"):
                continue
            slope = rec.get("exponent")
            label = f"{rec.get('label', name)} [{tag}]" + (f", slope {slope:.2f}" if slope is not None else "")
            ax.loglog(rec["sizes"], rec["seconds"], marker="o", color=colour, label=label, **style)
    ax.set_xlabel("vocabulary size N")
    ax.set_ylabel("seconds")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def plot_temperature_curve(temps, values, *, limit: float | None = None, current: float | None = None,
                           current_value: float | None = None, title: str | None = None):
    """ULD against temperature (log x), with the large-τ limit as a dashed line and the current τ marked."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.semilogx(_np(temps), _np(values), "-", color="C2", label="ULD(T)")
    if limit is not None:
        ax.axhline(limit, color="k", ls="--", lw=1, label=f"limit T→∞: 2(1 − m/n) = {limit:.4f}")
    if current is not None and current_value is not None:
        ax.plot([current], [current_value], "o", color="C3", label=f"τ = {current:.3g}: {current_value:.4f}")
    ax.set_xlabel("temperature τ (both sides)")
    ax.set_ylabel("ULD")
    ax.set_ylim(bottom=0)
    ax.set_title(title or "ULD goes to 0 as τ → 0, to 2(1 − m/n) as τ → ∞")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_topk_error(ks, rel_err_tail, rel_err_plain, *, current: int | None = None):
    """Relative error of top-k ULD against the full value, with and without the tail-mass term, against k."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ks = _np(ks)
    ax.loglog(ks, np.maximum(_np(rel_err_tail), 1e-16), "o-", ms=3, label="top-k + |tail_p − tail_q|")
    ax.loglog(ks, np.maximum(_np(rel_err_plain), 1e-16), "s-", ms=3, label="top-k truncated")
    if current is not None:
        ax.axvline(current, color="C3", lw=1, label=f"k = {current}")
    ax.set_xlabel("k")
    ax.set_ylabel("relative error vs full ULD")
    ax.set_title("top-k ULD: the tail term fixes most of the error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_blind_spot(p_teacher, q_student, top_k: int = 15):
    """The permutation blind spot: the same sorted profile (left) but different tokens on top (right)."""
    p, q = _np(p_teacher), _np(q_student)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(np.sort(p)[::-1][:top_k], "o-", label="teacher, sorted ↓")
    axes[0].plot(np.sort(q)[::-1][:top_k], "x--", label="student, sorted ↓")
    axes[0].set_title("what ULD sees: identical sorted vectors")
    axes[0].set_xlabel("rank")
    axes[0].legend(fontsize=8)
    top = np.argsort(-p)[:top_k]
    x = np.arange(top_k)
    axes[1].bar(x - 0.2, p[top], width=0.4, label="teacher", color=TEACHER_COLOUR)
    axes[1].bar(x + 0.2, q[top], width=0.4, label="student", color=STUDENT_COLOUR)
    axes[1].set_xticks(x)
    axes[1].set_xticklabels([str(t) for t in top], rotation=90, fontsize=7)
    axes[1].set_xlabel("token id (teacher's top tokens)")
    axes[1].set_title(f"what it misses: the student puts {q[top].sum():.3f} (teacher: {p[top].sum():.3f})\n"
                      f"of its mass on the teacher's top {top_k} tokens", fontsize=10)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_shared_mass(masses, *, bins: int = 25):
    """Histogram of the teacher's probability on strings the student also has, one value per predicted position.

    The dashed line is the mean: 1 minus it is the smallest average 0/1-cost OT value any student can reach.
    """
    m = _np(masses).reshape(-1)
    if m.size == 0 or not np.isfinite(m).all() or (m < -1e-9).any() or (m > 1 + 1e-9).any():
        raise ValueError("masses must be a non-empty array of probabilities in [0, 1]")
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.hist(m, bins=bins, range=(0, 1), color=TEACHER_COLOUR, alpha=0.8)
    ax.axvline(m.mean(), color="k", ls="--", lw=1, label=f"mean {m.mean():.3f}")
    ax.set_xlabel("teacher's probability on strings the student's vocabulary also has")
    ax.set_ylabel("positions")
    ax.set_title(f"{m.size:,} next-token predictions of the teacher on held-out text")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
