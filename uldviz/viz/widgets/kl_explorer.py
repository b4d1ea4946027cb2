"""The KL explorer of notebook 01: sliders for a teacher and a student over different vocabularies.

Moving a slider renormalises the other sliders of the same side (the probabilities always sum
to 1), then redraws the two bar charts and recomputes KL on the aligned labels (the raw torch
value: inf or NaN), the three KL patches and ULD. Works with ipywidgets 7.7 and 8; the last
numbers are kept as attributes so tests can drive the widget from Python.
"""

from __future__ import annotations

import html
import io
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import Image, display

from uldviz.maths.patches import (
    aligned_kl,
    blind_id_kl,
    check_distribution,
    format_value,
    intersection_kl,
    normalise,
    smoothed_kl,
    toy_pair,
    uld,
)
from uldviz.viz.plots.vocab import plot_distributions

__all__ = ["KLExplorer", "rebalance"]

#: CSS classes a browser test looks for.
TEACHER_SLIDER_CLASS = "uldviz-teacher-slider"
STUDENT_SLIDER_CLASS = "uldviz-student-slider"
READOUT_CLASS = "uldviz-kl-readout"
PLOT_CLASS = "uldviz-kl-plot"


def _explain_raw(kl: float) -> str:
    """One line on why the raw torch KL is what it is."""
    if math.isnan(kl):
        return "NaN: a label both give 0, torch computes 0·(−∞)"
    if math.isinf(kl):
        return "inf: the teacher has mass on a token the student lacks, log 0 = −∞"
    return "finite: every teacher token has student mass"


def rebalance(values: dict[str, float], moved: str) -> dict[str, float]:
    """Keep ``values[moved]`` and rescale the others so that everything sums to 1.

    The others keep their proportions; if they are all 0 they share the rest equally. This is
    what the sliders do, so a probability of exactly 0 or 1 is always reachable.
    """
    if moved not in values:
        raise ValueError(f"{moved!r} is not one of the tokens {list(values)}")
    v = min(max(float(values[moved]), 0.0), 1.0)
    others = [t for t in values if t != moved]
    out = {moved: v}
    if not others:
        out[moved] = 1.0
        return out
    rest = 1.0 - v
    total = sum(max(float(values[t]), 0.0) for t in others)
    for t in others:
        out[t] = rest * max(float(values[t]), 0.0) / total if total > 0 else rest / len(others)
    return {t: out[t] for t in values}


class KLExplorer:
    """Teacher and student sliders, their bar charts, and KL / KL patches / ULD updating live.

    Attributes after every update: ``teacher_probs``, ``student_probs`` (dicts), ``kl`` (the raw
    aligned-label KL, may be inf/NaN), ``smoothed_kl``, ``intersection_kl``, ``blind_id_kl``,
    ``uld`` (floats; NaN where a patch is undefined), ``readout_text`` (the HTML shown) and
    ``n_updates``, and ``last_png`` (the plot's PNG bytes, when ``draw``). Display it with ``display(explorer.ui)``.
    """

    def __init__(self, teacher=None, student=None, *, eps: float = 1e-6, step: float = 0.01, draw: bool = True):
        t0, s0 = toy_pair()
        teacher = check_distribution(t0 if teacher is None else teacher, "teacher")
        student = check_distribution(s0 if student is None else student, "student")
        self.draw = draw
        self._busy = False
        self.n_updates = 0
        self.last_png = b""
        self.teacher_sliders = self._sliders(teacher, "teacher", TEACHER_SLIDER_CLASS, step)
        self.student_sliders = self._sliders(student, "student", STUDENT_SLIDER_CLASS, step)
        self.eps_slider = widgets.FloatLogSlider(
            value=eps, base=10, min=-16, max=-1, step=0.5, description="ε (patch a)",
            continuous_update=False, readout_format=".0e",
        )
        self.eps_slider.add_class("uldviz-eps-slider")
        self.readout = widgets.HTML()
        self.readout.add_class(READOUT_CLASS)
        self.plot = widgets.Output()
        self.plot.add_class(PLOT_CLASS)
        for side, sliders in (("teacher", self.teacher_sliders), ("student", self.student_sliders)):
            for tok, sl in sliders.items():
                sl.observe(self._make_handler(side, tok), names="value")
        self.eps_slider.observe(lambda change: self.update(), names="value")
        self.ui = widgets.VBox([
            widgets.HBox([
                widgets.VBox([widgets.HTML("<b>teacher</b>")] + list(self.teacher_sliders.values())),
                widgets.VBox([widgets.HTML("<b>student</b>")] + list(self.student_sliders.values())),
            ]),
            self.eps_slider,
            self.readout,
            self.plot,
        ])
        self.ui.add_class("uldviz-kl-explorer")
        self.update()

    # ------------------------------------------------------------------ building
    @staticmethod
    def _sliders(dist: dict[str, float], side: str, css: str, step: float) -> dict[str, widgets.FloatSlider]:
        """One FloatSlider in [0, 1] per token, tagged with the side's CSS class."""
        out = {}
        for tok, val in dist.items():
            sl = widgets.FloatSlider(value=val, min=0.0, max=1.0, step=step, description=tok,
                                     continuous_update=False, readout_format=".2f")
            sl.add_class(css)
            sl.add_class(f"{css}-{tok}")
            out[tok] = sl
        return out

    def _make_handler(self, side: str, tok: str):
        """The observer of one slider: renormalise its side, then recompute everything."""
        def handler(change):
            if self._busy:
                return
            sliders = self.teacher_sliders if side == "teacher" else self.student_sliders
            values = rebalance({t: s.value for t, s in sliders.items()}, tok)
            self._busy = True
            try:
                for t, s in sliders.items():
                    if t != tok:
                        s.value = values[t]
            finally:
                self._busy = False
            self.update()
        return handler

    # ------------------------------------------------------------------ state
    def _probs(self, sliders) -> dict[str, float]:
        """The sliders' values as an exactly normalised distribution."""
        return normalise({t: s.value for t, s in sliders.items()})

    def set_probs(self, side: str, dist: dict[str, float]) -> None:
        """Set all sliders of one side at once (``side`` is 'teacher' or 'student'), then update once."""
        if side not in ("teacher", "student"):
            raise ValueError(f"side must be 'teacher' or 'student', got {side!r}")
        sliders = self.teacher_sliders if side == "teacher" else self.student_sliders
        d = check_distribution(dist, side)
        if set(d) != set(sliders):
            raise ValueError(f"{side} tokens must be {list(sliders)}, got {list(d)}")
        self._busy = True
        try:
            for t, s in sliders.items():
                s.value = d[t]
        finally:
            self._busy = False
        self.update()

    @staticmethod
    def _safe(fn, *args) -> tuple[float, str]:
        """A patch's value and a note; NaN and the reason when the patch is undefined (e.g. no shared mass)."""
        try:
            return float(fn(*args)), ""
        except ValueError as exc:
            return math.nan, f"undefined: {exc}"

    def update(self) -> None:
        """Recompute every number from the sliders, refresh the readout and redraw the plot."""
        p = self._probs(self.teacher_sliders)
        q = self._probs(self.student_sliders)
        eps = float(self.eps_slider.value)
        self.teacher_probs, self.student_probs = p, q
        self.kl = float(aligned_kl(p, q))
        self.smoothed_kl = smoothed_kl(p, q, eps)
        self.intersection_kl, note_b = self._safe(intersection_kl, p, q)
        self.blind_id_kl, note_c = self._safe(blind_id_kl, p, q)
        self.uld = uld(p, q)
        rows = [
            ("KL on aligned labels (raw torch <code>F.kl_div</code>)", self.kl, _explain_raw(self.kl)),
            (f"(a) KL after ε-smoothing, ε = {eps:.0e}", self.smoothed_kl, "depends on ε"),
            ("(b) KL on the shared tokens only, renormalised", self.intersection_kl, note_b),
            ("(c) KL matching token ids blindly", self.blind_id_kl, note_c),
            ("<b>ULD</b> (sorted, zero-padded L1)", self.uld, "no shared vocabulary needed"),
        ]
        body = "".join(
            f"<tr><td style='padding-right:1em'>{name}</td>"
            f"<td class='uldviz-value' style='font-family:monospace;text-align:right;padding-right:1em'>"
            f"{'—' if note.startswith('undefined') else format_value(v)}</td>"
            f"<td style='color:#666;font-size:90%'>{html.escape(note)}</td></tr>"
            for name, v, note in rows
        )
        self.readout_text = f"<table>{body}</table>"
        self.readout.value = self.readout_text
        self.n_updates += 1
        if self.draw:
            self.redraw()

    def redraw(self) -> None:
        """Draw the two bar charts (each on its own vocabulary) as a PNG inside the Output widget.

        A PNG (kept in ``last_png``) shows whatever the matplotlib backend is, also under Agg.
        """
        fig = plot_distributions(self.teacher_probs, self.student_probs, figsize=(7, 2.6))
        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        finally:
            plt.close(fig)
        self.last_png = buf.getvalue()
        with self.plot:
            self.plot.clear_output(wait=True)
            display(Image(data=self.last_png, format="png"))

    def _ipython_display_(self):
        """Displaying the explorer displays its widget tree."""
        display(self.ui)
