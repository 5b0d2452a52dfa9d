"""The study explorer: one self-contained page per results folder, checked on its data and in a real
headless Chromium (driven over the DevTools protocol on a pipe): no console errors, no network, the
network, texts and lineage views drawn, hovering shows an agent's text, and a click on an LLM-written
text shows its lineage (as `culturesim.parts.lineage.ancestry` has it) with the request that wrote it.
For a coordination study: the round's pairs, the LLM agents' moves and best responses and the agents'
memories and inventories agree with what the run recorded, and a click on an agent shows its memory.

Screenshots go to $CULTURESIM_TEST_ARTEFACTS when set, else to the test's tmp_path."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.parts.lineage import ancestry
from culturesim.parts.llm.convention_prompts import adopt_choice
from culturesim.parts.traits import MACHINE_KINDS
from culturesim.reports.explore import EXPLORER_FILE, write_explorer
from culturesim.reports.explore_coordination import coordination_shares
from culturesim.reports.explore_data import Limits, explorer_data
from culturesim.reports.report import write_report
from culturesim.schema.config import StudyConfig
from culturesim.study.runner import StudyRunner
from tests.browser import Browser, artefacts_folder
from tests.helpers import NEEDS_VLLM, llm_toy_study

pytestmark = NEEDS_VLLM

# 20 agents, 5 of them LLM agents in the second condition; humans consult and an LLM retells some
# copies, so every machine author kind occurs; one norm axis for the norm view.
STUDY = llm_toy_study(
    "exploretoy",
    seed=13,
    replicates=2,
    generations=4,
    max_tokens=16,
    extra="""
[humans]
copy_error = 0.15
innovation = 0.05
llm_consultation = 0.1
llm_mutation = 0.1
[metrics]
names = ["semantic_diversity", "vendi", "distinct_traits", "machine_ancestry", "llm_trait_share", "norm_position"]
norm_axes = { warmth = ["Be kind and generous to everyone you meet.", "Look out for yourself and trust nobody."] }
[conditions]
"population.llm_share" = [0.0, 0.25]
""",
).replace("size = 12", "size = 20")


# The naming game with a committed minority (Z) against an established convention (F) and 3 LLM agents
# among 12: every view of a coordination page has something to show, inventories included.
NAMES = ("F", "J", "Z")
GAME = """
population = {size = 12, llm_share = 0.25}
network = {kind = "complete"}
llm = {engine = {backend = "vllm"}, sampling = {max_tokens = 4}, prompt = {retries = 0}}
[study]
name = "gametoy"
interaction = "coordination"
seed = 7
replicates = 2
generations = 4
[coordination]
names = ["F", "J", "Z"]
rule = "naming_game"
committed_name = "Z"
committed_fraction = 0.25
established_name = "F"
established_rounds = 1
"""


def _results(study: str, embedder, backend, root: Path) -> Path:
    """A study run on the session's engines, with its explorer page written."""
    folder = StudyRunner(embedder=embedder, backend=backend).run(
        StudyConfig.model_validate(tomllib.loads(study)), out_root=root
    )
    write_explorer(folder)
    return folder


@pytest.fixture(scope="module")
def study_folder(embedder, vllm_backend, tmp_path_factory) -> Path:
    """The toy study, run once for the module."""
    return _results(STUDY, embedder, vllm_backend, tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def game_folder(embedder, vllm_backend, tmp_path_factory) -> Path:
    """The toy naming game, run once for the module."""
    return _results(GAME, embedder, vllm_backend, tmp_path_factory.mktemp("game"))


def test_the_page_is_one_self_contained_file(study_folder: Path, tmp_path: Path) -> None:
    html = (study_folder / EXPLORER_FILE).read_text(encoding="utf-8")
    assert "<script src" not in html.replace(" ", "") and "<link" not in html  # Plotly and the data are inlined
    assert html.count('id="explorer-data"') == 1 and "Plotly" in html
    result = CliRunner().invoke(app, ["explore", str(study_folder), "--out", str(tmp_path / "again.html")])
    assert result.exit_code == 0, result.output
    again = (tmp_path / "again.html").read_bytes()
    assert again == (study_folder / EXPLORER_FILE).read_bytes()  # the same data give the same bytes
    report = write_report(study_folder).read_text(encoding="utf-8")
    assert f"]({EXPLORER_FILE})" in report


def test_every_machine_text_has_its_request_and_every_lineage_is_complete(study_folder: Path) -> None:
    data = explorer_data(study_folder)
    log = pl.read_parquet(study_folder / "generations.parquet")
    assert [r["id"] for r in data["runs"]] == ["c0-r0", "c0-r1", "c1-r0", "c1-r1"]
    requests = 0
    for run in data["runs"]:
        traits = run["traits"]
        assert len(run["held"]) == len(run["gens"]) == 5 and all(len(row) == 20 for row in run["held"])
        for i, kind in enumerate(traits["kind"]):
            assert all(0 <= p < len(traits["id"]) for p in traits["parents"][i])  # ancestors are all in the page
            if kind in MACHINE_KINDS:
                request = traits["requests"][traits["request"][i]]
                logged = log.filter((pl.col("run_id") == run["id"]) & (pl.col("agent") == request["agent"]))
                assert request["prompt"] in logged["prompt"].to_list()
                requests += 1
    assert requests > 0
    assert set(data["kinds"]) >= {"seed", "llm", "human_llm_assisted"}
    first = data["runs"][0]["traits"]
    assert data["norm_axes"] and len(first["norm"]["warmth"]) == len(first["id"])
    assert data["limits"]["text"].startswith("Shown whole")


def test_a_study_past_the_limits_is_sampled_and_says_so(study_folder: Path) -> None:
    data = explorer_data(study_folder, limits=Limits(runs=2, agents=8, generations=3, top_texts=3))
    assert [r["replicate"] for r in data["runs"]] == [0, 0]  # first replicates of each condition first
    run = data["runs"][1]
    assert len(run["drawn"]) == 8 and len(run["x"]) == 8 and run["gens"] == [0, 2, 4]
    assert all(len(top) <= 3 for top in run["top"]) and sum(c for _, c in run["top"][0]) <= 20
    note = data["limits"]["text"]
    assert "2 of 4 runs" in note and "draw 8 agents per run" in note and "3 of 5 generations" in note
    # the network is rebuilt from the run's seed: the same layout for the same replicate, whatever the condition
    assert data["runs"][0]["x"] == run["x"] and data["runs"][0]["edges"] == run["edges"]


def test_coordination_shares_from_name_share_and_held_only_metrics() -> None:
    rows = [
        (run_id, condition, generation, f"{prefix}:{name}", share)
        for run_id, condition, shares in (
            ("c0-r0", "committed=0.1", [(0.5, 0.5), (0.7, 0.3), (1.0, 0.0)]),
            ("c0-r1", "committed=0.1", [(0.5, 0.5), (0.5, 0.5), (0.6, 0.4)]),
            ("c1-r0", "committed=0.3", [(0.2, 0.8), (0.1, 0.9), (0.0, 1.0)]),
        )
        for generation, pair in enumerate(shares)
        for name, share in zip(("zib", "wug"), pair)
        for prefix in ("name_share", "held_only")
    ]
    metrics = pl.DataFrame(rows, schema=["run_id", "condition", "generation", "metric", "value"], orient="row")
    other = pl.DataFrame([("c0-r0", "committed=0.1", 0, "consensus", 0.0)], schema=metrics.columns, orient="row")
    config = StudyConfig.model_validate(tomllib.loads(GAME))
    shares = coordination_shares(pl.concat([metrics, other]), config, generations=[0, 1, 2])
    assert shares["names"] == ["zib", "wug"] and shares["generations"] == [0, 1, 2]
    assert shares["played"]["conditions"]["committed=0.1"]["zib"] == [0.5, 0.6, 0.8]
    assert shares["held"]["runs"]["c1-r0"]["wug"] == [0.8, 0.9, 1.0]
    assert shares["rule"] == "naming_game" and shares["payoffs"] == [100.0, -50.0] and shares["memory"] == 5
    older = metrics.filter(pl.col("metric").str.starts_with("name_share"))  # a folder without held_only values
    assert coordination_shares(older, config, generations=[0, 2])["held"] is None
    assert coordination_shares(other, config, generations=[0]) is None


def test_the_game_views_agree_with_what_the_run_recorded(game_folder: Path) -> None:
    """The page's rounds are the run played again; here each is held against the run's own tables: plays
    against population.parquet, matches against success_rate, LLM moves against the logged answers and
    llm_best_response_share, memories against the rounds, inventories against held_only."""
    data = explorer_data(game_folder)
    population = pl.read_parquet(game_folder / "population.parquet")
    metrics = pl.read_parquet(game_folder / "metrics.parquet").select("run_id", "generation", "metric", "value")
    value = {(run_id, g, metric): v for run_id, g, metric, v in metrics.iter_rows()}
    log = pl.read_parquet(game_folder / "generations.parquet")
    assert data["coordination"]["held"] is not None and data["coordination"]["names"] == list(NAMES)
    for run in data["runs"]:
        game, run_id = run["game"], run["id"]
        assert "note" not in game and run["gens"] == [0, 1, 2, 3, 4] and run["drawn"] is None
        assert len(game["committed"]) == 3 and len(game["asks"]) == 3 and game["committed_name"] == 2
        plays = population.filter(run_id=run_id).sort("generation", "agent")["trait_id"].to_numpy().reshape(5, 12)
        assert game["memory"][0] == game["memory"][1] == [[0, 0]] * 12  # the established convention, F
        for g in range(1, 5):
            pairs = np.array(game["rounds"][g]["pairs"]).reshape(-1, 2)
            played = np.array(game["rounds"][g]["plays"]).reshape(-1, 2)
            outcome = np.array(game["rounds"][g]["outcome"])
            assert sorted(pairs.ravel().tolist()) == list(range(12))  # complete graph, even size: everyone plays
            valid = outcome >= 0
            assert np.array_equal(played[valid], plays[g][pairs[valid]])
            assert np.array_equal(outcome[valid] == 1, played[valid, 0] == played[valid, 1])
            assert outcome[valid].mean() == pytest.approx(value[run_id, g, "success_rate"])
            assert all(plays[g][a] == 2 for a in game["committed"])
            if g < 4:  # the memory before the next round: this round's game added, the oldest of 5 dropped
                games = {}  # each agent's game of the round as it remembers it: [own play, partner's play]
                for (a, b), (x, y) in zip(pairs[valid].tolist(), played[valid].tolist(), strict=True):
                    games[a], games[b] = [x, y], [y, x]
                for agent in range(12):
                    expected = (game["memory"][g][agent] + games.get(agent, []))[-10:]
                    assert game["memory"][g + 1][agent] == expected
            asked = log.filter(run_id=run_id, generation=g).select("agent", "completion").iter_rows()
            moves = {a: NAMES.index(m) if (m := adopt_choice(c, NAMES).text) else -1 for a, c in asked}
            assert {a: m for a, m, _, _ in game["moves"][g]} == moves
            best = [m in [x for x, c in seen if c == max(c for _, c in seen)] for _, m, seen, _ in game["moves"][g]
                    if m >= 0]  # fmt: skip
            assert np.mean(best) == pytest.approx(value[run_id, g, "llm_best_response_share"])
            keepers = [names for agent, names in enumerate(game["inventory"][g]) if agent not in game["asks"]]
            for x, name in enumerate(NAMES):
                held = sum(names == [x] for names in keepers) / len(keepers)
                assert held == pytest.approx(value[run_id, g, f"held_only:{name}"])
            assert game["inventory_before"][g] == game["inventory"][g - 1]


def test_a_folder_the_rules_cannot_replay_gets_a_note_not_an_error(game_folder: Path, tmp_path: Path) -> None:
    """Rounds that the run's tables do not confirm are never shown: a play changed in population.parquet (a
    folder written by other rules) or a missing LLM answer gives the run a note; a folder written before
    held_only was recorded shows name shares without it."""
    folder = tmp_path / "older"
    shutil.copytree(game_folder, folder)
    population = pl.read_parquet(folder / "population.parquet")
    other = (pl.col("run_id") == "c0-r0") & (pl.col("generation") == 3) & (pl.col("agent") == 0)
    population.with_columns(
        trait_id=pl.when(other).then((pl.col("trait_id") + 1) % 3).otherwise("trait_id")
    ).write_parquet(folder / "population.parquet")
    log = pl.read_parquet(folder / "generations.parquet")
    log.filter((pl.col("run_id") != "c0-r1") | (pl.col("generation") != 2)).write_parquet(
        folder / "generations.parquet"
    )
    metrics = pl.read_parquet(folder / "metrics.parquet")
    metrics.filter(~pl.col("metric").str.starts_with("held")).write_parquet(folder / "metrics.parquet")
    data = explorer_data(folder)
    first, second = (run["game"] for run in data["runs"])
    assert "rounds" not in first and "generation 3, where population.parquet records" in first["note"]
    assert "rounds" not in second and "holds no answer of LLM agent" in second["note"]
    assert len(first["committed"]) == 3  # who is committed comes from the seeds alone: still marked
    assert data["coordination"]["held"] is None and data["coordination"]["played"]["runs"]["c0-r0"]
    assert write_explorer(folder).exists()


# -- in a real browser ---------------------------------------------------------------------------

READY = "document.body.dataset.ready === '1'"  # the page's script has drawn every view


# The centre of the index-th element matching a CSS selector, in viewport pixels.
CENTRE = (
    "(r => [r.x + r.width / 2, r.y + r.height / 2])"
    "(document.querySelectorAll({selector})[{index}].getBoundingClientRect())"
)


def test_chromium_draws_the_views_and_a_click_shows_the_lineage(study_folder: Path, browser: Browser, tmp_path) -> None:
    artefacts = artefacts_folder(tmp_path)
    browser.open((study_folder / EXPLORER_FILE).resolve().as_uri(), ready=READY)
    for view in ("network", "texts", "lineage", "curves", "norms"):
        assert browser.js(f"document.querySelectorAll('#{view} .main-svg .point').length") > 0, f"{view} view not drawn"
    browser.screenshot(artefacts / "explorer.png")

    # Hovering over an agent shows its text.
    expected = browser.js("""(() => { const {data, state} = window.explorer, r = data.runs[state.run];
      return data.texts[r.traits.text[document.getElementById('network').data[1].customdata[0]]]; })()""")
    x, y = browser.js(CENTRE.format(selector="'#network .scatterlayer .trace:nth-child(2) .point'", index=0))
    browser.mouse(x, y, click=False)
    assert browser.wait("document.querySelector('#network .hoverlayer .hovertext')")
    shown = browser.js("document.querySelector('#network .hoverlayer .hovertext').textContent")
    words = [w for w in expected.split() if not set(w) & set("<>&")]
    assert "agent" in shown and all(w in shown for w in words[:6]), (shown, expected)

    # Choose, through the page's controls, a run and generation whose most-held texts include an LLM's,
    # then click that text's bar.
    choice = browser.js("""(() => {
      const D = JSON.parse(document.getElementById('explorer-data').textContent);
      for (const [i, r] of D.runs.entries()) for (let g = r.gens.length - 1; g > 0; g--)
        for (const [t] of r.top[g]) if (r.traits.kind[t] === 'llm' && t !== r.top[r.gens.length - 1][0][0])
          return [i, g, t, r.id, r.traits.id[t]];
    })()""")
    assert choice, "no LLM-written text among the most held: make the toy study's LLM agents more numerous"
    run_index, generation, local, run_id, trait_id = choice
    condition = browser.js(f"window.explorer.data.runs[{run_index}].condition")
    browser.js(f"""(() => {{
      const set = (id, value, event) => {{ const e = document.getElementById(id); e.value = value;
                                          e.dispatchEvent(new Event(event)); }};
      set('condition', {json.dumps(condition)}, 'change'); set('run', '{run_index}', 'change');
      set('generation', '{generation}', 'input');
    }})()""")
    bar = browser.js(f"document.getElementById('texts').data[0].customdata.indexOf({local})")
    assert bar >= 0
    x, y = browser.js(CENTRE.format(selector="'#texts .trace.bars .point'", index=bar))
    browser.mouse(x, y, click=True)
    assert browser.wait(f"document.getElementById('lineage-title').textContent.includes('text #{trait_id} ')"), (
        browser.js("document.getElementById('lineage-title').textContent")
    )
    browser.screenshot(artefacts / "explorer_lineage.png")

    steps = browser.js("""[...document.querySelectorAll('#lineage-steps li')].map(li => [Number(li.dataset.trait),
      li.dataset.kind, li.querySelector('.step-text').textContent,
      (li.querySelector('.request-prompt') || {}).textContent || null])""")
    traits = pl.read_parquet(study_folder / "traits.parquet")
    graph = ancestry(traits, run_id, trait_id)
    assert steps[0][0] == trait_id and {s[0] for s in steps} == set(graph.nodes)
    for trait, kind, text, prompt in steps:
        assert kind == graph.nodes[trait]["author_kind"] and text == graph.nodes[trait]["text"]
        assert (prompt is not None) == (kind in MACHINE_KINDS)
    log = pl.read_parquet(study_folder / "generations.parquet").filter(pl.col("run_id") == run_id)
    assert steps[0][3] in log["prompt"].to_list()  # the request that wrote the clicked text
    assert browser.js("window.explorer.errors.length") == 0
    assert browser.problems() == []


def test_chromium_shows_the_game_and_a_click_shows_an_agents_memory(
    game_folder: Path, browser: Browser, tmp_path: Path
) -> None:
    """A coordination page draws the round's pairs and the LLM agents' moves instead of texts and lineages;
    a real click on a model human in the network, then on an LLM agent in the pairs, shows that agent's
    memory as the data hold it, with its inventory and its LLM answer."""
    artefacts = artefacts_folder(tmp_path)
    browser.open((game_folder / EXPLORER_FILE).resolve().as_uri(), ready=READY)
    for view in ("network", "pairs", "moves", "curves"):
        assert browser.js(f"document.querySelectorAll('#{view} .main-svg .point').length") > 0, f"{view} view not drawn"
    assert browser.js("document.querySelectorAll('#coordination .scatterlayer .js-line').length") == len(NAMES)
    assert browser.js("['texts-view', 'lineage-view'].every((id) => document.getElementById(id).hidden)")
    assert browser.js("document.getElementById('pairs').data.at(-1).x.length") == 12  # 6 pairs, both partners
    run_index, gen = browser.js("[window.explorer.state.run, window.explorer.state.gen]")
    data = explorer_data(game_folder)
    game = data["runs"][run_index]["game"]

    def memory(agent: int) -> list[str]:
        games = game["memory"][gen][agent]
        return [f"{own},{other}" for own, other in zip(games[::2], games[1::2], strict=True)]

    shown = "[...document.querySelectorAll('#memory li')].map((li) => li.dataset.game)"
    text = "document.getElementById('memory').textContent"
    title = "document.getElementById('memory-title').textContent.startsWith('Memory of agent {} ')"

    # A model human in the network (the first circle of the first name's trace).
    trace, index, agent = browser.js("""(() => { const data = document.getElementById('network').data;
      for (const [c, d] of data.entries()) if (d.customdata && Array.isArray(d.marker.symbol)) {
        const k = d.marker.symbol.indexOf('circle'); if (k >= 0) return [c, k, d.customdata[k]]; } })()""")
    point = f"'#network .scatterlayer .trace:nth-child({trace + 1}) .point'"
    browser.mouse(*browser.js(CENTRE.format(selector=point, index=index)), click=True)
    assert browser.wait(title.format(agent)), browser.js("document.getElementById('memory-title').textContent")
    assert browser.js(shown) == memory(agent) and memory(agent)
    assert "model human" in browser.js(text) and "Inventory before the round" in browser.js(text)

    # An LLM agent in the pairs view.
    index, agent = browser.js("""(() => { const d = document.getElementById('pairs').data.at(-1);
      const k = d.marker.symbol.indexOf('triangle-up'); return [k, d.customdata[k]]; })()""")
    point = "'#pairs .scatterlayer .trace:last-child .point'"
    browser.mouse(*browser.js(CENTRE.format(selector=point, index=index)), click=True)
    assert browser.wait(title.format(agent)), browser.js("document.getElementById('memory-title').textContent")
    assert browser.js(shown) == memory(agent)
    answer = next(answer for who, _, _, answer in game["moves"][gen] if who == agent)
    assert f"It asked the LLM, which answered “{answer}”" in browser.js(text)
    browser.screenshot(artefacts / "explorer_game.png")

    # The share view switched to what the inventories hold.
    browser.js(
        "(e => { e.value = 'held'; e.dispatchEvent(new Event('change')); })(document.getElementById('share-kind'))"
    )
    held = data["coordination"]["held"]["runs"][data["runs"][run_index]["id"]]
    assert browser.js("document.getElementById('coordination').data.map((t) => t.y)") == [held[n] for n in NAMES]
    assert browser.js("window.explorer.errors.length") == 0
    assert browser.problems() == []
