r"""Memory and time of a distillation run from parameter counts and dtypes: the arithmetic of docs/scale.md.

Per GPU, data parallel (DDP; FSDP shards the student's states over N GPUs):

.. math::
    M \approx \underbrace{P_T\,b_T}_{\text{teacher weights}}
      + \underbrace{16\,P_S / N_{\text{shard}}}_{\text{fp32 weights, grads, AdamW } m, v}
      + \underbrace{B L\,(10\,V_S + 6\,V_T)}_{\text{logits}}

(student logits: bf16 output + fp32 softmax + fp32 gradient = 10 B; teacher: bf16 + fp32 softmax = 6 B; other
activations depend on the architecture and are not counted). Compute, with the usual 2 FLOPs per parameter and
token forward and 6 forward + backward:

.. math:: \text{FLOPs} = T\,(2 P_T + 6 P_S), \qquad t = \frac{\text{FLOPs}}{N \cdot \text{peak} \cdot \text{MFU}}

A teacher cache pays :math:`2 P_T T` once and stores ``cache_row_bytes(k)`` per position.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from uldviz.scale.cache import cache_row_bytes

__all__ = ["DTYPE_BYTES", "ADAMW_BYTES_PER_PARAM", "RunShape", "estimate", "render_markdown", "DOC_SHAPES"]

#: bytes per element
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}
#: bytes per student parameter held by mixed-precision AdamW training: fp32 weights, fp32 grads, two fp32 moments
ADAMW_BYTES_PER_PARAM = 4 + 4 + 4 + 4


@dataclass
class RunShape:
    """The inputs of :func:`estimate`: sizes of the models and the run, and the hardware assumption."""

    teacher_params: float = 1.0e9
    student_params: float = 1.6e8
    teacher_dtype: str = "bfloat16"
    teacher_vocab: int = 50_304  # e.g. a Pythia head
    student_vocab: int = 50_257  # e.g. GPT-2
    micro_batch: int = 8  # sequences per GPU per micro-batch
    seq_len: int = 1024
    tokens: float = 1.0e8  # training tokens (student positions)
    gpus: int = 1
    fsdp: bool = False  # shard the student's weights, gradients and optimizer states over the GPUs
    peak_flops: float = 989e12  # bf16 dense peak of one GPU (H100 SXM); an A100 is 312e12
    mfu: float = 0.35  # fraction of the peak a training run reaches (assumption)
    cache_k: int = 64
    cache_dtype: str = "q8"


def estimate(shape: RunShape) -> dict:
    """Bytes per GPU and seconds of a run of ``shape`` (see the module docstring for every formula)."""
    if shape.teacher_dtype not in DTYPE_BYTES:
        raise ValueError(f"teacher_dtype must be one of {list(DTYPE_BYTES)}, got {shape.teacher_dtype!r}")
    if shape.gpus < 1 or not 0 < shape.mfu <= 1:
        raise ValueError("gpus must be >= 1 and mfu in (0, 1]")
    teacher = shape.teacher_params * DTYPE_BYTES[shape.teacher_dtype]
    student = ADAMW_BYTES_PER_PARAM * shape.student_params / (shape.gpus if shape.fsdp else 1)
    logits = shape.micro_batch * shape.seq_len * (10 * shape.student_vocab + 6 * shape.teacher_vocab)
    flops_teacher = 2 * shape.teacher_params * shape.tokens
    flops_student = 6 * shape.student_params * shape.tokens
    rate = shape.gpus * shape.peak_flops * shape.mfu
    return {
        "teacher_weights_bytes": teacher,
        "student_states_bytes": student,
        "logits_bytes": logits,
        "total_bytes_per_gpu": teacher + student + logits,
        "flops": flops_teacher + flops_student,
        "seconds": (flops_teacher + flops_student) / rate,
        "teacher_share_of_compute": flops_teacher / (flops_teacher + flops_student),
        "cache_pass_seconds": flops_teacher / rate,
        "seconds_per_epoch_from_cache": flops_student / rate,
        "cache_bytes": shape.tokens * cache_row_bytes(shape.cache_k, shape.cache_dtype),
    }


def render_markdown(shapes: dict[str, RunShape]) -> str:
    """A markdown table of :func:`estimate` for named shapes (the generated block of docs/scale.md)."""
    gb = lambda b: f"{b / 1e9:,.1f} GB"  # noqa: E731
    hours = lambda s: f"{s / 3600:,.1f} h" if s >= 3600 else f"{s / 60:,.1f} min"  # noqa: E731
    rows = [
        ("teacher weights", "teacher_weights_bytes", gb),
        ("student weights + grads + AdamW", "student_states_bytes", gb),
        ("logits of one micro-batch", "logits_bytes", gb),
        ("**memory per GPU** (without other activations)", "total_bytes_per_gpu", gb),
        ("compute", "flops", lambda f: f"{f:.2e} FLOPs"),
        ("**time**", "seconds", hours),
        ("teacher's share of the compute", "teacher_share_of_compute", lambda x: f"{x:.0%}"),
        ("teacher cache: one teacher pass", "cache_pass_seconds", hours),
        ("teacher cache: then per epoch", "seconds_per_epoch_from_cache", hours),
        ("teacher cache on disk", "cache_bytes", gb),
    ]
    est = {name: estimate(s) for name, s in shapes.items()}
    lines = ["| | " + " | ".join(shapes) + " |", "|---|" + "---|" * len(shapes)]
    lines += [f"| {label} | " + " | ".join(fmt(est[n][key]) for n in shapes) + " |" for label, key, fmt in rows]
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
