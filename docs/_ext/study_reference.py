"""The study-file reference, generated at build time from the study file's JSON schema.

Nothing in it is written by hand: one section per table of a study file (`[study]`, `[llm.engine]`,
`[[preregistration.hypotheses]]`, ...), in the schema's order, and one row per key with its type,
default, allowed values (from the schema's enum, const, minimum, maximum, exclusiveMinimum, ...,
minLength, pattern, minItems, ...), whether a condition may vary it (the schema's
`x-condition-factor`, a column shown once any field carries it) and its description.

The schema is `culturesim.schema.json_schema.study_json_schema()` (what `culturesim schema` writes, with
the condition-factor flags) where that module exists, else `StudyConfig.model_json_schema()`; both
dialects are read (`$defs` or `definitions`, `prefixItems` or a list of `items`, `$ref` alone or in
`allOf`, optional keys as `anyOf [X, null]` or left out of `required`).

Every key is also a Sphinx object (`studykey`, e.g. `study.replicates`): the search page lists it by
name, and the other pages link to it with ``{studykey}`study.replicates` `` (a nitpicky build fails on a
key that no longer exists).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

CONDITION_KEY = "x-condition-factor"


def study_schema() -> dict[str, Any]:
    """The study file's JSON schema: with condition-factor flags where the code provides them."""
    try:
        from culturesim.schema.json_schema import study_json_schema
    except ImportError:
        from culturesim.schema.config import StudyConfig

        return StudyConfig.model_json_schema()
    return study_json_schema()


@dataclass
class Key:
    """One key of a table: its dotted path and the schema facts shown in its row."""

    path: str
    type: str
    default: str
    allowed: str
    description: str
    condition: bool | None  # the schema's x-condition-factor; None where the schema does not say


@dataclass
class Table:
    """One table of a study file (`[llm.engine]`) or array of tables (`[[preregistration.hypotheses]]`)."""

    path: str
    array: bool
    description: str
    required: bool
    model: str | None = None  # the schema definition's name (the pydantic class: `EngineSection`)
    keys: list[Key] = field(default_factory=list)

    @property
    def header(self) -> str:
        return f"[[{self.path}]]" if self.array else f"[{self.path}]"


def tables(schema: dict[str, Any]) -> list[Table]:
    """Every table of the study file the schema describes, parents before their sub-tables."""
    found: list[Table] = []
    defs = schema.get("$defs") or schema.get("definitions") or {}
    required = set(schema.get("required", ()))
    for name, prop in schema["properties"].items():
        _walk(name, prop, defs, found, required=name in required)
    return found


def _walk(path: str, prop: dict[str, Any], defs: dict[str, Any], found: list[Table], *, required: bool) -> None:
    """Add the table at `path` (an object or an array of objects) and, after it, its sub-tables."""
    target, array = _table_schema(prop, defs)
    if target is None:  # a top-level key that is not a table of its own (none today): a table of one key
        found.append(Table(path, False, _text(prop.get("description", "")), required, [_key(path, prop, defs, set())]))
        return
    description = prop.get("description") or target.get("description", "")
    table = Table(path, array, _first_paragraph(description), required, model=_model_name(prop))
    found.append(table)
    inner_required = set(target.get("required", ()))
    subtables = []
    for name, sub in target.get("properties", {}).items():
        sub_path = f"{path}.{name}"
        if _table_schema(sub, defs)[0] is not None:
            subtables.append((sub_path, sub, name in inner_required))
        else:
            table.keys.append(_key(sub_path, sub, defs, inner_required))
    if not target.get("properties") and "additionalProperties" in target:  # [conditions]: any dotted field
        table.keys.append(_free_key(path, target))
    for sub_path, sub, sub_required in subtables:
        _walk(sub_path, sub, defs, found, required=sub_required)


def _table_schema(prop: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """(the object schema, is it an array of tables) where `prop` is a table, else (None, False).

    A table is a reference to a model (`$ref`, optionally `anyOf` with null), an array of such
    references, or a free-form object (`[conditions]`, `[[condition_sets]]`)."""
    resolved = _resolve(prop, defs)
    if resolved.get("type") == "array" and isinstance(resolved.get("items"), dict):
        items = _resolve(resolved["items"], defs)
        if items.get("type") == "object":
            return items, True
        return None, False
    if resolved.get("type") == "object" and ("properties" in resolved or "$ref" in _non_null(prop)):
        return resolved, False
    if resolved.get("type") == "object" and isinstance(resolved.get("additionalProperties"), dict):
        return resolved, False
    return None, False


def _model_name(prop: dict[str, Any]) -> str | None:
    """The definition a table's schema refers to (`EngineSection`), if any."""
    target = _non_null(prop)
    if target.get("type") == "array" and isinstance(target.get("items"), dict):
        target = _non_null(target["items"])
    ref = target.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def _non_null(prop: dict[str, Any]) -> dict[str, Any]:
    """The one alternative of an `anyOf [X, null]` or an `allOf [X]`, else `prop` itself."""
    if len(prop.get("allOf", ())) == 1:
        return prop["allOf"][0]
    options = [o for o in prop.get("anyOf", ()) if o.get("type") != "null"]
    return options[0] if len(options) == 1 else prop


def _resolve(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    prop = _non_null(prop)
    ref = prop.get("$ref")
    if ref:
        return defs[ref.rsplit("/", 1)[-1]]
    return prop


def _key(path: str, prop: dict[str, Any], defs: dict[str, Any], required: set[str]) -> Key:
    name = path.rsplit(".", 1)[-1]
    if "default" in prop:
        default = _literal(prop["default"])
    elif name in required:
        default = "required"
    else:
        default = "unset"  # an optional key with no default: leave it out
    return Key(
        path=path,
        type=_type(prop, defs),
        default=default,
        allowed=_allowed(prop, defs),
        description=_text(prop.get("description", "")),
        condition=prop.get(CONDITION_KEY),
    )


def _free_key(path: str, target: dict[str, Any]) -> Key:
    """The row of a table whose keys are free: `[conditions]` maps any dotted field to its levels."""
    values = target["additionalProperties"]
    kind = _type(values, {}) if isinstance(values, dict) and values else "any"
    return Key(path=f"{path}.<field>", type=kind, default="", allowed="", description="", condition=None)


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """The type in TOML's words: string, integer, float, boolean, list of ..., [a, b], table."""
    if "anyOf" in prop:
        kinds = [_type(option, defs) for option in prop["anyOf"] if option.get("type") != "null"]
        optional = any(option.get("type") == "null" for option in prop["anyOf"])
        text = " or ".join(dict.fromkeys(kinds))
        return f"{text} (optional)" if optional else text
    if "$ref" in prop or len(prop.get("allOf", ())) == 1:
        return "table"
    if "const" in prop:
        return _scalar(prop.get("type", ""))
    kind = prop.get("type")
    if isinstance(kind, list):
        return " or ".join(_scalar(k) for k in kind)
    if kind == "array":
        pair = prop.get("prefixItems") or (prop["items"] if isinstance(prop.get("items"), list) else None)
        if pair:
            return "[" + ", ".join(_type(item, defs) for item in pair) + "]"
        items = prop.get("items") or {}
        return f"list of {_type(items, defs)}" if items else "list"
    if kind == "object":
        values = prop.get("additionalProperties")
        if isinstance(values, dict) and values:
            return f"table of name → {_type(values, defs)}"
        return "table"
    if kind is None:
        return "any"
    return _scalar(kind)


def _scalar(kind: str) -> str:
    return {"number": "float", "null": "unset"}.get(kind, kind or "any")


def _allowed(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """Allowed values and ranges, from every non-null alternative of the field."""
    parts: list[str] = []
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    for option in options:
        if "enum" in option:
            parts.append(", ".join(_literal(v) for v in option["enum"]))
        if "const" in option:
            parts.append(_literal(option["const"]))
        bounds = _bounds(option)
        if bounds:
            parts.append(bounds)
        if "minLength" in option or "maxLength" in option:
            parts.append(_count(option.get("minLength"), option.get("maxLength"), "characters"))
        if "pattern" in option:
            parts.append(f"matches `{option['pattern']}`")
        pair = "prefixItems" in option or isinstance(option.get("items"), list)  # its length is in its type
        if ("minItems" in option or "maxItems" in option) and not pair:
            parts.append(_count(option.get("minItems"), option.get("maxItems"), "items"))
        if "minProperties" in option:
            parts.append(f"at least {option['minProperties']} entries")
        items = option.get("items")
        if isinstance(items, dict) and "enum" in items:
            parts.append("each one of " + ", ".join(_literal(v) for v in items["enum"]))
    return "; ".join(parts)


def _bounds(option: dict[str, Any]) -> str:
    """A range as `0 ≤ x ≤ 1`, `0.5 < x ≤ 1`, `≥ 0` or `> 0`."""
    low = ("≤", option["minimum"]) if "minimum" in option else None
    low = ("<", option["exclusiveMinimum"]) if "exclusiveMinimum" in option else low
    high = ("≤", option["maximum"]) if "maximum" in option else None
    high = ("<", option["exclusiveMaximum"]) if "exclusiveMaximum" in option else high
    if low and high:
        return f"{_number(low[1])} {low[0]} x {high[0]} {_number(high[1])}"
    if low:
        return f"x {'≥' if low[0] == '≤' else '>'} {_number(low[1])}"
    if high:
        return f"x {high[0]} {_number(high[1])}"
    return ""


def _count(low: int | None, high: int | None, unit: str) -> str:
    if low is not None and high is not None:
        return f"{low} to {high} {unit}"
    if low is not None:
        return f"at least {low} {unit}"
    return f"at most {high} {unit}"


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _literal(value: Any) -> str:
    """A value as it is written in TOML (unset for null), in code format."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value!r}`"  # as TOML writes a float: 0.0, 0.0002, 1e-06
    if isinstance(value, dict) and not value:
        return "`{}`"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _first_paragraph(text: str) -> str:
    return _text(text.strip().split("\n\n")[0])


def _text(text: str) -> str:
    return " ".join(text.split())


def _inline(text: str) -> str:
    """Plain text as Markdown that shows it as written: characters Markdown would read as markup
    (`<out>` as an HTML tag, `_` as emphasis) are escaped outside `code spans`, which stay code."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(part if part.startswith("`") else re.sub(r"([\\*_<>\[\]#$~])", r"\\\1", part) for part in parts)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def anchor(path: str) -> str:
    """The HTML id of a key's row: `key-llm-engine-backend` for `llm.engine.backend`."""
    return "key-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def markdown(schema: dict[str, Any]) -> str:
    """The reference as MyST Markdown: a section per table, a table row per key (headings from ##)."""
    found = tables(schema)
    conditions = any(key.condition is not None for table in found for key in table.keys)
    header = ["key", "type", "default", "allowed", *(["varies by condition"] if conditions else []), "description"]
    lines: list[str] = []
    for table in found:
        lines += [f"({table_label(table.path)})=", f"## `{table.header}`", ""]
        notes = []
        if table.description:
            notes.append(_inline(table.description))
        if table.required and "required" not in table.description.lower():
            notes.append("Required.")
        if table.array:
            notes.append("An array of tables: repeat the header once per entry.")
        lines += [" ".join(notes), ""]
        if not table.keys:
            lines += ["(Only the sub-tables below.)", ""]
            continue
        lines += ["{.study-keys}", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for key in table.keys:
            name = key.path[len(table.path) + 1 :]
            cells = [
                f"[`{name}`]{{#{anchor(key.path)}}}",
                key.type,
                key.default,
                key.allowed,
                *([{True: "yes", False: "no", None: ""}[key.condition]] if conditions else []),
                _inline(key.description),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def table_label(path: str) -> str:
    """The Sphinx label of a table's section: `table-llm-engine` for `[llm.engine]`."""
    return "table-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def models(schema: dict[str, Any]) -> dict[str, str]:
    """The pydantic class behind each table (`EngineSection`) and the label of the table's section."""
    return {table.model: table_label(table.path) for table in tables(schema) if table.model}


def key_paths(schema: dict[str, Any]) -> list[str]:
    """The dotted path of every key the reference lists (free keys such as `conditions.<field>` included)."""
    return [key.path for table in tables(schema) for key in table.keys]
