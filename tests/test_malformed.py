"""Malformed model output never crashes a study: cleaned, retried with new seeds, else counted."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from culturesim.parts.llm.base import Completion, Request, retry_seed
from culturesim.parts.llm.prompts import Adoption, adopt, build_messages, clean_completion
from culturesim.schema.config import StudyConfig
from culturesim.simulation.completions import CompletionSource, EngineIdentity, Origin, answer_with_retries
from culturesim.study.runner import StudyRunner

MALFORMED = ["", "   \n\t ", "!!! ... ???", "12345 678", "Here is something a person near you said: the cat"]


class ScriptedBackend:
    """Test double: answers from a script keyed by attempt, to exercise the retry policy."""

    model_id, engine_version = "scripted", "test"

    def __init__(self, bad_first_attempts: int, bad: str = "") -> None:
        self.bad_first_attempts, self.bad, self.calls = bad_first_attempts, bad, []
        self.seen: dict[tuple, list[int]] = {}

    def generate(self, requests: list[Request]) -> list[Completion]:
        self.calls.append(len(requests))
        answers = []
        for r in requests:
            seeds = self.seen.setdefault(r.messages, [])
            seeds.append(r.seed)
            good = len(seeds) > self.bad_first_attempts
            answers.append(Completion(text=f"Fine text {r.seed}." if good else self.bad, tokens=3))
        return answers

    def close(self) -> None:
        pass


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_completions_are_unusable(bad: str) -> None:
    """Through the rule every answer of a study passes (`llm.prompts.adopt`, via answer_with_retries)."""
    request = Request(messages=build_messages("rewrite", ["The cat sat on the mat."], max_chars=280), seed=0)
    assert clean_completion(bad, max_chars=280, prompt=request.prompt) == ""
    assert adopt(bad, prompt=request.prompt, max_chars=280) == Adoption(text="", usable=False)
    assert adopt("A cat slept on the mat.", prompt=request.prompt, max_chars=280) == Adoption(
        text="A cat slept on the mat.", usable=True
    )


def test_overlong_completion_is_truncated_not_dropped() -> None:
    text = " ".join(f"word{i}" for i in range(500))  # long, not a repetition loop
    cleaned = clean_completion(text, max_chars=100)
    assert 0 < len(cleaned) <= 100 and not cleaned.endswith(" ")


def test_retries_use_new_seeds_in_one_batched_call_per_round() -> None:
    requests = [Request(messages=(("user", f"Say something {s}."),), seed=s) for s in range(5)]
    backend = ScriptedBackend(bad_first_attempts=2)
    source = CompletionSource(engine=EngineIdentity("scripted", "scripted", "", 0), start_engine=lambda: backend)
    origins = [Origin("c0-r0", 1, agent) for agent in range(5)]
    _, completions, _, attempts = answer_with_retries(source, requests, origins, max_chars=[280] * 5, retries=[3] * 5)
    assert all(c.text.startswith("Fine text") for c in completions)
    assert len({c.text for c in completions}) == 5
    assert attempts == [3] * 5 and backend.calls == [5, 5, 5]
    for s, seeds in enumerate(backend.seen.values()):
        assert seeds == [s, retry_seed(s, 1), retry_seed(s, 2)]


def test_a_study_survives_a_model_that_only_writes_garbage(tmp_path: Path, embedder) -> None:
    config = StudyConfig.model_validate(
        {
            "study": {"name": "garbage", "seed": 2, "replicates": 1, "generations": 3},
            "population": {"size": 12, "llm_share": 0.25},
            "humans": {"llm_consultation": 0.2},
            "llm": {"prompt": {"retries": 1}},
            "attractor": {"chains": 3, "generations": 1},
        }
    )
    backend = ScriptedBackend(bad_first_attempts=10**6, bad="   ")
    folder = StudyRunner(embedder=embedder, backend=backend).run(config, out_root=tmp_path)
    metrics = pl.read_parquet(folder / "metrics.parquet")
    failures = metrics.filter(pl.col("metric") == "llm_failures", pl.col("generation") > 0)["value"]
    assert (failures >= 3).all(), "every LLM agent's failure is counted each generation"
    traits = pl.read_parquet(folder / "traits.parquet")
    assert traits.filter(pl.col("author_kind").is_in(["llm", "human_llm_assisted"])).height == 0
    # the attractor calibration (1 generation) and the 3 generations: each one call plus one retry round
    assert len(backend.calls) == 2 + 3 * 2
