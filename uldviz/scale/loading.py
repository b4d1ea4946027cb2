"""Models and tokenizers of a scaled run, through the kit's offline-safe loaders (:mod:`uldviz.io.models`)."""

from __future__ import annotations

import torch

from uldviz.io.models import load_pretrained
from uldviz.io.tokenizers import load_tokenizer

__all__ = [
    "make_accelerator",
    "require_teacher",
    "load_teacher",
    "load_student",
    "load_tokenizer_of",
    "output_vocab",
    "same_tokenizer",
    "check_context",
]


def _require_eos(tok, name: str) -> None:
    """Every sequence starts with the eos token (as in notebook 03's rows): a tokenizer without one is refused."""
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer of {name!r} has no eos token; every sequence starts with one")


def load_tokenizer_of(name: str):
    """The tokenizer of a hub model or ``save_pretrained`` folder (clear :class:`HubUnavailableError` offline)."""
    tok = load_tokenizer(name)
    _require_eos(tok, name)
    return tok


def require_teacher(cfg) -> None:
    """A run whose loss reads teacher logits names a teacher: say so before anything is loaded."""
    if not cfg.teacher:
        raise ValueError(f"loss {cfg.loss!r} needs a teacher: give --teacher NAME_OR_DIR (or --teacher-cache DIR)")


def make_accelerator(cfg):
    """An ``accelerate`` Accelerator whose precision is the launcher's (``accelerate launch``, ``accelerate config``)
    unless ``--bf16`` / ``--no-bf16`` was given: a flag overrides, its absence does not."""
    from accelerate import Accelerator

    kwargs = {} if cfg.bf16 is None else {"mixed_precision": "bf16" if cfg.bf16 else "no"}
    return Accelerator(cpu=cfg.cpu, **kwargs)


def load_teacher(cfg, device, *, bf16: bool = False) -> tuple[torch.nn.Module, object]:
    """(teacher in eval mode, no gradients, held in bf16 when ``bf16``, on ``device``; its tokenizer)."""
    require_teacher(cfg)
    model, tok = load_pretrained(cfg.teacher, device=device, dtype=torch.bfloat16 if bf16 else None)
    _require_eos(tok, cfg.teacher)
    model.requires_grad_(False)
    return model.eval(), tok


def load_student(cfg) -> tuple[torch.nn.Module, object]:
    """(student in train mode, float32 weights; its tokenizer). ``student_init='fresh'``: same architecture, new
    weights drawn with ``cfg.seed`` (identical on every process)."""
    from transformers import AutoModelForCausalLM

    model, tok = load_pretrained(cfg.student)
    _require_eos(tok, cfg.student)
    if cfg.student_init == "fresh":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = AutoModelForCausalLM.from_config(model.config)
    return model.float().train(), tok


def output_vocab(model, tok) -> int:
    """Logit columns that are tokens: the head may have padding rows (e.g. Pythia: 50,304 rows, 50,277 tokens)."""
    return min(len(tok), model.get_output_embeddings().weight.shape[0])


def same_tokenizer(a, b) -> bool:
    """Whether two tokenizers map every string to the same id (what KL on one vocabulary needs)."""
    return a.get_vocab() == b.get_vocab()


def check_context(model, name: str, tokens: int, what: str = "--max-tokens") -> None:
    """Refuse sequences longer than the model's context (a GPT-2 would fail deep inside torch with an index error)."""
    from uldviz.train.metrics import context_length

    try:
        context = context_length(model)
    except ValueError:  # a config that does not say: let the model itself complain
        return
    if tokens > context:
        raise ValueError(f"{what} {tokens} is longer than the context of {name!r} ({context} tokens); lower it")
