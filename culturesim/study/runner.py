"""Run a study: conditions x replicates, grouped by engine, in lockstep batches, crash-safe.

Runs are grouped by the engines they need (`culturesim.study.grid`): each group gets
its own LLM engine and embedder, and only one engine is alive at a time; the batches run
where the executor (`culturesim.study.executors`) puts them. Within a group,
the runs of a batch advance together, so each generation's LLM requests, from every agent
of every run in the batch, go to the engine in one call. Every engine call is appended to
the completion log as it happens, so a killed study resumes from the log (zero engine
calls for what was logged), and `replay` recomputes a study from its log and stored
vectors with no model loaded. When a batch ends, each run's tables are written
atomically, then a `done.json` marker: a run counts as finished only when it exists.
A disk that refuses a write (full, read-only, the folder removed) stops the study with one
`StorageError` that names the file, the bytes the plan still needs and the bytes free; the
manifest's last update on the way out may fail too, and is then skipped, never raised over it.
"""

from __future__ import annotations

import errno
import time
from contextlib import suppress
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from culturesim.checks import attractor
from culturesim.checks.attractor import study_specs
from culturesim.checks.shipped_attractors import shipped_record
from culturesim.core.fingerprint import file_sha256
from culturesim.core.progress import RUN_GENERATIONS, Reporter
from culturesim.parts.corpus import load_corpus
from culturesim.parts.embed import Embedder
from culturesim.parts.engine_identity import EngineIdentity, StudyEngines
from culturesim.parts.llm import Backend
from culturesim.parts.vectors import StoredVectors
from culturesim.schema.config import ConfigError, StudyConfig, stored_config
from culturesim.simulation.completions import CompletionLog
from culturesim.simulation.generation import Throughput
from culturesim.simulation.model import RunSpec
from culturesim.study.batch import LogPolicy, ProgressFn
from culturesim.study.executors import EXECUTORS, Execution, GroupEngines, execute
from culturesim.study.grid import EngineGroup, condition_corpora, engine_groups, needs_llm, plan_batches, plan_runs
from culturesim.study.holder import hold_folder
from culturesim.study.odd import describe
from culturesim.study.provenance import provenance, session_devices
from culturesim.study.rates import record_calibration_rates, record_run_rates
from culturesim.study.sizing import StudySize, check_disk, human_bytes, size_study
from culturesim.study.store import (
    STORAGE_PROBLEMS,
    StorageError,
    finished_runs,
    folder_bytes,
    read_manifest,
    results_dir,
    write_json,
    write_text,
)
from culturesim.study.tables import RUN_TABLES, combine_runs

LOG_FOLDER = "log"
ODD_FILE = "odd.md"  # the study's ODD protocol description (culturesim.study.odd)
RESUME = "then `culturesim run STUDY --resume` continues where it stopped"


class StudyRunner:
    """Runs a study's engine groups one after another, calibrating each group's attractors with the
    engines (`GroupEngines`) its batches then run on, and keeps the manifest.

    An injected `embedder` or `backend` (tests share one per session) is used for every group
    and never closed here."""

    def __init__(self, *, embedder: Embedder | None = None, backend: Backend | None = None) -> None:
        self.engines = GroupEngines(embedder=embedder, backend=backend)
        self.progress = Reporter()  # what `run` and `calibrate` report to (a display, or nothing)

    def _report_to(self, progress: Reporter | None) -> None:
        """Send the phases of the next `run` or `calibrate` to `progress` (None: to no display)."""
        self.progress = self.engines.progress = progress or Reporter()

    def close(self) -> None:
        """Stop the running group's engine, if any."""
        self.engines.close()

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
        engines: int | None = None,
        deviation: dict[str, Any] | None = None,
        lock: dict[str, Any] | None = None,
        toy: bool = False,
        on_progress: ProgressFn | None = None,
        progress: Reporter | None = None,
    ) -> Path:
        """Run every pending condition x replicate and write the results folder; returns its path.

        `executor`, `address` and `engines` choose where batches run (`culturesim.study.executors.Execution`).
        `progress` is told of calibrations, engine starts and run-generations (`culturesim.core.progress`);
        `on_progress(n)` of each n run-generations done. A finished session adds what it measured to
        this machine's rates (`culturesim.study.rates`), from which `culturesim run` estimates wall time.
        """
        self._report_to(progress)
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1 (got {workers})")
        if executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {EXECUTORS} (got {executor!r})")
        if engines is not None and executor != "ray":
            raise ConfigError(f"--engines {engines} sets Ray's engine actors: add --executor ray")
        folder, size = results_dir(config, out_root), size_study(config)
        try:
            with hold_folder(folder) as session:
                done = finished_runs(folder)
                if done and not resume:
                    raise ConfigError(
                        f"{folder} already holds {len(done)} finished run(s); pass --resume to finish the study "
                        "or delete the folder to start again"
                    )
                check_disk(size, out_root)
                identities = _study_engines(config, folder)
                manifest = _start_manifest(folder, config, deviation=deviation, lock=lock, toy=toy, engines=identities)
                execution = Execution(
                    folder,
                    LogPolicy(folder / LOG_FOLDER, engines=identities),
                    frozenset(done),
                    workers=workers,
                    batch_runs=batch_runs,
                    executor=executor,
                    address=address,
                    engines=engines,
                    on_progress=_counted(self.progress, on_progress),
                    session=session,
                )
                before = (dict(manifest["throughput"]), len(manifest["engines"]))
                self._run_groups(config, manifest, execution)
                if not self.engines.backend_injected and executor == "local" and workers == 1:
                    record_run_rates(config, manifest, *before, done=frozenset(done))
        except OSError as exc:
            storage = StorageError.of(exc, disk_only=not _refused_inside(exc, folder))
            if storage is None:
                raise
            raise _sized(storage, size, folder) from exc
        return folder

    def replay(self, source: Path, out: Path, *, config: StudyConfig | None = None) -> Path:
        """Recompute a study from its completion log and stored vectors into `out`, with no model loaded.

        `config` defaults to the study's own; a config whose requests or texts the study never
        made stops with a message naming the first missing one."""
        manifest_in = read_manifest(source)
        config = config or stored_config(manifest_in["config"])
        vectors = StoredVectors.from_folder(source)
        with hold_folder(out) as session:
            if finished_runs(out):
                raise ConfigError(f"{out} already holds a replay; delete it or choose another --out")
            engines = _study_engines(config, source)  # never resolved again: vLLM may be missing here
            lock = manifest_in.get("lock")
            manifest = _start_manifest(out, config, deviation=None, lock=lock, toy=False, engines=engines)
            manifest["replay_of"] = {"folder": str(source), "config_hash": manifest_in["config_hash"]}
            if config == stored_config(manifest_in["config"]):  # the study's own config: its deviations hold
                manifest["deviations"] = manifest_in.get("deviations", [])
            log = LogPolicy(source / LOG_FOLDER, append=False, engines=engines)
            execution = Execution(out, log, vectors=vectors, calibrations_from=source, session=session)
            self._run_groups(config, manifest, execution)
        return out

    def _run_groups(self, config: StudyConfig, manifest: dict[str, Any], execution: Execution) -> None:
        """Each engine group in turn, with its own engines; then the combined tables."""
        folder, plans = execution.folder, plan_runs(config)
        self.engines.started = manifest["engines"]
        stats = Throughput(**{k: v for k, v in manifest["throughput"].items() if k in Throughput.__dataclass_fields__})
        started = time.perf_counter() - stats.wall_seconds
        try:
            # LLM groups first: each calibrates with the engine it then runs on (one start per engine),
            # and human-only groups, measured against an LLM condition's calibration, find it done.
            groups = sorted(engine_groups(config, plans, execution.log.engines), key=lambda g: not g.needs_llm)
            manifest["attractors"] = {}
            for group in groups:
                execution = _record_engine(execution, manifest, group)
                self._calibrations(config, groups, execution, manifest["attractors"], engine=group.engine)
                if execution.executor == "ray" or execution.workers > 1:
                    self.close()  # the workers start their own engines
                batches = plan_batches(group, execution.batch_runs)
                todo = [batch for batch in batches if any(p.run_id not in execution.done for p in batch)]
                skipped = None if RUN_GENERATIONS in self.progress.phases else _skipped(groups, execution)
                self.progress.phase(RUN_GENERATIONS, total=len(plans) * config.study.generations, done=skipped)
                for batch_stats in execute(config, group, todo, execution, self.engines):
                    stats.add(batch_stats)
                    _update_manifest(folder, manifest, stats, started, status="running")
            self.close()
            combine_runs(folder, [p.run_id for p in plans])
            manifest["files"] = {f"{t}.parquet": file_sha256(folder / f"{t}.parquet") for t in RUN_TABLES}
        except BaseException:
            # Keep the error that brought us here: a cleanup that fails as well (the manifest on a full
            # disk, in a removed folder) is skipped, never raised in its place.
            with suppress(Exception):
                self.close()
            with suppress(OSError):
                _update_manifest(folder, manifest, stats, started, status="interrupted")
            raise
        _update_manifest(folder, manifest, stats, started, status="complete")

    def calibrate(
        self, config: StudyConfig, *, force: bool = False, progress: Reporter | None = None
    ) -> list[tuple[dict[str, Any], str]]:
        """Each distinct calibration of a study, from the cache or computed now (always, with
        `force`), as (record, where it came from); `culturesim calibrate`. `progress` as in `run`."""
        self._report_to(progress)
        groups = engine_groups(config, plan_runs(config))
        grid = config.condition_grid()
        found: dict[str, tuple[dict[str, Any], str]] = {}
        for index, spec in study_specs(config, condition_corpora(config)).items():
            if spec.key() not in found:
                found[spec.key()] = self._cached_or_calibrated(grid[index][1], spec, groups, force=force)
        self.close()
        if not self.engines.backend_injected:
            made = [record for record, origin in found.values() if origin == "calibrated"]
            record_calibration_rates(self.engines.started, made)
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
        for index, spec in study_specs(config, condition_corpora(config), execution.log.engines).items():
            key, label = spec.key(), grid[index][0]
            if key in record:
                if label not in record[key]["conditions"]:
                    record[key]["conditions"].append(label)
                continue
            if engine is not None and spec.engine != engine.key():
                continue  # the group with that engine calibrates it
            target = attractor.find_record(execution.folder, spec) or attractor.folder_path(execution.folder, key)
            origin = "results folder"
            if target.exists():
                calibration = attractor.read_record(target)
            elif execution.calibrations_from is not None:
                calibration, origin = attractor.read_record(_replayed(execution.calibrations_from, spec)), "replayed"
            else:
                calibration, origin = self._cached_or_calibrated(grid[index][1], spec, groups)
            if origin != "results folder":
                write_json(calibration, target, inside=execution.folder)
            record[key] = {
                "file": f"{attractor.ATTRACTOR_FOLDER}/{target.name}",
                "from": origin,
                "spec": calibration["spec"],
                "requests": calibration["requests"],
                "seconds": calibration["seconds"],
                "conditions": [label],
            }

    def _cached_or_calibrated(
        self, condition: StudyConfig, spec: attractor.CalibrationSpec, groups: list[EngineGroup], *, force=False
    ) -> tuple[dict[str, Any], str]:
        """One calibration from the user cache, from the package (`culturesim.checks.shipped_attractors`), or
        computed with the engine that answers `condition` and cached; `force` always computes.

        An injected backend (tests) is not the engine its key names, so it neither reads nor fills the cache."""
        cached = attractor.cache_path(spec.key()) if not self.engines.backend_injected else None
        if cached is not None and cached.exists() and not force:
            return attractor.read_record(cached), "cache"
        shipped = shipped_record(spec) if cached is not None and not force else None
        if shipped is not None:
            return shipped, "shipped"
        group = next((g for g in groups if g.engine is not None and g.engine.key() == spec.engine), None)
        group = group or EngineGroup(condition, EngineIdentity.of(condition.llm.engine), ())
        texts = load_corpus(condition.corpus)["text"].to_list()
        backend, vectors = self.engines.backend(group), self.engines.embedder(group)
        self.progress.phase(f"calibrating attractor {spec.role}", total=spec.generations, unit="generation", done=0)
        calibration = attractor.calibrate(spec, backend, vectors, texts, on_generation=self.progress.update)
        if cached is not None:
            write_json(calibration, cached)
        return calibration, "calibrated"


def _refused_inside(exc: OSError, folder: Path) -> bool:
    """Whether the disk refused a file of the results folder (a table, the completion log): there a
    missing folder or a denied permission is the disk's doing; elsewhere only a full or read-only disk
    is (a missing file may be the user's mistake)."""
    name = getattr(exc, "filename", None)
    if name is None or exc.errno not in STORAGE_PROBLEMS:
        return False
    return Path(name).absolute().is_relative_to(Path(folder).absolute())


def _sized(error: StorageError, size: StudySize, folder: Path) -> StorageError:
    """`error` with what a person needs to act on it: the bytes the study's plan still needs (its
    tables, less what `folder` holds already), the bytes free, and that `--resume` continues."""
    total = size.total_bytes
    needed = max(total - folder_bytes(folder), 0)
    # Free space was measured beside the file; outside the results folder (the embedding cache) say where.
    where = folder if error.path.is_relative_to(folder) else error.where
    free = human_bytes(error.free) if error.free >= 0 else "an unknown amount"
    error.space = (
        f"the study needs about {human_bytes(needed)} more by its plan ({human_bytes(total)} in all) "
        f"and the disk of {where} has {free} free"
    )
    # A removed folder's runs are kept only where it is restored; without it, a resume starts over.
    error.then = RESUME + ("" if error.errno == errno.ENOENT else "; the finished runs are kept")
    return error


def _counted(progress: Reporter, also: ProgressFn | None) -> ProgressFn:
    """A run-generations callback that advances `progress` and calls `also`."""

    def counted(steps: int) -> None:
        progress.advance(steps)
        if also is not None:
            also(steps)

    return counted


def _skipped(groups: list[EngineGroup], execution: Execution) -> int:
    """Run-generations a resume skips: those of batches whose runs are all finished."""
    generations = groups[0].config.study.generations  # a study-wide setting: equal in every group
    batches = [b for g in groups for b in plan_batches(g, execution.batch_runs)]
    return generations * sum(len(b) for b in batches if all(p.run_id in execution.done for p in b))


def _replayed(source: Path, spec: attractor.CalibrationSpec) -> Path:
    """A calibration of the replayed folder (a replay never calibrates: it has no engine)."""
    path = attractor.find_record(source, spec)
    if path is None:
        raise attractor.MissingCalibration(
            f"{source} holds no calibration {spec.key()} ({spec.role}, {spec.engine}): a replay measures the "
            "attractor distance only against the study's own calibrations"
        )
    return path


def _study_engines(config: StudyConfig, folder: Path) -> StudyEngines:
    """The engine identities the study in `folder` recorded (none in a new folder); a folder written
    before they were recorded gets those its log entries have by the migration rule."""
    if not (folder / "manifest.json").exists():
        return StudyEngines()
    manifest = read_manifest(folder)
    engines = StudyEngines.from_manifest(manifest)
    if "engine_identities" not in manifest:
        specs = [condition.llm.engine for _, condition in config.condition_grid() if condition.uses_llm()]
        engines = engines.with_legacy(CompletionLog(folder / LOG_FOLDER).load().values(), specs)
    return engines


def _record_engine(execution: Execution, manifest: dict[str, Any], group: EngineGroup) -> Execution:
    """Record in the manifest, before a group runs, the engine identity this machine resolves for it
    (a resume that resolves otherwise adds its own), so that a replay never has to resolve it. A
    replay, a human-only group and a group whose runs are all done record nothing."""
    pending = any(plan.run_id not in execution.done for plan in group.plans)
    if not (group.needs_llm and execution.log.append and pending):
        return execution
    spec = group.config.llm.engine
    engines = execution.log.engines.with_identity(spec, EngineIdentity.of(spec))
    manifest["engine_identities"] = engines.to_manifest()
    write_json(manifest, execution.folder / "manifest.json", inside=execution.folder)
    return replace(execution, log=replace(execution.log, engines=engines))


def _start_manifest(
    folder: Path, config: StudyConfig, *, deviation, lock, toy, engines: StudyEngines
) -> dict[str, Any]:
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
        # Each session (a resume may run elsewhere) records its machine and the devices its parts ran on.
        "sessions": previous.get("sessions", []) + [{**provenance(), "devices": session_devices(config, engines)}],
        "llm": _llm_entry(config, engines) if needs_llm(config) else None,
        "embedder": config.embedding.model,
        "engines": previous.get("engines", []),
        "engine_identities": engines.to_manifest(),
        "runs": [_manifest_run(spec) for spec in plan_runs(config)],
        "throughput": previous.get("throughput", {}),
    }
    write_json(manifest, path, inside=folder)
    write_text(describe(config), folder / ODD_FILE, inside=folder)
    return manifest


def _llm_entry(config: StudyConfig, engines: StudyEngines) -> dict[str, str]:
    """The study's LLM as it ran: the backend resolved ('auto' in the study file is vLLM wherever it is
    installed), beside the setting that asked for it. Conditions with other engines are in
    `engine_identities`."""
    spec = config.llm.engine
    return {"model": spec.model, "backend": engines.identity(spec).backend, "backend_setting": spec.backend}


def _manifest_run(spec: RunSpec) -> dict[str, Any]:
    """A run's manifest entry: its identity, with the seed as the SeedSequence that makes its streams."""
    entry = asdict(spec)
    entry["seed"] = {"entropy": entry.pop("study_seed"), "spawn_key": [spec.replicate]}
    return entry


def _update_manifest(folder, manifest, stats, started, *, status: str) -> None:
    done = finished_runs(folder)
    for run in manifest["runs"]:
        run["status"] = "complete" if run["run_id"] in done else "pending"
    stats.wall_seconds = time.perf_counter() - started
    manifest["status"] = status
    manifest["throughput"] = stats.summary()
    manifest["updated"] = datetime.now(UTC).isoformat()
    write_json(manifest, folder / "manifest.json", inside=folder)
