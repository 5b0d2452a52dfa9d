"""Transmission mechanics of culturesim.model.CultureModel, without any LLM or embedding model.

Embeddings are a deterministic fake (a unit vector seeded by a hash of the text): these tests are
about who copies whom and what is born, not about semantics. LLM answers are fake `Completion`s.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from culturesim.config import StudyConfig
from culturesim.llm.base import Completion
from culturesim.llm.prompts import clean_completion
from culturesim.model import CultureModel, RunSpec

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


def make_config(*, size=40, llm_share=0.0, turnover=1.0, copy_error=0.0, innovation=0.0, seed=1, **sections):
    data = {
        "study": {"name": "t", "seed": seed, "replicates": 1, "generations": 5},
        "population": {"size": size, "llm_share": llm_share, "turnover": turnover},
        "network": {"kind": "small_world", "degree": 4, "rewire": 0.2},
        "humans": {"bias": "unbiased", "copy_error": copy_error, "innovation": innovation},
        "metrics": {"names": sorted(METRIC_KEYS)},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return StudyConfig.model_validate(data)


def make_model(config: StudyConfig, *, seed: int | None = None, replicate: int = 0) -> CultureModel:
    """A model set up and recorded at generation 0, as StudyRunner._build_models and run() do."""
    seed = config.study.seed if seed is None else seed
    model = CultureModel(
        {
            "config": config,
            "spec": RunSpec("c0-r0", "baseline", replicate, seed),
            "corpus": CORPUS,
            "dim": DIM,
            "content_axis": None,
            "norm_axes": {},
        }
    )
    model.sim_setup(steps=config.study.generations, seed=seed)
    model.pool.attach_embeddings(fake_embed(model.pool.pending_texts()))
    model.record()
    return model


def finish(model: CultureModel) -> None:
    """The rest of a generation after deliver(): step, embed new texts, record."""
    model.sim_step()
    model.pool.attach_embeddings(fake_embed(model.pool.pending_texts()))
    model.record()


def human_generation(model: CultureModel) -> list:
    requests = model.plan()
    model.deliver([])
    finish(model)
    return requests


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
        requests = model.plan()
        model.deliver([Completion("", 0)] * len(requests))  # LLM agents fail and keep their traits
        finish(model)
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
        requests = model.plan()
        assert len(requests) == 10
        assert model.askers().tolist() == model.llm_agents.tolist()
        assert len({r.seed for r in requests}) == 10
        model.deliver([Completion(f"Generation {generation} text {i}.", 5) for i in range(len(requests))])
        finish(model)


def test_llm_agents_adopt_cleaned_completions():
    model = make_model(make_config(llm_share=0.25, turnover=0.5))
    before = model.traits.copy()
    requests = model.plan()
    raw = [f'Sure! Here is a rewritten version: "Text number {i} from the machine."' for i in range(len(requests))]
    model.deliver([Completion(text, 12) for text in raw])
    finish(model)
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
    requests = model.plan()
    answers = ["   ", "Sure! Here is a rewritten version:", ""] + ["A usable new text."] * (len(requests) - 3)
    model.deliver([Completion(text, 3) for text in answers])
    finish(model)
    agents = model.llm_agents
    assert model.traits[agents[:3]].tolist() == before[agents[:3]].tolist()
    assert all(model.pool.texts[t] == "A usable new text." for t in model.traits[agents[3:]])
    failures = {r["generation"]: r["value"] for r in model.records if r["metric"] == "llm_failures"}
    assert failures == {0: 0.0, 1: 3.0}
    # the counter restarts every generation
    requests = model.plan()
    model.deliver([Completion("Fine.", 1)] * len(requests))
    finish(model)
    assert [r["value"] for r in model.records if r["metric"] == "llm_failures"][-1] == 0.0


def test_combine_role_reads_several_neighbours():
    config = make_config(llm_share=0.25, turnover=0.5, llm={"role": "combine", "neighbours_read": 3})
    model = make_model(config)
    before = model.traits.copy()
    requests = model.plan()
    assert len(requests) == len(model.llm_agents)
    for request in requests:
        assert request.messages[-1][1].count("\n- ") == 3
    model.deliver([Completion("Combined idea.", 3)] * len(requests))
    finish(model)
    for agent in model.llm_agents:
        parents = model.pool.parents[model.traits[agent]]
        assert len(parents) == 3
        assert all(p in before[model.network.neighbours(agent)] for p in parents)


def test_consulting_humans_adopt_assisted_traits():
    config = make_config(turnover=0.5, humans={"llm_consultation": 1.0})
    model = make_model(config)
    requests = model.plan()
    assert len(requests) == 20  # every learner consults
    askers = model.askers().copy()
    model.deliver([Completion(f"Advice {i}.", 2) for i in range(len(requests))])
    finish(model)
    assert [model.pool.texts[t] for t in model.traits[askers]] == [f"Advice {i}." for i in range(20)]
    assert model.pool.author_kinds(model.traits[askers]) == ["human_llm_assisted"] * 20


def test_missing_completions_are_not_silently_ignored():
    model = make_model(make_config(llm_share=0.25, turnover=0.5))
    requests = model.plan()
    assert len(requests) == 10
    with pytest.raises((ValueError, RuntimeError)):
        model.deliver([])
        model.sim_step()
