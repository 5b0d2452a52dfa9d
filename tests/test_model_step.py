"""Transmission mechanics of culturesim.simulation.model.CultureModel, without any LLM or embedding model.

Every generation runs through `culturesim.simulation.generation.advance`, as in a study. Embeddings are a
deterministic fake (a unit vector seeded by a hash of the text): these tests are about who copies
whom and what is born, not about semantics. LLM answers come from a scripted fake engine.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from culturesim.parts.llm.base import Completion, Request
from culturesim.parts.llm.prompts import clean_completion
from culturesim.schema.config import StudyConfig
from culturesim.simulation import generation as gen
from culturesim.simulation.completions import CompletionSource, EngineIdentity
from culturesim.simulation.generation import Throughput
from culturesim.simulation.model import CultureModel, RunSpec, build_run

DIM = 8
CORPUS = [
    f"{subject} {verb} the {thing} every {time}."
    for subject, verb, thing, time in zip(
        ["My aunt", "The baker", "A neighbour", "Our teacher", "The mayor", "My cousin", "An old man", "The nurse"] * 4,
        ["waters", "fixes", "paints", "cleans", "sells", "checks", "moves", "counts"] * 4,
        ["garden", "fence", "boat", "window", "bread", "clock", "chair", "coins"] * 4,
        ["morning", "evening", "week", "spring", "winter", "night", "summer", "Sunday"] * 4,
        strict=True,
    )
]
CORPUS = [f"{text[:-1]} ({i})." for i, text in enumerate(CORPUS)]  # 32 distinct texts
METRIC_KEYS = {  # output keys of each metric used here
    "distinct_traits": {"distinct_traits"},
    "trait_entropy": {"trait_entropy"},
    "homozygosity": {"homozygosity"},
    "lexical_diversity": {"distinct_1", "distinct_2", "mean_length"},
    "semantic_diversity": {"semantic_diversity"},
    "machine_ancestry": {"machine_ancestry"},
    "llm_trait_share": {"llm_trait_share"},
    "novelty": {"novelty"},
}


def fake_embed(texts: list[str]) -> np.ndarray:
    vectors = np.empty((len(texts), DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        vector = np.random.default_rng(seed).standard_normal(DIM)
        vectors[row] = vector / np.linalg.norm(vector)
    return vectors


class FakeVectors:
    dim = DIM
    encoded = 0

    def embed(self, texts):
        return fake_embed(list(texts))


class ScriptedEngine:
    """A fake engine: `answer(i, request)` is the text of the i-th request of a call."""

    model_id = "scripted"
    engine_version = "scripted 0"

    def __init__(self, answer):
        self.answer = answer
        self.calls: list[list[Request]] = []

    def generate(self, requests):
        self.calls.append(list(requests))
        return [Completion(self.answer(i, r), 3) for i, r in enumerate(requests)]

    def close(self):
        pass


def make_config(*, size=40, llm_share=0.0, turnover=1.0, copy_error=0.0, innovation=0.0, seed=1, **sections):
    data = {
        "study": {"name": "t", "seed": seed, "replicates": 1, "generations": 5},
        "population": {"size": size, "llm_share": llm_share, "turnover": turnover},
        "network": {"kind": "small_world", "degree": 4, "rewire": 0.2},
        "humans": {"bias": "unbiased", "copy_error": copy_error, "innovation": innovation},
        "llm": {"prompt": {"retries": 0}},  # failures are counted here, not retried
        "metrics": {"names": sorted(METRIC_KEYS)},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return StudyConfig.model_validate(data)


def make_model(config: StudyConfig, *, seed: int | None = None, replicate: int = 0) -> CultureModel:
    """A model set up and recorded at generation 0, as a study's batch builds it."""
    seed = config.study.seed if seed is None else seed
    model = build_run(config, RunSpec("c0-r0", "baseline", replicate, seed), corpus=CORPUS, dim=DIM)
    gen.start([model], FakeVectors(), Throughput())
    return model


def llm_generation(model: CultureModel, answer) -> tuple[list[Request], list[dict]]:
    """One generation through `generation.advance`; LLM requests are answered by `answer(i, request)`.
    Returns the requests of the generation's first engine call and the run's LLM rows."""
    engine = ScriptedEngine(answer)
    source = CompletionSource(engine=EngineIdentity("scripted", "scripted", "", 0), start_engine=lambda: engine)
    next_generation = model.records[-1]["generation"] + 1
    [rows] = gen.advance([model], next_generation, source=source, vectors=FakeVectors(), stats=Throughput())
    return (engine.calls[0] if engine.calls else []), rows


def human_generation(model: CultureModel) -> list:
    return llm_generation(model, lambda i, r: pytest.fail("a human-only generation asked an LLM"))[0]


def born_in(model: CultureModel, generation: int) -> np.ndarray:
    return np.flatnonzero(model.pool.born == generation)


# -- human transmission ---------------------------------------------------------------------------


def test_faithful_copying_takes_a_neighbours_trait():
    model = make_model(make_config(turnover=1.0))
    assert len(np.unique(model.traits)) == 40  # one seed text per agent
    for _ in range(5):
        before = model.traits.copy()
        human_generation(model)
        for agent in range(40):
            assert model.traits[agent] in before[model.network.neighbours(agent)]
        assert len(model.pool) == 40  # nothing new is born
    assert len(np.unique(model.traits)) < 40  # drift lost some traits


def test_innovation_gives_every_learner_a_new_corpus_text():
    model = make_model(make_config(turnover=1.0, innovation=1.0))
    for generation in range(1, 4):
        human_generation(model)
        new = born_in(model, generation)
        assert len(new) == 40
        assert model.pool.author_kinds(new) == ["human_innovation"] * 40
        assert sorted(model.traits.tolist()) == new.tolist()  # each agent holds its own new trait
        assert all(model.pool.texts[t] in CORPUS for t in new)
        assert model.pool.machine_ancestry[new].tolist() == [0.0] * 40


def test_copy_errors_are_new_variants_of_a_neighbours_text():
    model = make_model(make_config(turnover=1.0, copy_error=1.0))
    before = model.traits.copy()
    human_generation(model)
    new = born_in(model, 1)
    assert len(new) == 40
    assert model.pool.author_kinds(new) == ["human_error"] * 40
    for agent in range(40):
        trait = model.traits[agent]
        (parent,) = model.pool.parents[trait]
        assert parent in before[model.network.neighbours(agent)]
        assert model.pool.texts[trait] != model.pool.texts[parent]


@pytest.mark.parametrize(("size", "llm_share", "turnover"), [(40, 0.0, 0.3), (40, 0.25, 0.5), (50, 0.1, 0.7)])
def test_number_of_learners_is_turnover_times_humans(size, llm_share, turnover):
    config = make_config(size=size, llm_share=llm_share, turnover=turnover, innovation=1.0)
    model = make_model(config)
    humans = size - round(llm_share * size)
    assert len(model.humans) == humans
    for generation in range(1, 4):
        llm_generation(model, lambda i, r: "")  # LLM agents fail and keep their traits
        new = born_in(model, generation)
        assert len(new) == round(turnover * humans)
        learners = np.flatnonzero(np.isin(model.traits, new))
        assert len(learners) == len(new)
        assert not model.is_llm[learners].any()


def test_records_hold_every_configured_metric_for_every_generation():
    model = make_model(make_config(turnover=0.5, copy_error=0.2, innovation=0.1))
    for _ in range(4):
        human_generation(model)
    expected = set().union(*METRIC_KEYS.values()) | {"llm_failures", "pool_size"}
    for generation in range(5):
        rows = [r for r in model.records if r["generation"] == generation]
        assert {r["metric"] for r in rows} == expected
        assert len(rows) == len(expected)
    assert {r["generation"] for r in model.records} == set(range(5))
    last = {r["metric"]: r["value"] for r in model.records if r["generation"] == 4}
    assert last["distinct_traits"] == len(np.unique(model.traits))
    assert last["pool_size"] == len(model.pool)


def run_traits(config: StudyConfig, *, seed: int, generations: int = 4) -> np.ndarray:
    model = make_model(config, seed=seed)
    history = [model.traits.copy()]
    for _ in range(generations):
        human_generation(model)
        history.append(model.traits.copy())
    return np.stack(history)


def test_same_seed_same_run_different_seed_different_run():
    config = make_config(turnover=0.5, copy_error=0.2, innovation=0.1)
    first = run_traits(config, seed=5)
    assert np.array_equal(first, run_traits(config, seed=5))
    assert not np.array_equal(first, run_traits(config, seed=6))


def test_replicates_differ():
    config = make_config(turnover=0.5, copy_error=0.2, innovation=0.1)
    a, b = make_model(config, replicate=0), make_model(config, replicate=1)
    assert not np.array_equal(a.network.indices, b.network.indices)
    assert not np.array_equal(a.traits, b.traits)


# -- LLM agents, with fake completions ------------------------------------------------------------


def test_human_only_model_makes_no_requests():
    model = make_model(make_config(turnover=0.5, copy_error=0.1, innovation=0.1))
    for _ in range(3):
        assert human_generation(model) == []
    assert model.records[-1]["generation"] == 3
    assert not any(model.pool.machine_authored)


def test_one_request_per_llm_agent_per_generation():
    model = make_model(make_config(llm_share=0.25, turnover=0.5))
    assert len(model.llm_agents) == 10
    for generation in range(1, 4):
        requests, rows = llm_generation(model, lambda i, r, g=generation: f"Generation {g} text {i}.")
        assert len(requests) == 10
        assert [row["agent"] for row in rows] == model.llm_agents.tolist()
        assert [row["generation"] for row in rows] == [generation] * 10
        assert len({r.seed for r in requests}) == 10


def test_llm_agents_adopt_cleaned_completions():
    model = make_model(make_config(llm_share=0.25, turnover=0.5))
    before = model.traits.copy()
    raw = [f'Sure! Here is a rewritten version: "Text number {i} from the machine."' for i in range(10)]
    requests, _ = llm_generation(model, lambda i, r: raw[i])
    assert len(requests) == 10
    for agent, text in zip(model.llm_agents, raw, strict=True):
        trait = model.traits[agent]
        assert model.pool.texts[trait] == clean_completion(text, max_chars=280)
        assert model.pool.texts[trait].startswith("Text number")
        assert model.pool.author_kinds(np.array([trait])) == ["llm"]
        assert model.pool.machine_ancestry[trait] == 1.0
        assert model.pool.born[trait] == 1
        (parent,) = model.pool.parents[trait]  # a rewrite reads exactly one neighbour text
        assert parent in before[model.network.neighbours(agent)]
    assert model.records[-1] == {"generation": 1, "metric": "pool_size", "value": float(len(model.pool))}
    failures = [r["value"] for r in model.records if r["metric"] == "llm_failures" and r["generation"] == 1]
    assert failures == [0.0]


def test_empty_completion_keeps_the_trait_and_counts_a_failure():
    model = make_model(make_config(llm_share=0.25, turnover=0.5))
    before = model.traits.copy()
    answers = ["   ", "Sure! Here is a rewritten version:", ""] + ["A usable new text."] * 7
    requests, _ = llm_generation(model, lambda i, r: answers[i])
    assert len(requests) == 10
    agents = model.llm_agents
    assert model.traits[agents[:3]].tolist() == before[agents[:3]].tolist()
    assert all(model.pool.texts[t] == "A usable new text." for t in model.traits[agents[3:]])
    failures = {r["generation"]: r["value"] for r in model.records if r["metric"] == "llm_failures"}
    assert failures == {0: 0.0, 1: 3.0}
    # the counter restarts every generation
    llm_generation(model, lambda i, r: "Fine.")
    assert [r["value"] for r in model.records if r["metric"] == "llm_failures"][-1] == 0.0


def test_combine_role_reads_several_neighbours():
    config = make_config(
        llm_share=0.25, turnover=0.5, llm={"prompt": {"retries": 0, "role": "combine", "neighbours_read": 3}}
    )
    model = make_model(config)
    before = model.traits.copy()
    requests, _ = llm_generation(model, lambda i, r: "Combined idea.")
    assert len(requests) == len(model.llm_agents)
    for request in requests:
        assert request.prompt.count("\n- ") == 3
    for agent in model.llm_agents:
        parents = model.pool.parents[model.traits[agent]]
        assert len(parents) == 3
        assert all(p in before[model.network.neighbours(agent)] for p in parents)


def test_consulting_humans_adopt_assisted_traits():
    config = make_config(turnover=0.5, humans={"llm_consultation": 1.0})
    model = make_model(config)
    requests, rows = llm_generation(model, lambda i, r: f"Advice {i}.")
    assert len(requests) == 20  # every learner consults
    askers = np.array([row["agent"] for row in rows])
    assert [model.pool.texts[t] for t in model.traits[askers]] == [f"Advice {i}." for i in range(20)]
    assert model.pool.author_kinds(model.traits[askers]) == ["human_llm_assisted"] * 20


def test_an_llm_mutation_retells_the_copied_text():
    config = make_config(turnover=0.5, copy_error=0.0, humans={"llm_mutation": 1.0})
    model = make_model(config)
    before = model.traits.copy()
    requests, rows = llm_generation(model, lambda i, r: f"Retold {i}.")
    assert len(requests) == 20  # every learner's copy is retold
    askers = np.array([row["agent"] for row in rows])
    held = model.traits[askers]
    assert [model.pool.texts[t] for t in held] == [f"Retold {i}." for i in range(20)]
    assert model.pool.author_kinds(held) == ["human_llm_mutated"] * 20
    for request, trait in zip(requests, held, strict=True):
        [parent] = model.pool.parents[trait]
        assert request.prompt.count("\n- ") == 1 and model.pool.texts[parent] in request.prompt
        assert parent in before  # the copied (model's) trait, not a text the LLM made up
    assert model.pool.machine_ancestry[held].tolist() == [1.0] * 20


def test_an_unusable_llm_mutation_leaves_a_faithful_copy():
    model = make_model(make_config(turnover=0.5, humans={"llm_mutation": 1.0}))
    before = model.traits.copy()
    _, rows = llm_generation(model, lambda i, r: "   ")
    askers = np.array([row["agent"] for row in rows])
    assert set(model.traits[askers]) <= set(before)  # each learner holds the trait it copied
    assert (model.traits[askers] != before[askers]).any()
    assert [r["value"] for r in model.records if r["metric"] == "llm_failures"][-1] == 20.0


def test_missing_completions_are_not_silently_ignored():
    model = make_model(make_config(llm_share=0.25, turnover=0.5))
    with pytest.raises(RuntimeError, match="no completion source"):
        gen.advance([model], 1, source=None, vectors=FakeVectors(), stats=Throughput())
    requests = model.plan(1)
    assert len(requests) == 10
    with pytest.raises(ValueError, match="expected 10, got 0"):
        model.step(1, [])
    with pytest.raises(RuntimeError, match=r"plan\(2\) must run before step\(2\)"):
        model.step(2, [Completion("x", 1)] * 10)
