"""The course as static HTML (uldviz.course.site, `make site`): the pieces on small inputs, then a real build in fast
mode
whose index and lesson pages are opened in headless Chromium (Debian's, driven by Playwright, no network)."""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbrun import fast_env

from uldviz.course import lessons, site

ROOT = Path(__file__).resolve().parents[1]


def _png() -> str:
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _executed_notebook_with_a_widget():
    """What nbclient leaves: a PNG output, a widget view, and the widget state (a VBox of slider, HTML, Output)."""
    png = _png()
    nb = new_notebook()
    nb.cells = [new_markdown_cell("# 09 — A test lesson\n\nSome prose."), new_code_cell("plot()"), new_code_cell("w")]
    nb.cells[1].outputs = [new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})]
    nb.cells[2].outputs = [new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "box", "version_major": 2, "version_minor": 0},
        "text/plain": "VBox(...)"})]
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_s", "IPY_MODEL_h", "IPY_MODEL_o"]}},
        "s": {"model_name": "FloatSliderModel", "state": {"description": "ε <b>", "value": 0.5}},
        "h": {"model_name": "HTMLModel", "state": {"value": "<b>ULD = 0.2</b>"}},
        "o": {"model_name": "OutputModel", "state": {"outputs": [
            {"output_type": "display_data", "data": {"image/png": png}, "metadata": {}}]}},
    }
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state, "version_major": 2,
                                                                            "version_minor": 0}}
    return nb


def test_widget_snapshot_holds_the_plot_readout_and_slider_values():
    nb = _executed_notebook_with_a_widget()
    assert site.add_widget_snapshots(nb) == 1
    outs = nb.cells[2].outputs
    assert len(outs) == 2 and "application/vnd.jupyter.widget-view+json" in outs[0].data
    snap = outs[1].data["text/html"]
    assert 'class="uldviz-widget-snapshot"' in snap and "data:image/png;base64," in snap
    assert "<b>ULD = 0.2</b>" in snap and "ε &lt;b&gt; = 0.5" in snap  # slider text escaped, our HTML kept
    assert site.add_widget_snapshots(new_notebook()) == 0


def test_rendered_page_embeds_plots_widget_state_and_the_snapshot_rule():
    nb = _executed_notebook_with_a_widget()
    site.add_widget_snapshots(nb)
    page = site.render_html(nb, "09 — A test lesson")
    assert "<title>09 — A test lesson</title>" in page
    assert page.count("data:image/png;base64,") >= 2  # the plain plot and the widget's snapshot
    assert "application/vnd.jupyter.widget-state+json" in page  # the live widgets' last state
    assert ".uldviz-widget-snapshot" in page.split("</head>")[0]


def _executed_notebook_with_explorables():
    """Two views of anywidget models sharing one ES module (as nbclient stores them), and an ordinary widget."""
    nb = _executed_notebook_with_a_widget()
    view = lambda mid: new_output("display_data", data={  # noqa: E731
        "application/vnd.jupyter.widget-view+json": {"model_id": mid, "version_major": 2, "version_minor": 1},
        "text/plain": "<Explorable>"})
    nb.cells.append(new_code_cell("bars"))
    nb.cells[-1].outputs = [view("x1"), view("x2")]
    esm = "export default { render({ model, el }) { el.textContent = model.get('label'); } };"
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    for mid, label in (("x1", "one </script><b>"), ("x2", "two")):
        state[mid] = {"model_name": "AnyModel", "model_module": "anywidget",
                      "state": {"_esm": esm, "_css": ".x { color: red }", "label": label, "static_page": False}}
    return nb, esm


def test_explorables_are_mounted_from_their_saved_state_with_the_module_embedded_once():
    nb, esm = _executed_notebook_with_explorables()
    assert site.mount_explorables(nb) == 2 and site.add_widget_snapshots(nb) == 1  # the VBox keeps its snapshot
    holders = [o.data["text/html"] for o in nb.cells[-1].outputs]
    assert all('class="uldviz-explorable"' in h and "uldviz-explorable-state" in h for h in holders)
    b64 = base64.b64encode(esm.encode()).decode()
    assert b64 in holders[0] and b64 not in holders[1]  # one copy of the module per page
    assert "one <\\/script><b>" in holders[0] and "</script><b>" not in holders[0].split("uldviz-explorable-state")[1]
    saved = json.loads(holders[1].split('class="uldviz-explorable-state">')[1].split("</script>")[0])
    assert saved == {"label": "two", "static_page": False}  # the shim sets static_page; _esm/_css travel once
    page = site.render_html(nb, "09 — explorables")
    assert page.count("function shimModel") == 1  # the shim, once per page
    plain = _executed_notebook_with_a_widget()
    assert site.mount_explorables(plain) == 0 and "shimModel" not in site.render_html(plain, "x")


def test_index_links_every_lesson_and_escapes_titles():
    entries = [{"notebook": "01_a.ipynb", "page": "01_a.html", "title": "A <b>", "stated_time": "about 5 minutes",
                "seconds": 3.0}]
    page = site.index_html(entries, mode="fast", built="today", repo_url="https://github.com/o/r")
    assert 'href="01_a.html"' in page and "A &lt;b&gt;" in page and "about 5 minutes" in page
    assert "colab.research.google.com/github/o/r/blob/main/notebooks/01_a.ipynb" in page
    assert "fast mode" in page


def test_recording_run_times_is_refused_in_fast_mode(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ULDVIZ_FAST", "1")
    with pytest.raises(ValueError, match="fast mode"):
        site.build_site(tmp_path, record=True)
    monkeypatch.delenv("ULDVIZ_FAST")
    with pytest.raises(ValueError, match="--solutions"):
        site.build_site(tmp_path, record=True, solutions=True)
    with pytest.raises(FileNotFoundError, match="no lesson notebooks"):
        site.build_site(tmp_path, only=["99"])
    with pytest.raises(SystemExit) as exit_info:  # the command line says it in one usage line
        site.main(["--out", str(tmp_path), "--only", "99"])
    assert exit_info.value.code == 2 and "no lesson notebooks" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_site_runs_the_builder_into_site():
    done = subprocess.run(["make", "-n", "-B", "site"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "-m uldviz.course.site --out site" in done.stdout
    assert "site/" in (ROOT / ".gitignore").read_text().splitlines()


# ------------------------------------------------------------------ the headless runner is loud and cleans up
_DROP_NEXT_IDLE = """k = get_ipython().kernel
publish = k._publish_status
def drop_idle(status, channel, parent=None):
    if status == "idle":  # this cell's idle status is lost, as if dropped on the way
        k._publish_status = publish
        return
    publish(status, channel, parent)
k._publish_status = drop_idle"""


def _kernels_left() -> list:
    """Kernel processes this test process started that are still running."""
    psutil = pytest.importorskip("psutil")
    kids = [c for c in psutil.Process().children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]
    return [c for c in kids if "ipykernel" in " ".join(c.cmdline())]


def _run_cells(tmp_path, *sources, **kwargs):
    path = tmp_path / "99_probe.ipynb"
    path.write_text(json.dumps(new_notebook(cells=[new_code_cell(s) for s in sources])))
    return site.execute(path, **kwargs)


def test_runner_shuts_its_kernel_down(tmp_path):
    nb, _ = _run_cells(tmp_path, "x = 'hi'", "print(x)", append=["print(x * 2)"])  # appended: the same kernel
    assert [c.outputs[0]["text"] for c in nb.cells[1:]] == ["hi\n", "hihi\n"]
    assert _kernels_left() == []  # the runner made the kernel manager, so it must stop the kernel


def test_runner_fails_loudly_when_a_cell_passes_its_timeout(tmp_path):
    with pytest.raises(RuntimeError, match=r"stalled in cell 1 \('import time; time.sleep\(60\)'\)"):
        _run_cells(tmp_path, "x = 1", "import time; time.sleep(60)", timeout=3)
    assert _kernels_left() == []


def test_runner_fails_loudly_on_a_lost_iopub_message(tmp_path, monkeypatch):
    """A cell whose idle status never comes: an error naming it within IOPUB_TIMEOUT (it used to hang for ever)."""
    monkeypatch.setattr(site, "IOPUB_TIMEOUT", 2)
    with pytest.raises(RuntimeError, match=r"stalled in cell 0 .*Timeout waiting for IOPub output(.|\n)*execute_reply"):
        _run_cells(tmp_path, _DROP_NEXT_IDLE, "y = 2", timeout=60)


def test_build_executes_each_lesson_itself_with_the_solutions_flag(tmp_path):
    """Without ``run``, build_site executes every lesson (the tests' fast site reuses the notebook tests' runs)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    cells = [new_markdown_cell("# 01 — Toy"), new_code_cell("SHOW_SOLUTIONS = False"),
             new_code_cell("print('answer', 'shown' if SHOW_SOLUTIONS else 'hidden')")]
    (folder / "01_toy.ipynb").write_text(json.dumps(new_notebook(cells=cells)))
    summary = site.build_site(tmp_path / "out", notebooks_dir=folder, solutions=True, log=lambda *a: None)
    (entry,) = summary["pages"]
    assert entry["title"] == "01 — Toy" and entry["seconds"] > 0 and entry["peak_mb"] > 10
    page = (tmp_path / "out" / entry["page"]).read_text()
    assert "answer shown" in page and "answer hidden" not in page


def test_cell_timeout_follows_the_recorded_run():
    recorded = site.lessons.read_record()["notebooks"]["02_optimal_transport"]["run_seconds"]
    expected = max(site.MIN_CELL_TIMEOUT, math.ceil(site.TIMEOUT_FACTOR * recorded))
    assert site.cell_timeout("notebooks/02_optimal_transport.ipynb") == expected
    assert site.cell_timeout("99_not_recorded.ipynb") == site.UNMEASURED_CELL_TIMEOUT


# ------------------------------------------------------------------ a real build (fast mode)
@pytest.fixture(scope="module")
def fast_site(tmp_path_factory, lesson):
    """The whole site built in fast mode into a temporary folder, from the session's lesson runs (conftest.py: the
    notebook tests ran them already, or this runs each once): the learner's cells, no appended solution run."""
    out = tmp_path_factory.mktemp("site")

    def run(path):
        done = lesson(path.name)
        return done.learner(), done.seconds, done.peak_mb

    with fast_env():
        summary = site.build_site(out, run=run, log=lambda *a: None)
    return out, summary


@pytest.mark.slow
def test_fast_build_renders_every_lesson_without_solutions(fast_site):
    out, summary = fast_site
    names = [p.name for p in lessons.page_paths(ROOT / "notebooks")]  # lessons and optional pages (02b)
    assert "02b_speed_appendix.ipynb" in names and names.index("02b_speed_appendix.ipynb") == 2
    assert [e["notebook"] for e in summary["pages"]] == names and summary["mode"] == "fast"
    assert json.loads((out / "build.json").read_text())["bytes"] == summary["bytes"]
    index = (out / "index.html").read_text()
    for entry in summary["pages"]:
        assert f'href="{entry["page"]}"' in index and (out / entry["page"]).stat().st_size > 100_000
    widgets = lessons.read_record()["notebooks"]  # each lesson's widget count, as measured by --record
    for stem in ("01_kl_breaks", "02_optimal_transport", "03_distillation", "04_beyond_uld"):
        page = (out / f"{stem}.html").read_text()
        assert "Solutions are hidden" in page and "✅" not in page  # Run All never shows an answer
        entry = next(e for e in summary["pages"] if e["notebook"] == f"{stem}.ipynb")
        # every widget shown is on the page: an ipywidget as a static snapshot, an explorable live
        assert entry["snapshots"] + entry["explorables"] == widgets[stem]["widgets"] >= 1
        assert entry["stated_time"].startswith("about ")
        assert entry["peak_mb"] > 100  # the kernel's resident memory was measured (torch alone is more)


@pytest.mark.slow
@pytest.mark.browser
def test_site_pages_load_in_a_real_browser(fast_site):
    """Index -> lesson 01 by its link, offline: the page loads and its plots are real images (naturalWidth > 0)."""
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the Python package playwright is not installed")
    out, summary = fast_site
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            # no network: CDN scripts (MathJax, the widget library) fail fast; the pages must stand on their own
            ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                      else route.abort())
            page = ctx.new_page()
            page.goto((out / "index.html").as_uri())
            links = page.locator("a.lesson")
            assert links.count() == len(summary["pages"])
            links.filter(has_text="01").first.click()
            page.wait_for_load_state("load")
            assert page.url.endswith("01_kl_breaks.html")
            assert "Why KL divergence breaks" in page.locator("h1").first.inner_text()
            widths = page.eval_on_selector_all("img[src^='data:image/png']", "els => els.map(e => e.naturalWidth)")
            assert len(widths) >= 8 and all(w > 0 for w in widths), widths
            snapshots = page.locator(".uldviz-widget-snapshot img")
            assert snapshots.count() >= 1 and snapshots.first.evaluate("e => e.naturalWidth") > 0
            assert snapshots.first.is_visible()  # shown: the live widget library could not load offline
            page.go_back()
            assert page.locator("a.lesson").count() == len(summary["pages"])
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.browser
def test_explorables_are_live_in_the_built_pages_without_a_kernel(fast_site):
    """Offline, no kernel: lesson 01's bar, dragged with the mouse, shows the kit's ULD and KL for the state the widget
    holds; lesson 02's plan follows a dragged cell and snaps to POT's stored optimum; lesson 04 switches between the
    examples and says that new text needs a kernel. Screenshots of each land in artifacts/screenshots/."""
    import dragging
    from test_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS

    from uldviz.maths.patches import format_value

    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the Python package playwright is not installed")
    out, summary = fast_site
    counts = {e["notebook"].split("_")[0]: e["explorables"] for e in summary["pages"]}  # "02" and "02b" apart
    assert counts["01"] == counts["02"] == counts["04"] == 1 and counts["03"] == 0, counts
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            local = ("file:", "data:", "blob:")  # the explorables' module is imported from a blob: URL of the page
            ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith(local) else route.abort())
            page = ctx.new_page()
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))

            def open_lesson(stem):
                page.goto((out / f"{stem}.html").as_uri())
                page.wait_for_selector(".uldviz-explorable[data-mounted='true']", timeout=15_000)
                assert page.locator(".uldviz-explorable[data-mounted='error']").count() == 0

            open_lesson("01_kl_breaks")
            seen = dragging.drag_bar(page, token="dog", to=1.0, kernel=False)
            assert seen["state"]["teacher"][0] == 1.0 and seen["root"].locator(".uldviz-x-kl").inner_text() == "NaN"
            seen["root"].screenshot(path=str(SHOTS / "site_explorable_01_bars.png"))
            dragging.drag_bar(page, side="student", token="sun", to=0.05, kernel=False)

            open_lesson("02_optimal_transport")
            root = dragging.drag_plan_cell(page, (0, 0), (1, 1), kernel=False)["root"]
            assert root.locator(".uldviz-x-optimum").inner_text() == "?"  # hidden until reached: predict it first
            best = dragging.snap_plan(page, kernel=False)
            assert root.locator(".uldviz-x-optimum").inner_text() == format_value(best)
            root.screenshot(path=str(SHOTS / "site_explorable_02_plan.png"))

            open_lesson("04_beyond_uld")
            root = page.locator(".uldviz-x-text").first
            root.locator(".uldviz-x-toggle").click()
            examples = root.locator(".uldviz-x-example")
            examples.nth(1).click()
            assert json.loads(root.get_attribute("data-state"))["text"] == examples.nth(1).get_attribute("data-text")
            root.locator(".uldviz-x-chip.uldviz-x-teacher").nth(3).hover()
            assert root.locator(".uldviz-x-band.uldviz-x-hot").count() == 1
            root.screenshot(path=str(SHOTS / "site_explorable_04_text.png"))
            dragging.show_text(page, "text no kernel has seen", kernel=False)
            assert not errors, errors
        finally:
            browser.close()


def test_load_average_is_none_where_the_os_has_none(monkeypatch):
    """--record, the benchmark and timing all read the load through config.load_average: Windows has no getloadavg."""
    import os

    from uldviz.env import load_average

    assert len(load_average()) == 3
    monkeypatch.delattr(os, "getloadavg")
    assert load_average() is None


def test_waits_on_the_kernel_are_sliced_so_a_missed_wake_up_costs_a_slice(monkeypatch):
    """A message whose wake-up the long poll would miss is found by the next short poll (POLL_SLICE s)."""
    import asyncio
    from queue import Empty
    from types import SimpleNamespace

    asked = []

    async def get_msg(timeout=None):
        asked.append(timeout)
        if len(asked) < 3:
            raise Empty
        return {"msg_type": "execute_reply"}

    kc = SimpleNamespace(shell_channel=SimpleNamespace(get_msg=get_msg), iopub_channel=SimpleNamespace(get_msg=get_msg))
    site._poll_in_slices(kc)
    assert asyncio.run(kc.shell_channel.get_msg(timeout=600))["msg_type"] == "execute_reply"
    assert len(asked) == 3 and all(t <= site.POLL_SLICE for t in asked)

    async def never(timeout=None):
        await asyncio.sleep(timeout)
        raise Empty

    kc = SimpleNamespace(shell_channel=SimpleNamespace(get_msg=never), iopub_channel=SimpleNamespace(get_msg=never))
    monkeypatch.setattr(site, "POLL_SLICE", 0.01)
    site._poll_in_slices(kc)
    with pytest.raises(Empty):  # the overall timeout still ends the wait
        asyncio.run(kc.shell_channel.get_msg(timeout=0.05))
