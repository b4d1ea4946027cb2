"""The live training dashboard of notebook 03: curves of every run, a progress bar, a stop button, the final table.

:class:`DistillDashboard` trains the runs one after the other (:func:`uldviz.distill.train`)
and is their callback: each step moves the progress bar, each evaluation redraws the static
matplotlib curves (:func:`uldviz.viz.plots.training.plot_curves`) inside an ``ipywidgets.Output``.
The stop button sets the run's :class:`~uldviz.distill.StopFlag`: the run ends after its current
step, keeps its curve and is scored as it is; the next run then starts. While a cell is busy,
clicks reach the kernel through ``jupyter_ui_poll`` when it is installed.

``static=True`` (or no ipywidgets) uses plain IPython display handles instead of widgets:
the same figures and table, updated in place; interrupting the kernel stops the current run.
Works with ipywidgets 7.7 and 8. Its state (curves, results, last table) are attributes, so
tests drive it from Python.
"""

from __future__ import annotations

import html
import time

import matplotlib.pyplot as plt
from IPython.display import HTML, display

from uldviz.distill import DEFAULT_RUNS, DistillConfig, StopFlag, run_config, run_label, train
from uldviz.viz.plots.training import plot_curves

__all__ = ["DistillDashboard", "DASHBOARD_CLASS", "STOP_CLASS"]

#: CSS classes a browser test looks for.
DASHBOARD_CLASS = "uldviz-dashboard"
STOP_CLASS = "uldviz-stop"
PROGRESS_CLASS = "uldviz-progress"
TABLE_CLASS = "uldviz-results"


class _UIPoller:
    """Lets button clicks reach a busy kernel (``jupyter_ui_poll``); does nothing outside a kernel."""

    def __init__(self, every_s: float = 0.2):
        self.every_s = every_s
        self._last = 0.0
        try:
            from IPython import get_ipython
            from jupyter_ui_poll import ui_events

            shell = get_ipython()
            self._ui_events = ui_events if shell is not None and getattr(shell, "kernel", None) is not None else None
        except Exception:  # noqa: BLE001 - optional: no kernel or package means no polling
            self._ui_events = None

    def __call__(self) -> None:
        """Process pending widget events (at most every ``every_s`` seconds)."""
        if self._ui_events is None or time.perf_counter() - self._last < self.every_s:
            return
        self._last = time.perf_counter()
        try:
            with self._ui_events() as poll:
                poll(20)
        except Exception:  # noqa: BLE001 - a polling failure must never break training
            self._ui_events = None


class DistillDashboard:
    """Train ``runs`` on ``setup`` one after the other, showing curves, progress, a stop button and a table."""

    def __init__(self, setup, runs=DEFAULT_RUNS, base: DistillConfig | None = None, seed: int = 0,
                 static: bool | None = None, redraw_every_s: float = 0.0, keep_models: bool = False):
        self.setup = setup
        self.keep_models = keep_models
        self.runs = list(runs)
        if not self.runs:
            raise ValueError("runs is empty: give at least one run name (see uldviz.distill.RUNS)")
        self.configs = {name: run_config(name, base or DistillConfig(), seed=seed) for name in self.runs}
        self.total_steps = sum(c.steps for c in self.configs.values())
        self.stop_flag = StopFlag()
        self.curves = {name: {"train_steps": [], "train_ce": [], "val_steps": [], "val_bpb": []} for name in self.runs}
        self.results: dict = {}
        self.current: str | None = None
        self.steps_done = 0
        self.redraws = 0
        self.last_plot: dict = {}
        self.redraw_every_s = redraw_every_s
        self._last_draw = 0.0
        self.teacher_bpb = None
        self.last_table_html = ""
        self.running = False
        self._poll = _UIPoller()
        if static is None:
            try:
                import ipywidgets  # noqa: F401
                static = False
            except ImportError:
                static = True
        self.static = static
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        """Widgets (or display handles in static mode)."""
        if self.static:
            self.widget = None
            self._plot_handle = self._text_handle = self._table_handle = None
            return
        import ipywidgets as w

        self.progress = w.IntProgress(value=0, min=0, max=self.total_steps, description="steps")
        self.progress.add_class(PROGRESS_CLASS)
        self.status = w.HTML(value="ready")
        self.stop_button = w.Button(description="Stop this run", button_style="danger", icon="stop",
                                    tooltip="end the current run now, keep its curve, go on with the next")
        self.stop_button.add_class(STOP_CLASS)
        self.stop_button.on_click(self.stop)
        self.plot_out = w.Output()
        self.table = w.HTML(value="")
        self.table.add_class(TABLE_CLASS)
        self.widget = w.VBox([w.HBox([self.progress, self.stop_button]), self.status, self.plot_out, self.table])
        self.widget.add_class(DASHBOARD_CLASS)

    def _ipython_display_(self):
        """Show the dashboard (the widget box, or the static handles)."""
        if self.static:
            self._text_handle = display(HTML("<i>ready</i>"), display_id=True)
            self._plot_handle = display(HTML(""), display_id=True)
            self._table_handle = display(HTML(""), display_id=True)
        else:
            display(self.widget)

    # ------------------------------------------------------------------ actions
    def stop(self, *_):
        """Stop the current run after its step (the button's handler); its curve is kept. Outside :meth:`run`
        (before it starts, or once every run is done) there is nothing to stop: a click changes nothing."""
        if not self.running:
            return
        self.stop_flag.set()
        self._set_status(f"stopping <b>{html.escape(run_label(self.current or ''))}</b> after this step…")

    def _set_status(self, text: str) -> None:
        """Show one status line."""
        if not self.static:
            self.status.value = text
        elif self._text_handle is not None:
            self._text_handle.update(HTML(text))

    def callback(self, event: dict) -> None:
        """The training loop's callback: record the event, move the bar, redraw on evaluations."""
        name = event["name"]
        curve = self.curves.setdefault(name, {"train_steps": [], "train_ce": [], "val_steps": [], "val_bpb": []})
        kind = event["type"]
        if kind == "start":
            self.current = name
            self._set_status(f"training <b>{html.escape(run_label(name))}</b> ({event['steps']} steps)")
        elif kind == "step":
            curve["train_steps"].append(event["step"])
            curve["train_ce"].append(event["ce"])
            self.steps_done += 1
            if not self.static:
                self.progress.value = min(self.steps_done, self.total_steps)
            elif event["step"] % 10 == 0:
                self._set_status(f"training <b>{html.escape(run_label(name))}</b>: step {event['step']}/"
                                 f"{event['steps']} ({self.steps_done}/{self.total_steps} in all)")
            self._poll()
        elif kind == "eval":
            if curve["val_steps"] and curve["val_steps"][-1] == event["step"]:
                curve["val_bpb"][-1] = event["val_bpb"]
            else:
                curve["val_steps"].append(event["step"])
                curve["val_bpb"].append(event["val_bpb"])
            self.redraw()
        elif kind == "end":
            res = event["result"]
            self.results[name] = res
            # the finished run's full curve replaces the streamed one (same numbers)
            self.curves[name] = {"train_steps": list(res.train_steps), "train_ce": list(res.train_ce),
                                 "val_steps": list(res.val_steps), "val_bpb": list(res.val_bpb)}
            self.redraw(force=True)
            self._update_table()

    def redraw(self, force: bool = False) -> None:
        """Redraw the curves figure inside the Output (or the static display handle)."""
        now = time.perf_counter()
        if not force and now - self._last_draw < self.redraw_every_s:
            return
        self._last_draw = now
        fig = plot_curves(self.curves, labels={n: run_label(n) for n in self.curves}, teacher_bpb=self.teacher_bpb)
        # what the figure shows, kept for tests: the validation points drawn per run
        self.last_plot = {name: len(c["val_bpb"]) for name, c in self.curves.items() if c["val_bpb"]}
        if not self.static:
            with self.plot_out:
                self.plot_out.clear_output(wait=True)
                display(fig)
        elif self._plot_handle is not None:
            self._plot_handle.update(fig)
        plt.close(fig)
        self.redraws += 1

    def table_rows(self) -> list[dict]:
        """One row per finished run: test bits/byte at the validation-selected step and at the last, vs CE only."""
        rows = []
        for name in self.runs:
            r = self.results.get(name)
            if r is None:
                continue
            ref = self.results.get("ce-same" if r.config.get("same_tokenizer") else "ce")
            rows.append({
                "run": name,
                "label": run_label(name),
                "bpb": r.test_selected,
                "selected_step": r.selected_step,
                "bpb_final": r.test_final,
                "delta_vs_ce": None if ref is None else r.test_selected - ref.test_selected,
                "steps": r.steps_done,
                "seconds": r.seconds,
                "stopped": r.stopped,
            })
        return rows

    def _update_table(self) -> None:
        """Render :meth:`table_rows` as an HTML table."""
        head = ("<tr><th>run</th><th>test bits/byte (selected step)</th><th>at step</th><th>last step</th>"
                "<th>vs CE only (same tokenizer)</th><th>steps</th><th>time</th></tr>")
        body = ""
        for r in self.table_rows():
            plain = r["delta_vs_ce"] is None or r["run"] in ("ce", "ce-same")
            delta = "" if plain else f"{r['delta_vs_ce']:+.4f}"
            stopped = " (stopped)" if r["stopped"] else ""
            body += (f"<tr><td>{html.escape(r['label'])}</td><td>{r['bpb']:.4f}</td><td>{r['selected_step']}</td>"
                     f"<td>{r['bpb_final']:.4f}</td><td>{delta}</td><td>{r['steps']}{stopped}</td>"
                     f"<td>{r['seconds']:.0f} s</td></tr>")
        self.last_table_html = f"<table class='{TABLE_CLASS}'>{head}{body}</table>"
        if not self.static:
            self.table.value = self.last_table_html
        elif self._table_handle is not None:
            self._table_handle.update(HTML(self.last_table_html))

    def run(self) -> dict:
        """Train every run in order; returns {run: RunResult}. The stop button ends only the current run.

        When the last run ends (or training is interrupted) the button is retired: disabled, relabelled and greyed,
        so a finished dashboard shows no control that looks active.
        """
        self.running = True
        finished = False
        try:
            for name in self.runs:
                if name in self.results:
                    continue
                self.stop_flag.clear()
                train(self.configs[name], self.setup, name=name, callback=self.callback, stop=self.stop_flag,
                      keep_model=self.keep_models)
            finished = True
        finally:
            self.running = False
            self.current = None
            self.stop_flag.clear()
            self._set_status(f"done: {len(self.results)} runs" if finished else
                             f"interrupted: {len(self.results)} of {len(self.runs)} runs finished")
            self._retire_button("all runs finished" if finished else "interrupted")
        return self.results

    def _retire_button(self, why: str) -> None:
        """The stop button once nothing is running: disabled, neutral colour, a label that says why."""
        if self.static:
            return
        b = self.stop_button
        b.disabled = True
        b.button_style = ""
        b.icon = "check" if why == "all runs finished" else "ban"
        b.description = "Done" if why == "all runs finished" else "Interrupted"
        b.tooltip = f"nothing to stop: {why}"
