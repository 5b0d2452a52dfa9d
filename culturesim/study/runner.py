"""Run a study: conditions x replicates, in lockstep batches, crash-safe and resumable.

The runs of a batch advance together, generation by generation, so each
generation's LLM requests, from every agent of every run in the batch, go to the
engine in one call (identical requests answered once), and all new texts are
embedded in one call through the shared cache. When a batch ends, each run's
tables are written atomically, then a `done.json` marker with their hashes: a run
counts as finished only when its marker exists, so a killed study resumes where
it stopped and never counts a run twice. Batches are independent units of work
for a process pool (`workers`) or, later, a cluster executor.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from culturesim.config import ConfigError, StudyConfig
from culturesim.corpus import load_corpus
from culturesim.embed import Embedder
from culturesim.fingerprint import file_sha256, weights_digest
from culturesim.llm import Backend, create_backend
from culturesim.llm.base import Completion, Request, generate_with_retries
from culturesim.llm.models import cache_root
from culturesim.llm.prompts import clean_completion
from culturesim.model import CultureModel, RunSpec
from culturesim.study.provenance import provenance
from culturesim.study.store import (
    GENERATIONS_SCHEMA,
    METRICS_SCHEMA,
    POPULATION_SCHEMA,
    read_manifest,
    results_dir,
    write_json,
    write_parquet,
)

EXECUTORS = ("local", "ray")
RUN_TABLES = ("metrics", "traits", "generations", "population")


@dataclass(frozen=True)
class RunPlan:
    """One run of a study: which condition, which replicate."""

    run_id: str
    condition: str
    levels: dict[str, Any]
    replicate: int
    condition_index: int


def plan_runs(config: StudyConfig) -> list[RunPlan]:
    """Every condition x replicate, in a fixed order (condition-major)."""
    levels = config.condition_levels() or [{}]
    plans = []
    for index, (label, _) in enumerate(config.condition_grid()):
        factors = {k: v for k, v in levels[index].items() if k != "label"}
        for replicate in range(config.study.replicates):
            plans.append(RunPlan(f"c{index}-r{replicate}", label, factors, replicate, index))
    return plans


def plan_batches(config: StudyConfig, plans: list[RunPlan], batch_runs: int | None) -> list[list[RunPlan]]:
    """Fixed lockstep batches: all runs together when LLMs are involved (one engine call per
    generation), else one run per batch (saved as soon as it ends). The partition depends only on
    the study and `batch_runs`, never on workers or on what a resume finds done."""
    size = batch_runs or (len(plans) if needs_llm(config) else 1)
    return [plans[i : i + size] for i in range(0, len(plans), size)]


@dataclass
class Throughput:
    """Counters for the progress bar and the manifest."""

    llm_tokens: int = 0
    llm_seconds: float = 0.0
    llm_requests: int = 0
    llm_unique_requests: int = 0
    llm_calls: int = 0
    llm_retries: int = 0
    embedded_texts: int = 0
    embedding_requests: int = 0
    embed_seconds: float = 0.0
    wall_seconds: float = 0.0

    def tokens_per_second(self) -> float:
        return self.llm_tokens / self.llm_seconds if self.llm_seconds else 0.0

    def add(self, other: dict[str, float]) -> None:
        for key, value in other.items():
            if key in self.__dataclass_fields__:
                setattr(self, key, getattr(self, key) + value)

    def summary(self) -> dict[str, float]:
        data = asdict(self)
        data["llm_tokens_per_second"] = self.tokens_per_second()
        data["embedded_texts_per_second"] = self.embedded_texts / self.embed_seconds if self.embed_seconds else 0.0
        return data


def needs_llm(config: StudyConfig) -> bool:
    return any(cfg.population.llm_share > 0 or cfg.humans.llm_consultation > 0 for _, cfg in config.condition_grid())


ProgressFn = Callable[[int], None]  # called with the number of run-generations just completed


def run_folder(folder: Path, run_id: str) -> Path:
    return folder / "runs" / run_id


def finished_runs(folder: Path) -> set[str]:
    """Runs whose done marker exists: their tables are complete."""
    return {p.parent.name for p in (folder / "runs").glob("*/done.json")}


class StudyRunner:
    """Owns the engines (one LLM backend, one embedder) and runs batches of runs with them."""

    def __init__(self, *, embedder: Embedder | None = None, backend: Backend | None = None) -> None:
        self._embedder = embedder
        self._backend = backend

    def embedder(self, config: StudyConfig) -> Embedder:
        """The shared embedder, with a disk cache under the user cache unless CULTURESIM_NO_DISK_CACHE is set."""
        if self._embedder is None:
            cache = None if os.environ.get("CULTURESIM_NO_DISK_CACHE") else cache_root() / "embeddings"
            self._embedder = Embedder(config.embedding, cache_dir=cache)
        return self._embedder

    def backend(self, config: StudyConfig) -> Backend:
        if self._backend is None:
            self._backend = create_backend(config.llm, seed=config.study.seed)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # -- a whole study -------------------------------------------------------------------------
    def run(
        self,
        config: StudyConfig,
        *,
        out_root: Path,
        resume: bool = False,
        workers: int = 1,
        batch_runs: int | None = None,
        executor: str = "local",
        address: str | None = None,
        deviation: dict[str, Any] | None = None,
        lock: dict[str, Any] | None = None,
        toy: bool = False,
        on_progress: ProgressFn | None = None,
    ) -> Path:
        """Run every pending condition x replicate and write the results folder; returns its path.

        `executor` "local" runs batches here (workers = 1) or in a process pool; "ray" runs them
        as Ray tasks on the cluster at `address` (a local Ray instance without one).
        """
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1 (got {workers})")
        if executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {EXECUTORS} (got {executor!r})")
        folder = results_dir(config, out_root)
        plans = plan_runs(config)
        done = finished_runs(folder)
        if done and not resume:
            raise ConfigError(
                f"{folder} already holds {len(done)} finished run(s); pass --resume to finish the study "
                "or delete the folder to start again"
            )
        manifest = self._start_manifest(folder, config, plans, deviation=deviation, lock=lock, toy=toy)
        stats = Throughput()
        started = time.perf_counter()
        try:
            for batch_stats in self._execute(
                config, folder, plan_batches(config, plans, batch_runs), done, workers, on_progress, executor, address
            ):
                stats.add(batch_stats)
                self._update_manifest(folder, manifest, stats, started, status="running")
            combine_runs(folder, plans)
            manifest["files"] = {f"{t}.parquet": file_sha256(folder / f"{t}.parquet") for t in RUN_TABLES}
        except BaseException:
            self._update_manifest(folder, manifest, stats, started, status="interrupted")
            raise
        self._update_manifest(folder, manifest, stats, started, status="complete")
        return folder

    def _execute(self, config, folder, batches, done, workers, on_progress, executor="local", address=None):
        """Yield each finished batch's throughput counters, running batches here or in a pool.

        A batch with any unfinished run is rerun whole (same LLM batch composition, so the
        same completions) and only its unfinished runs are written.
        """
        todo = [batch for batch in batches if any(p.run_id not in done for p in batch)]
        if executor == "ray":
            from culturesim.study.ray_executor import run_on_ray

            for batch, batch_stats in run_on_ray(
                config, todo, folder, done, address=address, needs_llm=needs_llm(config)
            ):
                if on_progress is not None:
                    on_progress(len(batch) * config.study.generations)
                yield batch_stats
            return
        if workers == 1:
            for batch in todo:
                yield self.run_batch(config, batch, folder, skip=done, on_progress=on_progress)
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {
                pool.submit(_run_batch_in_worker, config.model_dump_json(), batch, str(folder), done): batch
                for batch in todo
            }
            for future in as_completed(futures):
                if on_progress is not None:
                    on_progress(len(futures[future]) * config.study.generations)
                yield future.result()

    def _start_manifest(self, folder, config, plans, *, deviation, lock, toy) -> dict[str, Any]:
        path = folder / "manifest.json"
        previous = read_manifest(folder) if path.exists() else {}
        deviations = previous.get("deviations", []) + ([deviation] if deviation else [])
        manifest = {
            "study": config.study.name,
            "config": config.model_dump(mode="json"),
            "config_hash": config.hash(),
            "toy": toy,
            "lock": lock,
            "deviations": deviations,
            "started": previous.get("started", datetime.now(UTC).isoformat()),
            "sessions": previous.get("sessions", []) + [provenance()],
            "llm": {"model": config.llm.model, "backend": config.llm.backend} if needs_llm(config) else None,
            "embedder": config.embedding.model,
            "runs": [{**asdict(p), "seed": {"entropy": config.study.seed, "spawn_key": [p.replicate]}} for p in plans],
            "throughput": previous.get("throughput", {}),
        }
        write_json(manifest, path)
        return manifest

    def _update_manifest(self, folder, manifest, stats, started, *, status: str) -> None:
        done = finished_runs(folder)
        for run in manifest["runs"]:
            run["status"] = "complete" if run["run_id"] in done else "pending"
        stats.wall_seconds = time.perf_counter() - started
        manifest["status"] = status
        manifest["throughput"] = stats.summary()
        manifest["updated"] = datetime.now(UTC).isoformat()
        write_json(manifest, folder / "manifest.json")

    # -- one lockstep batch --------------------------------------------------------------------
    def run_batch(
        self,
        config: StudyConfig,
        plans: list[RunPlan],
        folder: Path,
        *,
        skip: set[str] = frozenset(),
        on_progress: ProgressFn | None = None,
    ) -> dict[str, float]:
        """Advance the runs together, then write each run's tables and done marker."""
        embedder = self.embedder(config)
        backend = self.backend(config) if needs_llm(config) else None
        stats = Throughput()
        models = self._build_models(config, plans, embedder)
        self._embed_pending(models, embedder, stats)
        for model in models:
            model.record()
        logs: list[list[dict[str, object]]] = [[] for _ in models]
        for generation in range(1, config.study.generations + 1):
            plans_ = [model.plan() for model in models]
            requests = [r for plan in plans_ for r in plan]
            completions = self._generate(backend, requests, stats, retries=config.llm.retries)
            offset = 0
            for model, plan, log in zip(models, plans_, logs, strict=True):
                answered = completions[offset : offset + len(plan)]
                offset += len(plan)
                log.extend(_log_rows(model, generation, plan, answered, backend))
                model.deliver(answered)
                model.sim_step()
            self._embed_pending(models, embedder, stats)
            for model in models:
                model.record()
            if on_progress is not None:
                on_progress(len(models))
        embedder.save()
        for model, log in zip(models, logs, strict=True):
            if model.spec.run_id not in skip:
                write_run(folder, model, log, weights=_model_digests(config, backend))
        return asdict(stats)

    def _build_models(self, config: StudyConfig, plans: list[RunPlan], embedder: Embedder) -> list[CultureModel]:
        grid = config.condition_grid()
        models = []
        for plan in plans:
            condition = grid[plan.condition_index][1]
            corpus = load_corpus(condition.corpus)["text"].to_list()
            model = CultureModel(
                {
                    "config": condition,
                    "spec": RunSpec(plan.run_id, plan.condition, plan.replicate, config.study.seed),
                    "corpus": corpus,
                    "dim": embedder.dim,
                    "content_axis": _axis(embedder, condition.humans.content_axis),
                    "norm_axes": {name: _axis(embedder, poles) for name, poles in condition.metrics.norm_axes.items()},
                }
            )
            model.sim_setup(steps=config.study.generations, seed=config.study.seed)
            models.append(model)
        return models

    def _generate(
        self, backend: Backend | None, requests: list[Request], stats: Throughput, *, retries: int
    ) -> list[Completion]:
        if not requests:
            return []
        if backend is None:
            raise RuntimeError("LLM requests were made but no backend was started")
        start = time.perf_counter()
        completions, attempts = generate_with_retries(backend, requests, usable=_usable, retries=retries)
        stats.llm_seconds += time.perf_counter() - start
        unique = {r.key(): c for r, c in zip(requests, completions, strict=True)}
        stats.llm_calls += max(attempts)
        stats.llm_requests += len(requests)
        stats.llm_retries += sum(attempts) - len(attempts)
        stats.llm_unique_requests += len(unique)
        stats.llm_tokens += sum(c.tokens for c in unique.values())
        return completions

    def _embed_pending(self, models: list[CultureModel], embedder: Embedder, stats: Throughput) -> None:
        pending = [model.pool.pending_texts() for model in models]
        texts = [t for batch in pending for t in batch]
        before = embedder.encoded
        start = time.perf_counter()
        vectors = embedder.embed(texts)
        stats.embed_seconds += time.perf_counter() - start
        stats.embedded_texts += embedder.encoded - before
        stats.embedding_requests += len(texts)
        offset = 0
        for model, batch in zip(models, pending, strict=True):
            model.pool.attach_embeddings(vectors[offset : offset + len(batch)])
            offset += len(batch)


def _usable(request: Request, completion: Completion) -> bool:
    return bool(clean_completion(completion.text, max_chars=len(completion.text) + 1, prompt=request.messages[-1][1]))


def _run_batch_in_worker(config_json: str, plans: list[RunPlan], folder: str, skip: set[str]) -> dict[str, float]:
    """Process-pool entry point: a fresh runner (own engines) for one batch."""
    runner = StudyRunner()
    try:
        return runner.run_batch(StudyConfig.model_validate_json(config_json), plans, Path(folder), skip=skip)
    finally:
        runner.close()


def _model_digests(config: StudyConfig, backend: Backend | None) -> dict[str, Any]:
    from culturesim.embed import resolve_embedder

    digests: dict[str, Any] = {"embedder": weights_digest(resolve_embedder(config.embedding.model))}
    if backend is not None:
        digests["llm"] = {
            "model_id": backend.model_id,
            "engine": backend.engine_version,
            "weights": weights_digest(backend.model_id),
        }
    return digests


def write_run(folder: Path, model: CultureModel, log: list[dict[str, object]], *, weights: dict[str, Any]) -> None:
    """One run's tables, each atomic, then the done marker with their hashes (written last)."""
    spec = model.spec
    target = run_folder(folder, spec.run_id)
    metrics = pl.DataFrame(
        [
            {"run_id": spec.run_id, "condition": spec.condition, "replicate": spec.replicate, **row}
            for row in model.records
        ],
        schema=METRICS_SCHEMA,
    )
    traits = model.pool.to_frame().with_columns(run_id=pl.lit(spec.run_id), condition=pl.lit(spec.condition))
    tables = {
        "metrics": metrics,
        "traits": traits,
        "generations": pl.DataFrame(log, schema=GENERATIONS_SCHEMA),
        "population": population_frame(model),
    }
    for name, frame in tables.items():
        write_parquet(frame, target / f"{name}.parquet")
    write_json(
        {
            "run_id": spec.run_id,
            "files": {f"{name}.parquet": file_sha256(target / f"{name}.parquet") for name in tables},
            "models": weights,
            "finished": datetime.now(UTC).isoformat(),
        },
        target / "done.json",
    )


def population_frame(model: CultureModel) -> pl.DataFrame:
    """Long table of who held what: run_id, generation, agent, trait_id, is_llm (empty if not saved)."""
    n, generations = len(model.traits), len(model.population)
    return pl.DataFrame(
        {
            "run_id": [model.spec.run_id] * (n * generations),
            "generation": np.repeat(np.arange(generations, dtype=np.int64), n),
            "agent": np.tile(np.arange(n, dtype=np.int64), generations),
            "trait_id": np.concatenate(model.population) if model.population else np.zeros(0, dtype=np.int64),
            "is_llm": np.tile(model.is_llm, generations),
        },
        schema=POPULATION_SCHEMA,
    )


def combine_runs(folder: Path, plans: list[RunPlan]) -> None:
    """The study-level long tables: every run's table, in plan order."""
    for table in RUN_TABLES:
        frames = [pl.read_parquet(run_folder(folder, p.run_id) / f"{table}.parquet") for p in plans]
        write_parquet(pl.concat(frames, how="vertical"), folder / f"{table}.parquet")


def load_run_marker(folder: Path, run_id: str) -> dict[str, Any]:
    return json.loads((run_folder(folder, run_id) / "done.json").read_text(encoding="utf-8"))


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
