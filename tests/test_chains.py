"""LLM transmission chains (culturesim.checks.chains): lockstep chains, their seeds, and the roles side by side."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from culturesim.calibration.chains import run_chains
from culturesim.checks import chains as ch
from culturesim.checks import validate as v
from culturesim.parts.llm.base import Completion
from culturesim.schema.llm_section import PromptSection
from culturesim.schema.sampling import Sampling
from culturesim.simulation.model import request_seed


@pytest.mark.slow
def test_chains_structure(llm_backend, embedder):
    initial = ch.corpus_sample(2, rng_seed=0)[:6]
    calls = []

    class Counting:
        model_id = llm_backend.model_id

        def generate(self, requests):
            calls.append(len(requests))
            return llm_backend.generate(requests)

        def close(self):
            pass

    report = ch.chains(
        Counting(), embedder, initial_texts=initial, generations=3, sampling=Sampling(max_tokens=24), seed=0
    )
    print("\n" + v.format(report))
    assert calls == [6, 6, 6]  # lockstep: one engine call per generation with every chain

    per_generation = report.per_generation
    assert per_generation["generation"].to_list() == [0, 1, 2, 3]
    assert per_generation["between_similarity"].is_between(-1, 1).all()
    assert per_generation["similarity_to_initial"][0] == pytest.approx(1.0, abs=1e-5)
    assert (per_generation["mean_words"] > 0).all()
    assert per_generation["failures"].is_between(0, 6).all()
    assert per_generation["changed"].drop_nulls().is_between(0, 1).all()

    texts = report.texts
    assert texts.shape == (24, 4)
    assert texts.filter(pl.col("generation") == 0)["text"].to_list() == initial
    assert (texts["text"].str.len_chars() > 0).all()
    finals = texts.filter(pl.col("generation") == 3)["text"].to_list()
    assert sum(a != b for a, b in zip(initial, finals)) >= 3  # texts actually change
    assert per_generation["changed"].drop_nulls().sum() > 0

    assert report.fits["axis"].to_list() == ["length_words", "semantic_pc1"]
    assert report.findings.height == 3
    fitted = report.fits.filter(pl.col("error").is_null())
    assert ((fitted["strength"] - (1 - fitted["b"].abs())).abs() < 1e-12).all()
    assert fitted["p_value"].is_between(0, 1).all()
    assert report.findings["reproduces"].dtype == pl.Boolean


@pytest.mark.slow
def test_chains_are_reproducible_from_their_seeds(llm_backend):
    """Same seed, same texts: each request's seed derives from (seed, chain, generation)."""
    initial = ch.corpus_sample(1, rng_seed=3)[:2]
    first, _ = run_chains(llm_backend, initial, generations=1, sampling=Sampling(max_tokens=8), seed=5)
    second, _ = run_chains(llm_backend, initial, generations=1, sampling=Sampling(max_tokens=8), seed=5)
    assert first == second


def test_chain_retries_and_failures_plumbing():
    """Not a chain finding: the bookkeeping around unusable answers, with a scripted engine.

    The engine answers "" to first attempts and a text to retried seeds; without retries every chain
    keeps its text and counts a failure, with one retry round every chain moves on.
    """
    first_seeds = set()

    class Scripted:
        model_id = "scripted"

        def __init__(self):
            self.calls = []

        def generate(self, requests):
            self.calls.append(len(requests))
            return [Completion(text="" if r.seed in first_seeds else f"Retold {r.seed}.", tokens=3) for r in requests]

        def close(self):
            pass

    first_seeds.update(request_seed(0, chain, 1, 0, 0) for chain in range(3))
    initial = ["One text here.", "Another text here.", "A third text here."]
    engine = Scripted()
    history, failures = run_chains(engine, initial, generations=1, seed=0)
    assert history[1] == initial and failures == [0, 3] and engine.calls == [3]
    engine = Scripted()
    history, failures = run_chains(engine, initial, generations=1, seed=0, prompt=PromptSection(retries=1))
    assert all(text.startswith("Retold") for text in history[1]) and failures == [0, 0] and engine.calls == [3, 3]


def test_pair_mean_and_similarity_rise_bootstrap():
    similarity = np.full((4, 4), 0.5)
    np.fill_diagonal(similarity, 1.0)
    assert ch._pair_mean(similarity) == pytest.approx(0.5)
    rise = ch._similarity_rise(similarity - 0.2, similarity, rng=np.random.default_rng(0), draws=200)
    assert rise["estimate"] == pytest.approx(0.2)
    assert rise["p_value"] == 0.0
    assert list(itertools.islice(rise, 4)) == ["estimate", "ci_low", "ci_high", "p_value"]


@pytest.mark.slow
def test_roles_side_by_side_share_starts_and_map_to_perez_tasks(llm_backend, embedder):
    initial = ch.story_sample(4, rng_seed=1)
    assert len(set(initial)) == 4
    comparison = ch.compare_roles(
        llm_backend, embedder, initial_texts=initial, generations=2, sampling=Sampling(max_tokens=24)
    )
    print("\n" + v.format(comparison))
    table = comparison.per_generation
    assert table["task"].unique().sort().to_list() == ["continue", "rephrase", "take inspiration"]
    start = table.filter(pl.col("generation") == 0)
    assert start["diversity"].n_unique() == 1  # every role starts from the same stories
    assert table.filter(pl.col("generation") > 0)["diversity"].is_between(0, 2).all()
    assert comparison.findings["finding"].str.contains("rewrite").all()
    rewrite = comparison.reports["rewrite"].texts.filter(pl.col("generation") == 2)["text"].to_list()
    assert rewrite != comparison.reports["continue"].texts.filter(pl.col("generation") == 2)["text"].to_list()
