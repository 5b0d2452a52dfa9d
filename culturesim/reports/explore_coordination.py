"""The coordination game in the study explorer (`culturesim.reports.explore`): its data and its views.

For a coordination study the page shows, at the chosen generation, the round's pairs and whether
each matched, the committed agents, the LLM agents' moves beside their best response to their
memory, and (on a click) an agent's memory and inventory. A run's tables do not hold these, but they
determine them: a run is a pure function of its study file and its LLM answers (generations.parquet),
so `game_data` plays the run again with the simulator's own `ConventionModel` (plan, step, record;
each LLM agent's logged answer as its move) and keeps what the page shows. The replay is checked
against everything the run recorded: every agent's play at every generation (population.parquet)
and every recorded value (metrics.parquet). Where they disagree (a folder written by other rules
than this version's) the page shows no round data and says why, rather than data that might be wrong.

Names are indices into the run's name list; agents are the run's agent numbers; memories list each
remembered game as (own play, partner's play), oldest first, NO_NAME (-1) for no name.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from culturesim.parts.llm.convention_prompts import adopt_choice
from culturesim.schema.config import StudyConfig
from culturesim.simulation.conventions import ConventionModel, build_convention_run
from culturesim.simulation.model import RunSpec

NAME_SHARE = "name_share:"  # the share of the names played in the last round (`ConventionModel.record`)
HELD_ONLY = "held_only:"  # the share of agents whose naming-game inventory holds only that name
SHARE_PREFIXES = (NAME_SHARE, HELD_ONLY)  # per-name values: the coordination view draws them, not the curves
ANSWER_CHARS = 80  # characters kept of an LLM agent's answer


def coordination_shares(metrics: pl.DataFrame, config: StudyConfig, *, generations: list[int]) -> dict[str, Any] | None:
    """The name-share view's data at `generations` (None when no `name_share:<name>` values were
    recorded): the names, the rule, the payoffs (match, mismatch; points), and per name its share
    (0..1) per generation, as the mean over each condition's runs and per run: `played` from
    `name_share`, `held` from `held_only` (None where the rule keeps no inventory, or the folder was
    written before it was recorded)."""
    shares = metrics.filter(pl.col("metric").str.starts_with(NAME_SHARE))
    if shares.is_empty():
        return None
    names = shares["metric"].str.strip_prefix(NAME_SHARE).unique(maintain_order=True).to_list()

    def series(prefix: str) -> dict[str, Any] | None:
        rows = metrics.filter(pl.col("metric").str.starts_with(prefix) & pl.col("generation").is_in(generations))
        if rows.is_empty():
            return None
        rows = rows.with_columns(name=pl.col("metric").str.strip_prefix(prefix))
        out: dict[str, Any] = {}
        for key, label in (("condition", "conditions"), ("run_id", "runs")):
            means = rows.group_by(key, "name", "generation").agg(pl.col("value").mean().round_sig_figs(5))
            means = means.with_columns(pl.col("value").fill_nan(None)).sort(key)  # JSON has no NaN
            out[label] = {}
            for (group,), part in means.partition_by(key, as_dict=True, maintain_order=True).items():
                values = {(n, g): v for n, g, v in part.select("name", "generation", "value").iter_rows()}
                out[label][str(group)] = {n: [values.get((n, g)) for g in generations] for n in names}
        return out

    game = config.coordination
    return {
        "names": names,
        "generations": generations,
        "played": series(NAME_SHARE),
        "held": series(HELD_ONLY),
        "rule": game.rule,
        "memory": game.memory,
        "payoffs": [game.payoff_match, game.payoff_mismatch],
    }


def _cut(answer: str) -> str:
    return answer if len(answer) <= ANSWER_CHARS else answer[: ANSWER_CHARS - 1] + "…"


class Mismatch(Exception):
    """The replayed run disagrees with what the run recorded (its message says where)."""


def game_data(
    condition: StudyConfig,
    run: dict[str, Any],
    *,
    population: pl.DataFrame,
    metrics: pl.DataFrame,
    log: pl.DataFrame | None,
    shown: list[int],
    drawn: np.ndarray,
) -> dict[str, Any]:
    """One run's game at the page's generations `shown`, for its drawn agents (sorted agent numbers):

    - `names`, `committed_name` (an index into names, -1 for none);
    - `committed`, `asks`: the drawn committed agents and LLM agents that ask (places in `drawn`);
    - `rounds[i]`: the round of generation shown[i] (None for generation 0): its pairs with a drawn
      agent as flat [speaker, listener, ...] agent numbers, their plays alike, and per pair 1 (match),
      0 (mismatch) or -1 (void: an LLM agent gave no valid move);
    - `memory[i]`: each drawn agent's memory before that round (at generation 0, its first one), as
      flat [own, partner, ...], oldest first;
    - `moves[i]`: [agent, move (-1: none), [[name, times its remembered partners played it], ...],
      answer] for each drawn LLM agent that asked in that round;
    - `inventory[i]`, `inventory_before[i]` (naming game only): each drawn agent's names after and
      before that round.

    `population`, `metrics` and `log` are the run's rows of population.parquet, metrics.parquet and
    generations.parquet. A replay that disagrees with them gives {"note": why} instead."""
    spec = RunSpec(
        run["run_id"], run["condition"], run["replicate"], condition.study.seed, run.get("condition_index", 0)
    )
    model = build_convention_run(condition, spec, dim=1)
    who = {  # set up from the run's seeds alone, so known even where the replay fails
        "names": model.names,
        "committed_name": model.committed_name,
        "committed": np.flatnonzero(model.committed[drawn]).tolist(),
        "asks": np.flatnonzero(model.asks_llm[drawn]).tolist(),
    }
    try:
        return {**who, **_replay(model, population, metrics, log, shown, drawn)}
    except Mismatch as why:
        return {**who, "note": f"The rounds of run {spec.run_id} are not shown: {why}."}


def _replay(
    model: ConventionModel,
    population: pl.DataFrame,
    metrics: pl.DataFrame,
    log: pl.DataFrame | None,
    shown: list[int],
    drawn: np.ndarray,
) -> dict[str, Any]:
    n, last = len(model.traits), model.config.study.generations
    population = population.sort("generation", "agent")
    if population.height != (last + 1) * n:
        raise Mismatch(f"population.parquet holds {population.height} rows, not {last + 1} generations x {n} agents")
    plays = population["trait_id"].to_numpy().reshape(last + 1, n)
    recorded = {(g, m): v for g, m, v in metrics.select("generation", "metric", "value").iter_rows()}
    answers = (
        {} if log is None else {(g, a): c for g, a, c in log.select("generation", "agent", "completion").iter_rows()}
    )
    is_drawn = np.zeros(n, dtype=bool)
    is_drawn[drawn] = True
    inventory = model.inventory
    data: dict[str, Any] = {
        "rounds": [],
        "memory": [],
        "moves": [],
        **({"inventory": [], "inventory_before": []} if inventory is not None else {}),
    }

    def check(generation: int) -> None:
        values = model.record(generation)
        wrong = np.flatnonzero(model.traits != plays[generation])
        if wrong.size:
            agent = int(wrong[0])
            raise Mismatch(
                f"replaying it from its study file and its LLM answers gives agent {agent} the name "
                f"{model.traits[agent]} at generation {generation}, where population.parquet records "
                f"{plays[generation, agent]} (the folder was written by other rules than this version's)"
            )
        for metric, value in values.items():
            stored = recorded.get((generation, metric), value)
            if not (stored == value or (math.isnan(stored) and math.isnan(value))):
                raise Mismatch(
                    f"replaying it gives {metric} = {value:g} at generation {generation}, where metrics.parquet "
                    f"records {stored:g} (the folder was written by other rules than this version's)"
                )

    def snapshot() -> None:
        filled = model.memory.filled[drawn]
        games = np.stack([model.memory.own[drawn], model.memory.partner[drawn]], axis=2).reshape(len(drawn), -1)
        data["memory"].append([row[: 2 * f].tolist() for row, f in zip(games, filled, strict=True)])
        if inventory is not None:
            data["inventory_before"].append([np.flatnonzero(row).tolist() for row in inventory.known[drawn]])

    check(0)
    if 0 in shown:
        snapshot()
        data["rounds"].append(None)
        data["moves"].append(None)
        if inventory is not None:
            data["inventory"].append(data["inventory_before"][-1])
    wanted = set(shown)
    for generation in range(1, last + 1):
        requests = model.plan(generation)
        askers = model.askers()
        missing = [int(a) for a in askers if (generation, int(a)) not in answers]
        if missing:
            raise Mismatch(f"generations.parquet holds no answer of LLM agent {missing[0]} in round {generation}")
        completions = [answers[(generation, int(a))] for a in askers]
        moves = [adopt_choice(c, r.choices).text for c, r in zip(completions, requests, strict=True)]
        if generation in wanted:
            snapshot()
            counts = model.memory.counts(askers, len(model.names))
            data["moves"].append(
                [
                    [int(agent), model.names.index(move) if move else -1,
                     [[int(x), int(c[x])] for x in np.flatnonzero(c)], _cut(answer)]
                    for agent, move, c, answer in zip(askers, moves, counts, completions, strict=True)
                    if is_drawn[agent]
                ]
            )  # fmt: skip
        model.step(generation, moves)
        check(generation)
        if generation in wanted:
            played = model.last_round
            keep = is_drawn[played.pairs].any(axis=1)
            pairs = played.pairs[keep]
            outcome = np.where(played.void, -1, played.success.astype(np.int64))[keep]
            data["rounds"].append(
                {"pairs": pairs.ravel().tolist(), "plays": played.plays[pairs].ravel().tolist(),
                 "outcome": outcome.tolist()}
            )  # fmt: skip
            if inventory is not None:
                data["inventory"].append([np.flatnonzero(row).tolist() for row in inventory.known[drawn]])
    return data


# -- the page's views of the game (inserted into `explore.SCRIPT`, whose helpers they use) -------------

GAME_STYLE = """
.chip{display:inline-block;min-width:1.3em;padding:0 .35em;border-radius:3px;color:#fff;text-align:center;
 font-weight:600;text-shadow:0 0 2px #000} #memory{max-height:420px;overflow:auto}
#memory ol{padding-left:1.6em;margin:.2em 0} #memory li{margin:.15em 0} .miss{color:#b34700}
"""

GAME_BODY = """
 <section id="pairs-view" hidden><h2 id="pairs-title">Pairs of the round</h2><p class="note" id="pairs-note"></p>
  <div id="pairs" class="plot"></div></section>
 <section id="moves-view" hidden><h2>LLM agents' moves beside their best response</h2>
  <p class="note" id="moves-note"></p><div id="moves" class="plot"></div></section>
 <section id="memory-view" hidden><h2 id="memory-title">Memory</h2><div id="memory"></div></section>
"""

SHARES_BODY = """
 <section id="coordination-view" hidden><h2>Name shares (coordination)</h2>
  <label>show <select id="share-kind"><option value="played">the names played in the last round (name_share)</option>
  <option value="held">inventories that hold only that name (held_only)</option></select></label>
  <p class="note" id="coordination-note"></p><div id="coordination" class="plot"></div></section>
"""

GAME_SCRIPT = r"""
const GAME = D.interaction === "coordination";
const OUTCOME = {"1": ["match", "#009E73", "solid"], "0": ["mismatch", "#D55E00", "dash"],
                 "-1": ["void (an LLM agent gave no valid move)", "#999999", "dot"]};
const game = () => (run().game && !run().game.note ? run().game : null);
const nameColour = (x) => (x < 0 ? "#dddddd" : PALETTE[x % PALETTE.length]);
const nameText = (x) => (x < 0 ? "no name" : run().game.names[x]);
const agentAt = (r, i) => (r.drawn ? r.drawn[i] : i);
function place(r, agent) {  // an agent's place among the drawn ones, -1 if it is not drawn
  if (!r.drawn) return agent;
  if (!r.places) r.places = new Map(r.drawn.map((a, i) => [a, i]));
  return r.places.has(agent) ? r.places.get(agent) : -1;
}
function kindOf(r, i) {  // "committed" | "llm" | "human"
  if (!r.sets) r.sets = {committed: new Set(r.game ? r.game.committed : []), llm: new Set(r.llm)};
  return i < 0 ? "unknown" : r.sets.committed.has(i) ? "committed" : r.sets.llm.has(i) ? "llm" : "human";
}
function kindText(r, i) {
  const k = kindOf(r, i);
  return k === "committed" ? "committed agent: always plays " + nameText(r.game.committed_name)
    : k === "llm" ? "LLM agent" : k === "human" ? "model human" : "not drawn";
}
function agentMark(r, i, t) {  // how the network and the pairs draw an agent (size: a factor)
  const k = kindOf(r, i), agent = agentAt(r, i);
  return {symbol: k === "committed" ? "star" : k === "llm" ? "triangle-up" : "circle", custom: agent,
    size: k === "committed" ? 1.5 : 1, width: k === "committed" ? 1.4 : 0.6,
    hover: "<b>agent " + agent + "</b> (" + esc(kindText(r, i)) + ")<br>" +
      (t < 0 ? "no name played yet" : "last played " + esc(textOf(r, t))) + "<br><i>click for its memory</i>"};
}
const chip = (x) => '<span class="chip" style="background:' + nameColour(x) + '">' + esc(nameText(x)) + "</span>";
const points = (own, other) => {
  const p = D.coordination.payoffs[own === other ? 0 : 1];
  return (p > 0 ? "+" : "") + p + " points";
};
function bestOf(seen) {  // [[name, times]] → the names played most (none for an empty memory)
  const most = Math.max(0, ...seen.map(([, c]) => c));
  return seen.filter(([, c]) => c === most && c > 0).map(([x]) => x);
}
const seenText = (seen) => seen.map(([x, c]) => nameText(x) + " ×" + c).join(", ") || "no names";
function emptyPlot(id, text) {
  Plotly.react(id, [], {xaxis: {visible: false}, yaxis: {visible: false}, paper_bgcolor: "#fff", plot_bgcolor: "#fff",
    annotations: [{text, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5}]}, CONFIG);
}

function drawPairs() {
  const r = run(), G = game(), round = G && G.rounds[state.gen];
  $("pairs-title").textContent = round ? "Pairs of round " + genNumber() : "Pairs (generation " + genNumber() + ")";
  $("pairs-note").textContent = !G ? (r.game ? r.game.note : "") : !round ? "" :
    "Speaker left, listener right; colour: the name each played; a line per pair (legend). ★ committed agent, " +
    "▲ LLM agent, ● model human. Click an agent for its memory.";
  if (!round) {
    emptyPlot("pairs", G ? "generation 0: the state before the first round" : "no round data");
    clickable("pairs");
    return;
  }
  const P = round.outcome.length, rank = {"0": 0, "-1": 1, "1": 2};
  const order = [...Array(P).keys()].sort((a, b) => rank[round.outcome[a]] - rank[round.outcome[b]] || a - b);
  const rows = Math.min(Math.max(P, 1), 16), labels = P <= 32, lines = {}, dots = [];
  order.forEach((p, k) => {
    const x = 6 * Math.floor(k / rows), y = -(k % rows), o = String(round.outcome[p]);
    if (!lines[o]) lines[o] = {x: [], y: []};
    lines[o].x.push(x, x + 2, null); lines[o].y.push(y, y, null);
    for (const side of [0, 1]) {
      const agent = round.pairs[2 * p + side], play = round.plays[2 * p + side], i = place(r, agent);
      const m = agentMark(r, i, -1), label = "agent " + agent + " · " + nameText(play);
      dots.push({x: x + 2 * side, y, colour: nameColour(play), m, text: labels ? label : "",
        position: side ? "middle right" : "middle left", hover: "<b>agent " + agent + "</b> (" + esc(kindText(r, i)) +
        "), " + (side ? "listener" : "speaker") + "<br>played " + esc(nameText(play)) + ": " + OUTCOME[o][0]});
    }
  });
  const traces = Object.keys(OUTCOME).filter((o) => lines[o]).map((o) => ({type: "scatter", mode: "lines",
    x: lines[o].x, y: lines[o].y, name: OUTCOME[o][0], hoverinfo: "skip",
    line: {color: OUTCOME[o][1], dash: OUTCOME[o][2], width: 3}}));
  traces.push({type: "scatter", mode: labels ? "markers+text" : "markers", showlegend: false, x: dots.map((d) => d.x),
    y: dots.map((d) => d.y), text: dots.map((d) => d.text), textposition: dots.map((d) => d.position),
    customdata: dots.map((d) => d.m.custom), hovertext: dots.map((d) => d.hover), hoverinfo: "text",
    marker: {size: dots.map((d) => 15 * d.m.size), color: dots.map((d) => d.colour),
             symbol: dots.map((d) => d.m.symbol), line: {color: "#222", width: dots.map((d) => d.m.width)}}});
  const columns = Math.ceil(P / rows), matched = round.outcome.filter((o) => o === 1).length;
  Plotly.react("pairs", traces, {margin: {l: 5, r: 5, t: 30, b: 5}, hovermode: "closest",
    title: {text: P + " pairs" + (r.drawn ? " with a drawn agent" : "") + ": " + matched + " matched, " +
      round.outcome.filter((o) => o === 0).length + " mismatched", font: {size: 13}},
    xaxis: {visible: false, range: [labels ? -3.5 : -1, 6 * (columns - 1) + (labels ? 5.5 : 3)]},
    yaxis: {visible: false, range: [-rows + 0.4, 0.6]}, legend: {orientation: "h", y: -0.02},
    paper_bgcolor: "#fff", plot_bgcolor: "#fff"}, CONFIG);
  clickable("pairs");
}

function moveRows(G) {  // this round's LLM moves, those that are not a best response first
  const order = {other: 0, invalid: 1, none: 2, best: 3};
  return (G.moves[state.gen] || []).map(([agent, move, seen, answer]) => {
    const best = bestOf(seen);
    const verdict = move < 0 ? "invalid" : !best.length ? "none" : best.includes(move) ? "best" : "other";
    return {agent, move, seen, answer, best, verdict};
  }).sort((a, b) => order[a.verdict] - order[b.verdict] || a.agent - b.agent);
}

function drawMoves() {
  const G = game();
  $("moves-view").hidden = !G || !G.asks.length;
  if ($("moves-view").hidden) return;
  const all = moveRows(G), rows = all.slice(0, 30), names = G.names.slice();
  if (!G.moves[state.gen]) {
    $("moves-note").textContent = "";
    emptyPlot("moves", "generation 0: the state before the first round"); clickable("moves"); return;
  }
  if (rows.some((m) => m.verdict === "invalid")) names.push("no valid move");
  const label = (m) => "agent " + m.agent + (m.verdict === "other" ? " ✗" : "");
  const hover = (m) => "<b>agent " + m.agent + "</b> (LLM agent)<br>answered “" + esc(m.answer) + "”" +
    (m.move < 0 ? ": no valid move" : ": plays " + esc(nameText(m.move))) + "<br>its partners in memory played " +
    esc(seenText(m.seen)) + "<br>best response: " + esc(m.best.map(nameText).join(" or ") || "any (no memory)");
  const rings = rows.flatMap((m) => m.best.map((x) => [m, x]));
  const kinds = [["best", "move: a best response", "#222"], ["other", "move: not a best response", "#D55E00"],
                 ["none", "move (no memory yet)", "#999"], ["invalid", "no valid move", "#999"]];
  const traces = [{type: "scatter", mode: "markers", name: "best response to its memory", x: rings.map(([, x]) =>
    nameText(x)), y: rings.map(([m]) => label(m)), customdata: rings.map(([m]) => m.agent), hoverinfo: "skip",
    marker: {symbol: "circle-open", size: 24, color: "#555", line: {width: 2}}}];
  for (const [verdict, name, outline] of kinds) {
    const ms = rows.filter((m) => m.verdict === verdict);
    if (ms.length) traces.push({type: "scatter", mode: "markers", name, x: ms.map((m) => (m.move < 0 ? "no valid move" :
      nameText(m.move))), y: ms.map(label), customdata: ms.map((m) => m.agent), hovertext: ms.map(hover),
      hoverinfo: "text", marker: {symbol: verdict === "invalid" ? "x" : "diamond", size: 13,
      color: ms.map((m) => nameColour(m.move)), line: {color: outline, width: verdict === "other" ? 3 : 1}}});
  }
  const judged = all.filter((m) => m.verdict === "best" || m.verdict === "other");
  $("moves-note").textContent = "Round " + genNumber() + ": " + judged.filter((m) => m.verdict === "best").length +
    " of " + judged.length + " LLM moves (valid, from a memory) were a best response to the agent's memory before " +
    "the round (○: the names its remembered partners played most, what a best-responding model human plays); ✗ marks " +
    "the others." + (all.length > rows.length ? " Showing " + rows.length + " of " + all.length + ", those off best " +
    "response first." : "") + " Click an agent for its memory.";
  Plotly.react("moves", traces, {margin: {l: 90, r: 10, t: 5, b: 40}, hovermode: "closest",
    xaxis: {type: "category", categoryorder: "array", categoryarray: names, range: [-0.5, names.length - 0.5]},
    yaxis: {type: "category", categoryorder: "array", categoryarray: rows.map(label).reverse(), automargin: true},
    legend: {orientation: "h", y: -0.12}, paper_bgcolor: "#fff", plot_bgcolor: "#fff"}, CONFIG);
  clickable("moves");
}

function showAgent(agent) {
  const r = run(), G = game(), i = place(r, agent), box = $("memory");
  state.agent = agent;
  $("memory-title").textContent = "Memory of agent " + agent + " at generation " + genNumber();
  const lines = [];
  if (!G || i < 0) {
    box.innerHTML = '<p class="note">' + esc(!G ? (r.game ? r.game.note : "") : "Agent " + agent +
      " is not among the drawn agents.") + "</p>";
    return;
  }
  const kind = kindOf(r, i), mem = G.memory[state.gen][i], round = G.rounds[state.gen];
  lines.push('<p class="note">' + esc(kindText(r, i)) + "; it remembers its last " + D.coordination.memory +
    " games.</p>", "<p>" + (round ? "Before round " + genNumber() + " it remembered" : "At the start it remembers") +
    (mem.length ? " (oldest first):</p><ol>" : ": no game yet.</p><ol>"));
  const seen = new Map();
  for (let e = 0; e < mem.length; e += 2) {
    lines.push('<li data-game="' + mem[e] + "," + mem[e + 1] + '">played ' + chip(mem[e]) + ", partner played " +
      chip(mem[e + 1]) + ": " + points(mem[e], mem[e + 1]) + "</li>");
    if (mem[e + 1] >= 0) seen.set(mem[e + 1], (seen.get(mem[e + 1]) || 0) + 1);
  }
  lines.push("</ol>");
  const best = bestOf([...seen]);
  if (kind === "llm" || (kind === "human" && D.coordination.rule === "best_response")) {
    lines.push("<p>Best response to this memory: " + (best.length ? best.map(chip).join(" or ") +
      " (its partners played " + esc(seenText([...seen])) + ")" : "any name (nothing remembered)") + ".</p>");
  }
  const asked = (G.moves[state.gen] || []).find(([a]) => a === agent);
  if (asked) lines.push("<p>It asked the LLM, which answered “" + esc(asked[3]) + "”: " + (asked[1] < 0 ?
    "no valid move" : (best.length && !best.includes(asked[1]) ? '<b class="miss">not</b> ' : "") +
    "a best response") + ".</p>");
  const p = round ? [...Array(round.outcome.length).keys()].find((q) => round.pairs[2 * q] === agent ||
    round.pairs[2 * q + 1] === agent) : undefined;
  if (round && p === undefined) lines.push("<p>It sat round " + genNumber() + " out (no partner).</p>");
  else if (round) {
    const side = round.pairs[2 * p] === agent ? 0 : 1, other = round.pairs[2 * p + 1 - side], o = round.outcome[p];
    const own = round.plays[2 * p + side], theirs = round.plays[2 * p + 1 - side];
    lines.push("<p>Round " + genNumber() + ": " + (side ? "listener" : "speaker") + " with agent " + other + " (" +
      esc(kindText(r, place(r, other))) + "): " + (o < 0 ? "void, as an LLM agent gave no valid move; nothing is " +
      "remembered." : "played " + chip(own) + ", its partner " + chip(theirs) + ": " + OUTCOME[String(o)][0] + ", " +
      points(own, theirs) + "; now its newest memory" + (mem.length / 2 >= D.coordination.memory ? " (the oldest " +
      "is forgotten)" : "") + ".") + "</p>");
  }
  if (G.inventory) {
    const names = (list) => (list.length ? list.map(chip).join(" ") : "empty");
    lines.push("<p>" + (kind === "llm" ? "An LLM agent keeps no inventory: it answers from its memory." :
      "Inventory" + (round ? " before the round: " + names(G.inventory_before[state.gen][i]) + "; after: " : ": ") +
      names(G.inventory[state.gen][i]) + (kind === "committed" ? " (committed: it never changes)" : "")) + "</p>");
  }
  box.innerHTML = lines.join("");
}

function firstAgent(r) {  // whose memory a run opens on: an LLM agent off best response, any LLM agent, a human
  const G = game();
  if (!G) return agentAt(r, 0);
  const moves = moveRows(G);
  if (moves.length) return moves[0].agent;
  const human = r.held[0].findIndex((_, i) => kindOf(r, i) === "human");
  return agentAt(r, human < 0 ? 0 : human);
}

function drawGame() {
  drawPairs(); drawMoves();
  showAgent(state.agent === null ? firstAgent(run()) : state.agent);
}

function drawCoordination() {
  const C = D.coordination;
  if (!C) return;
  $("coordination-view").hidden = false;
  const kind = C.held ? $("share-kind").value : "played", S = C[kind], r = run(), own = S.runs[r.id];
  $("share-kind").parentElement.hidden = !C.held;
  const series = own || S.conditions[r.condition] || {};
  $("coordination-note").textContent = (kind === "played" ?
    "name_share:<name> is the share of the names played in the last round (an agent that sat the round out, or whose " +
    "game was void, counts with the name it played before). A listener in the naming game plays the name it heard " +
    "when it knows it, so this is what was said, not what the inventories hold." :
    "held_only:<name> is the share of the agents keeping an inventory (LLM agents keep none) whose inventory holds " +
    "only that name: the quantity the mean-field theory of the naming game predicts.") +
    (C.rule === "naming_game" && !C.held ? " This folder records no held_only values (it was written before they " +
    "were recorded)." : "");
  const traces = C.names.map((name, i) => ({x: C.generations, y: series[name] || [], mode: "lines", name,
                                             line: {color: PALETTE[i % PALETTE.length], width: 2}}));
  Plotly.react("coordination", traces, {margin: {l: 50, r: 60, t: 5, b: 40}, hovermode: "x unified",
    xaxis: {title: {text: "generation"}, dtick: C.generations.length <= 20 ? 1 : null}, yaxis: {title: {text: (own ?
    "share (run " + r.id + ")" : "mean share (" + r.condition + ")")}, range: [0, 1.02]},
    shapes: r.gens.length ? marker(genNumber()) : [], legend: {orientation: "v", x: 1.02, y: 0.88, yanchor: "top"},
    paper_bgcolor: "#fff", plot_bgcolor: "#fff"}, CONFIG);
}
"""
