"""Plan a study once: the one immutable `StudyPlan` that every part of running it reads.

A study file says what to run; the plan says how it will run here: its conditions and runs
(`RunSpec`), the engine groups and their lockstep batches (`culturesim.study.grid`), every
attractor calibration with where it will come from and what it costs
(`culturesim.calibration.sources`), each condition's corpus, the sizes of its tables
(`culturesim.study.sizing`) and the wall time this machine's rates predict
(`culturesim.study.rates`). `plan_study` is the only caller of the derivations that make these
(`plan_runs`, `engine_groups`, `study_specs`, `condition_corpora`, `size_study`, `estimate_wall`;
`tests/test_plan_once.py` fails on any other), so `run`, `--dry-run`, `describe`, `status`,
`calibrate`, the executors, the batches, the rates and the reports all see the same plan, and a
dry run prints exactly what a run executes (as Mesa's `batch_run` and Snakemake plan a grid once).

A plan is built from the config and the state of the results folder it will write (finished
runs, the engine identities its manifest recorded, the calibrations it holds) and never changes:
a study that finds the folder changed between planning and holding it stops rather than re-plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from culturesim.calibration.attractor import CalibrationSpec, study_specs
from culturesim.calibration.sources import CALIBRATED, locate
from culturesim.parts.engine_identity import EngineIdentity, StudyEngines
from culturesim.schema.config import StudyConfig
from culturesim.simulation.completions import CompletionLog
from culturesim.simulation.model import RunSpec
from culturesim.study.grid import EngineGroup, condition_corpora, engine_groups, plan_runs
from culturesim.study.rates import WallEstimate, estimate_wall, machine_rates
from culturesim.study.sizing import StudySize, size_study
from culturesim.study.store import finished_runs, read_manifest

LOG_FOLDER = "log"  # the completion log's folder inside a results folder


@dataclass(frozen=True)
class PlannedCalibration:
    """One distinct attractor calibration: its `spec`, the conditions measured against it (grid
    indices), the condition whose settings and corpus it is made from, the engine group that makes
    or fetches it (index into `StudyPlan.groups`), where it comes from (`calibration.sources.SOURCES`)
    and its cost in LLM requests (chains x generations where it is computed, else 0)."""

    spec: CalibrationSpec
    conditions: tuple[int, ...]
    condition: int
    group: int
    source: str
    requests: int


@dataclass(frozen=True)
class StudyPlan:
    """Everything decided about a study before it runs (see the module docstring). Frozen, and made of
    tuples and frozen records only: a plan is handed down (to pool workers and Ray tasks too, pickled),
    never changed.

    `folder`: the results folder it writes (None: a plan with no folder, e.g. `culturesim calibrate`);
    `replay_of`: the folder a replay recomputes; `done`: runs the folder had finished; `engines`: the
    engine identities each LLM setting runs with (recorded, else resolved on this machine);
    `use_cache`: whether calibrations are read from and written to the user cache."""

    config: StudyConfig
    conditions: tuple[tuple[str, StudyConfig], ...]
    runs: tuple[RunSpec, ...]
    groups: tuple[EngineGroup, ...]
    calibrations: tuple[PlannedCalibration, ...]
    corpora: tuple[tuple[str, ...], ...]  # per condition (grid order): its corpus texts
    engines: StudyEngines
    size: StudySize
    estimate: WallEstimate
    folder: Path | None = None
    replay_of: Path | None = None
    done: frozenset[str] = frozenset()
    batch_runs: int | None = None
    use_cache: bool = True

    @property
    def needs_llm(self) -> bool:
        """Whether any condition asks an LLM."""
        return any(group.needs_llm for group in self.groups)

    def condition(self, index: int) -> StudyConfig:
        """The config of condition `index` (grid order)."""
        return self.conditions[index][1]

    def calibration_of(self, condition: int) -> PlannedCalibration | None:
        """The calibration condition `condition` is measured against (None: a study without one)."""
        return next((c for c in self.calibrations if condition in c.conditions), None)

    def group_calibrations(self, group: int) -> tuple[PlannedCalibration, ...]:
        """The calibrations group `group` makes or fetches with its engine, before its batches run."""
        return tuple(c for c in self.calibrations if c.group == group)

    def pending(self, group: EngineGroup) -> list[tuple[RunSpec, ...]]:
        """The group's batches that hold an unfinished run (a batch is rerun whole, its log answering)."""
        return [batch for batch in group.batches if any(run.run_id not in self.done for run in batch)]

    def skipped_run_generations(self) -> int:
        """Run-generations a resume skips: those of batches whose runs are all finished."""
        finished = [b for g in self.groups for b in g.batches if all(run.run_id in self.done for run in b)]
        return self.config.study.generations * sum(len(b) for b in finished)

    def summary(self) -> dict[str, Any]:
        """The plan as the manifest records it: groups, batches and calibrations with their sources."""
        return {
            "runs": len(self.runs),
            "groups": [
                {
                    "engine": None if g.engine is None else g.engine.key(),
                    "embedder": g.config.embedding.model,
                    "batches": [[run.run_id for run in batch] for batch in g.batches],
                }
                for g in self.groups
            ],
            "calibrations": [
                {
                    "key": c.spec.key(),
                    "role": c.spec.role,
                    "from": c.source,
                    "requests": c.requests,
                    "conditions": [self.conditions[i][0] for i in c.conditions],
                }
                for c in self.calibrations
            ],  # fmt: skip
            "llm_requests": self.size.llm_requests,
            "retrainings": self.size.retrainings,
            "training_texts": self.size.training_texts,
            "estimated_seconds": self.estimate.seconds,
        }


def plan_study(
    config: StudyConfig,
    *,
    folder: Path | None = None,
    replay_of: Path | None = None,
    batch_runs: int | None = None,
    use_cache: bool = True,
    force_calibration: bool = False,
    rates: dict[str, Any] | None = None,
) -> StudyPlan:
    """The plan of `config` for the results folder `folder` (its finished runs, recorded engines and
    calibrations; None or a folder not made yet: a fresh study). `replay_of`: the folder a replay
    recomputes (its engines and calibrations are the study's; nothing is resolved or computed).
    `batch_runs`: runs per lockstep batch (None: all runs of an LLM group, else one). `use_cache`:
    read and fill the user's calibration cache (false where an injected test engine is not the
    engine its key names); `force_calibration` computes every calibration anew. `rates`: this
    machine's measured rates (default: read from the user cache) for the wall-time estimate."""
    conditions = tuple(config.condition_grid())
    existing = folder is not None and (folder / "manifest.json").exists()
    done = frozenset(finished_runs(folder)) if folder is not None and folder.exists() else frozenset()
    runs = plan_runs(config)
    engines = recorded_engines(config, replay_of or (folder if existing else None))
    if replay_of is None:  # a run records, before it starts, the engine this machine resolves for pending work
        for run in runs:
            condition = conditions[run.condition_index][1]
            if condition.uses_llm() and run.run_id not in done and not engines.identities(condition.llm.engine):
                engines = engines.with_identity(condition.llm.engine, EngineIdentity.of(condition.llm.engine))
    # LLM groups first: each calibrates with the engine it then runs on (one start per engine), and
    # human-only groups, measured against an LLM condition's calibration, find it made.
    groups = tuple(sorted(engine_groups(config, runs, engines, batch_runs=batch_runs), key=lambda g: not g.needs_llm))
    corpora = condition_corpora(config)
    calibrations = _calibrations(
        study_specs(config, corpora, engines),
        groups,
        conditions,
        folder=folder if existing else None,
        replay_of=replay_of,
        use_cache=use_cache,
        force=force_calibration,
    )
    size = size_study(config, corpora=corpora, calibration_requests=sum(c.requests for c in calibrations))
    engine_keys = {run.condition_index: g.engine.key() for g in groups if g.engine is not None for run in g.plans}
    estimate = estimate_wall(
        config,
        size,
        engine_keys=engine_keys,
        calibrations=[(c.spec, c.requests) for c in calibrations],
        rates=machine_rates() if rates is None else rates,
    )
    return StudyPlan(
        config=config,
        conditions=conditions,
        runs=tuple(runs),
        groups=groups,
        calibrations=calibrations,
        corpora=tuple(corpora[i] for i in range(len(conditions))),
        engines=engines,
        size=size,
        estimate=estimate,
        folder=folder,
        replay_of=replay_of,
        done=done,
        batch_runs=batch_runs,
        use_cache=use_cache,
    )


def recorded_engines(config: StudyConfig, folder: Path | None) -> StudyEngines:
    """The engine identities the study in `folder` recorded (none for no folder); a folder written
    before they were recorded gets those its log entries have by the migration rule."""
    if folder is None or not (folder / "manifest.json").exists():
        return StudyEngines()
    manifest = read_manifest(folder)
    engines = StudyEngines.from_manifest(manifest)
    if "engine_identities" not in manifest:
        specs = [condition.llm.engine for _, condition in config.condition_grid() if condition.uses_llm()]
        engines = engines.with_legacy(CompletionLog(folder / LOG_FOLDER).load().values(), specs)
    return engines


def _calibrations(
    specs: dict[int, CalibrationSpec],
    groups: tuple[EngineGroup, ...],
    conditions: tuple[tuple[str, StudyConfig], ...],
    *,
    folder: Path | None,
    replay_of: Path | None,
    use_cache: bool,
    force: bool,
) -> tuple[PlannedCalibration, ...]:
    """The distinct calibrations of `specs` (condition index -> spec), in condition order, each with
    the group whose engine makes it and where it comes from."""
    by_key: dict[str, list[int]] = {}
    for index, spec in specs.items():
        by_key.setdefault(spec.key(), []).append(index)
    planned = []
    for indices in by_key.values():
        spec = specs[indices[0]]
        maker = next(i for i in indices if conditions[i][1].uses_llm())  # the LLM condition the spec is made from
        # The group that runs that condition: its engine, embedder and API key are the calibration's.
        group = next(i for i, g in enumerate(groups) if any(run.condition_index == maker for run in g.plans))
        source = locate(spec, folder=folder, replay_of=replay_of, use_cache=use_cache, force=force)
        requests = spec.chains * spec.generations if source == CALIBRATED else 0
        planned.append(PlannedCalibration(spec, tuple(indices), maker, group, source, requests))
    return tuple(planned)
