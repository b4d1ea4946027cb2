// Explorable 3: your text, two tokenizers. Both tokenizations on one byte axis, the byte-offset groups as
// bands across the two rows, shared strings filled green. The tokenizers run in Python (text.py): with a
// kernel any text works; on the static site only the examples tokenized when the page was built.

const PX = 15;  // pixels per UTF-8 byte: both rows share this axis, so cuts at the same byte line up

function render({ model, el }) {
  const root = h("div", { class: "uldviz-x uldviz-x-text" });
  const box = h("input", { type: "text", class: "uldviz-x-textbox", spellcheck: "false",
    "aria-label": "your text" });
  const go = h("button", { type: "button", class: "uldviz-x-button uldviz-x-go", text: "tokenize" });
  const toggle = h("button", { type: "button", class: "uldviz-x-button uldviz-x-toggle", text: "show groups" });
  const examples = h("div", { class: "uldviz-x-examples" });
  const note = h("div", { class: "uldviz-x-note", style: "display:none" });
  const summary = h("div", { class: "uldviz-x-summary" });
  const rows = h("div", { class: "uldviz-x-rows" });
  const info = h("div", { class: "uldviz-x-hint uldviz-x-info", text: "Point at a token to see its group." });
  const status = h("div", { class: "uldviz-x-status" });
  const legend = h("div", { class: "uldviz-x-legend" }, "teacher row on top, student row below; ",
    h("span", { class: "uldviz-x-chip uldviz-x-teacher uldviz-x-shared", text: "shared" }), " a string both ",
    "vocabularies hold (SharedVocab); ", h("span", { class: "uldviz-x-chip uldviz-x-teacher", text: "own" }),
    " only this tokenizer's; ", h("span", { class: "uldviz-x-chip uldviz-x-teacher uldviz-x-partial", text: "c3" }),
    " part of a character (bytes in hex); a band is one group: both rows end at its last byte.");
  root.append(h("div", { class: "uldviz-x-controls" }, box, go, toggle), examples, note, summary, rows, info,
    legend, status);
  el.append(root);

  for (const text of Object.keys(model.get("examples") || {})) {
    const b = h("button", { type: "button", class: "uldviz-x-button uldviz-x-example", "data-text": text,
      text: text.length > 38 ? `${text.slice(0, 36)}…` : text, title: text });
    b.addEventListener("click", () => { box.value = text; submit(); });
    examples.append(b);
  }

  function draw(result) {
    rows.replaceChildren();
    if (!result || !result.teacher) return;
    const width = Math.max(result.bytes * PX, 40);
    const layer = h("div", { class: "uldviz-x-groups", style: `width:${width}px` });
    const bands = result.groups.map(([b0, b1], g) => {
      const band = h("div", { class: `uldviz-x-band ${g % 2 ? "uldviz-x-odd" : "uldviz-x-even"}`, "data-group": g,
        style: `left:${b0 * PX}px;width:${(b1 - b0) * PX}px` });
      layer.append(band);
      return band;
    });
    const owner = { teacher: [], student: [] };
    result.groups.forEach(([, , s0, s1, t0, t1], g) => {
      for (let k = s0; k < s1; k++) owner.student[k] = g;
      for (let k = t0; k < t1; k++) owner.teacher[k] = g;
    });
    const enc = new TextEncoder(), dec = new TextDecoder();
    const bytes = enc.encode(result.text);
    let hot = null;
    const point = (g) => {
      if (hot !== null) bands[hot].classList.remove("uldviz-x-hot");
      hot = g;
      if (g === null || g === undefined) return;
      bands[g].classList.add("uldviz-x-hot");
      const [b0, b1, s0, s1, t0, t1] = result.groups[g];
      info.textContent = `group ${g}: bytes ${b0}–${b1}, "${visible(dec.decode(bytes.slice(b0, b1)))}": ` +
        `${t1 - t0} teacher token${t1 - t0 === 1 ? "" : "s"}, ${s1 - s0} student token${s1 - s0 === 1 ? "" : "s"}`;
    };
    for (const [side, top] of [["teacher", 6], ["student", 42]]) {
      const row = h("div", { class: "uldviz-x-tokrow", style: `position:absolute;top:${top}px;left:0;width:${width}px`,
        "data-side": side });
      result[side].tokens.forEach((tok, k) => {
        const cls = ["uldviz-x-chip", `uldviz-x-${side}`];
        if (tok.shared) cls.push("uldviz-x-shared");
        if (tok.partial) cls.push("uldviz-x-partial");
        const chip = h("div", { class: cls.join(" "), text: tok.label, "data-index": k,
          style: `left:${tok.start * PX + 1}px;width:${Math.max((tok.end - tok.start) * PX - 2, 3)}px`,
          title: `${side} token ${k} (id ${tok.id}): ${tok.label}, bytes ${tok.start}–${tok.end}` +
            `${tok.shared ? ", a shared string" : ""}` });
        chip.addEventListener("pointerenter", () => point(owner[side][k]));
        row.append(chip);
      });
      layer.append(row);
    }
    layer.addEventListener("pointerleave", () => point(null));
    rows.append(layer);
    const t = result.teacher, s = result.student;
    summary.textContent = `${result.bytes} bytes · ${t.name}: ${t.tokens.length} tokens, ` +
      `${t.tokens.filter((x) => x.shared).length} shared · ${s.name}: ${s.tokens.length} tokens, ` +
      `${s.tokens.filter((x) => x.shared).length} shared · ${result.groups.length} groups`;
    root.dataset.state = JSON.stringify({ text: result.text, groups: result.groups.length,
      teacher_tokens: t.tokens.length, student_tokens: s.tokens.length, show_groups: model.get("show_groups") });
  }

  const showNote = (text) => { note.textContent = text; note.style.display = text ? "" : "none"; };
  const judge = referee(model, status, (reply) => {
    return { ok: true, text: `tokenized by the kernel with the kit's tokenizers (${reply.seconds} s)` };
  }, "No kernel on this page: the examples were tokenized in Python when the page was built; tokenizing new " +
    "text needs Jupyter or Colab.");
  function submit() {
    const text = box.value;
    const known = (model.get("examples") || {})[text];
    if (model.get("static_page")) {
      if (known) {
        model.set("text", text);
        model.set("result", known);
        showNote("");
        draw(known);
      } else {
        showNote("Tokenizing new text needs a kernel: the two tokenizers run in Python. On this static page " +
          "pick one of the examples above (tokenized when the page was built), or open the notebook in Jupyter " +
          "or Colab to type your own.");
      }
      judge.ask({});
      return;
    }
    showNote("");
    judge.ask({ text });
  }
  go.addEventListener("click", submit);
  box.addEventListener("keydown", (event) => {
    event.stopPropagation();  // keys typed here are not notebook shortcuts
    if (event.key === "Enter") submit();
  });
  const setToggle = () => {
    const on = Boolean(model.get("show_groups"));
    toggle.setAttribute("aria-pressed", String(on));
    toggle.textContent = on ? "groups shown" : "show groups";
    rows.classList.toggle("uldviz-x-hide-groups", !on);
  };
  toggle.addEventListener("click", () => {
    model.set("show_groups", !model.get("show_groups"));
    model.save_changes();
    setToggle();
    if (model.get("result")) draw(model.get("result"));
  });
  const onResult = () => { draw(model.get("result")); box.value = model.get("text"); };
  model.on("change:result", onResult);
  model.on("change:show_groups", setToggle);
  box.value = model.get("text");
  setToggle();
  draw(model.get("result"));
  judge.start();
  return () => {
    judge.stop();
    model.off("change:result", onResult);
    model.off("change:show_groups", setToggle);
  };
}

export default { render };
