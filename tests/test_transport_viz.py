"""Plots, widgets, timing helper and exercises of notebook 02 (optimal transport), driven from Python."""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from uldviz.course import timing  # noqa: E402
from uldviz.exercises import ex02  # noqa: E402
from uldviz.maths import transport as uot  # noqa: E402
from uldviz.maths.losses import (  # noqa: E402
    large_temperature_limit,
    temperature_curve,
    uld_distance,
    uld_loss,
    uld_topk_distance,
)
from uldviz.viz.plots import transport as tplots  # noqa: E402
from uldviz.viz.plots.tables import markdown_table, records_table  # noqa: E402
from uldviz.viz.widgets.transport import SinkhornExplorer, TemperatureTopkExplorer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def arrows(fig):
    """The plan arrows drawn on a figure."""
    return [p for ax in fig.axes for p in ax.patches if p.get_gid() == tplots.ARROW_GID]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- plots
def test_plan_arrows_one_per_moved_mass_and_sorted_pairing_is_vertical():
    p = np.array([0.05, 0.4, 0.25, 0.2, 0.1])
    q = np.array([0.3, 0.1, 0.6])
    fig = tplots.plot_plan_arrows(p, q, uot.sorted_plan(p, q), list("abcde"), list("xyz"))
    assert len(arrows(fig)) == 5
    assert all(i == j for i, j, _ in fig.uldviz_arrows)  # rank r -> rank r after sorting
    assert all(m == pytest.approx(0.2) for *_, m in fig.uldviz_arrows)
    # POT's plan: same number of arrows (a permutation / N), maybe crossing, same cost
    res = uot.uld_emd(p, q, return_plan=True)
    fig2 = tplots.plot_plan_arrows(p, q, res.plan)
    assert len(arrows(fig2)) == 5
    # a split plan draws one arrow per non-zero entry, in vocabulary order when sort=False
    T = np.array([[0.2, 0.3], [0.0, 0.5]])
    fig3 = tplots.plot_plan_arrows([0.5, 0.5], [0.2, 0.8], T, sort=False)
    assert sorted((i, j) for i, j, _ in fig3.uldviz_arrows) == [(0, 0), (0, 1), (1, 1)]
    widths = {(i, j): a.get_linewidth() for (i, j, _), a in zip(fig3.uldviz_arrows, arrows(fig3))}
    assert widths[(1, 1)] > widths[(0, 1)] > widths[(0, 0)]  # width grows with the mass moved
    with pytest.raises(ValueError, match="does not cover"):
        tplots.plot_plan_arrows(p, q, np.eye(3))


def test_cost_and_plan_heatmaps():
    p, q = np.array([0.6, 0.3, 0.1]), np.array([0.2, 0.5, 0.3])
    a, b, C = uot.uld_ot_problem(p, q)
    fig = tplots.plot_cost_and_plan(C, uot.uld_emd(p, q, return_plan=True).plan, list("abc"), list("xyz"))
    images = [im for ax in fig.axes for im in ax.get_images() if isinstance(im, AxesImage)]
    assert len(images) == 2
    np.testing.assert_allclose(images[0].get_array(), C)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 9 and "0.40" in texts
    with pytest.raises(ValueError, match="one shape"):
        tplots.plot_cost_and_plan(C, np.zeros((2, 3)))


def test_scaling_plot_and_other_figures():
    live = {"emd2": {"label": "emd2", "sizes": [10, 20, 40], "seconds": [1e-3, 4e-3, 1.6e-2], "exponent": 2.0}}
    saved = {"emd2": {"label": "emd2", "sizes": [100, 1000], "seconds": [0.1, 10.0], "exponent": 2.0},
             "closed_numpy": {"label": "sort", "sizes": [100, 1000], "seconds": [1e-5, 2e-5], "exponent": 0.3}}
    fig = tplots.plot_scaling(live, saved)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 3
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("slope 2.00" in s and "[live]" in s for s in labels)
    assert any("slope 0.30" in s and "[file]" in s for s in labels)
    f = tplots.plot_temperature_curve([0.1, 1, 10], [0.1, 0.5, 0.4], limit=0.7, current=1.0, current_value=0.5)
    assert any("0.7000" in t.get_text() for t in f.axes[0].get_legend().get_texts())
    assert tplots.plot_topk_error([1, 10], [0.5, 0.01], [0.6, 0.3], current=10).axes
    p = np.random.default_rng(0).dirichlet(np.ones(30))
    assert len(tplots.plot_blind_spot(p, p[::-1], top_k=10).axes) == 2


def test_markdown_tables_from_rows_and_from_records():
    s = records_table([{"a": 1, "b": 0.123456}, {"a": 2, "b": "x"}], fmt=".2f")
    lines = s.splitlines()
    assert lines[0] == "| a | b |" and lines[2] == "| 1 | 0.12 |" and len(lines) == 4
    with pytest.raises(ValueError, match="at least one record"):
        records_table([])
    rows = markdown_table(["x", "y"], [[None, np.float32(0.5)], ["a|b", "two\nlines"]]).splitlines()
    assert rows[2] == "| – | 0.5000 |" and rows[3] == "| a\\|b | two⏎lines |"  # one table row per line


# --------------------------------------------------------------------------- timing helper
def test_median_time_measures_and_counts_calls():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.01)

    t = timing.median_time(slow, repeats=3, warmup=2)
    assert 0.009 <= t < 0.06
    assert len(calls) == 2 + 1 + 3  # warm-up, one probe call, repeats
    fast = timing.median_time(lambda: None, repeats=3)
    assert fast < 1e-4  # tiny functions are looped, not rounded up to the timer's resolution
    with pytest.raises(ValueError):
        timing.median_time(slow, repeats=0)


def test_fit_exponent_recovers_power_law():
    sizes = [100, 1000, 2000, 5000, 10000]
    assert timing.fit_exponent(sizes, [3e-9 * n**2.1 for n in sizes], min_n=1000) == pytest.approx(2.1)
    assert timing.fit_exponent(sizes, [n**1.0 for n in sizes], min_n=100) == pytest.approx(1.0)
    assert timing.fit_exponent([100, 200], [1, 2], min_n=1000) is None
    rec = {"sizes": [1000, 2000], "seconds": [1.0, 4.0], "exponent": 2.0}
    assert timing.extrapolate(rec, 4000) == pytest.approx(16.0)


def test_time_ot_methods_and_budget_skips():
    res = timing.time_ot_methods([20, 40], ["closed_numpy", "emd2"], budget_s=5.0, repeats=2)
    assert res["emd2"]["sizes"] == [20, 40] and all(t > 0 for t in res["emd2"]["seconds"])
    assert res["emd2_warnings"] == []
    tight = timing.time_ot_methods([50, 100, 200], ["sinkhorn2"], budget_s=1e-6, repeats=1)
    assert tight["sinkhorn2"]["sizes"] == [50] and tight["sinkhorn2"]["skipped"] == [100, 200]
    assert len(tight["sinkhorn_rel_error"]["rel_error"]) == 1
    with pytest.raises(ValueError, match="unknown method"):
        timing.time_ot_methods([10], ["quantum"])


def test_write_and_load_ot_scaling(tmp_path):
    path = tmp_path / "bench.json"
    doc = timing.write_ot_scaling(path, sizes=[20, 40, 80], methods=["closed_numpy", "wasserstein_1d"],
                                  fit_min_n=20, repeats=2, progress=None)
    back = timing.load_ot_scaling(path)
    assert back["methods"]["closed_numpy"]["sizes"] == [20, 40, 80]
    assert isinstance(back["methods"]["wasserstein_1d"]["exponent"], float)
    assert back["machine"]["pot"] and back["machine"]["torch"] and doc["settings"]["sizes"] == [20, 40, 80]
    assert timing.load_ot_scaling(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="methods"):
        timing.load_ot_scaling(tmp_path / "bad.json")


def test_shipped_results_file_is_consistent():
    doc = json.loads((ROOT / "data" / "bench_ot.json").read_text())
    m = doc["methods"]
    assert 10_000 in m["emd2"]["sizes"] and 10_000 in m["closed_numpy"]["sizes"]
    assert 1.5 < m["emd2"]["exponent"] < 3.0
    for n, t in zip(m["emd2"]["sizes"], m["emd2"]["seconds"]):
        t_closed = m["closed_numpy"]["seconds"][m["closed_numpy"]["sizes"].index(n)]
        assert t_closed < t
    assert doc["emd2_warnings"] == []  # numItermax was raised enough at N = 10,000
    assert {"platform", "python", "numpy", "torch", "pot"} <= set(doc["machine"])


# --------------------------------------------------------------------------- widgets
def test_sinkhorn_explorer_follows_its_slider():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(6) * 0.5), rng.dirichlet(np.ones(4) * 0.5)
    ex = SinkhornExplorer(p, q, reg=0.01, curve_points=4)
    assert ex.exact_value == pytest.approx(float(uld_distance(torch.from_numpy(p), torch.from_numpy(q))), abs=1e-12)
    np.testing.assert_allclose(ex.exact_plan, np.eye(6) / 6)  # sorted order: the diagonal
    v_small = ex.value
    ex.slider.value = 0.5
    assert ex.reg == pytest.approx(0.5)
    assert ex.value > v_small > ex.exact_value - 1e-9
    direct = float(uot.uld_sinkhorn(p, q, ex.reg, num_itermax=ex.num_itermax))
    assert ex.value == pytest.approx(direct, rel=1e-9)
    assert ex.rel_error == pytest.approx(abs(direct - ex.exact_value) / ex.exact_value)
    assert f"{ex.value:.5f}" in ex.readout.value
    assert "uldviz-sinkhorn-reg" in ex.slider._dom_classes and "uldviz-sinkhorn" in ex.widget._dom_classes


def test_temperature_topk_explorer_matches_the_losses():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(300, generator=gen, dtype=torch.float64) * 2
    t = torch.randn(500, generator=gen, dtype=torch.float64) * 3
    ex = TemperatureTopkExplorer(s, t, temperature=1.0, top_k=10, curve_ks=[1, 10, 100, 500], draw=False)
    assert ex.limit == pytest.approx(2 * (1 - 300 / 500))
    ex.s_temp.value = 2.0
    ex.t_temp.value = 0.5
    want = float(uld_loss(s[None], t[None], student_temperature=2.0, teacher_temperature=0.5))
    assert ex.uld == pytest.approx(want, rel=1e-9)
    before = ex.uld_topk_plain
    ex.top_k_slider.value = 200
    qs, pt = torch.softmax(s / 2.0, -1), torch.softmax(t / 0.5, -1)
    assert ex.uld_topk_tail == pytest.approx(float(uld_topk_distance(qs, pt, 200)), rel=1e-9)
    assert ex.uld_topk_plain == pytest.approx(float(uld_topk_distance(qs, pt, 200, tail=False)), rel=1e-9)
    assert ex.uld_topk_plain > before and ex.uld_topk_tail <= ex.uld + 1e-12
    assert ex.err_tail <= ex.err_plain
    assert f"{ex.uld:.5f}" in ex.readout.value
    assert "uldviz-topk" in ex.top_k_slider._dom_classes
    # the curve reaches the T -> infinity limit and goes to 0 as T -> 0
    vals = temperature_curve(s, t, [1e-3, 1e4])
    assert vals[0] < 1e-3 and vals[1] == pytest.approx(ex.limit, abs=1e-3)
    assert large_temperature_limit(500, 500) == 0.0


def test_widgets_draw_without_error():
    ex = SinkhornExplorer([0.5, 0.3, 0.2], [0.6, 0.4], reg=0.1, curve_points=3, draw=True)
    ex.slider.value = 0.2
    tt = TemperatureTopkExplorer([1.0, 0.0, -1.0], [2.0, 0.5, 0.0, -1.0], top_k=2, draw=True)
    tt.top_k_slider.value = 3
    assert tt.top_k == 3 and ex.reg == pytest.approx(0.2)


# --------------------------------------------------------------------------- exercises
def test_exercise_checkers_accept_right_and_explain_wrong_answers():
    p, q = ex02.exercise1_pair()
    _, _, C = uot.uld_ot_problem(p, q)
    assert ex02.check_cost_matrix(C).ok
    assert not ex02.check_cost_matrix(None).ok
    fb = ex02.check_cost_matrix(np.abs(p[:, None] - q[None, :]))
    assert not fb.ok and "padded" in fb.message
    assert ex02.check_plan(uot.sorted_plan(p, q)).ok
    bad = ex02.check_plan(np.eye(3) / 3)  # a coupling, but q is not sorted: not optimal
    assert not bad.ok and "not optimal" in bad.message
    assert not ex02.check_plan(np.eye(3)).ok  # wrong masses
    p2, q2 = ex02.exercise2_pair()
    right = float(uld_distance(torch.from_numpy(p2), torch.from_numpy(q2)))
    assert ex02.check_closed_form(right).ok
    unsorted = float(np.abs(np.pad(p2, (0, 1)) - q2).sum())
    fb = ex02.check_closed_form(unsorted)
    assert not fb.ok and "sorts" in fb.message
    assert f"{right:.4f}" not in fb.message  # never reveals the answer
    assert not ex02.check_peak_temperature(1000.0).ok
    assert not ex02.check_peak_temperature(-1).ok
    grid = np.geomspace(0.01, 100, 3001)
    best = grid[np.argmax(ex02._uld_at(grid))]
    assert ex02.check_peak_temperature(best).ok


def test_plot_shared_mass_histogram_and_bad_input():
    fig = tplots.plot_shared_mass(torch.tensor([0.2, 0.7, 0.9, 1.0]))
    ax = fig.axes[0]
    assert sum(p.get_height() for p in ax.patches) == 4  # every position in one bin
    assert "0.700" in ax.get_legend().get_texts()[0].get_text()  # the mean, drawn as a line
    for bad in ([], [0.5, 1.5], [float("nan")]):
        with pytest.raises(ValueError, match="probabilities"):
            tplots.plot_shared_mass(bad)
