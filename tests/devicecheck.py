"""A CPU stand-in for a GPU: tensors the kit creates without an explicit ``device=`` land on ``meta``.

On a GPU, a tensor made with ``torch.zeros(n)`` inside a loss or a pairing sits on the CPU while the inputs sit on
CUDA, and the next operation that mixes them fails. On a CPU-only machine both are on the CPU and nothing fails.
:class:`StrayFactories` intercepts the factory functions (``zeros``, ``arange``, ``tensor``, ``randperm``, ...)
called from the kit's own code (a frame under ``uldviz/``) without a ``device=`` and makes them on the ``meta``
device instead: mixing one with a real (CPU) input then raises ("Tensor on device meta is not on the expected
device cpu"), exactly where CUDA would. ``*_like`` factories follow their input and are left alone; so are calls
from torch, transformers or accelerate (their device handling is theirs), and ``torch.as_tensor`` of a tensor
(which keeps the tensor where it is). Code that runs on the CPU by design says so with ``device="cpu"``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

import uldviz

KIT = str(Path(uldviz.__file__).resolve().parent)
FACTORIES = {torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.tensor, torch.eye, torch.rand,
             torch.randn, torch.randint, torch.randperm, torch.linspace, torch.as_tensor}


def _called_from_kit() -> bool:
    """Whether the factory was called directly by the kit's code (not by torch, transformers, ... on its behalf)."""
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename == __file__
                                 or frame.f_code.co_filename.endswith("torch/overrides.py")):
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename.startswith(KIT)


class StrayFactories(TorchFunctionMode):
    """Within the block, the kit's device-less factory calls make ``meta`` tensors (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.redirected = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in FACTORIES and kwargs.get("device") is None and _called_from_kit():
            keeps_tensor = func in (torch.as_tensor, torch.tensor) and args and isinstance(args[0], torch.Tensor)
            if not keeps_tensor:
                kwargs["device"] = "meta"
                self.redirected += 1
        return func(*args, **kwargs)
