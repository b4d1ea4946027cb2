"""Explorable 3: your text, two tokenizers, on one byte axis.

Type a text: both tokenizations appear as rows of chips whose width is their number of UTF-8 bytes, so
the places where both tokenizers cut at the same byte line up; each byte-offset group
(:func:`uldviz.alignment.text.align_text`) is a band across the two rows; a chip is filled green when its
string is in both vocabularies (:class:`uldviz.vocab.shared.SharedVocab`), dashed when it holds only part
of a character. The tokenizers run here, in the kernel; the static site offers the examples tokenized
when the page was built.
"""

from __future__ import annotations

import time

import traitlets

from uldviz.alignment.text import align_text
from uldviz.io.tokenizers import offline_tokenizers
from uldviz.viz.explorables._base import Explorable, module_source
from uldviz.viz.plots.spans import shared_flags, token_label
from uldviz.vocab.shared import SharedVocab
from uldviz.vocab.strings import tokenizer_kind

__all__ = ["EXAMPLE_TEXTS", "MAX_BYTES", "tokenize_pair", "TextExplorable"]

#: Texts tokenized when the widget is made: what the static site can show without a kernel.
EXAMPLE_TEXTS = (
    "The teacher predicts the next token.",
    "A naïve café owner wrote “déjà vu” twice 🙂",
    "def uld(p, q): return abs(p - q).sum()",
    "Tokenizers disagree about whitespace   and    numbers like 1234567.",
)
#: The longest text (in UTF-8 bytes) the explorable tokenizes: longer rows no longer fit a page.
MAX_BYTES = 300


def _whole_characters(raw: bytes) -> bool:
    """Whether ``raw`` decodes as UTF-8 (False: a byte-level token holding part of a character)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def tokenize_pair(text: str, student_tok, teacher_tok, *, shared: SharedVocab | None = None,
                  names=("student", "teacher")) -> dict:
    """Both rows of ``text`` with their byte spans, shared-string flags and groups, as the page draws them.

    Returns ``{"text", "bytes", "student": {"name", "tokens"}, "teacher": {...}, "groups"}``; a token is
    ``{"id", "label", "start", "end", "shared", "partial"}`` (bytes of ``text.encode()``, the leading eos
    left out) and a group ``[first byte, end byte, s0, s1, t0, t1]`` (token index ranges into the rows).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    raw = text.encode("utf-8")
    if len(raw) > MAX_BYTES:
        raise ValueError(f"the text is {len(raw)} bytes long; the explorable shows at most {MAX_BYTES}")
    view = align_text(text, student_tok, teacher_tok)
    out: dict = {"text": text, "bytes": len(raw)}
    for side, name, tok, ids, spans in (("student", names[0], student_tok, view.student_ids, view.student_spans),
                                        ("teacher", names[1], teacher_tok, view.teacher_ids, view.teacher_spans)):
        flags = shared_flags(ids, shared, side)
        tokens = [{"id": int(i), "label": token_label(raw[a:b]), "start": int(a), "end": int(b),
                   "shared": bool(f), "partial": not _whole_characters(raw[a:b])}
                  for i, (a, b), f in list(zip(ids, spans, flags))[1:]]  # row 0 is the eos the models read first
        out[side] = {"name": f"{name} ({tokenizer_kind(tok)})", "tokens": tokens}
    out["groups"] = [[*view.group_bytes(g), s0 - 1, s1 - 1, t0 - 1, t1 - 1]
                     for g, ((s0, s1), (t0, t1)) in enumerate(view.groups)]
    return out


class TextExplorable(Explorable):
    """A text box and the two tokenizations of its text, groups and shared strings highlighted (anywidget).

    ``student_tok``/``teacher_tok`` default to the kit's offline pair (:func:`uldviz.io.tokenizers.offline_tokenizers`);
    ``shared`` to their :class:`SharedVocab`. ``examples`` are tokenized now (the static site's choices).
    The page sends each text it wants tokenized (``text``); the kernel answers in ``result``.
    """

    _esm = module_source("text")
    text = traitlets.Unicode().tag(sync=True)
    result = traitlets.Dict().tag(sync=True)
    examples = traitlets.Dict().tag(sync=True)
    #: Whether the group bands are shown (the page's toggle; the prediction exercise hides them first).
    show_groups = traitlets.Bool(False).tag(sync=True)

    def __init__(self, student_tok=None, teacher_tok=None, *, text: str | None = None, examples=EXAMPLE_TEXTS,
                 shared: SharedVocab | None = None, show_groups: bool = False):
        if (student_tok is None) != (teacher_tok is None):
            raise ValueError("give both tokenizers (student_tok, teacher_tok) or neither (the kit's offline pair)")
        if student_tok is None:
            student_tok, teacher_tok = offline_tokenizers()
        examples = [str(e) for e in examples]
        if text is None:
            if not examples:
                raise ValueError("give a text or at least one example")
            text = examples[0]
        self._toks = (student_tok, teacher_tok)
        self._shared = SharedVocab.from_tokenizers(student_tok, teacher_tok) if shared is None else shared
        tokenized = {e: self.tokenize(e) for e in dict.fromkeys(examples)}
        first = tokenized[text] if text in tokenized else self.tokenize(text)
        super().__init__(text=text, result=first, examples=tokenized, show_groups=bool(show_groups))
        self.reply = {"request": 0, "seconds": "0"}

    def tokenize(self, text: str) -> dict:
        """:func:`tokenize_pair` with this explorable's tokenizers and shared strings."""
        return tokenize_pair(text, *self._toks, shared=self._shared)

    @property
    def num_groups(self) -> int:
        """How many byte-offset groups the shown text has."""
        return len(self.result.get("groups", []))

    def referee(self) -> dict:
        """Tokenize the text the page sent and publish it in ``result`` (the page draws it)."""
        start = time.perf_counter()
        self.result = self.tokenize(self.text)
        return {"seconds": f"{time.perf_counter() - start:.3f}"}

    def type_text(self, text: str) -> None:
        """What typing ``text`` and pressing Enter does, from Python."""
        self.text = text
        self.request += 1
