"""`culturesim new NAME`: a commented starter study that loads, passes taplo, runs, and never overwrites."""

from __future__ import annotations

import textwrap
import tomllib
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.schema.config import load_config
from culturesim.schema.json_schema import SCHEMA_FILE, schema_text, study_json_schema
from culturesim.schema.starter import COMMENT_WIDTH, SETTING_TABLES
from culturesim.study.runner import StudyRunner
from tests.test_schema_docs import keys
from tests.test_taplo import TAPLO, taplo

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def new(tmp_path: Path, *args: str):
    return CliRunner().invoke(app, ["new", *args], catch_exceptions=False)


@pytest.fixture
def starter(tmp_path: Path) -> Path:
    path = tmp_path / "trial.toml"
    result = new(tmp_path, "trial", "--out", str(path))
    assert result.exit_code == 0, result.output
    return path


def test_the_starter_loads_with_its_schema_beside_it(starter: Path) -> None:
    config = load_config(starter)
    assert config.study.name == "trial"
    assert [label for label, _ in config.condition_grid()] == ["llm_share=0.0", "llm_share=0.2"]
    assert config.preregistration is not None and config.preregistration.hypotheses[0].id == "H1"
    text = starter.read_text(encoding="utf-8")
    assert text.startswith(f"#:schema ./{SCHEMA_FILE}\n")
    assert (starter.parent / SCHEMA_FILE).read_text(encoding="utf-8") == schema_text()


def test_every_key_of_its_tables_is_written_under_its_description(starter: Path) -> None:
    """The comments come from the schema: in each table, every key's description, wrapped, right above the
    key (with an inline table's key descriptions between them, for a hypothesis's contrast)."""
    sections = table_lines(starter.read_text(encoding="utf-8"))
    schema = study_json_schema()
    written = 0
    for key, prop in keys(schema, schema):
        table, _, name = key.replace("[]", "").rpartition(".")
        if not table or table not in sections or (table, name) == ("preregistration", "hypotheses"):
            continue
        lines = sections[table]
        wrapped = textwrap.wrap(prop["description"], COMMENT_WIDTH, initial_indent="# ", subsequent_indent="# ")
        comment = "\n".join(wrapped)
        [at] = [i for i, line in enumerate(lines) if line.startswith((f"{name} =", f"# {name} ="))]
        assert comment in "\n".join(lines[max(0, at - comment.count("\n") - 4) : at]), key
        written += 1
    assert set(sections) >= {*SETTING_TABLES, "preregistration", "preregistration.hypotheses"}
    assert written > 50


def table_lines(text: str) -> dict[str, list[str]]:
    """Each table's lines (after its header) of a TOML text, by table name."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
        else:
            sections[current].append(line)
    return sections


def test_the_starter_passes_taplo(starter: Path) -> None:
    if TAPLO is None:
        pytest.skip("taplo is not installed (pip install -e '.[dev]')")
    result = taplo(starter)  # through its own #:schema line
    assert result.returncode == 0, result.stdout + result.stderr


def test_new_writes_name_toml_here_and_refuses_to_overwrite(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert new(tmp_path, "trial").exit_code == 0
    path = tmp_path / "trial.toml"
    path.write_text("# my preregistered study\n", encoding="utf-8")
    again = new(tmp_path, "trial")
    assert again.exit_code == 2
    assert "trial.toml already exists" in again.output and "never overwrites" in again.output
    assert path.read_text(encoding="utf-8") == "# my preregistered study\n"


def test_new_refuses_a_name_a_study_cannot_have(tmp_path: Path) -> None:
    result = new(tmp_path, "my study", "--out", str(tmp_path / "x.toml"))
    assert result.exit_code == 2 and "study name 'my study'" in result.output
    assert not (tmp_path / "x.toml").exists()


def test_the_starter_tables_are_those_most_shipped_studies_set() -> None:
    """Every table that all shipped studies but at most one set (the [llm] tables each on its own)."""
    studies = sorted(STUDIES.glob("*.toml"))
    used = Counter(table for study in studies for table in tables_of(tomllib.loads(study.read_text())))
    common = {table for table, count in used.items() if count >= len(studies) - 1}
    assert common == {*SETTING_TABLES, "preregistration"}


def tables_of(data: dict) -> set[str]:
    """The top-level tables a study file's data sets, and the [llm] tables by their own names."""
    found = set()
    for key, value in data.items():
        if key == "llm" and isinstance(value, dict):
            found |= {f"llm.{sub}" for sub, table in value.items() if isinstance(table, dict)}
        elif isinstance(value, dict):
            found.add(key)
    return found


@pytest.mark.slow
def test_the_starter_runs_as_written_at_toy_size(starter: Path, tmp_path: Path, embedder, vllm_backend) -> None:
    config = load_config(starter).toy()
    folder = StudyRunner(embedder=embedder, backend=vllm_backend).run(config, out_root=tmp_path / "out", toy=True)
    metrics = pl.read_parquet(folder / "metrics.parquet")
    assert metrics["run_id"].n_unique() == 2 * 2
    assert sorted(metrics["generation"].unique()) == [0, 1, 2]
    assert metrics.filter(pl.col("metric") == "llm_trait_share")["value"].max() > 0  # the LLM agents wrote
