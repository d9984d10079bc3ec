// The live page: polls /api/v1/state every second and redraws. Every value
// from the relay (addresses, SNI, details) goes in as text, never as HTML.
"use strict";

const POLL_MS = 1000;
let selected = ""; // trace id whose waterfall is open
let lastState = null;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

function modeClass(m) {
  if (m === "ok") return "m-ok";
  if (!m || m === "(none)") return "m-none";
  return "m-fail";
}

function badge(text, mode) {
  return el("span", { class: "badge " + modeClass(mode === undefined ? text : mode), text });
}

function thousands(n) {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function utc(t) {
  return new Date(t).toISOString().replace("T", " ").slice(0, 23);
}

function dur(ms) {
  if (ms < 1) return Math.round(ms * 1000) + " µs";
  if (ms < 1000) return ms.toFixed(1) + " ms";
  return (ms / 1000).toFixed(2) + " s";
}

// Colours for the chart, by a mode's place in the legend; ok is always green.
const PALETTE = ["#e15759", "#f28e2b", "#4e79a7", "#b07aa1", "#edc948", "#76b7b2", "#9c755f", "#ff9da7", "#bab0ac", "#59a14f"];
function colours(modes) {
  const c = {};
  let i = 0;
  for (const m of modes) c[m] = m === "ok" ? "#3aa164" : PALETTE[i++ % PALETTE.length];
  return c;
}

function replaceBody(table, rows) {
  const tb = table.tBodies[0];
  tb.replaceChildren(...rows);
}

function drawListeners(st) {
  const rows = (st.listeners || []).map((l) =>
    el("tr", {}, el("td", { class: "mono", text: l.listen || "—" }), el("td", { class: "mono", text: l.upstream }), el("td", { class: "n open", text: String(l.open) })));
  replaceBody(document.getElementById("listeners"), rows);
  const shared = (st.listeners || []).some((l) => l.counted === "upstream");
  document.getElementById("listeners-note").textContent = shared
    ? "Counted per upstream by the relay's metrics: listeners that share an upstream share its number."
    : "Counted from the open connection spans of each listener.";
}

function drawRuns(st) {
  const box = document.getElementById("runs");
  const runs = st.runs || [];
  if (runs.length === 0) {
    box.replaceChildren(el("p", { class: "note", text: "no runs yet" }));
    return;
  }
  box.replaceChildren(...runs.map((r) => {
    let head = r.summary;
    const i = head.indexOf(": ");
    if (i >= 0) head = head.slice(0, i);
    const steps = el("div", { class: "run-steps" });
    (r.steps || []).forEach((s, j) => {
      if (j > 0) steps.append(el("span", { class: "then", text: "→" }));
      steps.append(badge(s.count > 1 ? s.mode + " ×" + thousands(s.count) : s.mode, s.mode));
    });
    const meta = [];
    if (r.in_flight > 0) meta.push(r.in_flight + " in flight");
    if (r.folded > 0) meta.push(thousands(r.folded) + " folded (counted, not traced)");
    if (r.source === "ring") meta.push("from the spans kept in memory");
    const div = el("div", { class: "run" + (r.in_progress ? " in-progress" : ""), "data-key": r.key || "", "data-outcome": r.outcome, "data-attempts": String(r.attempts) },
      el("div", { class: "run-head" },
        r.in_progress ? el("span", { class: "badge live", text: "in progress" }) : null, r.in_progress ? " " : null,
        el("span", { class: "attempts", text: thousands(r.attempts) + (r.attempts === 1 ? " attempt" : " attempts") }), " · ",
        badge(r.outcome), " · ", el("span", { class: "head", text: head }),
        meta.length ? el("span", { class: "note", text: " (" + meta.join(", ") + ")" }) : null),
      steps);
    if (r.outcome === "ok") div.append(el("div", { class: "run-cli ok", text: "the CLI succeeded" }));
    else if (r.cli_printed) div.append(el("div", { class: "run-cli", text: "the CLI printed: " + r.cli_printed }));
    if (r.meaning || (r.next_steps || []).length) {
      const todo = el("div", { class: "run-todo" }, el("b", { text: "What to do: " }), r.meaning || "");
      if ((r.next_steps || []).length) todo.append(el("ul", {}, ...r.next_steps.map((s) => el("li", { text: s }))));
      div.append(todo);
    }
    if ((r.traces || []).length) {
      const tr = el("div", { class: "run-traces note", text: "attempts in the ring: " });
      r.traces.slice(-8).forEach((id) => tr.append(el("button", { type: "button", "data-trace": id, text: id.slice(0, 8), onclick: () => openTrace(id) })));
      div.append(tr);
    }
    return div;
  }));
}

function drawChart(st) {
  const ch = st.chart || {};
  const buckets = ch.buckets || [];
  const modes = ch.modes || [];
  const col = colours(modes);
  const W = 600, H = 150, top = 8, bottom = 18;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const maxTotal = Math.max(1, ...buckets.map((b) => Object.values(b.modes || {}).reduce((a, n) => a + n, 0)));
  // A fixed time axis: the buckets so far sit at its right end, "now".
  const n = Math.max(ch.slots || 0, buckets.length, 1);
  const bw = W / n;
  const skip = n - buckets.length;
  buckets.forEach((b, j) => {
    const i = skip + j;
    let y = H - bottom;
    for (const m of modes) {
      const c = (b.modes || {})[m] || 0;
      if (!c) continue;
      const h = (c / maxTotal) * (H - top - bottom);
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", (i * bw + 1).toFixed(1));
      r.setAttribute("width", Math.max(bw - 2, 1).toFixed(1));
      r.setAttribute("y", (y - h).toFixed(1));
      r.setAttribute("height", h.toFixed(1));
      r.setAttribute("fill", col[m]);
      const t = document.createElementNS(ns, "title");
      t.textContent = `${utc(b.start).slice(11, 19)}: ${m} ${c}`;
      r.append(t);
      svg.append(r);
      y -= h;
    }
  });
  const label = (x, text, anchor) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x);
    t.setAttribute("y", H - 4);
    t.setAttribute("class", "axis");
    t.setAttribute("text-anchor", anchor);
    t.textContent = text;
    svg.append(t);
  };
  if (buckets.length) {
    const first = new Date(new Date(buckets[buckets.length - 1].start).getTime() - (n - 1) * ch.bucket_ms);
    label(2, utc(first).slice(11, 19), "start");
    label(W - 2, "now", "end");
  }
  const max = document.createElementNS(ns, "text");
  max.setAttribute("x", 2);
  max.setAttribute("y", top + 2);
  max.setAttribute("class", "axis");
  max.textContent = "max " + thousands(maxTotal) + " per " + (ch.bucket_ms / 1000) + " s";
  svg.append(max);
  document.getElementById("chart").replaceChildren(svg);
  document.getElementById("legend").replaceChildren(...modes.map((m) =>
    el("span", {}, el("span", { class: "dot", style: "background:" + col[m] }), m)));
  document.getElementById("chart-note").textContent = ch.source === "metrics"
    ? "Every connection, from the relay's metrics (exact while attempts are folded)."
    : "Connection spans that ended (attempts folded out of the trace are not counted here).";
}

function drawConns(st) {
  const onlyFailed = document.getElementById("failed-only").checked;
  const rows = (st.connections || [])
    .filter((c) => !onlyFailed || (c.mode !== "ok" && !c.sent_nothing))
    .map((c) => el("tr", { class: "conn" + (c.trace_id === selected ? " selected" : ""), "data-trace": c.trace_id, "data-mode": c.mode, onclick: () => openTrace(c.trace_id) },
      el("td", { class: "mono", text: utc(c.start) }),
      el("td", {}, badge(c.mode)),
      el("td", { class: "mono", text: c.client || "" }),
      el("td", { class: "mono", text: c.upstream || "" }),
      el("td", { class: "n", text: c.attempt ? String(c.attempt) : "" }),
      el("td", { class: "n", text: dur(c.duration_ms) }),
      el("td", { class: "detail", title: c.detail || "", text: c.detail || "" })));
  replaceBody(document.getElementById("conns"), rows);
}

// openTrace shows a connection drawn by `ccproxy analyze --output html`'s
// renderer (GET /trace/{id}), in a frame so its styles stay its own.
function openTrace(id) {
  selected = id;
  const card = document.getElementById("waterfall-card");
  card.hidden = false;
  document.getElementById("waterfall-id").textContent = id;
  const f = document.getElementById("waterfall");
  f.onload = () => {
    try {
      f.style.height = f.contentDocument.documentElement.scrollHeight + 20 + "px";
    } catch (e) {
      /* not same-origin: keep the default height */
    }
  };
  f.src = "trace/" + encodeURIComponent(id);
  if (lastState) drawConns(lastState);
  card.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function draw(st) {
  lastState = st;
  document.getElementById("mode").textContent = st.mode || "relay";
  const status = document.getElementById("status");
  status.textContent = "live · " + utc(st.now).slice(11, 19) + " UTC";
  status.classList.remove("stale");
  const r = st.ring || {};
  document.getElementById("ring").textContent =
    `kept in memory: ${r.connections}/${r.connections_cap} connections, ${r.children}/${r.children_cap} child spans, ${r.runs}/${r.runs_cap} run summaries`;
  const probs = document.getElementById("problems");
  probs.hidden = !(st.problems || []).length;
  probs.replaceChildren(...(st.problems || []).map((p) => el("div", { text: p })));
  drawListeners(st);
  drawRuns(st);
  drawChart(st);
  drawConns(st);
}

async function poll() {
  try {
    const resp = await fetch("api/v1/state", { cache: "no-store" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    draw(await resp.json());
  } catch (e) {
    const status = document.getElementById("status");
    status.textContent = "relay not reachable (" + e.message + "); retrying";
    status.classList.add("stale");
  }
  setTimeout(poll, POLL_MS);
}

document.getElementById("failed-only").addEventListener("change", () => lastState && drawConns(lastState));
document.getElementById("waterfall-close").addEventListener("click", () => {
  selected = "";
  document.getElementById("waterfall-card").hidden = true;
  document.getElementById("waterfall").removeAttribute("src");
  if (lastState) drawConns(lastState);
});
poll();
