// Shared helpers of the uldviz explorables. Python prepends this file to each explorable's own module
// (anywidget loads one self-contained ES module per widget: no imports, no CDN, works offline).
// The maths here mirrors the kit's Python (uldviz.maths): the kernel recomputes every state and must agree.

const SVG_NS = "http://www.w3.org/2000/svg";
const TEACHER_COLOUR = "#1f77b4";
const STUDENT_COLOUR = "#ff7f0e";
const AGREE_TOL = 1e-9;

/** An HTML element: h("div", {class: "x", onclick: f}, child, "text", ...). */
function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, same call as h(). */
function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return node;
}

/** Set several attributes of an element at once (null removes one). */
function attrs(node, values) {
  for (const [k, v] of Object.entries(values)) {
    if (v === null || v === undefined) node.removeAttribute(k);
    else node.setAttribute(k, String(v));
  }
  return node;
}

const clamp = (x, lo, hi) => Math.min(Math.max(x, lo), hi);

/** Python's format(x, ".4g") (uldviz.maths.patches.format_value): 'inf', 'NaN' or 4 significant digits,
 *  exact ties rounded half to even as Python does. */
function fmt(x, digits = 4) {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return "0";
  const sign = x < 0 ? "-" : "";
  const [m, e] = Math.abs(x).toExponential(digits - 1).split("e");
  let ds = m.replace(".", ""), exp = parseInt(e, 10);
  const [fm, fe] = Math.abs(x).toExponential(99).split("e");
  const full = fm.replace(".", "");
  if (full[digits] === "5" && /^0*$/.test(full.slice(digits + 1)) && Number(full[digits - 1]) % 2 === 0) {
    ds = full.slice(0, digits);  // an exact tie: JavaScript rounds it up, Python to the even digit
    exp = parseInt(fe, 10);
  }
  const strip = (t) => (t.includes(".") ? t.replace(/0+$/, "").replace(/\.$/, "") : t);
  if (exp < -4 || exp >= digits) {
    return `${sign}${strip(`${ds[0]}.${ds.slice(1)}`)}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  const whole = exp >= 0 ? ds.slice(0, exp + 1) : "0";
  const frac = exp >= 0 ? ds.slice(exp + 1) : "0".repeat(-exp - 1) + ds;
  return sign + strip(frac ? `${whole}.${frac}` : whole);
}

/** A number sent by the kernel as a string ('Infinity', 'NaN', '0.25'): JSON has no inf or NaN. */
function num(s) {
  return s === null || s === undefined ? NaN : Number(s);
}

/** Two numbers agree: equal within AGREE_TOL, or both NaN, or the same infinity. */
function agree(a, b) {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  if (!Number.isFinite(a) || !Number.isFinite(b)) return a === b;
  return Math.abs(a - b) <= AGREE_TOL * Math.max(1, Math.abs(a), Math.abs(b));
}

/** Keep values[moved] = v (clamped to [0, 1]); the others keep their proportions and share 1 - v
 *  (equally when they are all 0). The rule of uldviz.viz.widgets.kl_explorer.rebalance. */
function rebalance(values, moved, v) {
  const out = values.slice();
  v = clamp(v, 0, 1);
  if (values.length === 1) return [1];
  const rest = 1 - v;
  let total = 0;
  values.forEach((x, i) => { if (i !== moved) total += Math.max(x, 0); });
  values.forEach((x, i) => {
    if (i === moved) out[i] = v;
    else out[i] = total > 0 ? (rest * Math.max(x, 0)) / total : rest / (values.length - 1);
  });
  return out;
}

/** Zero-pad both to N = max(n, m) and sort descending (uldviz.maths.losses.sorted_padded). */
function sortedPadded(p, q) {
  const n = Math.max(p.length, q.length);
  const pad = (v) => v.concat(Array(n - v.length).fill(0));
  const desc = (v) => pad(v).sort((a, b) => b - a);
  return [desc(p), desc(q)];
}

/** The order of a zero-padded vector's entries by decreasing value (stable: ties keep vocabulary order). */
function rankOrder(v, n) {
  const padded = v.concat(Array(n - v.length).fill(0));
  return padded.map((x, i) => [x, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map((pair) => pair[1]);
}

/** ULD = sum_i |sort(p~)_i - sort(q~)_i| (uldviz.maths.losses.uld_distance). */
function uld(p, q) {
  const [a, b] = sortedPadded(p, q);
  return a.reduce((acc, x, i) => acc + Math.abs(x - b[i]), 0);
}

/** KL(p || q) on the union of token strings as raw torch computes it (F.kl_div(log q, p, reduction="sum")):
 *  +inf where the teacher has mass on a token the student lacks, NaN where both give 0 (0 * -inf). */
function rawKL(teacherTokens, teacher, studentTokens, student) {
  const labels = teacherTokens.concat(studentTokens.filter((t) => !teacherTokens.includes(t)));
  const prob = (tokens, values, t) => (tokens.includes(t) ? values[tokens.indexOf(t)] : 0);
  let sum = 0;
  for (const t of labels) {
    const pt = prob(teacherTokens, teacher, t);
    const logq = Math.log(prob(studentTokens, student, t));
    const xlogx = pt > 0 ? pt * Math.log(pt) : 0;  // torch's xlogy(p, p): 0 where p = 0
    sum += xlogx - pt * logq;                       // 0 * -inf = NaN, as in torch
  }
  return sum;
}

/** A token string made visible: spaces as ␣, line breaks as ↵, tabs as ⇥. */
function visible(s) {
  return s.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥");
}

/**
 * The kernel as referee. ``ask(fields)`` stores the state, bumps ``request`` and saves (the Python side
 * recomputes with the kit's own functions and answers in ``reply``); ``check(reply)`` says whether the
 * kernel's numbers agree with the browser's. On the static site (``static_page``) no kernel exists: the
 * line says so (``offlineText``) and nothing is sent. Without an answer within a few seconds the line says that too.
 */
function referee(model, line, check, offlineText) {
  let timer = null;
  const say = (cls, text) => {
    line.className = `uldviz-x-status ${cls}`;
    line.textContent = text;
  };
  const onReply = () => {
    const reply = model.get("reply") || {};
    if (model.get("static_page") || reply.request !== model.get("request")) return;
    clearTimeout(timer);
    const verdict = reply.error ? { ok: false, text: `the kernel refused this state: ${reply.error}` } : check(reply);
    say(verdict.ok ? "uldviz-x-agree" : "uldviz-x-disagree", verdict.text);
  };
  model.on("change:reply", onReply);
  const offline = () => say("uldviz-x-offline", offlineText ||
    "No kernel on this page: the numbers are computed by your browser alone. " +
    "In Jupyter or Colab the kit's Python recomputes every state you make and shows whether it agrees.");
  return {
    ask(fields) {
      for (const [k, v] of Object.entries(fields)) model.set(k, v);
      if (model.get("static_page")) { offline(); return; }
      model.set("request", (model.get("request") || 0) + 1);
      model.save_changes();
      say("uldviz-x-waiting", "asking the kernel to recompute …");
      clearTimeout(timer);
      timer = setTimeout(() => say("uldviz-x-offline",
        "No answer from a kernel (is it running?): the numbers above are your browser's alone."), 5000);
    },
    start() {
      if (model.get("static_page")) offline();
      else onReply();
    },
    stop() {
      clearTimeout(timer);
      model.off("change:reply", onReply);
    },
  };
}
