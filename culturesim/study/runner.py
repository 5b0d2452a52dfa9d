"""Run a study: every condition x replicate, advanced in lockstep, generation by generation.

All runs of the study step together so that each generation's LLM requests, from
every agent of every run, go to the engine in one call (identical requests are
answered once), and all new texts are embedded in one call through the shared cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from culturesim.config import StudyConfig
from culturesim.corpus import load_corpus
from culturesim.embed import Embedder
from culturesim.llm import Backend, create_backend, deduplicated_generate
from culturesim.llm.base import Request
from culturesim.model import CultureModel, RunSpec
from culturesim.study.store import (
    GENERATIONS_SCHEMA,
    METRICS_SCHEMA,
    package_versions,
    results_dir,
    write_json,
    write_parquet,
)


@dataclass
class Throughput:
    """Counters for the progress bar and the manifest."""

    llm_tokens: int = 0
    llm_seconds: float = 0.0
    llm_requests: int = 0
    llm_unique_requests: int = 0
    embed_texts: int = 0
    embed_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def tokens_per_second(self) -> float:
        return self.llm_tokens / self.llm_seconds if self.llm_seconds else 0.0

    def summary(self, embedder: Embedder) -> dict[str, float]:
        return {
            "wall_seconds": time.perf_counter() - self.started,
            "llm_tokens": self.llm_tokens,
            "llm_seconds": self.llm_seconds,
            "llm_tokens_per_second": self.tokens_per_second(),
            "llm_requests": self.llm_requests,
            "llm_unique_requests": self.llm_unique_requests,
            "embedded_texts": embedder.encoded,
            "embedding_requests": embedder.requested,
            "embed_seconds": self.embed_seconds,
            "embedded_texts_per_second": self.embed_texts / self.embed_seconds if self.embed_seconds else 0.0,
        }


def needs_llm(config: StudyConfig) -> bool:
    return any(
        cfg.population.llm_share > 0 or cfg.humans.llm_consultation > 0 for _, cfg in config.condition_grid()
    )


ProgressFn = Callable[[int, Throughput], None]


class StudyRunner:
    """Owns the engines (one LLM backend, one embedder) and runs studies with them."""

    def __init__(self, *, embedder: Embedder | None = None, backend: Backend | None = None) -> None:
        self._embedder = embedder
        self._backend = backend

    def embedder(self, config: StudyConfig) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(config.embedding)
        return self._embedder

    def backend(self, config: StudyConfig) -> Backend:
        if self._backend is None:
            self._backend = create_backend(config.llm, seed=config.study.seed)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def run(self, config: StudyConfig, *, out_root: Path, on_generation: ProgressFn | None = None) -> Path:
        """Run every condition x replicate and write the results folder; returns its path."""
        folder = results_dir(config, out_root)
        embedder = self.embedder(config)
        backend = self.backend(config) if needs_llm(config) else None
        stats = Throughput()
        models = self._build_models(config, embedder)
        self._embed_pending(models, embedder, stats)
        for model in models:
            model.record()
        log_rows: list[dict[str, object]] = []
        for generation in range(1, config.study.generations + 1):
            plans = [model.plan() for model in models]
            requests = [r for plan in plans for r in plan]
            completions = self._generate(backend, requests, stats)
            offset = 0
            for model, plan in zip(models, plans, strict=True):
                answered = completions[offset : offset + len(plan)]
                offset += len(plan)
                log_rows.extend(_log_rows(model, generation, plan, answered, backend))
                model.deliver(answered)
                model.sim_step()
            self._embed_pending(models, embedder, stats)
            for model in models:
                model.record()
            if on_generation is not None:
                on_generation(generation, stats)
        self._write(folder, config, models, log_rows, stats, embedder, backend)
        return folder

    def _build_models(self, config: StudyConfig, embedder: Embedder) -> list[CultureModel]:
        models = []
        for index, (label, condition) in enumerate(config.condition_grid()):
            corpus = load_corpus(condition.corpus)["text"].to_list()
            content_axis = _axis(embedder, condition.humans.content_axis)
            norm_axes = {name: _axis(embedder, poles) for name, poles in condition.metrics.norm_axes.items()}
            for replicate in range(config.study.replicates):
                spec = RunSpec(f"c{index}-r{replicate}", label, replicate, config.study.seed)
                model = CultureModel(
                    {
                        "config": condition,
                        "spec": spec,
                        "corpus": corpus,
                        "dim": embedder.dim,
                        "content_axis": content_axis,
                        "norm_axes": norm_axes,
                    }
                )
                model.sim_setup(steps=config.study.generations, seed=config.study.seed)
                models.append(model)
        return models

    def _generate(self, backend: Backend | None, requests: list[Request], stats: Throughput) -> list:
        if not requests:
            return []
        if backend is None:
            raise RuntimeError("LLM requests were made but no backend was started")
        start = time.perf_counter()
        completions = deduplicated_generate(backend, requests)
        stats.llm_seconds += time.perf_counter() - start
        stats.llm_requests += len(requests)
        stats.llm_unique_requests += len({r.key() for r in requests})
        stats.llm_tokens += sum(c.tokens for c in {r.key(): c for r, c in zip(requests, completions)}.values())
        return completions

    def _embed_pending(self, models: list[CultureModel], embedder: Embedder, stats: Throughput) -> None:
        pending = [model.pool.pending_texts() for model in models]
        texts = [t for batch in pending for t in batch]
        before = embedder.encoded
        start = time.perf_counter()
        vectors = embedder.embed(texts)
        stats.embed_seconds += time.perf_counter() - start
        stats.embed_texts += embedder.encoded - before
        offset = 0
        for model, batch in zip(models, pending, strict=True):
            model.pool.attach_embeddings(vectors[offset : offset + len(batch)])
            offset += len(batch)

    def _write(self, folder, config, models, log_rows, stats, embedder, backend) -> None:
        metrics = pl.DataFrame(
            [
                {"run_id": m.spec.run_id, "condition": m.spec.condition, "replicate": m.spec.replicate, **row}
                for m in models
                for row in m.records
            ],
            schema=METRICS_SCHEMA,
        )
        traits = pl.concat(
            [
                m.pool.to_frame().with_columns(run_id=pl.lit(m.spec.run_id), condition=pl.lit(m.spec.condition))
                for m in models
            ]
        )
        write_parquet(metrics, folder / "metrics.parquet")
        write_parquet(traits, folder / "traits.parquet")
        write_parquet(pl.DataFrame(log_rows, schema=GENERATIONS_SCHEMA), folder / "generations.parquet")
        write_json(
            {
                "study": config.study.name,
                "config": config.model_dump(mode="json"),
                "config_hash": config.hash(),
                "finished": datetime.now(UTC).isoformat(),
                "versions": package_versions(),
                "llm": {"model_id": getattr(backend, "model_id", None), "engine": getattr(backend, "engine_version", None)},
                "embedder": embedder.model_id,
                "runs": [
                    {"run_id": m.spec.run_id, "condition": m.spec.condition, "replicate": m.spec.replicate,
                     "seed": [config.study.seed, m.spec.replicate], "status": "complete"}
                    for m in models
                ],
                "throughput": stats.summary(embedder),
            },
            folder / "manifest.json",
        )


def _axis(embedder: Embedder, poles: tuple[str, str] | None) -> np.ndarray | None:
    """Axis between two pole sentences: e(positive) - e(negative)."""
    if poles is None:
        return None
    positive, negative = embedder.embed(list(poles))
    return positive - negative


def _log_rows(model: CultureModel, generation: int, requests, completions, backend) -> list[dict[str, object]]:
    return [
        {
            "run_id": model.spec.run_id,
            "generation": generation,
            "agent": int(agent),
            "request_key": r.key(),
            "seed": r.seed,
            "prompt": r.messages[-1][1],
            "completion": c.text,
            "tokens": c.tokens,
            "model_id": backend.model_id,
            "engine": backend.engine_version,
        }
        for agent, r, c in zip(model.askers(), requests, completions, strict=True)
    ]
