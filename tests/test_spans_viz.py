"""Notebook 04's alignment explorer and its plots, driven from Python (the kit's tokenizers and teacher)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from uldviz.alignment.text import align_text
from uldviz.io.models import load_teacher, tiny_causal_lm  # noqa: E402
from uldviz.io.tokenizers import offline_tokenizers
from uldviz.maths.identity import (  # noqa: E402
    chunk_likelihood_loss,
    chunk_log_likelihoods,
    hybrid_uld_loss,
    merged_group_logprobs,
)
from uldviz.viz.plots import spans as splots  # noqa: E402
from uldviz.viz.widgets.spans import DEFAULT_TEXT, AlignmentExplorer, group_values  # noqa: E402
from uldviz.vocab.shared import SharedVocab  # noqa: E402


@pytest.fixture(scope="module")
def kit():
    student_tok, teacher_tok = offline_tokenizers()
    teacher, _, _ = load_teacher()
    student = tiny_causal_lm(len(student_tok), seed=0)
    return dict(student_tok=student_tok, teacher_tok=teacher_tok, student=student, teacher=teacher,
                shared=SharedVocab.from_tokenizers(student_tok, teacher_tok))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- align_text and plots
def test_align_text_rows_start_with_the_eos_and_groups_tile_the_text(kit):
    view = align_text("café 🙂 au lait", kit["student_tok"], kit["teacher_tok"])
    assert view.student_ids[0] == kit["student_tok"].eos_token_id and view.student_spans[0] == (0, 0)
    assert view.teacher_ids[0] == kit["teacher_tok"].eos_token_id
    texts = [view.group_text(g) for g in range(view.num_groups)]
    assert "".join(texts) == "café 🙂 au lait"
    assert "é" in texts and "🙂" in texts
    with pytest.raises(IndexError):
        view.group_text(view.num_groups)
    with pytest.raises(ValueError, match="empty"):
        align_text("", kit["student_tok"], kit["teacher_tok"])
    short = align_text("café au lait", kit["student_tok"], kit["teacher_tok"], max_len=4)
    assert len(short.student_ids) == 4 and "".join(short.group_text(g) for g in range(short.num_groups)) == "caf"


def test_token_label_shows_spaces_split_bytes_and_emoji():
    assert splots.token_label(b" a\n") == "␣a↵"
    assert splots.token_label("é".encode()[:1]) == "c3"
    assert splots.token_label("🙂".encode()) == "U+1F642"


def test_plot_span_groups_draws_every_group_and_marks_shared_tokens(kit):
    view = align_text(DEFAULT_TEXT, kit["student_tok"], kit["teacher_tok"])
    fig = splots.plot_span_groups(view, shared=kit["shared"], selected=3, line_bytes=30)
    assert [g for g, *_ in fig.uldviz_groups] == list(range(view.num_groups))
    assert max(line for *_, line in fig.uldviz_groups) >= 1  # wrapped over several lines
    n_student = sum(s1 - s0 for (s0, s1), _ in view.groups)
    assert len(fig.uldviz_tokens["student"]) == n_student
    shared_s = set(kit["shared"].student_ids.tolist())
    for i, _, flag in fig.uldviz_tokens["student"]:
        assert flag == (view.student_ids[i] in shared_s)
    labels = [lab for _, lab, _ in fig.uldviz_tokens["teacher"]]
    assert "c3" in labels and "a9" in labels  # 'é' split by the byte-level teacher
    assert "red: group 3" in fig.axes[0].get_title()
    plain = splots.plot_span_groups(view)
    assert not any(f for _, _, f in plain.uldviz_tokens["teacher"])
    with pytest.raises(IndexError):
        splots.plot_span_groups(view, selected=999)
    with pytest.raises(TypeError, match="TextAlignment"):
        splots.plot_span_groups("a text")


def test_plot_group_losses_panels_hold_the_numbers_compared():
    shared = SharedVocab.from_vocabs({"a": 0, "b": 1}, {"b": 2, "a": 3})
    lt = torch.log(torch.tensor([0.1, 0.05, 0.5, 0.2, 0.15]))
    ls = torch.log(torch.tensor([0.3, 0.4, 0.2, 0.1]))
    fig = splots.plot_group_losses(lt, ls, shared, teacher_ll=math.log(0.2), student_ll=math.log(0.02), top_k=2)
    p = fig.uldviz_panels
    assert p["chunk"] == pytest.approx((0.2, 0.02))
    assert p["shared"][0] == ["b", "a"] and p["shared"][1] == pytest.approx([0.5, 0.2])
    assert p["shared"][2] == pytest.approx([0.4, 0.3])
    assert p["sorted"][0] == pytest.approx([0.15, 0.1]) and p["sorted"][1] == pytest.approx([0.2, 0.1])
    empty = SharedVocab.from_vocabs({"x": 0}, {"y": 0})
    assert splots.plot_group_losses(lt, ls, empty, teacher_ll=-1.0, student_ll=-2.0).uldviz_panels["shared"][0] == []
    with pytest.raises(ValueError, match="k must be"):
        splots.plot_group_losses(lt, ls, shared, teacher_ll=-1.0, student_ll=-2.0, top_k=0)


# --------------------------------------------------------------------------- group values and the explorer
def test_group_values_are_the_identity_functions(kit):
    view = align_text(DEFAULT_TEXT, kit["student_tok"], kit["teacher_tok"])
    s_ids, t_ids = torch.tensor([view.student_ids]), torch.tensor([view.teacher_ids])
    with torch.no_grad():
        zs = kit["student"](input_ids=s_ids).logits
        zt = kit["teacher"](input_ids=t_ids).logits
    v = group_values(view, zs, zt, kit["shared"], tau=50.0)
    al = view.alignment
    ll_s = chunk_log_likelihoods(zs, s_ids, al.sample, al.student_start, al.student_end)
    ll_t = chunk_log_likelihoods(zt, t_ids, al.sample, al.teacher_start, al.teacher_end)
    torch.testing.assert_close(v.student_ll, ll_s)
    torch.testing.assert_close(v.chunk_loss.mean(), chunk_likelihood_loss(ll_s, ll_t, tau=50.0))
    ms = merged_group_logprobs(zs, s_ids, al.sample, al.student_start, al.student_end)
    mt = merged_group_logprobs(zt, t_ids, al.sample, al.teacher_start, al.teacher_end)
    torch.testing.assert_close(v.hybrid.mean(), hybrid_uld_loss(ms, mt, kit["shared"]))
    assert v.weight == pytest.approx(len(kit["shared"]) / len(kit["teacher_tok"]))


def test_explorer_readout_follows_the_text_and_the_group(kit):
    e = AlignmentExplorer(kit["student_tok"], kit["teacher_tok"], kit["student"], kit["teacher"],
                          shared=kit["shared"])
    assert e.view is not None and e.figures_drawn == 2
    assert len(e.group_select.options) == e.view.num_groups
    first, first_readout = dict(e.selected), e.readout.value
    (s0, s1), (t0, t1) = e.view.groups[e.group]
    assert s1 - s0 > 1 or t1 - t0 > 1  # the default group is one where the tokenizations differ
    assert f"{first['p_teacher']:.4g}" in e.readout.value and f"{first['hybrid']:.4g}" in e.readout.value
    # another group: readout and numbers change, and match group_values
    e.group_select.value = (e.group + 1) % e.view.num_groups
    assert e.selected["group"] == e.group != first["group"] and e.readout.value != first_readout
    assert e.selected["text"] == e.view.group_text(e.group) and e.selected["p_teacher"] != first["p_teacher"]
    assert e.selected["chunk_loss"] == pytest.approx(float(e.values.chunk_loss[e.group]))
    assert e.selected["p_student"] == pytest.approx(math.exp(float(e.values.student_ll[e.group])))
    # a new sentence: new groups, selector reset
    n = e.n_updates
    e.text.value = "the teacher and the student"
    assert e.n_updates == n + 1 and e.view.text == "the teacher and the student"
    assert [lab for lab, _ in e.group_select.options][0].startswith("0: 'the'")
    assert "the teacher and the student" not in first["text"]
    # empty text: a hint, no figure
    e.text.value = ""
    assert e.view is None and "Type a sentence" in e.readout.value and e.figures_drawn == 0


def test_explorer_without_models_shows_the_groups_only(kit):
    e = AlignmentExplorer(kit["student_tok"], kit["teacher_tok"], text="café au lait")
    assert e.values is None and e.figures_drawn == 1
    assert "Give a student and a teacher model" in e.readout.value
    assert e.selected["teacher_tokens"] == ["c3", "a9"] and e.selected["student_tokens"] == ["é"]
    before = e.readout.value
    e.group_select.value = 0
    assert e.readout.value != before and e.selected["text"] == "c"


def test_explorer_truncates_to_the_models_context_and_checks_its_arguments(kit):
    e = AlignmentExplorer(kit["student_tok"], kit["teacher_tok"], kit["student"], kit["teacher"],
                          text="word " * 200, draw=False)
    assert len(e.view.student_ids) <= 128 and len(e.view.teacher_ids) <= 128
    assert torch.isfinite(e.values.hybrid).all()
    with pytest.raises(ValueError, match="both models"):
        AlignmentExplorer(kit["student_tok"], kit["teacher_tok"], kit["student"], None)


def test_merged_student_bars_stay_visible_at_the_teachers_scale():
    """A merged student row 1e-4 times the teacher's: on a log axis whose range covers both, every bar shows."""
    shared = SharedVocab.from_vocabs({"a": 0, "b": 1}, {"b": 2, "a": 3})
    lt = torch.log(torch.tensor([0.1, 0.05, 0.5, 0.2, 0.15]))
    ls = torch.log(torch.tensor([0.3, 0.4, 0.2, 0.1]) * 1e-4)
    fig = splots.plot_group_losses(lt, ls, shared, teacher_ll=math.log(0.2), student_ll=math.log(2e-5), top_k=2)
    lo, hi = fig.uldviz_panels["ylim"]
    student = fig.uldviz_panels["shared"][2] + fig.uldviz_panels["sorted"][1]
    for ax in fig.axes[1:]:
        assert ax.get_yscale() == "log" and ax.get_ylim() == pytest.approx((lo, hi))
    assert lo < min(student) and max(fig.uldviz_panels["shared"][1]) < hi


def test_alignment_strips_have_readable_labels(kit):
    """Labels of at least 10 pt in figures at most 9 inches wide: about 14 px at the notebooks' 100 dpi, unscaled
    (the old strips: 7 pt in 11-inch figures a notebook shrank, about 6 px)."""
    from uldviz.train.batch import encode_batch
    from uldviz.viz.plots.training import plot_position_pairs, token_labels

    view = align_text(DEFAULT_TEXT, kit["student_tok"], kit["teacher_tok"])
    fig = splots.plot_span_groups(view, shared=kit["shared"])
    assert fig.get_size_inches()[0] <= 9 and min(t.get_fontsize() for t in fig.uldviz_labels) >= 10
    text = "The café serves naïve lambda expressions 🙂 to every identifier."
    b = encode_batch([text], kit["student_tok"], kit["teacher_tok"], student_len=128, teacher_len=128)
    spans = [list(zip(token_labels(text, off[0, :int(v.sum())].tolist()), off[0, :int(v.sum())].tolist()))
             for off, v in ((b.student_offsets, b.student_valid), (b.teacher_offsets, b.teacher_valid))]
    fig = plot_position_pairs(*spans, [(1, 1)], contrast_pairs=[(2, 3)])
    labels = [t.get_text() for t in fig.uldviz_labels]
    assert fig.get_size_inches()[0] <= 9 and min(t.get_fontsize() for t in fig.uldviz_labels) >= 9
    assert "é×2" in labels and "☺×4" in labels  # a split character: once, with its number of byte tokens
    assert len(fig.axes[0].lines) == 2
