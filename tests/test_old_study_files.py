"""Study files of the flat [llm] layout (before 2026-12-01) still load, and their locks still verify.

A preregistered study cannot be edited without a deviation, so the files in tests/data/old_layout
(the shipped studies as they were before the split, and test files locked by the code of then; see
its README) are read as they are: one FlatLLMLayoutWarning per moved key, their old locks verify
with no deviation, each condition resolves to the settings of the migrated shipped study, and a
changed value is still caught.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
import warnings
from pathlib import Path

import pytest

from culturesim.schema.config import ConfigError, StudyConfig, load_config
from culturesim.schema.llm_section import MOVED_LLM_SETTINGS, FlatLLMLayoutWarning, join_llm_tables
from culturesim.study.prereg import FLAT_LLM_LAYOUT, check_lock, config_hashes, lock_path
from tests.helpers import CLI, ENV

OLD = Path(__file__).parent / "data" / "old_layout"
STUDIES = Path(__file__).parent.parent / "studies"
# The shipped studies of before the split. Each is unchanged since (its re-lock of 2026-12-01 changed
# the layout alone); a study changed later on purpose leaves this list, and its lock names the change.
SHIPPED = ["quickstart", "homogenization", "llm_consultation", "network_structure", "norm_shift", "mutation_operator"]
WRITTEN_FOR_TESTS = ["llm_factors", "llm_sets", "human_only"]
SUFFIX = "old layout still read; moving it changes no setting, so a lock still verifies"


def load_warned(path: Path) -> tuple[StudyConfig, list[warnings.WarningMessage]]:
    """The config of a study file and the FlatLLMLayoutWarnings its loading gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = load_config(path)
    return config, [w for w in caught if issubclass(w.category, FlatLLMLayoutWarning)]


def old_keys(path: Path) -> list[str]:
    """The moved keys a file writes, read from its TOML: [llm] settings, then condition factors and
    contrast factors named the old way, each once."""
    data = tomllib.loads(path.read_text())
    keys = [f"llm.{key}" for key in data.get("llm", {})]
    factors = list(data.get("conditions", {})) + [k for entry in data.get("condition_sets", []) for k in entry]
    factors += [h["contrast"]["factor"] for h in data.get("preregistration", {}).get("hypotheses", [])]
    keys += [key for key in factors if key.startswith("llm.") and key.removeprefix("llm.") in MOVED_LLM_SETTINGS]
    return list(dict.fromkeys(keys))


def copy_study(name: str, tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    """A study file and its lock copied into tmp_path, the study optionally edited (old, new)."""
    text = (OLD / f"{name}.toml").read_text()
    if edit is not None:
        assert edit[0] in text, edit
        text = text.replace(edit[0], edit[1], 1)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    lock_path(path).write_text(lock_path(OLD / f"{name}.toml").read_text())
    return path


def grid_json(config: StudyConfig) -> list[tuple[str, str]]:
    return [(label, condition.canonical_json()) for label, condition in config.condition_grid()]


@pytest.mark.parametrize("name", SHIPPED + WRITTEN_FOR_TESTS)
def test_an_old_study_file_loads_with_one_warning_per_moved_key(name: str) -> None:
    path = OLD / f"{name}.toml"
    _, caught = load_warned(path)
    expected = old_keys(path)
    assert [str(w.message) for w in caught] == [
        f"{key} is now {MOVED_LLM_SETTINGS[key.removeprefix('llm.')]} (study file {path}, {SUFFIX})" for key in expected
    ]
    lines = path.read_text().splitlines()
    for key, warning in zip(expected, caught):
        assert warning.filename == str(path)  # shown as 'x.toml:LINE: FlatLLMLayoutWarning: ...'
        field = key.removeprefix("llm.")
        assert re.match(rf"\s*{field}\s*=", lines[warning.lineno - 1]) or f'"{key}"' in lines[warning.lineno - 1]


@pytest.mark.parametrize("name", SHIPPED + WRITTEN_FOR_TESTS)
def test_an_old_lock_verifies_its_unedited_file_with_no_deviation(name: str) -> None:
    path = OLD / f"{name}.toml"
    config, _ = load_warned(path)
    lock = json.loads(lock_path(path).read_text())
    assert check_lock(config, path, deviation=None) is None
    assert config_hashes(config)[FLAT_LLM_LAYOUT] == lock["sha256"]
    assert join_llm_tables(json.loads(config.canonical_json())) == lock["config"], "the old canonical config"


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_relock_names_the_old_lock(name: str) -> None:
    """The re-lock of 2026-12-01 moved each shipped lock from the hash these files verify against."""
    old = json.loads(lock_path(OLD / f"{name}.toml").read_text())
    shipped = json.loads(lock_path(STUDIES / f"{name}.toml").read_text())
    assert old["sha256"] in [relock["previous_sha256"] for relock in shipped["relocks"]]


@pytest.mark.parametrize("name", SHIPPED)
def test_an_old_file_resolves_each_condition_as_the_migrated_shipped_study(name: str) -> None:
    old, _ = load_warned(OLD / f"{name}.toml")
    current = load_config(STUDIES / f"{name}.toml")
    assert grid_json(old) == grid_json(current)
    assert old.hash() == current.hash(), "the same study in either layout"
    assert check_lock(old, STUDIES / f"{name}.toml", deviation=None) is None, "and the re-locked lock verifies it"


@pytest.mark.parametrize("name", SHIPPED)
def test_a_changed_value_in_an_old_file_is_a_deviation(name: str, tmp_path: Path) -> None:
    seed = re.search(r"^seed = (\d+)$", (OLD / f"{name}.toml").read_text(), re.MULTILINE)
    path = copy_study(name, tmp_path, edit=(seed.group(0), f"seed = {int(seed.group(1)) + 1}"))
    config, _ = load_warned(path)
    with pytest.raises(ConfigError, match=r"no longer matches its preregistration .*changed: study\.seed\)"):
        check_lock(config, path, deviation=None)
    record = check_lock(config, path, deviation="a new seed")
    locked = json.loads(lock_path(path).read_text())["sha256"]
    assert record["changed_fields"] == ["study.seed"] and record["locked_sha256"] == locked


@pytest.mark.parametrize(
    ("name", "edit", "field"),
    [
        ("quickstart", ("max_tokens = 48", "max_tokens = 47"), "llm.max_tokens"),
        ("homogenization", ("temperature = 0.8", "temperature = 0.7"), "llm.temperature"),
        ("llm_consultation", ('role = "advise"', 'role = "rewrite"'), "llm.role"),
        ("llm_factors", ("top_p = 0.9", "top_p = 0.85"), "llm.top_p"),
        (
            "llm_factors",
            ('"llm.role" = ["rewrite", "combine"]', '"llm.role" = ["rewrite", "create"]'),
            "conditions.llm.role",
        ),
        ("llm_sets", ('"llm.max_tokens" = 64', '"llm.max_tokens" = 65'), None),
        ("llm_sets", ('"llm.dtype" = "bfloat16"', '"llm.dtype" = "float16"'), "condition_sets"),
        ("human_only", ("innovation = 0.05", "innovation = 0.06"), "humans.innovation"),
        ("human_only", ("[humans]", "[llm.sampling]\ntemperature = 0.7\n[humans]"), "llm.temperature"),
    ],
    ids=["setting", "sampling", "prompt", "server-file", "factor-level", "set-level", "set-engine", "human", "added"],
)
def test_a_changed_llm_setting_is_caught_in_the_layout_of_the_lock(
    name: str, edit: tuple[str, str], field: str | None, tmp_path: Path
) -> None:
    """Named as the lock names it (flat), whether the file is old or now in the new layout."""
    path = copy_study(name, tmp_path, edit=edit)
    if name == "llm_sets" and field is None:  # the hypothesis contrasts 64 with 24: move its treatment too
        path.write_text(path.read_text().replace("treatment = 64", "treatment = 65"))
    config, _ = load_warned(path)
    with pytest.raises(ConfigError, match="no longer matches its preregistration") as info:
        check_lock(config, path, deviation=None)
    if field is not None:
        assert f"changed: {field}" in str(info.value)


def test_moving_keys_to_their_tables_keeps_the_lock_valid(tmp_path: Path) -> None:
    """What the warning promises: moving one key (a file in both layouts) or all of them changes no
    setting, so the old lock still verifies, and only the keys left are warned about."""
    one = copy_study("quickstart", tmp_path, edit=('role = "rewrite"\n', ""))
    one.write_text(one.read_text() + '\n[llm.prompt]\nrole = "rewrite"\n')
    config, caught = load_warned(one)
    assert [str(w.message).split(" is now")[0] for w in caught] == ["llm.neighbours_read", "llm.max_tokens"]
    assert check_lock(config, one, deviation=None) is None
    moved = copy_study("quickstart", tmp_path)
    moved.write_text((STUDIES / "quickstart.toml").read_text())  # the migrated shipped file, the old lock
    config, caught = load_warned(moved)
    assert caught == [] and check_lock(config, moved, deviation=None) is None


def test_a_setting_written_in_both_layouts_is_refused(tmp_path: Path) -> None:
    """Neither value silently wins: the flat key stays where it is, and the error names it."""
    study = '[study]\nname = "t"\n[llm]\ntemperature = 0.5\n[llm.sampling]\ntemperature = 0.7\n'
    (tmp_path / "both.toml").write_text(study)
    with pytest.raises(ConfigError, match="llm.temperature moved to llm.sampling.temperature"):
        load_config(tmp_path / "both.toml")
    factors = '[study]\nname = "t"\n[conditions]\n"llm.top_p" = [0.9]\n"llm.sampling.top_p" = [0.8]\n'
    (tmp_path / "factors.toml").write_text(factors)
    with pytest.raises(ConfigError, match="condition factor 'llm.top_p': llm.top_p moved to llm.sampling.top_p"):
        load_config(tmp_path / "factors.toml")


def test_a_key_used_as_setting_and_factor_is_warned_about_once(tmp_path: Path) -> None:
    path = tmp_path / "twice.toml"
    path.write_text('[study]\nname = "t"\n[llm]\ntemperature = 0.5\n[conditions]\n"llm.temperature" = [0.5, 1.0]\n')
    config, caught = load_warned(path)
    assert [(str(w.message).split(" (")[0], w.lineno) for w in caught] == [
        ("llm.temperature is now llm.sampling.temperature", 4)
    ]
    assert [c.llm.sampling.temperature for _, c in config.condition_grid()] == [0.5, 1.0]


def test_the_command_line_shows_each_warning_once_with_its_line(tmp_path: Path) -> None:
    """`culturesim run` hides other packages' warnings (culturesim.core.quiet); these are culturesim's and
    show, as `FILE:LINE: FlatLLMLayoutWarning: ...` followed by the study file's line."""
    path = copy_study("quickstart", tmp_path)
    result = subprocess.run(
        [*CLI, "run", str(path), "--dry-run", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    shown = [line for line in result.stderr.splitlines() if "FlatLLMLayoutWarning" in line]
    assert shown == [
        f"{path}:{line}: FlatLLMLayoutWarning: {key} is now {new} (study file {path}, {SUFFIX})"
        for line, key, new in [
            (26, "llm.role", "llm.prompt.role"),
            (27, "llm.neighbours_read", "llm.prompt.neighbours_read"),
            (28, "llm.max_tokens", "llm.sampling.max_tokens"),
        ]
    ]
    assert '  role = "rewrite"' in result.stderr.splitlines()
