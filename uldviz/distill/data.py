"""What every distillation run shares: the teacher, both tokenizers, the three text splits, the student's text.

- :func:`prepare` loads the shipped teacher (or hub models) and cuts the corpus into train /
  validation / test documents (:func:`uldviz.io.corpus.train_val_test_split`).
- :func:`student_subset` is the part of the training text a data-poor student sees.
- :func:`teacher_generated_text` is the paper's data pipeline (sequence-level distillation): the
  teacher writes the student's training text itself, from prompts taken from the student's share;
  it is generated once per fraction and cached in ``data/seqkd/`` (:func:`write_teacher_text`).
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from uldviz.train.metrics import context_length

__all__ = [
    "Setup",
    "prepare",
    "student_subset",
    "sample_windows",
    "build_student",
    "sample_tokens",
    "generate",
    "SEQKD_BLOCK_CHARS",
    "seqkd_path",
    "generate_teacher_text",
    "write_teacher_text",
    "teacher_generated_text",
    "teacher_card_summary",
]

#: The student's share of the text is cut into blocks of this many characters (see :func:`student_subset`).
SEQKD_BLOCK_CHARS = 2000
#: The teacher continues each block from its first this-many tokens, sampling at this temperature (seqkd).
SEQKD_PROMPT_TOKENS = 16
SEQKD_TEMPERATURE = 1.0


@dataclass
class Setup:
    """What every run shares: the teacher, both tokenizers and the train / validation / test texts."""

    teacher: object
    teacher_tokenizer: object
    student_tokenizer: object
    train_text: str  # the whole training split (the teacher's)
    val_text: str  # checkpoint and hyper-parameter selection only
    test_text: str  # the reported score only
    teacher_card: dict = field(default_factory=dict)
    preset: str = "offline"
    generated: dict = field(default_factory=dict)  # fraction -> teacher-generated text (cache)

    def student_text(self, fraction: float) -> str:
        """The part of the training text the student sees (see :func:`student_subset`)."""
        return student_subset(self.train_text, fraction)


def prepare(preset: str = "offline", heldout_fraction: float = 0.1, hub_teacher: str | None = None,
            hub_student: str | None = None) -> Setup:
    """Load the teacher, the tokenizers and the train / validation / test split for ``preset``.

    ``'offline'``: the kit's shipped teacher (data/teacher), its two tokenizers and the ``pydoc_data``
    corpus, held out exactly as the teacher's card says (the teacher never saw validation or test).
    ``'hub'``: a pretrained teacher (default EleutherAI/pythia-160m) and another model's tokenizer
    (default gpt2) for a student trained from scratch; offline it raises ``HubUnavailableError``.
    """
    from uldviz.io.corpus import load_corpus, train_val_test_split

    if preset == "offline":
        from uldviz.io.models import load_teacher
        from uldviz.io.tokenizers import offline_tokenizers

        teacher, t_tok, card = load_teacher()
        s_tok = offline_tokenizers().student
        heldout_fraction = (card or {}).get("config", {}).get("val_fraction", heldout_fraction)
        info = dict(card or {})
    elif preset == "hub":
        from uldviz.io.models import HUB_STUDENT, HUB_TEACHER, load_pretrained
        from uldviz.io.tokenizers import load_tokenizer

        name = hub_teacher or HUB_TEACHER
        teacher, t_tok = load_pretrained(name)
        s_tok = load_tokenizer(hub_student or HUB_STUDENT)
        for tok in (t_tok, s_tok):
            if tok.eos_token_id is None:
                raise ValueError(f"tokenizer {tok.name_or_path!r} has no eos token; the kit starts windows with one")
        info = {"name": name}
    else:
        raise ValueError(f"preset must be 'offline' or 'hub', got {preset!r}")
    train_text, val_text, test_text = train_val_test_split(load_corpus(), heldout_fraction)
    return Setup(teacher, t_tok, s_tok, train_text, val_text, test_text, info, preset)


def student_subset(text: str, fraction: float, block_chars: int = SEQKD_BLOCK_CHARS) -> str:
    """Every k-th block of ``block_chars`` characters, about ``fraction`` of ``text``, spread over all of it.

    The student sees only this part; the teacher saw all of the training text, so its soft
    targets carry information the student's data lacks.
    """
    blocks = _subset_blocks(text, fraction, block_chars)
    return text if fraction == 1 else "\n".join(blocks)


def _subset_blocks(text: str, fraction: float, block_chars: int) -> list[str]:
    """The blocks :func:`student_subset` joins."""
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    blocks = [text[i:i + block_chars] for i in range(0, len(text), block_chars)]
    return blocks[::max(1, round(1 / fraction))]


def sample_windows(text: str, n: int, chars: int, generator: torch.Generator) -> list[str]:
    """``n`` random windows of ``chars`` characters from ``text`` (reproducible with ``generator``)."""
    if len(text) <= chars:
        raise ValueError(f"text has {len(text)} characters, fewer than one window of {chars}")
    starts = torch.randint(0, len(text) - chars, (n,), generator=generator, device="cpu").tolist()
    return [text[s:s + chars] for s in starts]


def build_student(cfg, vocab_size: int):
    """A fresh small GPT-2 student (seeded by ``cfg.seed``) for a vocabulary of ``vocab_size``."""
    from uldviz.io.models import tiny_causal_lm

    return tiny_causal_lm(vocab_size=vocab_size, n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head,
                          n_positions=cfg.n_positions, seed=cfg.seed)


# --------------------------------------------------------------------------- sampling
@torch.no_grad()
def sample_tokens(model, prompt_ids: torch.Tensor, new_tokens: int, *, temperature: float = 1.0,
                  top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample ``new_tokens`` continuations of equal-length prompts (B, P); returns (B, P + new_tokens) ids.

    Uses the key/value cache and slides past the model's context: when the cache is full, the last
    half of the context is re-read, so every token is predicted from at least half a context.
    ``top_k=None`` samples from the model's whole distribution (what sequence-level distillation wants).
    """
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] < 1:
        raise ValueError(f"prompt_ids must be (batch, length >= 1), got {tuple(prompt_ids.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device = next(model.parameters()).device
    window = context_length(model)
    ids = prompt_ids.to(device)
    was_training = model.training
    model.eval()
    # transformers >= 5.2x names the key/value cache `cache`; older versions `past_key_values`
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    cache, filled = None, 0
    try:
        for _ in range(new_tokens):
            if cache is None or filled >= window:
                ctx = ids[:, -(window // 2 if cache is not None else window):]
                out = model(input_ids=ctx, use_cache=True)
                filled = ctx.shape[1]
            else:
                out = model(input_ids=ids[:, -1:], use_cache=True, **{key: cache})
                filled += 1
            cache = getattr(out, key)
            logits = out.logits[:, -1].float() / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, -1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator).to(device)
            ids = torch.cat([ids, nxt], dim=1)
    finally:
        model.train(was_training)
    return ids


def generate(model, tokenizer, prompt: str, max_new_tokens: int = 40, temperature: float = 0.8, top_k: int = 20,
             seed: int = 0) -> str:
    """Sample a continuation of ``prompt`` (temperature + top-k, reproducible with ``seed``); returns the new text."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("prompt is empty after tokenization")
    out = sample_tokens(model, torch.tensor([ids]), max_new_tokens, temperature=temperature, top_k=top_k,
                        generator=torch.Generator().manual_seed(seed))
    full, start = tokenizer.decode(out[0].tolist()), tokenizer.decode(ids)
    return full[len(start):] if full.startswith(start) else full


# --------------------------------------------------------------------------- teacher-generated text (seqkd)
def generate_teacher_text(teacher, tokenizer, train_text: str, fraction: float, *,
                          prompt_tokens: int = SEQKD_PROMPT_TOKENS, seed: int = 0,
                          temperature: float = SEQKD_TEMPERATURE, block_chars: int = SEQKD_BLOCK_CHARS,
                          batch_size: int = 64) -> str:
    """The teacher writes the student's training text: one block per block of :func:`student_subset`.

    Each block of the student's share gives its first ``prompt_tokens`` teacher tokens as the prompt;
    the teacher samples (``temperature`` 1: its own distribution) until the block has as many
    characters as the original, so the student gets the same character budget, written by the teacher.
    """
    blocks = _subset_blocks(train_text, fraction, block_chars)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(blocks), batch_size):
        part = blocks[i:i + batch_size]
        prompts = [tokenizer(b, add_special_tokens=False)["input_ids"][:prompt_tokens] for b in part]
        if min(len(p) for p in prompts) < prompt_tokens:
            raise ValueError(f"a block has fewer than {prompt_tokens} teacher tokens; use a smaller prompt_tokens")
        ids = torch.tensor(prompts)
        texts = ["" for _ in part]
        while any(len(t) < len(b) for t, b in zip(texts, part)):
            # about 3 characters per token: ask for what the longest unfinished block still needs, at least 32
            need = max(len(b) - len(t) for t, b in zip(texts, part))
            ids = sample_tokens(teacher, ids, max(32, need // 3), temperature=temperature, generator=gen)
            texts = [tokenizer.decode(row, skip_special_tokens=True) for row in ids.tolist()]
        out += [t[:len(b)] for t, b in zip(texts, part)]
    return "\n".join(out)


def seqkd_path(fraction: float, data: Path | None = None) -> Path:
    """Where the teacher-generated text for ``fraction`` is cached: ``data/seqkd/teacher_text_f{fraction}.txt``."""
    from uldviz.env import data_dir

    return Path(data or data_dir()) / "seqkd" / f"teacher_text_f{fraction:g}.txt"


def write_teacher_text(setup: Setup, fraction: float, path: Path | None = None, seed: int = 0) -> Path:
    """Generate the teacher text for ``fraction`` and write it with a JSON card (command, seed, sizes, time)."""
    path = Path(path) if path is not None else seqkd_path(fraction)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        text = generate_teacher_text(setup.teacher, setup.teacher_tokenizer, setup.train_text, fraction, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    real = student_subset(setup.train_text, fraction)
    card = {"command": f"python -m uldviz protocol --generate-text {fraction:g}", "fraction": fraction, "seed": seed,
            "temperature": SEQKD_TEMPERATURE, "prompt_tokens": SEQKD_PROMPT_TOKENS, "chars": len(text),
            "real_chars": len(real),
            "seconds": round(time.perf_counter() - start, 1), "teacher": setup.teacher_card.get("name", "")}
    path.with_suffix(".json").write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    setup.generated[fraction] = text
    return path


def teacher_generated_text(setup: Setup, fraction: float) -> str:
    """The cached teacher-written training text for ``fraction``; a clear error says how to make it if missing."""
    if fraction not in setup.generated:
        path = seqkd_path(fraction)
        if not path.is_file():
            raise FileNotFoundError(
                f"no teacher-generated text for train_fraction={fraction:g} at {path}; make it once with "
                f"`python -m uldviz protocol --generate-text {fraction:g}`")
        setup.generated[fraction] = path.read_text(encoding="utf-8")
    return setup.generated[fraction]


def teacher_card_summary() -> str:
    """The setting every protocol verdict rests on, in a few words, read from the shipped teacher's card."""
    from uldviz.io.models import teacher_dir

    card = json.loads((teacher_dir() / "card.json").read_text())
    tk = card["tokenizers"]
    return (f"a {card['parameters'] / 1e6:.2f} M-parameter teacher, vocabularies {tk['student_vocab']:,} (student, "
            f"{tk['student'].split(' ')[0]}) and {tk['teacher_vocab']:,} (teacher, {tk['teacher']}), "
            f"{card['train_chars'] / 1e3:.0f} k characters of Python documentation")
