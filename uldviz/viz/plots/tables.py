"""Markdown tables for ``IPython.display.Markdown``: one formatter for every notebook and widget."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["markdown_table", "records_table"]


def _cell(value, fmt: str) -> str:
    """One cell: floats with ``fmt``, None as '–', pipes and newlines escaped so the table stays one row per line."""
    if value is None:
        return "–"
    if isinstance(value, (float, np.floating)):
        return format(value, fmt)
    return str(value).replace("|", "\\|").replace("\n", "⏎")


def markdown_table(header: Sequence, rows: Sequence[Sequence], fmt: str = ".4f") -> str:
    """A Markdown table: the ``header`` cells, then one sequence of cells per row (floats formatted with ``fmt``)."""
    lines = ["| " + " | ".join(_cell(h, fmt) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v, fmt) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def records_table(records: Sequence[Mapping], columns: Sequence[str] | None = None, fmt: str = ".3g") -> str:
    """:func:`markdown_table` of dicts: ``columns`` (default: the first record's keys), missing cells left empty."""
    if not records:
        raise ValueError("records_table needs at least one record")
    columns = list(columns) if columns is not None else list(records[0].keys())
    return markdown_table(columns, [[r.get(c, "") for c in columns] for r in records], fmt)
