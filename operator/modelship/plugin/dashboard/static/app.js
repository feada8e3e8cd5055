// The dashboard page: the list and one rollout, kept live by the server's event stream.
// Plain JavaScript and hand-drawn SVG: nothing loaded from elsewhere (docs/dashboard.md).
"use strict";

const TOKEN = document.querySelector('meta[name="modelship-token"]').content;
// In-cluster and read-only: no buttons (the server refuses actions too, naming the chart value).
const ACTIONS_ON = document.querySelector('meta[name="modelship-actions"]').content === "on";
const USER = document.querySelector('meta[name="modelship-user"]').content; // in-cluster: the proxy's user
const SVG = "http://www.w3.org/2000/svg";
const rows = new Map(); // "namespace/name" -> row
let shown = null; // the rollout page's "namespace/name", or null on the list
let refetch = null;
let metricsDoc = null; // the shown rollout's Prometheus charts: {key, doc}, read on a timer
const METRICS_EVERY_MS = 30000;
let said = null; // the last action's answer on this page: {key, text, ok}; kept across redraws

function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "X-Modelship-Token": TOKEN, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await response.json(); } catch (e) { data = { message: response.statusText }; }
  return { ok: response.ok, status: response.status, data };
}

// ---- the list ----------------------------------------------------------------------------------

function weightText(r) {
  if (r.candidate === null || r.candidate === undefined) return "-";
  const shown = r.actualWeight === r.weight ? `${r.weight}%` : `${r.weight}% (${r.actualWeight}%)`;
  return r.challenger ? `${shown}, challenger ${r.challenger.weight}%` : shown;
}

function drawList() {
  const body = document.querySelector("#list tbody");
  body.replaceChildren(...[...rows.values()].map((r) => h("tr", { "data-name": r.name, "data-namespace": r.namespace },
    h("td", {}, r.namespace),
    h("td", {}, h("a", { href: `#/md/${r.namespace}/${r.name}` }, r.name)),
    h("td", { class: "phase" }, r.phase),
    h("td", { class: "mono" }, r.stable || "-"),
    h("td", { class: "mono" }, r.candidate || "-"),
    h("td", { class: "weight" }, weightText(r)),
    h("td", {}, r.step || "-"),
    h("td", {}, r.age || ""),
    h("td", { class: "verdict" }, r.why || r.lastVerdict || "-"),
  )));
  document.getElementById("empty").hidden = rows.size > 0;
}

// ---- charts ------------------------------------------------------------------------------------

// Charts are drawn at the page's width (redrawn when it changes), so their text stays legible on a phone.
let W = 900;
const PAD = { l: 44, r: 110, t: 12, b: 26 };

function timeAxis(times) {
  const now = Date.now();
  const ms = times.map((t) => Date.parse(t)).filter((t) => !Number.isNaN(t));
  const start = ms.length ? Math.min(...ms) : now - 60000;
  const end = Math.max(now, start + 60000);
  return { start, end, x: (t) => PAD.l + ((Date.parse(t) - start) / (end - start)) * (W - PAD.l - PAD.r) };
}

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 19);
}

function axes(svg, axis, height, yTicks) {
  for (const [value, y] of yTicks) {
    svg.append(h("svg:line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, stroke: "#e4e4e4" }));
    svg.append(h("svg:text", { x: PAD.l - 6, y: y + 4, "text-anchor": "end" }, value));
  }
  const ticks = W < 600 ? 2 : 4;
  for (let i = 0; i <= ticks; i++) {
    const t = axis.start + ((axis.end - axis.start) * i) / ticks;
    const x = PAD.l + ((W - PAD.l - PAD.r) * i) / ticks;
    svg.append(h("svg:text", { x, y: height - 8, "text-anchor": "middle" }, clock(t)));
  }
}

function marker(shape, x, y, colour) {
  if (shape === "triangle") {
    return h("svg:path", { d: `M${x},${y - 5} L${x + 5},${y + 4} L${x - 5},${y + 4} Z`, fill: colour });
  }
  return h("svg:circle", { cx: x, cy: y, r: 4, fill: colour });
}

// The weights over time: candidate dashed with triangles, stable solid with circles, each labelled.
function weightChart(points, axis) {
  const height = 200, bottom = height - PAD.b;
  const y = (w) => PAD.t + (1 - w / 100) * (bottom - PAD.t);
  const svg = h("svg:svg", { class: "chart", id: "weights-chart", viewBox: `0 0 ${W} ${height}`, role: "img",
    "aria-label": "traffic weights over time" });
  axes(svg, axis, height, [0, 50, 100].map((w) => [`${w}%`, y(w)]));
  const series = [
    { name: "stable", key: (p) => p.stable, colour: "var(--stable)", dash: null, shape: "circle" },
    { name: "candidate", key: (p) => p.actualWeight, colour: "var(--candidate)", dash: "7 4", shape: "triangle" },
  ];
  const right = W - PAD.r;
  const labelled = [];
  for (const s of series) {
    if (!points.length) break;
    let d = "";
    points.forEach((p, i) => {
      const x = axis.x(p.at), v = y(s.key(p));
      d += i === 0 ? `M${x},${v}` : ` H${x} V${v}`;
    });
    const last = points[points.length - 1];
    d += ` H${right}`;
    svg.append(h("svg:path", { d, fill: "none", stroke: s.colour, "stroke-width": 2.5, "stroke-dasharray": s.dash }));
    for (const p of points) svg.append(marker(s.shape, axis.x(p.at), y(s.key(p)), s.colour));
    let at = y(s.key(last)) + 4;
    if (labelled.some((other) => Math.abs(other - at) < 13)) at += 14; // equal weights: one under the other
    labelled.push(at);
    svg.append(h("svg:text", { x: right + 6, y: at, "data-series": s.name }, `${s.shape === "triangle" ? "▲" : "●"} ${s.name} ${s.key(last)}%`));
  }
  return svg;
}

const GLYPH = { Successful: "✓", Failed: "✗", Inconclusive: "?", Error: "!" };

// The analysis measurements on the same time axis: one lane per metric, a glyph per verdict.
function marksChart(marks, axis) {
  const metrics = [...new Set(marks.map((m) => m.metric))];
  const lane = 26, height = PAD.t + PAD.b + Math.max(1, metrics.length) * lane;
  const svg = h("svg:svg", { class: "chart", id: "marks-chart", viewBox: `0 0 ${W} ${height}`, role: "img",
    "aria-label": "analysis measurements over time" });
  axes(svg, axis, height, []);
  metrics.forEach((metric, i) => {
    const y = PAD.t + i * lane + lane / 2;
    svg.append(h("svg:text", { x: W - PAD.r + 6, y: y + 4 }, metric));
    svg.append(h("svg:line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, stroke: "#eee" }));
    for (const m of marks.filter((k) => k.metric === metric)) {
      const x = axis.x(m.at);
      const colour = m.verdict === "Successful" ? "var(--ok)" : m.verdict === "Failed" ? "var(--bad)" : "var(--unsure)";
      const g = h("svg:g", { class: `mark verdict-${m.verdict}` },
        h("svg:title", {}, `${m.at} ${m.metric}: ${m.verdict}, value ${m.value ?? "-"}, limit ${m.limit || "-"}`),
        h("svg:text", { x, y: y + 5, "text-anchor": "middle", "font-size": 16, fill: colour }, GLYPH[m.verdict] || "•"));
      svg.append(g);
      if (m.verdict === "Failed") {
        svg.append(h("svg:text", { x: x + 10, y: y + 4, class: "failed-label", fill: "var(--bad)" },
          `${fmt(m.value)} (${m.limit || "no limit"})`));
      }
    }
  });
  return svg;
}

// Three significant digits, for chart labels: 0.00547, 198, 1.05e+4.
function short(v) {
  return Number(v).toPrecision(3).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

function fmt(v) {
  return v === null || v === undefined ? "-" : Number(v).toPrecision(4).replace(/\.?0+$/, "");
}

// One Prometheus chart: each revision's series over the chart window, stable and candidate told
// apart by line, marker and label as in the weights chart.
function metricChart(chart, doc) {
  const width = Math.min(W, 600), height = 170, bottom = height - PAD.b, right = width - 130, left = 52;
  const start = Date.parse(doc.start), end = Date.parse(doc.end);
  const x = (t) => left + ((t * 1000 - start) / (end - start)) * (right - left);
  const values = chart.series.flatMap((s) => s.points.map((p) => p[1]));
  const top = values.length ? Math.max(...values) * 1.1 || 1 : 1;
  const y = (v) => PAD.t + (1 - v / top) * (bottom - PAD.t);
  const svg = h("svg:svg", { class: "chart metric", "data-chart": chart.chart, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": chart.title });
  for (const v of [0, top / 2, top]) {
    svg.append(h("svg:line", { x1: left, x2: right, y1: y(v), y2: y(v), stroke: "#e4e4e4" }));
    svg.append(h("svg:text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, short(v)));
  }
  svg.append(h("svg:text", { x: left, y: height - 8 }, clock(start)));
  svg.append(h("svg:text", { x: right, y: height - 8, "text-anchor": "end" }, clock(end)));
  const labelled = [];
  for (const s of chart.series) {
    const look = s.role === "stable"
      ? { colour: "var(--stable)", dash: null, shape: "circle" }
      : { colour: "var(--candidate)", dash: "7 4", shape: "triangle" };
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${x(p[0])},${y(p[1])}`).join(" ");
    svg.append(h("svg:path", { d, fill: "none", stroke: look.colour, "stroke-width": 2, "stroke-dasharray": look.dash }));
    const last = s.points[s.points.length - 1];
    svg.append(marker(look.shape, x(last[0]), y(last[1]), look.colour));
    let at = y(last[1]) + 4;
    if (labelled.some((o) => Math.abs(o - at) < 13)) at += 14;
    labelled.push(at);
    svg.append(h("svg:text", { x: right + 6, y: at }, `${look.shape === "triangle" ? "▲" : "●"} ${s.role} ${short(last[1])}`));
  }
  const missing = chart.series.filter((s) => !s.points.length).map((s) => `${s.role}: ${s.problem || "no data"}`);
  return h("figure", { class: "metric" }, h("figcaption", {}, chart.title), svg,
    missing.length ? h("p", { class: "note" }, missing.join("; ")) : null);
}

function metricsSection(key) {
  const doc = metricsDoc && metricsDoc.key === key ? metricsDoc.doc : null;
  if (!doc) return h("p", { id: "metrics" }, "Reading Prometheus…");
  return h("div", { id: "metrics" },
    doc.problem ? h("p", { class: "refusal" }, doc.problem) : null,
    doc.address ? h("p", { class: "note" }, `From ${doc.address}, every ${doc.step}s; refreshed every ${METRICS_EVERY_MS / 1000}s.`) : null,
    h("div", { class: "grid2" }, doc.charts.map((c) => metricChart(c, doc))));
}

async function loadMetrics() {
  if (!shown) return;
  const key = shown;
  const [ns, name] = key.split("/");
  const r = await call("GET", `/api/md/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/metrics`);
  if (key !== shown || !r.ok) return;
  metricsDoc = { key, doc: r.data };
  const old = document.getElementById("metrics");
  if (old) old.replaceWith(metricsSection(key));
}

// ---- one rollout -------------------------------------------------------------------------------

const ACTIONS = [
  ["promote", "Promote", {}], ["promote", "Promote full", { full: true }], ["pause", "Pause", {}],
  ["resume", "Resume", {}], ["abort", "Abort", {}], ["retry", "Retry", {}], ["undo", "Undo", {}],
];

async function act(ns, name, verb, body, label) {
  if ((verb === "abort" || verb === "undo") && !window.confirm(`${label} ${ns}/${name}?`)) return;
  const key = `${ns}/${name}`;
  const show = (text, ok) => {
    said = { key, text, ok };
    const out = document.getElementById("action-result"); // the page may have been redrawn meanwhile
    out.hidden = false;
    out.className = ok === null ? "" : ok ? "done-msg" : "refusal";
    out.textContent = text;
  };
  show(`${label}…`, null);
  const r = await call("POST", `/api/md/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${verb}`, body);
  show(r.ok ? r.data.message : `Refused (${r.status}): ${r.data.message}`, r.ok);
  loadRollout();
}

function table(headers, body) {
  return h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, body)));
}

function drawRollout(d) {
  const page = document.getElementById("rollout-page");
  const mine = said && said.key === `${d.namespace}/${d.name}`;
  const keep = h("p", { id: "action-result", role: "status", hidden: !mine,
    class: mine && said.ok !== null ? (said.ok ? "done-msg" : "refusal") : null }, mine ? said.text : "");
  W = Math.max(320, Math.min(1200, document.querySelector("main").clientWidth - 4));
  const axis = timeAxis([...d.weights.map((p) => p.at), ...d.marks.map((m) => m.at)]);
  const podRows = Object.entries(d.pods).flatMap(([rev, pods]) => pods.map((p) =>
    h("tr", {}, h("td", { class: "mono" }, rev), h("td", { class: "mono" }, p.name), h("td", {}, p.phase),
      h("td", {}, p.ready ? "ready" : "not ready"), h("td", {}, p.restarts))));
  page.replaceChildren(...[
    h("p", {}, h("a", { href: "#/" }, "← all ModelDeployments")),
    d.why ? h("p", { class: "why", id: "why" }, d.why) : null,
    h("h1", {}, `${d.namespace}/${d.name} `, h("span", { class: "phase", id: "phase" }, d.phase)),
    h("dl", { class: "facts" },
      ...[["Stable", d.stable], ["Candidate", d.candidate], ["Weight (asked / actual)", d.candidate ? `${d.weight}% / ${d.actualWeight}%` : "-"],
        ["Step", d.step], ["Strategy", `${d.strategy} (${d.router} router)`], ["Paused by hand", d.paused ? "yes" : "no"],
        ["Last verdict", d.lastVerdict]]
        .map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", { class: "mono" }, v || "-")))),
    ACTIONS_ON
      ? h("div", { class: "actions" }, ACTIONS.map(([verb, label, body]) =>
        h("button", { "data-verb": verb + (body.full ? "-full" : ""), class: verb === "abort" || verb === "undo" ? "danger" : null,
          onclick: () => act(d.namespace, d.name, verb, body, label) }, label)))
      : h("p", { class: "read-only", id: "read-only" }, "Read-only: this dashboard's actions are off (chart value dashboard.actions.enabled)."),
    keep,
    d.unreadable.length ? h("p", { class: "refusal" }, `Not shown (your access): ${d.unreadable.join("; ")}`) : null,
    h("h2", {}, "Steps"),
    d.timeline.length
      ? h("ol", { class: "timeline", id: "timeline" }, d.timeline.map((s) => h("li", { class: s.state, "data-index": s.index },
        `${s.index + 1}. ${s.label}`, s.remaining !== null ? ` (${s.remaining}s left)` : "")))
      : h("p", {}, "Blue/green: no steps."),
    h("h2", {}, "Traffic weights"),
    h("div", { class: "legend" }, h("span", {}, "━ ● stable (solid, circles)"), h("span", {}, "╍ ▲ candidate (dashed, triangles)")),
    weightChart(d.weights, axis),
    h("h2", {}, "Per revision (Prometheus)"),
    metricsSection(`${d.namespace}/${d.name}`),
    h("h2", {}, "Analysis"),
    h("div", { class: "legend" }, h("span", {}, "✓ successful"), h("span", {}, "✗ failed"), h("span", {}, "? inconclusive"), h("span", {}, "! error")),
    d.marks.length ? marksChart(d.marks, axis) : h("p", {}, "No measurements yet."),
    d.runs.length ? table(["Run", "Revision", "Step", "Phase", "Message"], d.runs.map((r) => h("tr", {},
      h("td", {}, r.kind), h("td", { class: "mono" }, r.revision), h("td", {}, r.step === null ? "-" : r.step + 1),
      h("td", { class: `verdict-${r.phase}` }, r.phase), h("td", {}, r.message)))) : null,
    d.marks.length ? table(["Time", "Metric", "Value", "Stable", "Limit", "Verdict", "Message"], d.marks.slice().reverse().map((m) =>
      h("tr", { class: "measurement" }, h("td", { class: "mono" }, m.at.slice(11, 19)), h("td", {}, m.metric), h("td", { class: "mono" }, fmt(m.value)),
        h("td", { class: "mono" }, fmt(m.stableValue)), h("td", {}, m.limit || "-"),
        h("td", { class: `verdict-${m.verdict}` }, `${GLYPH[m.verdict] || ""} ${m.verdict}`), h("td", {}, m.message)))) : null,
    d.smokeTest ? h("p", { id: "smoke" }, `Smoke test of ${d.smokeTest.revision}: ${d.smokeTest.passed ? "passed" : "FAILED"}. ${d.smokeTest.message}`) : null,
    h("div", { class: "grid2" },
      h("div", {}, h("h2", {}, "Pods"), podRows.length ? table(["Revision", "Pod", "Phase", "Ready", "Restarts"], podRows) : h("p", {}, "No pods.")),
      h("div", {}, h("h2", {}, "Conditions"), table(["Type", "Status", "Reason", "Message"], d.conditions.map((c) =>
        h("tr", {}, h("td", {}, c.type), h("td", {}, c.status), h("td", {}, c.reason), h("td", {}, c.message)))))),
    h("h2", {}, "Events"),
    table(["Time", "Type", "Reason", "Message"], d.events.slice().reverse().map((e) =>
      h("tr", {}, h("td", { class: "mono" }, (e.at || "").slice(11, 19)), h("td", {}, e.type), h("td", {}, e.reason),
        h("td", {}, e.message + (e.count > 1 ? ` (×${e.count})` : ""))))),
  ].filter((x) => x !== null));
}

async function loadRollout() {
  if (!shown) return;
  const [ns, name] = shown.split("/");
  const r = await call("GET", `/api/md/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
  if (shown !== `${ns}/${name}`) return;
  if (!r.ok) {
    document.getElementById("rollout-page").replaceChildren(h("p", {}, h("a", { href: "#/" }, "← all ModelDeployments")),
      h("p", { class: "refusal" }, r.data.message));
    return;
  }
  drawRollout(r.data);
}

// ---- routing and the live stream ---------------------------------------------------------------

function route() {
  const m = location.hash.match(/^#\/md\/([^/]+)\/([^/]+)$/);
  shown = m ? `${decodeURIComponent(m[1])}/${decodeURIComponent(m[2])}` : null;
  document.getElementById("list-page").hidden = !!shown;
  document.getElementById("rollout-page").hidden = !shown;
  if (shown) {
    document.getElementById("rollout-page").replaceChildren(h("p", {}, "Loading…"));
    loadRollout();
    loadMetrics();
  }
}

function changed(key) {
  if (key !== shown) return;
  clearTimeout(refetch); // several changes in a burst: one read
  refetch = setTimeout(loadRollout, 150);
}

function connect() {
  const live = document.getElementById("live");
  const stream = new EventSource(`/api/stream?token=${encodeURIComponent(TOKEN)}`);
  stream.addEventListener("open", () => { live.textContent = "● live"; });
  stream.addEventListener("error", () => { live.textContent = "○ reconnecting…"; });
  stream.addEventListener("rows", (e) => {
    rows.clear();
    for (const r of JSON.parse(e.data)) rows.set(`${r.namespace}/${r.name}`, r);
    drawList();
    if (shown) changed(shown);
  });
  stream.addEventListener("reset", () => { rows.clear(); drawList(); });
  stream.addEventListener("row", (e) => {
    const r = JSON.parse(e.data);
    rows.set(`${r.namespace}/${r.name}`, r);
    drawList();
    changed(`${r.namespace}/${r.name}`);
  });
  stream.addEventListener("gone", (e) => {
    const r = JSON.parse(e.data);
    rows.delete(`${r.namespace}/${r.name}`);
    drawList();
  });
  stream.addEventListener("failure", (e) => {
    const p = document.getElementById("failure");
    p.hidden = false;
    p.textContent = JSON.parse(e.data).message;
  });
}

window.addEventListener("hashchange", route);
setInterval(loadMetrics, METRICS_EVERY_MS); // Prometheus has no watch: a timer, only for the charts
window.addEventListener("resize", () => { if (shown) changed(shown); });
window.addEventListener("DOMContentLoaded", async () => {
  history.replaceState(null, "", location.pathname + location.hash); // the token stays out of the address bar
  const r = await call("GET", "/api/list");
  if (r.ok) document.getElementById("scope").textContent = r.data.scope;
  if (USER) document.getElementById("user").textContent = `signed in as ${USER}`;
  route();
  connect();
});
