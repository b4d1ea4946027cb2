"""Widgets for notebook 02: the Sinkhorn-regularisation explorer and the temperature / top-k explorer.

Both keep their inputs and the last computed numbers as attributes (so tests can drive them from
Python: set ``slider.value``, read ``value``/``rel_error``...), redraw static matplotlib figures
from :mod:`uldviz.viz.plots.transport` inside an ``Output``, and use only ipywidgets present in 7.7 and 8.
Show one with ``display(explorer.widget)``.
"""

from __future__ import annotations

import warnings

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from uldviz.maths import transport as uot
from uldviz.maths.losses import (
    large_temperature_limit,
    softmax_probs,
    temperature_curve,
    uld_distance,
    uld_topk_distance,
)
from uldviz.viz.plots import transport as tplots

__all__ = ["SinkhornExplorer", "TemperatureTopkExplorer"]


def _show(out: W.Output, fig) -> None:
    """Replace what ``out`` shows by ``fig`` and close the figure (no ipympl needed)."""
    with out:
        out.clear_output(wait=True)
        display(fig)
    plt.close(fig)


def _sorted_plan(plan, p, q) -> np.ndarray:
    """A plan between padded p (rows) and q (columns) re-ordered so both sides are sorted descending."""
    plan = np.asarray(plan)
    pp = np.pad(np.asarray(p, dtype=float), (0, plan.shape[0] - len(p)))
    qq = np.pad(np.asarray(q, dtype=float), (0, plan.shape[1] - len(q)))
    return plan[np.ix_(np.argsort(-pp, kind="stable"), np.argsort(-qq, kind="stable"))]


class SinkhornExplorer:
    """A reg slider for entropic OT on ULD's problem: Sinkhorn's value and plan against the exact ones.

    Attributes after each update: ``reg``, ``value`` (N · sinkhorn2), ``exact_value`` (ULD),
    ``rel_error``, ``plan``/``exact_plan`` (sorted order), ``warnings`` (POT's, e.g. not converged).
    """

    def __init__(self, p, q, reg: float = 0.05, *, reg_min: float = 1e-3, reg_max: float = 1.0,
                 curve_points: int = 13, num_itermax: int = 2000, draw: bool = True):
        """Set up the problem for probability vectors p (teacher) and q (student); compute the exact plan once."""
        self.p = np.asarray(p, dtype=np.float64)
        self.q = np.asarray(q, dtype=np.float64)
        self.num_itermax = int(num_itermax)
        self.exact_value = float(uot.uld_emd(self.p, self.q))
        # the sorted pairing is an exact optimum (POT may return another one with the same value)
        self.exact_plan = _sorted_plan(uot.sorted_plan(self.p, self.q), self.p, self.q)
        self.draw = draw
        self.curve_regs = np.geomspace(reg_min, reg_max, curve_points)
        self.curve_values = np.array([self._solve(r)[0] for r in self.curve_regs])
        self.slider = W.FloatLogSlider(value=reg, base=10, min=np.log10(reg_min), max=np.log10(reg_max),
                                       step=0.05, description="reg", continuous_update=False,
                                       readout_format=".3g")
        self.slider.add_class("uldviz-sinkhorn-reg")
        self.readout = W.HTML()
        self.readout.add_class("uldviz-sinkhorn-values")
        self.out = W.Output()
        self.widget = W.VBox([self.slider, self.readout, self.out])
        self.widget.add_class("uldviz-sinkhorn")
        self.slider.observe(self.update, names="value")
        self.update()

    def _ipython_display_(self):
        """Displaying the explorer displays its widget tree."""
        display(self.widget)

    def _solve(self, reg: float):
        """Sinkhorn value, plan and warnings at one reg."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = uot.uld_sinkhorn(self.p, self.q, reg, return_plan=True, num_itermax=self.num_itermax)
        found = tuple(str(w.message) for w in caught if issubclass(w.category, uot.OTWarning))
        return float(res.value), res.plan, found

    def update(self, change=None) -> None:
        """Recompute Sinkhorn at the slider's reg and redraw."""
        self.reg = float(self.slider.value)
        self.value, plan, self.warnings = self._solve(self.reg)
        self.plan = _sorted_plan(plan, self.p, self.q)
        self.rel_error = abs(self.value - self.exact_value) / self.exact_value
        note = " (Sinkhorn stopped before converging)" if self.warnings else ""
        self.readout.value = (
            f"exact ULD = <b>{self.exact_value:.5f}</b> &nbsp; N·sinkhorn2 = <b>{self.value:.5f}</b> "
            f"&nbsp; relative error = <b>{100 * self.rel_error:.1f} %</b>{note}"
        )
        if self.draw:
            fig = tplots.plot_sinkhorn_vs_exact(
                self.exact_plan, self.plan, reg=self.reg, exact_value=self.exact_value,
                sinkhorn_value=self.value, regs=self.curve_regs, values=self.curve_values,
            )
            _show(self.out, fig)


class TemperatureTopkExplorer:
    """Sliders for the student/teacher temperatures and for top_k in top-k ULD, with their effect on the value.

    The curves come from :func:`uldviz.maths.losses.temperature_curve` and
    :func:`uldviz.maths.losses.uld_topk_distance`.
    Attributes after each update: ``student_temperature``, ``teacher_temperature``, ``top_k``, ``uld``
    (full value), ``uld_topk_tail`` / ``uld_topk_plain`` (with / without the tail term) and their
    relative errors ``err_tail`` / ``err_plain``; ``limit`` is the τ → ∞ value 2(1 − m/n).
    """

    def __init__(self, student_logits, teacher_logits, *, temperature: float = 1.0, top_k: int = 100,
                 curve_temps=None, curve_ks=None, draw: bool = True):
        """Take 1-D student and teacher logits (vocabulary sizes may differ); precompute the curves once."""
        self.s = torch.as_tensor(student_logits, dtype=torch.float64).reshape(-1)
        self.t = torch.as_tensor(teacher_logits, dtype=torch.float64).reshape(-1)
        self.n_student, self.n_teacher = self.s.numel(), self.t.numel()
        self.limit = large_temperature_limit(self.n_student, self.n_teacher)
        self.draw = draw
        self.curve_temps = np.geomspace(0.02, 1000, 60) if curve_temps is None else np.asarray(curve_temps)
        self.curve_values = temperature_curve(self.s, self.t, self.curve_temps)
        big = max(self.n_student, self.n_teacher)
        if curve_ks is None:
            curve_ks = np.unique(np.geomspace(1, big, 14).astype(int))
        self.curve_ks = np.asarray(curve_ks, dtype=int)
        self.s_temp = W.FloatLogSlider(value=temperature, base=10, min=-1.5, max=3, step=0.05,
                                       description="student τ", continuous_update=False, readout_format=".3g")
        self.t_temp = W.FloatLogSlider(value=temperature, base=10, min=-1.5, max=3, step=0.05,
                                       description="teacher τ", continuous_update=False, readout_format=".3g")
        self.top_k_slider = W.IntSlider(value=min(top_k, big), min=1, max=big, description="top-k",
                                    continuous_update=False)
        self.s_temp.add_class("uldviz-student-temperature")
        self.t_temp.add_class("uldviz-teacher-temperature")
        self.top_k_slider.add_class("uldviz-topk")
        self.readout = W.HTML()
        self.readout.add_class("uldviz-temperature-values")
        self.out = W.Output()
        self.widget = W.VBox([W.HBox([self.s_temp, self.t_temp]), self.top_k_slider, self.readout, self.out])
        self.widget.add_class("uldviz-temperature-topk")
        for w in (self.s_temp, self.t_temp, self.top_k_slider):
            w.observe(self.update, names="value")
        self.update()

    def _ipython_display_(self):
        """Displaying the explorer displays its widget tree."""
        display(self.widget)

    def _errors_over_k(self, p, q):
        """Relative errors of top-k with/without tail over ``curve_ks`` at the current temperatures."""
        full = float(uld_distance(q, p))
        tail = np.array([float(uld_topk_distance(q, p, int(k), tail=True)) for k in self.curve_ks])
        plain = np.array([float(uld_topk_distance(q, p, int(k), tail=False)) for k in self.curve_ks])
        return np.abs(full - tail) / full, np.abs(full - plain) / full

    def update(self, change=None) -> None:
        """Recompute the values at the sliders' temperatures and k, and redraw."""
        self.student_temperature = float(self.s_temp.value)
        self.teacher_temperature = float(self.t_temp.value)
        self.top_k = int(self.top_k_slider.value)
        q = softmax_probs(self.s, self.student_temperature)
        p = softmax_probs(self.t, self.teacher_temperature)
        self.uld = float(uld_distance(q, p))
        self.uld_topk_tail = float(uld_topk_distance(q, p, self.top_k, tail=True))
        self.uld_topk_plain = float(uld_topk_distance(q, p, self.top_k, tail=False))
        denom = self.uld if self.uld > 0 else float("nan")
        self.err_tail = abs(self.uld - self.uld_topk_tail) / denom
        self.err_plain = abs(self.uld - self.uld_topk_plain) / denom
        self.readout.value = (
            f"ULD = <b>{self.uld:.5f}</b> &nbsp; top-{self.top_k} + tail = <b>{self.uld_topk_tail:.5f}</b> "
            f"({100 * self.err_tail:.2f} % off) &nbsp; top-{self.top_k} truncated = <b>{self.uld_topk_plain:.5f}</b> "
            f"({100 * self.err_plain:.2f} % off) &nbsp; τ→∞ limit = {self.limit:.4f}"
        )
        if self.draw:
            same_t = abs(self.student_temperature - self.teacher_temperature) < 1e-12
            fig1 = tplots.plot_temperature_curve(
                self.curve_temps, self.curve_values, limit=self.limit,
                current=self.student_temperature if same_t else None, current_value=self.uld if same_t else None,
            )
            if self.uld > 0:
                e_tail, e_plain = self._errors_over_k(p, q)
                fig2 = tplots.plot_topk_error(self.curve_ks, e_tail, e_plain, current=self.top_k)
            else:
                fig2 = None
            with self.out:
                self.out.clear_output(wait=True)
                display(fig1)
                if fig2 is not None:
                    display(fig2)
            plt.close(fig1)
            if fig2 is not None:
                plt.close(fig2)
