"""Two tokenizers side by side as coloured token chips, with a text box to try your own sentence.

Shows the two mismatches of cross-tokenizer distillation: the vocabularies (sizes, overlap of
their token strings) and the positions (how many tokens each makes of the same text, and where
both cut it); the counting is done by :mod:`uldviz.vocab`. Also :func:`load_tokenizer_pair`,
the notebook's hub-or-offline switch. Works with ipywidgets 7.7 and 8; the last numbers are kept as
attributes so tests can drive it.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from IPython.display import display

from uldviz.io.hub import HubUnavailableError
from uldviz.io.tokenizers import load_hub_tokenizers, offline_tokenizers
from uldviz.vocab.shared import SharedVocab
from uldviz.vocab.strings import shared_cuts, token_spans, tokenizer_kind

__all__ = [
    "DEFAULT_SENTENCES",
    "load_tokenizer_pair",
    "chips_html",
    "vocabulary_line",
    "TokenChips",
]

#: Sentences the notebook segments by default: prose, code-ish text, and accented characters.
DEFAULT_SENTENCES = (
    "The teacher predicts the next token; the student has never seen its vocabulary.",
    "Use the assert statement to check a condition: assert x > 0, 'x must be positive'.",
    "A naïve café owner wrote “déjà vu” — twice.",
)

_PALETTE = ("#cfe2ff", "#ffe5b4", "#d1f2d9", "#f8d7da", "#e2d9f3", "#fff3b0")


def load_tokenizer_pair(use_hub: bool = False, student_name: str = "google-t5/t5-small", teacher_name: str = "gpt2",
                        *, verbose: bool = True):
    """(student, teacher, source): the two hub tokenizers if asked for and loadable, else the offline pair.

    When the hub cannot provide them the :class:`uldviz.io.hub.HubUnavailableError` message
    is printed (with ``verbose``) and the kit's offline byte-level BPE / Unigram pair is used.
    ``source`` says which pair you got.
    """

    if use_hub:
        try:
            student, teacher = load_hub_tokenizers(student_name, teacher_name)
            return student, teacher, f"hub: {student_name} (student) / {teacher_name} (teacher)"
        except HubUnavailableError as exc:
            if verbose:
                print(f"Hub tokenizers unavailable -> {exc}\nFalling back to the offline pair.")
    student, teacher = offline_tokenizers()
    return student, teacher, "offline: the kit's Unigram (student) / byte-level BPE (teacher)"


def _visible(s: str) -> str:
    """A token's text with spaces and line breaks made visible, HTML-escaped."""
    return html.escape(s.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥"))


def chips_html(text: str, spans, label: str = "") -> str:
    """One row of coloured chips, one per token, showing the text each token covers.

    Chips alternate colours; a dashed border marks a token that covers only part of a
    multi-byte character (its span overlaps its neighbour's). The tooltip shows the raw token.
    """
    chips = []
    prev_end = -1
    starts = [s for _, (s, _) in spans]
    for i, (token, (start, end)) in enumerate(spans):
        nxt_start = starts[i + 1] if i + 1 < len(starts) else None
        partial = start < prev_end or (nxt_start is not None and nxt_start < end)
        border = "1px dashed #c00" if partial else "1px solid #999"
        colour = _PALETTE[i % len(_PALETTE)]
        note = " (partial character)" if partial else ""
        tip = html.escape(f"token {i}: {token!r}, characters {start}-{end}{note}", quote=True)
        chips.append(
            f"<span class='uldviz-chip' title=\"{tip}\" style='background:{colour};border:{border};"
            f"border-radius:4px;padding:1px 3px;margin:1px;font-family:monospace;white-space:pre;"
            f"display:inline-block'>{_visible(text[start:end])}</span>"
        )
        prev_end = max(prev_end, end)
    head = ""
    if label:
        head = f"<div style='font-weight:600;margin-top:4px'>{html.escape(label)} — {len(spans)} tokens</div>"
    return f"{head}<div style='line-height:1.9'>{''.join(chips)}</div>"


def vocabulary_line(student_tok, teacher_tok, overlap: dict) -> str:
    """What the two vocabularies hold, saying exactly what each number counts: ids, or distinct texts.

    ``overlap`` is :meth:`uldviz.vocab.shared.SharedVocab.overlap` of the pair. The ids include the special
    tokens; the texts leave them out, and also the ids that spell no text of their own (a byte-level entry holding
    part of a multi-byte character) or repeat another id's text. Shared strings and IoU are counted on the texts.
    """
    toks = (student_tok, teacher_tok)
    ids = [len(t) for t in toks]
    specials = [len(set(getattr(t, "all_special_ids", []))) for t in toks]
    texts = [overlap["student_strings"], overlap["teacher_strings"]]
    other = [i - s - x for i, s, x in zip(ids, specials, texts)]
    return (f"vocabularies (student vs teacher): {ids[0]:,} vs {ids[1]:,} ids, special tokens included "
            f"({specials[0]} vs {specials[1]} of them); without the special tokens they spell {texts[0]:,} vs "
            f"{texts[1]:,} distinct texts ({other[0]:,} vs {other[1]:,} ids hold only part of a character or repeat "
            f"a text). Texts both vocabularies have: {overlap['shared']:,} of {overlap['union']:,} "
            f"(IoU = {overlap['iou']:.3f})")


class TokenChips:
    """Text box + two rows of token chips (student, teacher) + vocabulary and position statistics.

    Attributes after every update: ``spans`` (teacher, student spans), ``lengths`` (token counts),
    ``cuts`` (shared, total cut points), ``overlap`` (vocabulary overlap dict, computed once), ``vocab_text``
    (:func:`vocabulary_line`: ids and distinct texts, each said by name), ``chips_text`` / ``stats_text`` (the HTML
    shown) and ``n_updates``.
    """

    def __init__(self, student_tok, teacher_tok, text: str = DEFAULT_SENTENCES[0], *, names=("student", "teacher")):
        self.toks = (student_tok, teacher_tok)
        self.names = tuple(f"{n} ({tokenizer_kind(t)}, {len(t):,} tokens)" for n, t in zip(names, self.toks))
        self.overlap = SharedVocab.from_tokenizers(student_tok, teacher_tok).overlap()
        self.vocab_text = vocabulary_line(student_tok, teacher_tok, self.overlap)
        self.n_updates = 0
        self.text = widgets.Text(value=text, description="Your text:", continuous_update=False,
                                 layout=widgets.Layout(width="95%"))
        self.text.add_class("uldviz-token-text")
        self.chips = widgets.HTML()
        self.chips.add_class("uldviz-token-chips")
        self.stats = widgets.HTML()
        self.stats.add_class("uldviz-token-stats")
        self.text.observe(lambda change: self.update(), names="value")
        self.ui = widgets.VBox([self.text, self.chips, self.stats])
        self.ui.add_class("uldviz-token-chips-widget")
        self.update()

    def update(self) -> None:
        """Re-tokenize the text box's content and refresh chips and statistics (empty text shows a hint)."""
        text = self.text.value
        vocab_line = self.vocab_text
        if not text:
            self.spans, self.lengths, self.cuts = ([], []), (0, 0), (0, 0)
            self.chips_text = "<i>Type a sentence in the box above.</i>"
        else:
            self.spans = tuple(token_spans(t, text) for t in self.toks)
            self.lengths = tuple(len(s) for s in self.spans)
            self.cuts = shared_cuts(*self.spans)
            self.chips_text = "".join(chips_html(text, s, n) for s, n in zip(self.spans, self.names))
        n_s, n_t = self.lengths
        pos_line = (
            f"sequence lengths: {n_s} vs {n_t} tokens for {len(text)} characters; "
            f"both tokenizers cut the text at the same place {self.cuts[0]} times out of {self.cuts[1]} cut points"
        )
        self.stats_text = (
            f"<div class='uldviz-token-stats-text'>{html.escape(vocab_line)}<br>{html.escape(pos_line)}</div>"
        )
        self.chips.value = self.chips_text
        self.stats.value = self.stats_text
        self.n_updates += 1

    def _ipython_display_(self):
        """Displaying the object displays its widget tree."""
        display(self.ui)
