"""Ray executor: lockstep batches as Ray tasks, LLM engines held in Ray actors.

Each batch of runs becomes a task (its own embedder, its own models); every LLM call of
a task goes to an engine actor, so batches from many workers feed the same engines.
One engine actor per GPU, or one in total on a CPU-only cluster, for one engine group at
a time. Results are identical to the local executor: a batch's randomness, requests and
vectors do not depend on where it runs. Ray retries a task whose worker dies; the retried
batch answers what the dead one logged from the completion log and rewrites identical files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from culturesim.config import ConfigError, LLMSection, StudyConfig
from culturesim.llm.base import Completion, Request
from culturesim.study.batch import LogPolicy, group_embedder, run_batch
from culturesim.study.groups import EngineGroup, engine_groups

TASK_RETRIES = 3
ENGINE_CLOSE_TIMEOUT_S = 120  # seconds to wait for the engine actors to shut down


def _ray():
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

    def __init__(self, spec: LLMSection, seed: int) -> None:
        from culturesim.llm import create_backend

        self._backend = create_backend(spec, seed=seed)

    def identity(self) -> tuple[str, str]:
        return self._backend.model_id, self._backend.engine_version

    def generate(self, requests: list[Request]) -> list[Completion]:
        return self._backend.generate(requests)

    def close(self) -> None:
        self._backend.close()


def _run_batch_task(
    config_json: str, plans: list, folder: str, skip: set[str], log: LogPolicy, engine: Any
) -> dict[str, float]:
    config = StudyConfig.model_validate_json(config_json)
    [group] = engine_groups(config, plans)
    proxy = None if engine is None else EngineProxy(engine, *_ray().get(engine.identity.remote()))
    return run_batch(
        config,
        plans,
        Path(folder),
        vectors=group_embedder(group.config.embedding),
        log=log,
        engine=None if proxy is None else (lambda: proxy),
        skip=skip,
    )


def run_on_ray(
    config: StudyConfig,
    group: EngineGroup,
    batches: list[list],
    folder: Path,
    skip: set[str],
    log: LogPolicy,
    *,
    address: str | None,
) -> Iterator[tuple[list, dict[str, float]]]:
    """Yield (batch, throughput counters) as Ray tasks finish; starts a local Ray without an address."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        local = {} if address else {"num_cpus": len(os.sched_getaffinity(0)), "_node_ip_address": "127.0.0.1"}
        ray.init(
            address=address,
            **local,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    engines: list[Any] = []
    try:
        if group.needs_llm:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            host = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1)(EngineHost)
            engines = [host.remote(group.config.llm, config.study.seed) for _ in range(max(gpus, 1))]
        task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_run_batch_task)
        config_json = config.model_dump_json()
        pending = {
            task.remote(
                config_json, batch, str(folder), skip, log, engines[i % len(engines)] if engines else None
            ): batch
            for i, batch in enumerate(batches)
        }
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done), ray.get(done)
    finally:
        # Wait for the engines to close without raising: an error closing one must not hide the
        # error that brought us here (ray.wait never raises a task's error).
        closing = [engine.close.remote() for engine in engines]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=ENGINE_CLOSE_TIMEOUT_S)
        if started_here:
            ray.shutdown()
