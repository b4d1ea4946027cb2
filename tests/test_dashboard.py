"""The training dashboard driven from Python: callbacks update curves and bar, stop button sets the flag."""

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")

from helpers import tiny_config, tiny_setup  # noqa: E402

from uldviz.viz.widgets.dashboard import DASHBOARD_CLASS, STOP_CLASS, DistillDashboard  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    return tiny_setup(60_000, 800)


def base(**kw):
    return tiny_config(**{"batch_size": 2, "window_chars": 100, **kw})


def test_widgets_have_css_classes(setup):
    d = DistillDashboard(setup, runs=["ce"], base=base())
    assert DASHBOARD_CLASS in d.widget._dom_classes
    assert STOP_CLASS in d.stop_button._dom_classes
    assert d.progress.max == 4 and d.progress.value == 0


def test_callbacks_update_progress_curves_and_redraw(setup):
    d = DistillDashboard(setup, runs=["ce", "uld-offset"], base=base())
    d.callback({"type": "start", "name": "ce", "steps": 4})
    for s in (1, 2):
        d.callback({"type": "step", "name": "ce", "step": s, "steps": 4, "loss": 5.0 - s, "ce": 5.0 - s,
                    "distill": 0.0})
    assert d.progress.value == 2 and d.curves["ce"]["train_ce"] == [4.0, 3.0]
    before = d.redraws
    d.callback({"type": "eval", "name": "ce", "step": 2, "val_bpb": 3.5})
    assert d.redraws == before + 1 and d.curves["ce"]["val_bpb"] == [3.5]
    assert d.last_plot == {"ce": 1}  # the redrawn figure shows the new validation point
    assert "training" in d.status.value


def test_stop_button_sets_flag_and_run_keeps_curve(setup):
    d = DistillDashboard(setup, runs=["ce", "uld-offset"], base=base(steps=6))
    d.stop_button.click()  # before run(): nothing to stop, nothing changes
    assert not d.stop_flag.is_set() and d.status.value == "ready"
    # a real run: the button is "clicked" during the 3rd step of the first run only
    original = d.callback

    def clicking(event):
        original(event)
        if event["type"] == "step" and event["name"] == "ce" and event["step"] == 3:
            d.stop_button.click()

    d.callback = clicking
    results = d.run()
    assert results["ce"].stopped and results["ce"].steps_done == 3
    assert d.curves["ce"]["train_steps"] == [1, 2, 3]  # curve kept
    assert not results["uld-offset"].stopped and results["uld-offset"].steps_done == 6  # next run went on
    rows = d.table_rows()
    assert [r["run"] for r in rows] == ["ce", "uld-offset"]
    assert rows[1]["delta_vs_ce"] == pytest.approx(results["uld-offset"].test_selected - results["ce"].test_selected)
    assert "(stopped)" in d.table.value and f"{results['ce'].test_selected:.4f}" in d.table.value
    # once everything is done the button is retired: disabled, relabelled, not red; a click changes nothing
    b = d.stop_button
    assert b.disabled and b.description == "Done" and b.button_style == "" and "nothing to stop" in b.tooltip
    b.click()
    assert d.status.value == "done: 2 runs" and not d.stop_flag.is_set()


def test_a_failed_run_retires_the_button_too(setup):
    """An error inside training (the loop itself turns a kernel interrupt into a stop) leaves no live button."""
    d = DistillDashboard(setup, runs=["ce", "uld-offset"], base=base(steps=4))
    original = d.callback

    def interrupting(event):
        original(event)
        if event["type"] == "step" and event["step"] == 2:
            raise RuntimeError("out of memory")

    d.callback = interrupting
    with pytest.raises(RuntimeError, match="memory"):
        d.run()
    assert d.stop_button.disabled and d.stop_button.description == "Interrupted"
    assert d.status.value.startswith("interrupted: 0 of 2") and not d.running


def test_static_mode_without_widgets(setup):
    d = DistillDashboard(setup, runs=["ce"], base=base(steps=2), static=True)
    assert d.widget is None
    results = d.run()  # no display handles: must still run and keep its numbers
    assert results["ce"].steps_done == 2 and d.redraws >= 1
    assert f"{results['ce'].test_selected:.4f}" in d.last_table_html


def test_empty_runs_rejected(setup):
    with pytest.raises(ValueError, match="runs is empty"):
        DistillDashboard(setup, runs=[])


def test_the_curves_legend_sits_beside_the_validation_panel_not_over_it():
    """The dashboard's figure: the legend's box does not overlap the held-out panel's plotting area."""
    import matplotlib.pyplot as plt

    from uldviz.viz.plots.training import plot_curves

    curves = {name: {"train_steps": [0, 1, 2], "train_ce": [3.0, 2.5, 2.0], "val_steps": [0, 2],
                     "val_bpb": [3.0, 2.0 + i / 10]} for i, name in enumerate(("ce", "uld", "hybrid"))}
    fig = plot_curves(curves, teacher_bpb=1.9)
    fig.canvas.draw()
    ax = fig.axes[1]
    legend = ax.get_legend().get_window_extent()
    assert not legend.overlaps(ax.get_window_extent()), (legend, ax.get_window_extent())
    plt.close(fig)
