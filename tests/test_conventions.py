"""The coordination game as a study: its config, its runs' requests and moves, its records.

The rules themselves (matching, best response, naming game) are tested in test_coordination_rules.py
and against theory in test_validate_conventions.py; here the run around them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from culturesim.core.convention_theory import ROUND_IN_MEAN_FIELD_UNITS, binary_agreement_rhs
from culturesim.parts.llm.base import Request
from culturesim.parts.llm.convention_prompts import adopt_choice, game_messages
from culturesim.schema.config import ConfigError, StudyConfig, load_config
from culturesim.schema.sampling import Sampling
from culturesim.simulation.conventions import ConventionModel, build_convention_run
from culturesim.simulation.model import RunSpec
from culturesim.study.planner import plan_study
from culturesim.study.runner import StudyRunner
from tests.helpers import NEEDS_VLLM

NAMES = ("F", "J", "K", "M", "Q", "R", "V", "W", "X", "Z")


def game(**coordination) -> StudyConfig:
    """A 24-agent complete-graph coordination study starting on F, committed agents on Z."""
    population = coordination.pop("population", {"size": 24})
    settings = {"committed_name": "Z", "established_name": "F", "established_rounds": 5, **coordination}
    return StudyConfig.model_validate(
        {
            "study": {"name": "game", "interaction": "coordination", "seed": 4, "generations": 20},
            "population": population,
            "network": {"kind": "complete"},
            "coordination": settings,
        }
    )


def binary_agreement(committed: float, llm_share: float = 0.0) -> StudyConfig:
    """Xie et al. 2011's setting: 24 agents on a complete graph playing the naming game, everyone
    holding only B, a committed fraction on A."""
    return game(
        names=("A", "B"), rule="naming_game", committed_name="A", committed_fraction=committed,
        established_name="B", established_rounds=1, population={"size": 24, "llm_share": llm_share},
    )  # fmt: skip


def run(config: StudyConfig, replicate: int = 0) -> ConventionModel:
    return build_convention_run(config, RunSpec(f"r{replicate}", "c", replicate, config.study.seed), dim=4)


def play(model: ConventionModel, generations: int, answer=lambda request: "") -> ConventionModel:
    """Advance a run by hand: `answer` turns each LLM request into the adopted text (a name or "")."""
    model.record(0)
    for g in range(1, generations + 1):
        requests = model.plan(g)
        model.step(g, [answer(r) for r in requests])
        model.record(g)
    return model


def last(model: ConventionModel, metric: str) -> float:
    return [r["value"] for r in model.records if r["metric"] == metric][-1]


# -- the study file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ('committed_fraction = 0.2\ncommitted_name = "A"', "committed_name 'A' is not one of names"),
        ("committed_fraction = 0.2", "committed_fraction > 0 needs committed_name"),
        ('names = ["F", "F"]', "names repeats a name"),
        ('established_name = "F"\nestablished_rounds = 9', "established_rounds (9) cannot exceed memory (5)"),
        ('established_name = "F"', "established_name needs established_rounds >= 1"),
    ],
)
def test_a_bad_coordination_table_gets_one_message_naming_the_field(table: str, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[study]\nname = "bad"\ninteraction = "coordination"\n[coordination]\n{table}\n')
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert needle in str(error.value) and "coordination" in str(error.value)


def test_text_transmission_settings_are_refused_in_a_coordination_study(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[study]\nname = "bad"\ninteraction = "coordination"\n[humans]\nllm_consultation = 0.2\n')
    with pytest.raises(ConfigError, match="llm_consultation and humans.llm_mutation are text-transmission"):
        load_config(path)
    path.write_text(
        '[study]\nname = "bad"\ninteraction = "coordination"\n[population]\nllm_share = 0.8\n'
        '[coordination]\ncommitted_fraction = 0.3\ncommitted_name = "Z"\n'
    )
    with pytest.raises(ConfigError, match=r"committed_fraction \(0.3\) \+ population.llm_share \(0.8\) exceeds 1"):
        load_config(path)


def test_a_transmission_study_keeps_its_hash() -> None:
    """`interaction` and [coordination] are left out of the canonical config at their defaults."""
    config = StudyConfig.model_validate({"study": {"name": "old"}})
    assert "interaction" not in config.canonical_json() and "coordination" not in config.canonical_json()


def test_hypotheses_may_name_the_coordination_outcomes() -> None:
    config = game()
    assert {"name_share:Z", "committed_share", "consensus", "llm_valid_share"} <= set(config.recorded_keys())
    assert "semantic_diversity" not in config.recorded_keys()
    assert not any(key.startswith("held") for key in config.recorded_keys())  # best response keeps no inventory
    naming = binary_agreement(0.25)
    assert {"held_only:A", "held_only:B", "held_mixed"} <= set(naming.recorded_keys())
    assert set(play(run(naming), 1).record(1)) == set(naming.recorded_keys())  # what a run records, all of it


# -- a run ----------------------------------------------------------------------------------


def test_the_initial_state_is_the_established_convention_and_the_committed_name() -> None:
    model = run(game(committed_fraction=0.25))
    values = model.record(0)
    assert values["committed_share"] == pytest.approx(6 / 24) and values["name_share:F"] == pytest.approx(18 / 24)
    assert values["names_in_use"] == 2 and values["consensus"] == 0.0 and np.isnan(values["success_rate"])
    assert model.memory.entries(0) == [(0, 0, 100.0)] * 5


def test_committed_agents_are_nested_across_fractions_and_apart_from_llm_agents() -> None:
    """Common random numbers: replicate k of a larger fraction commits the agents of a smaller one, plus more;
    LLM agents are drawn among the uncommitted."""
    small = run(game(committed_fraction=0.1, population={"size": 24, "llm_share": 0.5}))
    large = run(game(committed_fraction=0.3, population={"size": 24, "llm_share": 0.5}))
    assert small.committed.sum() == 2 and large.committed.sum() == 7
    assert np.all(large.committed[small.committed])
    for model in (small, large):
        assert model.asks_llm.sum() == 12 and not np.any(model.asks_llm & model.committed)


def test_committed_agents_always_play_their_name() -> None:
    model = run(game(committed_fraction=0.2))
    committed = np.flatnonzero(model.committed)
    play(model, 10)
    played = np.concatenate([model.memory.own[a, : model.memory.filled[a]] for a in committed])
    assert set(played.tolist()) == {NAMES.index("Z")}


def test_model_humans_tip_above_a_quarter_and_hold_below_a_tenth() -> None:
    """Best response with memory 5 from an established convention (Centola et al. 2018 found a tipping
    point near 25 % in groups of about 20): 40 % committed take over, 5 % never gain more than a stray convert."""
    high = [last(play(run(game(committed_fraction=0.4), r), 20), "committed_share") for r in range(10)]
    low = [last(play(run(game(committed_fraction=0.05), r), 20), "committed_share") for r in range(10)]
    assert min(high) >= 0.9 and max(low) <= 3 / 24 and np.mean(low) < 0.1


def test_each_llm_agent_in_a_pair_asks_once_with_the_names_in_its_own_order() -> None:
    model = run(game(committed_fraction=0.1, population={"size": 24, "llm_share": 0.5}))
    model.record(0)
    requests = model.plan(1)
    askers = model.askers()
    assert len(requests) == 12 and set(askers.tolist()) == set(np.flatnonzero(model.asks_llm).tolist())
    orders = set()
    for request in requests:
        assert request.choices == NAMES
        listed = request.prompt.split("The names you can choose: ")[1].split(".")[0].split(", ")
        assert sorted(listed) == sorted(NAMES)
        orders.add(tuple(listed))
        assert request.prompt.count("you chose F, your partner chose F, you got +100 points") == 5
        assert "+100 points" in dict(request.messages)["system"]
    assert len(orders) >= 10  # 12 requests, 10! orders: repeats are possible but rare
    assert len({r.seed for r in requests}) == 12


def test_an_invalid_answer_is_no_move_and_voids_its_game() -> None:
    model = run(game(population={"size": 24, "llm_share": 0.5}))
    model.record(0)
    requests = model.plan(1)
    before = model.memory.filled.copy()
    model.step(1, [""] * len(requests))
    values = model.record(1)
    llm = np.flatnonzero(model.asks_llm)
    assert values["invalid_moves"] == 12 and values["llm_valid_share"] == 0.0 and values["llm_failures"] == 12
    assert np.all(model.memory.filled[llm] == before[llm])  # nobody remembers a void game
    changed = np.flatnonzero(model.memory.own[:, -1] != 0)  # humans remember their new game (F was all they had)
    assert not np.isnan(values["success_rate"]) and len(changed) <= 24


def test_llm_diagnostics_count_position_bias_and_best_response() -> None:
    """Answering the first-listed name gives a first-option share of 1; answering F (every memory is F)
    gives best response and partner-matching shares of 1."""
    first = run(game(population={"size": 24, "llm_share": 0.5}))
    play(first, 1, answer=lambda r: r.prompt.split("The names you can choose: ")[1].split(",")[0])
    assert last(first, "llm_first_option_share") == 1.0
    loyal = run(game(population={"size": 24, "llm_share": 0.5}))
    play(loyal, 1, answer=lambda r: "F")
    assert last(loyal, "llm_best_response_share") == 1.0 and last(loyal, "llm_matches_partner_last") == 1.0
    assert last(loyal, "success_rate") == 1.0 and last(loyal, "consensus") == 1.0


def test_a_run_is_a_pure_function_of_its_seeds() -> None:
    config = game(committed_fraction=0.2, population={"size": 24, "llm_share": 0.5})
    answer = lambda r: r.prompt.split("The names you can choose: ")[1].split(",")[1].strip()  # noqa: E731
    first, second = (play(run(config, 3), 8, answer) for _ in range(2))
    assert first.records == second.records
    assert np.array_equal(np.stack(first.population), np.stack(second.population))
    assert first.records != play(run(config, 4), 8, answer).records


@pytest.mark.parametrize(("llm_share", "keepers"), [(0.0, 24), (0.5, 12)])
def test_held_only_counts_the_inventories_of_the_agents_that_keep_one(llm_share: float, keepers: int) -> None:
    """Generation 0 of the binary agreement: the 6 committed agents hold only A, every other agent that
    keeps an inventory only B (LLM agents answer from memory and keep none, so they are not counted)."""
    values = run(binary_agreement(0.25, llm_share)).record(0)
    assert values["held_only:A"] == pytest.approx(6 / keepers)
    assert values["held_only:B"] == pytest.approx((keepers - 6) / keepers) and values["held_mixed"] == 0.0


def test_held_only_after_one_round_is_what_the_pairs_imply_and_theory_predicts() -> None:
    """From all-B with committed A on a complete graph, round 1 changes one thing: a B-listener of a
    committed speaker fails and adds A. So held_only:A stays p, held_mixed is those pairs' share, and
    the shares still sum to 1. Over replicates the mean of held_only:B is the round map's step
    n_B + ½ dn_B/dt (`convention_theory`), ×N/(N−1) for a finite matching (a committed agent's partner
    is one of the N−1 others)."""
    config = binary_agreement(0.25)
    n, committed = 24, 6
    final = []
    for replicate in range(300):
        model = play(run(config, replicate), 1)
        values = model.record(1)
        speakers, listeners = model.last_round.pairs.T
        converted = (model.committed[speakers] & ~model.committed[listeners]).sum()
        assert values["held_only:A"] == pytest.approx(committed / n)
        assert values["held_mixed"] == pytest.approx(converted / n)
        assert values["held_only:A"] + values["held_only:B"] + values["held_mixed"] == pytest.approx(1.0)
        final.append(values["held_only:B"])
    p = committed / n
    expected = (1 - p) + ROUND_IN_MEAN_FIELD_UNITS * binary_agreement_rhs(0.0, 1 - p, p)[1] * n / (n - 1)
    assert abs(np.mean(final) - expected) < 4 * np.std(final) / np.sqrt(len(final))
    assert expected == pytest.approx(1 - p - committed * (n - committed) / (2 * n * (n - 1)))


def test_a_first_naming_game_round_gives_every_agent_one_name() -> None:
    """Without a convention, inventories start empty (no held_only share, no mixed one); after round 1
    on a complete graph of even size every speaker holds the name it invented and every listener the
    name it heard, so the held_only shares sum to 1 and each is twice the share of pairs saying it."""
    config = game(names=("A", "B", "C"), rule="naming_game", established_name=None, established_rounds=0,
                  committed_name=None)  # fmt: skip
    model = run(config)
    start = model.record(0)
    assert all(start[f"held_only:{name}"] == 0.0 for name in "ABC") and start["held_mixed"] == 0.0
    requests = model.plan(1)
    model.step(1, [""] * len(requests))
    values = model.record(1)
    said = np.bincount(model.last_round.plays[model.last_round.pairs[:, 0]], minlength=3)
    assert [values[f"held_only:{name}"] for name in "ABC"] == pytest.approx(2 * said / 24)
    assert values["held_mixed"] == 0.0


def test_the_dry_run_counts_the_requests_a_run_makes() -> None:
    config = game(committed_fraction=0.2, population={"size": 24, "llm_share": 0.5})
    model = run(config)
    asked = 0
    model.record(0)
    for g in range(1, config.study.generations + 1):
        requests = model.plan(g)
        asked += len(requests)
        model.step(g, ["F"] * len(requests))
    assert plan_study(config).size.llm_requests == asked * config.study.replicates


# -- the LLM's answers ------------------------------------------------------------------------


def test_requests_without_choices_keep_the_key_they_were_logged_under() -> None:
    request = Request((("user", "Tell a story."),), seed=7, sampling=Sampling(max_tokens=16))
    old = json.dumps([request.messages, 7, 16, request.sampling.temperature, request.sampling.top_p],
                     separators=(",", ":"))  # fmt: skip
    assert request.key() == hashlib.sha256(old.encode()).hexdigest()
    assert Request(request.messages, 7, request.sampling, choices=("A", "B")).key() != request.key()


@pytest.mark.parametrize(
    ("answer", "move"),
    [("Z", "Z"), (' "Z". ', "Z"), ("I choose Z.", "Z"), ("Z or F", ""), ("Zebra", ""), ("Round 1:", "")],
)
def test_an_answer_is_a_move_only_when_it_names_one_option(answer: str, move: str) -> None:
    adoption = adopt_choice(answer, NAMES)
    assert adoption.text == move and adoption.usable == bool(move)


def test_the_prompt_lists_the_rounds_oldest_first() -> None:
    (_, system), (_, user) = game_messages([("F", "J", -50.0), ("J", "J", 100.0)], ["J", "F"], payoffs=(100, -50))
    assert "-50 points" in system and user.index("Round 1: you chose F") < user.index("Round 2: you chose J")
    assert user.endswith("The names you can choose: J, F.\nWhich name do you choose?")


@pytest.mark.slow
@NEEDS_VLLM
def test_vllm_answers_only_with_names_and_the_study_replays(runner, tmp_path: Path) -> None:
    """Through the real runner and vLLM: decoding constrained to the names makes every answer a move;
    a replay from the completion log alone (no engine) gives the same bytes."""
    config = game(committed_fraction=0.2, population={"size": 12, "llm_share": 0.5})
    data = config.model_dump(mode="json")
    data["study"].update(generations=4, replicates=2)
    data["llm"] = {"sampling": {"max_tokens": 4}, "prompt": {"retries": 0}}
    config = StudyConfig.model_validate(data)
    folder = runner.run(config, out_root=tmp_path)
    metrics = pl.read_parquet(folder / "metrics.parquet")
    valid = metrics.filter(pl.col("metric") == "llm_valid_share", pl.col("generation") > 0)["value"]
    assert valid.len() == 8 and valid.min() == 1.0
    log = pl.read_parquet(folder / "generations.parquet")
    assert set(log["completion"].to_list()) <= set(NAMES) and log.height == 2 * 4 * 6
    replayed = StudyRunner().replay(folder, tmp_path / "replay")
    for table in ("metrics", "population", "generations"):
        assert (replayed / f"{table}.parquet").read_bytes() == (folder / f"{table}.parquet").read_bytes(), table


def test_the_odd_describes_the_game_with_its_sources_and_the_prompt_verbatim() -> None:
    from culturesim.study.odd import describe

    text = describe(plan_study(game(committed_fraction=0.2, population={"size": 24, "llm_share": 0.5})))
    assert "random matching over the network" in text and "Centola, Becker, Brackbill & Baronchelli 2018" in text
    assert "If you both choose the same name, you each get +100 points." in text  # the system message, verbatim
    assert "always play `Z`" in text and "starts with `F`" in text
    assert "Transmission bias" not in text and "seed text" not in text


def test_the_odd_says_what_name_share_and_held_only_measure() -> None:
    from culturesim.study.odd_conventions import coordination_sections

    naming, best = binary_agreement(0.25), game()
    text = "\n".join(coordination_sections(naming, naming))
    assert "`name_share:<name>`, the share of the names played in the last round" in text
    assert "plays the name it heard when it knows it" in text and "`held_only:<name>`" in text
    assert "held_only" not in "\n".join(coordination_sections(best, best))  # best response keeps no inventory
