// Explorable 2: a transport plan you can push. ULD's transport problem (zero-padded values, masses 1/N,
// cost |p̃ᵢ − q̃ⱼ|): drag a dot onto another dot and the two arrows swap partners (an uncrossing when they
// crossed); drag a dot along its row or column to redirect it. Row and column totals never change.
// Python: plan.py (the same moves in PlanExplorable.move; POT's optimum in snap()).

/** Mass moved by dragging cell src = [i, j] onto cell dst = [a, b], as a list of [row, column, change];
 *  [] when nothing can move. The rule of uldviz.viz.explorables.plan.plan_move. */
function planMove(T, src, dst, fraction) {
  const [i, j] = src, [a, b] = dst, n = T.length;
  if (T[i][j] <= 0 || (i === a && j === b)) return [];
  let corners;
  if (i !== a && j !== b) {  // two arrows swap partners: i→j, a→b become i→b, a→j
    corners = [[i, j, -1], [a, b, -1], [i, b, 1], [a, j, 1]];
  } else if (i === a) {      // teacher i sends to column b instead of j; the row k with most mass at b makes room
    let k = -1;
    for (let r = 0; r < n; r++) if (r !== i && (k < 0 || T[r][b] > T[k][b])) k = r;
    corners = [[i, j, -1], [i, b, 1], [k, b, -1], [k, j, 1]];
  } else {                   // student j receives from row a instead of i; column l with most mass in row a
    let l = -1;
    for (let c = 0; c < n; c++) if (c !== j && (l < 0 || T[a][c] > T[a][l])) l = c;
    corners = [[i, j, -1], [a, j, 1], [a, l, -1], [i, l, 1]];
  }
  const room = Math.min(...corners.filter((c) => c[2] < 0).map(([r, c]) => T[r][c]));
  if (!(room > 0)) return [];
  return corners.map(([r, c, s]) => [r, c, s * fraction * room]);
}

function planCost(T, C) {
  let total = 0;
  T.forEach((row, i) => row.forEach((t, j) => { total += t * C[i][j]; }));
  return T.length * total;
}

/** Pairs of arrows (cells with mass) that cross: x_i > x_k but y_j < y_l. */
function crossings(T, x, y) {
  const arrows = [];
  T.forEach((row, i) => row.forEach((t, j) => { if (t > 1e-12) arrows.push([i, j]); }));
  const crossing = new Set();
  let count = 0;
  for (let u = 0; u < arrows.length; u++) {
    for (let v = u + 1; v < arrows.length; v++) {
      const [i, j] = arrows[u], [k, l] = arrows[v];
      if ((x[i] - x[k]) * (y[j] - y[l]) < -1e-12) {
        count += 1;
        crossing.add(`${i},${j}`); crossing.add(`${k},${l}`);
      }
    }
  }
  return { count, crossing };
}

function render({ model, el }) {
  const p = model.get("teacher"), q = model.get("student");
  const tTok = model.get("teacher_tokens"), sTok = model.get("student_tokens");
  const C = model.get("cost"), N = C.length;
  const x = p.concat(Array(N - p.length).fill(0)), y = q.concat(Array(N - q.length).fill(0));
  const rowName = (i) => (i < tTok.length ? tTok[i] : "pad"), colName = (j) => (j < sTok.length ? sTok[j] : "pad");
  const W = 780, cell = Math.min(58, 250 / N), gx = 112, gy = 62;
  const root = h("div", { class: "uldviz-x uldviz-x-plan" });
  const plot = svg("svg", { viewBox: `0 0 ${W} ${Math.max(gy + cell * N + 40, 330)}`, width: W,
    class: "uldviz-x-svg" });
  root.append(plot);
  plot.append(svg("text", { x: 4, y: 18, class: "uldviz-x-title", text: "the plan π (× N): rows teacher p̃, columns student q̃" }));
  plot.append(svg("text", { x: 4, y: 34, class: "uldviz-x-small", text: "shade and corner number: the cost |p̃ᵢ − q̃ⱼ|" }));
  let worst = 1e-12;
  C.forEach((row) => row.forEach((c) => { worst = Math.max(worst, c); }));
  const rects = [], masses = [], labels = [];
  const frame = svg("rect", { x: gx, y: gy, width: cell * N, height: cell * N, fill: "none" });
  plot.append(frame);
  for (let i = 0; i < N; i++) {
    plot.append(svg("text", { x: gx - 6, y: gy + cell * (i + 0.45), "text-anchor": "end", text: rowName(i) }));
    plot.append(svg("text", { x: gx - 6, y: gy + cell * (i + 0.45) + 13, "text-anchor": "end", class: "uldviz-x-small",
      text: `p̃=${fmt(x[i], 3)}` }));
    plot.append(svg("text", { x: gx + cell * (i + 0.5), y: gy - 18, "text-anchor": "middle", text: colName(i) }));
    plot.append(svg("text", { x: gx + cell * (i + 0.5), y: gy - 5, "text-anchor": "middle", class: "uldviz-x-small",
      text: `q̃=${fmt(y[i], 3)}` }));
    rects.push([]); masses.push([]); labels.push([]);
    for (let j = 0; j < N; j++) {
      const r = svg("rect", { x: gx + cell * j, y: gy + cell * i, width: cell, height: cell,
        class: "uldviz-x-plancell", fill: `rgba(90, 90, 90, ${(0.04 + 0.45 * C[i][j] / worst).toFixed(3)})` });
      const costText = svg("text", { x: gx + cell * j + 3, y: gy + cell * i + 11, class: "uldviz-x-small",
        text: fmt(C[i][j], 2) });
      const m = svg("circle", { cx: gx + cell * (j + 0.55), cy: gy + cell * (i + 0.58), class: "uldviz-x-mass" });
      const lab = svg("text", { x: gx + cell * (j + 1) - 3, y: gy + cell * (i + 1) - 4, class: "uldviz-x-small",
        "text-anchor": "end" });
      const hit = svg("rect", { x: gx + cell * j, y: gy + cell * i, width: cell, height: cell, class: "uldviz-x-hit",
        "data-row": i, "data-col": j });
      plot.append(r, costText, m, lab, hit);
      rects[i].push(r); masses[i].push(m); labels[i].push(lab);
    }
  }
  // the number line: teacher values above, student values below, one arrow per cell with mass
  const LX = gx + cell * N + 60, RX = W - 20, TOPY = 92, BOTY = 262;
  let vmax = 1e-12;
  x.concat(y).forEach((v) => { vmax = Math.max(vmax, v); });
  const pos = (v) => LX + (RX - LX) * v / vmax;
  plot.append(svg("text", { x: LX - 10, y: 18, class: "uldviz-x-title", text: "the same plan as arrows on the value line" }));
  plot.append(svg("text", { x: LX - 10, y: 34, class: "uldviz-x-small", text: "red: arrows that cross another arrow" }));
  plot.append(svg("line", { x1: LX, x2: RX, y1: TOPY, y2: TOPY, class: "uldviz-x-axis" }));
  plot.append(svg("line", { x1: LX, x2: RX, y1: BOTY, y2: BOTY, class: "uldviz-x-axis" }));
  plot.append(svg("text", { x: LX - 10, y: TOPY - 30, class: "uldviz-x-small", fill: TEACHER_COLOUR, text: "teacher p̃ᵢ" }));
  plot.append(svg("text", { x: LX - 10, y: BOTY + 34, class: "uldviz-x-small", text: "student q̃ⱼ" }));
  const arrows = [];
  for (let i = 0; i < N; i++) {
    arrows.push([]);
    for (let j = 0; j < N; j++) {
      const a = svg("line", { x1: pos(x[i]), y1: TOPY, x2: pos(y[j]), y2: BOTY, class: "uldviz-x-arrow" });
      plot.append(a); arrows[i].push(a);
    }
  }
  const stagger = (v, list, k) => list.slice(0, k).filter((u) => Math.abs(pos(u) - pos(v)) < 14).length;
  x.forEach((v, i) => {
    plot.append(svg("circle", { cx: pos(v), cy: TOPY, r: 4, class: "uldviz-x-tick" }));
    plot.append(svg("text", { x: pos(v), y: TOPY - 8 - 11 * stagger(v, x, i), "text-anchor": "middle",
      class: "uldviz-x-small", text: rowName(i) }));
  });
  y.forEach((v, j) => {
    plot.append(svg("circle", { cx: pos(v), cy: BOTY, r: 4, class: "uldviz-x-tick" }));
    plot.append(svg("text", { x: pos(v), y: BOTY + 16 + 11 * stagger(v, y, j), "text-anchor": "middle",
      class: "uldviz-x-small", text: colName(j) }));
  });

  const costValue = h("span", { class: "uldviz-x-num uldviz-x-cost" });
  const optValue = h("span", { class: "uldviz-x-num uldviz-x-optimum" });
  const optNote = h("span", { class: "uldviz-x-why" });
  const crossValue = h("span", { class: "uldviz-x-num uldviz-x-crossings" });
  const last = h("div", { class: "uldviz-x-hint uldviz-x-last",
    text: "Drag a dot onto another dot: the two arrows swap partners. Drag a dot along its row or column to " +
      "redirect it. Row and column totals (the masses 1/N) never change." });
  const status = h("div", { class: "uldviz-x-status" });
  const amountButtons = [1, 0.5, 0.25].map((f) => h("button", { type: "button", class: "uldviz-x-button",
    "data-fraction": f, text: f === 1 ? "all" : f === 0.5 ? "half" : "a quarter" }));
  const snap = h("button", { type: "button", class: "uldviz-x-button uldviz-x-snap", text: "snap to POT's optimum" });
  const reset = h("button", { type: "button", class: "uldviz-x-button", text: "reset" });
  root.append(h("table", { class: "uldviz-x-readout" },
    h("tr", {}, h("td", {}, "your plan: N·⟨π, C⟩"), h("td", {}, costValue)),
    h("tr", {}, h("td", {}, "POT's optimum, N·ot.emd2 (= ULD)"), h("td", {}, optValue), h("td", {}, optNote)),
    h("tr", {}, h("td", {}, "pairs of crossing arrows"), h("td", {}, crossValue))),
  h("div", { class: "uldviz-x-controls" }, h("span", { class: "uldviz-x-hint", text: "move:" }), ...amountButtons,
    snap, reset), last, status);
  el.append(root);
  root.dataset.problem = JSON.stringify({ teacher: x, student: y, cost: C });
  let fraction = 1;
  const setFraction = (f) => {
    fraction = f;
    amountButtons.forEach((btn) => btn.setAttribute("aria-pressed", String(Number(btn.dataset.fraction) === f)));
  };
  amountButtons.forEach((btn) => btn.addEventListener("click", () => setFraction(Number(btn.dataset.fraction))));
  setFraction(1);

  let current = 0, reached = false;
  function update() {
    const T = model.get("plan");
    const { count, crossing } = crossings(T, x, y);
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) {
        const t = T[i][j] * N;  // in units of 1/N
        attrs(masses[i][j], { r: t > 1e-12 ? cell * 0.33 * Math.sqrt(Math.min(t, 1)) : 0 });
        labels[i][j].textContent = t > 1e-12 ? fmt(t, 2) : "";
        attrs(arrows[i][j], { "stroke-width": t > 1e-12 ? 1 + 7 * t : 0, visibility: t > 1e-12 ? "visible" : "hidden",
          class: `uldviz-x-arrow${crossing.has(`${i},${j}`) ? " uldviz-x-crossing" : ""}` });
      }
    }
    current = planCost(T, C);
    costValue.textContent = fmt(current); costValue.dataset.value = String(current);
    const opt = num(model.get("optimum"));
    if (agree(current, opt) || model.get("snapped")) reached = true;
    optValue.textContent = reached ? fmt(opt) : "?";
    optValue.dataset.value = reached ? String(opt) : "";
    optNote.textContent = reached ? "" : "hidden until your plan reaches it or you snap: predict it first";
    crossValue.textContent = String(count);
    root.dataset.state = JSON.stringify({ plan: T, cost: current, crossings: count });
  }
  const judge = referee(model, status, (reply) => {
    current = planCost(model.get("plan"), C);  // the plan now, even if the kernel's new plan arrived with this reply
    const k = num(reply.cost);
    const ok = Boolean(reply.valid) && agree(k, current);
    return { ok, text: `${ok ? "kernel agrees" : "KERNEL DISAGREES"}: Python computes N·⟨π, C⟩ = ${fmt(k)} ` +
      `(browser: ${fmt(current)}); ${reply.note || ""}` };
  });

  let drag = null;
  function cellAt(event) {
    const box = frame.getBoundingClientRect();
    const j = Math.floor((event.clientX - box.left) / (box.width / N));
    const i = Math.floor((event.clientY - box.top) / (box.height / N));
    return i >= 0 && i < N && j >= 0 && j < N ? [i, j] : null;
  }
  const mark = (on, cls, cells) => cells.forEach(([i, j]) => rects[i][j].classList.toggle(cls, on));
  function move(event) {
    if (!drag) return;
    event.preventDefault();
    if (drag.target) mark(false, "uldviz-x-target", [drag.target]);
    drag.target = cellAt(event);
    if (drag.target) mark(true, "uldviz-x-target", [drag.target]);
  }
  function end(event) {
    if (!drag) return;
    move(event);
    const { source, target } = drag;
    mark(false, "uldviz-x-source", [source]);
    if (target) mark(false, "uldviz-x-target", [target]);
    drag = null;
    window.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", end);
    if (!target || (target[0] === source[0] && target[1] === source[1])) return;
    const T = model.get("plan").map((row) => row.slice());
    const changes = planMove(T, source, target, fraction);
    if (!changes.length) {
      last.textContent = "Nothing moved: mass can only leave a cell that holds some, and the cell you dropped on " +
        "(or the row or column that makes room) must hold some too.";
      return;
    }
    const before = planCost(T, C), crossBefore = crossings(T, x, y).count;
    for (const [r, c, d] of changes) T[r][c] = Math.max(0, T[r][c] + d);
    const after = planCost(T, C), crossAfter = crossings(T, x, y).count;
    const verb = after < before - 1e-12 ? "fell" : after > before + 1e-12 ? "ROSE" : "stayed";
    last.textContent = `last move: cost ${fmt(before)} → ${fmt(after)} (${verb}); crossing pairs ` +
      `${crossBefore} → ${crossAfter}.`;
    model.set("moves", (model.get("moves") || 0) + 1);
    model.set("snapped", false);
    judge.ask({ plan: T });
    update();
  }
  plot.addEventListener("pointerdown", (event) => {
    const hit = event.target.closest(".uldviz-x-hit");
    if (!hit) return;
    const source = [Number(hit.dataset.row), Number(hit.dataset.col)];
    if (!(model.get("plan")[source[0]][source[1]] > 0)) return;
    event.preventDefault();
    event.stopPropagation();
    drag = { source, target: null };
    mark(true, "uldviz-x-source", [source]);
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", end);
  });
  let snapTimer = null;
  snap.addEventListener("click", () => {
    const before = current;
    const stored = () => {
      model.set("plan", model.get("pot_plan").map((row) => row.slice()));
      model.set("snapped", true);
      update();
      last.textContent = `snapped to POT's plan (computed in Python when the page was built): cost ${fmt(before)} → ` +
        `${fmt(current)}.`;
    };
    if (model.get("static_page")) { stored(); judge.ask({}); return; }
    last.textContent = "asking the kernel for POT's optimal plan (ot.emd) …";
    model.set("snap", (model.get("snap") || 0) + 1);
    judge.ask({});
    clearTimeout(snapTimer);
    snapTimer = setTimeout(stored, 5000);
    const once = () => {
      clearTimeout(snapTimer);
      model.off("change:plan", once);
      update();
      last.textContent = `snapped to POT's plan, computed now by ot.emd in the kernel: cost ${fmt(before)} → ` +
        `${fmt(current)}.`;
    };
    model.on("change:plan", once);
  });
  reset.addEventListener("click", () => {
    model.set("plan", model.get("initial_plan").map((row) => row.slice()));
    model.set("moves", 0);
    model.set("snapped", false);
    reached = false;
    last.textContent = "reset to the first plan.";
    update();
    judge.ask({});
  });
  const external = () => { if (!drag) update(); };
  model.on("change:plan", external);
  update();
  judge.start();
  return () => {
    judge.stop();
    clearTimeout(snapTimer);
    model.off("change:plan", external);
    window.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", end);
  };
}

export default { render };
