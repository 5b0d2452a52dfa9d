"""Study configuration: a pydantic schema for study TOML files and readable errors.

A study file is the unit a researcher preregisters, so every field is validated at
load time and every mistake becomes one `ConfigError` naming the file, the field
and what would be accepted, instead of a traceback deep inside a run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NETWORK_KINDS = ("small_world", "scale_free", "random", "lattice", "communities", "complete")
BIAS_KINDS = ("unbiased", "conformist", "prestige", "content", "similarity")
LLM_ROLES = ("rewrite", "combine", "create", "advise")
BUILTIN_MODEL = "builtin:smollm2-135m"
BUILTIN_EMBEDDER = "builtin:all-minilm-l6-v2"
BUILTIN_CORPUS = "builtin"
DEFAULT_METRICS = (
    "semantic_diversity",
    "vendi",
    "distinct_traits",
    "trait_entropy",
    "homozygosity",
    "lexical_diversity",
    "centroid_drift",
    "machine_ancestry",
    "llm_trait_share",
    "novelty",
)


class ConfigError(ValueError):
    """A study file or option that cannot be used, with a message meant for people."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudySection(_Section):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    replicates: int = Field(default=3, ge=1, le=10_000)
    generations: int = Field(default=8, ge=1, le=100_000)


class PopulationSection(_Section):
    size: int = Field(default=60, ge=2, le=10_000_000)
    llm_share: float = Field(default=0.0, ge=0.0, le=1.0)
    turnover: float = Field(default=0.5, gt=0.0, le=1.0, description="share of humans replaced per generation")
    llm_visibility: float = Field(default=1.0, gt=0.0, le=1e6, description="prestige weight of LLM agents")


class NetworkSection(_Section):
    kind: Literal["small_world", "scale_free", "random", "lattice", "communities", "complete"] = "small_world"
    degree: int = Field(default=6, ge=1, le=10_000, description="mean degree (small_world, random, lattice)")
    rewire: float = Field(default=0.1, ge=0.0, le=1.0, description="rewiring probability (small_world)")
    attach: int = Field(default=3, ge=1, le=10_000, description="edges per new node (scale_free)")
    communities: int = Field(default=4, ge=1, le=100_000)
    p_in: float = Field(default=0.3, ge=0.0, le=1.0)
    p_out: float = Field(default=0.01, ge=0.0, le=1.0)


class HumansSection(_Section):
    bias: Literal["unbiased", "conformist", "prestige", "content", "similarity"] = "unbiased"
    demonstrators: int = Field(default=3, ge=1, le=1000, description="neighbours sampled per learner")
    conformity: float = Field(default=2.0, ge=0.0, le=100.0, description="exponent a; 1 = unbiased")
    content_strength: float = Field(default=1.0, ge=-1000.0, le=1000.0)
    content_axis: tuple[str, str] | None = Field(
        default=None, description="two pole sentences (positive, negative) defining the content axis"
    )
    similarity_strength: float = Field(default=5.0, ge=-1000.0, le=1000.0)
    copy_error: float = Field(default=0.05, ge=0.0, le=1.0)
    innovation: float = Field(default=0.02, ge=0.0, le=1.0)
    llm_consultation: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _content_needs_axis(self) -> HumansSection:
        if self.bias == "content" and self.content_axis is None:
            raise ValueError("bias 'content' needs content_axis = [positive sentence, negative sentence]")
        return self


class LLMSection(_Section):
    backend: Literal["auto", "vllm", "transformers"] = "auto"
    model: str = Field(default=BUILTIN_MODEL, min_length=1)
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    role: Literal["rewrite", "combine", "create", "advise"] = "rewrite"
    neighbours_read: int = Field(default=3, ge=1, le=32, description="neighbour texts shown to an LLM agent")
    max_tokens: int = Field(default=48, ge=4, le=1024)
    temperature: float = Field(default=0.8, ge=0.0, le=5.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_num_seqs: int = Field(default=64, ge=1, le=4096)
    max_chars: int = Field(default=280, ge=20, le=10_000, description="longest trait text kept, in characters")


class EmbeddingSection(_Section):
    model: str = Field(default=BUILTIN_EMBEDDER, min_length=1)
    batch_size: int = Field(default=128, ge=1, le=65_536)


class CorpusSection(_Section):
    source: str = Field(default=BUILTIN_CORPUS, min_length=1, description="'builtin' or a CSV/JSONL/Parquet path")
    domains: tuple[str, ...] = ()
    initial_variants: int = Field(default=0, ge=0, le=10_000_000, description="0 = one seed text per agent")


class MetricsSection(_Section):
    names: tuple[str, ...] = DEFAULT_METRICS
    norm_axes: dict[str, tuple[str, str]] = Field(
        default_factory=dict, description="name -> (positive pole sentence, negative pole sentence)"
    )

    @field_validator("names")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from culturesim.metrics import available_metrics

        unknown = sorted(set(names) - set(available_metrics()))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {available_metrics()}")
        return names


class StudyConfig(_Section):
    study: StudySection
    population: PopulationSection = PopulationSection()
    network: NetworkSection = NetworkSection()
    humans: HumansSection = HumansSection()
    llm: LLMSection = LLMSection()
    embedding: EmbeddingSection = EmbeddingSection()
    corpus: CorpusSection = CorpusSection()
    metrics: MetricsSection = MetricsSection()
    conditions: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("conditions")
    @classmethod
    def _factors_exist(cls, conditions: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, levels in conditions.items():
            section, _, field = key.partition(".")
            model = cls.model_fields.get(section)
            if section in ("study", "conditions") or model is None or field not in model.annotation.model_fields:
                raise ValueError(f"condition factor {key!r} is not a model field such as 'population.llm_share'")
            if not levels:
                raise ValueError(f"condition factor {key!r} needs at least one level")
        return conditions

    def canonical_json(self) -> str:
        """Key-sorted JSON with defaults filled: the text a study hash is taken of."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """sha256 of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def condition_grid(self) -> list[tuple[str, StudyConfig]]:
        """All factorial conditions as (label, config with the levels applied)."""
        if not self.conditions:
            return [("baseline", self)]
        keys = sorted(self.conditions)
        grid = []
        for levels in itertools.product(*(self.conditions[k] for k in keys)):
            data = self.model_dump(mode="json")
            data["conditions"] = {}
            for key, level in zip(keys, levels, strict=True):
                section, field = key.split(".", 1)
                data[section][field] = level
            label = ",".join(f"{k.split('.', 1)[1]}={_fmt(v)}" for k, v in zip(keys, levels, strict=True))
            grid.append((label, _validate(data, source=f"condition {label}")))
        return grid


def _fmt(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        section = ".".join(str(p) for p in error["loc"][:-1])
        return f"{field} is not a known setting; remove it or check its spelling" + (
            f" (section [{section}])" if section else ""
        )
    if error["type"] == "missing":
        return f"{field} is required"
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


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML file; every problem raises one ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"study file {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"study file {path} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"study file {path} is not valid TOML: {exc}") from None
    return _validate(data, source=str(path))
