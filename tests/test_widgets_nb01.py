"""Widgets of notebook 01 driven from Python: the KL explorer and the token chips; the tokenizer switch."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest

from uldviz.maths import patches as V
from uldviz.viz.widgets.kl_explorer import KLExplorer, rebalance
from uldviz.viz.widgets.tokens import TokenChips, chips_html, load_tokenizer_pair

#: A hub name no cache holds, so the offline path is taken on every machine.
NOT_CACHED = "uldviz-tests/no-such-tokenizer"


@pytest.fixture(autouse=True)
def _hub_offline(monkeypatch):
    """Never wait on the network in this file: the hub is offline for every test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ------------------------------------------------------------------ rebalance
def test_rebalance_keeps_proportions_and_sums_to_one():
    out = rebalance({"a": 0.6, "b": 0.3, "c": 0.1}, "a")
    assert sum(out.values()) == pytest.approx(1.0)
    assert out["b"] / out["c"] == pytest.approx(3.0)
    out = rebalance({"a": 0.2, "b": 0.6, "c": 0.2}, "b")
    assert out == pytest.approx({"a": 0.2, "b": 0.6, "c": 0.2})


def test_rebalance_extremes():
    assert rebalance({"a": 1.0, "b": 0.0, "c": 0.0}, "a") == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert rebalance({"a": 0.0, "b": 0.0, "c": 0.0}, "a") == pytest.approx({"a": 0.0, "b": 0.5, "c": 0.5})
    assert rebalance({"a": 0.3}, "a") == {"a": 1.0}
    with pytest.raises(ValueError):
        rebalance({"a": 1.0}, "z")


# ------------------------------------------------------------------ KL explorer
def _values(sliders):
    return {t: s.value for t, s in sliders.items()}


def _check_consistent(e: KLExplorer):
    """Every displayed number equals what the loss functions give for the sliders' distributions."""
    p, q = e.teacher_probs, e.student_probs
    assert sum(_values(e.teacher_sliders).values()) == pytest.approx(1.0, abs=1e-9)
    assert sum(_values(e.student_sliders).values()) == pytest.approx(1.0, abs=1e-9)
    kl = float(V.aligned_kl(p, q))
    assert (math.isnan(kl) and math.isnan(e.kl)) or kl == e.kl
    assert e.uld == pytest.approx(V.uld(p, q), abs=1e-12)
    assert e.smoothed_kl == pytest.approx(V.smoothed_kl(p, q, e.eps_slider.value), rel=1e-12)
    assert 0.0 <= e.uld <= 2.0 and math.isfinite(e.smoothed_kl)
    assert V.format_value(e.uld) in e.readout.value
    assert V.format_value(e.kl) in e.readout.value
    assert e.readout.value == e.readout_text


def test_explorer_starts_on_the_toy_case_with_inf():
    e = KLExplorer(draw=False)
    assert e.teacher_probs == V.TOY_TEACHER and e.student_probs == V.TOY_STUDENT
    assert math.isinf(e.kl) and e.uld == pytest.approx(0.2)
    assert ">inf<" in e.readout.value
    _check_consistent(e)


def test_moving_a_slider_renormalises_and_updates_the_numbers():
    e = KLExplorer(draw=False)
    before_text, before_uld, n = e.readout.value, e.uld, e.n_updates
    e.teacher_sliders["moon"].value = 0.6
    assert e.n_updates == n + 1, "one slider move must trigger exactly one update"
    vals = _values(e.teacher_sliders)
    assert vals["moon"] == 0.6 and vals["dog"] / vals["cat"] == pytest.approx(0.5 / 0.3)
    assert e.uld != before_uld and e.readout.value != before_text
    _check_consistent(e)
    e.student_sliders["sun"].value = 0.05
    _check_consistent(e)


def test_eps_slider_changes_only_the_smoothed_kl():
    e = KLExplorer(draw=False)
    before = (e.smoothed_kl, e.uld, e.intersection_kl)
    e.eps_slider.value = 1e-12
    assert e.smoothed_kl > before[0]
    assert (e.uld, e.intersection_kl) == before[1:]
    _check_consistent(e)


@pytest.mark.parametrize("side", ["teacher", "student"])
def test_extremes_zero_and_one_do_not_crash(side):
    e = KLExplorer(draw=False)
    sliders = e.teacher_sliders if side == "teacher" else e.student_sliders
    for tok in list(sliders):
        for v in (1.0, 0.0, 1.0):
            sliders[tok].value = v
            _check_consistent(e)
    # everything on one token, then that token back to 0: the others share the mass
    tok = list(sliders)[0]
    sliders[tok].value = 1.0
    sliders[tok].value = 0.0
    others = [s.value for t, s in sliders.items() if t != tok]
    assert others == pytest.approx([0.5, 0.5])
    _check_consistent(e)


def test_nan_case_and_undefined_patch_are_reported_not_raised():
    e = KLExplorer(draw=False)
    e.teacher_sliders["dog"].value = 1.0  # teacher: dog 1, moon 0 -> a label (moon) with 0 on both sides
    assert math.isnan(e.kl) and ">NaN<" in e.readout.value
    e.student_sliders["sun"].value = 1.0  # student: no mass on the shared tokens -> patch (b) undefined
    assert math.isnan(e.intersection_kl) and "undefined" in e.readout.value
    _check_consistent(e)


def test_set_probs_and_its_errors():
    e = KLExplorer(draw=False)
    n = e.n_updates
    e.set_probs("student", {"dog": 0.5, "cat": 0.3, "sun": 0.2})
    assert e.n_updates == n + 1 and e.uld == pytest.approx(0.0)
    with pytest.raises(ValueError):
        e.set_probs("student", {"dog": 0.5, "cat": 0.5, "moon": 0.0})
    with pytest.raises(ValueError):
        e.set_probs("nobody", V.TOY_TEACHER)


def test_explorer_css_classes_for_the_browser_test():
    e = KLExplorer(draw=False)
    assert all("uldviz-teacher-slider" in s._dom_classes for s in e.teacher_sliders.values())
    assert all("uldviz-student-slider" in s._dom_classes for s in e.student_sliders.values())
    assert "uldviz-kl-readout" in e.readout._dom_classes
    assert "uldviz-kl-plot" in e.plot._dom_classes


def test_explorer_draws_without_leaking_figures():
    before = set(plt.get_fignums())
    e = KLExplorer(draw=True)
    first = e.last_png
    assert first.startswith(b"\x89PNG")
    e.teacher_sliders["dog"].value = 0.9
    assert set(plt.get_fignums()) == before
    assert e.n_updates == 2
    assert e.last_png.startswith(b"\x89PNG") and e.last_png != first, "the plot must change with the sliders"
    e.eps_slider.value = 1e-3  # ε does not change the bar charts
    assert e.n_updates == 3


def test_explorer_refuses_bad_start_values():
    with pytest.raises(ValueError):
        KLExplorer(teacher={"dog": 0.5, "cat": 0.6}, draw=False)


# ------------------------------------------------------------------ tokenizers
@pytest.fixture(scope="module")
def offline_pair():
    from uldviz.io.tokenizers import offline_tokenizers

    pair = offline_tokenizers()
    return pair.teacher, pair.student  # as these tests unpack them


def test_token_chips_show_both_tokenizations(offline_pair):
    t, s = offline_pair
    w = TokenChips(s, t, "The teacher predicts the next token.")
    text = w.text.value
    expected = tuple(len(tok(text, add_special_tokens=False)["input_ids"]) for tok in (s, t))
    assert w.lengths == expected
    assert w.chips_text.count("class='uldviz-chip'") == sum(expected)
    assert f"{w.overlap['iou']:.3f}" in w.stats.value
    assert f"{expected[0]} vs {expected[1]} tokens" in w.stats.value
    assert 0 < w.cuts[0] <= w.cuts[1]
    assert "uldviz-token-text" in w.text._dom_classes and "uldviz-token-chips" in w.chips._dom_classes


def test_token_chips_say_what_each_vocabulary_number_counts(offline_pair):
    """ids (special tokens included) and distinct texts (no specials, no byte pieces of a character) are named apart,
    and they add up: ids = special ids + distinct texts + ids that hold part of a character or repeat a text."""
    from uldviz.vocab.shared import surface_vocab

    t, s = offline_pair
    w = TokenChips(s, t)
    line = w.vocab_text
    assert line in w.stats.value or line.replace("&", "&amp;") in w.stats.value
    for tok, texts in ((s, w.overlap["student_strings"]), (t, w.overlap["teacher_strings"])):
        specials = len(set(tok.all_special_ids))
        assert texts == len(surface_vocab(tok)) and texts + specials <= len(tok)
        assert f"{len(tok):,}" in line and f"{texts:,}" in line and f"{len(tok) - specials - texts:,}" in line
    assert "ids, special tokens included" in line and "distinct texts" in line
    assert f"{w.overlap['shared']:,} of {w.overlap['union']:,}" in line


def test_token_chips_update_when_the_text_changes(offline_pair):
    t, s = offline_pair
    w = TokenChips(s, t)
    before = (w.lengths, w.chips.value, w.n_updates)
    w.text.value = "Supercalifragilistic tokens <b>here</b>"
    assert w.n_updates == before[2] + 1
    assert w.lengths != before[0] and w.chips.value != before[1]
    assert "<b>" not in w.chips.value and "&lt;" in w.chips.value  # user text is escaped
    w.text.value = ""
    assert w.lengths == (0, 0) and "Type a sentence" in w.chips.value


def test_chips_mark_partial_utf8_characters(offline_pair):
    t, _ = offline_pair
    from uldviz.vocab.strings import token_spans

    spans = token_spans(t, "é")
    if len(spans) > 1:  # byte-level BPE split the two bytes of é: both chips are marked
        assert chips_html("é", spans).count("dashed") == len(spans)
    assert chips_html("ab", [("a", (0, 1)), ("b", (1, 2))]).count("dashed") == 0


def test_load_pair_offline_default(offline_pair):
    s, t, source = load_tokenizer_pair(False)
    assert source.startswith("offline") and len(t) == len(offline_pair[0]) and len(s) == len(offline_pair[1])


def test_hub_path_loads_tokenizers_saved_locally(offline_pair, tmp_path):
    t, s = offline_pair
    t.save_pretrained(tmp_path / "teacher")
    s.save_pretrained(tmp_path / "student")
    s2, t2, source = load_tokenizer_pair(True, str(tmp_path / "student"), str(tmp_path / "teacher"))
    assert source.startswith("hub")
    text = "Tokenizers saved with save_pretrained."
    assert t2(text)["input_ids"] == t(text)["input_ids"] and s2(text)["input_ids"] == s(text)["input_ids"]
    w = TokenChips(s2, t2, text)
    assert w.lengths == (len(s(text, add_special_tokens=False)["input_ids"]),
                         len(t(text, add_special_tokens=False)["input_ids"]))


def test_hub_name_offline_prints_clear_error_and_falls_back(capsys, offline_pair):
    s, t, source = load_tokenizer_pair(True, NOT_CACHED, "gpt2")
    out = capsys.readouterr().out
    assert f"cannot load tokenizer '{NOT_CACHED}'" in out and "offline" in out.lower() and "Falling back" in out
    assert source.startswith("offline") and len(t) == len(offline_pair[0])


def test_hub_name_offline_raises_hub_unavailable():
    from uldviz.io.hub import HubUnavailableError
    from uldviz.io.tokenizers import load_hub_tokenizers

    with pytest.raises(HubUnavailableError, match="no-such-tokenizer"):
        load_hub_tokenizers(NOT_CACHED, "gpt2")
