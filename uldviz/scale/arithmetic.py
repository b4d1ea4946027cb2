r"""Memory and time of a distillation run from parameter counts, shapes and measured coefficients: docs/scale.md.

Per GPU (data parallel, DDP; FSDP shards the student's states over :math:`N` GPUs), for a micro-batch of
:math:`B` sequences of :math:`L` tokens:

.. math::
    M \approx \underbrace{P_T\,b_T}_{\text{teacher weights}}
      + \underbrace{\big(16 / N_{\text{shard}} + 2\,[\text{bf16}]\big)\,P_S}_{\text{fp32 weights, grads, AdamW } m, v;
        \text{ autocast's bf16 weight copies}}
      + \underbrace{B L\,\big((\alpha\,n_\ell + \beta)\,d + \gamma\,n_\ell L\big)}_{\text{student activations}}
      + \underbrace{B L\,(c_S V_S + c_T V_T)}_{\text{logits and the objective}}

:math:`\alpha, \beta, \gamma` (bytes per token per layer and width, per width, per layer and token of context: a padded
batch's attention mask; :math:`n_\ell` layers of width :math:`d`) and
:math:`c_S, c_T` (bytes per logit element for each loss, the logits, their fp32 softmaxes and copies, the gathered
rows, sorts and gradients included) are measured on a CPU at small scale (:mod:`uldviz.scale.measure`, stored in
``uldviz/scale/memory.json``) and extrapolated by this formula. Not counted: the teacher's transient activations
(no gradient, one layer at a time, freed before the objective's peak), CUDA's sort workspace and context, the
allocator's fragmentation. Compute, with the
usual 2 FLOPs per parameter and token forward and 6 forward + backward:

.. math:: \text{FLOPs} = T\,(2 P_T + 6 P_S), \qquad t = \frac{\text{FLOPs}}{N \cdot \text{peak} \cdot \text{MFU}}

A teacher cache pays :math:`2 P_T T` once and stores ``cache_row_bytes(k)`` per position.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from uldviz.scale.cache import cache_row_bytes

__all__ = ["DTYPE_BYTES", "ADAMW_BYTES_PER_PARAM", "AUTOCAST_BYTES_PER_PARAM", "PEAK_FLOPS", "RunShape",
           "estimate", "render_markdown", "DOC_SHAPES"]

#: bytes per element
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}
#: bytes per student parameter held by mixed-precision AdamW training: fp32 weights, fp32 grads, two fp32 moments
ADAMW_BYTES_PER_PARAM = 4 + 4 + 4 + 4
#: bf16 autocast keeps a bf16 copy of every weight it casts for the whole forward and backward pass (measured)
AUTOCAST_BYTES_PER_PARAM = 2
#: dense peak of one H100 SXM: bf16 tensor cores, and plain fp32 (PyTorch does not use TF32 for matmuls by default)
PEAK_FLOPS = {"bf16": 989e12, "fp32": 67e12}


@dataclass
class RunShape:
    """The inputs of :func:`estimate`: sizes of the models and the run, the objective, the hardware assumption."""

    teacher_params: float = 1.0e9
    student_params: float = 1.6e8
    teacher_dtype: str = "bfloat16"
    teacher_vocab: int = 50_304  # e.g. a Pythia head
    student_vocab: int = 50_257  # e.g. GPT-2
    student_layers: int = 12  # e.g. GPT-2 small / Pythia-160m
    student_width: int = 768
    micro_batch: int = 8  # sequences per GPU per micro-batch
    seq_len: int = 1024
    tokens: float = 1.0e8  # training tokens (student positions)
    gpus: int = 1
    fsdp: bool = False  # shard the student's weights, gradients and optimizer states over the GPUs
    loss: str = "uld"  # an entry of memory.json: uld, uld-topk, uld-cache, kl, hybrid, chunk, xtoken-pkl, ce, ...
    bf16: bool = True  # bf16 autocast (else float32 throughout)
    device: str = "cuda"  # "cuda": a GPU's code path (torch.sort); "cpu": the CPU's numpy sorted-L1 kernel
    peak_flops: float = PEAK_FLOPS["bf16"]  # one GPU's peak; an A100's bf16 peak is 312e12
    mfu: float = 0.35  # fraction of the peak a training run reaches (assumption)
    cache_k: int = 64
    cache_dtype: str = "q8"


def _coefficients(shape: RunShape, coefficients: dict | None) -> tuple[dict, dict]:
    """(objective entry, activation fit) of ``shape`` from :func:`uldviz.scale.measure.load_coefficients`."""
    from uldviz.scale.measure import load_coefficients

    table = coefficients if coefficients is not None else load_coefficients()
    precision = "bf16" if shape.bf16 else "fp32"
    losses = table["objective"][precision]
    if shape.loss not in losses:
        raise ValueError(f"no measured memory for loss {shape.loss!r}; measured: {', '.join(losses)}")
    entry = losses[shape.loss]
    path = "cpu" if shape.device == "cpu" and "cpu" in entry else "torch"
    if "error" in entry[path]:
        raise ValueError(f"the memory of loss {shape.loss!r} could not be measured under {precision} on a CPU "
                         f"({entry[path]['error']}); the float32 figures (--no-bf16) are measured")
    return entry[path], table["activations"][precision]


def estimate(shape: RunShape, coefficients: dict | None = None) -> dict:
    """Bytes per GPU and seconds of a run of ``shape`` (the module docstring's formulas; coefficients measured)."""
    if shape.teacher_dtype not in DTYPE_BYTES:
        raise ValueError(f"teacher_dtype must be one of {list(DTYPE_BYTES)}, got {shape.teacher_dtype!r}")
    if shape.gpus < 1 or not 0 < shape.mfu <= 1:
        raise ValueError("gpus must be >= 1 and mfu in (0, 1]")
    if shape.device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', got {shape.device!r}")
    obj, act = _coefficients(shape, coefficients)
    positions = shape.micro_batch * shape.seq_len
    teacher = shape.teacher_params * DTYPE_BYTES[shape.teacher_dtype]
    student = (ADAMW_BYTES_PER_PARAM / (shape.gpus if shape.fsdp else 1)
               + (AUTOCAST_BYTES_PER_PARAM if shape.bf16 else 0)) * shape.student_params
    per_token = ((act["per_layer_per_width"] * shape.student_layers + act["per_width"]) * shape.student_width
                 + act.get("per_layer_per_token_of_context", 0.0) * shape.student_layers * shape.seq_len)
    activations = positions * per_token
    c_s, c_t = obj["student_bytes_per_logit"], obj["teacher_bytes_per_logit"]
    logits = positions * (c_s * shape.student_vocab + c_t * shape.teacher_vocab)
    flops_teacher = 2 * shape.teacher_params * shape.tokens
    flops_student = 6 * shape.student_params * shape.tokens
    rate = shape.gpus * shape.peak_flops * shape.mfu
    return {
        "teacher_weights_bytes": teacher,
        "student_states_bytes": student,
        "activation_bytes": activations,
        "logits_bytes": logits,
        "total_bytes_per_gpu": teacher + student + activations + logits,
        "activation_bytes_per_token": per_token,
        "student_bytes_per_logit": c_s,
        "teacher_bytes_per_logit": c_t,
        "flops": flops_teacher + flops_student,
        "seconds": (flops_teacher + flops_student) / rate,
        "teacher_share_of_compute": flops_teacher / (flops_teacher + flops_student),
        "cache_pass_seconds": flops_teacher / rate,
        "seconds_per_epoch_from_cache": flops_student / rate,
        "cache_bytes": shape.tokens * cache_row_bytes(shape.cache_k, shape.cache_dtype),
    }


def gigabytes(b: float) -> str:
    """``12.3 GB`` (10⁹ bytes)."""
    return f"{b / 1e9:,.1f} GB"


def duration(s: float) -> str:
    """Hours from an hour on, else minutes."""
    return f"{s / 3600:,.1f} h" if s >= 3600 else f"{s / 60:,.1f} min"


#: (label, key of :func:`estimate`, format) of every row of the table.
ROWS = [
    ("teacher weights", "teacher_weights_bytes", gigabytes),
    ("student weights + grads + AdamW (+ bf16 copies)", "student_states_bytes", gigabytes),
    ("student activations (measured per token)", "activation_bytes", gigabytes),
    ("logits and the objective (measured per logit)", "logits_bytes", gigabytes),
    ("**memory per GPU**", "total_bytes_per_gpu", gigabytes),
    ("compute", "flops", lambda f: f"{f:.2e} FLOPs"),
    ("**time**", "seconds", duration),
    ("teacher's share of the compute", "teacher_share_of_compute", lambda x: f"{x:.0%}"),
    ("teacher cache: one teacher pass", "cache_pass_seconds", duration),
    ("teacher cache: then per epoch", "seconds_per_epoch_from_cache", duration),
    ("teacher cache on disk", "cache_bytes", gigabytes),
]


def render_markdown(shapes: dict[str, RunShape], coefficients: dict | None = None) -> str:
    """A markdown table of :func:`estimate` for named shapes (the generated block of docs/scale.md)."""
    est = {name: estimate(s, coefficients) for name, s in shapes.items()}
    lines = ["| | " + " | ".join(shapes) + " |", "|---|" + "---|" * len(shapes)]
    lines += [f"| {label} | " + " | ".join(fmt(est[n][key]) for n in shapes) + " |" for label, key, fmt in ROWS]
    first = next(iter(shapes.values()))
    inputs = ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}" for k, v in asdict(first).items())
    return "\n".join(lines) + f"\n\nInputs of the first column: {inputs}; other columns change what their name says."


#: The scenarios of docs/scale.md: a 1B-parameter teacher into a 160M student, on 1 and 8 GPUs.
DOC_SHAPES = {
    "1 GPU, DDP": RunShape(),
    "8 GPUs, DDP": RunShape(gpus=8),
    "8 GPUs, FSDP": RunShape(gpus=8, fsdp=True),
    "8 GPUs, 1B tokens": RunShape(gpus=8, tokens=1.0e9),
}
