"""What every explorable shares: its ES module and CSS from ``static/``, and the kernel as referee.

An explorable computes in the browser (JavaScript, so it follows the hand and lives on the static site);
when a kernel is connected, each state the learner makes comes back here (``request``), the kit's own
Python recomputes it (:meth:`Explorable.referee`) and the answer goes out in ``reply``, which the page
compares with its own numbers. ``static_page`` is True only in the static course, where no kernel answers.
"""

from __future__ import annotations

import math
from importlib.resources import files

import anywidget
import traitlets

__all__ = ["STATIC", "module_source", "stylesheet", "number", "Explorable"]

#: The folder of the explorables' JavaScript and CSS (package data).
STATIC = files("uldviz.viz.explorables") / "static"


def module_source(name: str) -> str:
    """The ES module of explorable ``name``: ``common.js`` then ``<name>.js``, one self-contained module.

    anywidget loads each widget's module on its own (no relative imports), so the shared helpers are
    prepended here; nothing is fetched from a CDN.
    """
    own = STATIC / f"{name}.js"
    if not own.is_file():
        known = sorted(p.name[:-3] for p in STATIC.iterdir() if p.name.endswith(".js") and p.name != "common.js")
        raise ValueError(f"no explorable module {name!r}; known: {known}")
    return (STATIC / "common.js").read_text(encoding="utf-8") + "\n" + own.read_text(encoding="utf-8")


def stylesheet() -> str:
    """The CSS every explorable uses."""
    return (STATIC / "explorables.css").read_text(encoding="utf-8")


def number(x) -> str:
    """A float as text the page reads with ``Number()``: JSON has no inf or NaN ('Infinity', 'NaN', '0.25')."""
    v = float(x)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


class Explorable(anywidget.AnyWidget):
    """Base of the explorables: the request/reply round trip with the kernel and the static-page flag.

    A subclass sets ``_esm = module_source(name)`` and implements :meth:`referee`, which recomputes the
    current state with the kit's functions and returns the numbers the page compares (as :func:`number` text).
    """

    _css = stylesheet()
    #: True only on the static site (its page shim sets it): no kernel will answer there.
    static_page = traitlets.Bool(False).tag(sync=True)
    #: Bumped by the page each time it wants the kernel to recompute the state it just sent.
    request = traitlets.Int(0).tag(sync=True)
    #: The kernel's answer to ``request``: ``{"request": n, ...numbers...}`` or ``{"request": n, "error": why}``.
    reply = traitlets.Dict().tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.observe(self._on_request, names="request")

    def _on_request(self, change=None) -> None:
        """Recompute the state the page sent and answer; a state the kit refuses is answered with the reason."""
        try:
            answer = self.referee()
        except (ValueError, TypeError) as exc:
            answer = {"error": str(exc)}
        self.reply = {"request": self.request, **answer}

    def referee(self) -> dict:
        """The kit's numbers for the current state (overridden by every explorable)."""
        raise NotImplementedError
