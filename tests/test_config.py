"""Tests for culturesim.schema.config: loading study TOML files and the errors people see."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.core.vocabulary import NETWORK_KINDS
from culturesim.schema.config import ConfigError, StudyConfig, load_config
from culturesim.schema.llm_section import FlatLLMLayoutWarning

REPO = Path(__file__).resolve().parents[1]
STUDY = '[study]\nname = "t"\n'


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    """The message of the ConfigError that loading `path` raises."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


# -- errors: each names the file and the offending field -------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ("[population]\nsise = 10\n", "population.sise", "not a known setting"),
        ("[populaton]\nsize = 10\n", "populaton", "not a known setting"),
        ('[population]\nsize = "many"\n', "population.size", "valid integer"),
        ("[population]\nllm_share = 1.4\n", "population.llm_share", "less than or equal to 1"),
        ("[humans]\ncopy_error = -0.1\n", "humans.copy_error", "greater than or equal to 0"),
        ("[population]\nturnover = 0\n", "population.turnover", "greater than 0"),
        ('[metrics]\nnames = ["vendi", "bogus_metric"]\n', "metrics.names", "bogus_metric"),
        ('[humans]\nbias = "content"\n', "humans", "content_axis"),
        ('[conditions]\n"population.nope" = [1]\n', "population.nope", "not a model field"),
        ('[conditions]\n"population.llm_share" = []\n', "population.llm_share", "at least one level"),
    ],
    ids=[
        "unknown-key",
        "unknown-section",
        "wrong-type",
        "share-above-1",
        "negative-error",
        "zero-turnover",
        "unknown-metric",
        "content-without-axis",
        "unknown-factor",
        "empty-levels",
    ],
)
def test_invalid_setting_names_file_and_field(tmp_path, body, field, detail):
    path = write(tmp_path, STUDY + body)
    message = config_error(path)
    assert str(path) in message
    assert field in message
    assert detail in message


def test_unknown_metric_lists_the_available_ones(tmp_path):
    message = config_error(write(tmp_path, STUDY + '[metrics]\nnames = ["bogus_metric"]\n'))
    assert "semantic_diversity" in message and "vendi" in message


def test_unknown_network_kind_lists_allowed_kinds(tmp_path):
    path = write(tmp_path, STUDY + '[network]\nkind = "hexagonal"\n')
    message = config_error(path)
    assert str(path) in message and "network.kind" in message and "hexagonal" in message
    for kind in NETWORK_KINDS:
        assert kind in message


def test_missing_study_section(tmp_path):
    path = write(tmp_path, "[population]\nsize = 10\n")
    message = config_error(path)
    assert str(path) in message
    assert re.search(r"\bstudy is required", message)


def test_broken_toml_syntax(tmp_path):
    path = write(tmp_path, '[study\nname = "t"\n')
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path)
    assert str(path) in str(info.value) and "line 1" in str(info.value)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin.toml"
    path.write_bytes(b'[study]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_boolean_is_not_accepted_as_a_number(tmp_path):
    path = write(tmp_path, '[study]\nname = "t"\nreplicates = true\n[population]\nllm_share = true\n')
    with pytest.raises(ConfigError, match="study.replicates"):
        load_config(path)


# -- valid files ----------------------------------------------------------------------------------


def test_quickstart_study_loads():
    config = load_config(REPO / "studies" / "quickstart.toml")
    assert config.study.name == "quickstart"
    assert config.population.size == 60
    assert config.humans.bias == "conformist"
    assert config.conditions == {"population.llm_share": [0.0, 0.2]}


def test_defaults_fill_unset_sections(tmp_path):
    config = load_config(write(tmp_path, STUDY))
    assert config.network.kind == "small_world"
    assert config.population.llm_share == 0.0
    assert config.condition_grid() == [("baseline", config)]


def test_condition_grid_is_the_factorial_product(tmp_path):
    path = write(
        tmp_path,
        STUDY + '[conditions]\n"population.llm_share" = [0.0, 0.5]\n"network.kind" = ["lattice", "complete"]\n',
    )
    grid = load_config(path).condition_grid()
    assert len(grid) == 4
    labels = [label for label, _ in grid]
    assert len(set(labels)) == 4
    applied = {(c.network.kind, c.population.llm_share) for _, c in grid}
    assert applied == {("lattice", 0.0), ("lattice", 0.5), ("complete", 0.0), ("complete", 0.5)}
    for label, condition in grid:
        assert f"kind={condition.network.kind}" in label
        assert f"llm_share={condition.population.llm_share}" in label
        assert condition.conditions == {}


def test_condition_level_out_of_range_names_the_field(tmp_path):
    path = write(tmp_path, STUDY + '[conditions]\n"population.llm_share" = [0.0, 2.0]\n')
    with pytest.raises(ConfigError, match=r"population\.llm_share") as info:
        load_config(path).condition_grid()
    assert "2.0" in str(info.value)


def test_condition_level_out_of_range_is_refused_at_load_time(tmp_path):
    path = write(tmp_path, STUDY + '[conditions]\n"population.llm_share" = [0.0, 2.0]\n')
    with pytest.raises(ConfigError, match="population.llm_share") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_hash_ignores_key_order_but_not_values(tmp_path):
    factors = ['"population.llm_share" = [0.0, 0.5]\n', '"network.kind" = ["lattice", "random"]\n']
    one = write(
        tmp_path,
        '[study]\nname = "t"\nseed = 3\n[population]\nsize = 20\nturnover = 0.4\n[conditions]\n' + "".join(factors),
        "a.toml",
    )
    same = write(
        tmp_path,
        "[conditions]\n" + "".join(reversed(factors)) + "[population]\nturnover = 0.4\nsize = 20\n"
        '[study]\nseed = 3\nname = "t"\n',
        "b.toml",
    )
    other = write(tmp_path, one.read_text().replace("size = 20", "size = 21"), "c.toml")
    assert load_config(one).hash() == load_config(same).hash()
    assert load_config(one).hash() != load_config(other).hash()
    assert re.fullmatch(r"[0-9a-f]{64}", load_config(one).hash())


def test_hash_counts_defaults_as_set():
    """An explicit default and an omitted one are the same study."""
    implicit = StudyConfig.model_validate({"study": {"name": "t"}})
    explicit = StudyConfig.model_validate({"study": {"name": "t"}, "population": {"size": 60}})
    assert implicit.hash() == explicit.hash()


# -- the [llm] tables: engine, sampling, prompt -----------------------------------------------------

SPLIT = " ([llm] is split into [llm.engine], [llm.sampling] and [llm.prompt] tables)"


def test_llm_settings_live_in_three_tables(tmp_path):
    path = write(
        tmp_path,
        STUDY + '[llm.engine]\nbackend = "transformers"\ndtype = "bfloat16"\n[llm.sampling]\ntemperature = 0.5\n'
        'max_tokens = 30\n[llm.prompt]\nrole = "advise"\nretries = 1\n',
    )
    llm = load_config(path).llm
    assert (llm.engine.backend, llm.engine.dtype, llm.engine.model) == (
        "transformers",
        "bfloat16",
        "builtin:smollm2-135m",
    )
    assert (llm.sampling.temperature, llm.sampling.top_p, llm.sampling.max_tokens) == (0.5, 0.95, 30)
    assert (llm.prompt.role, llm.prompt.retries, llm.prompt.neighbours_read) == ("advise", 1, 3)
    dumped = load_config(path).model_dump(mode="json")["llm"]
    assert set(dumped) == {"engine", "sampling", "prompt"}
    assert "base_url" not in dumped["engine"] and "api_key_env" not in dumped["engine"], "unset server fields stay out"


@pytest.mark.parametrize(
    ("body", "moved"),
    [
        ("[llm]\ntemperature = 0.5\n", ["llm.temperature is now llm.sampling.temperature"]),
        ('[llm]\nbackend = "vllm"\n', ["llm.backend is now llm.engine.backend"]),
        (
            '[llm]\nrole = "advise"\nmax_tokens = 30\n[llm.sampling]\ntop_p = 0.9\n',
            ["llm.role is now llm.prompt.role", "llm.max_tokens is now llm.sampling.max_tokens"],
        ),
    ],
    ids=["sampling", "engine", "several"],
)
def test_a_flat_llm_setting_is_read_with_one_warning_naming_its_new_place(tmp_path, body, moved):
    """A study file of the layout before [llm] was split still runs (it may be preregistered)."""
    with pytest.warns(FlatLLMLayoutWarning) as caught:
        load_config(write(tmp_path, STUDY + body))
    assert [str(w.message).split(" (")[0] for w in caught] == moved


@pytest.mark.parametrize(
    "design",
    ['[conditions]\n"llm.temperature" = [0.5, 1.0]\n', '[[condition_sets]]\nlabel = "hot"\n"llm.temperature" = 1.0\n'],
    ids=["conditions", "condition-sets"],
)
def test_a_condition_over_an_old_llm_path_is_read_with_one_warning(tmp_path, design):
    path = write(tmp_path, STUDY + design)
    with pytest.warns(FlatLLMLayoutWarning, match="llm.temperature is now llm.sampling.temperature"):
        grid = load_config(path).condition_grid()
    assert 1.0 in {c.llm.sampling.temperature for _, c in grid}


def test_conditions_over_nested_llm_settings(tmp_path):
    path = write(
        tmp_path,
        STUDY + '[llm.sampling]\ntop_p = 0.9\n[conditions]\n"llm.sampling.temperature" = [0.5, 1.0]\n'
        '"llm.engine.dtype" = ["float32", "bfloat16"]\n',
    )
    grid = load_config(path).condition_grid()
    applied = {(c.llm.sampling.temperature, c.llm.engine.dtype) for _, c in grid}
    assert applied == {(0.5, "float32"), (0.5, "bfloat16"), (1.0, "float32"), (1.0, "bfloat16")}
    assert {c.llm.sampling.top_p for _, c in grid} == {0.9}, "a level changes its setting only"
    assert [label for label, _ in grid][0] == "dtype=float32,temperature=0.5"  # labels name the setting alone


def test_a_condition_over_a_whole_table_is_refused(tmp_path):
    message = config_error(write(tmp_path, STUDY + '[conditions]\n"llm.sampling" = [{temperature = 0.5}]\n'))
    assert "'llm.sampling' names a table, not a setting" in message and "llm.sampling.temperature" in message


# -- command line ---------------------------------------------------------------------------------


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_cli_run_bad_file_prints_one_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short relative path keeps the message's first line short
    write(tmp_path, STUDY + "[population]\nllm_share = 1.4\n", "bad.toml")
    result = run_cli("run", "bad.toml")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if "ConfigError" in line]
    assert len(lines) == 1
    assert lines[0].startswith("ConfigError:")
    assert "bad.toml" in lines[0] and "population.llm_share" in lines[0]


def test_cli_run_missing_file_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", "none.toml")
    assert result.exit_code == 2
    assert "none.toml does not exist" in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_cli_run_bad_condition_level_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, STUDY + '[conditions]\n"population.llm_share" = [0.0, 2.0]\n', "bad.toml")
    result = run_cli("run", "bad.toml")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.count("ConfigError") == 1
    assert "population.llm_share" in result.stderr and "2.0" in result.stderr


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[population]\nsise = 10\n", "(section [population])"),
        ('[humans]\nbias = "content"\n', "[positive sentence, negative sentence]"),
    ],
    ids=["section-name", "content-axis-hint"],
)
def test_cli_prints_brackets_in_messages_verbatim(tmp_path, monkeypatch, body, expected):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, STUDY + body, "bad.toml")
    result = run_cli("run", "bad.toml")
    assert result.exit_code == 2
    assert expected in " ".join(result.stderr.split())


def test_cli_config_error_is_a_single_line(tmp_path):
    path = write(tmp_path, STUDY + "[population]\nllm_share = 1.4\n", "bad.toml")
    result = run_cli("run", str(path))
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()  # not hard-wrapped, even with a long path
    assert line.startswith("ConfigError:")
    assert str(path) in line and "population.llm_share" in line


def test_a_results_folder_written_before_the_llm_split_stays_readable():
    """A manifest stores the config as it was dumped; one from before [llm] was split holds flat keys
    (and flat condition factors). It is read into the new tables, and its hash is the stored text's."""
    from culturesim.schema.config import stored_config, stored_hash

    current = StudyConfig.model_validate(
        {
            "study": {"name": "old", "seed": 2},
            "population": {"llm_share": 0.25},
            "llm": {"sampling": {"temperature": 0.6}, "prompt": {"role": "create", "retries": 1}},
            "conditions": {"llm.sampling.top_p": [0.9, 0.95]},
        }
    )
    dumped = current.model_dump(mode="json")
    assert stored_hash(dumped) == current.hash()
    flat_llm = {key: value for table in dumped["llm"].values() for key, value in table.items()}
    old_layout = {**dumped, "llm": flat_llm, "conditions": {"llm.top_p": [0.9, 0.95]}}
    assert stored_config(old_layout) == current
    assert stored_hash(old_layout) != current.hash()  # the old folder keeps its own name
    with pytest.raises(ValueError, match="llm.temperature moved to llm.sampling.temperature"):
        StudyConfig.model_validate(old_layout)  # a study file in the old layout is refused instead
