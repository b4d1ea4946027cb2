"""Generated blocks inside hand-written files: the text between two marker comments, read or replaced.

The README's results, the lessons' stated times and ``docs/scale.md``'s measurements are written by code into such
blocks, so that no number in them is typed by hand and a test can check a block is current.
"""

from __future__ import annotations

__all__ = ["read_between", "replace_between"]


def _span(text: str, start: str, end: str) -> tuple[int, int]:
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if i < 0 or j < 0:
        raise ValueError(f"markers {start!r} ... {end!r} not found in order")
    return i + len(start), j


def read_between(text: str, start: str, end: str) -> str:
    """What lies between the first ``start`` marker and the ``end`` marker after it."""
    i, j = _span(text, start, end)
    return text[i:j]


def replace_between(text: str, start: str, end: str, new: str) -> str:
    """``text`` with what lies between the markers ``start`` and ``end`` replaced by ``new`` (markers kept)."""
    i, j = _span(text, start, end)
    return text[:i] + new + text[j:]
