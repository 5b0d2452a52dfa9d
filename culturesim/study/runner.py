"""Run a study: conditions x replicates, grouped by engine, in lockstep batches, crash-safe.

Runs are grouped by the engines they need (`culturesim.study.groups`): each group gets
its own LLM engine and embedder, and only one engine is alive at a time. Within a group,
the runs of a batch advance together, so each generation's LLM requests, from every agent
of every run in the batch, go to the engine in one call. Every engine call is appended to
the completion log as it happens, so a killed study resumes from the log (zero engine
calls for what was logged), and `replay` recomputes a study from its log and stored
vectors with no model loaded. When a batch ends, each run's tables are written
atomically, then a `done.json` marker: a run counts as finished only when it exists.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from culturesim import attractor
from culturesim.attractor import study_specs
from culturesim.completions import EngineIdentity
from culturesim.config import ConfigError, StudyConfig
from culturesim.corpus import load_corpus
from culturesim.embed import Embedder
from culturesim.fingerprint import file_sha256
from culturesim.generation import Throughput, VectorSource
from culturesim.llm import Backend, create_backend
from culturesim.study.batch import (
    LogPolicy,
    ProgressFn,
    RunPlan,
    condition_corpora,
    group_embedder,
    needs_llm,
    run_batch,
)
from culturesim.study.groups import EngineGroup, engine_groups, plan_batches
from culturesim.study.holder import hold_folder
from culturesim.study.provenance import provenance
from culturesim.study.sizing import check_disk, size_study
from culturesim.study.store import read_manifest, results_dir, write_json
from culturesim.study.tables import RUN_TABLES, combine_runs, finished_runs
from culturesim.vectors import StoredVectors

EXECUTORS = ("local", "ray")
LOG_FOLDER = "log"


@dataclass(frozen=True)
class Execution:
    """How one `run` or `replay` executes: into which folder, from which log, how parallel.

    `vectors`: stored vectors (a replay, which also asks no engine); None: each group's embedder."""

    folder: Path
    log: LogPolicy
    done: frozenset[str] = frozenset()
    vectors: VectorSource | None = None
    workers: int = 1
    batch_runs: int | None = None
    executor: str = "local"
    address: str | None = None
    on_progress: ProgressFn | None = None
    calibrations_from: Path | None = None  # a replay copies the source folder's calibrations


def plan_runs(config: StudyConfig) -> list[RunPlan]:
    """Every condition x replicate, in a fixed order (condition-major)."""
    levels = config.condition_levels() or [{}]
    plans = []
    for index, (label, _) in enumerate(config.condition_grid()):
        factors = {k: v for k, v in levels[index].items() if k != "label"}
        for replicate in range(config.study.replicates):
            plans.append(RunPlan(f"c{index}-r{replicate}", label, factors, replicate, index))
    return plans


class StudyRunner:
    """Owns the engines of the group being run (one LLM backend, one embedder) and runs its batches.

    An injected `embedder` or `backend` (tests share one per session) is used for every group
    and never closed here."""

    def __init__(self, *, embedder: Embedder | None = None, backend: Backend | None = None) -> None:
        self._shared_embedder = embedder
        self._shared_backend = backend
        self._embedder: Embedder | None = None
        self._backend: Backend | None = None
        self.engines_started: list[dict[str, str]] = []  # in start order, for the manifest

    def embedder(self, group: EngineGroup) -> VectorSource:
        """The group's embedder (kept while consecutive groups share the embedding model)."""
        if self._shared_embedder is not None:
            return self._shared_embedder
        if self._embedder is None or self._embedder.model_id != group.config.embedding.model:
            self._embedder = group_embedder(group.config.embedding)
        return self._embedder

    def backend(self, group: EngineGroup) -> Backend:
        """The group's LLM engine, started on first need (a resume answered by the log starts none);
        a running engine of another group is stopped first."""
        if self._shared_backend is not None:
            return self._shared_backend
        if self._backend is not None and self.engines_started[-1]["engine"] != group.engine.key():
            self.close()
        if self._backend is None:
            self.engines_started.append({"engine": group.engine.key(), "started": datetime.now(UTC).isoformat()})
            self._backend = create_backend(group.config.llm, seed=group.config.study.seed)
        return self._backend

    def close(self) -> None:
        """Stop the group's engine; one engine is alive at a time."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None
            self.engines_started[-1]["stopped"] = datetime.now(UTC).isoformat()

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
        with hold_folder(folder):
            done = finished_runs(folder)
            if done and not resume:
                raise ConfigError(
                    f"{folder} already holds {len(done)} finished run(s); pass --resume to finish the study "
                    "or delete the folder to start again"
                )
            check_disk(size_study(config), out_root)
            manifest = _start_manifest(folder, config, deviation=deviation, lock=lock, toy=toy)
            execution = Execution(
                folder,
                LogPolicy(folder / LOG_FOLDER),
                frozenset(done),
                workers=workers,
                batch_runs=batch_runs,
                executor=executor,
                address=address,
                on_progress=on_progress,
            )
            self._run_groups(config, manifest, execution)
        return folder

    def replay(self, source: Path, out: Path, *, config: StudyConfig | None = None) -> Path:
        """Recompute a study from its completion log and stored vectors into `out`, with no model loaded.

        `config` defaults to the study's own; a config whose requests or texts the study never
        made stops with a message naming the first missing one."""
        manifest_in = read_manifest(source)
        config = config or StudyConfig.model_validate(manifest_in["config"])
        vectors = StoredVectors.from_folder(source)
        with hold_folder(out):
            if finished_runs(out):
                raise ConfigError(f"{out} already holds a replay; delete it or choose another --out")
            manifest = _start_manifest(out, config, deviation=None, lock=manifest_in.get("lock"), toy=False)
            manifest["replay_of"] = {"folder": str(source), "config_hash": manifest_in["config_hash"]}
            log = LogPolicy(source / LOG_FOLDER, append=False)
            self._run_groups(config, manifest, Execution(out, log, vectors=vectors, calibrations_from=source))
        return out

    def _run_groups(self, config: StudyConfig, manifest: dict[str, Any], execution: Execution) -> None:
        """Each engine group in turn, with its own engines; then the combined tables."""
        folder, plans = execution.folder, plan_runs(config)
        self.engines_started = manifest["engines"]
        stats = Throughput(**{k: v for k, v in manifest["throughput"].items() if k in Throughput.__dataclass_fields__})
        started = time.perf_counter() - stats.wall_seconds
        try:
            # LLM groups first: each calibrates with the engine it then runs on (one start per engine),
            # and human-only groups, measured against an LLM condition's calibration, find it done.
            groups = sorted(engine_groups(config, plans), key=lambda g: not g.needs_llm)
            manifest["attractors"] = {}
            for group in groups:
                self._calibrations(config, groups, execution, manifest["attractors"], engine=group.engine)
                if execution.executor == "ray" or execution.workers > 1:
                    self.close()  # the workers start their own engines
                batches = plan_batches(group, execution.batch_runs)
                todo = [batch for batch in batches if any(p.run_id not in execution.done for p in batch)]
                for batch_stats in self._execute(config, group, todo, execution):
                    stats.add(batch_stats)
                    _update_manifest(folder, manifest, stats, started, status="running")
            self.close()
            combine_runs(folder, [p.run_id for p in plans])
            manifest["files"] = {f"{t}.parquet": file_sha256(folder / f"{t}.parquet") for t in RUN_TABLES}
        except BaseException:
            self.close()
            _update_manifest(folder, manifest, stats, started, status="interrupted")
            raise
        _update_manifest(folder, manifest, stats, started, status="complete")

    def calibrate(self, config: StudyConfig, *, force: bool = False) -> list[tuple[dict[str, Any], str]]:
        """Each distinct calibration of a study, from the cache or computed now (always, with
        `force`), as (record, where it came from); `culturesim calibrate`."""
        groups = engine_groups(config, plan_runs(config))
        grid = config.condition_grid()
        found: dict[str, tuple[dict[str, Any], str]] = {}
        for index, spec in study_specs(config, condition_corpora(config)).items():
            if spec.key() not in found:
                found[spec.key()] = self._cached_or_calibrated(grid[index][1], spec, groups, force=force)
        self.close()
        return list(found.values())

    def _calibrations(
        self,
        config: StudyConfig,
        groups: list[EngineGroup],
        execution: Execution,
        record: dict[str, Any],
        *,
        engine: EngineIdentity | None,
    ) -> None:
        """Put into the results folder, before a group runs, the calibrations made with its `engine`
        (all that are left, for a human-only group): from the folder itself (a resume), the replayed
        folder, the cache, or by calibrating now. `record` (the manifest's) gains an entry for each."""
        grid = config.condition_grid()
        for index, spec in study_specs(config, condition_corpora(config)).items():
            key, label = spec.key(), grid[index][0]
            if key in record:
                if label not in record[key]["conditions"]:
                    record[key]["conditions"].append(label)
                continue
            if engine is not None and spec.engine != engine.key():
                continue  # the group with that engine calibrates it
            target = attractor.folder_path(execution.folder, key)
            origin = "results folder"
            if target.exists():
                calibration = attractor.read_record(target)
            elif execution.calibrations_from is not None:
                calibration, origin = attractor.read_record(_replayed(execution.calibrations_from, spec)), "replayed"
            else:
                calibration, origin = self._cached_or_calibrated(grid[index][1], spec, groups)
            if origin != "results folder":
                write_json(calibration, target)
            record[key] = {
                "file": f"{attractor.ATTRACTOR_FOLDER}/{key}.json",
                "from": origin,
                "spec": calibration["spec"],
                "requests": calibration["requests"],
                "seconds": calibration["seconds"],
                "conditions": [label],
            }

    def _cached_or_calibrated(
        self, condition: StudyConfig, spec: attractor.CalibrationSpec, groups: list[EngineGroup], *, force=False
    ) -> tuple[dict[str, Any], str]:
        """One calibration from the cache, or computed with the engine that answers `condition` and cached.

        An injected backend (tests) is not the engine its key names, so it neither reads nor fills the cache."""
        cached = attractor.cache_path(spec.key()) if self._shared_backend is None else None
        if cached is not None and cached.exists() and not force:
            return attractor.read_record(cached), "cache"
        group = next((g for g in groups if g.engine is not None and g.engine.key() == spec.engine), None)
        group = group or EngineGroup(condition, EngineIdentity.of(condition.llm), ())
        texts = load_corpus(condition.corpus)["text"].to_list()
        calibration = attractor.calibrate(spec, self.backend(group), self.embedder(group), texts)
        if cached is not None:
            write_json(calibration, cached)
        return calibration, "calibrated"

    def _execute(
        self, config: StudyConfig, group: EngineGroup, batches: list[list[RunPlan]], execution: Execution
    ) -> Iterator[dict[str, float]]:
        """Yield each finished batch's throughput counters, running batches here, in a pool or on Ray.

        A batch with any unfinished run is rerun whole (its logged requests come from the log)
        and only its unfinished runs are written."""
        folder, done, log, progress = execution.folder, set(execution.done), execution.log, execution.on_progress
        generations = config.study.generations
        if execution.executor == "ray":
            from culturesim.study.ray_executor import run_on_ray

            for batch, batch_stats in run_on_ray(config, group, batches, folder, done, log, address=execution.address):
                if progress is not None:
                    progress(len(batch) * generations)
                yield batch_stats
            return
        if execution.workers == 1:
            vectors = execution.vectors or self.embedder(group)
            engine = None if execution.vectors is not None else _lazy(self, group)
            for batch in batches:
                yield run_batch(
                    config, batch, folder, vectors=vectors, log=log, engine=engine, skip=done, on_progress=progress
                )
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=execution.workers, mp_context=context) as pool:
            futures = {
                pool.submit(_run_batch_in_worker, config.model_dump_json(), batch, str(folder), done, log): batch
                for batch in batches
            }
            for future in as_completed(futures):
                if progress is not None:
                    progress(len(futures[future]) * generations)
                yield future.result()


def _replayed(source: Path, spec: attractor.CalibrationSpec) -> Path:
    """A calibration of the replayed folder (a replay never calibrates: it has no engine)."""
    path = attractor.folder_path(source, spec.key())
    if not path.exists():
        raise attractor.MissingCalibration(
            f"{source} holds no calibration {spec.key()} ({spec.role}, {spec.engine}): a replay measures the "
            "attractor distance only against the study's own calibrations"
        )
    return path


def _lazy(runner: StudyRunner, group: EngineGroup):
    """An engine factory for the group: the runner's engine, started on first need."""
    return lambda: runner.backend(group)


def _run_batch_in_worker(
    config_json: str, plans: list[RunPlan], folder: str, skip: set[str], log: LogPolicy
) -> dict[str, float]:
    """Process-pool entry point: a fresh runner (own engines) for one batch."""
    config = StudyConfig.model_validate_json(config_json)
    [group] = engine_groups(config, plans)
    runner = StudyRunner()
    try:
        return run_batch(
            config, plans, Path(folder), vectors=runner.embedder(group), log=log, engine=_lazy(runner, group), skip=skip
        )
    finally:
        runner.close()


def _start_manifest(folder: Path, config: StudyConfig, *, deviation, lock, toy) -> dict[str, Any]:
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
        "engines": previous.get("engines", []),
        "runs": [
            {**asdict(p), "seed": {"entropy": config.study.seed, "spawn_key": [p.replicate]}} for p in plan_runs(config)
        ],  # fmt: skip
        "throughput": previous.get("throughput", {}),
    }
    write_json(manifest, path)
    return manifest


def _update_manifest(folder, manifest, stats, started, *, status: str) -> None:
    done = finished_runs(folder)
    for run in manifest["runs"]:
        run["status"] = "complete" if run["run_id"] in done else "pending"
    stats.wall_seconds = time.perf_counter() - started
    manifest["status"] = status
    manifest["throughput"] = stats.summary()
    manifest["updated"] = datetime.now(UTC).isoformat()
    write_json(manifest, folder / "manifest.json")
