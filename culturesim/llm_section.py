"""The `[llm]` tables of a study file: engine, sampling and prompt settings.

`[llm.engine]` says which model answers and how the engine runs it, `[llm.sampling]` how each
completion is sampled (`culturesim.sampling.Sampling`, the object every `Request` carries) and
`[llm.prompt]` what an agent is asked and which answers it adopts. Before 2026-12-01 these were one
flat `[llm]` table; `MOVED_LLM_SETTINGS` maps each old key to its place now.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from culturesim.sampling import Sampling
from culturesim.sections import Section
from culturesim.vocabulary import Device, LLMRole

BUILTIN_MODEL = "builtin:smollm2-135m"


class EngineSection(Section):
    """`[llm.engine]`: which model answers and how the engine runs it; the settings that make an
    engine (`completions.EngineIdentity`), apart from the per-request sampling settings.

    The HTTP server settings live here too: with backend 'openai' the server *is* the engine (its
    URL is part of the engine identity, so two servers never share a logged answer), and the one
    rule that ties them (backend 'openai' needs base_url and a served model name) stays in one table.
    """

    backend: Literal["auto", "vllm", "transformers", "openai"] = "auto"
    model: str = Field(default=BUILTIN_MODEL, min_length=1)
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    max_num_seqs: int = Field(default=64, ge=1, le=4096)
    device: Device = Field(default="auto", description="the transformers backend's device (vLLM picks its own)")
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible server, e.g. 'http://localhost:8000/v1' (backend 'openai')"
    )
    api_key_env: str = Field(
        default="OPENAI_API_KEY", min_length=1, description="environment variable holding the API key (never the key)"
    )

    @model_validator(mode="after")
    def _openai_needs_url(self) -> EngineSection:
        if self.backend == "openai":
            if self.base_url is None or not self.base_url.startswith(("http://", "https://")):
                raise ValueError(
                    f"backend 'openai' needs llm.engine.base_url = 'http://...' or 'https://...', the server's /v1 "
                    f"URL (got {self.base_url!r})"
                )
            if self.model.startswith("builtin:"):
                raise ValueError(
                    f"backend 'openai' needs llm.engine.model = the server's model name (got {self.model!r})"
                )
        return self

    @model_serializer(mode="wrap")
    def _omit_unused_server_fields(self, handler: Any) -> dict[str, Any]:
        """Leave the server settings out while unset, so a study's canonical config stays minimal."""
        data = handler(self)
        if self.base_url is None:
            data.pop("base_url", None)
        if self.api_key_env == EngineSection.model_fields["api_key_env"].default:
            data.pop("api_key_env", None)
        if self.device == "auto":  # left out at its default, so studies locked before it keep their hash
            data.pop("device", None)
        return data


class PromptSection(Section):
    """`[llm.prompt]`: what an LLM agent is asked and which answers it adopts."""

    role: LLMRole = "rewrite"
    neighbours_read: int = Field(default=3, ge=1, le=32, description="neighbour texts shown to an LLM agent")
    max_chars: int = Field(default=280, ge=20, le=10_000, description="longest trait text kept, in characters")
    retries: int = Field(
        default=2, ge=0, le=10, description="adoption policy: new-seed retries of an unusable completion"
    )


class LLMSection(Section):
    """`[llm]`: three tables, engine (`[llm.engine]`), sampling (`[llm.sampling]`) and prompt (`[llm.prompt]`)."""

    engine: EngineSection = EngineSection()
    sampling: Sampling = Sampling()
    prompt: PromptSection = PromptSection()

    @model_validator(mode="before")
    @classmethod
    def _no_flat_settings(cls, data: Any) -> Any:
        """A setting written directly under [llm] (the layout before the split) gets one error
        saying where it lives now, instead of pydantic's generic unknown-field message."""
        if isinstance(data, dict):
            moved = [key for key in data if key in MOVED_LLM_SETTINGS]
            if moved:
                raise PydanticCustomError(
                    "moved_setting",
                    "{moves} ([llm] is split into [llm.engine], [llm.sampling] and [llm.prompt] tables)",
                    {"moves": "; ".join(f"llm.{key} moved to {MOVED_LLM_SETTINGS[key]}" for key in moved)},
                )
        return data


# Each setting of the flat [llm] table before the split -> its dotted path now.
MOVED_LLM_SETTINGS = {
    name: f"llm.{table}.{name}"
    for table, section in (("engine", EngineSection), ("sampling", Sampling), ("prompt", PromptSection))
    for name in section.model_fields
}


def moved_llm_setting(key: str) -> str:
    """A dotted study-file key as it is written now: `llm.temperature` -> `llm.sampling.temperature`
    (keys that did not move are returned as they are)."""
    field = key.removeprefix("llm.")
    return MOVED_LLM_SETTINGS[field] if key.startswith("llm.") and field in MOVED_LLM_SETTINGS else key
