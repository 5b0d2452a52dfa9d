"""Study configuration: a pydantic schema for study TOML files and readable errors.

A study file is the unit a researcher preregisters, so every field is validated at
load time and every mistake becomes one `ConfigError` naming the file, the field
and what would be accepted, instead of a traceback deep inside a run.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from culturesim.core.vocabulary import Interaction, coordination_keys, recorded_keys
from culturesim.schema.analysis_plan import Preregistration
from culturesim.schema.coordination_section import CoordinationSection, check_coordination_study
from culturesim.schema.culture_sections import BUILTIN_CORPUS as BUILTIN_CORPUS
from culturesim.schema.culture_sections import BUILTIN_EMBEDDER as BUILTIN_EMBEDDER
from culturesim.schema.culture_sections import DEFAULT_METRICS as DEFAULT_METRICS
from culturesim.schema.culture_sections import (
    AttractorSection,
    CorpusSection,
    EmbeddingSection,
    HumansSection,
    MetricsSection,
    NetworkSection,
    PopulationSection,
)
from culturesim.schema.design import DesignSection
from culturesim.schema.llm_section import MOVED_LLM_SETTINGS, LLMSection, flat_llm_keys, split_flat_llm, warn_flat_llm
from culturesim.schema.sections import MAX_NESTING, ConfigError, Section, too_deep

TOY_GENERATIONS = 2
TOY_TRAINING_TEXTS = 16  # texts per retraining draw in a toy run
TOY_PROBE_TEXTS = 4  # texts a toy run's model probe retells (once each)
TOY_DESIGN_SAMPLES = 4  # base samples of a [design] at toy size (a power of 2, as Sobol needs)


# Sections every run of a study shares, so a condition cannot change them (why, in words).
SHARED_SECTIONS = {
    "study": "name, seed, replicates and generations define the runs themselves",
    "preregistration": "the analysis plan covers all conditions",
    "conditions": "the design itself",
    "condition_sets": "the design itself",
    "attractor": "every condition is measured against calibrations of one size",
}


class StudySection(Section):
    """`[study]`: what the study is called and which runs it makes; shared by every condition."""

    name: str = Field(
        min_length=1,
        max_length=80,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="the study's name, used for its results folder <out>/<name>/<hash12>/ (letters, digits, "
        "'_', '.', '-'; 1 to 80 characters)",
    )
    description: str = Field(default="", description="what the study asks, in words (the report and ODD show it)")
    seed: int = Field(
        default=0,
        ge=0,
        le=2**63 - 1,
        description="study seed: every random stream and LLM request seed derives from it and the replicate",
    )
    replicates: int = Field(
        default=3, ge=1, le=10_000, description="runs per condition, replicate k of every condition sharing seeds"
    )
    generations: int = Field(
        default=8,
        ge=1,
        le=100_000,
        description="generations each run advances after generation 0, the initial culture (rounds of the game "
        "in a coordination study); metrics are recorded at 0..generations",
    )
    save_population: bool = Field(
        default=True, description="store every agent's trait per generation (population.parquet; N x G rows)"
    )
    interaction: Interaction = Field(
        default="transmission",
        description="what agents do each generation: pass texts on ('transmission') or play the "
        "coordination game of [coordination] ('coordination')",
    )

    explorer: bool = Field(
        default=True, description="write explorer.html (culturesim explore) into the results folder after a run"
    )

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any) -> dict[str, Any]:
        """Leave `interaction` and `explorer` out at their defaults: older locks keep their hash."""
        data = handler(self)
        if self.interaction == "transmission":
            data.pop("interaction", None)
        if self.explorer:
            data.pop("explorer", None)
        return data


class StudyConfig(Section):
    """A study file: its tables, the conditions it compares and its preregistered analysis plan."""

    study: StudySection = Field(description="[study]: name, seed, replicates and generations (required)")
    population: PopulationSection = Field(
        default=PopulationSection(), description="[population]: how many agents, LLM agents among them, turnover"
    )
    network: NetworkSection = Field(default=NetworkSection(), description="[network]: the social network's shape")
    humans: HumansSection = Field(
        default=HumansSection(), description="[humans]: how model humans choose whom to copy and change what they copy"
    )
    llm: LLMSection = Field(
        default=LLMSection(), description="[llm]: the LLM's engine, sampling, prompt and retraining tables"
    )
    embedding: EmbeddingSection = Field(
        default=EmbeddingSection(), description="[embedding]: the sentence-embedding model texts are measured with"
    )
    corpus: CorpusSection = Field(
        default=CorpusSection(), description="[corpus]: the human texts of generation 0 and of innovations"
    )
    metrics: MetricsSection = Field(default=MetricsSection(), description="[metrics]: what each run records")
    attractor: AttractorSection = Field(
        default=AttractorSection(),
        description="[attractor]: size of the pure-LLM calibration behind attractor_distance (studies with LLMs)",
    )
    coordination: CoordinationSection = Field(
        default=CoordinationSection(),
        description="[coordination]: the naming game played when study.interaction = 'coordination'",
    )
    conditions: dict[str, list[Any]] = Field(
        default_factory=dict,
        description='factorial design: dotted setting -> its levels, e.g. "population.llm_share" = [0.0, 0.2]; '
        "every combination of levels is one condition",
    )
    condition_sets: list[dict[str, Any]] = Field(
        default_factory=list,
        description="explicit conditions for non-factorial designs (instead of [conditions]): each "
        "[[condition_sets]] sets dotted settings to levels, with an optional label",
    )
    design: DesignSection | None = Field(
        default=None, description="continuous parameters sampled over ranges (instead of [conditions])"
    )
    preregistration: Preregistration | None = Field(
        default=None, description="[preregistration]: the analysis plan, fixed before any data exist"
    )

    @model_serializer(mode="wrap")
    def _omit_default_attractor(self, handler: Any) -> dict[str, Any]:
        """Leave [attractor] out while at its defaults and [design] while absent, so studies locked
        before they existed keep their hash."""
        data = handler(self)
        if self.attractor == AttractorSection():
            data.pop("attractor", None)
        if self.design is None:
            data.pop("design", None)
        if self.coordination == CoordinationSection():
            data.pop("coordination", None)
        return data

    @field_validator("design")
    @classmethod
    def _design_factors_exist(cls, design: DesignSection | None) -> DesignSection | None:
        for key in design.parameters if design is not None else ():
            _check_factor(key)
        return design

    @field_validator("conditions")
    @classmethod
    def _factors_exist(cls, conditions: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, levels in conditions.items():
            _check_factor(key)
            if not levels:
                raise ValueError(f"condition factor {key!r} needs at least one level")
            if len({_level_key(v) for v in levels}) < len(levels):
                raise ValueError(f"condition factor {key!r} repeats a level: {levels}")
        return conditions

    @field_validator("condition_sets")
    @classmethod
    def _sets_valid(cls, sets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for entry in sets:
            for key in entry:
                if key != "label":
                    _check_factor(key)
        return sets

    @model_validator(mode="after")
    def _plan_matches_design(self) -> StudyConfig:
        if sum(map(bool, (self.conditions, self.condition_sets, self.design))) > 1:
            raise ValueError(
                "use one of [conditions] (factorial), [[condition_sets]] (explicit) or [design] (sampled ranges)"
            )
        if self.study.interaction == "coordination":
            check_coordination_study(self.coordination, self.humans, llm_share=self.population.llm_share)
        _check_retraining(self)
        recorded = self.recorded_keys()
        for outcome in self.design.outcomes if self.design is not None else ():
            if outcome not in recorded:
                raise ValueError(
                    f"design.outcomes names {outcome!r}, which [metrics] does not record; recorded: {recorded}"
                )
        if self.preregistration is None:
            return self
        levels = self.factor_levels()
        for h in self.preregistration.hypotheses:
            where = f"preregistration.hypotheses[{h.id}]"
            if h.outcome not in recorded:
                raise ValueError(f"{where}.outcome {h.outcome!r} is not recorded by [metrics]; recorded: {recorded}")
            factor = h.contrast.factor
            if factor not in levels:
                raise ValueError(
                    f"{where}.contrast.factor {factor!r} is not a condition factor; factors: {sorted(levels)}"
                )
            for side in ("treatment", "reference"):
                level = getattr(h.contrast, side)
                if _level_key(level) not in {_level_key(v) for v in levels[factor]}:
                    raise ValueError(
                        f"{where}.contrast.{side} {level!r} is not a level of {factor}; levels: {levels[factor]}"
                    )
            if h.contrast.treatment == h.contrast.reference:
                raise ValueError(f"{where}.contrast compares {factor} = {h.contrast.treatment!r} with itself")
            last = self.study.generations
            if isinstance(h.generation, int) and not 0 <= h.generation <= last:
                raise ValueError(f"{where}.generation {h.generation} is outside 0..{last}")
            if h.window is not None and h.window[1] > last:
                raise ValueError(f"{where}.window ends after the last generation ({last})")
        return self

    def recorded_keys(self) -> list[str]:
        """The value names each run of this study records: what a hypothesis may name as outcome."""
        if self.study.interaction == "coordination":
            return coordination_keys(self.coordination.names, inventories=self.coordination.rule == "naming_game")
        return recorded_keys(self.metrics.names, tuple(self.metrics.norm_axes), retrains=self.retrains())

    def retrains(self) -> bool:
        """Whether a condition of this study may retrain its LLM agents' model: `[llm.retraining]` says
        so, or a condition factor sets `llm.retraining.every` above 0. Read from the study file alone
        (the validator asks it before the condition grid exists)."""
        every = self.factor_levels().get("llm.retraining.every", [self.llm.retraining.every])
        return any(isinstance(level, int) and level > 0 for level in every)

    def factor_levels(self) -> dict[str, list[Any]]:
        """Levels of every condition factor, in order of first appearance."""
        if self.conditions:
            return {k: list(v) for k, v in self.conditions.items()}
        levels: dict[str, list[Any]] = {}
        for entry in self.condition_levels():
            for key, value in entry.items():
                if key != "label" and value not in levels.setdefault(key, []):
                    levels[key].append(value)
        return levels

    def canonical_json(self) -> str:
        """Key-sorted JSON with defaults filled: the text a study hash is taken of."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """sha256 of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def condition_levels(self) -> list[dict[str, Any]]:
        """Each condition as {factor: level} (plus 'label' for explicit sets), in run order."""
        if self.condition_sets:
            return [dict(entry) for entry in self.condition_sets]
        if self.design is not None:  # one condition per sampled point, labelled by its place in the sample
            names = list(self.design.parameters)
            return [
                {**dict(zip(names, map(float, row), strict=True)), "label": f"design{i:04d}"}
                for i, row in enumerate(self.design.points())
            ]
        keys = sorted(self.conditions)
        return [
            dict(zip(keys, levels, strict=True)) for levels in itertools.product(*(self.conditions[k] for k in keys))
        ]

    def uses_llm(self) -> bool:
        """Whether this (condition's) config asks an LLM: LLM agents, or humans who consult one or
        whose copies an LLM retells."""
        humans = self.humans
        if self.study.interaction == "coordination":
            return self.population.llm_share > 0
        return self.population.llm_share > 0 or humans.llm_consultation > 0 or humans.llm_mutation > 0

    def condition_grid(self) -> list[tuple[str, StudyConfig]]:
        """All conditions as (label, config with the levels applied); one 'baseline' if none.

        Planned once per study config (it is frozen) and shared by every reader: the runner, sizing,
        the ODD, figures and reports all read the same validated condition configs."""
        return list(self.planned_conditions)

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> StudyConfig:
        """A copy that plans its own conditions (an update may change them)."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("planned_conditions", None)
        return copy

    @functools.cached_property
    def planned_conditions(self) -> tuple[tuple[str, StudyConfig], ...]:
        """The condition grid, validated once (one validation per condition; `condition_grid` reads it)."""
        if not self.conditions and not self.condition_sets and self.design is None:
            return (("baseline", self),)
        grid = []
        for entry in self.condition_levels():
            levels = {k: v for k, v in entry.items() if k != "label"}
            data = self.model_dump(mode="json")
            data.update(conditions={}, condition_sets=[], design=None, preregistration=None)
            for key, level in levels.items():
                *tables, field = key.split(".")
                target = data
                for table in tables:
                    target = target.setdefault(table, {})  # a table left out at its defaults
                target[field] = level
            label = entry.get("label") or ",".join(f"{k.rsplit('.', 1)[1]}={_fmt(v)}" for k, v in levels.items())
            grid.append((str(label), _validate(data, source=f"condition {label}")))
        return tuple(grid)

    def toy(self) -> StudyConfig:
        """A tiny version for smoke tests: at most 16 agents, 2 generations, 2 replicates.

        The analysis plan is kept (so the whole pipeline runs) with generations and windows
        squeezed into the toy's 2 generations; toy results are never confirmatory evidence.
        """
        data = self.model_dump(mode="json")
        data["study"].update(replicates=2, generations=TOY_GENERATIONS)
        data["population"]["size"] = min(data["population"]["size"], 16)
        data["network"]["communities"] = min(data["network"]["communities"], 4)
        data["attractor"] = {"chains": 4, "generations": TOY_GENERATIONS}
        if data.get("design"):
            data["design"]["samples"] = min(data["design"]["samples"], TOY_DESIGN_SAMPLES)
        _toy_retraining(data)
        for hypothesis in (data["preregistration"] or {}).get("hypotheses", []):
            if isinstance(hypothesis["generation"], int):
                hypothesis["generation"] = min(hypothesis["generation"], TOY_GENERATIONS)
            if hypothesis["window"] is not None:
                hypothesis["window"] = [0, TOY_GENERATIONS]
        return _validate(data, source=f"toy version of {self.study.name}")


def _toy_retraining(data: dict[str, Any]) -> None:
    """A toy that still retrains: after generation 1 of its 2 (every retraining level above 0 becomes
    1, in the table and in condition factors), on at most TOY_TRAINING_TEXTS texts, one epoch; its
    model probe retells at most TOY_PROBE_TEXTS texts once."""
    every = "llm.retraining.every"
    retraining = data["llm"].get("retraining")
    if retraining is not None:
        retraining.update(
            every=min(retraining["every"], 1),
            texts=min(retraining["texts"], TOY_TRAINING_TEXTS),
            epochs=1,
            probe_texts=min(retraining["probe_texts"], TOY_PROBE_TEXTS),
            probe_steps=1,
        )
    if every in (data.get("conditions") or {}):
        data["conditions"][every] = [min(level, 1) for level in data["conditions"][every]]
    for entry in data.get("condition_sets") or []:
        if every in entry:
            entry[every] = min(entry[every], 1)
    for hypothesis in (data["preregistration"] or {}).get("hypotheses", []):
        contrast = hypothesis["contrast"]
        if contrast["factor"] == every:
            contrast.update(treatment=min(contrast["treatment"], 1), reference=min(contrast["reference"], 1))


def _check_factor(key: str) -> None:
    """A factor is a dotted path to one setting, e.g. 'population.llm_share' or 'llm.sampling.temperature'."""
    section, _, field = key.partition(".")
    if section in SHARED_SECTIONS:
        raise ValueError(
            f"condition factor {key!r} cannot vary per condition: [{section}] is shared by every run of a study "
            f"({SHARED_SECTIONS[section]}); run a separate study for each value instead"
        )
    if section == "llm" and field in MOVED_LLM_SETTINGS:
        moved = f"condition factor {key!r}: llm.{field} moved to {MOVED_LLM_SETTINGS[field]}"
        raise PydanticCustomError("moved_setting", "{moved}", {"moved": moved})
    model: Any = StudyConfig
    for part in key.split("."):
        fields = getattr(model, "model_fields", {}) if isinstance(model, type) else {}
        if part not in fields:
            raise ValueError(f"condition factor {key!r} is not a model field such as 'population.llm_share'")
        model = fields[part].annotation
    if isinstance(model, type) and issubclass(model, Section):
        raise ValueError(
            f"condition factor {key!r} names a table, not a setting; name one of its fields, "
            f"such as '{key}.{next(iter(model.model_fields))}'"
        )


def is_condition_factor(key: str) -> bool:
    """Whether a condition may vary the dotted setting `key`: `_check_factor`'s rule, as a yes or no for
    the study file's JSON Schema (`culturesim.schema.json_schema`), so the schema cannot drift from it."""
    try:
        _check_factor(key)
    except ValueError:  # PydanticCustomError (a moved [llm] key) is a ValueError too
        return False
    return True


def _level_key(value: Any) -> str:
    """A level as JSON text, to compare levels; TOML dates and times (never valid levels) as their text."""
    return json.dumps(value, default=str)


def _fmt(value: Any) -> str:
    return _level_key(value) if not isinstance(value, str) else value


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        section = ".".join(str(p) for p in error["loc"][:-1])
        return f"{field} is not a known setting; remove it or check its spelling" + (
            f" (section [{section}])" if section else ""
        )
    if error["type"] == "missing":
        return f"{field} is required"
    if error["type"] == "moved_setting":  # the message names the old path and the new one
        return error["msg"]
    got = error.get("input")
    got_text = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    message = error["msg"].removeprefix("Value error, ")
    return f"{field}: {message}{got_text}"


def _validate(data: dict[str, Any], *, source: str) -> StudyConfig:
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError(f"invalid study in {source}: " + "; ".join(lines)) from None


def stored_config(data: dict[str, Any]) -> StudyConfig:
    """The config a results folder stores (its manifest), as this version reads it: the flat [llm]
    keys of a folder written before the split are moved to their tables (`split_flat_llm`, as for an
    old study file). The folder keeps its name and hash, which `stored_hash` recomputes as stored."""
    return StudyConfig.model_validate(split_flat_llm(data))


def stored_hash(data: dict[str, Any]) -> str:
    """sha256 of a stored config exactly as stored: the hash its folder was named after."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML file; every problem raises one ConfigError. A file in the flat
    [llm] layout of before 2026-12-01 is still read (a preregistered study cannot be edited without
    a deviation), with one `FlatLLMLayoutWarning` per moved key once it is known to be valid."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"study file {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"study file {path} is not UTF-8 text") from None
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(f"study file {path} cannot be read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"study file {path} is not valid TOML: {exc}") from None
    except ValueError as exc:  # int() refuses literals of more than sys.get_int_max_str_digits() (4300) digits
        long = re.search(r"\d[\d_]{4000,}", text)
        where = f"a number on line {text.count(chr(10), 0, long.start()) + 1} has too many digits" if long else exc
        raise ConfigError(f"study file {path} is not valid TOML: {where}") from None
    except RecursionError:
        raise ConfigError(f"study file {path} is not valid TOML: arrays or tables nested too deeply") from None
    deep = too_deep(data)
    if deep is not None:
        raise ConfigError(f"study file {path}: {deep} nests lists or tables more than {MAX_NESTING} levels deep")
    config = _validate(split_flat_llm(data), source=str(path))
    try:
        config.condition_grid()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    warn_flat_llm(flat_llm_keys(data), text=text, source=str(path))
    return config


def _check_retraining(config: StudyConfig) -> None:
    """`[llm.retraining]` fine-tunes the LLM agents' model on a text culture, answered by vLLM."""
    if not config.llm.retraining.enabled:
        return
    if config.study.interaction == "coordination":
        raise ValueError(
            "llm.retraining applies to text studies: a coordination study's moves are names, not texts to "
            "learn from; set llm.retraining.every = 0"
        )
    if config.llm.engine.backend in ("transformers", "openai"):
        raise ValueError(
            f"llm.retraining needs the vLLM engine (it answers each run with its own adapter), but "
            f"llm.engine.backend = {config.llm.engine.backend!r}: set it to 'auto' or 'vllm', or "
            "llm.retraining.every = 0"
        )
