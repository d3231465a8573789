// tracingproxy's waterfall UI: plain JavaScript over the Zipkin v2 query API
// served beside it. No network beyond this origin.
"use strict";
const $ = (id) => document.getElementById(id);
const api = (path) => fetch("api/v2/" + path).then((r) => { if (!r.ok) throw new Error(r.status); return r.json(); });
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const fmtDur = (us) => us >= 1e6 ? (us / 1e6).toFixed(2) + " s" : us >= 1000 ? (us / 1000).toFixed(2) + " ms" : us + " µs";
const svcOf = (s) => (s.localEndpoint && s.localEndpoint.serviceName) || "unknown";
const isErr = (s) => s.tags && ("error" in s.tags);

let view = "list";
function show(v) {
  view = v;
  $("list-view").hidden = v !== "list";
  $("trace-view").hidden = v !== "trace";
  $("deps-view").hidden = v !== "deps";
  $("nav-traces").className = v === "deps" ? "" : "on";
  $("nav-deps").className = v === "deps" ? "on" : "";
}

function summarize(spans) {
  const start = Math.min(...spans.map((s) => s.timestamp || Infinity));
  const end = Math.max(...spans.map((s) => (s.timestamp || 0) + (s.duration || 0)));
  const ids = new Set(spans.map((s) => s.id));
  const root = spans.find((s) => !s.parentId || !ids.has(s.parentId)) || spans[0];
  return { start, dur: end - start, root, services: [...new Set(spans.map(svcOf))], error: spans.some(isErr) };
}

async function loadList() {
  const id = $("f-trace").value.trim().toLowerCase();
  let traces;
  if (id) {
    traces = /^[0-9a-f]{16}([0-9a-f]{16})?$/.test(id) ? await api("traceMany?traceIds=" + id).catch(() => []) : [];
  } else {
    const p = new URLSearchParams({ limit: "50", lookback: String(24 * 3600 * 1000), endTs: String(Date.now()) });
    if ($("f-service").value) p.set("serviceName", $("f-service").value);
    const min = Number($("f-min").value);
    if (min > 0) p.set("minDuration", String(Math.round(min * 1000)));
    if ($("f-status").value === "error") p.set("annotationQuery", "error");
    traces = await api("traces?" + p);
  }
  if ($("f-status").value === "ok") traces = traces.filter((t) => !t.some(isErr));
  const body = $("traces").tBodies[0];
  body.replaceChildren();
  for (const spans of traces) {
    const s = summarize(spans);
    const tr = el("tr", { class: "trace", "data-trace-id": spans[0].traceId },
      el("td", {}, new Date(s.start / 1000).toLocaleTimeString()),
      el("td", { class: s.error ? "err" : "" }, svcOf(s.root) + ": " + (s.root.name || "")),
      el("td", {}, ...s.services.map((n) => el("span", { class: "svc" }, n))),
      el("td", {}, String(spans.length)),
      el("td", {}, fmtDur(s.dur)),
      el("td", { class: "mono" }, spans[0].traceId));
    tr.onclick = () => openTrace(spans[0].traceId);
    body.append(tr);
  }
  $("no-traces").hidden = traces.length > 0;
}

async function loadServices() {
  const sel = $("f-service");
  const cur = sel.value;
  const names = await api("services");
  sel.replaceChildren(el("option", { value: "" }, "all"), ...names.map((n) => el("option", { value: n }, n)));
  sel.value = names.includes(cur) ? cur : "";
}

// order returns the spans depth-first from the roots, children by start.
function order(spans) {
  const ids = new Set(spans.map((s) => s.id));
  const kids = new Map();
  const roots = [];
  for (const s of spans) {
    if (s.parentId && ids.has(s.parentId) && s.parentId !== s.id) {
      if (!kids.has(s.parentId)) kids.set(s.parentId, []);
      kids.get(s.parentId).push(s);
    } else roots.push(s);
  }
  const byStart = (a, b) => (a.timestamp || 0) - (b.timestamp || 0);
  const out = [];
  const walk = (s, depth) => {
    out.push([s, depth]);
    for (const c of (kids.get(s.id) || []).sort(byStart)) walk(c, depth + 1);
  };
  roots.sort(byStart).forEach((r) => walk(r, 0));
  return out;
}

let openTraceID = "";
async function openTrace(id) {
  openTraceID = id;
  show("trace");
  const spans = await api("trace/" + id);
  const s = summarize(spans);
  $("trace-title").textContent = svcOf(s.root) + ": " + (s.root.name || "") + " · " + fmtDur(s.dur) + " · " + spans.length + " spans · " + id;
  const total = Math.max(s.dur, 1);
  const pct = (us) => (100 * us / total).toFixed(3) + "%";
  const ticks = el("div", { class: "ticks" });
  for (let i = 0; i <= 4; i++) ticks.append(el("span", { style: "left:" + (i * 25) + "%;transform:translateX(-" + (i * 25) + "%)" }, fmtDur(Math.round(total * i / 4))));
  $("scale").replaceChildren(el("div", {}, "service · span"), ticks);
  const wf = $("waterfall");
  wf.replaceChildren();
  for (const [sp, depth] of order(spans)) {
    const off = (sp.timestamp || s.start) - s.start;
    const bar = el("div", { class: "bar " + (sp.kind || "") + (isErr(sp) ? " error" : ""), style: "left:" + pct(off) + ";width:" + pct(sp.duration || 1) });
    const dur = el("div", { class: "dur", style: "left:calc(" + pct(off + (sp.duration || 0)) + " + 4px)" }, fmtDur(sp.duration || 0));
    const track = el("div", { class: "track" }, bar, dur);
    for (const a of sp.annotations || []) track.append(el("div", { class: "ann", title: a.value, style: "left:" + pct(a.timestamp - s.start) }));
    const kv = el("div", { class: "kv" });
    const add = (k, v) => kv.append(el("div", {}, k), el("div", { class: "mono" }, v));
    add("span id", sp.id);
    if (sp.parentId) add("parent id", sp.parentId);
    add("kind", sp.kind || "");
    if (sp.remoteEndpoint) add("remote", [sp.remoteEndpoint.serviceName, sp.remoteEndpoint.ipv4 || sp.remoteEndpoint.ipv6, sp.remoteEndpoint.port].filter(Boolean).join(" "));
    for (const [k, v] of Object.entries(sp.tags || {})) add(k, v);
    for (const a of sp.annotations || []) add("@" + fmtDur(a.timestamp - s.start), a.value);
    const label = el("div", { class: "label", style: "padding-left:" + (8 + depth * 16) + "px" },
      el("span", { class: "svc" }, svcOf(sp)), el("span", { class: isErr(sp) ? "err" : "" }, (sp.kind ? sp.kind.toLowerCase() + " " : "") + (sp.name || "")));
    const row = el("div", { class: "row", "data-span-id": sp.id, "data-service": svcOf(sp), "data-name": sp.name || "", "data-duration": String(sp.duration || 0) }, label, track, el("div", { class: "details" }, kv));
    row.onclick = () => row.classList.toggle("open");
    wf.append(row);
  }
}

async function loadDeps() {
  const links = await api("dependencies?endTs=" + Date.now() + "&lookback=3600000");
  const box = $("deps");
  if (!links.length) { box.replaceChildren(el("div", { class: "empty" }, "No calls between services yet.")); return; }
  // Lay services out in columns by their depth from the callers.
  const depth = new Map();
  const names = new Set(links.flatMap((l) => [l.parent, l.child]));
  for (const n of names) depth.set(n, 0);
  for (let i = 0; i < names.size; i++) for (const l of links) depth.set(l.child, Math.max(depth.get(l.child), Math.min(depth.get(l.parent) + 1, names.size)));
  const cols = new Map();
  for (const [n, d] of depth) { if (!cols.has(d)) cols.set(d, []); cols.get(d).push(n); }
  const pos = new Map();
  const W = 220, H = 70;
  for (const [d, ns] of cols) ns.sort().forEach((n, i) => pos.set(n, [40 + d * W, 30 + i * H]));
  const width = 80 + (Math.max(...cols.keys()) + 1) * W, height = 40 + Math.max(...[...cols.values()].map((c) => c.length)) * H;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height);
  const mk = (tag, a, text) => { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(a)) e.setAttribute(k, v); if (text) e.textContent = text; svg.append(e); return e; };
  for (const l of links) {
    const [x1, y1] = pos.get(l.parent), [x2, y2] = pos.get(l.child);
    mk("line", { x1: x1 + 140, y1: y1 + 15, x2, y2: y2 + 15, stroke: l.errorCount ? "#d23f3f" : "#8a93a6", "stroke-width": 2 });
    mk("text", { x: (x1 + 140 + x2) / 2 - 20, y: (y1 + y2) / 2 + 8, fill: "#6b7385" }, l.callCount + " calls" + (l.errorCount ? ", " + l.errorCount + " errors" : ""));
  }
  for (const [n, [x, y]] of pos) {
    mk("rect", { x, y, width: 140, height: 30, rx: 5, fill: "#fff", stroke: "#3b6fd8" });
    mk("text", { x: x + 10, y: y + 20, "data-service": n }, n);
  }
  const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "caller"), el("th", {}, "callee"), el("th", {}, "calls"), el("th", {}, "errors"))));
  const tb = el("tbody");
  for (const l of links) tb.append(el("tr", {}, el("td", {}, l.parent), el("td", {}, l.child), el("td", {}, String(l.callCount)), el("td", {}, String(l.errorCount || 0))));
  table.append(tb);
  box.replaceChildren(svg, table);
}

async function refresh() {
  try {
    if (view === "list") { await loadServices(); await loadList(); }
    if (view === "deps") await loadDeps();
    $("live").textContent = "live · updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("live").textContent = "offline: " + e.message;
  }
}

$("nav-traces").onclick = () => { show("list"); refresh(); };
$("nav-deps").onclick = () => { show("deps"); refresh(); };
$("back").onclick = (e) => { e.preventDefault(); show("list"); refresh(); };
for (const id of ["f-service", "f-status", "f-min", "f-trace"]) $(id).onchange = refresh;
const fromHash = location.hash.match(/^#trace=([0-9a-f]+)$/);
if (fromHash) openTrace(fromHash[1]); else refresh();
setInterval(refresh, 3000);
