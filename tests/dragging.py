"""Drag the explorables with Playwright's mouse and check what they show against the kit's Python.

Shared by the JupyterLab test (test_browser.py: a kernel referees every state) and the static-site test
(test_site.py: no kernel, the page says so). The state is read back from the widget (its ``data-state``),
the kit recomputes it here, and the page's readout must show the same number.
"""

from __future__ import annotations

import json
import math
import time

import pytest

from uldviz.maths.patches import aligned_kl, format_value

#: Seconds to wait for the kernel's answer after a drag.
KERNEL_WAIT = 30


def _state(root) -> dict:
    return json.loads(root.get_attribute("data-state"))


def _drag(page, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=steps)
    page.mouse.up()


def _wait_for_status(root, cls: str, needle: str, timeout: float) -> str:
    """The status line's text once it has class ``cls`` and contains ``needle`` (AssertionError after ``timeout``)."""
    status = root.locator(".uldviz-x-status").first
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = status.inner_text()
        if cls in (status.get_attribute("class") or "") and needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"the status line never showed {needle!r} ({cls}); last: {text!r}")


def kit_bars(state: dict) -> tuple[float, float]:
    """(ULD by the kit's uld_loss, raw torch KL) of the bars' state."""
    from uldviz.viz.explorables.distributions import kit_uld

    teacher = dict(zip(state["teacher_tokens"], state["teacher"]))
    student = dict(zip(state["student_tokens"], state["student"]))
    return kit_uld(student=student.values(), teacher=teacher.values()), float(aligned_kl(teacher, student))


def drag_bar(page, *, side: str = "teacher", token: str = "dog", to: float = 0.1, kernel: bool) -> dict:
    """Drag one bar of the page's first two-distributions explorable to about ``to``; check the readout.

    The readout (ULD and KL, shown and full precision) must be the kit's numbers for the state the widget
    holds after the drag; with ``kernel`` the status line must report the kernel's agreement with them,
    without it the page must say that no kernel is there. Returns what it saw.
    """
    root = page.locator(".uldviz-x-distributions").first
    root.scroll_into_view_if_needed()
    before = root.locator(".uldviz-x-uld").inner_text(), _state(root)
    track = root.locator(f".uldviz-x-track[data-side='{side}'][data-token='{token}']")
    box = track.bounding_box()
    x = box["x"] + box["width"] / 2
    _drag(page, (x, box["y"] + box["height"] * 0.5), (x, box["y"] + box["height"] * (1 - to)))
    state = _state(root)
    uld, kl = kit_bars(state)
    moved = dict(zip(state[f"{side}_tokens"], state[side]))[token]
    assert abs(moved - to) < 0.05 and state != before[1], f"the drag did not move {token} to about {to}: {state}"
    shown = root.locator(".uldviz-x-uld")
    assert float(shown.get_attribute("data-value")) == pytest.approx(uld, abs=1e-12)
    assert shown.inner_text() == format_value(uld) != before[0], (shown.inner_text(), uld, before[0])
    kl_shown = float(root.locator(".uldviz-x-kl").get_attribute("data-value"))
    assert (math.isnan(kl) and math.isnan(kl_shown)) or kl_shown == kl or abs(kl_shown - kl) < 1e-12
    if kernel:
        status = _wait_for_status(root, "uldviz-x-agree", f"uld_loss = {format_value(uld)}", KERNEL_WAIT)
    else:
        status = _wait_for_status(root, "uldviz-x-offline", "No kernel", 5)
    return {"root": root, "before": before[0], "state": state, "uld": uld, "kl": kl, "status": status}


def drag_plan_cell(page, source: tuple[int, int], target: tuple[int, int], *, kernel: bool) -> dict:
    """Drag plan cell ``source`` onto ``target`` in the page's first plan explorable; check the cost readout."""
    from uldviz.viz.explorables.plan import crossing_pairs, plan_cost

    root = page.locator(".uldviz-x-plan").first
    root.scroll_into_view_if_needed()
    cells = [root.locator(f".uldviz-x-hit[data-row='{r}'][data-col='{c}']").bounding_box() for r, c in (source, target)]
    centre = [(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2) for b in cells]
    before = _state(root)
    _drag(page, centre[0], centre[1], steps=5)
    state = _state(root)
    assert state["plan"] != before["plan"], "the drag did not change the plan"
    cost = root.locator(".uldviz-x-cost")
    problem = json.loads(root.get_attribute("data-problem"))  # the padded values and the cost matrix
    want = plan_cost(state["plan"], problem["cost"])
    assert float(cost.get_attribute("data-value")) == pytest.approx(want, abs=1e-12)
    assert cost.inner_text() == format_value(want)
    assert state["crossings"] == crossing_pairs(state["plan"], teacher=problem["teacher"], student=problem["student"])
    if kernel:
        _wait_for_status(root, "uldviz-x-agree", f"N·⟨π, C⟩ = {format_value(want)}", KERNEL_WAIT)
    else:
        _wait_for_status(root, "uldviz-x-offline", "No kernel", 5)
    return {"root": root, "state": state, "cost": want}


def show_text(page, text: str, *, kernel: bool) -> dict:
    """Type ``text`` into the page's first text explorable (Enter); check both rows and the groups.

    With a kernel the rows must be what the kit's offline pair makes of the text (:func:`tokenize_pair`); on
    the static page a text that is not one of the examples must get the note that a kernel is needed.
    """
    root = page.locator(".uldviz-x-text").first
    root.scroll_into_view_if_needed()
    box = root.locator(".uldviz-x-textbox")
    box.fill(text)
    box.press("Enter")
    if not kernel:
        note = root.locator(".uldviz-x-note")
        note.wait_for(state="visible", timeout=5000)
        assert "needs a kernel" in note.inner_text()
        return {"root": root, "note": note.inner_text()}
    deadline = time.monotonic() + KERNEL_WAIT
    while _state(root)["text"] != text:
        assert time.monotonic() < deadline, f"the kernel never tokenized {text!r}: {_state(root)}"
        time.sleep(0.2)
    from uldviz.io.tokenizers import offline_tokenizers
    from uldviz.viz.explorables.text import tokenize_pair

    want = tokenize_pair(text, *offline_tokenizers())
    state = _state(root)
    assert state["groups"] == len(want["groups"]) and state["teacher_tokens"] == len(want["teacher"]["tokens"])
    assert state["student_tokens"] == len(want["student"]["tokens"])
    assert root.locator(".uldviz-x-chip.uldviz-x-teacher").count() >= state["teacher_tokens"]
    _wait_for_status(root, "uldviz-x-agree", "tokenized by the kernel", KERNEL_WAIT)
    return {"root": root, "state": state}


def snap_plan(page, *, kernel: bool) -> float:
    """Press "snap to POT's optimum" in the page's first plan explorable; the plan's cost must become the optimum.

    With a kernel, POT solves now (``ot.emd``) and the kernel must agree; without, the plan stored when the page
    was built is used and the page says so. Returns the optimum shown.
    """
    root = page.locator(".uldviz-x-plan").first
    root.locator(".uldviz-x-snap").click()
    if kernel:
        _wait_for_status(root, "uldviz-x-agree", "computed now by ot.emd; optimal", KERNEL_WAIT)
    else:
        assert "when the page was built" in root.locator(".uldviz-x-last").inner_text()
    best = float(root.locator(".uldviz-x-optimum").get_attribute("data-value"))
    assert root.locator(".uldviz-x-cost").inner_text() == format_value(best)
    return best
