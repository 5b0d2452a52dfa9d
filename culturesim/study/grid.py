"""A study's conditions and batches: which runs it has, which engines answer them, how they are batched.

Every condition x replicate is one run (`RunSpec`), in a fixed order. A condition over
`llm.engine.model`, `llm.engine.backend`, `llm.engine.dtype` or `embedding.model` needs its own engines;
building one engine from the top-level config would silently run one model for every
condition. So runs are grouped by everything that decides which engines answer them
(`EngineGroup`), the groups run one after another (one engine alive at a time), and
lockstep batches never cross a group. All of it depends on the study alone, never on
executors, workers or what a resume finds done.

These are derivations of the study planner (`culturesim.study.planner`), which alone calls them:
everything else reads the `StudyPlan` they make.
"""

from __future__ import annotations

from dataclasses import dataclass

from culturesim.parts.corpus import load_corpus
from culturesim.parts.engine_identity import EngineIdentity, StudyEngines
from culturesim.schema.config import StudyConfig
from culturesim.simulation.model import RunSpec


def condition_corpora(config: StudyConfig) -> dict[int, tuple[str, ...]]:
    """Condition index -> its corpus texts (each distinct corpus setting read once)."""
    read: dict[str, tuple[str, ...]] = {}
    corpora = {}
    for index, (_, condition) in enumerate(config.condition_grid()):
        key = condition.corpus.model_dump_json()
        if key not in read:
            read[key] = tuple(load_corpus(condition.corpus)["text"].to_list())
        corpora[index] = read[key]
    return corpora


def plan_runs(config: StudyConfig) -> list[RunSpec]:
    """Every condition x replicate, in a fixed order (condition-major)."""
    levels = config.condition_levels() or [{}]
    plans = []
    for index, (label, _) in enumerate(config.condition_grid()):
        factors = {k: v for k, v in levels[index].items() if k != "label"}
        for replicate in range(config.study.replicates):
            plans.append(
                RunSpec(
                    f"c{index}-r{replicate}",
                    label,
                    replicate,
                    config.study.seed,
                    condition_index=index,
                    levels=tuple(factors.items()),
                )
            )
    return plans


@dataclass(frozen=True)
class EngineGroup:
    """Runs answered by one engine: `config` is their first condition's config (engine settings
    are equal across the group); `engine` is the study's identity for it (`StudyEngines.identity`),
    None for human-only runs, which need no LLM; `batches` are its lockstep batches, in run order."""

    config: StudyConfig
    engine: EngineIdentity | None
    plans: tuple[RunSpec, ...]
    batches: tuple[tuple[RunSpec, ...], ...] = ()
    lora_rank: int = 0  # the largest adapter rank its retraining conditions train (0: none retrains)

    @property
    def needs_llm(self) -> bool:
        return self.engine is not None


def engine_groups(
    config: StudyConfig, plans: list[RunSpec], engines: StudyEngines | None = None, *, batch_runs: int | None = None
) -> list[EngineGroup]:
    """`plans` grouped by (LLM engine, API key variable, embedding model), in order of first appearance,
    each cut into lockstep batches of `batch_runs` runs (`plan_batches`); `engines`: the study's recorded
    engine identities (None: resolved on this machine)."""
    grid = config.condition_grid()
    engines = engines or StudyEngines()
    keys: dict[tuple, list[RunSpec]] = {}
    first: dict[tuple, StudyConfig] = {}
    ranks: dict[tuple, int] = {}
    for plan in plans:
        condition = grid[plan.condition_index][1]
        engine = engines.identity(condition.llm.engine) if condition.uses_llm() else None
        key = (engine, condition.llm.engine.api_key_env if engine else None, condition.embedding.model)
        keys.setdefault(key, []).append(plan)
        first.setdefault(key, condition)
        retraining = condition.llm.retraining
        ranks[key] = max(ranks.get(key, 0), retraining.rank if engine and retraining.enabled else 0)
    return [
        EngineGroup(first[key], key[0], tuple(group), plan_batches(group, key[0] is not None, batch_runs), ranks[key])
        for key, group in keys.items()
    ]


def plan_batches(plans: list[RunSpec], needs_llm: bool, batch_runs: int | None) -> tuple[tuple[RunSpec, ...], ...]:
    """Fixed lockstep batches of a group's runs: all together when LLMs are involved (one engine
    call per generation), else one run per batch (saved as soon as it ends). The partition depends
    only on the study and `batch_runs`, never on workers or on what a resume finds done."""
    size = batch_runs or (len(plans) if needs_llm else 1)
    return tuple(tuple(plans[i : i + size]) for i in range(0, len(plans), size))
