"""The per-request sampling settings: the one place their names, defaults and bounds are written.

A study's `[llm.sampling]` table is this object, every `Request` carries it, and the chains,
the attractor calibration, the on-task check and every backend read it, as vLLM keeps its
`SamplingParams` apart from the engine settings. It sits at the bottom of the package (it imports
only `culturesim.schema.sections`), so `culturesim.parts.llm.base` and `culturesim.schema.config` both import it.
"""

from __future__ import annotations

from pydantic import Field

from culturesim.schema.sections import Section

DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_MAX_TOKENS = 48  # new tokens per completion: enough for a trait, a text of a sentence or two


class Sampling(Section):
    """How one completion is sampled: temperature, nucleus (top-p) mass and the new-token budget."""

    temperature: float = Field(
        default=DEFAULT_TEMPERATURE, ge=0.0, le=5.0, description="sampling temperature (0: greedy decoding)"
    )
    top_p: float = Field(
        default=DEFAULT_TOP_P, gt=0.0, le=1.0, description="nucleus sampling: probability mass 0..1 of the tokens kept"
    )
    max_tokens: int = Field(
        default=DEFAULT_MAX_TOKENS, ge=4, le=1024, description="most new tokens per completion (tokens)"
    )
