"""Notebook 04's alignment explorer: type a sentence, see its groups, and what identity-keeping losses compare.

:class:`AlignmentExplorer` composes :func:`uldviz.alignment.text.align_text` (the groups),
:mod:`uldviz.maths.identity` (chunk likelihoods, merged distributions, hybrid ULD, ALM's loss) and
:mod:`uldviz.viz.plots.spans` (static figures in an ``Output``). Only ipywidgets present in 7.7 and 8
are used; inputs and the last numbers are attributes, so tests drive it from Python.
"""

from __future__ import annotations

import html

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from uldviz.alignment.text import TextAlignment, align_text
from uldviz.maths.identity import (
    ALM_TAU,
    chunk_likelihood_loss,
    chunk_log_likelihoods,
    hybrid_uld_terms,
    merged_group_logprobs,
)
from uldviz.train.metrics import context_length
from uldviz.viz.plots import spans as splots
from uldviz.vocab.shared import SharedVocab

__all__ = ["DEFAULT_TEXT", "GroupValues", "group_values", "AlignmentExplorer"]

#: The explorer's first sentence: plain words, a leading space, accents and an emoji.
DEFAULT_TEXT = "A naïve café owner wrote “déjà vu” twice 🙂"


class GroupValues:
    """Per-group numbers of one sentence (1-D tensors over its G groups) from two models' logits.

    ``teacher_ll``/``student_ll``: chunk log-likelihoods; ``chunk_loss``: ALM's BCE at ``tau``;
    ``hybrid_shared``/``hybrid_unshared``/``hybrid``: the hybrid loss's parts and total at weight
    ``weight``; ``teacher_merged``/``student_merged``: merged distributions (G, V) as log-probs.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _model_logits(model, ids: list) -> torch.Tensor:
    """(1, L, V) logits of one row, float32, without gradient."""
    param = next(model.parameters(), None)
    x = torch.tensor([ids], device=param.device if param is not None else "cpu")
    with torch.no_grad():
        return model(input_ids=x, attention_mask=torch.ones_like(x)).logits.float().cpu()


def group_values(view: TextAlignment, student_logits, teacher_logits, shared: SharedVocab,
                 tau: float = ALM_TAU) -> GroupValues:
    """Every group's chunk likelihoods and loss values for one sentence, by :mod:`uldviz.maths.identity`."""
    al = view.alignment
    s_ids, t_ids = torch.tensor([view.student_ids]), torch.tensor([view.teacher_ids])
    s_group = (al.sample, al.student_start, al.student_end)
    t_group = (al.sample, al.teacher_start, al.teacher_end)
    s_ll = chunk_log_likelihoods(student_logits, s_ids, *s_group)
    t_ll = chunk_log_likelihoods(teacher_logits, t_ids, *t_group)
    s_merged = merged_group_logprobs(student_logits, s_ids, *s_group)
    t_merged = merged_group_logprobs(teacher_logits, t_ids, *t_group)
    terms = hybrid_uld_terms(s_merged, t_merged, shared)
    return GroupValues(
        student_ll=s_ll, teacher_ll=t_ll, chunk_loss=chunk_likelihood_loss(s_ll, t_ll, tau=tau, reduction="none"),
        student_merged=s_merged, teacher_merged=t_merged, hybrid_shared=terms.shared,
        hybrid_unshared=terms.unshared, weight=terms.weight,
        hybrid=terms.total, tau=tau,
    )


def _max_positions(model) -> int | None:
    """The longest input a model takes (:func:`uldviz.train.metrics.context_length`), or None when it does not say."""
    try:
        return context_length(model)
    except ValueError:
        return None


class AlignmentExplorer:
    """Text box + group selector; the sentence's groups drawn, and with models what each loss compares.

    Attributes after each update: ``view`` (:class:`uldviz.alignment.text.TextAlignment` or None for an
    empty/unalignable text), ``group`` (selected index), ``values`` (:class:`GroupValues` or None
    without models), ``readout_text`` (the HTML shown), ``selected`` (dict of the selected group's
    numbers: text, tokens, and with models ``p_teacher``, ``p_student``, ``chunk_loss``, ``hybrid``...),
    ``n_updates``.
    """

    def __init__(self, student_tok, teacher_tok, student_model=None, teacher_model=None, text: str = DEFAULT_TEXT,
                 *, shared: SharedVocab | None = None, tau: float = ALM_TAU, top_k: int = 8, draw: bool = True):
        if (student_model is None) != (teacher_model is None):
            raise ValueError("give both models (student_model and teacher_model) or neither")
        self.toks = (student_tok, teacher_tok)
        self.models = (student_model, teacher_model)
        self.shared = shared if shared is not None else SharedVocab.from_tokenizers(student_tok, teacher_tok)
        self.tau, self.top_k, self.draw = float(tau), int(top_k), draw
        limits = [m for m in (_max_positions(student_model), _max_positions(teacher_model)) if m]
        self.max_len = min(limits) if limits else None
        self.n_updates = 0
        self.text = W.Text(value=text, description="Your text:", continuous_update=False,
                           layout=W.Layout(width="95%"))
        self.text.add_class("uldviz-align-text")
        self.group_select = W.Dropdown(options=[("-", 0)], value=0, description="group:",
                                       layout=W.Layout(width="60%"))
        self.group_select.add_class("uldviz-align-group")
        self.readout = W.HTML()
        self.readout.add_class("uldviz-align-readout")
        self.out = W.Output()
        self.widget = W.VBox([self.text, self.group_select, self.readout, self.out])
        self.widget.add_class("uldviz-alignment-explorer")
        self._quiet = False
        self.text.observe(lambda change: self.update_text(), names="value")
        self.group_select.observe(self._on_group, names="value")
        self.update_text()

    def _ipython_display_(self):
        """Displaying the explorer displays its widget tree."""
        display(self.widget)

    # ------------------------------------------------------------------ updates
    def update_text(self) -> None:
        """Re-align the text box's sentence, recompute per-group values (with models), reset the selector."""
        self.view, self.values, self.error = None, None, ""
        text = self.text.value
        if text:
            try:
                self.view = align_text(text, *self.toks, max_len=self.max_len)
            except ValueError as err:
                self.error = str(err)
        if self.view is not None and self.models[0] is not None:
            s_logits = _model_logits(self.models[0], self.view.student_ids)
            t_logits = _model_logits(self.models[1], self.view.teacher_ids)
            self.values = group_values(self.view, s_logits, t_logits, self.shared, self.tau)
        options = [("-", 0)] if self.view is None else [
            (f"{g}: {self.view.group_text(g)!r}", g) for g in range(self.view.num_groups)]
        self._quiet = True
        try:
            self.group_select.options = options
            self.group_select.value = self._default_group()
        finally:
            self._quiet = False
        self.update_group()

    def _default_group(self) -> int:
        """The first group with several tokens on a side (the interesting ones), else group 0."""
        if self.view is None:
            return 0
        for g, ((s0, s1), (t0, t1)) in enumerate(self.view.groups):
            if s1 - s0 > 1 or t1 - t0 > 1:
                return g
        return 0

    def _on_group(self, change) -> None:
        if not self._quiet:
            self.update_group()

    def update_group(self) -> None:
        """Refresh the readout and the figures for the selected group."""
        self.group = int(self.group_select.value)
        self.selected = self._selected_numbers()
        self.readout_text = self._readout_html()
        self.readout.value = self.readout_text
        if self.draw:
            self._redraw()
        self.n_updates += 1

    # ------------------------------------------------------------------ content
    def _tokens(self, side: str, a: int, b: int) -> list[str]:
        ids, spans = (self.view.student_ids, self.view.student_spans) if side == "student" else (
            self.view.teacher_ids, self.view.teacher_spans)
        raw = self.view.text.encode("utf-8")
        return [splots.token_label(raw[spans[i][0]:spans[i][1]]) for i in range(a, b)]

    def _selected_numbers(self) -> dict:
        if self.view is None:
            return {}
        g = self.group
        (s0, s1), (t0, t1) = self.view.groups[g]
        out = {"group": g, "text": self.view.group_text(g), "student_tokens": self._tokens("student", s0, s1),
               "teacher_tokens": self._tokens("teacher", t0, t1),
               "student_shared": splots.shared_flags(self.view.student_ids[s0:s1], self.shared, "student"),
               "teacher_shared": splots.shared_flags(self.view.teacher_ids[t0:t1], self.shared, "teacher")}
        v = self.values
        if v is not None:
            out.update(p_teacher=float(v.teacher_ll[g].exp()), p_student=float(v.student_ll[g].exp()),
                       chunk_loss=float(v.chunk_loss[g]), hybrid_shared=float(v.hybrid_shared[g]),
                       hybrid_unshared=float(v.hybrid_unshared[g]), hybrid=float(v.hybrid[g]), weight=v.weight)
        return out

    def _readout_html(self) -> str:
        if self.view is None:
            why = html.escape(self.error) if self.error else "Type a sentence in the box above."
            return f"<div class='uldviz-align-readout-text'><i>{why}</i></div>"
        s = self.selected
        n_shared = len(self.shared)
        lines = [
            f"{self.view.num_groups} groups; {n_shared} token strings are in both vocabularies "
            f"(hybrid weight w = {n_shared}/{self.shared.teacher_size or '?'}).",
            f"group {s['group']}: text {s['text']!r} — teacher {' + '.join(s['teacher_tokens'])} "
            f"({len(s['teacher_tokens'])} tokens), student {' + '.join(s['student_tokens'])} "
            f"({len(s['student_tokens'])} tokens)",
        ]
        if self.values is not None:
            lines.append(
                f"chunk probability: teacher {s['p_teacher']:.4g}, student {s['p_student']:.4g}; "
                f"ALM loss (τ = {self.tau:g}) = {s['chunk_loss']:.4g}"
            )
            lines.append(
                f"hybrid ULD = w·D + (1−w)·ULD = {s['weight']:.3f}·{s['hybrid_shared']:.4g} + "
                f"{1 - s['weight']:.3f}·{s['hybrid_unshared']:.4g} = {s['hybrid']:.4g}"
            )
        else:
            lines.append("Give a student and a teacher model to see chunk probabilities and loss values.")
        body = "<br>".join(html.escape(x) for x in lines)
        return f"<div class='uldviz-align-readout-text'>{body}</div>"

    def _redraw(self) -> None:
        figs = []
        if self.view is not None:
            figs.append(splots.plot_span_groups(self.view, shared=self.shared, selected=self.group))
            if self.values is not None:
                g, v = self.group, self.values
                figs.append(splots.plot_group_losses(
                    v.teacher_merged[g], v.student_merged[g], self.shared, teacher_ll=float(v.teacher_ll[g]),
                    student_ll=float(v.student_ll[g]), tau=self.tau, top_k=self.top_k,
                    title=f"group {g}: {self.view.group_text(g)!r}"))
        with self.out:
            self.out.clear_output(wait=True)
            for fig in figs:
                display(fig)
        for fig in figs:
            plt.close(fig)
        self.figures_drawn = len(figs)
