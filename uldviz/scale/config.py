"""Every knob of a scaled distillation run in one dataclass, and the command line built from it.

The command line is generated from the dataclass (one ``--flag`` per field, with the field's comment as help), so the
function (``train(ScaleConfig(...))``) and the command (``python -m uldviz train ...``) cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from dataclasses import dataclass, field

from uldviz.maths.losses import PAPER_LAMBDA
from uldviz.train.config import TrainConfig, check_int_fields

__all__ = ["ScaleConfig", "add_dataclass_args", "dataclass_from_args", "join_negative_numbers", "parse_and_run"]


@dataclass
class ScaleConfig(TrainConfig):
    """One distillation run: models, data, checkpoints; the loss and optimisation are :class:`TrainConfig`'s.

    Defaults that differ from the notebooks': the paper's λ = 1.5 and ULD, a pretrained student's learning rate,
    longer warm-up and evaluation blocks, weight decay on weight matrices only.
    """

    # models (hub names or local save_pretrained folders)
    teacher: str = ""  # teacher causal LM; may stay empty with --teacher-cache or --loss ce
    student: str = ""  # student causal LM (its own tokenizer comes with it)
    student_init: str = "pretrained"  # "pretrained": its weights; "fresh": its architecture, random init (seed)
    # objective: total = ce_weight * CE + lam * D, D from the objective layer (uldviz.train.objectives)
    loss: str = "uld"  # "uld", "kl" (same tokenizer only), "ce" (no teacher), "hybrid", "chunk" (span groups)
    lam: float = PAPER_LAMBDA  # weight of the distillation term (the paper's value by default)
    teacher_cache: str = ""  # folder written by `cache-teacher`: train from it, no teacher in memory
    cache_dtype: str = "q8"  # cache-teacher: probabilities as 8-bit log codes (q8), float16, bfloat16 or float32
    cache_shard_examples: int = 1024  # cache-teacher: examples per safetensors shard
    # data: text files (.txt: cut into windows) or `generate` output (.jsonl: prompt + completion)
    data: list = field(default_factory=list)  # training files; none and no --dataset: the kit's offline corpus
    dataset: str = ""  # a Hugging Face dataset name (needs `datasets` and network)
    dataset_config: str = ""
    dataset_split: str = "train"
    text_field: str = "text"
    max_chars: int = 20_000_000  # cap on the text read from a dataset
    val_data: str = ""  # held-out file for bits per byte; empty: hold out val_fraction of the training data
    val_fraction: float = 0.05
    window_chars: int = 2000  # plain text is cut into windows of this many characters
    max_tokens: int = 512  # each sequence is truncated to this many tokens (per tokenizer)
    # optimisation (global batch = batch_size * grad_accum * number of processes)
    steps: int = 1000
    batch_size: int = 8  # sequences per process per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 5e-5
    warmup_steps: int = 50
    bf16: bool | None = None  # bf16 mixed precision: --bf16 / --no-bf16 override `accelerate launch`/config
    cpu: bool = False  # force CPU even when a GPU is present
    # evaluation, logging, checkpoints
    eval_every: int = 100  # held-out bits per byte every this many steps (and at the start and the end)
    eval_chars: int = 200_000  # held-out characters used (0: all)
    eval_block: int = 256  # evaluation blocks of this many tokens
    eval_batch: int = 16
    log_every: int = 10
    save_every: int = 500  # checkpoint every this many steps (and at the end); 0: only at the end
    keep_checkpoints: int = 2  # older checkpoints are deleted
    out_dir: str = "runs/scale"
    resume: str = ""  # a checkpoint folder, or "latest" (the newest complete one under out_dir/checkpoints)
    resume_allow: list = field(default_factory=list)  # settings allowed to differ on resume ("rng": no RNG state)
    workers: int = 2  # DataLoader processes that tokenize and pair the next steps (0: in the training process)
    prefetch: int = 4  # steps each worker prepares ahead
    progress: bool = True  # tqdm bar on the main process
    dry_run: bool = False  # print memory per GPU and time from the two models' configs, load nothing, exit

    def __post_init__(self):
        if isinstance(self.data, str):
            self.data = [self.data] if self.data else []
        super().__post_init__()
        choices = {"student_init": ("pretrained", "fresh"), "cache_dtype": ("q8", "float16", "bfloat16", "float32")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        check_int_fields(self, ("grad_accum", "max_tokens", "window_chars", "eval_batch", "log_every",
                                "keep_checkpoints", "cache_shard_examples"))
        check_int_fields(self, ("save_every", "eval_chars", "max_chars", "workers"), minimum=0)
        check_int_fields(self, ("prefetch",))
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) is longer than the run ({self.steps} steps)")
        if not self.student:
            raise ValueError("student is required: a hub name (e.g. gpt2) or a folder written by save_pretrained")
        if self.data and self.dataset:
            raise ValueError("give training text either as --data files or as --dataset, not both")


# --------------------------------------------------------------------------- dataclass <-> argparse
def _comments(cls) -> dict:
    """The ``# comment`` after each field in the class sources (the class and its dataclass bases): flag help."""
    import inspect

    out = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        for line in inspect.getsource(klass).splitlines():
            name, _, rest = line.strip().partition(":")
            if "#" in rest and name.isidentifier():
                out[name] = rest.split("#", 1)[1].strip()
    return out


def _plain(kind):
    """``X | None`` -> (X, True); X -> (X, False)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if type(None) in typing.get_args(kind) and len(args) == 1:
        return args[0], True
    return kind, False


def _number(text: str):
    try:
        float(text)
        return True
    except ValueError:
        return False


def add_dataclass_args(parser: argparse.ArgumentParser, cls) -> argparse.ArgumentParser:
    """One ``--flag-name`` per dataclass field (bools as ``--flag/--no-flag``, lists as repeatable values).

    A bool field whose default is None (e.g. ``bf16``) stays None unless its flag is given.
    """
    helps = _comments(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind, _ = _plain(hints[f.name])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        text = f"{helps.get(f.name, '')} (default: {default!r})"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif kind is list:
            parser.add_argument(flag, dest=f.name, nargs="+", default=default, help=text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=default, help=text)
    return parser


def join_negative_numbers(argv) -> list[str]:
    """``--lr -1e-3`` -> ``--lr=-1e-3``: argparse reads a negative number in exponent form as an option."""
    out = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and arg.startswith("-") and _number(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def dataclass_from_args(cls, args: argparse.Namespace):
    """The dataclass built from parsed arguments (its ``__post_init__`` checks the values)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def parse_and_run(cls, run, argv, prog: str, description: str) -> int:
    """The command line of a dataclass-configured command: parse, build, ``run(config)``.

    Bad settings, missing files, an unreachable hub or a missing optional package print one ``error:`` line
    (exit code 2) instead of a traceback.
    """
    parser = add_dataclass_args(argparse.ArgumentParser(prog=prog, description=description), cls)
    args = parser.parse_args(join_negative_numbers(sys.argv[1:] if argv is None else argv))
    try:
        return int(run(dataclass_from_args(cls, args)) or 0)
    except (ValueError, ImportError, OSError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
