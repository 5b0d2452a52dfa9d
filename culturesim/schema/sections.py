"""The base of every study-file section, and the error a bad study file raises.

Kept apart from `culturesim.schema.config` so that the analysis plan (`culturesim.schema.analysis_plan`)
and the study schema share one validation policy without importing each other.
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class ConfigError(ValueError):
    """A study file or option that cannot be used, with a message meant for people."""


class Section(BaseModel):
    """Unknown keys, NaN/inf and booleans-as-numbers are errors; sections are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """TOML `true` must not silently become the number 1 (also inside unions and tuples)."""
        if _allows_bool(cls.model_fields[info.field_name].annotation):
            return value
        if isinstance(value, bool) or (isinstance(value, list) and any(isinstance(v, bool) for v in value)):
            raise ValueError("must be a number, not a boolean")
        return value


def _allows_bool(annotation: Any) -> bool:
    """Whether a field's type admits a boolean anywhere (Any does)."""
    return annotation is bool or annotation is Any or any(_allows_bool(a) for a in get_args(annotation))


MAX_NESTING = 16  # lists/tables in a study file; a real study needs about 6


def too_deep(data: Any) -> str | None:
    """Where `data` nests lists or tables more than MAX_NESTING deep (dotted), else None; iterative."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        where, value = stack.pop()
        if len(where) > MAX_NESTING:
            return ".".join(str(p) for p in where[:8]) + "..."
        if isinstance(value, dict):
            stack.extend(((*where, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*where, i), v) for i, v in enumerate(value))
    return None
