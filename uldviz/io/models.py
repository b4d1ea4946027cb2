"""Causal language models for the lessons: tiny GPT-2s built from a config, the shipped teacher, hub models.

- :func:`tiny_causal_lm` builds a small ``transformers`` GPT-2 from scratch, reproducibly (seeded).
- :func:`load_teacher` loads the teacher the kit ships in ``data/teacher`` (trained by
  ``python -m uldviz build-teacher``) with its tokenizer and its card (config, recorded score).
- :func:`load_pretrained` loads any hub causal LM or a local ``save_pretrained`` directory; it
  never hangs offline and raises :class:`~uldviz.io.hub.HubUnavailableError` instead.
- :func:`quiet_weight_loading` hides transformers' "Loading weights" progress bar while a local checkpoint
  loads (a notebook would otherwise store it in its outputs); the bar's setting is restored afterwards.

Hub preset for Colab users with a GPU: :data:`HUB_TEACHER` and :data:`HUB_STUDENT`, two real
pretrained models with different tokenizers (Pythia's GPT-NeoX BPE, vocabulary 50,277 in a
50,304-row head, versus GPT-2's BPE, 50,257).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from uldviz.io.hub import HubUnavailableError, check_name, resolve_local_only, unavailable_error
from uldviz.io.tokenizers import load_tokenizer

__all__ = [
    "HUB_TEACHER",
    "HUB_STUDENT",
    "TEACHER_CARD",
    "tiny_causal_lm",
    "parameter_count",
    "teacher_dir",
    "load_teacher",
    "load_pretrained",
    "quiet_weight_loading",
    "HubUnavailableError",
]

#: Suggested hub teacher for the online preset (160 M parameters, GPT-NeoX tokenizer).
HUB_TEACHER = "EleutherAI/pythia-160m"
#: Suggested hub student for the online preset (124 M parameters, GPT-2 tokenizer).
HUB_STUDENT = "gpt2"
#: File name of the teacher's card (JSON: config, seed, command, versions, held-out bits per byte).
TEACHER_CARD = "card.json"


def tiny_causal_lm(vocab_size: int, n_layer: int = 2, n_embd: int = 128, n_head: int = 4, n_positions: int = 128,
                   seed: int = 0, dropout: float = 0.0, eos_token_id: int | None = None,
                   pad_token_id: int | None = None):
    """A small GPT-2 (``GPT2LMHeadModel``) with tied input/output embeddings, initialised from ``seed``.

    The global torch RNG is left untouched (the init uses a forked RNG), so building a model does
    not change what later random calls return.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    for name, value in {"vocab_size": vocab_size, "n_layer": n_layer, "n_embd": n_embd, "n_head": n_head,
                        "n_positions": n_positions}.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be positive, got {value}")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2, got {vocab_size}")
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    config = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
        bos_token_id=eos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = GPT2LMHeadModel(config)
    return model


def parameter_count(model, trainable_only: bool = False) -> int:
    """Number of distinct parameters (tied embeddings counted once); ``trainable_only`` skips frozen ones."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@contextlib.contextmanager
def quiet_weight_loading():
    """Inside the block transformers shows no progress bar ("Loading weights 0/40"); the setting is restored after.

    transformers 5 draws that bar with its own ``tqdm`` (``transformers.utils.logging``) on every
    ``from_pretrained``, even for a local folder of a few megabytes; in a notebook it lands in the saved outputs.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def teacher_dir() -> Path:
    """``data/teacher``: where the shipped teacher checkpoint, tokenizer and card live."""
    from uldviz.env import data_dir

    return Path(data_dir()) / "teacher"


def load_teacher(path=None, device=None):
    """The shipped teacher: ``(model, tokenizer, card)`` from ``data/teacher`` (or ``path``), model in eval mode.

    ``card`` is the dict from its ``card.json``: the config, seed, command that rebuilt it, library
    versions and the held-out bits per byte it reached. Loading shows no progress bar
    (:func:`quiet_weight_loading`).
    """
    from transformers import AutoModelForCausalLM

    path = Path(path) if path is not None else teacher_dir()
    card_file = path / TEACHER_CARD
    if not card_file.is_file():
        raise FileNotFoundError(
            f"no teacher at {path} (missing {TEACHER_CARD}); rebuild it with `python -m uldviz build-teacher`"
        )
    card = json.loads(card_file.read_text())
    with quiet_weight_loading():  # a local folder: nothing to download, the bar would only clutter the outputs
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tok = load_tokenizer(path)
    model.eval()
    if device is not None:
        model.to(device)
    return model, tok, card


def load_pretrained(name_or_path, local_files_only: bool | None = None, device=None, dtype=None):
    """``(model, tokenizer)`` for a hub causal LM (e.g. :data:`HUB_TEACHER`) or a local ``save_pretrained`` dir.

    Offline or unreachable hub (see :func:`uldviz.io.hub.hub_is_offline`) means cached files
    only; a model that cannot be loaded raises :class:`HubUnavailableError` that names it and points
    to :func:`load_teacher`. ``dtype`` (e.g. ``torch.float16``) and ``device`` are applied after loading.
    """
    from transformers import AutoModelForCausalLM

    name = check_name(name_or_path)
    local_only = resolve_local_only(name, local_files_only)
    tok = load_tokenizer(name, local_files_only=local_only)
    try:
        model = AutoModelForCausalLM.from_pretrained(name, local_files_only=local_only)
    except Exception as err:
        if Path(name).is_dir():
            raise ValueError(f"directory {name!r} does not hold a model saved with save_pretrained: {err}") from err
        raise unavailable_error("model", name, local_only, err, "uldviz.io.models.load_teacher()") from err
    if dtype is not None:
        model.to(dtype=dtype)
    if device is not None:
        model.to(device)
    model.eval()
    return model, tok
