"""Static matplotlib figures for notebook 03: training curves, the bits-per-byte comparison, an alignment picture.

Functions take plain data (dicts/lists, or :class:`uldviz.distill.RunResult` objects, read by
attribute or key) and return a :class:`matplotlib.figure.Figure`; the caller displays and closes
it. No widgets here: the dashboard (:mod:`uldviz.viz.widgets.dashboard`) redraws these figures.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "RUN_COLOURS",
    "plot_curves",
    "plot_bpb_comparison",
    "plot_position_pairs",
    "LABEL_PT",
    "STRIP_WIDTH",
    "token_labels",
]

#: One colour per run, stable across figures.
RUN_COLOURS = {
    "ce": "#7f7f7f",
    "uld-positional": "#ff7f0e",
    "uld-offset": "#d62728",
    "ce-same": "#9ecae1",
    "kl-same": "#1f77b4",
}


def _get(run, key):
    """Read ``key`` from a dict or an object (RunResult)."""
    return run[key] if isinstance(run, dict) else getattr(run, key)


_EXTRA = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#2ca02c"]


def _colour(name: str, i: int) -> str:
    """The run's colour: fixed for the named runs, another one for λ variants ``name@λ``."""
    return RUN_COLOURS.get(name, _EXTRA[i % len(_EXTRA)])


def _smooth(y, k: int = 9):
    """A trailing moving average, so a noisy per-step loss reads as a curve."""
    y = np.asarray(y, dtype=float)
    if len(y) < 2:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty_like(y)
    for i in range(len(y)):
        lo = max(0, i + 1 - k)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def plot_curves(runs: dict, labels: dict | None = None, teacher_bpb: float | None = None, figsize=(10, 3.6)):
    """Left: training cross-entropy per token (smoothed); right: held-out bits per byte, per run.

    ``runs`` maps a run name to anything with ``train_steps``, ``train_ce``, ``val_steps`` and
    ``val_bpb`` (a RunResult, or the dashboard's partial curves). The per-token CE of students
    with different tokenizers is not comparable; bits per byte is.
    """
    if not isinstance(runs, dict):
        raise TypeError(f"runs must be a dict of name -> curves, got {type(runs).__name__}")
    labels = labels or {}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=figsize)
    for i, (name, run) in enumerate(runs.items()):
        c = _colour(name, i)
        lab = labels.get(name, name)
        steps, ce = _get(run, "train_steps"), _get(run, "train_ce")
        if len(steps):
            ax1.plot(steps, _smooth(ce), color=c, label=lab, lw=1.5)
        vs, vb = _get(run, "val_steps"), _get(run, "val_bpb")
        if len(vs):
            ax2.plot(vs, vb, "o-", color=c, label=lab, lw=1.5, ms=3)
    if teacher_bpb is not None:
        ax2.axhline(teacher_bpb, color="k", ls=":", lw=1, label="teacher")
    ax1.set(xlabel="step", ylabel="training CE (nats / token)", title="training loss (CE part, smoothed)")
    ax2.set(xlabel="step", ylabel="bits per byte", title="held-out bits per byte (lower is better)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    if runs:  # beside the right panel, never over its curves
        ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_bpb_comparison(live: dict, shipped: dict | None = None, labels: dict | None = None, figsize=(8, 3.4)):
    """Held-out bits per byte per run: the live single-seed value and the shipped multi-seed mean ± std.

    ``live`` maps run -> bits per byte; ``shipped`` maps run -> {"mean", "std", ...} (the
    ``runs`` part of data/results/multiseed.json). Runs missing on one side are left out there.
    """
    labels = labels or {}
    names = list(dict.fromkeys(list(live) + list(shipped or {})))
    if not names:
        raise ValueError("nothing to plot: both live and shipped are empty")
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=figsize)
    w = 0.38 if shipped else 0.6
    lv = [live.get(n, np.nan) for n in names]
    ax.bar(x - (w / 2 if shipped else 0), lv, w, color=[_colour(n, i) for i, n in enumerate(names)],
           alpha=0.55, label="live run (1 seed)")
    if shipped:
        m = [shipped[n]["mean"] if n in shipped else np.nan for n in names]
        s = [shipped[n]["std"] if n in shipped else np.nan for n in names]
        ax.bar(x + w / 2, m, w, yerr=s, capsize=4, color=[_colour(n, i) for i, n in enumerate(names)],
               label="shipped (mean ± std over seeds)", edgecolor="k")
    finite = [v for v in lv + ([shipped[n]["mean"] for n in names if n in shipped] if shipped else [])
              if np.isfinite(v)]
    lo, hi = min(finite), max(finite)
    ax.set_ylim(lo - 0.15 * (hi - lo + 0.05), hi + 0.15 * (hi - lo + 0.05))
    ax.set_xticks(x, [labels.get(n, n) for n in names], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("held-out bits per byte")
    ax.set_title("lower is better")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


#: Font size (points) of the token labels of the alignment strips: at the notebooks' 100 dpi and a figure no wider
#: than :data:`STRIP_WIDTH` inches (shown unscaled), about 14 px — readable, unlike the 7 pt of a wider figure.
LABEL_PT = 10
#: Width (inches) of the alignment strips: narrow enough that a notebook shows them without shrinking.
STRIP_WIDTH = 9.0


def _strip_lines(student_spans, teacher_spans, line_chars: int) -> list[tuple[int, int]]:
    """(first, last) character of each line: lines break only where BOTH rows have a token boundary, so no token
    straddles two lines and every offset pair (two tokens ending at the same character) sits on one line."""
    ends = [{b for _, (a, b) in spans} for spans in (student_spans, teacher_spans)]
    last = max([b for _, (a, b) in list(student_spans) + list(teacher_spans)] + [1])
    common = sorted((ends[0] & ends[1]) | {last})
    lines, start, prev = [], 0, 0
    for c in common:
        if c - start > line_chars and prev > start:
            lines.append((start, prev))
            start = prev
        prev = c
    lines.append((start, last))
    return lines


def plot_position_pairs(student_spans, teacher_spans, pairs, contrast_pairs=None, title: str = "", *,
                   line_chars: int = 36, width: float = STRIP_WIDTH, fontsize: float = LABEL_PT):
    """The same text cut by two tokenizers (top: student, bottom: teacher); a line joins paired positions.

    ``*_spans`` are lists of (token string, (start, end)) in character offsets; ``pairs`` are
    (student position, teacher position). Each token is drawn over its characters (a zero-width
    eos just left of the text; tokens sharing one character, the bytes of a split character, side by side) and a
    pair's line joins the ends of the two tokens, i.e. the text read so far: offset pairs give vertical lines.
    ``contrast_pairs`` (e.g. positional pairing) are drawn dashed in red: slanted lines compare predictions of text
    starting at different characters (one that crosses to the next line stops at the line's edge). The text wraps
    into lines of about ``line_chars`` characters so that labels of ``fontsize`` points fit; ``fig.uldviz_labels``
    holds the label artists.
    """
    lines = _strip_lines(student_spans, teacher_spans, line_chars)
    span_max = max(b - a for a, b in lines)
    fig, ax = plt.subplots(figsize=(width, 0.5 + 1.45 * len(lines)))
    fig.uldviz_labels = []

    def line_of(c: int, is_end: bool = False) -> int:
        for k, (a, b) in enumerate(lines):
            if (a < c <= b) if is_end else (a <= c < b):
                return k
        return 0 if c <= lines[0][0] else len(lines) - 1

    ends = {}  # (row, token index) -> (line, x of its end)
    for row, spans, dy in (("student", student_spans, 1.0), ("teacher", teacher_spans, 0.0)):
        i = 0
        while i < len(spans):
            a, b = spans[i][1]
            j = i
            while j + 1 < len(spans) and tuple(spans[j + 1][1]) == (a, b) and b > a:
                j += 1  # tokens i..j share one character range (bytes of a split character)
            k = line_of(a) if b > a else 0
            x0 = (a - lines[k][0]) if b > a else -4.0
            x1 = (b - lines[k][0]) if b > a else -0.5
            step = (x1 - x0) / (j - i + 1)
            y = dy - 2.4 * k
            for m in range(i, j + 1):
                lo, hi = x0 + (m - i) * step, x0 + (m - i + 1) * step
                ax.add_patch(plt.Rectangle((lo, y - 0.2), hi - lo, 0.4, fill=True, alpha=0.25,
                                           color="C1" if row == "student" else "C0", ec="k", lw=0.5))
                ends[(row, m)] = (k, hi if b > a else -0.5)
            # characters outside the Basic Multilingual Plane (emoji) are missing from the default font
            label = "".join(c if ord(c) < 0x10000 else "☺" for c in spans[i][0].replace("\n", "⏎"))
            if j > i:  # one character in j - i + 1 byte tokens: the character once, and how many tokens
                label = f"{label.split('[')[0]}×{j - i + 1}"
            turn = 90 if len(label) > 1.6 * (x1 - x0) else 0
            fig.uldviz_labels.append(ax.text((x0 + x1) / 2, y, label, ha="center", va="center",
                                             fontsize=fontsize if not turn else fontsize - 1, rotation=turn))
            i = j + 1
    for k in range(len(lines)):
        for row, dy in (("student", 1.0), ("teacher", 0.0)):
            ax.text(-5, dy - 2.4 * k, row, ha="right", va="center", fontsize=fontsize)

    def join(s, t, **style):
        (ks, xs), (kt, xt) = ends[("student", s)], ends[("teacher", t)]
        y_s, y_t = 0.8 - 2.4 * ks, 0.2 - 2.4 * kt
        if ks != kt:  # crosses a line break: a stub to the edge of the student's line
            xt, y_t = (span_max + 0.5 if kt > ks else 0.0), 0.5 - 2.4 * ks
        ax.plot([xs, xt], [y_s, y_t], **style)

    for s, t in contrast_pairs or []:
        join(s, t, color="#d62728", lw=0.9, ls="--", alpha=0.7)
    for s, t in pairs:
        join(s, t, color="k", lw=1.0, alpha=0.8)
    ax.set_xlim(-12, span_max + 1)
    ax.set_ylim(-2.4 * (len(lines) - 1) - 0.45, 1.45)
    ax.axis("off")
    default = "black: offset pairs" + (" · red dashed: positional pairs" if contrast_pairs else "")
    ax.set_title(title or default, fontsize=fontsize)
    fig.tight_layout()
    return fig


def token_labels(text: str, offsets) -> list[str]:
    """Readable token strings from (start, end) character offsets into ``text``.

    A zero-width token (eos, offsets (0, 0)) reads ``⟨eos⟩``; consecutive tokens sharing one
    character range (the bytes of a multi-byte UTF-8 character in a byte-level tokenizer) read
    ``é[1/2]``, ``é[2/2]``; spaces are shown as ``␣`` and newlines as ``⏎``.
    """
    spans = [tuple(int(v) for v in o) for o in offsets]
    out = []
    i = 0
    while i < len(spans):
        a, b = spans[i]
        j = i
        while j + 1 < len(spans) and spans[j + 1] == (a, b) and b > a:
            j += 1
        piece = text[a:b].replace(" ", "␣").replace("\n", "⏎")
        if b == a:
            out.append("⟨eos⟩")
        elif j == i:
            out.append(piece)
        else:
            out += [f"{piece}[{k + 1}/{j - i + 1}]" for k in range(j - i + 1)]
        i = j + 1
    return out
