"""The study explorer: one self-contained HTML page to look inside a study's runs.

`write_explorer(folder)` writes `explorer.html` into a results folder (`culturesim explore`;
`culturesim run` writes it for every study that does not opt out). The page opens from disk with
no server and no network: Plotly's JavaScript and the study's data (`culturesim.reports.explore_data`)
are inlined, and a short page script switches run and generation and follows clicks. Views:

- network: the run's agents in a seeded spring layout, coloured by the author kind of the text
  they hold, by its trait cluster or by the text itself; hovering over an agent shows its text;
- texts: the texts the most agents hold at the generation, with share, author kind, machine ancestry;
- lineage: clicking a text (or an agent) shows every variant it descends from back to the seed
  texts, with author kind, generation and text, and for an LLM-written one the logged request;
- curves: each metric over generations per condition (mean and range of its runs), the run
  dashed, the generation marked;
- norms (where the study has norm axes): each agent's position on every axis;
- coordination (where metrics hold `name_share:<name>`): name shares over generations, and for a
  coordination study, in place of texts and lineages, the round's pairs, the LLM agents' moves
  beside their best response, and a clicked agent's memory (`culturesim.reports.explore_coordination`).

The same data give the same bytes (no timestamps; layouts and samples are seeded). Plotly's
JavaScript is 4.8 MB of every page; past `explore_data.Limits` the data are sampled, and the page
says how.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from culturesim.reports.explore_coordination import GAME_BODY, GAME_SCRIPT, GAME_STYLE, SHARES_BODY
from culturesim.reports.explore_data import DEFAULT_LIMITS, Limits, explorer_data
from culturesim.schema.config import StudyConfig
from culturesim.study.store import write_text

EXPLORER_FILE = "explorer.html"

STYLE = (
    """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.2em 2em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:.6em 0 .2em} h2{font-size:1.05em;margin:.2em 0}
.note{color:#555;margin:.2em 0} #errors{color:#b00;font-weight:bold;white-space:pre-wrap}
#controls{position:sticky;top:0;z-index:10;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ddd;
 display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center}
#controls input[type=range]{width:16em}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:1em;margin-top:1em}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em}
.plot{height:440px} #lineage{height:300px}
#lineage-steps{max-height:420px;overflow:auto;padding-left:1.6em}
#lineage-steps li{margin:.4em 0} .step-head{font-weight:600}
.request{background:#f3f3f3;border-left:3px solid #D55E00;padding:.3em .6em;margin:.3em 0;font-size:.9em}
.request pre{white-space:pre-wrap;margin:.2em 0;font-size:.95em}
"""
    + GAME_STYLE
)

BODY = (
    """
<h1 id="title"></h1><p class="note" id="description"></p><p class="note" id="limits"></p>
<p id="errors"></p>
<div id="controls">
 <label>condition <select id="condition"></select></label>
 <label>run <select id="run"></select></label>
 <label>colour agents by <select id="colour"><option value="kind">author kind of their text</option>
  <option value="cluster">trait cluster</option>
  <option value="text">text held (the 10 most held)</option></select></label>
 <button id="play" type="button">▶ play</button>
 <label>generation <input id="generation" type="range" min="0" max="0" step="1" value="0">
  <b id="generation-label"></b></label>
</div>
<main>
 <section id="network-view"><h2>Network</h2><p class="note" id="network-note"></p><div id="network" class="plot">
  </div></section>
 <section id="texts-view"><h2>Texts held by the most agents</h2><p class="note">Click a text for its lineage.</p>
  <div id="texts" class="plot"></div></section>
 <section id="lineage-view"><h2 id="lineage-title">Lineage</h2><div id="lineage" class="plot"></div>
  <ol id="lineage-steps"></ol></section>"""
    + GAME_BODY
    + """
 <section id="curves-view"><h2>Metrics over generations</h2><label>metric <select id="metric"></select></label>
  <div id="curves" class="plot"></div></section>
 <section id="norm-view" hidden><h2>Positions on the norm axes</h2><p class="note" id="norm-note"></p>
  <div id="norms" class="plot"></div></section>
"""
    + SHARES_BODY
    + """
</main>
"""
)

SCRIPT = (
    r"""
(function () {
"use strict";
const errors = [];
function report(message) { errors.push(message); document.getElementById("errors").textContent = errors.join("\n"); }
window.addEventListener("error", (e) => report("page error: " + e.message));
const D = JSON.parse(document.getElementById("explorer-data").textContent);
const $ = (id) => document.getElementById(id);
const CONFIG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"]};
const state = {run: 0, gen: 0, colour: "kind", trait: null, agent: null, timer: null};
const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const cut = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);
function wrap(s, width) {
  const lines = [];
  let line = "";
  for (const word of String(s).split(/\s+/)) {
    if (line && (line + " " + word).length > (width || 64)) { lines.push(line); line = word; }
    else line = line ? line + " " + word : word;
  }
  lines.push(line);
  return lines.map(esc).join("<br>");
}
const run = () => D.runs[state.run];
const textOf = (r, t) => D.texts[r.traits.text[t]];
const kindLabel = (k) => (D.kinds[k] ? D.kinds[k].label : k);
const kindColour = (k) => (D.kinds[k] && D.kinds[k].colour) || "#444";
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000", "#882255",
                 "#44AA99"];  // Okabe-Ito and two of Tol's: clusters, texts, conditions, names
const genNumber = () => run().gens[state.gen];
const KIND_ORDER = Object.keys(D.kinds);  // the legend's order: seed, human kinds, machine kinds
const byKey = (groups) => [...groups.keys()].sort((a, b) => a - b).map((key) => groups.get(key));
"""
    + GAME_SCRIPT
    + r"""

function category(r, t) {
  if (t < 0) return {key: 999, label: GAME ? "no name yet" : "no text yet", colour: "#dddddd"};
  if (GAME) return {key: r.traits.id[t], label: textOf(r, t), colour: nameColour(r.traits.id[t])};  // a name's index
  if (state.colour === "cluster" && r.traits.cluster) {
    const c = r.traits.cluster[t];
    return {key: c, label: "cluster " + (c + 1) + ": " + cut(D.texts[r.traits.clusters[c]], 28),
            colour: PALETTE[c % PALETTE.length]};
  }
  if (state.colour === "text") {  // the most held texts of the generation each in a colour, the rest grey
    const rank = r.top[state.gen].findIndex(([u]) => u === t);
    if (rank < 0 || rank >= PALETTE.length) return {key: 998, label: "other texts", colour: "#cccccc"};
    return {key: rank, label: cut(textOf(r, t), 28), colour: PALETTE[rank]};
  }
  const k = r.traits.kind[t];
  return {key: KIND_ORDER.indexOf(k), label: kindLabel(k), colour: kindColour(k)};
}

function traitHover(r, t) {
  return wrap(textOf(r, t)) + "<br><i>" + esc(kindLabel(r.traits.kind[t])) + ", generation " + r.traits.born[t] +
    ", machine ancestry " + r.traits.anc[t].toFixed(2) + "</i>";
}

function clickable(id) {  // after the first Plotly call on the div: only then has it Plotly's `on`
  const div = $(id);
  if (div.dataset.clickable) return;
  div.dataset.clickable = "1";
  div.on("plotly_click", (ev) => {
    const t = ev.points[0].customdata;  // an agent in a coordination study, else a text
    if (typeof t === "number") (GAME ? showAgent : showLineage)(t);
  });
}

function drawNetwork() {
  const r = run(), held = r.held[state.gen], llm = new Set(r.llm);
  const ex = [], ey = [];
  for (let e = 0; e < r.edges.length; e += 2) {
    ex.push(r.x[r.edges[e]], r.x[r.edges[e + 1]], null);
    ey.push(r.y[r.edges[e]], r.y[r.edges[e + 1]], null);
  }
  const traces = [{type: "scatter", mode: "lines", x: ex, y: ey, hoverinfo: "skip", showlegend: false,
                   line: {color: "#cccccc", width: 0.6}}];
  const groups = new Map();
  held.forEach((t, i) => {
    const c = category(r, t);
    if (!groups.has(c.key)) groups.set(c.key, {c, x: [], y: [], text: [], symbol: [], custom: [], width: [], size: []});
    const g = groups.get(c.key), agent = r.drawn ? r.drawn[i] : i;
    const m = GAME ? agentMark(r, i, t) : {symbol: llm.has(i) ? "triangle-up" : "circle", size: 1, width: 0.6,
      custom: t, hover: "<b>agent " + agent + (llm.has(i) ? " (LLM agent)" : "") + "</b><br>" +
             (t < 0 ? "no text yet" : traitHover(r, t))};
    g.x.push(r.x[i]); g.y.push(r.y[i]); g.custom.push(m.custom); g.symbol.push(m.symbol); g.width.push(m.width);
    g.size.push(10 * m.size); g.text.push(m.hover);
  });
  const legend = [];  // legend-only entries drawn as circles (a group's first agent may be an LLM agent's ▲)
  for (const g of byKey(groups)) {
    traces.push({type: "scatter", mode: "markers", name: g.c.label, x: g.x, y: g.y, customdata: g.custom,
                 hovertext: g.text, hoverinfo: "text", legendgroup: g.c.label, showlegend: false,
                 marker: {color: g.c.colour, size: g.size, symbol: g.symbol, line: {color: "#333", width: g.width}}});
    legend.push({type: "scatter", mode: "markers", name: g.c.label, x: [null], y: [null], legendgroup: g.c.label,
                 hoverinfo: "skip", marker: {color: g.c.colour, size: 10, line: {color: "#333", width: 0.6}}});
  }
  traces.push(...legend);
  Plotly.react("network", traces, {margin: {l: 5, r: 5, t: 5, b: 5}, hovermode: "closest", uirevision: r.id,
    xaxis: {visible: false}, yaxis: {visible: false, scaleanchor: "x"}, legend: {orientation: "h", y: -0.02},
    paper_bgcolor: "#fff", plot_bgcolor: "#fff"}, CONFIG);
  clickable("network");
  $("network-note").textContent = (GAME ? "● model human, ▲ LLM agent, ★ committed agent; colour: the name each " +
    "played last; " : "● human, ▲ LLM agent; ") + (r.drawn ? r.drawn.length + " of " + r.agents +
    " agents drawn (a seeded snowball sample)" : r.agents + " agents") + ". Click an agent for " +
    (GAME ? "its memory." : "its text's lineage.");
}

function drawTexts() {
  const r = run(), top = r.top[state.gen].slice().reverse(), n = r.agents;
  const x = top.map(([, c]) => c / n);
  Plotly.react("texts", [{type: "bar", orientation: "h", x, customdata: top.map(([t]) => t),
    y: top.map(([t], i) => (top.length - i) + ". " + cut(textOf(r, t), 44)),
    marker: {color: top.map(([t]) => category(r, t).colour)},  // as the network colours them
    text: top.map(([t, c]) => Math.round(100 * c / n) + "% · " + kindLabel(r.traits.kind[t]) +
                              " · machine " + r.traits.anc[t].toFixed(2)),
    textposition: "outside", cliponaxis: false, hoverinfo: "text",
    hovertext: top.map(([t, c]) => "<b>" + c + " of " + n + " agents</b><br>" + traitHover(r, t))}],
    {margin: {l: 10, r: 10, t: 5, b: 40}, yaxis: {automargin: true, tickfont: {size: 11}},
     xaxis: {title: {text: "share of agents"}, tickformat: ".0%", range: [0, Math.max(...x, 0.01) * 1.9]},
     hovermode: "closest", paper_bgcolor: "#fff", plot_bgcolor: "#fff"}, CONFIG);
  clickable("texts");
}

function ancestry(r, t) {
  const lane = new Map(), order = [], queue = [[t, 0]];
  let lanes = 1;
  while (queue.length) {
    const [node, l] = queue.shift();
    if (lane.has(node)) continue;
    lane.set(node, l); order.push(node);
    r.traits.parents[node].forEach((p, k) => { if (!lane.has(p)) queue.push([p, k === 0 ? l : lanes++]); });
  }
  return {order, lane};
}

function showLineage(t) {
  const r = run();
  if (t === undefined || t === null || t < 0) return;
  state.trait = t;
  const {order, lane} = ancestry(r, t);
  const ex = [], ey = [];
  for (const node of order) for (const p of r.traits.parents[node]) {
    ex.push(r.traits.born[p], r.traits.born[node], null); ey.push(-lane.get(p), -lane.get(node), null);
  }
  const traces = [{type: "scatter", mode: "lines", x: ex, y: ey, hoverinfo: "skip", showlegend: false,
                   line: {color: "#999", width: 1}}];
  const byKind = new Map();
  for (const node of order) {
    const k = r.traits.kind[node];
    if (!byKind.has(k)) byKind.set(k, []);
    byKind.get(k).push(node);
  }
  for (const [k, nodes] of byKind) traces.push({type: "scatter", mode: "markers", name: kindLabel(k),
    x: nodes.map((v) => r.traits.born[v]), y: nodes.map((v) => -lane.get(v)), customdata: nodes,
    hovertext: nodes.map((v) => traitHover(r, v)), hoverinfo: "text",
    marker: {color: kindColour(k), size: nodes.map((v) => (v === t ? 16 : 11)), line: {color: "#333", width: 1}}});
  Plotly.react("lineage", traces, {margin: {l: 30, r: 10, t: 5, b: 40}, hovermode: "closest",
    xaxis: {title: {text: "generation"}, dtick: 1}, yaxis: {visible: false}, legend: {orientation: "h", y: 1.1},
    paper_bgcolor: "#fff", plot_bgcolor: "#fff"}, CONFIG);
  const seeds = order.filter((v) => r.traits.parents[v].length === 0).length;
  $("lineage-title").textContent = "Lineage of text #" + r.traits.id[t] + " of run " + r.id + ": " + order.length +
    " variant(s), back to " + seeds + " text(s) without parents";
  const list = $("lineage-steps");
  list.replaceChildren();
  for (const node of order) {
    const li = document.createElement("li"), head = document.createElement("div"), body = document.createElement("div");
    li.className = "step"; li.dataset.trait = r.traits.id[node]; li.dataset.kind = r.traits.kind[node];
    head.className = "step-head";
    head.textContent = "generation " + r.traits.born[node] + " · " + kindLabel(r.traits.kind[node]) +
      " · text #" + r.traits.id[node] + " · machine ancestry " + r.traits.anc[node].toFixed(2);
    body.className = "step-text"; body.textContent = textOf(r, node);
    li.append(head, body);
    const q = r.traits.request[node];
    if (q >= 0) li.append(requestBlock(r.traits.requests[q]));
    list.append(li);
  }
}

function requestBlock(q) {
  const box = document.createElement("div"), meta = document.createElement("div");
  box.className = "request";
  meta.textContent = "LLM request (agent " + q.agent + ", " + q.model_id + ", seed " + q.seed + ", temperature " +
    q.temperature + ", top_p " + q.top_p + ", max_tokens " + q.max_tokens + ", attempts " + q.attempts + "):";
  const prompt = document.createElement("pre"), answer = document.createElement("pre");
  prompt.className = "request-prompt"; prompt.textContent = q.prompt;
  answer.textContent = "answer: " + q.completion;
  const details = document.createElement("details"), summary = document.createElement("summary"),
    system = document.createElement("pre");
  summary.textContent = "system prompt"; system.textContent = D.systems[q.system];
  details.append(summary, system);
  box.append(meta, prompt, answer, details);
  return box;
}

function marker(g) {
  return [{type: "line", x0: g, x1: g, yref: "paper", y0: 0, y1: 1, line: {color: "#333", dash: "dot", width: 1}}];
}

function drawCurves() {
  const metric = $("metric").value, C = D.curves, traces = [];
  if (!metric) return;
  D.conditions.forEach((cond, i) => {
    const s = C.conditions[metric][cond];
    if (!s) return;
    const colour = PALETTE[i % PALETTE.length];
    traces.push({x: C.generations, y: s.lo, mode: "lines", line: {width: 0}, hoverinfo: "skip", showlegend: false,
                 legendgroup: cond});
    traces.push({x: C.generations, y: s.hi, mode: "lines", line: {width: 0}, fill: "tonexty", fillcolor: colour + "33",
                 hoverinfo: "skip", showlegend: false, legendgroup: cond});
    traces.push({x: C.generations, y: s.mean, mode: "lines+markers", name: cond, legendgroup: cond,
                 line: {color: colour, width: 2}, marker: {size: 4}});
  });
  const own = C.runs[metric][run().id];
  if (own) traces.push({x: C.generations, y: own, mode: "lines", name: "run " + run().id,
                        line: {color: "#000", dash: "dash", width: 1.5}});
  Plotly.react("curves", traces, {margin: {l: 50, r: 10, t: 5, b: 40}, hovermode: "x unified",
    xaxis: {title: {text: "generation"}}, yaxis: {title: {text: metric}},
    shapes: run().gens.length ? marker(genNumber()) : [],
    legend: {orientation: "h", y: -0.2}, paper_bgcolor: "#fff", plot_bgcolor: "#fff"}, CONFIG);
}

function drawNorms() {
  const axes = Object.keys(D.norm_axes), r = run();
  if (!axes.length || !r.traits || !r.traits.norm) { $("norm-view").hidden = true; return; }
  $("norm-view").hidden = false;
  const held = r.held[state.gen], groups = new Map();
  axes.forEach((axis, a) => held.forEach((t, i) => {
    if (t < 0) return;
    const c = category(r, t);
    if (!groups.has(c.key)) groups.set(c.key, {c, x: [], y: [], text: []});
    const g = groups.get(c.key);
    g.x.push(r.traits.norm[axis][t]); g.y.push(a + ((i * 0.618034) % 1 - 0.5) * 0.6);
    g.text.push("<b>agent " + (r.drawn ? r.drawn[i] : i) + "</b>, position " + r.traits.norm[axis][t].toFixed(3) +
                "<br>" + traitHover(r, t));
  }));
  const traces = byKey(groups).map((g) => ({type: "scatter", mode: "markers", name: g.c.label, x: g.x, y: g.y,
    hovertext: g.text, hoverinfo: "text", marker: {color: g.c.colour, size: 8, opacity: 0.8}}));
  Plotly.react("norms", traces, {margin: {l: 90, r: 10, t: 5, b: 40}, hovermode: "closest",
    xaxis: {title: {text: "position (cosine with positive − negative pole)"}, zeroline: true},
    yaxis: {tickvals: axes.map((_, a) => a), ticktext: axes, range: [-0.6, axes.length - 0.4]},
    legend: {orientation: "h", y: -0.2}, paper_bgcolor: "#fff", plot_bgcolor: "#fff"}, CONFIG);
  $("norm-note").textContent = axes.map((a) => a + ": “" + D.norm_axes[a][0] + "” (+) vs “" + D.norm_axes[a][1] +
    "” (−)").join("; ");
}

function drawGeneration() {
  const r = run();
  if (!r.gens.length) return;
  $("generation-label").textContent = genNumber() + " of " + r.gens[r.gens.length - 1];
  drawNetwork(); drawNorms();
  if (GAME) drawGame(); else drawTexts();
  for (const id of ["curves", "coordination"]) {
    const div = $(id);
    if (div.layout) Plotly.relayout(div, {shapes: marker(genNumber())});
  }
}

function selectRun(index) {
  state.run = index;
  const r = run();
  state.agent = null;
  $("network-view").hidden = !r.gens.length;
  $("texts-view").hidden = $("lineage-view").hidden = GAME || !r.gens.length;
  $("pairs-view").hidden = $("memory-view").hidden = !GAME || !r.gens.length;
  if (!r.gens.length) $("moves-view").hidden = true;
  $("limits").textContent = D.limits.text + (r.gens.length ? "" :
    " Run " + r.id + " has no population table (study.save_population = false): only its curves are shown.");
  drawCurves(); drawCoordination();
  if (!r.gens.length) return;
  $("generation").max = r.gens.length - 1;
  state.gen = Math.min(state.gen, r.gens.length - 1);
  $("generation").value = state.gen;
  drawGeneration();
  const top = r.top[state.gen];
  if (!GAME && top.length) showLineage(top[0][0]);
}

function fillRuns(chosen) {  // the runs of the chosen condition; shows `chosen` (a run index) or its first
  const cond = $("condition").value;
  $("run").replaceChildren(...D.runs.map((r, i) => [r, i]).filter(([r]) => r.condition === cond).map(([r, i]) => {
    const o = document.createElement("option");
    o.value = i; o.textContent = r.id + " (replicate " + r.replicate + ")";
    return o;
  }));
  if (typeof chosen === "number") $("run").value = chosen;
  selectRun(Number($("run").value));
}

function play() {
  if (state.timer) { clearInterval(state.timer); state.timer = null; $("play").textContent = "▶ play"; return; }
  if (state.gen >= run().gens.length - 1) state.gen = -1;
  $("play").textContent = "❚❚ pause";
  state.timer = setInterval(() => {
    if (state.gen >= run().gens.length - 1) { play(); return; }
    state.gen += 1; $("generation").value = state.gen; drawGeneration();
  }, 900);
}

$("title").textContent = D.study + (D.toy ? " (toy run)" : "") + " — explorer";
$("description").textContent = D.description + " Config hash " + D.config_hash.slice(0, 12) + ".";
const conditions = D.conditions.filter((c) => D.runs.some((r) => r.condition === c));
$("condition").replaceChildren(...conditions.map((c) => { const o = document.createElement("option");
  o.value = c; o.textContent = c; return o; }));
$("metric").replaceChildren(...D.curves.metrics.map((m) => { const o = document.createElement("option");
  o.value = m; o.textContent = m; return o; }));
if (!D.runs.some((r) => r.traits && r.traits.cluster)) $("colour").querySelector("[value=cluster]").disabled = true;
$("condition").addEventListener("change", () => fillRuns());
$("run").addEventListener("change", () => selectRun(Number($("run").value)));
$("metric").addEventListener("change", drawCurves);
$("colour").addEventListener("change", () => { state.colour = $("colour").value; drawGeneration(); });
$("generation").addEventListener("input", () => { state.gen = Number($("generation").value); drawGeneration(); });
$("play").addEventListener("click", play);
$("share-kind").addEventListener("change", drawCoordination);
if (GAME) $("colour").parentElement.hidden = true;  // agents take their name's colour
// Open on the run with the most LLM-written texts (a coordination study: the most LLM and committed agents; the
// first such), at its last generation.
const requests = (r) => (GAME ? (r.game ? r.game.asks.length + r.game.committed.length : -1) :
  r.traits ? r.traits.requests.length : -1);
const first = D.runs.reduce((best, r, i) => (requests(r) > requests(D.runs[best]) ? i : best), 0);
if (D.runs.length) {
  $("condition").value = D.runs[first].condition;
  state.gen = Math.max(0, D.runs[first].gens.length - 1);
  fillRuns(first);
}
window.explorer = {data: D, state, showLineage, showAgent, errors, selectRun};  // for scripts and tests
document.body.dataset.ready = "1";
})();
"""
)


def page(data: dict[str, Any], plotly_js: str) -> str:
    """The explorer page for explorer data: style, body, Plotly, the data as JSON, the page script."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    payload = payload.replace("<", "\\u003c")  # no "</script>" can end the data block early
    title = html.escape(f"{data['study']} explorer")
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<style>{STYLE}</style>\n'
        f"<script>{plotly_js}</script>\n</head><body>{BODY}\n"
        f'<script type="application/json" id="explorer-data">{payload}</script>\n'
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    )


def write_explorer(folder: str | Path, *, out: str | Path | None = None, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Write the explorer page of a results folder to `out` (default: folder/explorer.html); returns its path."""
    from plotly.offline import get_plotlyjs

    folder = Path(folder)
    target = Path(out) if out is not None else folder / EXPLORER_FILE
    write_text(page(explorer_data(folder, limits=limits), get_plotlyjs()), target)
    return target


def write_run_explorer(folder: Path, config: StudyConfig) -> Path | None:
    """What a finished `culturesim run` calls: explorer.html beside the report, unless the study
    opts out (`[study] explorer = false`)."""
    if not config.study.explorer:
        return None
    return write_explorer(folder)
