"""Fuzzed bad input: malformed study files and corpus files only ever raise ConfigError.

The study fuzzer starts from a valid study (the quickstart's fields) and applies one
targeted mutation per example, so that most examples reach field validation rather than
stopping at a TOML syntax error: wrong types, missing required fields, unknown keys,
out-of-range and huge numbers, NaN/inf, invalid choices, unicode oddities, broken design
tables, plus text-level damage (broken syntax, NUL and other odd characters, non-UTF-8
bytes, random bytes, deep nesting). Each example must either load (counted; rare) or
raise a ConfigError whose message names the file and, for a field mutation, the field.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from culturesim.parts.corpus import load_corpus
from culturesim.schema.config import ConfigError, CorpusSection, StudyConfig, load_config

MAX_EXAMPLES = 2000
RESULTS: list[tuple[str, str]] = []  # (mutation kind, "field" | "syntax" | "loaded"), one per example run
SYNTAX_LEVEL = ("is not valid TOML", "is not UTF-8 text")  # refused before any field is looked at

BASE: dict[str, Any] = {
    "study": {
        "name": "fuzzbase",
        "description": "base study for fuzzing",
        "seed": 7,
        "replicates": 3,
        "generations": 8,
    },
    "population": {"size": 60, "turnover": 0.5},
    "network": {"kind": "small_world", "degree": 6, "rewire": 0.1},
    "humans": {"bias": "conformist", "conformity": 2.0, "demonstrators": 3, "copy_error": 0.05, "innovation": 0.02},
    "llm": {"prompt": {"role": "rewrite", "neighbours_read": 3}, "sampling": {"max_tokens": 48}},
    "corpus": {"source": "builtin"},
    "metrics": {"names": ["semantic_diversity", "machine_ancestry", "vendi"]},
    "conditions": {"population.llm_share": [0.0, 0.2]},
    "preregistration": {
        "aims": "a",
        "data_generating_mechanism": "d",
        "estimands": "e",
        "methods": "m",
        "performance_measures": "p",
        "stopping_rule": "s",
        "replicates_justification": "r",
        "hypotheses": [
            {
                "id": "H1",
                "statement": "diversity falls",
                "outcome": "semantic_diversity",
                "summary": "value",
                "generation": "final",
                "contrast": {"factor": "population.llm_share", "treatment": 0.2, "reference": 0.0},
                "direction": "less",
                "alpha": 0.05,
                "sesoi": 0.01,
                "model": "value ~ treatment",
            }
        ],
    },
}

ODD_CHARS = [
    "\x00",  # NUL
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "\u200b",  # zero-width space
    "\ufeff",  # byte-order mark
    "\U0001f600",  # emoji
    "\U0001f1fa\U0001f1f3",  # flag (two regional indicators)
    "e\u0301",  # combining accent
    "\x7f",
    "\x1b[31m",  # terminal escape
    "\u2028",  # line separator
    "\r",
    "\t",
    "\\",
    '"',
    "'",
    "\U0010ffff",
    "\ufffd",
]
SYNTAX_JUNK = list("[]{}=\"',.#\n") + ["[[", "]]", '"""', "'''", " = ", "\\u", "\\", "inf", "nan", "0x", "1979-05-27T"]
DATETIMES = [
    dt.datetime(1979, 5, 27, 7, 32, tzinfo=dt.UTC),
    dt.datetime(2026, 1, 1, 0, 0),
    dt.date(1979, 5, 27),
    dt.time(7, 32),
]


# -- a small TOML writer (quoted keys, inline tables below the first level) -------------------------


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(str(k))} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(data: dict[str, Any]) -> str:
    lines = [f"{_string(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, section in data.items():
        if isinstance(section, dict):
            lines.append(f"\n[{_string(key)}]")
            lines.extend(f"{_string(k)} = {_value(v)}" for k, v in section.items())
    return "\n".join(lines) + "\n"


# -- the schema, read from the pydantic models -------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    path: tuple[str | int, ...]
    annotation: Any
    metadata: tuple[Any, ...]
    required: bool


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _walk(model: type[BaseModel], prefix: tuple[str | int, ...]) -> list[FieldSpec]:
    specs = []
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        specs.append(FieldSpec(path, info.annotation, tuple(info.metadata), info.is_required()))
        origin = typing.get_origin(info.annotation)
        if origin is list and _model_of(typing.get_args(info.annotation)[0]):
            specs.extend(_walk(_model_of(typing.get_args(info.annotation)[0]), (*path, 0)))
        elif _model_of(info.annotation):
            specs.extend(_walk(_model_of(info.annotation), path))
    return specs


FIELDS = _walk(StudyConfig, ())
BY_PATH = {spec.path: spec for spec in FIELDS}
REQUIRED = [spec.path for spec in FIELDS if spec.required]
BOUNDED = [spec for spec in FIELDS if any(hasattr(m, a) for m in spec.metadata for a in ("ge", "gt", "le", "lt"))]
LENGTH_OR_PATTERN = [
    spec
    for spec in FIELDS
    if spec.annotation is str
    and any(hasattr(m, a) for m in spec.metadata for a in ("min_length", "max_length", "pattern"))
]
LITERALS = [spec for spec in FIELDS if typing.get_origin(spec.annotation) is typing.Literal]
KNOWN_NAMES = {str(p) for spec in FIELDS for p in spec.path}
assert len(FIELDS) > 60 and REQUIRED and BOUNDED and LITERALS


def _get(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: tuple[str | int, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {}) if isinstance(data, dict) else data[part]
    data[path[-1]] = value


def _delete(data: Any, path: tuple[str | int, ...]) -> None:
    for part in path[:-1]:
        data = data[part]
    data.pop(path[-1], None)


def _fresh() -> dict[str, Any]:
    return json.loads(json.dumps(BASE))


@dataclass(frozen=True)
class Case:
    kind: str
    data: bytes
    field: tuple[str | int, ...] | None = None  # the field the message must name, where there is one
    line: int | None = None  # the line a TOML-level error must name instead (a field tomllib cannot parse)

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return f"Case(kind={self.kind!r}, field={self.field!r}, data={self.data[:2000]!r})"


def _mutated(path: tuple[str | int, ...], value: Any, kind: str, *, delete: bool = False) -> Case:
    data = _fresh()
    if delete:
        _delete(data, path)
    else:
        _set(data, path, value)
    return Case(kind, to_toml(data).encode("utf-8"), path)


# -- strategies ----------------------------------------------------------------------------------------

plain_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
junk_scalar = st.one_of(
    plain_text.filter(lambda s: s.strip().lower() not in {"", "final"} and not _numeric(s)),
    st.sampled_from(DATETIMES),
)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _wrong_values(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Values of a type the field does not accept (pydantic's lax coercions avoided)."""
    annotation, origin = spec.annotation, typing.get_origin(spec.annotation)
    lists = st.lists(st.integers(-5, 5), min_size=1, max_size=3)
    tables = st.dictionaries(st.sampled_from(["a", "b", "x"]), st.integers(0, 3), min_size=1, max_size=2)
    if annotation in (int, float) or (origin in (typing.Union, getattr(__import__("types"), "UnionType", None))):
        if str in typing.get_args(annotation):  # e.g. base_url: str | None
            return st.one_of(st.integers(), lists, tables, st.booleans())
        return st.one_of(junk_scalar, lists, tables, st.booleans())
    if annotation is str:
        return st.one_of(st.integers(), st.floats(), st.booleans(), lists, tables, st.sampled_from(DATETIMES))
    if annotation is bool:
        return st.one_of(st.sampled_from(["maybe", "enabled", "2"]), st.integers(2, 10**6), st.floats(0.1, 0.9), lists)
    if origin is typing.Literal:
        return st.one_of(st.integers(), st.floats(), lists, tables, st.booleans())
    if origin in (tuple, list, dict) or _model_of(annotation):
        if origin is dict:
            return st.one_of(plain_text, st.integers(), lists)
        return st.one_of(plain_text, st.integers(), st.floats(), st.booleans())
    return st.one_of(st.integers(), plain_text, lists, tables)  # Any: only cross-field checks can catch it


@st.composite
def wrong_type(draw) -> Case:
    spec = draw(st.sampled_from([s for s in FIELDS if s.annotation is not Any]))
    return _mutated(spec.path, draw(_wrong_values(spec)), "wrong_type")


def _bounds(spec: FieldSpec) -> dict[str, Any]:
    bounds = {}
    for item in spec.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if isinstance(item, getattr(annotated_types, name.capitalize())):
                bounds[name] = getattr(item, name)
    return bounds


@st.composite
def out_of_range(draw) -> Case:
    spec = draw(st.sampled_from(BOUNDED))
    bounds = _bounds(spec)
    is_int = spec.annotation is int
    candidates: list[Any] = [float("nan"), float("inf"), float("-inf"), 10**30, -(10**30), 1e300, -1e300]
    if "ge" in bounds:
        low = bounds["ge"]
        candidates += [low - 1, low - 10**6] if is_int else [low - 1e-9, low - 0.5, -abs(low) - 1.0]
    if "gt" in bounds:
        candidates += [bounds["gt"], bounds["gt"] - 1]
    if "le" in bounds:
        high = bounds["le"]
        candidates += [high + 1, high * 10 + 1] if is_int else [high + 1e-6, high + 0.5, high * 2 + 1]
    if "lt" in bounds:
        candidates += [bounds["lt"], bounds["lt"] + 1]
    return _mutated(spec.path, draw(st.sampled_from(candidates)), "out_of_range")


@st.composite
def missing(draw) -> Case:
    path = draw(st.sampled_from([p for p in REQUIRED if _present(p)]))
    return _mutated(path, None, "missing", delete=True)


def _present(path: tuple[str | int, ...]) -> bool:
    try:
        _get(BASE, path)
    except (KeyError, IndexError):
        return False
    return True


unknown_names = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=16),
    st.sampled_from(["sise", "Size", "llm_shares", "seeds", "population.size", "a.b", "", " ", "__class__"]),
).filter(lambda k: k not in KNOWN_NAMES and k != "label")


@st.composite
def unknown_key(draw) -> Case:
    key = draw(unknown_names)
    where = draw(
        st.sampled_from(
            [(), ("study",), ("population",), ("humans",), ("llm",), ("metrics",), ("preregistration",)]
            + [("preregistration", "hypotheses", 0), ("preregistration", "hypotheses", 0, "contrast")]
        )
    )
    value = draw(st.one_of(st.integers(), plain_text, st.booleans(), st.floats()))
    if where == () and draw(st.booleans()):
        value = {"x": 1}  # an unknown section rather than an unknown top-level value
    kind = "unknown_key_top" if where == () else "unknown_key_section"
    return _mutated((*where, key), value, kind)


@st.composite
def invalid_choice(draw) -> Case:
    """A string a choice, pattern or length rule rejects: enums, names, metrics, formulas, outcomes."""
    choice = draw(st.sampled_from(["literal", "pattern", "metric", "formula", "outcome", "factor"]))
    if choice == "literal":
        spec = draw(st.sampled_from(LITERALS))
        allowed = set(typing.get_args(spec.annotation))
        value = draw(
            plain_text.filter(lambda s: s not in allowed) | st.sampled_from(["Small_World", "vllm ", "auto\x00"])
        )
        return _mutated(spec.path, value, "invalid_choice", delete=False)
    if choice == "pattern":
        spec = draw(st.sampled_from(LENGTH_OR_PATTERN))
        values = []
        for item in spec.metadata:
            if getattr(item, "min_length", None):
                values.append("")
            if getattr(item, "max_length", None):
                values.append("x" * (item.max_length + 1))
            if getattr(item, "pattern", None):
                values += ["has space", "ünïcode", "a/b", "semi;colon", "\x00", "\u200f"]
        return _mutated(spec.path, draw(st.sampled_from(values)), "invalid_choice")
    if choice == "metric":
        names = ["vendi", draw(plain_text.filter(lambda s: s not in {"vendi", "semantic_diversity"}))]
        return _mutated(("metrics", "names"), names, "invalid_choice")
    if choice == "formula":
        formula = draw(
            st.sampled_from(
                [
                    "value ~ __import__('os').system('touch pwned')",
                    "value ~ C(open('pwned', 'w'))",
                    "value ~ treatment + exec('1')",
                    "value ~ I(1/0)",
                    "value ~ treatment; import os",
                    "treatment ~ value",
                    "value",
                    "value ~ treatment\n+ eval('2')",
                    "value ~ generation.__class__",
                    "value ~ 1e5",
                ]
            )
        )
        path = ("preregistration", "hypotheses", 0, draw(st.sampled_from(["model", "mixed_model"])))
        return _mutated(path, formula, "invalid_choice")
    if choice == "outcome":
        return _mutated(("preregistration", "hypotheses", 0, "outcome"), draw(plain_text), "invalid_choice")
    factor = draw(st.sampled_from(["population.size", "population.nope", "study.seed", "llm_share", ""]))
    return _mutated(("preregistration", "hypotheses", 0, "contrast", "factor"), factor, "invalid_choice")


@st.composite
def unicode_field(draw) -> Case:
    """Odd unicode inside a value that is checked (names, choices, metrics, formulas, factors)."""
    odd = draw(st.sampled_from(ODD_CHARS))
    path = draw(
        st.sampled_from(
            [
                ("study", "name"),
                ("network", "kind"),
                ("humans", "bias"),
                ("llm", "prompt", "role"),
                ("preregistration", "hypotheses", 0, "id"),
                ("preregistration", "hypotheses", 0, "outcome"),
                ("preregistration", "hypotheses", 0, "model"),
                ("preregistration", "hypotheses", 0, "direction"),
                ("preregistration", "hypotheses", 0, "contrast", "factor"),
            ]
        )
    )
    base = _get(BASE, path)
    at = draw(st.integers(0, len(base)))
    return _mutated(path, base[:at] + odd + base[at:], "unicode_field")


@st.composite
def design(draw) -> Case:
    """Broken [conditions] / [[condition_sets]] tables."""
    data = _fresh()
    choice = draw(st.integers(0, 6))
    if choice == 0:
        key = draw(st.sampled_from(["population.nope", "study.seed", "population", "llm.x.y", "label", "", "a.b.c"]))
        data["conditions"][key] = [1, 2]
        field: tuple = (key,) if key else ("conditions",)
    elif choice == 1:
        data["conditions"]["network.degree"] = []
        field = ("network.degree",)
    elif choice == 2:
        data["conditions"]["network.degree"] = [4, 4]
        field = ("network.degree",)
    elif choice == 3:
        bad = draw(st.sampled_from([1.5, -0.1, float("nan"), float("inf"), "lots", [0.1], {"a": 1}, *DATETIMES]))
        data["conditions"]["population.llm_share"] = [0.0, 0.2, bad]
        field = ("population.llm_share",)
    elif choice == 4:
        data["condition_sets"] = [{"label": "a", "population.llm_share": 0.0}]
        field = ("condition_sets",)
    elif choice == 5:
        del data["conditions"]
        entry = draw(st.sampled_from([{"population.nope": 1}, {"study.name": "x"}, {"network.degree": 0}]))
        data["condition_sets"] = [{"population.llm_share": 0.0}, {"population.llm_share": 0.2}, entry]
        field = (next(iter(entry)),)
    else:
        data["conditions"] = {"population.llm_share": draw(st.sampled_from([0.2, "0.2", {"a": 0.2}]))}
        field = ("population.llm_share",)
    return Case("design", to_toml(data).encode("utf-8"), field)


@st.composite
def huge_number(draw) -> Case:
    """Numbers no field can hold: 10**30, 400-digit ints, beyond-float literals, 5000-digit literals."""
    spec = draw(st.sampled_from([s for s in FIELDS if s.annotation in (int, float) and _present(s.path)]))
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return _mutated(spec.path, draw(st.sampled_from([10**30, -(10**30), 10**400, -(10**400)])), "huge_number")
    text = to_toml(_fresh())
    leaf = _string(str(spec.path[-1])) + " = "
    start = text.index(leaf, text.index(_string(str(spec.path[0]))) if len(spec.path) > 1 else 0) + len(leaf)
    end = min(i for i in (text.find("\n", start), text.find(",", start), text.find("}", start)) if i >= 0)
    literal = draw(
        st.sampled_from(["1e400", "-1e400", "9" * 5000, "-" + "1" * 4400, "1" * 5000 + ".5", "1_000" * 2000])
    )
    line = text.count("\n", 0, start) + 1
    return Case("huge_number", (text[:start] + literal + text[end:]).encode("utf-8"), spec.path, line)


@st.composite
def datetime_value(draw) -> Case:
    """TOML dates and times where numbers, strings or condition levels belong."""
    when = draw(st.sampled_from(DATETIMES))
    choice = draw(st.integers(0, 3))
    if choice == 0:
        spec = draw(st.sampled_from([s for s in FIELDS if s.annotation in (int, float, str, bool)]))
        return _mutated(spec.path, when, "datetime")
    if choice == 1:
        case = _mutated(("conditions", "population.llm_share"), [0.0, 0.2, when], "datetime")
        return Case(case.kind, case.data, ("population.llm_share",))
    if choice == 2:
        return _mutated(("preregistration", "hypotheses", 0, "contrast", "treatment"), when, "datetime")
    data = _fresh()
    del data["conditions"]
    data["condition_sets"] = [{"population.llm_share": 0.0}, {"population.llm_share": 0.2, "label": when}]
    data["condition_sets"].append({"population.llm_share": when})
    return Case("datetime", to_toml(data).encode("utf-8"), ("population.llm_share",))


@st.composite
def broken_syntax(draw) -> Case:
    text = to_toml(_fresh())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.integers(0, 3))
        if action == 0:
            text = text[:at] + draw(st.sampled_from(SYNTAX_JUNK)) + text[at:]
        elif action == 1:
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif action == 2 and text:
            lines = text.splitlines(keepends=True)
            line = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[: line + 1] + [lines[line]] + lines[line + 1 :])  # duplicated key or table
        else:
            text = text[:at]
    return Case("broken_syntax", text.encode("utf-8"))


@st.composite
def unicode_raw(draw) -> Case:
    text = to_toml(_fresh())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(ODD_CHARS)) + text[at:]
    return Case("unicode_raw", text.encode("utf-8"))


@st.composite
def non_utf8(draw) -> Case:
    text = to_toml(_fresh())
    at = draw(st.integers(0, len(text)))
    head, tail = text[:at].encode("utf-8"), text[at:].encode("utf-8")
    choice = draw(st.integers(0, 4))
    if choice == 0:  # a lone surrogate, encoded as if it were a character
        middle = draw(st.sampled_from(["\ud800", "\udfff", "\udc80"])).encode("utf-8", "surrogatepass")
        return Case("non_utf8", head + middle + tail)
    if choice == 1:
        return Case("non_utf8", head + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xc0\xaf"])) + tail)
    if choice == 2:  # the whole file in another encoding, with a non-ASCII description
        data = _fresh()
        data["study"]["description"] = "Überprüfung der Ähnlichkeit"
        return Case("non_utf8", to_toml(data).encode(draw(st.sampled_from(["latin-1", "cp1252"]))))
    if choice == 3:
        return Case("non_utf8", to_toml(_fresh()).encode(draw(st.sampled_from(["utf-16", "utf-32", "utf-16-le"]))))
    return Case("non_utf8", head + draw(st.binary(min_size=1, max_size=8).filter(_not_utf8)) + tail)


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@st.composite
def random_bytes(draw) -> Case:
    return Case("random_bytes", draw(st.binary(max_size=300)))


@st.composite
def deep_nesting(draw) -> Case:
    depth = draw(st.sampled_from([10, 100, 500, 900, 1200, 5000, 50_000]))
    inner = draw(st.sampled_from(["array", "table"]))
    value = "[" * depth + "0.1" + "]" * depth if inner == "array" else '{"a" = ' * depth + "1" + "}" * depth
    where = draw(st.sampled_from(["level", "field", "treatment"]))
    text = to_toml(_fresh())
    if where == "level":
        text = text.replace('"population.llm_share" = [0.0, 0.2]', f'"population.llm_share" = [0.0, 0.2, {value}]')
        field: tuple = ("population.llm_share",)
    elif where == "field":
        text = text.replace('"size" = 60', f'"size" = {value}')
        field = ("population", "size")
    else:
        text = text.replace('"treatment" = 0.2', f'"treatment" = {value}')
        field = ("preregistration", "hypotheses", 0, "contrast", "treatment")
    return Case("deep_nesting", text.encode("utf-8"), field)


FIELD_LEVEL = st.one_of(
    wrong_type(),
    out_of_range(),
    missing(),
    unknown_key(),
    invalid_choice(),
    unicode_field(),
    design(),
    huge_number(),
    datetime_value(),
    deep_nesting(),
)
TEXT_LEVEL = st.one_of(broken_syntax(), unicode_raw(), non_utf8(), random_bytes())


@st.composite
def study_files(draw) -> Case:
    """Three in four examples mutate a field of the valid study; the rest damage the file's text or bytes."""
    return draw(TEXT_LEVEL if draw(st.integers(0, 3)) == 0 else FIELD_LEVEL)


def names_field(message: str, path: tuple[str | int, ...]) -> bool:
    """The message names the field: by its dotted name, its hypothesis-id form, or its parent plus its name."""

    def forms(parts: tuple[str | int, ...]) -> set[str]:
        dotted = ".".join(str(p) for p in parts)
        return {dotted, dotted.replace("hypotheses.0", "hypotheses[H1]")}

    if any(form in message for form in forms(path)):
        return True
    parent = path[:-1]
    return bool(parent) and any(form in message for form in forms(parent)) and str(path[-1]) in message


# -- the tests -----------------------------------------------------------------------------------------


def test_the_base_study_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "base.toml"
    path.write_text(to_toml(BASE), encoding="utf-8")
    config = load_config(path)
    assert config.study.name == "fuzzbase" and config.preregistration is not None


def test_fuzzed_study_files_only_raise_config_error(tmp_path_factory: pytest.TempPathFactory, capsys) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "fuzzed-study.toml"
    RESULTS.clear()

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(study_files())
    def check(case: Case) -> None:
        path.write_bytes(case.data)
        try:
            load_config(path)
        except ConfigError as exc:
            message = str(exc)
            assert str(path) in message, f"the message does not name the file: {message[:500]}"
            if "is not valid TOML" in message:  # tomllib refused it: a line, where known, not a field
                if case.line is not None:
                    assert f"line {case.line}" in message, message[:1000]
            elif case.field is not None:
                assert names_field(message, case.field), f"{case.field} not named in: {message[:1000]}"
            RESULTS.append((case.kind, "syntax" if any(s in message for s in SYNTAX_LEVEL) else "field"))
        else:
            RESULTS.append((case.kind, "loaded"))

    check()

    counts = Counter(RESULTS)
    kinds = sorted({kind for kind, _ in RESULTS})
    total = Counter(outcome for _, outcome in RESULTS)
    loaded, field = total["loaded"], total["field"]
    with capsys.disabled():
        print(f"\nfuzzed study files: {len(RESULTS)} examples. ConfigError from field validation: {field}; ", end="")
        print(f"from TOML/UTF-8 decoding: {total['syntax']}; loaded (valid by chance): {loaded}")
        print(f"  {'mutation kind':<20} {'field':>6} {'syntax':>7} {'loaded':>7}")
        for kind in kinds:
            row = [counts[(kind, outcome)] for outcome in ("field", "syntax", "loaded")]
            print(f"  {kind:<20} {row[0]:>6} {row[1]:>7} {row[2]:>7}")
    assert len(RESULTS) >= 1000, f"only {len(RESULTS)} examples ran"
    assert field > len(RESULTS) / 2, f"only {field} of {len(RESULTS)} examples reached field validation"
    assert loaded <= 0.05 * len(RESULTS), f"{loaded} of {len(RESULTS)} mutated files were valid: mutations too weak"
    assert len(kinds) == 15, kinds  # every mutation kind was drawn


def test_study_formulas_never_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A formula that would touch a file if evaluated is refused at load time, and nothing runs."""
    monkeypatch.chdir(tmp_path)
    for formula in ["value ~ C(open('pwned', 'w'))", "value ~ __import__('os').system('touch pwned')"]:
        data = _fresh()
        data["preregistration"]["hypotheses"][0]["model"] = formula
        path = tmp_path / "study.toml"
        path.write_text(to_toml(data), encoding="utf-8")
        with pytest.raises(ConfigError, match=r"preregistration\.hypotheses\.0\.model"):
            load_config(path)
    assert not (tmp_path / "pwned").exists()


def test_unreadable_study_paths(tmp_path: Path) -> None:
    for path, detail in [(tmp_path / "absent.toml", "does not exist"), (tmp_path, "cannot be read")]:
        with pytest.raises(ConfigError, match=detail) as info:
            load_config(path)
        assert str(path) in str(info.value)


# -- corpus files --------------------------------------------------------------------------------------

HUGE = 8 * 2**20  # an 8 MiB single line


@pytest.mark.parametrize(
    ("name", "content", "detail"),
    [
        ("no-text.csv", b"body,domain\nhello,story\n", "no 'text' column"),
        ("no-text.jsonl", b'{"body": "hello"}\n', "no 'text' column"),
        ("empty-texts.csv", b'text\n""\n"   "\n', "no non-empty texts"),
        ("header-only.csv", b"text\n", "no non-empty texts"),
        ("empty-texts.jsonl", b'{"text": ""}\n{"text": "  "}\n{"text": null}\n', "no non-empty texts"),
        ("empty-file.csv", b"", "cannot be read"),
        ("latin1.csv", "text\nÜberprüfung der Ähnlichkeit\n".encode("latin-1"), "UTF-8"),
        ("bad-bytes.jsonl", b'{"text": "caf\xe9 \xff"}\n', "cannot be read"),
        ("surrogate.csv", b"text\nab" + "\ud800".encode("utf-8", "surrogatepass") + b"cd\n", "UTF-8"),
        ("numbers.csv", b"text\n1\n2\n3\n", "must hold strings"),
        ("numbers.jsonl", b'{"text": 1}\n{"text": 2.5}\n', "must hold strings"),
        ("huge-line.csv", b"x" * HUGE, "no 'text' column"),
        ("huge-line.jsonl", b'{"text": "' + b"x" * HUGE, "cannot be read"),
        ("not-a-table.parquet", b"PAR1" + b"\x00" * 64, "cannot be read"),
        ("corpus.txt", b"text\nhello\n", "unsupported file type"),
        ("domain-list.jsonl", b'{"text": "a", "domain": [1, 2]}\n', "column 'domain' must hold strings"),
    ],
)
def test_bad_corpus_files_raise_config_error(tmp_path: Path, name: str, content: bytes, detail: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_corpus(CorpusSection(source=str(path)))
    message = str(info.value)
    assert "corpus.source" in message and str(path) in message, message[:300]
    assert detail in message, message[:300]


def test_missing_corpus_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"corpus\.source .* does not exist"):
        load_corpus(CorpusSection(source=str(tmp_path / "absent.csv")))


def test_corpus_text_column_of_numbers_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "numbers.parquet"
    pl.DataFrame({"text": [1, 2, 3]}).write_parquet(path)
    with pytest.raises(ConfigError, match=r"corpus\.source .*must hold strings"):
        load_corpus(CorpusSection(source=str(path)))
