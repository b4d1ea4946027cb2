"""Is the Hugging Face Hub reachable? Hub access for the kit's loaders that never hangs and fails by name.

When ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) is set, or the hub's host does not answer
within a couple of seconds, loaders use only locally cached files (:func:`resolve_local_only`), and a
name that cannot be loaded raises :class:`HubUnavailableError` naming it and the offline alternative
(:func:`unavailable_error`). Used by :mod:`uldviz.io.tokenizers`, :mod:`uldviz.io.models` and :mod:`uldviz.io.corpus`.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["HubUnavailableError", "hub_is_offline", "resolve_local_only", "check_name", "unavailable_error"]


class HubUnavailableError(OSError):
    """The Hugging Face Hub cannot provide a model or tokenizer (offline, unreachable or unknown name)."""


def _env_true(name: str) -> bool:
    """True when environment variable ``name`` is set to 1/true/yes/on."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@functools.lru_cache(maxsize=4)
def _host_reachable(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to host:port opens within ``timeout`` seconds (DNS included; cached per process)."""
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)  # getaddrinfo ignores socket timeouts: never wait longer than this
    return bool(result and result[0])


def hub_is_offline(timeout: float = 2.0) -> bool:
    """True when ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set or the hub does not answer within ``timeout`` s."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme != "http" else 80)
    return not _host_reachable(host, port, float(timeout))


def resolve_local_only(name_or_path, local_files_only: bool | None) -> bool:
    """Local directories never touch the network; otherwise ``None`` means 'only if the hub is offline'."""
    if Path(str(name_or_path)).is_dir():
        return True
    if local_files_only is None:
        return hub_is_offline()
    return bool(local_files_only)


def check_name(name_or_path) -> str:
    """Accept a non-empty str or path as a model name; clear TypeError/ValueError otherwise."""
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str):
        raise TypeError(f"name_or_path must be a str or a path, got {type(name_or_path).__name__}")
    if not name_or_path.strip():
        raise ValueError("name_or_path is empty: give a hub name such as 'gpt2' or a local directory")
    return name_or_path


def unavailable_error(what: str, name: str, local_only: bool, err: Exception, fallback: str) -> HubUnavailableError:
    """The error raised when a hub name cannot be loaded: what, why, and the offline alternative."""
    why = (
        "the Hugging Face Hub is offline or unreachable here and it is not in the local cache"
        if local_only
        else "it could not be downloaded (unknown name, no network, or a private model)"
    )
    return HubUnavailableError(
        f"cannot load {what} {name!r}: {why}. Offline, use {fallback} instead. (cause: {type(err).__name__}: "
        f"{str(err).splitlines()[0] if str(err) else ''})"
    )
