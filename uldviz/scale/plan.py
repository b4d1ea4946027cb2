"""``python -m uldviz train --dry-run``: the memory per GPU and the time of a run, from the two models' configs alone.

Reads each model's ``config.json`` (a hub name or a ``save_pretrained`` folder), counts its parameters by building
it on the ``meta`` device (no weights are allocated or downloaded), and prints :func:`uldviz.scale.arithmetic.estimate`
for the run's batch, sequence length, accumulation, processes, loss and precision; then exits.
"""

from __future__ import annotations

import os
from pathlib import Path

from uldviz.scale.arithmetic import PEAK_FLOPS, RunShape, duration, estimate, gigabytes
from uldviz.scale.measure import COEFFICIENTS, loss_key

__all__ = ["model_shape", "launch_shape", "plan", "render_plan", "dry_run"]


def model_shape(name: str) -> dict:
    """Parameters, output rows (vocabulary), layers, width, context and stored dtype of a causal LM, from its config.

    Offline, a hub name that is not in the local cache raises :class:`uldviz.io.hub.HubUnavailableError` (one line).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from uldviz.io.hub import check_name, resolve_local_only, unavailable_error

    name = check_name(name)
    local = resolve_local_only(name, None)
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=local)
    except Exception as err:
        if Path(name).is_dir():
            raise ValueError(f"directory {name!r} holds no model config (config.json written by save_pretrained)"
                             ) from err
        raise unavailable_error("the config of", name, local, err, "a local save_pretrained folder") from err
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            model = AutoModelForCausalLM.from_config(config)
    except ValueError as err:
        raise ValueError(f"{name!r} is not a causal language model ({type(config).__name__})") from err
    context = next((v for k in ("n_positions", "max_position_embeddings", "n_ctx")
                    if isinstance(v := getattr(config, k, None), int) and v > 0), None)
    stored = config.to_dict()  # (older transformers call it torch_dtype; reading that attribute now warns)
    dtype = stored.get("dtype") or stored.get("torch_dtype")
    return {"name": name, "params": sum(p.numel() for p in model.parameters()),
            "vocab": int(model.get_output_embeddings().weight.shape[0]), "layers": int(config.num_hidden_layers),
            "width": int(config.hidden_size), "context": context,
            "dtype": str(dtype).removeprefix("torch.") if dtype else "float32"}


def launch_shape(cfg) -> dict:
    """Processes, FSDP and precision as ``accelerate launch`` sets them (its environment); ``--bf16`` decides first."""
    env = os.environ
    bf16 = cfg.bf16 if cfg.bf16 is not None else env.get("ACCELERATE_MIXED_PRECISION", "no") == "bf16"
    return {"processes": int(env.get("WORLD_SIZE", "1")), "fsdp": env.get("ACCELERATE_USE_FSDP", "").lower() == "true",
            "bf16": bool(bf16), "device": "cpu" if cfg.cpu else "cuda"}


def _check_context(shape: dict, tokens: int, what: str) -> None:
    if shape["context"] is not None and tokens > shape["context"]:
        raise ValueError(f"{what} {tokens} is longer than the context of {shape['name']!r} ({shape['context']} tokens);"
                         " lower it")


def plan(cfg) -> dict:
    """Everything :func:`render_plan` prints: the two models' shapes, the launch, the :class:`RunShape` and estimate."""
    from uldviz.scale.loading import require_teacher
    from uldviz.train.objectives import Objective

    cached = bool(cfg.teacher_cache)
    probe = Objective(cfg, cache=object() if cached else None)  # an unknown loss or an ignored option fails here
    if probe.needs_teacher:
        require_teacher(cfg)
    launch = launch_shape(cfg)
    student = model_shape(cfg.student)
    teacher = model_shape(cfg.teacher) if probe.needs_teacher else None
    for shape in (student, teacher) if teacher else (student,):
        _check_context(shape, cfg.max_tokens, "--max-tokens")
    key = loss_key(cfg.loss, cfg.top_k, cached) if probe.distills else "ce"
    world = launch["processes"]
    tokens = cfg.steps * cfg.batch_size * cfg.grad_accum * world * cfg.max_tokens
    teacher_dtype = "bfloat16" if launch["bf16"] else (teacher["dtype"] if teacher else "float32")
    run = RunShape(teacher_params=teacher["params"] if teacher else 0, student_params=student["params"],
                   teacher_dtype=teacher_dtype if teacher_dtype in ("float32", "bfloat16", "float16") else "float32",
                   teacher_vocab=teacher["vocab"] if teacher else 0, student_vocab=student["vocab"],
                   student_layers=student["layers"], student_width=student["width"], micro_batch=cfg.batch_size,
                   seq_len=cfg.max_tokens, tokens=float(tokens), gpus=world, fsdp=launch["fsdp"], loss=key,
                   bf16=launch["bf16"], device=launch["device"],
                   peak_flops=PEAK_FLOPS["bf16" if launch["bf16"] else "fp32"])
    return {"teacher": teacher, "student": student, "launch": launch, "cached": cached, "shape": run,
            "estimate": estimate(run)}


def render_plan(p: dict, cfg) -> str:
    """The dry run's text: models, run, memory per GPU by part, time."""
    s, t, launch, run, e = p["student"], p["teacher"], p["launch"], p["shape"], p["estimate"]

    def model(m, role, weights):
        context = f"{m['context']:,}" if m["context"] else "?"
        return (f"{role} {m['name']}: {m['params']:,} parameters, {m['layers']} layers x {m['width']:,}, "
                f"vocabulary {m['vocab']:,}, context {context} -> {weights}")

    world = launch["processes"]
    lines = ["dry run: only the two models' configs were read (no weights, no data)"]
    if t:
        lines.append(model(t, "teacher", f"{run.teacher_dtype} weights, no gradient"))
    elif p["cached"]:
        lines.append(f"teacher: none in memory (top-k targets from {cfg.teacher_cache})")
    lines.append(model(s, "student", "float32 weights + AdamW"))
    lines.append(f"run: {world} process(es){' with FSDP' if launch['fsdp'] else ''}, "
                 f"{'bf16 autocast' if launch['bf16'] else 'float32'}, loss {run.loss}, micro-batch "
                 f"{cfg.batch_size} x {cfg.max_tokens} tokens, grad-accum {cfg.grad_accum} -> global batch "
                 f"{cfg.batch_size * cfg.grad_accum * world} sequences, {cfg.steps:,} steps")
    rows = [("teacher weights", e["teacher_weights_bytes"]),
            ("student weights, grads, AdamW" + (", bf16 copies" if run.bf16 else ""), e["student_states_bytes"]),
            (f"student activations ({e['activation_bytes_per_token'] / 1e3:,.0f} kB per token)",
             e["activation_bytes"]),
            (f"logits and the objective ({e['student_bytes_per_logit']:.1f} / {e['teacher_bytes_per_logit']:.1f} B "
             "per student / teacher logit)", e["logits_bytes"])]
    width = max(len(label) for label, _ in rows) + 2
    lines.append(f"memory per GPU (uldviz.scale.arithmetic; coefficients measured: {COEFFICIENTS.name}):")
    lines += [f"  {label:<{width}}{gigabytes(v):>10}" for label, v in rows]
    lines.append(f"  {'total':<{width}}{gigabytes(e['total_bytes_per_gpu']):>10}   (+ the CUDA context, ~0.5 GB)")
    lines.append("  (halve --batch-size and double --grad-accum to halve the last two rows at the same global batch)")
    step_tokens = cfg.batch_size * cfg.grad_accum * world * cfg.max_tokens
    lines.append(f"time at {run.mfu:.0%} of a {run.peak_flops / 1e12:,.0f} TFLOP/s peak per GPU (an H100's "
                 f"{'bf16' if run.bf16 else 'fp32'}; an assumption), at most {run.tokens:,.0f} student tokens:")
    lines.append(f"  {e['flops']:.2e} FLOPs (teacher {e['teacher_share_of_compute']:.0%}) -> {duration(e['seconds'])}, "
                 f"{e['seconds'] * step_tokens / run.tokens:.2f} s per optimizer step")
    return "\n".join(lines)


def dry_run(cfg) -> int:
    """Print the plan (on the main process only) and return 0; nothing is loaded but the configs."""
    text = render_plan(plan(cfg), cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(text)
    return 0
