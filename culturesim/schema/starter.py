"""`culturesim new NAME`: a commented study file to start from, and the schema beside it.

A researcher should be able to write a study without reading the code. The starter holds the tables
most shipped studies set, every key at its default with the key's description from the study file's
JSON Schema as a comment above it, so the comments cannot drift from what `load_config` accepts. It
compares two conditions and preregisters one hypothesis, so it runs as written (`culturesim run
NAME.toml --toy`) and shows the whole workflow; the texts to replace say so.

Its `#:schema ./study.schema.json` line points to a copy of the schema written next to it: a relative
path keeps working when the folder is moved, committed or opened on another machine (an absolute
path into the installed package would not, and taplo fails a file whose schema it cannot load). The
copy is refreshed when it differs, since it describes what the installed culturesim accepts.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

from culturesim.schema.json_schema import SCHEMA_FILE, schema_text, study_json_schema
from culturesim.schema.sections import ConfigError

COMMENT_WIDTH = 100  # characters of a comment line
# The tables of the starter, in order: those set by at least 8 of the 9 shipped studies (studies/*.toml,
# 2026-12), each [llm] table on its own; then the plan every study needs: [conditions] to compare and
# [preregistration] to test (8 of 9 preregister; the other runs a [design]).
SETTING_TABLES = ("study", "population", "network", "humans", "llm.prompt", "llm.sampling")
# The values the starter sets: two conditions to compare, examples for keys unset by default (written
# commented out), the analysis plan's texts and one hypothesis on the conditions.
CONDITIONS = {"population.llm_share": [0.0, 0.2]}
EXAMPLES = {
    "humans.content_axis": ["a sentence at the positive pole", "a sentence at the negative pole"],
    "preregistration.hypotheses.window": [0, 8],
}
REPLACE = "Replace before you preregister:"
PLAN = {
    "aims": f"{REPLACE} what the study is for.",
    "data_generating_mechanism": f"{REPLACE} the population, network, learning and conditions.",
    "estimands": f"{REPLACE} final semantic diversity, 20 % minus 0 % LLM agents.",
    "methods": f"{REPLACE} run-level OLS on the condition, HC3 errors, one-sided t-test.",
    "performance_measures": f"{REPLACE} H1 holds when its Holm-adjusted p is below alpha.",
    "stopping_rule": f"{REPLACE} every planned run is finished; no interim analysis.",
    "replicates_justification": f"{REPLACE} a power analysis (culturesim power) on a pilot.",
}
HYPOTHESIS = {
    "id": "H1",
    "statement": "At the final generation, semantic diversity is lower with 20 % LLM agents than with none.",
    "outcome": "semantic_diversity",
    "contrast": {"factor": "population.llm_share", "treatment": 0.2, "reference": 0.0},
    "direction": "less",
    "sesoi": 0.01,
}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


def write_starter(name: str, path: Path) -> list[Path]:
    """Write the starter study `name` to `path` and the schema beside it; the files written, in order.

    Refuses (ConfigError) a name the study file would refuse and an existing study file: a starter
    never overwrites a study someone may have preregistered."""
    if not NAME_PATTERN.match(name):
        raise ConfigError(
            f"study name {name!r} must be 1 to 80 letters, digits, '_', '.' or '-', e.g. 'my_study' (it names "
            "the results folder); to write the file in another folder, give --out PATH"
        )
    if path.exists():
        raise ConfigError(f"{path} already exists; culturesim new never overwrites a file: choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    schema_path = path.parent / SCHEMA_FILE
    written = [path]
    text = schema_text()
    if not schema_path.exists() or schema_path.read_text(encoding="utf-8") != text:
        schema_path.write_text(text, encoding="utf-8")
        written.append(schema_path)
    with path.open("x", encoding="utf-8") as file:  # "x": never over a file created meanwhile
        file.write(starter_text(name, file_name=path.name))
    return written


def starter_text(name: str, *, file_name: str | None = None) -> str:
    """The starter study file's text (see the module docstring); `file_name`: the file it is written to
    (default NAME.toml), as its first comment names it in the commands to run."""
    file_name = file_name or f"{name}.toml"
    schema = study_json_schema()
    written = {*SETTING_TABLES, "conditions", "preregistration"}
    left_out = [
        f"[[{key}]]" if prop.get("type") == "array" else f"[{key}]"
        for key, prop in schema["properties"].items()
        if key not in written and key != "llm"
    ]
    left_out += [f"[llm.{key}]" for key in _definition(schema, "llm")["properties"] if f"llm.{key}" not in written]
    lines = [f"#:schema ./{SCHEMA_FILE}"]
    lines += _comment(
        f"{name}: a culturesim study to start from. Each comment is the key's description from {SCHEMA_FILE} "
        f"(culturesim schema), which also describes the tables left out here: {', '.join(left_out)}. Keys are at "
        "their defaults, except the study's name, its conditions and its analysis plan."
    )
    lines += [
        f"# Try it: culturesim run {file_name} --toy. When the plan is final: culturesim preregister {file_name}."
    ]
    study = {"name": name, "description": "What does this study ask? One or two sentences."}
    for table in SETTING_TABLES:
        lines += _table(schema, table, study if table == "study" else {})
    lines += ["", "[conditions]", *_comment(schema["properties"]["conditions"]["description"])]
    lines += [f"{_value(factor)} = {_value(levels)}" for factor, levels in CONDITIONS.items()]
    lines += _table(schema, "preregistration", PLAN, skip=("hypotheses",))
    lines += _table(schema, "preregistration.hypotheses", HYPOTHESIS, header="[[preregistration.hypotheses]]")
    return "\n".join(lines) + "\n"


def _table(
    schema: dict[str, Any],
    table: str,
    values: dict[str, Any],
    *,
    skip: tuple[str, ...] = (),
    header: str | None = None,
) -> list[str]:
    """One table: its header, then each key's description as a comment and the key at its value (the
    default unless `values` says otherwise). A key a condition varies, or one without a value, is
    written commented out; a sub-table (a hypothesis's contrast) is written inline, its keys described
    one comment line each."""
    lines = ["", header or f"[{table}]"]
    for key, prop in _definition(schema, table)["properties"].items():
        if key in skip:
            continue
        dotted = f"{table}.{key}"
        lines += _comment(prop["description"])
        if "allOf" in prop:
            lines += [f"#   {k}: {v['description']}" for k, v in _resolve(schema, prop)["properties"].items()]
        if key in values:
            lines.append(f"{key} = {_value(values[key])}")
        elif dotted in CONDITIONS:
            lines.append(f"# {key} = {_value(prop['default'])}  (set per condition in [conditions])")
        elif dotted in EXAMPLES:
            lines.append(f"# {key} = {_value(EXAMPLES[dotted])}  (unset by default)")
        elif "default" in prop:
            lines.append(f"{key} = {_value(prop['default'])}")
        else:
            lines.append(f"# {key} =  (unset by default)")
    return lines


def _definition(schema: dict[str, Any], table: str) -> dict[str, Any]:
    """The schema of the table at a dotted path ('llm.prompt'); an array's tables by their item schema."""
    node = schema
    for part in table.split("."):
        node = _resolve(schema, node["properties"][part])
        if node.get("type") == "array":
            node = _resolve(schema, node["items"])
    return node


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A node with its `allOf: [{$ref}]` (or `$ref`) replaced by the definition it names."""
    ref = node["allOf"][0]["$ref"] if "allOf" in node else node.get("$ref")
    return schema["definitions"][ref.rsplit("/", 1)[1]] if ref else node


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=COMMENT_WIDTH, initial_indent="# ", subsequent_indent="# ")


def _value(value: Any) -> str:
    """A TOML value: strings as basic strings (JSON's escapes are TOML's), lists, inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    return repr(value)
