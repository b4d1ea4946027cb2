"""The text the kit trains on: English prose that ships with every Python, or any text you give it.

The offline default is the reference documentation in ``pydoc_data.topics`` (about 465,000
characters in 79 topics, the text behind ``help('assert')`` etc.), joined in sorted-key order so
it is the same on every machine. :func:`train_val_split` holds out whole documents (topics), so
validation text is never the second half of a training sentence.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "DOC_SEPARATOR",
    "load_corpus",
    "load_documents",
    "load_text_file",
    "load_hf_dataset",
    "split_documents",
    "train_val_split",
    "train_val_test_split",
]

#: Separator placed between documents by :func:`load_corpus`; :func:`train_val_split` cuts there.
#: Two blank lines: :func:`load_documents` collapses longer runs of newlines inside a topic to one blank line.
DOC_SEPARATOR = "\n\n\n"


def load_documents() -> list[str]:
    """The ``pydoc_data.topics`` documents as a list, in sorted-key order (deterministic).

    Each is stripped of surrounding newlines, runs of 3+ newlines become one blank line (so no
    document contains :data:`DOC_SEPARATOR`), and exact duplicates (two keys with the same text)
    are kept once so a document cannot be both in training and validation.
    """
    from pydoc_data.topics import topics

    docs = [re.sub(r"\n{3,}", "\n\n", topics[key].strip("\n")) for key in sorted(topics)]
    return list(dict.fromkeys(d for d in docs if d.strip()))


def load_corpus() -> str:
    """The offline corpus: every ``pydoc_data.topics`` document, sorted by key, joined by :data:`DOC_SEPARATOR`."""
    return DOC_SEPARATOR.join(load_documents())


def load_text_file(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """Read a UTF-8 text file to use as the corpus instead of the default; clear errors for bad files."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"text file {str(p)!r} does not exist (or is not a file)")
    try:
        text = p.read_text(encoding=encoding)
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(p)!r} is not valid {encoding} text ({err}); convert it to UTF-8 first") from err
    if not text.strip():
        raise ValueError(f"text file {str(p)!r} is empty")
    return text


def load_hf_dataset(name: str, split: str = "train", text_field: str = "text", max_chars: int | None = 2_000_000,
                    config: str | None = None) -> str:
    """Online only: a Hugging Face dataset's text column joined by :data:`DOC_SEPARATOR` (one document per row).

    Needs the optional ``datasets`` package and network access. Offline, or when the package is
    missing, it raises an ``OSError``/``ImportError`` whose message points to :func:`load_corpus`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty dataset name such as 'roneneldan/TinyStories'")
    try:
        import datasets  # noqa: F401  (optional dependency)
    except ImportError as err:
        raise ImportError(
            "load_hf_dataset needs the optional 'datasets' package (pip install datasets); "
            "offline, use uldviz.io.corpus.load_corpus() instead"
        ) from err
    from uldviz.io.hub import HubUnavailableError, hub_is_offline

    if hub_is_offline():
        raise HubUnavailableError(
            f"cannot download dataset {name!r}: the Hugging Face Hub is offline or unreachable here. "
            "Use the offline corpus instead: uldviz.io.corpus.load_corpus()"
        )
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # datasets raises many types for network/name problems
        raise HubUnavailableError(
            f"could not load dataset {name!r} (split {split!r}): {err}. "
            "Offline, use uldviz.io.corpus.load_corpus() instead"
        ) from err
    if text_field not in ds.column_names:
        raise ValueError(f"dataset {name!r} has no column {text_field!r}; columns are {ds.column_names}")
    docs, total = [], 0
    for row in ds:
        doc = str(row[text_field]).strip("\n")
        if not doc:
            continue
        docs.append(doc)
        total += len(doc)
        if max_chars is not None and total >= max_chars:
            break
    if not docs:
        raise ValueError(f"dataset {name!r} column {text_field!r} holds no text")
    return DOC_SEPARATOR.join(docs)


def _split(text: str) -> tuple[list[str], str]:
    """(documents, separator used): the first of DOC_SEPARATOR, a blank line, a newline that gives 2+ pieces."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty: there is nothing to split")
    for sep in (DOC_SEPARATOR, "\n\n", "\n"):
        docs = [d for d in text.split(sep) if d.strip()]
        if len(docs) >= 2:
            return docs, sep
    return [text], DOC_SEPARATOR


def split_documents(text: str) -> list[str]:
    """Cut a text into documents: at :data:`DOC_SEPARATOR` if present, else at blank lines, else at lines."""
    return _split(text)[0]


def train_val_split(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """Deterministic (train, validation) split that holds out whole documents, about ``val_fraction`` of the characters.

    Documents (see :func:`split_documents`) are walked in order; one goes to validation whenever
    validation is behind its share of the characters seen so far, so held-out topics are spread
    over the whole corpus (no randomness, the same split everywhere). Both parts are re-joined with
    the separator they were cut at.
    """
    if not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool):
        raise TypeError(f"val_fraction must be a number, got {type(val_fraction).__name__}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    docs, sep = _split(text)
    if len(docs) < 2:
        raise ValueError(
            "text has a single document (no blank lines or line breaks to split at); "
            "a train/validation split needs at least two documents or paragraphs"
        )
    train, val = [], []
    seen = held = 0
    for i, doc in enumerate(docs):
        seen += len(doc)
        # skip the very first document so the training part is never empty
        if i > 0 and held + len(doc) / 2 <= val_fraction * seen:
            val.append(doc)
            held += len(doc)
        else:
            train.append(doc)
    if not val:  # tiny texts: hold out the last document
        val.append(train.pop())
    return sep.join(train), sep.join(val)


def train_val_test_split(text: str, heldout_fraction: float = 0.1) -> tuple[str, str, str]:
    """Three disjoint sets of whole documents: (train, validation, test).

    The held-out part is exactly :func:`train_val_split`'s (so a teacher trained on its train part
    never saw validation or test text), then cut in two halves of documents by the same rule.
    Validation is for choosing checkpoints and hyper-parameters; test only for the reported score.
    """
    train, heldout = train_val_split(text, heldout_fraction)
    val, test = train_val_split(heldout, 0.5)
    return train, val, test
