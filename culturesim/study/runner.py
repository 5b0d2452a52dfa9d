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
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from culturesim.calibration import attractor
from culturesim.calibration.sources import CALIBRATED, RESULTS_FOLDER, read_located
from culturesim.core.fingerprint import file_sha256
from culturesim.core.progress import RUN_GENERATIONS, Reporter
from culturesim.parts.embed import Embedder
from culturesim.parts.engine_identity import StudyEngines
from culturesim.parts.llm import Backend
from culturesim.parts.vectors import StoredVectors
from culturesim.schema.config import ConfigError, StudyConfig, stored_config
from culturesim.simulation.generation import Throughput
from culturesim.simulation.model import RunSpec
from culturesim.study.adapter_store import AdapterStore
from culturesim.study.batch import LogPolicy, ProgressFn
from culturesim.study.executors import EXECUTORS, Execution, GroupEngines, execute
from culturesim.study.holder import hold_folder
from culturesim.study.odd import describe
from culturesim.study.planner import LOG_FOLDER, PlannedCalibration, StudyPlan, plan_study
from culturesim.study.provenance import provenance, session_devices
from culturesim.study.rates import record_calibration_rates, record_run_rates
from culturesim.study.sizing import StudySize, check_disk, human_bytes
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

ODD_FILE = "odd.md"  # the study's ODD protocol description (culturesim.study.odd)
RESUME = "then `culturesim run STUDY --resume` continues where it stopped"


class StudyRunner:
    """Runs a study's plan (`culturesim.study.planner.StudyPlan`): its engine groups one after another,
    each group's calibrations obtained with the engines (`GroupEngines`) its batches then run on,
    and keeps the manifest.

    An injected `embedder` or `backend` (tests share one per session) is used for every group
    and never closed here; an injected backend is not the engine its key names, so its plans
    neither read nor fill the user's calibration cache."""

    def __init__(self, *, embedder: Embedder | None = None, backend: Backend | None = None) -> None:
        self.engines = GroupEngines(embedder=embedder, backend=backend)
        self.progress = Reporter()  # what `run` and `calibrate` report to (a display, or nothing)

    def _report_to(self, progress: Reporter | None) -> None:
        """Send the phases of the next `run` or `calibrate` to `progress` (None: to no display)."""
        self.progress = self.engines.progress = progress or Reporter()

    def close(self) -> None:
        """Stop the running group's engine, if any."""
        self.engines.close()

    def plan(
        self, config: StudyConfig, *, out_root: Path | None = None, batch_runs: int | None = None, force: bool = False
    ) -> StudyPlan:
        """The plan of `config` for its results folder under `out_root` (None: a plan with no folder, as
        `culturesim calibrate` makes); `force` computes every calibration anew."""
        folder = None if out_root is None else results_dir(config, out_root)
        use_cache = not self.engines.backend_injected
        return plan_study(config, folder=folder, batch_runs=batch_runs, use_cache=use_cache, force_calibration=force)

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
        plan: StudyPlan | None = None,
    ) -> Path:
        """Plan `config` (or take `plan`, made by `StudyRunner.plan` for it), run every pending condition x
        replicate and write the results folder; returns its path.

        `executor`, `address` and `engines` choose where batches run (`culturesim.study.executors.Execution`).
        `progress` is told of calibrations, engine starts and run-generations (`culturesim.core.progress`);
        `on_progress(n)` of each n run-generations done. A finished session adds what it measured to
        this machine's rates (`culturesim.study.rates`), from which the plan estimates wall time.
        """
        self._report_to(progress)
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1 (got {workers})")
        if executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {EXECUTORS} (got {executor!r})")
        if engines is not None and executor != "ray":
            raise ConfigError(f"--engines {engines} sets Ray's engine actors: add --executor ray")
        folder = results_dir(config, out_root)
        plan = plan or self.plan(config, out_root=out_root, batch_runs=batch_runs)
        if plan.config != config or plan.folder != folder:
            raise ValueError("the plan handed to StudyRunner.run was made for another study or results folder")
        try:
            with hold_folder(folder) as session:
                if frozenset(finished_runs(folder)) != plan.done:
                    raise ConfigError(
                        f"{folder} changed after the study was planned (another process finished runs there); "
                        "run the command again"
                    )
                if plan.done and not resume:
                    raise ConfigError(
                        f"{folder} already holds {len(plan.done)} finished run(s); pass --resume to finish the study "
                        "or delete the folder to start again"
                    )
                check_disk(plan.size, out_root)
                manifest = _start_manifest(folder, plan, deviation=deviation, lock=lock, toy=toy)
                execution = Execution(
                    folder,
                    LogPolicy(folder / LOG_FOLDER, engines=plan.engines),
                    workers=workers,
                    executor=executor,
                    address=address,
                    engines=engines,
                    on_progress=_counted(self.progress, on_progress),
                    session=session,
                )
                before = (dict(manifest["throughput"]), len(manifest["engines"]))
                self._run_groups(plan, manifest, execution)
                if not self.engines.backend_injected and executor == "local" and workers == 1:
                    record_run_rates(plan, manifest, *before)
        except OSError as exc:
            storage = StorageError.of(exc, disk_only=not _refused_inside(exc, folder))
            if storage is None:
                raise
            raise _sized(storage, plan.size, folder) from exc
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
            # The study's engines and calibrations, never resolved or computed again: vLLM may be missing here.
            plan = plan_study(config, folder=out, replay_of=source, use_cache=False)
            manifest = _start_manifest(out, plan, deviation=None, lock=manifest_in.get("lock"), toy=False)
            manifest["replay_of"] = {"folder": str(source), "config_hash": manifest_in["config_hash"]}
            if config == stored_config(manifest_in["config"]):  # the study's own config: its deviations hold
                manifest["deviations"] = manifest_in.get("deviations", [])
            log = LogPolicy(source / LOG_FOLDER, append=False, engines=plan.engines)
            AdapterStore(out).copy_from(AdapterStore(source))  # read, never trained: no torch, no model
            self._run_groups(plan, manifest, Execution(out, log, vectors=vectors, session=session))
        return out

    def _run_groups(self, plan: StudyPlan, manifest: dict[str, Any], execution: Execution) -> None:
        """Each engine group of the plan in turn, with its own engines; then the combined tables."""
        folder = execution.folder
        self.engines.started = manifest["engines"]
        stats = Throughput(**{k: v for k, v in manifest["throughput"].items() if k in Throughput.__dataclass_fields__})
        started = time.perf_counter() - stats.wall_seconds
        try:
            manifest["attractors"] = {}
            for index, group in enumerate(plan.groups):
                for calibration in plan.group_calibrations(index):
                    manifest["attractors"][calibration.spec.key()] = self._place_calibration(plan, calibration, folder)
                if execution.executor == "ray" or execution.workers > 1:
                    self.close()  # the workers start their own engines
                skipped = None if RUN_GENERATIONS in self.progress.phases else plan.skipped_run_generations()
                total = len(plan.runs) * plan.config.study.generations
                self.progress.phase(RUN_GENERATIONS, total=total, done=skipped)
                for batch_stats in execute(plan, group, execution, self.engines):
                    stats.add(batch_stats)
                    _update_manifest(folder, manifest, stats, started, status="running")
            self.close()
            combine_runs(folder, [run.run_id for run in plan.runs])
            manifest["files"] = {f"{t}.parquet": file_sha256(folder / f"{t}.parquet") for t in RUN_TABLES}
            if plan.config.retrains():
                manifest["adapters"] = AdapterStore(folder).summary()
        except BaseException:
            # Keep the error that brought us here: a cleanup that fails as well (the manifest on a full
            # disk, in a removed folder) is skipped, never raised in its place.
            with suppress(Exception):
                self.close()
            with suppress(OSError):
                _update_manifest(folder, manifest, stats, started, status="interrupted")
            raise
        _update_manifest(folder, manifest, stats, started, status="complete")

    def calibrate(self, plan: StudyPlan, *, progress: Reporter | None = None) -> list[tuple[dict[str, Any], str]]:
        """Each distinct calibration of a plan (`StudyRunner.plan`, `force` to compute every one anew),
        from where the plan found it or computed now, as (record, where it came from); `culturesim calibrate`.
        `progress` as in `run`."""
        self._report_to(progress)
        found = [self._obtain(plan, calibration) for calibration in plan.calibrations]
        self.close()
        if not self.engines.backend_injected:
            made = [record for record, origin in found if origin == CALIBRATED]
            record_calibration_rates(self.engines.started, made)
        return found

    def _place_calibration(self, plan: StudyPlan, calibration: PlannedCalibration, folder: Path) -> dict[str, Any]:
        """Put one calibration into the results folder before the group that uses it runs (unless the
        folder holds it); returns its manifest entry, which names where it really came from."""
        record, origin = self._obtain(plan, calibration)
        target = attractor.find_record(folder, calibration.spec) or attractor.folder_path(
            folder, calibration.spec.key()
        )
        if origin != RESULTS_FOLDER:
            write_json(record, target, inside=folder)
        return {
            "file": f"{attractor.ATTRACTOR_FOLDER}/{target.name}",
            "from": origin,
            "spec": record["spec"],
            "requests": record["requests"],
            "seconds": record["seconds"],
            "conditions": [plan.conditions[i][0] for i in calibration.conditions],
        }

    def _obtain(self, plan: StudyPlan, calibration: PlannedCalibration) -> tuple[dict[str, Any], str]:
        """One calibration from where the plan found it, else computed with the engine of the group that
        makes it (and cached, unless the plan keeps out of the cache)."""
        spec = calibration.spec
        found = read_located(spec, calibration.source, folder=plan.folder, replay_of=plan.replay_of)
        if found is not None:
            return found, calibration.source
        group = plan.groups[calibration.group]
        backend, vectors = self.engines.backend(group), self.engines.embedder(group)
        self.progress.phase(f"calibrating attractor {spec.role}", total=spec.generations, unit="generation", done=0)
        texts = list(plan.corpora[calibration.condition])
        record = attractor.calibrate(spec, backend, vectors, texts, on_generation=self.progress.update)
        if plan.use_cache:
            write_json(record, attractor.cache_path(spec.key()))
        return record, CALIBRATED


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


def _start_manifest(folder: Path, plan: StudyPlan, *, deviation, lock, toy) -> dict[str, Any]:
    """The manifest of a session of `plan`: what an earlier session of the folder recorded, and this
    session's machine, plan and engine identities; written with the ODD description."""
    config, engines = plan.config, plan.engines
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
        "llm": _llm_entry(config, engines) if plan.needs_llm else None,
        "embedder": config.embedding.model,
        "engines": previous.get("engines", []),
        "engine_identities": engines.to_manifest(),
        "runs": [_manifest_run(spec) for spec in plan.runs],
        "plan": plan.summary(),
        "throughput": previous.get("throughput", {}),
    }
    write_json(manifest, path, inside=folder)
    write_text(describe(plan), folder / ODD_FILE, inside=folder)
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
    entry["levels"] = dict(spec.levels)
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
