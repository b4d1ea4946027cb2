"""Real-browser test: JupyterLab + headless Chromium (Playwright) runs every notebook and moves notebook 01's slider.

It proves what the Python-side widget tests cannot: the widgets render in a real front end, Run All Cells
leaves no error on the page, dragging a slider redraws the readout and the plot, and the explorables
(anywidget) follow the mouse: a dragged bar (01) and a dragged plan cell (02) show the kit's numbers for the
state they hold and the kernel agrees; a typed text (04) comes back tokenized by the kernel. Debian's
``/usr/bin/chromium`` is used (Playwright never downloads a browser); without it the test is skipped.
Screenshots of the key outputs land in ``artifacts/screenshots/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
#: Folder that holds ``notebooks/`` (the repository; ULDVIZ_BROWSER_ROOT points elsewhere for debugging).
LAB_ROOT = Path(os.environ.get("ULDVIZ_BROWSER_ROOT", ROOT))
CHROMIUM = Path(os.environ.get("ULDVIZ_CHROMIUM", "/usr/bin/chromium"))
SHOTS = ROOT / "artifacts" / "screenshots"
NOTEBOOKS = ["01_kl_breaks.ipynb", "02_optimal_transport.ipynb", "03_distillation.ipynb", "04_beyond_uld.ipynb"]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Seconds a notebook may take to run all its cells in the browser (fast mode).
RUN_TIMEOUT = float(os.environ.get("ULDVIZ_BROWSER_RUN_TIMEOUT", "240"))

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def _free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(settings_dir: Path) -> None:
    """JupyterLab user settings for a test run: every cell in the DOM, no news/update pop-ups."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for rel, content in files.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


def _api(base: str, token: str, path: str, method: str = "GET") -> bytes:
    """One authenticated call to the Jupyter server's REST API."""
    req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def _stop_server(proc: subprocess.Popen, base: str, token: str) -> None:
    """Shut kernels and server down politely, then kill the server's process group whatever happens."""
    try:
        for kernel in json.loads(_api(base, token, "/api/kernels")):
            _api(base, token, f"/api/kernels/{kernel['id']}", method="DELETE")
        _api(base, token, "/api/shutdown", method="POST")
        proc.wait(timeout=20)
    except Exception:  # falling through to the hard kill below is the point
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free loopback port with a one-off token and throw-away config/runtime dirs."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (Debian: apt-get install chromium; .ci/run does it)")
    home = tmp_path_factory.mktemp("jupyter-home")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    # An inherited MPLBACKEND=Agg would stop the kernels from showing figures as images.
    env.pop("MPLBACKEND", None)
    env.update(
        ULDVIZ_FAST="1",
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        IPYTHONDIR=str(home / "ipython"),
    )
    _write_settings(home / "settings")
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={LAB_ROOT}",
        "--ServerApp.allow_root=True", "--ServerApp.terminals_enabled=False",
        "--KernelManager.transport=ipc",  # kernel sockets in the temp runtime dir: no TCP port race
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    log_path = home / "jupyterlab.log"
    log = open(log_path, "wb")  # closed in the finally below
    proc = subprocess.Popen(cmd, env=env, cwd=LAB_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within 90 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"base": base, "token": token, "log": log_path}
    finally:
        _stop_server(proc, base, token)
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    """Headless Debian Chromium driven by Playwright's sync API (never a downloaded browser)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the Python package playwright is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _prompts(page) -> list[str]:
    """The execution prompts ('[3]:', '[*]:', '[ ]:') of every code cell of the open notebook."""
    return page.eval_on_selector_all(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt",
        "els => els.map(e => e.textContent.trim())",
    )


#: What a widget that failed to render shows instead of itself (ipywidgets 7 and 8 front ends).
WIDGET_FAILURES = ("Error displaying widget", "Click to show javascript error", "Failed to load model class")


def _errors(page) -> list[str]:
    """Text of every output that shows a Python traceback or a widget that failed to render."""
    texts = page.eval_on_selector_all(
        ".jp-OutputArea-output", "els => els.map(e => [e.getAttribute('data-mime-type') || '', e.innerText])"
    )
    bad = []
    for mime, text in texts:
        if mime == "application/vnd.jupyter.stderr" and (
            "Traceback" in text or re.search(r"\b\w+(Error|Exception):", text)
        ):
            bad.append(text[-1500:])
        elif any(sign in text for sign in WIDGET_FAILURES):
            bad.append(text[:500])
    return bad


def _open_and_run_all(page, lab, name: str) -> float:
    """Open ``notebooks/<name>`` in its own workspace, Run > Run All Cells, wait for the end; return seconds."""
    url = f"{lab['base']}/lab/workspaces/{Path(name).stem}/tree/notebooks/{name}?token={lab['token']}"
    page.goto(url)
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    idle = page.locator("#jp-main-statusbar").get_by_text("Idle").first
    kernel_dialog = page.locator(".jp-Dialog button.jp-mod-accept", has_text="Select")
    deadline = time.monotonic() + 60
    while not idle.is_visible():  # a notebook without kernelspec metadata asks which kernel to start
        if kernel_dialog.count():
            kernel_dialog.first.click()
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: the kernel did not become idle within 60 s")
        page.wait_for_timeout(250)
    start = time.monotonic()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    quiet = 0
    while True:
        prompts = _prompts(page)
        running = any("*" in p for p in prompts)
        idle = page.locator("#jp-main-statusbar").get_by_text("Idle").count() > 0
        # Run All stops at the first error; so the run is over when nothing is queued and the kernel is idle.
        quiet = quiet + 1 if (idle and not running and prompts) else 0
        if quiet >= 3:
            break
        if time.monotonic() - start > RUN_TIMEOUT:
            pytest.fail(f"{name}: Run All Cells did not finish in {RUN_TIMEOUT:.0f} s; prompts: {prompts}")
        page.wait_for_timeout(500)
    elapsed = time.monotonic() - start
    # Widgets render asynchronously after the kernel is idle: give them a moment to leave "Loading widget...".
    deadline = time.monotonic() + 20
    while page.get_by_text("Loading widget...").count() and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    return elapsed


def _screenshot_key_outputs(page, stem: str, widgets: int = 8, total: int = 14) -> list[Path]:
    """Save the notebook's key outputs as PNGs (widget outputs first, then figures); return the paths."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob(f"{stem}_*.png"):
        old.unlink()
    top = ".jp-OutputArea-output:not(.jupyter-widgets .jp-OutputArea-output)"  # not the insides of an Output widget
    with_widgets = page.locator(f"{top}:has(.jupyter-widgets)")
    figures = page.locator(f"{top}:not(:has(.jupyter-widgets)):has(img)")
    chosen = [with_widgets.nth(i) for i in range(min(with_widgets.count(), widgets))]
    chosen += [figures.nth(i) for i in range(min(figures.count(), total - len(chosen)))]
    paths = []
    for i, out in enumerate(chosen):
        out.scroll_into_view_if_needed()
        kind = "widget" if i < min(with_widgets.count(), widgets) else "figure"
        path = SHOTS / f"{stem}_{i + 1:02d}_{kind}.png"
        out.screenshot(path=str(path))
        paths.append(path)
    return paths


@pytest.fixture
def page(browser, lab):
    """A fresh 1400x1000 tab in its own browser context (no state shared between notebooks)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    try:
        yield pg
    finally:
        ctx.close()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_browser_without_errors(page, lab, name):
    """Run All Cells in real JupyterLab: every code cell runs, no traceback, widgets render; in 01 a slider works."""
    assert (LAB_ROOT / "notebooks" / name).exists(), f"notebooks/{name} is missing"
    stem = Path(name).stem
    try:
        elapsed = _open_and_run_all(page, lab, name)
        errors = _errors(page)
        prompts = _prompts(page)
        not_run = [i for i, p in enumerate(prompts) if not re.search(r"\[\d+\]", p)]
        shots = _screenshot_key_outputs(page, stem)
        assert not errors, f"{name}: errors shown in the browser:\n" + "\n---\n".join(errors)
        assert not not_run, f"{name}: code cells {not_run} did not run (prompts {prompts})"
        assert page.get_by_text("Loading widget...").count() == 0, f"{name}: a widget never rendered"
        assert shots, f"{name}: no widget or image output was found to screenshot"
        if name.startswith("01_"):
            _check_kl_slider(page)
        _check_explorables(page, name)
        print(f"{name}: ran {len(prompts)} code cells in {elapsed:.1f} s in the browser; {len(shots)} screenshots")
    except BaseException:  # keep the evidence: the whole window and the server's log
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{stem}_FAILED_window.png"))
        shutil.copyfile(lab["log"], SHOTS.parent / "jupyterlab.log")
        raise


def _slider_drag_target(slider) -> tuple[float, float]:
    """Where to drop the slider's handle: far from where it is now, so the value surely changes."""
    track = slider.locator(".noUi-target, .ui-slider").first
    handle = slider.locator(".noUi-handle, .ui-slider-handle").first
    tb, hb = track.bounding_box(), handle.bounding_box()
    here = (hb["x"] + hb["width"] / 2 - tb["x"]) / tb["width"]
    frac = 0.15 if here > 0.5 else 0.85
    return tb["x"] + frac * tb["width"], hb["y"] + hb["height"] / 2


def _check_kl_slider(page) -> None:
    """Notebook 01: drag a teacher-probability slider with the mouse; the KL readout text and the plot change."""
    explorer = page.locator(
        ".jp-OutputArea-output:has(.uldviz-teacher-slider):has(.uldviz-kl-readout):has(.uldviz-kl-plot)"
    ).first
    assert explorer.count() == 1, (
        "no output shows a slider (.uldviz-teacher-slider), a readout (.uldviz-kl-readout) and a plot "
        "(.uldviz-kl-plot) together"
    )
    slider = explorer.locator(".uldviz-teacher-slider").first
    readout = explorer.locator(".uldviz-kl-readout").first
    plot = explorer.locator(".uldviz-kl-plot").first
    explorer.scroll_into_view_if_needed()
    plot.locator("img").first.wait_for(timeout=20_000)
    text_before = readout.inner_text()
    png_before = plot.screenshot()
    explorer.screenshot(path=str(SHOTS / "01_slider_before.png"))

    handle = slider.locator(".noUi-handle, .ui-slider-handle").first
    hb = handle.bounding_box()
    x, y = _slider_drag_target(slider)
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(x, y, steps=8)
    page.mouse.up()

    deadline = time.monotonic() + 20
    text_after, png_after = text_before, png_before
    while time.monotonic() < deadline:
        page.wait_for_timeout(400)
        text_after = readout.inner_text()
        if text_after != text_before and plot.locator("img").count():
            png_after = plot.screenshot()
            if png_after != png_before:
                break
    explorer.screenshot(path=str(SHOTS / "01_slider_after.png"))
    assert text_after != text_before, f"the readout did not change after moving the slider: {text_before!r}"
    assert png_after != png_before, "the plot image did not change after moving the slider"
    assert not _errors(page), "moving the slider produced an error:\n" + "\n".join(_errors(page))
    print(f"slider moved: readout {text_before!r} -> {text_after!r}; plot image changed")


#: The explorable each notebook holds: what to do with the mouse or keyboard, and its screenshot's name.
EXPLORABLES = {"01_": "bars", "02_": "plan", "04_": "text"}


def _check_explorables(page, name: str) -> None:
    """Drag (or type into) the notebook's explorable; its readout is the kit's value and the kernel agrees."""
    import dragging

    kind = next((k for prefix, k in EXPLORABLES.items() if name.startswith(prefix)), None)
    if kind is None:
        return
    if kind == "bars":
        seen = dragging.drag_bar(page, token="dog", to=0.1, kernel=True)
        print(f"bars: ULD {seen['before']} -> {seen['uld']:.6g}; {seen['status']}")
    elif kind == "plan":
        seen = dragging.drag_plan_cell(page, (0, 0), (1, 1), kernel=True)
        best = dragging.snap_plan(page, kernel=True)
        print(f"plan: cost -> {seen['cost']:.6g}, snapped to POT's optimum {best:.6g}")
    else:
        seen = dragging.show_text(page, "déjà vu, twice", kernel=True)
        print(f"text: {seen['state']}")
    seen["root"].screenshot(path=str(SHOTS / f"{Path(name).stem}_explorable_{kind}.png"))
    assert not _errors(page), f"the {kind} explorable produced an error:\n" + "\n".join(_errors(page))
