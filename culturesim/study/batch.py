"""One lockstep batch of runs: build them, advance them generation by generation, write them.

Every executor (this process, a process pool, a Ray task) and every mode (run, resume,
replay) runs a batch through `run_batch`; they differ only in where completions and
vectors come from. A batch's runs share one engine group (see `culturesim.study.grid`),
so all their LLM requests of a generation go to one engine in one call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from culturesim.calibration.attractor import load_attractors
from culturesim.core.fingerprint import weights_digest
from culturesim.core.settings import cache_root, disk_cache_enabled
from culturesim.parts.embed import Embedder, resolve_embedder
from culturesim.parts.engine_identity import EngineIdentity, StudyEngines
from culturesim.parts.llm.base import Backend
from culturesim.schema.config import ConfigError, EmbeddingSection, StudyConfig
from culturesim.simulation.completions import CompletionLog, CompletionSource
from culturesim.simulation.conventions import build_convention_run
from culturesim.simulation.generation import Throughput, VectorSource, run_generations
from culturesim.simulation.model import CultureModel, RunSpec, build_run
from culturesim.study.adapter_store import AdapterStore
from culturesim.study.model_probe import ModelProbe
from culturesim.study.planner import StudyPlan
from culturesim.study.retraining import Retrainer, TrainingProgress
from culturesim.study.tables import run_vectors, write_run

ProgressFn = Callable[[int], None]  # called with the number of run-generations just completed


@dataclass(frozen=True)
class LogPolicy:
    """The completion log of a batch: the JSON Lines files under `folder` answer first; the
    engine's new answers are appended there when `append` is true (false for a replay). `engines`:
    the identities the study's engines ran with (from its manifest), whose answers the log gives
    and which name its calibrations, wherever the batch runs."""

    folder: Path
    append: bool = True
    engines: StudyEngines = field(default_factory=StudyEngines)


def group_embedder(spec: EmbeddingSection) -> Embedder:
    """An embedder with the disk cache under the user cache, unless CULTURESIM_NO_DISK_CACHE is set
    (vectors are bit-identical either way; the cache only saves time)."""
    cache = cache_root() / "embeddings" if disk_cache_enabled() else None
    return Embedder(spec, cache_dir=cache)


def run_batch(
    plan: StudyPlan,
    plans: tuple[RunSpec, ...] | list[RunSpec],
    folder: Path,
    *,
    vectors: VectorSource,
    log: LogPolicy,
    engine: Callable[[], Backend] | None,
    skip: set[str] = frozenset(),
    on_progress: ProgressFn | None = None,
    on_training: TrainingProgress | None = None,
) -> dict[str, float]:
    """Advance the runs `plans` of `plan` (one lockstep batch of one engine group) together, then write
    each unfinished run's tables and done marker.

    `engine` starts (or returns) the batch's LLM engine when the log lacks an answer; None
    means the log must answer everything (replay): its retrainings are read from the results folder,
    never trained. `on_training` is told of each retraining's optimizer steps."""
    group = plan.condition(plans[0].condition_index)
    uses_llm = any(plan.condition(run.condition_index).uses_llm() for run in plans)
    source = _source(group, plans, log, engine) if uses_llm else None
    stats = Throughput()
    conditions = {run.condition_index for run in plans}
    specs = {i: c.spec for i in conditions if (c := plan.calibration_of(i)) is not None}
    models, poles = _build_models(plan, plans, vectors, load_attractors(folder, specs))
    probe = ModelProbe(source, vectors) if source is not None else None
    retrainer = Retrainer(
        plan, plans, AdapterStore(folder), train=engine is not None, on_progress=on_training, probe=probe
    )
    retrainer.prepare(models)
    logs = run_generations(
        models,
        plan.config.study.generations,
        source=source,
        vectors=vectors,
        stats=stats,
        on_generation=None if on_progress is None else (lambda _: on_progress(len(models))),
        updates=retrainer or None,
    )
    vectors.save()
    stats.training_seconds += retrainer.seconds
    stats.training_texts += retrainer.texts
    digests = _model_digests(group, source)
    for model, log, extra in zip(models, logs, poles, strict=True):
        if model.spec.run_id not in skip:
            texts = [*extra, *retrainer.probe_texts(model.spec.run_id)]
            write_run(folder, model, log, run_vectors(model, texts, vectors.embed), models=digests)
    return asdict(stats)


def _source(group: StudyConfig, plans: list[RunSpec], policy: LogPolicy, engine) -> CompletionSource:
    """The batch's completions: logged under the engine that answers here (resolved on this machine),
    and answered by the log under every identity the study recorded for these settings. A replay
    resolves nothing: it names the engine that last ran (vLLM may be missing here)."""
    spec, log = group.llm.engine, CompletionLog(policy.folder)
    recorded = policy.engines.identities(spec)
    identity = recorded[-1] if engine is None and recorded else EngineIdentity.of(spec)
    return CompletionSource(
        engine=identity,
        known=log.load(legacy=spec, legacy_device=policy.engines.legacy_device),
        accepts=tuple(i for i in recorded if i != identity),
        log=log if policy.append else None,
        log_name=plans[0].run_id,
        start_engine=engine,
    )


def _build_models(
    plan: StudyPlan, runs: tuple[RunSpec, ...] | list[RunSpec], vectors: VectorSource, attractors: dict[int, Any]
) -> tuple[list[CultureModel], list[list[str]]]:
    """The batch's runs, and per run the pole sentences its axes were embedded from."""
    models, poles = [], []
    for run in runs:
        condition = plan.condition(run.condition_index)
        if condition.study.interaction == "coordination":
            models.append(build_convention_run(condition, run, dim=vectors.dim))
            poles.append([])
            continue
        axes = {name: p for name, p in condition.metrics.norm_axes.items()}
        content = condition.humans.content_axis
        models.append(
            build_run(
                condition,
                run,
                corpus=list(plan.corpora[run.condition_index]),
                dim=vectors.dim,
                content_axis=_axis(vectors, content),
                norm_axes={name: _axis(vectors, p) for name, p in axes.items()},
                attractor=attractors.get(run.condition_index),
            )
        )
        poles.append([t for pair in [content, *axes.values()] if pair is not None for t in pair])
    return models, poles


def _axis(vectors: VectorSource, poles: tuple[str, str] | None):
    """Axis between two pole sentences: e(positive) - e(negative)."""
    if poles is None:
        return None
    positive, negative = vectors.embed(list(poles))
    return positive - negative


def _model_digests(group: StudyConfig, source: CompletionSource | None) -> dict[str, Any]:
    """Which models made a run: embedder weights, and the LLM engine where one was asked."""
    digests: dict[str, Any] = {"embedder": {"model": group.embedding.model}}
    try:
        digests["embedder"]["weights"] = weights_digest(resolve_embedder(group.embedding.model))
    except ConfigError as exc:  # a replay may run where the embedder is not installed
        digests["embedder"]["weights"] = f"unavailable: {exc}"
    if source is not None:
        digests["llm"] = {
            "engine_key": source.engine.key(),
            "model_id": group.llm.engine.model,
            "dtype": group.llm.engine.dtype,
        }
    return digests
