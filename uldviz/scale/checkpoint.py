"""Checkpoints that are complete or absent, and a resume that refuses to drift silently.

A checkpoint (``accelerate``'s model, optimizer and per-process RNG states, plus ``trainer_state.json``: step,
curves, the run's config) is written into ``.tmp_step_N`` and renamed to ``step_N`` only once every file is there,
so ``--resume latest`` never picks a half-written one. Resuming checks every setting that changes the trajectory
against the checkpoint's and refuses a difference unless ``--resume-allow NAME`` names it (recorded in
``result.json``); a missing RNG state (exact resume impossible) needs ``--resume-allow rng``; an unreadable file
is one line that names it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, fields
from pathlib import Path

__all__ = ["STATE_FILE", "trajectory_fields", "save_checkpoint", "find_checkpoint", "load_checkpoint"]

STATE_FILE = "trainer_state.json"
#: Settings that do not change what the student learns (evaluation, logging, where files go); all others do.
_NOT_TRAJECTORY = {"eval_every", "eval_block", "eval_chars", "eval_batch", "log_every", "save_every",
                   "keep_checkpoints", "out_dir", "resume", "resume_allow", "progress", "cpu", "cache_dtype",
                   "cache_shard_examples", "val_data", "workers", "prefetch", "dry_run"}


def trajectory_fields(cfg) -> list[str]:
    """The names of ``cfg``'s fields that change the training trajectory (compared on resume)."""
    return [f.name for f in fields(cfg) if f.name not in _NOT_TRAJECTORY]


def _root(cfg) -> Path:
    return Path(cfg.out_dir) / "checkpoints"


def save_checkpoint(acc, cfg, state: dict, same_run: dict) -> Path:
    """Write the checkpoint of ``state['step']`` into a temporary folder, then rename it: complete or absent."""
    root = _root(cfg)
    final, tmp = root / f"step_{state['step']:07d}", root / f".tmp_step_{state['step']:07d}"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    acc.wait_for_everyone()
    if acc.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps({**state, **same_run, "config": asdict(cfg)}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in _complete(root)[:-cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def _complete(root: Path) -> list[Path]:
    """The complete checkpoints under ``root`` (renamed, with their state file), oldest first."""
    return sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file())


def find_checkpoint(cfg) -> Path:
    """The folder ``cfg.resume`` names; ``'latest'``: the newest complete one under ``out_dir/checkpoints``."""
    if cfg.resume == "latest":
        found = _complete(_root(cfg))
        if not found:
            raise FileNotFoundError(f"--resume latest: no complete checkpoint under {_root(cfg)}")
        return found[-1]
    path = Path(cfg.resume)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"--resume {cfg.resume}: not a complete checkpoint folder (no {STATE_FILE})")
    return path


def _unreadable(path: Path) -> str:
    """The first file of a checkpoint that does not load, with the reason (or '' when all load)."""
    import torch

    for f in sorted(path.iterdir()):
        try:
            if f.suffix == ".safetensors":
                from safetensors.torch import load_file

                load_file(str(f))
            elif f.suffix in (".bin", ".pkl", ".pt"):
                torch.load(f, map_location="cpu", weights_only=False)
            elif f.suffix == ".json":
                json.loads(f.read_text())
        except Exception as err:  # noqa: BLE001 - turned into a one-line message naming the file
            return f"{f} ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else 'unreadable'})"
    return ""


def load_checkpoint(acc, path: Path, cfg, same_run: dict) -> tuple[dict, dict]:
    """Load ``path`` into the prepared model and optimizer after checking it fits ``cfg``; return (state, overrides).

    ``overrides`` maps each setting allowed to differ (``cfg.resume_allow``) to its checkpoint and run values.
    """
    state_file = path / STATE_FILE
    try:
        saved = json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"checkpoint file {state_file} is unreadable ({err})") from None
    allow = set(cfg.resume_allow)
    for key, value in same_run.items():
        if saved.get(key) != value:
            raise ValueError(f"cannot resume exactly from {path}: it was made with {key} = {saved.get(key)!r}, "
                             f"this run has {value!r}")
    old, new = saved.get("config", {}), asdict(cfg)
    differ = {k: {"checkpoint": old.get(k), "run": new[k]} for k in trajectory_fields(cfg) if old.get(k) != new[k]}
    refused = sorted(set(differ) - allow)
    if refused:
        shown = "; ".join(f"{k}: checkpoint {differ[k]['checkpoint']!r}, run {differ[k]['run']!r}" for k in refused)
        raise ValueError(f"resuming {path} with settings that change the trajectory ({shown}); resume with the "
                         f"checkpoint's settings, or allow them explicitly: --resume-allow {' '.join(refused)}")
    rng = path / f"random_states_{acc.process_index}.pkl"
    if not rng.is_file() and "rng" not in allow:
        raise ValueError(f"{rng} is missing: without it the run cannot continue exactly; --resume-allow rng "
                         "continues anyway (recorded in result.json)")
    try:
        acc.load_state(str(path))
    except Exception as err:  # noqa: BLE001 - name the file instead of a deep traceback
        bad = _unreadable(path)
        raise ValueError(f"checkpoint file {bad or path} is unreadable"
                         + ("" if bad else f" ({type(err).__name__}: {err})")) from None
    overrides = {k: v for k, v in differ.items() if k in allow}
    if not rng.is_file():
        overrides["rng"] = {"checkpoint": "missing", "run": "continued without it"}
    return saved, overrides
