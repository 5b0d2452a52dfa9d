"""The study file's JSON Schema: every key described, the committed copy current, condition factors marked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.schema.config import StudyConfig, is_condition_factor
from culturesim.schema.json_schema import CONDITION_FACTOR, SCHEMA_FILE, schema_text, study_json_schema

STUDIES = Path(__file__).resolve().parents[1] / "studies"
COMMITTED = STUDIES / SCHEMA_FILE


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A property's schema with its `allOf: [{$ref}]` replaced by the table it names."""
    refs = [part["$ref"] for part in [node, *node.get("allOf", ())] if "$ref" in part]
    return schema["definitions"][refs[0].rsplit("/", 1)[1]] if refs else node


def keys(schema: dict[str, Any], node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted key, its schema) for every key of a study file; an array of tables ([[...]]) as `name[].key`."""
    for name, prop in node.get("properties", {}).items():
        yield prefix + name, prop
        table = resolve(schema, prop)
        if table.get("type") == "array" and isinstance(table.get("items"), dict):
            yield from keys(schema, resolve(schema, table["items"]), f"{prefix}{name}[].")
        elif table is not prop:
            yield from keys(schema, table, f"{prefix}{name}.")


def test_every_key_of_a_study_file_has_a_description() -> None:
    schema = study_json_schema()
    found = dict(keys(schema, schema))
    assert len(found) > 100 and "llm.engine.model" in found and "preregistration.hypotheses[].alpha" in found
    missing = [key for key, prop in found.items() if not prop.get("description", "").strip()]
    assert not missing, f"study-file keys without a description (add Field(description=...)): {missing}"


def test_the_committed_schema_is_what_the_command_writes_now() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == schema_text(), (
        "studies/study.schema.json is out of date: run `culturesim schema --out studies/study.schema.json`"
    )


def test_the_schema_command_prints_or_writes_it(tmp_path: Path) -> None:
    printed = CliRunner().invoke(app, ["schema"])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == schema_text()
    written = CliRunner().invoke(app, ["schema", "--out", str(tmp_path / "s.json")])
    assert written.exit_code == 0, written.output
    assert (tmp_path / "s.json").read_text(encoding="utf-8") == schema_text()


def test_every_table_forbids_unknown_keys_as_the_models_do() -> None:
    schema = study_json_schema()
    assert StudyConfig.model_config["extra"] == "forbid"
    tables = [schema, *schema["definitions"].values()]
    assert all(table["additionalProperties"] is False for table in tables)


def test_the_schema_is_draft_07_with_ranges_enums_defaults_and_typed_pairs() -> None:
    """taplo 0.9 validates draft-07: no 2020-12 keyword may be left for it to ignore."""
    schema = study_json_schema()
    text = json.dumps(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "$defs" not in text and "prefixItems" not in text and '"type": "null"' not in text
    found = dict(keys(schema, schema))
    share = {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.0}
    assert share.items() <= found["population.llm_share"].items()
    assert found["population.turnover"]["exclusiveMinimum"] == 0.0
    assert found["network.kind"]["enum"][0] == "small_world" and found["network.kind"]["default"] == "small_world"
    assert "semantic_diversity" in found["metrics.names"]["items"]["enum"]
    assert found["humans.content_axis"]["items"] == [{"type": "string"}, {"type": "string"}]
    assert found["humans.content_axis"]["additionalItems"] is False
    assert "default" not in found["humans.content_axis"]  # TOML has no null: an unset key is left out


def test_each_key_says_whether_a_condition_may_vary_it() -> None:
    schema = study_json_schema()
    found = dict(keys(schema, schema))
    assert all(CONDITION_FACTOR in prop for prop in found.values()), "every key carries the flag"
    flags = {key: prop[CONDITION_FACTOR] for key, prop in found.items()}
    for key in ("population.llm_share", "llm.sampling.temperature", "llm.retraining.every", "humans.content_axis"):
        assert flags[key] is True, key
    for key in ("study.seed", "attractor.chains", "preregistration.aims", "llm", "llm.engine", "design", "conditions"):
        assert flags[key] is False, key
    for key, flag in flags.items():  # a setting (not a table) is a factor exactly when the config's rule says so
        if "[]" not in key and "definitions" not in json.dumps(found[key]):
            assert flag == is_condition_factor(key), key


def test_every_shipped_study_points_to_the_committed_schema() -> None:
    studies = sorted(STUDIES.glob("*.toml")) + sorted(STUDIES.glob("*/*.toml"))
    assert len(studies) >= 9
    for study in studies:
        first = study.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("#:schema "), f"{study} does not start with a #:schema line"
        assert (study.parent / first.removeprefix("#:schema ")).resolve() == COMMITTED, study
