// Explorable 1: two distributions over two vocabularies. Drag a bar (the others of its side renormalise);
// the raw KL, the sorted pairing, the optimal plan and ULD follow the hand. Python: distributions.py.

function explainKL(kl) {
  if (Number.isNaN(kl)) return "NaN: a label both give 0, torch computes 0·(−∞)";
  if (!Number.isFinite(kl)) return "inf: the teacher has mass on a token the student lacks, log 0 = −∞";
  return "finite: every teacher token has student mass";
}

function render({ model, el }) {
  const W = 760, LEFT = 470, H = 92;
  const tTok = model.get("teacher_tokens"), sTok = model.get("student_tokens");
  const N = Math.max(tTok.length, sTok.length);
  const slot = Math.min(86, (LEFT - 70) / N);
  const x0 = 70;
  const rows = {
    teacher: { tokens: tTok, top: 34, colour: TEACHER_COLOUR, key: "teacher" },
    student: { tokens: sTok, top: 236, colour: STUDENT_COLOUR, key: "student" },
  };
  const cx = (i) => x0 + slot * (i + 0.5);
  const root = h("div", { class: "uldviz-x uldviz-x-distributions" });
  const plot = svg("svg", { viewBox: `0 0 ${W} 372`, width: W, class: "uldviz-x-svg" });
  root.append(plot);

  // ---- the two rows of bars (one per token; the shorter vocabulary gets "pad" slots of value 0)
  for (const side of ["teacher", "student"]) {
    const row = rows[side];
    row.bars = []; row.values = []; row.tracks = [];
    plot.append(svg("text", { x: 4, y: row.top + H / 2, class: "uldviz-x-rowname", fill: row.colour,
      text: side }));
    plot.append(svg("text", { x: 4, y: row.top + H / 2 + 14, class: "uldviz-x-small",
      text: `${row.tokens.length} tokens` }));
    for (let i = 0; i < N; i++) {
      const x = cx(i) - slot * 0.32, w = slot * 0.64;
      if (i >= row.tokens.length) {  // zero padding up to N
        plot.append(svg("rect", { x, y: row.top, width: w, height: H, class: "uldviz-x-pad" }));
        plot.append(svg("text", { x: cx(i), y: row.top + H + 15, class: "uldviz-x-label uldviz-x-padlabel",
          text: "pad 0" }));
        continue;
      }
      const track = svg("rect", { x, y: row.top, width: w, height: H, class: "uldviz-x-track", "data-side": side,
        "data-token": row.tokens[i] });
      plot.append(track);
      const bar = svg("rect", { x, width: w, fill: row.colour, class: "uldviz-x-fill" });
      const value = svg("text", { x: cx(i), class: "uldviz-x-value" });
      const hit = svg("rect", { x: cx(i) - slot / 2 + 2, y: row.top - 8, width: slot - 4, height: H + 16,
        class: "uldviz-x-bar", "data-side": side, "data-index": i, "data-token": row.tokens[i] });
      hit.append(svg("title", { text: `drag to set p(${row.tokens[i]}); the other ${side} bars renormalise` }));
      plot.append(bar, value, hit);
      plot.append(svg("text", { x: cx(i), y: row.top + H + 15, class: "uldviz-x-label", text: row.tokens[i] }));
      row.bars.push(bar); row.values.push(value); row.tracks.push(track);
    }
  }
  // ---- the sorted pairing: rank r of the teacher goes to rank r of the student (lines between slots)
  const pairing = svg("g", { class: "uldviz-x-pairing" });
  const lines = [];
  for (let r = 0; r < N; r++) {
    const line = svg("line", { class: "uldviz-x-pairline" });
    line.append(svg("title", { text: `rank ${r + 1} of the teacher with rank ${r + 1} of the student` }));
    lines.push(line); pairing.append(line);
  }
  plot.append(svg("text", { x: 4, y: 172, class: "uldviz-x-small", text: "sorted pairing:" }),
    svg("text", { x: 4, y: 185, class: "uldviz-x-small", text: "rank r ↔ rank r" }), pairing);

  // ---- the optimal plan of ULD's transport problem: N x N, a dot where the sorted plan puts mass 1/N
  const gx = LEFT + 70, gy = 74, cell = Math.min(42, 220 / N);
  plot.append(svg("text", { x: LEFT + 10, y: 22, class: "uldviz-x-title", text: "optimal plan (sorted pairing)" }));
  plot.append(svg("text", { x: LEFT + 10, y: 36, class: "uldviz-x-small",
    text: "rows teacher, columns student (zero-padded);" }));
  plot.append(svg("text", { x: LEFT + 10, y: 48, class: "uldviz-x-small", text: "shade: the cost |p̃ᵢ − q̃ⱼ|" }));
  const cells = [], dots = [];
  for (let i = 0; i < N; i++) {
    plot.append(svg("text", { x: gx - 6, y: gy + cell * (i + 0.62), class: "uldviz-x-small", "text-anchor": "end",
      text: i < tTok.length ? tTok[i] : "pad" }));
    plot.append(svg("text", { x: gx + cell * (i + 0.5), y: gy - 6, class: "uldviz-x-small", "text-anchor": "middle",
      text: i < sTok.length ? sTok[i] : "pad" }));
    cells.push([]); dots.push([]);
    for (let j = 0; j < N; j++) {
      const c = svg("rect", { x: gx + cell * j, y: gy + cell * i, width: cell, height: cell, class: "uldviz-x-cell" });
      const d = svg("circle", { cx: gx + cell * (j + 0.5), cy: gy + cell * (i + 0.5), r: cell * 0.28,
        class: "uldviz-x-dot" });
      plot.append(c, d);
      cells[i].push(c); dots[i].push(d);
    }
  }
  const planValue = svg("text", { x: LEFT + 10, y: gy + cell * N + 22, class: "uldviz-x-small" });
  plot.append(planValue);

  // ---- readout and controls
  const klValue = h("span", { class: "uldviz-x-num uldviz-x-kl" });
  const klWhy = h("span", { class: "uldviz-x-why" });
  const uldValue = h("span", { class: "uldviz-x-num uldviz-x-uld" });
  const sum = h("span", { class: "uldviz-x-sum" });  // the sum written out, rank by rank
  const status = h("div", { class: "uldviz-x-status" });
  const reset = h("button", { class: "uldviz-x-button", type: "button", text: "reset" });
  root.append(h("table", { class: "uldviz-x-readout" },
    h("tr", {}, h("td", { text: "KL(p ‖ q) on the union of tokens (raw torch F.kl_div)" }),
      h("td", {}, klValue), h("td", {}, klWhy)),
    h("tr", {}, h("td", {}, h("b", { text: "ULD" }), " (sorted, zero-padded L1)"), h("td", {}, uldValue),
      h("td", { class: "uldviz-x-why" }, sum))),
  h("div", { class: "uldviz-x-controls" }, reset,
    h("span", { class: "uldviz-x-hint", text: "Drag any bar up or down." })), status);
  el.append(root);

  let current = {};
  function update() {
    const t = model.get("teacher"), s = model.get("student");
    for (const [side, v] of [["teacher", t], ["student", s]]) {
      const row = rows[side];
      v.forEach((p, i) => {
        attrs(row.bars[i], { y: row.top + H * (1 - p), height: H * p });
        attrs(row.values[i], { y: row.top + H * (1 - p) - 4 });
        row.values[i].textContent = fmt(p, 3);
      });
    }
    const rt = rankOrder(t, N), rs = rankOrder(s, N);
    const [ps, qs] = sortedPadded(t, s);
    for (let r = 0; r < N; r++) {
      attrs(lines[r], { x1: cx(rt[r]), y1: rows.teacher.top + H + 22, x2: cx(rs[r]), y2: rows.student.top - 10,
        "data-rank": r + 1 });
    }
    sum.textContent = "= " + ps.map((a, r) => `|${fmt(a, 3)} − ${fmt(qs[r], 3)}|`).join(" + ");
    const tp = t.concat(Array(N - t.length).fill(0)), sp = s.concat(Array(N - s.length).fill(0));
    let worst = 1e-12;
    tp.forEach((a) => sp.forEach((b) => { worst = Math.max(worst, Math.abs(a - b)); }));
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) {
        const c = Math.abs(tp[i] - sp[j]);
        attrs(cells[i][j], { fill: `rgba(90, 90, 90, ${(0.05 + 0.5 * c / worst).toFixed(3)})` });
        attrs(dots[i][j], { visibility: "hidden" });
      }
    }
    for (let r = 0; r < N; r++) attrs(dots[rt[r]][rs[r]], { visibility: "visible" });
    const kl = rawKL(tTok, t, sTok, s), u = uld(t, s);
    klValue.textContent = fmt(kl); klValue.dataset.value = String(kl);
    klWhy.textContent = explainKL(kl);
    uldValue.textContent = fmt(u); uldValue.dataset.value = String(u);
    planValue.textContent = `N·⟨π, C⟩ = ${fmt(u)} = ULD   (N = ${N})`;
    current = { kl, uld: u };
    root.dataset.state = JSON.stringify({ teacher_tokens: tTok, teacher: t, student_tokens: sTok, student: s });
  }

  const judge = referee(model, status, (reply) => {
    // the model's state now (Backbone sets every attribute of a message before any change event fires)
    const t = model.get("teacher"), s = model.get("student");
    current = { uld: uld(t, s), kl: rawKL(tTok, t, sTok, s) };
    const ku = num(reply.uld), kk = num(reply.kl);
    const ok = agree(ku, current.uld) && agree(kk, current.kl);
    return { ok, text: `${ok ? "kernel agrees" : "KERNEL DISAGREES"}: Python's uld_loss = ${fmt(ku)}, ` +
      `KL = ${fmt(kk)} (browser: ${fmt(current.uld)}, ${fmt(current.kl)})` };
  });

  let drag = null;
  function valueAt(event) {
    const box = drag.track.getBoundingClientRect();
    let v = clamp((box.bottom - event.clientY) / box.height, 0, 1);
    if (v < 0.005) v = 0;  // make exactly 0 and 1 reachable by hand: where KL breaks
    if (v > 0.995) v = 1;
    return v;
  }
  function move(event) {
    if (!drag) return;
    event.preventDefault();
    model.set(drag.side, rebalance(model.get(drag.side), drag.index, valueAt(event)));
    update();
  }
  function end(event) {
    if (!drag) return;
    move(event);
    drag = null;
    window.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", end);
    judge.ask({ teacher: model.get("teacher"), student: model.get("student") });
  }
  plot.addEventListener("pointerdown", (event) => {
    const target = event.target.closest(".uldviz-x-bar");
    if (!target) return;
    event.preventDefault();
    event.stopPropagation();
    const side = target.dataset.side, index = Number(target.dataset.index);
    drag = { side, index, track: rows[side].tracks[index] };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", end);
    move(event);
  });
  reset.addEventListener("click", () => {
    const init = model.get("initial");
    model.set("teacher", init.teacher.slice());
    model.set("student", init.student.slice());
    update();
    judge.ask({});
  });
  const external = () => { if (!drag) update(); };  // Python set the bars (set_probs)
  model.on("change:teacher", external);
  model.on("change:student", external);
  update();
  judge.start();
  return () => {
    judge.stop();
    model.off("change:teacher", external);
    model.off("change:student", external);
    window.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", end);
  };
}

export default { render };
