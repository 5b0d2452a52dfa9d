"""Where a group's lockstep batches run: in this process, in a process pool, or as Ray tasks.

Every executor runs a batch through `culturesim.study.batch.run_batch` and yields its
throughput counters as it finishes; results are identical whichever runs it, since a batch's
randomness, requests and vectors do not depend on where it runs. In this process the batches
share the engines of `GroupEngines` (the ones the runner's calibration started); a pool worker
starts its own. On Ray each batch becomes a task (its own embedder, its own models) whose LLM
calls go to engine actors, one per GPU or one in total on a CPU-only cluster, so batches
from many workers feed the same engines. Ray retries a task whose worker dies; the retried
batch answers what the dead one logged from the completion log and rewrites identical files.

A pool worker or a Ray task writes its runs' tables and log entries into the results folder
itself, so each holds the folder for its study while it runs (`study.holder.hold_as_worker`,
with the session token of the driver's hold). A worker's StorageError or FolderHeldError
reaches the driver as itself (Ray's wrapper, with the remote traceback, is taken off), so
every executor stops with the same one-line message.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from culturesim.core.progress import RUN_GENERATIONS, Reporter
from culturesim.parts.embed import Embedder
from culturesim.parts.llm import create_backend
from culturesim.parts.llm.base import Backend, Completion, Request
from culturesim.schema.config import ConfigError
from culturesim.schema.llm_section import EngineSection
from culturesim.simulation.generation import VectorSource
from culturesim.simulation.model import RunSpec
from culturesim.study.batch import LogPolicy, ProgressFn, group_embedder, run_batch
from culturesim.study.grid import EngineGroup
from culturesim.study.holder import FolderHeldError, hold_as_worker
from culturesim.study.planner import StudyPlan
from culturesim.study.retraining import TrainingProgress

EXECUTORS = ("local", "ray")
TASK_RETRIES = 3
ENGINE_CLOSE_TIMEOUT_S = 120  # seconds to wait for the engine actors to shut down


@dataclass(frozen=True)
class Execution:
    """How one `run` or `replay` executes: into which folder, from which log, how parallel.

    `vectors`: stored vectors (a replay, which also asks no engine); None: each group's embedder.
    `executor` "local" runs batches here (workers = 1) or in a process pool; "ray" runs them as
    Ray tasks on the cluster at `address` (a local Ray instance without one)."""

    folder: Path
    log: LogPolicy
    vectors: VectorSource | None = None
    workers: int = 1
    executor: str = "local"
    address: str | None = None
    engines: int | None = None  # Ray engine actors for an LLM group (None: one per GPU, one on a CPU cluster)
    on_progress: ProgressFn | None = None
    session: str | None = None  # the driver's hold on `folder` (study.holder), which its workers check


class GroupEngines:
    """The engines of the group being run (one LLM backend, one embedder), started on first need.

    An injected `embedder` or `backend` (tests share one per session) is used for every group
    and never closed here. `started` lists the engines in start order, for the manifest."""

    def __init__(self, *, embedder: Embedder | None = None, backend: Backend | None = None) -> None:
        self._shared_embedder = embedder
        self._shared_backend = backend
        self._embedder: Embedder | None = None
        self._backend: Backend | None = None
        self.started: list[dict[str, str]] = []
        self.progress = Reporter()  # the runner's display; told when an engine starts (minutes on a CPU)

    @property
    def backend_injected(self) -> bool:
        return self._shared_backend is not None

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
        if self._backend is not None and self.started[-1]["engine"] != group.engine.key():
            self.close()
        if self._backend is None:
            self.started.append({"engine": group.engine.key(), "started": datetime.now(UTC).isoformat()})
            with self.progress.engine_start(f"{group.engine.backend}/{group.engine.model}"):
                self._backend = create_backend(
                    group.config.llm.engine,
                    seed=group.config.study.seed,
                    lora_rank=group.lora_rank,
                    max_loras=max((len(b) for b in group.batches), default=1),
                )
            self.started[-1]["ready"] = datetime.now(UTC).isoformat()  # start seconds: measured rates
        return self._backend

    def starter(self, group: EngineGroup) -> Callable[[], Backend]:
        """An engine factory for `run_batch`: the group's engine, started when the log lacks an answer."""
        return lambda: self.backend(group)

    def close(self) -> None:
        """Stop the group's engine; one engine is alive at a time."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None
            self.started[-1]["stopped"] = datetime.now(UTC).isoformat()


def execute(
    plan: StudyPlan, group: EngineGroup, execution: Execution, engines: GroupEngines
) -> Iterator[dict[str, float]]:
    """Yield each finished batch's throughput counters, running the group's pending batches (those
    with an unfinished run, `StudyPlan.pending`) here, in a pool or on Ray.

    A batch with any unfinished run is rerun whole (its logged requests come from the log)
    and only its unfinished runs are written. `engines` serve the batches run here."""
    folder, done, log, progress = execution.folder, set(plan.done), execution.log, execution.on_progress
    generations, batches = plan.config.study.generations, plan.pending(group)
    if execution.executor == "ray":
        ray_batches = run_on_ray(
            plan,
            group,
            batches,
            folder,
            done,
            log,
            address=execution.address,
            engines=execution.engines,
            session=execution.session,
        )
        for batch, batch_stats in ray_batches:
            if progress is not None:
                progress(len(batch) * generations)
            yield batch_stats
        return
    if execution.workers == 1:
        vectors = execution.vectors or engines.embedder(group)
        engine = None if execution.vectors is not None else engines.starter(group)
        for batch in batches:
            yield run_batch(
                plan,
                batch,
                folder,
                vectors=vectors,
                log=log,
                engine=engine,
                skip=done,
                on_progress=progress,
                on_training=_training_display(engines.progress),
            )
        return
    context = multiprocessing.get_context("spawn")
    session = execution.session
    with ProcessPoolExecutor(max_workers=execution.workers, mp_context=context) as pool:
        futures = {
            pool.submit(_run_batch_in_worker, plan, group, batch, str(folder), done, log, session): batch
            for batch in batches
        }
        try:
            for future in as_completed(futures):
                if progress is not None:
                    progress(len(futures[future]) * generations)
                yield future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)  # start no batch after one failed (its cause, a full disk, stays)
            raise


def _training_display(progress: Reporter) -> TrainingProgress:
    """Show each phase of the model's side (a retraining's optimizer steps, the base model's scoring,
    a probe's retellings) as a phase of its own, then go back to the generations."""

    def show(phase: str, done: int, total: int) -> None:
        if done == 0:  # a new phase, timed from here
            progress.phase(phase, total=total, unit="step", done=0)
        else:
            progress.update(done)
        if done == total:
            progress.phase(RUN_GENERATIONS)

    return show


def _run_batch_in_worker(
    plan: StudyPlan,
    group: EngineGroup,
    plans: tuple[RunSpec, ...],
    folder: str,
    skip: set[str],
    log: LogPolicy,
    session: str | None,
) -> dict[str, float]:
    """Process-pool entry point: fresh engines (the worker's own) for one batch of `group`, written
    while the study that sent it (`session`) still holds the folder."""
    engines = GroupEngines()
    try:
        with hold_as_worker(Path(folder), session):
            return run_batch(
                plan,
                plans,
                Path(folder),
                vectors=engines.embedder(group),
                log=log,
                engine=engines.starter(group),
                skip=skip,
            )
    finally:
        engines.close()


# -- Ray --------------------------------------------------------------------------------------------
def _ray():
    """Ray, imported on first use: it is an optional extra."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'culturesim[ray]'") from None
    return ray


class EngineProxy:
    """The batch protocol, answered by a remote engine actor."""

    def __init__(self, actor: Any, model_id: str, engine_version: str) -> None:
        self._actor, self.model_id, self.engine_version = actor, model_id, engine_version

    def generate(self, requests: list[Request]) -> list[Completion]:
        return _ray().get(self._actor.generate.remote(requests))

    def close(self) -> None:
        """The actor outlives the task; the executor shuts it down."""


class EngineHost:
    """Actor body: one LLM backend, started once, answering batches from many tasks."""

    def __init__(self, spec: EngineSection, seed: int, lora_rank: int = 0, max_loras: int = 8) -> None:
        self._backend = create_backend(spec, seed=seed, lora_rank=lora_rank, max_loras=max_loras)

    def identity(self) -> tuple[str, str]:
        return self._backend.model_id, self._backend.engine_version

    def generate(self, requests: list[Request]) -> list[Completion]:
        return self._backend.generate(requests)

    def close(self) -> None:
        self._backend.close()


def _run_batch_task(
    plan: StudyPlan,
    group: EngineGroup,
    plans: tuple[RunSpec, ...],
    folder: str,
    skip: set[str],
    log: LogPolicy,
    engine: Any,
    session: str | None,
) -> dict[str, float]:
    """Ray task body: one batch of `group`, its LLM calls to the engine actor `engine` (None: a
    human-only group), written while the study that sent it (`session`) still holds the folder."""
    with hold_as_worker(Path(folder), session):
        proxy = None if engine is None else EngineProxy(engine, *_ray().get(engine.identity.remote()))
        return run_batch(
            plan,
            plans,
            Path(folder),
            vectors=group_embedder(group.config.embedding),
            log=log,
            engine=None if proxy is None else (lambda: proxy),
            skip=skip,
        )


def run_on_ray(
    plan: StudyPlan,
    group: EngineGroup,
    batches: list[tuple[RunSpec, ...]],
    folder: Path,
    skip: set[str],
    log: LogPolicy,
    *,
    address: str | None,
    engines: int | None = None,
    session: str | None,
) -> Iterator[tuple[list[RunSpec], dict[str, float]]]:
    """Yield (batch, throughput counters) as Ray tasks finish; starts a local Ray without an address.

    An LLM group gets `engines` engine actors (None: one per GPU, one on a CPU-only cluster), and
    batches go to them in turn. A group that is one lockstep batch (the default for LLM studies) is
    cut into as many lockstep batches as there are actors, so every actor works: a seeded float32
    request gets the same answer whatever its batch, so the bytes are the local executor's. Each
    task writes its runs while `session` (the driver's hold on `folder`) is the folder's holder."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        # Locally, each engine actor's CPU is counted on top of the machine's: an engine reserves one
        # CPU for its lifetime, and without this two engines on two cores would leave no CPU to tasks.
        cpus = len(os.sched_getaffinity(0)) + (engines or 1)
        local = {} if address else {"num_cpus": cpus, "_node_ip_address": "127.0.0.1"}
        ray.init(
            address=address,
            **local,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    actors: list[Any] = []
    try:
        if group.needs_llm:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            count = engines or max(gpus, 1)
            host = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1)(EngineHost)
            loras = max((len(b) for b in batches), default=1)
            actors = [
                host.remote(group.config.llm.engine, plan.config.study.seed, group.lora_rank, loras)
                for _ in range(count)
            ]
            if len(batches) == 1 and count > 1:
                batches = split_batch(batches[0], count)
        task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_run_batch_task)
        shared = ray.put(plan)  # sent once, not once per task
        pending = {
            task.remote(
                shared, group, batch, str(folder), skip, log, actors[i % len(actors)] if actors else None, session
            ): batch
            for i, batch in enumerate(batches)
        }
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done), _task_result(ray, done)
    finally:
        # Wait for the engines to close without raising: an error closing one must not hide the
        # error that brought us here (ray.wait never raises a task's error).
        closing = [actor.close.remote() for actor in actors]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=ENGINE_CLOSE_TIMEOUT_S)
        if started_here:
            ray.shutdown()


def _task_result(ray: Any, ref: Any) -> dict[str, float]:
    """A finished task's counters; a task that failed on the disk (OSError, StorageError) or on the
    folder's hold raises that error itself, as in this process, not Ray's wrapper of it."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, (OSError, FolderHeldError)):
            raise exc.cause from None
        raise


def split_batch(batch: tuple[RunSpec, ...], parts: int) -> list[tuple[RunSpec, ...]]:
    """`batch` cut into at most `parts` contiguous lockstep batches of near-equal size, in run order."""
    size = -(-len(batch) // parts)
    return [batch[i : i + size] for i in range(0, len(batch), size)]
