"""Run-time settings shared by the notebooks: fast mode for CI, the compute device."""

from __future__ import annotations

import os

import torch

#: The repository's public address: the one place Colab install cells and badges read it from.
REPO_URL = "https://github.com/uldviz/uldviz"

#: Environment variable that switches every notebook to its fast (CI) mode: ``ULDVIZ_FAST=1``.
FAST_ENV = "ULDVIZ_FAST"


def fast_mode() -> bool:
    """True when ``ULDVIZ_FAST`` is set to 1/true/yes: notebooks then use tiny sizes so CI takes seconds."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when present, else CPU; ``requested`` ('cpu', 'cuda', 'cuda:1', 'auto') overrides, with a clear error."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} was requested but no CUDA GPU is available here; use 'cpu'")
    return dev


def data_dir() -> "os.PathLike[str]":
    """The kit's ``data/`` folder (next to the package in a checkout or editable install).

    ``ULDVIZ_DATA`` overrides it; a missing folder raises an error that says how to get it.
    """
    from pathlib import Path

    override = os.environ.get("ULDVIZ_DATA")
    path = Path(override) if override else Path(__file__).resolve().parents[1] / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"the kit's data folder was not found at {path}. Install the kit from a clone of the "
            "repository (pip install -e .), or point ULDVIZ_DATA at its data/ folder."
        )
    return path


def load_average() -> tuple[float, float, float] | None:
    """The machine's 1, 5 and 15-minute load averages, recorded next to timings; None where the OS has none."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):  # Windows has no getloadavg; some systems cannot read it
        return None
