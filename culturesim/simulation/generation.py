"""One generation of many runs in lockstep: the only place a generation is put together.

Every caller (the study runner, replay, validation, benchmarks, tests) advances runs
with `advance`, so resume, replay and every executor share one code path:

    plan(g) for every run ─► answer every LLM request of every run from a completion
    source (one batched round, then retry rounds) ─► step(g) ─► embed the new texts of
    every run in one call ─► record(g)

The simulation is a pure function of (config, completions, vectors): completions come
from a `CompletionSource` (engine, log, or log then engine) and vectors from any object
with `dim` and `embed` (the embedder, or the vectors stored with a study's results).
Floats of the simulator itself (learning, metrics) are computed with BLAS on one thread,
because a product split over threads rounds differently (measured with OpenBLAS: X.T @ X
on 1 and 2 threads differ in the last bits), and the bytes must not depend on the machine's
thread settings.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import numpy as np
from threadpoolctl import ThreadpoolController

from culturesim.parts.llm.base import AdapterRef, Request
from culturesim.simulation.completions import CompletionSource, Origin, answer_with_retries
from culturesim.simulation.conventions import ConventionModel
from culturesim.simulation.model import CultureModel

# A run of either interaction kind: both have the phases `advance` drives.
RunModel = CultureModel | ConventionModel

SIMULATOR_BLAS_THREADS = 1


@functools.cache
def _blas() -> ThreadpoolController:
    """The process's BLAS libraries, found once (a fresh scan costs ~0.5 ms, twice per generation)."""
    return ThreadpoolController().select(user_api="blas")


@contextmanager
def simulator_threads() -> Iterator[None]:
    """BLAS on SIMULATOR_BLAS_THREADS threads inside the block, the previous counts restored after.
    `start` and `advance` hold it themselves; a caller that advances generation by generation
    holds it around its loop to make those inner blocks free.

    Sets each library's thread count directly, and only where it differs: OpenBLAS resizes its
    thread pool on every change (about 30 µs each way, measured), and `ThreadpoolController.limit`
    also re-reads every library's settings on each entry. `run_generations` holds the limit over
    the whole loop, so the two blocks of each generation inside it cost about 2 µs."""
    changed = [(lib, lib.num_threads) for lib in _blas().lib_controllers if lib.num_threads != SIMULATOR_BLAS_THREADS]
    for library, _ in changed:
        library.set_num_threads(SIMULATOR_BLAS_THREADS)
    try:
        yield
    finally:
        for library, threads in changed:
            library.set_num_threads(threads)


class ModelUpdates(Protocol):
    """The LLM agents' model between generations (`culturesim.study.retraining`): which adapter
    answers a run now, and a retraining phase after a generation."""

    def adapter(self, run_id: str) -> AdapterRef | None: ...

    def after(self, generation: int, models: list[RunModel]) -> None:
        """Retrain, where the study says so, once `generation` is recorded."""


class VectorSource(Protocol):
    """Unit vectors for texts: the embedder, or vectors stored with results."""

    dim: int
    encoded: int  # distinct texts computed so far

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def save(self) -> None:
        """Persist what was computed (a disk cache), if anything."""


@dataclass
class Throughput:
    """Counters for the progress bar and the manifest (seconds are wall-clock)."""

    llm_tokens: int = 0  # generated tokens
    llm_prompt_tokens: int = 0  # prompt tokens of the requests the engine answered
    llm_prompt_tokens_reused: int = 0  # of those, read from the engine's prefix cache instead of computed
    llm_seconds: float = 0.0
    llm_requests: int = 0
    llm_unique_requests: int = 0
    llm_calls: int = 0  # engine calls
    llm_attempts: int = 0  # first attempts and retries
    llm_from_log: int = 0  # attempts answered by the completion log, with no engine call
    llm_retries: int = 0
    embedded_texts: int = 0
    embedding_requests: int = 0
    embed_seconds: float = 0.0
    training_seconds: float = 0.0  # retrainings of the LLM agents' model (`culturesim.study.retraining`)
    training_texts: int = 0  # texts trained on by those retrainings, each epoch counted
    wall_seconds: float = 0.0

    def add(self, other: dict[str, float]) -> None:
        for key, value in other.items():
            if key in self.__dataclass_fields__:
                setattr(self, key, getattr(self, key) + value)

    def summary(self) -> dict[str, float]:
        data = asdict(self)
        data["llm_prompt_tokens_computed"] = self.llm_prompt_tokens - self.llm_prompt_tokens_reused
        data["llm_tokens_per_second"] = self.llm_tokens / self.llm_seconds if self.llm_seconds else 0.0
        data["embedded_texts_per_second"] = self.embedded_texts / self.embed_seconds if self.embed_seconds else 0.0
        return data


def start(models: list[RunModel], vectors: VectorSource, stats: Throughput) -> None:
    """Generation 0: embed every run's seed texts in one call and record the initial culture."""
    with simulator_threads():
        _embed_pending(models, vectors, stats)
        for model in models:
            model.record(0)


def advance(
    models: list[RunModel],
    generation: int,
    *,
    source: CompletionSource | None,
    vectors: VectorSource,
    stats: Throughput,
    updates: ModelUpdates | None = None,
) -> list[list[dict[str, object]]]:
    """Advance every run from generation - 1 to `generation`; returns each run's LLM rows
    (who asked what, the seed actually used, the attempts, the answer). With `updates`, a run's
    requests are answered with its current adapter."""
    with simulator_threads():
        planned = [model.plan(generation) for model in models]
    if updates is not None:
        planned = [
            _with_adapter(batch, updates.adapter(model.spec.run_id))
            for model, batch in zip(models, planned, strict=True)
        ]
    requests = [r for batch in planned for r in batch]
    origins = [
        Origin(model.spec.run_id, generation, int(agent))
        for model, batch in zip(models, planned, strict=True)
        for agent in model.askers()
    ]
    used, completions, adoptions, attempts = _answer(source, models, planned, requests, origins, stats)
    rows: list[list[dict[str, object]]] = []
    offset = 0
    with simulator_threads():
        for model, batch in zip(models, planned, strict=True):
            span = slice(offset, offset + len(batch))
            offset += len(batch)
            rows.append(_rows(model, generation, requests[span], used[span], completions[span], attempts[span]))
            model.step(generation, [adoption.text for adoption in adoptions[span]])
        _embed_pending(models, vectors, stats)
        for model in models:
            model.record(generation)
    return rows


def run_generations(
    models: list[RunModel],
    generations: int,
    *,
    source: CompletionSource | None,
    vectors: VectorSource,
    stats: Throughput,
    on_generation: Callable[[int], None] | None = None,
    updates: ModelUpdates | None = None,
) -> list[list[dict[str, object]]]:
    """Generation 0, then generations 1..`generations`; returns each run's LLM rows. `updates`
    retrains after a generation where the study says so (not after the last: nothing would answer)."""
    rows: list[list[dict[str, object]]] = [[] for _ in models]
    with simulator_threads():
        start(models, vectors, stats)
        for generation in range(1, generations + 1):
            advanced = advance(models, generation, source=source, vectors=vectors, stats=stats, updates=updates)
            for log, new in zip(rows, advanced, strict=True):
                log.extend(new)
            if on_generation is not None:
                on_generation(generation)
            if updates is not None and generation < generations:
                updates.after(generation, models)
    return rows


def _with_adapter(requests: list[Request], adapter: AdapterRef | None) -> list[Request]:
    return requests if adapter is None else [replace(r, adapter=adapter) for r in requests]


def _answer(source, models, planned, requests, origins, stats: Throughput):
    if not requests:
        return [], [], [], []
    if source is None:
        raise RuntimeError("LLM requests were made but the runs have no completion source")
    prompts = [model.config.llm.prompt for model, batch in zip(models, planned, strict=True) for _ in batch]
    before = replace(source.counters)
    used, completions, adoptions, attempts = answer_with_retries(
        source,
        requests,
        origins,
        max_chars=[prompt.max_chars for prompt in prompts],
        retries=[prompt.retries for prompt in prompts],
    )
    after = source.counters
    stats.llm_calls += after.engine_calls - before.engine_calls
    stats.llm_tokens += after.engine_tokens - before.engine_tokens
    stats.llm_prompt_tokens += after.engine_prompt_tokens - before.engine_prompt_tokens
    stats.llm_prompt_tokens_reused += after.engine_prompt_tokens_reused - before.engine_prompt_tokens_reused
    stats.llm_seconds += after.engine_seconds - before.engine_seconds
    stats.llm_from_log += after.from_log - before.from_log
    stats.llm_requests += len(requests)
    stats.llm_unique_requests += len({r.key() for r in requests})
    stats.llm_attempts += sum(attempts)
    stats.llm_retries += sum(attempts) - len(attempts)
    return used, completions, adoptions, attempts


def _embed_pending(models: list[RunModel], vectors: VectorSource, stats: Throughput) -> None:
    pending = [model.pool.pending_texts() for model in models]
    texts = [t for batch in pending for t in batch]
    before = vectors.encoded
    started = time.perf_counter()
    embedded = vectors.embed(texts)
    stats.embed_seconds += time.perf_counter() - started
    stats.embedded_texts += vectors.encoded - before
    stats.embedding_requests += len(texts)
    offset = 0
    for model, batch in zip(models, pending, strict=True):
        model.pool.attach_embeddings(embedded[offset : offset + len(batch)])
        offset += len(batch)


def _rows(model: RunModel, generation: int, asked, used, completions, attempts) -> list[dict[str, object]]:
    return [
        {
            "run_id": model.spec.run_id,
            "generation": generation,
            "agent": int(agent),
            "request_key": first.key(),
            "seed": final.seed,
            "attempts": tries,
            "system": dict(first.messages).get("system", ""),
            "prompt": first.prompt,
            "max_tokens": first.sampling.max_tokens,
            "temperature": first.sampling.temperature,
            "top_p": first.sampling.top_p,
            "completion": c.text,
            "tokens": c.tokens,
            "model_id": model.config.llm.engine.model,
            "dtype": model.config.llm.engine.dtype,
        }
        for agent, first, final, c, tries in zip(model.askers(), asked, used, completions, attempts, strict=True)
    ]
