"""The course as static HTML: execute every lesson notebook and render it, with an index page (``make site``).

``python -m uldviz.course.site [--out site] [--only 01 02] [--record] [--solutions]`` runs each
``notebooks/NN_*.ipynb`` lesson and each ``notebooks/NNx_*.ipynb`` optional page (e.g. ``02b``) top to bottom
in a fresh kernel (default mode; the small fast mode only when ``ULDVIZ_FAST=1`` is set, as in the tests), keeps
the widgets' last state (nbclient's ``store_widget_state``), renders each executed notebook with nbconvert's HTML
exporter, keeps the explorables (:mod:`uldviz.viz.explorables`, anywidget) live with no kernel and offline (their
ES module is embedded in the page and mounted with the saved state through a small model shim,
``explorable_shim.js``), adds a static snapshot of every other widget's plots and readout (shown only when the
page cannot load the widget library from its CDN), and writes ``index.html``. Plots are PNG images inside the
pages, so they show everywhere. ``--record`` stores each notebook's measured run in ``data/lessons.json``
(see :mod:`uldviz.course.lessons`). Nothing here is imported by the notebooks.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import functools
import hashlib
import html
import json
import math
import os
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from uldviz.course import lessons
from uldviz.env import FAST_ENV, fast_mode, load_average

__all__ = ["LESSON_GLOB", "cell_timeout", "MessageTrace", "execute", "mount_explorables", "add_widget_snapshots",
           "render_html", "index_html", "build_site", "main"]

#: The notebooks a site is made of: ``notebooks/NN_name.ipynb`` lessons and ``NNx_name.ipynb`` optional pages.
LESSON_GLOB = lessons.LESSON_GLOB
_SNAPSHOT_CSS = """<style>
/* the live widget rendered (its library loaded from the CDN): hide the static snapshot under it */
.jp-OutputArea:has(.jupyter-widgets .lm-Widget) .uldviz-widget-snapshot,
.jp-OutputArea:has(.jupyter-widgets .p-Widget) .uldviz-widget-snapshot { display: none; }
.uldviz-widget-snapshot { border-left: 3px solid #ccc; padding-left: 0.8em; }
.uldviz-widget-snapshot .uldviz-note { color: #666; font-size: 90%; }
.uldviz-explorable-view:empty::before { content: "Loading the explorable (it runs in your browser) …"; color: #666; }
</style>"""
#: The anywidget model an explorable's view points at (``_esm`` holds its ES module).
ANYWIDGET_MODEL = "AnyModel"
_SHIM = Path(__file__).with_name("explorable_shim.js")


@contextlib.contextmanager
def _kernel_environment():
    """Kernels inherit os.environ: never MPLBACKEND=Agg there (figures would become text)."""
    saved = os.environ.pop("MPLBACKEND", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MPLBACKEND"] = saved


class _PeakMemory:
    """Polls a kernel's resident memory (with its child processes) in a thread; ``peak_mb`` is the maximum seen.

    Needs ``psutil`` (installed with Jupyter); without it ``peak_mb`` stays None.
    """

    def __init__(self, km, every_s: float = 0.2):
        import threading

        self.km, self.every_s, self.peak_mb = km, every_s, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        while not self._stop.wait(self.every_s):
            pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
            if pid is None:
                continue
            try:
                proc = psutil.Process(pid)
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                continue
            self.peak_mb = max(self.peak_mb or 0.0, rss / 2**20)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


#: A cell may run this many times its notebook's measured Run All (data/lessons.json), and at least
#: MIN_CELL_TIMEOUT seconds; a notebook with no measurement gets UNMEASURED_CELL_TIMEOUT.
TIMEOUT_FACTOR = 5
MIN_CELL_TIMEOUT = 60
UNMEASURED_CELL_TIMEOUT = 1800
#: Seconds to wait for a cell's idle status after its reply; past them the run fails (a lost IOPub message).
IOPUB_TIMEOUT = 10
#: Longest single wait on a kernel socket. pyzmq's asyncio poll can miss the wake-up of a message that has
#: arrived (measured: a cell's reply was read exactly at the cell timeout, 776 s, with no error); each slice
#: ends with a real check of the socket, so such a message is read within POLL_SLICE seconds instead.
POLL_SLICE = 1.0


def cell_timeout(path) -> int:
    """Seconds one cell of ``path`` may run: ``TIMEOUT_FACTOR`` x its recorded run, at least ``MIN_CELL_TIMEOUT``."""
    seconds = lessons.read_record().get("notebooks", {}).get(Path(path).stem, {}).get("run_seconds")
    return max(MIN_CELL_TIMEOUT, math.ceil(TIMEOUT_FACTOR * seconds)) if seconds else UNMEASURED_CELL_TIMEOUT


class MessageTrace:
    """What a NotebookClient read: the last messages (seconds into the run, cell, channel, type, and how long after
    the kernel sent it when that was over a second), IOPub counts and client-side seconds per cell. A stall's evidence.
    """

    def __init__(self, size: int = 12):
        self.cell, self.last, self.t0 = -1, collections.deque(maxlen=size), time.perf_counter()
        self.counts: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        self.seconds: dict[int, float] = {}
        self.done_at: float | None = None
        self.late = 0  # messages read more than a second after the kernel sent them

    def attach(self, client) -> None:
        """Record every message ``client`` reads from now on (its hooks set the current cell and time it)."""
        client.on_notebook_start = lambda notebook: [self._wrap(client.kc, c) for c in ("iopub", "shell")]
        client.on_cell_execute = lambda cell, cell_index: self._start(cell_index)
        client.on_cell_executed = lambda cell, cell_index, execute_reply: self._done(cell_index)

    def _start(self, index: int) -> None:
        """A cell starts: later messages are its messages."""
        self.cell, self._cell_t0 = index, time.perf_counter()

    def _done(self, index: int) -> None:
        """A cell is done: its client-side seconds, and the end of the run so far (before the kernel's shutdown)."""
        self.done_at = time.perf_counter()
        self.seconds[index] = round(self.done_at - self._cell_t0, 2)

    def _wrap(self, kc, name: str) -> None:
        """Wrap the channel's ``get_msg`` (an async client's) so each message is noted before nbclient sees it."""
        channel = getattr(kc, f"{name}_channel")
        get_msg = channel.get_msg

        async def traced(*args, **kwargs):
            msg = await get_msg(*args, **kwargs)
            kind = msg["msg_type"]
            if kind == "status":
                kind += ":" + msg["content"].get("execution_state", "")
            sent = msg["header"].get("date")
            late = time.time() - sent.timestamp() if hasattr(sent, "timestamp") else 0.0
            self.last.append(f"{time.perf_counter() - self.t0:.1f}s cell {self.cell} {name} {kind}"
                             + (f" (sent {late:.1f}s earlier)" if late > 1 else ""))
            self.late += late > 1
            if name == "iopub":
                self.counts[self.cell][kind] += 1
            return msg

        channel.get_msg = traced


def _poll_in_slices(kc) -> None:
    """Make the client's shell and IOPub waits poll at most ``POLL_SLICE`` s at a time (why: see POLL_SLICE)."""
    from queue import Empty

    for name in ("shell", "iopub"):
        channel = getattr(kc, f"{name}_channel")

        async def sliced(timeout=None, _get_msg=channel.get_msg):
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = POLL_SLICE if deadline is None else deadline - time.monotonic()
                try:
                    return await _get_msg(timeout=max(0.0, min(POLL_SLICE, left)))
                except Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise

        channel.get_msg = sliced


def _first_line(nb, index: int) -> str:
    """The first line of cell ``index`` (what names the cell in an error)."""
    return nb.cells[index].source.strip().splitlines()[0][:80] if 0 <= index < len(nb.cells) else "?"


def execute(path, *, timeout: int | None = None, solutions: bool = False, append=(), memory: dict | None = None,
            trace: MessageTrace | None = None):
    """Run ``path`` in a fresh kernel from its own folder, then shut the kernel down; return ``(notebook, seconds)``.

    ``timeout``: seconds one cell may run (default :func:`cell_timeout`). A cell past it, a lost IOPub message
    (no idle status ``IOPUB_TIMEOUT`` s after the reply) or a dead kernel raise a RuntimeError naming the cell
    and the last messages read. The async kernel manager is what makes these timeouts work: with a blocking one,
    nbclient's wait for IOPub blocks its event loop, so a lost message hung the run for ever and no timeout fired.
    ``solutions=True`` sets the notebook's ``SHOW_SOLUTIONS = True`` first (an instructor's copy); ``append`` holds
    the sources of code cells added after the notebook's own and run in the same kernel (the returned notebook has
    them at its end). A ``memory`` dict receives ``peak_mb``, the kernel's peak resident memory (polled every
    0.2 s); ``trace`` records messages.
    """
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    if solutions:
        lessons.set_flag(nb, "SHOW_SOLUTIONS", True)
    nb.cells += [nbformat.v4.new_code_cell(source) for source in append]
    trace = trace if trace is not None else MessageTrace()
    with _kernel_environment(), tempfile.TemporaryDirectory(prefix="uldviz-site-") as sockets:
        # IPC sockets in a private folder: no TCP port race with other kernels on the machine
        km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "kernel"))
        client = NotebookClient(nb, km=km, timeout=cell_timeout(path) if timeout is None else timeout,
                                iopub_timeout=IOPUB_TIMEOUT, raise_on_iopub_timeout=True, store_widget_state=True,
                                resources={"metadata": {"path": str(path.parent)}})
        trace.attach(client)
        traced_start = client.on_notebook_start  # slice the polls first, then trace what they return
        client.on_notebook_start = lambda notebook: (_poll_in_slices(client.kc), traced_start(notebook=notebook))
        start = time.perf_counter()
        try:
            with _PeakMemory(km) as peak:
                client.execute(cleanup_kc=True)  # we made km, so nbclient shuts the kernel down (it would not)
        except CellExecutionError as err:
            raise RuntimeError(f"{path.name} failed while running headless:\n{err}") from None
        except (CellTimeoutError, DeadKernelError) as err:
            lines = str(err).strip().splitlines() or [type(err).__name__]
            reason = next((ln for ln in lines if ln.startswith("The message was")), lines[0])  # iopub or cell
            raise RuntimeError(f"{path.name} stalled in cell {trace.cell} ({_first_line(nb, trace.cell)!r}): {reason}"
                               f"\nlast messages read: {'; '.join(trace.last)}") from None
        seconds = (trace.done_at or time.perf_counter()) - start  # start-up and cells, not the shutdown
        if memory is not None:
            memory["peak_mb"] = peak.peak_mb
    return nb, seconds


def _widget_parts(model_id: str, state: dict, seen: set) -> tuple[list[str], list[str]]:
    """(PNG images as base64, readout HTML/text lines) of a widget and everything inside it."""
    model = state.get(model_id)
    if model is None or model_id in seen:
        return [], []
    seen.add(model_id)
    st, name = model.get("state", {}), model.get("model_name", "")
    images, lines = [], []
    if name == "OutputModel":
        for out in st.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                images.append(png if isinstance(png, str) else "".join(png))
    elif name == "HTMLModel" and st.get("value"):
        lines.append(st["value"])
    elif "Slider" in name and "value" in st:
        lines.append(f"<code>{html.escape(str(st.get('description', '')))} = {html.escape(str(st['value']))}</code>")
    for child in lessons.child_model_ids(model):
        more_images, more_lines = _widget_parts(child, state, seen)
        images += more_images
        lines += more_lines
    return images, lines


def _blob(kind: str, text: str, written: set) -> tuple[str, str]:
    """(id, HTML) of a text embedded once per page as base64 (``uldviz-<kind>-<id>``); '' when already written."""
    key = hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
    if (kind, key) in written:
        return key, ""
    written.add((kind, key))
    b64 = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return key, f'<script type="text/plain" id="uldviz-{kind}-{key}">{b64}</script>'


def mount_explorables(nb) -> int:
    """Replace every explorable's widget view by a holder that the page's shim mounts live, with no kernel.

    An explorable is an anywidget model (``AnyModel`` with an ``_esm``) in the notebook's saved widget state.
    The holder embeds its ES module and CSS (base64, once per page) and its saved state (JSON); the shim
    (``explorable_shim.js``, added by :func:`render_html`) imports the module and calls its ``render``
    with a model made from that state, flagged ``static_page`` (the widget then says that no kernel
    referees it). Returns how many views were replaced.
    """
    import nbformat

    state = lessons.widget_state(nb) or {}
    written: set = set()
    mounted = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(lessons.WIDGET_MIME)
            model = state.get(view.get("model_id", "")) if view else None
            saved = dict((model or {}).get("state", {}))
            if not model or model.get("model_name") != ANYWIDGET_MODEL or not saved.get("_esm"):
                outputs.append(out)
                continue
            esm, esm_html = _blob("esm", saved.pop("_esm"), written)
            css, css_html = _blob("css", saved.pop("_css", ""), written)
            data = json.dumps(saved, ensure_ascii=False).replace("</", "<\\/")
            holder = (f'<div class="uldviz-explorable" data-model-id="{html.escape(view["model_id"], quote=True)}" '
                      f'data-esm="{esm}" data-css="{css}">{esm_html}{css_html}'
                      f'<script type="application/json" class="uldviz-explorable-state">{data}</script>'
                      '<div class="uldviz-explorable-view"></div></div>')
            outputs.append(nbformat.v4.new_output("display_data", data={"text/html": holder}))
            mounted += 1
        cell.outputs = outputs
    return mounted


def add_widget_snapshots(nb) -> int:
    """After every widget output, add a static HTML snapshot of its last state (plots, readouts, slider values).

    The state comes from the notebook's embedded widget state (nbclient ``store_widget_state``).
    Returns how many snapshots were added.
    """
    import nbformat

    state = lessons.widget_state(nb) or {}
    added = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            outputs.append(out)
            view = out.get("data", {}).get(lessons.WIDGET_MIME)
            if not view:
                continue
            images, lines = _widget_parts(view.get("model_id", ""), state, set())
            if not images and not lines:
                continue
            body = "".join(f"<div>{line}</div>" for line in lines[:12])
            body += "".join(f'<img src="data:image/png;base64,{png.strip()}" alt="widget plot">' for png in images)
            snapshot = ('<div class="uldviz-widget-snapshot"><div class="uldviz-note">Snapshot of this widget when the '
                        "page was built: moving it needs a kernel (run the notebook in Jupyter or Colab):</div>"
                        f"{body}</div>")
            outputs.append(nbformat.v4.new_output("display_data", data={"text/html": snapshot}))
            added += 1
        cell.outputs = outputs
    return added


def render_html(nb, title: str = "uldviz lesson") -> str:
    """One executed notebook as a standalone HTML page (nbconvert's ``lab`` template; PNGs embedded).

    A page with explorables (:func:`mount_explorables`) also gets the shim that mounts them.
    """
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = body.replace("</head>", _SNAPSHOT_CSS + "\n</head>", 1)
    if 'class="uldviz-explorable"' in body:  # the explorables' model shim, once per page
        shim = _SHIM.read_text(encoding="utf-8")
        body = body.replace("</body>", f'<script type="module">\n{shim}</script>\n</body>', 1)
    return body


def _title(nb, fallback: str) -> str:
    """The notebook's first level-1 heading."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return fallback


def _stated_time(nb) -> str:
    """The time statement of the notebook (between the lessons markers), or ''."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and lessons.TIME_START in cell.source:
            return cell.source.split(lessons.TIME_START, 1)[1].split(lessons.TIME_END, 1)[0].strip()
    return ""


def index_html(entries: list[dict], *, mode: str, built: str, repo_url: str | None = None) -> str:
    """The index page: one row per lesson (title, link, stated time, this build's run time)."""
    from uldviz.course.colab import colab_url

    rows = []
    on_github = bool(repo_url) and "github.com/" in repo_url
    for e in entries:
        colab = (f' · <a href="{html.escape(colab_url(e["notebook"], repo_url))}">open in Colab</a>' if on_github
                 else "")
        rows.append(
            f'<li><a class="lesson" href="{html.escape(e["page"])}">{html.escape(e["title"])}</a>{colab}'
            f'<br><span class="meta">{html.escape(e["stated_time"] or "")}</span>'
            f'<br><span class="meta">Run here in {e["seconds"]:.0f} s ({mode} mode).</span></li>'
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>uldviz: the lessons</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{ font-family: system-ui, sans-serif; max-width: 52em; margin: 2em auto; padding: 0 1em;
line-height: 1.45; }} li {{ margin-bottom: 1em; }} .meta {{ color: #555; font-size: 90%; }}</style></head>
<body>
<h1>uldviz: cross-tokenizer distillation and the ULD loss</h1>
<p>The lessons of the kit, executed and rendered as static pages: read them without installing anything.
Plots are images. The explorables (bars, plans and texts you drag or type into) run live in this page, in
your browser; the other widgets show their last state (their sliders need a kernel: run the notebooks on
Binder, Colab or a laptop to move them).</p>
<ol>
{chr(10).join(rows)}
</ol>
<p class="meta">Built {html.escape(built)} in {mode} mode with <code>python -m uldviz.course.site</code>.</p>
</body></html>
"""


def _measured_run(path, **kwargs):
    """:func:`execute` ``path``; return (notebook, seconds, the kernel's peak memory in MB or None)."""
    memory: dict = {}
    nb, seconds = execute(path, memory=memory, **kwargs)
    return nb, seconds, memory.get("peak_mb")


def build_site(out="site", *, notebooks_dir=None, only=None, timeout: int | None = None, record=None,
               solutions: bool = False, run=None, log=print) -> dict:
    """Execute and render every lesson into ``out``; return a summary (pages, seconds, bytes, mode).

    ``only`` keeps notebooks whose name starts with one of its prefixes (e.g. ``["01", "02"]``);
    ``record`` (a path, or True for ``data/lessons.json``) stores each measured run for
    :mod:`uldviz.course.lessons` and is refused in fast mode, whose run times would be meaningless.
    ``run(path)`` returns ``(executed notebook, seconds, kernel peak MB or None)`` in place of executing here
    (the tests pass the runs they made already); the notebook it returns is changed (widgets mounted).
    """
    from uldviz.env import REPO_URL

    mode = "fast" if fast_mode() else "default"
    if record and mode == "fast":
        raise ValueError(f"refusing to record run times in fast mode: unset {FAST_ENV} to measure the default run")
    if record and solutions:
        raise ValueError("refusing to record run times with --solutions: the stated times are for a learner's Run All")
    folder = Path(notebooks_dir) if notebooks_dir is not None else lessons.notebooks_folder()
    paths = lessons.page_paths(folder)  # lessons, each followed by its optional pages
    if only:
        paths = [p for p in paths if any(p.name.startswith(str(o)) for o in only)]
    if not paths:
        raise FileNotFoundError(f"no lesson notebooks matching {LESSON_GLOB!r} or {lessons.OPTIONAL_GLOB!r} "
                                f"(only={only}) in {folder}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if run is None:
        run = functools.partial(_measured_run, timeout=timeout, solutions=solutions)
    start, entries = time.perf_counter(), []
    for path in paths:
        log(f"executing {path.name} ({mode} mode) ...")
        nb, seconds, peak_mb = run(path)
        if record:
            stats = lessons.notebook_stats(nb, name=path.stem, run_seconds=seconds)
            load = load_average()
            machine = {"cpus": os.cpu_count(), "load_avg_1m": None if load is None else round(load[0], 2),
                       "recorded_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
                       "kernel_peak_mb": None if peak_mb is None else round(peak_mb)}
            lessons.record_run(stats, None if record is True else record, machine=machine)
        explorables = mount_explorables(nb)
        snapshots = add_widget_snapshots(nb)
        page = out / f"{path.stem}.html"
        title = _title(nb, path.stem)
        page.write_text(render_html(nb, title), encoding="utf-8")
        entries.append({"notebook": path.name, "page": page.name, "title": title,
                        "stated_time": _stated_time(nb), "seconds": seconds, "peak_mb": peak_mb,
                        "snapshots": snapshots, "explorables": explorables,
                        "bytes": page.stat().st_size})
        log(f"  {page.name}: ran in {seconds:.1f} s, {page.stat().st_size / 1e6:.1f} MB, {snapshots} widget snapshots, "
            f"{explorables} live explorables")
    built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (out / "index.html").write_text(index_html(entries, mode=mode, built=built, repo_url=REPO_URL), encoding="utf-8")
    summary = {"mode": mode, "built": built, "seconds": round(time.perf_counter() - start, 1), "pages": entries,
               "bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file())}
    (out / "build.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(f"site in {out}/: {len(entries)} lessons, {summary['bytes'] / 1e6:.1f} MB, built in {summary['seconds']:.0f} s")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line of :func:`build_site`."""
    ap = argparse.ArgumentParser(prog="python -m uldviz.course.site", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="site", help="output folder (default: site/, git-ignored)")
    ap.add_argument("--only", nargs="*", default=None, help="notebook name prefixes to build, e.g. 01 02")
    ap.add_argument("--timeout", type=int, default=None,
                    help=f"seconds one cell may run (default: {TIMEOUT_FACTOR} x the notebook's recorded run, "
                         f"at least {MIN_CELL_TIMEOUT})")
    ap.add_argument("--record", action="store_true",
                    help="store each measured run in data/lessons.json (default mode only); then run "
                         "`python -m uldviz.course.lessons --write` to update the stated times")
    ap.add_argument("--solutions", action="store_true", help="an instructor's copy: run with SHOW_SOLUTIONS = True")
    args = ap.parse_args(argv)
    try:
        build_site(args.out, only=args.only, timeout=args.timeout, record=args.record, solutions=args.solutions)
    except (FileNotFoundError, ValueError) as err:  # no lesson matches --only; --record in fast mode
        ap.error(str(err))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
