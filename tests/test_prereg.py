"""Preregistration: locks, refused mismatches, recorded deviations, verification, bad plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.schema.config import ConfigError, load_config
from culturesim.study.prereg import changed_fields, check_lock, lock_path, write_lock
from tests.helpers import PLAN


def _study(tmp_path: Path, text: str = PLAN) -> Path:
    path = tmp_path / "locked.toml"
    path.write_text(text)
    return path


def test_preregister_writes_a_lock_with_hash_and_hypotheses(tmp_path: Path) -> None:
    study = _study(tmp_path)
    result = CliRunner().invoke(app, ["preregister", str(study)])
    assert result.exit_code == 0, result.output
    lock = json.loads(lock_path(study).read_text())
    assert lock["sha256"] == load_config(study).hash()
    assert lock["hypotheses"] == ["H1: Complete networks end less diverse."]
    assert lock["culturesim_version"] and lock["locked_at"]


def test_changed_config_is_refused_naming_the_fields(tmp_path: Path) -> None:
    study = _study(tmp_path)
    write_lock(load_config(study), study)
    study.write_text(PLAN.replace("size = 24", "size = 30").replace("seed = 5", "seed = 6"))
    with pytest.raises(ConfigError, match="population.size") as info:
        check_lock(load_config(study), study, deviation=None)
    assert "study.seed" in str(info.value) and "--deviation" in str(info.value)
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "population.size" in result.output


def test_deviation_is_recorded_reported_and_verified(tmp_path: Path) -> None:
    study = _study(tmp_path)
    write_lock(load_config(study), study)
    study.write_text(PLAN.replace("generations = 3", "generations = 2"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(out), "--deviation", "ran short of time"])
    assert result.exit_code == 0, result.output
    [folder] = list((out / "locked").iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    [deviation] = manifest["deviations"]
    assert deviation["reason"] == "ran short of time" and deviation["changed_fields"] == ["study.generations"]
    assert "ran short of time" in (folder / "report.md").read_text()
    verified = CliRunner().invoke(app, ["verify", str(folder)])
    assert verified.exit_code == 0, verified.output
    status = CliRunner().invoke(app, ["status", str(folder)])
    assert "4 finished, 0 missing" in status.output and "ran short of time" in status.output

    run_file = folder / "runs" / "c0-r0" / "metrics.parquet"
    run_file.write_bytes(run_file.read_bytes()[:-20] + b"\0" * 20)
    tampered = CliRunner().invoke(app, ["verify", str(folder)])
    assert tampered.exit_code == 1 and "c0-r0 metrics.parquet" in tampered.output


def test_changed_fields_walks_nested_dicts() -> None:
    assert changed_fields({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 1, "c": 5}, "d": 3, "e": 1}) == ["a.c", "e"]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (('outcome = "semantic_diversity"', 'outcome = "happiness"'), "outcome"),
        (('direction = "less"', 'direction = "less"\nalpha = 1.5'), "alpha"),
        (('treatment = "complete"', 'treatment = "hexagonal"'), "contrast.treatment"),
        (('factor = "network.kind"', 'factor = "population.size"'), "contrast.factor"),
        (('direction = "less"', 'direction = "equivalent"'), "sesoi"),
        (('id = "H1"', 'id = "H1"\nmodel = "value ~ __import__(1)"'), "model"),
        (('id = "H1"', 'id = "H1"\ngeneration = 9'), "generation"),
    ],
)
def test_bad_preregistration_gives_one_clear_error(tmp_path: Path, edit: tuple[str, str], field: str) -> None:
    study = _study(tmp_path, PLAN.replace(*edit))
    with pytest.raises(ConfigError, match=field) as info:
        load_config(study)
    assert str(study) in str(info.value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (('id = "H1"', 'id = "H1"\ngeneration = true'), "generation"),
        (('id = "H1"', 'id = "H1"\nsummary = "slope"\nwindow = [true, 2]'), "window"),
        (('direction = "less"', 'direction = "less"\nsesoi = inf'), "sesoi"),
        (("size = 24", "size = 24\nllm_share = nan"), "population.llm_share"),
    ],
)
def test_booleans_and_non_finite_numbers_are_refused(tmp_path: Path, edit: tuple[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(_study(tmp_path, PLAN.replace(*edit)))
