"""Static figures for notebook 04: a sentence's two tokenizations with their groups, and what each loss compares.

- :func:`plot_span_groups`: teacher tokens above student tokens on a common byte axis, one box per
  group (:mod:`uldviz.alignment.spans`), tokens whose string both vocabularies contain filled green;
- :func:`plot_group_losses`: at one group, the two chunk probabilities (ALM), the merged
  distributions on shared strings (hybrid's divergence part) and the sorted remainders (its ULD part).

Functions return a :class:`matplotlib.figure.Figure`; the caller displays and closes it. No widgets here.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from uldviz.alignment.text import TextAlignment
from uldviz.viz.plots.training import LABEL_PT, STRIP_WIDTH
from uldviz.viz.plots.vocab import STUDENT_COLOUR, TEACHER_COLOUR
from uldviz.vocab.shared import SharedVocab

__all__ = ["token_label", "shared_flags", "plot_span_groups", "plot_group_losses", "SHARED_COLOUR"]

#: Fill of a token whose surface string both vocabularies contain.
SHARED_COLOUR = "#b7e4c7"
_PLAIN = "#f4f4f4"
_GROUP_FILLS = ("#e8f0fe", "#fdf2e0")
_SELECTED = "#d62728"


def token_label(raw: bytes) -> str:
    """A token's bytes as readable text (see :func:`_visible`); bytes of a split character in hex ('c3 a9')."""
    if not _is_text(raw):
        return " ".join(f"{b:02x}" for b in raw)
    return _visible(raw.decode("utf-8"))


def _is_text(raw: bytes) -> bool:
    """Whether ``raw`` is whole UTF-8 characters (not part of a split one)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def shared_flags(ids, shared: SharedVocab | None, side: str) -> list[bool]:
    """For each id of a row, whether it is one of the shared strings (``side`` 'student' or 'teacher')."""
    if shared is None:
        return [False] * len(ids)
    if side not in ("student", "teacher"):
        raise ValueError(f"side must be 'student' or 'teacher', got {side!r}")
    pool = set((shared.student_ids if side == "student" else shared.teacher_ids).tolist())
    return [int(i) in pool for i in ids]


def _lines(view: TextAlignment, line_bytes: int) -> list[tuple[int, list[int]]]:
    """Groups wrapped into lines of about ``line_bytes`` bytes: [(first byte of the line, [group indices])]."""
    lines: list[tuple[int, list[int]]] = []
    for g in range(view.num_groups):
        lo, hi = view.group_bytes(g)
        if not lines or (hi - lines[-1][0] > line_bytes and lines[-1][1]):
            lines.append((lo, []))
        lines[-1][1].append(g)
    return lines


def plot_span_groups(view: TextAlignment, *, shared: SharedVocab | None = None, selected: int | None = None,
                   names=("teacher", "student"), line_bytes: int = 32, width: float = STRIP_WIDTH,
                   fontsize: float = LABEL_PT):
    """Teacher tokens (top row) and student tokens (bottom row) of each group, on the text's byte axis.

    Each group is a shaded box around its tokens on both rows (its number below); a token is green
    when both vocabularies contain its string, dashed when it holds only part of a character. The
    ``selected`` group is outlined in red. Lines of about ``line_bytes`` bytes in a figure ``width`` inches wide
    leave room for labels of ``fontsize`` points (shown unscaled at 100 dpi). The figure records
    ``fig.uldviz_groups`` (group, first byte, last byte, line), ``fig.uldviz_tokens`` ({side: [(row index, label,
    shared)]}) and ``fig.uldviz_labels`` (the token label artists).
    """
    if not isinstance(view, TextAlignment):
        raise TypeError(f"view must be a TextAlignment (see align_text), got {type(view).__name__}")
    if selected is not None:
        view._check(selected)
    raw = view.text.encode("utf-8")
    lines = _lines(view, line_bytes)
    rows = {"teacher": (view.teacher_ids, view.teacher_spans), "student": (view.student_ids, view.student_spans)}
    flags = {side: shared_flags(rows[side][0], shared, side) for side in rows}
    fig, ax = plt.subplots(figsize=(width, 0.45 + 1.4 * max(1, len(lines))))
    fig.uldviz_groups, fig.uldviz_tokens, fig.uldviz_labels = [], {"teacher": [], "student": []}, []
    span_max = max([view.group_bytes(g)[1] - start for start, gs in lines for g in gs] + [1])
    groups = view.groups  # built from the alignment tensors: once, not once per group
    for li, (start, gs) in enumerate(lines):
        y0 = -li * 3.0
        for g in gs:
            lo, hi = view.group_bytes(g)
            (s0, s1), (t0, t1) = groups[g]
            is_sel = g == selected
            ax.add_patch(Rectangle((lo - start, y0 - 0.15), hi - lo, 2.3, facecolor=_GROUP_FILLS[g % 2],
                                   edgecolor=_SELECTED if is_sel else "#888", lw=2.2 if is_sel else 0.6, zorder=1))
            ax.text((lo + hi) / 2 - start, y0 - 0.35, str(g), ha="center", va="top", fontsize=fontsize - 1,
                    color=_SELECTED if is_sel else "#555")
            fig.uldviz_groups.append((g, lo, hi, li))
            for side, a, b, y in (("teacher", t0, t1, y0 + 1.1), ("student", s0, s1, y0)):
                ids, spans = rows[side]
                for i in range(a, b):
                    bs, be = spans[i]
                    label = token_label(raw[bs:be])
                    partial = not _is_text(raw[bs:be])
                    ax.add_patch(Rectangle((bs - start + 0.05, y + 0.05), max(be - bs, 0.3) - 0.1, 0.9,
                                           facecolor=SHARED_COLOUR if flags[side][i] else _PLAIN,
                                           edgecolor=TEACHER_COLOUR if side == "teacher" else STUDENT_COLOUR,
                                           ls="--" if partial else "-", lw=0.8, zorder=2))
                    fig.uldviz_labels.append(ax.text((bs + be) / 2 - start, y + 0.5, label, ha="center",
                                                     va="center", fontsize=fontsize, family="monospace", zorder=3))
                    fig.uldviz_tokens[side].append((i, label, flags[side][i]))
        ax.text(-0.5, y0 + 1.6, names[0], ha="right", va="center", fontsize=fontsize, color=TEACHER_COLOUR)
        ax.text(-0.5, y0 + 0.5, names[1], ha="right", va="center", fontsize=fontsize, color=STUDENT_COLOUR)
    ax.set_xlim(-7, span_max + 0.5)
    ax.set_ylim(-3.0 * (len(lines) - 1) - 0.9, 2.35)
    ax.axis("off")
    n_shared = sum(f for _, _, f in fig.uldviz_tokens["student"]) + sum(f for _, _, f in fig.uldviz_tokens["teacher"])
    title = (f"{view.num_groups} groups; green: a string both vocabularies contain ({n_shared} tokens);\n"
             "dashed, in hex: bytes of a character split over tokens")
    if selected is not None:
        title += f"; red: group {selected}"
    ax.set_title(title, fontsize=fontsize)
    fig.tight_layout()
    return fig


def _visible(s: str) -> str:
    """Spaces, newlines and tabs made visible; characters past the BMP (emoji, which the fonts lack) as U+XXXX."""
    s = s.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")
    return "".join(f"U+{ord(c):X}" if ord(c) > 0xFFFF else c for c in s)


def plot_group_losses(teacher_logprobs, student_logprobs, shared: SharedVocab, *, teacher_ll: float,
                      student_ll: float, tau: float = 100.0, top_k: int = 8, title: str = "", width: float = 11.0):
    """What each loss compares at one group, in three panels.

    Left (ALM): the teacher's and the student's probability of the group's text and their
    :math:`p^{1/\\tau}`. Middle (hybrid, divergence part): the merged distributions (1-D log-probs,
    see :func:`uldviz.maths.identity.merged_group_logprobs`) on the ``top_k`` shared strings the teacher finds
    likeliest, side by side. Right (hybrid, ULD part): the first ``top_k`` ranks of the sorted unshared
    remainders. Both on a log axis: a merged student row can sit orders of magnitude below the teacher's and must
    still show. ``fig.uldviz_panels`` records the numbers drawn and the axis range ``ylim``.
    """
    lt = torch.as_tensor(teacher_logprobs, dtype=torch.float64).detach().reshape(-1)
    ls = torch.as_tensor(student_logprobs, dtype=torch.float64).detach().reshape(-1)
    if not isinstance(shared, SharedVocab):
        raise TypeError(f"shared must be a SharedVocab, got {type(shared).__name__}")
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    p, q = lt.exp(), ls.exp()
    fig, axes = plt.subplots(1, 3, figsize=(width, 3.2), gridspec_kw={"width_ratios": [1, 2.2, 2.2]})
    # ALM: chunk probabilities
    pt, ps = math.exp(teacher_ll), math.exp(student_ll)
    bars = axes[0].bar([0, 1], [pt, ps], color=[TEACHER_COLOUR, STUDENT_COLOUR])
    axes[0].set_yscale("log")
    axes[0].set_xticks([0, 1], ["teacher", "student"])
    for bar, v in zip(bars, (pt, ps)):
        axes[0].text(bar.get_x() + bar.get_width() / 2, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    axes[0].set_ylim(min(pt, ps) / 10, 1.5)
    axes[0].set_title(f"chunk probability (ALM)\n$p^{{1/\\tau}}$: {pt ** (1 / tau):.4f} vs {ps ** (1 / tau):.4f}",
                      fontsize=9)
    panels = {"chunk": (pt, ps)}
    # hybrid: shared strings, top-k by the teacher
    if len(shared):
        pt_sh, qs_sh = p[shared.teacher_ids], q[shared.student_ids]
        top = torch.argsort(pt_sh, descending=True)[:top_k]
        labels = [_visible(shared.strings[int(i)]) for i in top]
        x = np.arange(len(top))
        axes[1].bar(x - 0.2, pt_sh[top].numpy(), 0.4, color=TEACHER_COLOUR, label="teacher")
        axes[1].bar(x + 0.2, qs_sh[top].numpy(), 0.4, color=STUDENT_COLOUR, label="student")
        axes[1].set_xticks(x, labels, rotation=30, fontsize=8, family="monospace")
        axes[1].legend(fontsize=8)
        panels["shared"] = (labels, pt_sh[top].tolist(), qs_sh[top].tolist())
    else:
        axes[1].text(0.5, 0.5, "no shared strings", ha="center", va="center", transform=axes[1].transAxes)
        panels["shared"] = ([], [], [])
    axes[1].set_title(f"merged distributions on shared strings (top {top_k})", fontsize=9)
    # hybrid: sorted unshared remainders
    rt = torch.sort(p[shared.unshared_ids("teacher", p.numel())], descending=True).values[:top_k]
    rs = torch.sort(q[shared.unshared_ids("student", q.numel())], descending=True).values[:top_k]
    axes[2].bar(np.arange(len(rt)) - 0.2, rt.numpy(), 0.4, color=TEACHER_COLOUR, label="teacher")
    axes[2].bar(np.arange(len(rs)) + 0.2, rs.numpy(), 0.4, color=STUDENT_COLOUR, label="student")
    axes[2].set_xlabel("rank after sorting (identity lost)", fontsize=8)
    axes[2].set_title(f"sorted unshared remainders (first {top_k} ranks)", fontsize=9)
    axes[2].legend(fontsize=8)
    panels["sorted"] = (rt.tolist(), rs.tolist())
    # A merged student row carries the probabilities of its group's later tokens as a factor, so it can sit orders
    # of magnitude below the teacher's: on a linear axis its bars vanish. A log axis shows both.
    drawn = [v for v in panels["shared"][1] + panels["shared"][2] + panels["sorted"][0] + panels["sorted"][1] if v > 0]
    lo = max(min(drawn) / 30, 1e-14) if drawn else 1e-6  # the smallest bar still stands over a decade tall
    hi = min(max(drawn) * 3, 2.0) if drawn else 1.0
    for ax in axes[1:]:
        ax.set_yscale("log")
        ax.set_ylim(lo, max(hi, lo * 10))
        ax.set_ylabel("probability (log scale)", fontsize=8)
    panels["ylim"] = (lo, max(hi, lo * 10))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.uldviz_panels = panels
    fig.tight_layout()
    return fig
