"""Training data for scaled runs: examples, their order across processes and steps, and the two tokenizations.

An :class:`Example` is a prompt and an answer; only the answer is learned (plain text is an answer with an empty
prompt; ``generate`` writes prompt + completion pairs: sequence-level distillation). The order of examples is a
pure function of (seed, step), the same whatever the number of processes, so a run resumes exactly from its step
number and two processes see the same global batch as one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from uldviz.io.corpus import DOC_SEPARATOR, load_corpus, load_hf_dataset, load_text_file, train_val_split
from uldviz.train.batch import TextBatch, encode_batch

__all__ = [
    "Example",
    "read_jsonl",
    "read_prompts",
    "text_windows",
    "HeldOut",
    "load_examples",
    "fingerprint",
    "global_batch",
    "process_share",
    "encode_examples",
]


@dataclass(frozen=True)
class Example:
    """A training sequence: ``prompt + answer``; losses count the positions that predict answer text."""

    prompt: str
    answer: str

    @property
    def text(self) -> str:
        return self.prompt + self.answer


def read_jsonl(path) -> list[dict]:
    """The JSON objects of a JSON-lines file (blank lines skipped); errors name the file and the line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"file {str(p)!r} does not exist (or is not a file)")
    rows = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{p}:{i} is not valid JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise ValueError(f"{p}:{i} must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{str(p)!r} holds no JSON lines")
    return rows


def read_prompts(path, field: str = "prompt") -> list[str]:
    """Prompts for ``generate``: the ``field`` of each JSON line (``.jsonl``), else one prompt per non-empty line."""
    p = Path(path)
    if p.suffix == ".jsonl":
        rows = read_jsonl(p)
        missing = [i for i, r in enumerate(rows, 1) if not isinstance(r.get(field), str)]
        if missing:
            raise ValueError(f"{p}: JSON line(s) {missing[:5]} have no string field {field!r}")
        return [r[field] for r in rows]
    return [line for line in load_text_file(p).splitlines() if line.strip()]


def text_windows(text: str, chars: int) -> list[Example]:
    """Plain text cut into consecutive windows of ``chars`` characters (all learned: empty prompts)."""
    if chars < 1:
        raise ValueError(f"chars must be >= 1, got {chars}")
    return [Example("", text[i:i + chars]) for i in range(0, len(text), chars) if text[i:i + chars].strip()]


def _jsonl_examples(path) -> list[Example]:
    """{"prompt", "completion"} rows (what ``generate`` writes) or {"text"} rows (learned whole)."""
    out = []
    for i, row in enumerate(read_jsonl(path), 1):
        if isinstance(row.get("completion"), str) and isinstance(row.get("prompt"), str):
            out.append(Example(row["prompt"], row["completion"]))
        elif isinstance(row.get("text"), str):
            out.append(Example("", row["text"]))
        else:
            raise ValueError(f"{path}:{i} needs string fields 'prompt' and 'completion' (or 'text')")
    return [e for e in out if e.answer.strip()]


@dataclass
class HeldOut:
    """What held-out bits per byte is measured on: plain text (every byte predicted) and prompt/answer examples,
    whose answers alone are scored (the prompt is read, not predicted), as the training loss counts them."""

    text: str = ""
    examples: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.text.strip()) or any(e.answer.strip() for e in self.examples)


def load_examples(cfg) -> tuple[list[Example], HeldOut]:
    """(training examples, held-out part) for a :class:`~uldviz.scale.config.ScaleConfig`.

    Sources: ``.jsonl`` files (:func:`read_jsonl` rows), other files as plain text, else a Hugging Face dataset,
    else the kit's offline corpus. Plain text is split by whole documents (:func:`uldviz.io.corpus.train_val_split`)
    and cut into windows; JSON-lines examples hold out every k-th example (scored on their answers).
    ``val_data`` replaces the held-out part; ``eval_chars`` caps the held-out text and answers.
    """
    pairs, parts = [], []
    for path in cfg.data:
        if Path(path).suffix == ".jsonl":
            pairs += _jsonl_examples(path)
        else:
            parts.append(load_text_file(path))
    if not cfg.data:
        parts.append(load_hf_dataset(cfg.dataset, split=cfg.dataset_split, text_field=cfg.text_field,
                                     max_chars=cfg.max_chars or None, config=cfg.dataset_config or None)
                     if cfg.dataset else load_corpus())
    text = DOC_SEPARATOR.join(parts)
    held = HeldOut()
    if cfg.val_data:
        p = Path(cfg.val_data)
        if p.suffix == ".jsonl":
            held.examples = _jsonl_examples(p)
        else:
            held.text = load_text_file(p)
    else:
        if text:
            text, held.text = train_val_split(text, cfg.val_fraction)
        if pairs:
            every = max(2, round(1 / cfg.val_fraction))
            held.examples = pairs[every - 1::every]
            pairs = [e for i, e in enumerate(pairs) if (i + 1) % every]
    examples = pairs + (text_windows(text, cfg.window_chars) if text else [])
    if not examples:
        raise ValueError("the training data holds no example")
    if not held:
        raise ValueError("the held-out part is empty: give --val-data or more training data")
    if cfg.eval_chars:
        held.text = held.text[:cfg.eval_chars]
        kept, total = [], 0
        for e in held.examples:
            if total >= cfg.eval_chars:
                break
            kept.append(e)
            total += len(e.answer)
        held.examples = kept
    return examples, held


def fingerprint(examples: list[Example]) -> str:
    """SHA-256 of the examples (prompts and answers, in order): ties a teacher cache to its data."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.prompt, e.answer]).encode("utf-8"))
    return h.hexdigest()


# --------------------------------------------------------------------------- order: a function of (seed, step)
def global_batch(step: int, n_examples: int, size: int, seed: int) -> list[int]:
    """Indices of the ``size`` examples of optimizer step ``step``: consecutive slices of seeded per-epoch shuffles.

    Depends only on its arguments, not on the number of processes: resuming at a step, or splitting the batch over
    more processes, sees exactly the same examples.
    """
    out = []
    for pos in range(step * size, (step + 1) * size):
        epoch, i = divmod(pos, n_examples)
        if i == 0 or not out:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            order = torch.randperm(n_examples, generator=gen, device="cpu")  # data order: CPU
        out.append(int(order[i]))
    return out


def process_share(indices: list[int], rank: int, world: int, accum: int) -> list[list[int]]:
    """This process's ``accum`` micro-batches: its contiguous 1/world of the global batch, cut in ``accum`` parts."""
    if len(indices) % (world * accum):
        raise ValueError(f"a global batch of {len(indices)} does not split into {world} processes x {accum} "
                         "micro-batches")
    per = len(indices) // world
    mine = indices[rank * per:(rank + 1) * per]
    size = per // accum
    return [mine[i * size:(i + 1) * size] for i in range(accum)]


# --------------------------------------------------------------------------- tokenization
def encode_examples(examples: list[Example], index: list[int], student_tok, teacher_tok, max_tokens: int) -> TextBatch:
    """Tokenize the examples with both tokenizers (the kit's one batch type); ``teacher_tok=None`` skips the teacher."""
    return encode_batch([e.text for e in examples], student_tok, teacher_tok, student_len=max_tokens,
                        teacher_len=max_tokens, prompt_chars=[len(e.prompt) for e in examples], index=index)
