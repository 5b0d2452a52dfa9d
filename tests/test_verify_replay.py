"""`culturesim verify` on replay folders, and on folders whose lock was written in the flat [llm] layout.

A study's results folder is named after its config hash; a replay is written wherever it was asked
to be, so verify checks it against the config hash its manifest records for the study it replays
(`replay_of`) and says what it replays. Human-only studies keep this cheap (seconds, no LLM).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.schema.config import StudyConfig, load_config, stored_hash
from culturesim.schema.llm_section import FlatLLMLayoutWarning, join_llm_tables
from culturesim.study.prereg import FLAT_LLM_LAYOUT, check_lock, read_lock, write_lock
from culturesim.study.runner import StudyRunner
from culturesim.study.verify import verify_results
from tests.helpers import PLAN

OLD_LOCKED = Path(__file__).parent / "data" / "old_layout" / "human_only.toml"


def locked_run(study: Path, out: Path, embedder, *, deviation: str | None = None) -> Path:
    """Run a locked study as `culturesim run` does: its lock (without the config) in the manifest."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlatLLMLayoutWarning)  # human_only.toml has no [llm] keys to warn about
        config = load_config(study)
    record = check_lock(config, study, deviation=deviation)
    lock = {key: value for key, value in read_lock(study).items() if key != "config"}
    runner = StudyRunner(embedder=embedder)
    try:
        return runner.run(config, out_root=out, deviation=record, lock=lock)
    finally:
        runner.close()


def replayed(folder: Path, out: Path, config: StudyConfig | None = None) -> Path:
    runner = StudyRunner()
    try:
        return runner.replay(folder, out, config=config)
    finally:
        runner.close()


@pytest.fixture(scope="module")
def old_locked(embedder, tmp_path_factory) -> Path:
    """The results of a study whose lock was written before the [llm] split, run from its unedited file."""
    return locked_run(OLD_LOCKED, tmp_path_factory.mktemp("old-locked"), embedder)


def test_a_run_of_an_old_lock_verifies(old_locked: Path) -> None:
    lock = json.loads(OLD_LOCKED.with_name("human_only.lock.json").read_text())
    problems, checked = verify_results(old_locked)
    assert problems == []
    assert "folder name matches the config hash" in checked
    assert f"config matches the preregistration lock of {lock['locked_at']} (locked in {FLAT_LLM_LAYOUT})" in checked


def test_a_replay_verifies_and_says_what_it_replays(old_locked: Path, tmp_path: Path) -> None:
    out = replayed(old_locked, tmp_path / "my-replay")
    manifest = json.loads((out / "manifest.json").read_text())
    problems, checked = verify_results(out)
    assert problems == []
    assert f"a replay of {old_locked}, whose config hash {manifest['config_hash'][:12]} is this config's" in checked
    assert not any("folder name" in line for line in checked)
    result = CliRunner().invoke(app, ["verify", str(out)])
    assert result.exit_code == 0, result.output
    assert "a replay of" in result.output

    metrics = out / "runs" / "c0-r0" / "metrics.parquet"
    metrics.write_bytes(metrics.read_bytes()[:-20] + b"\0" * 20)
    problems, _ = verify_results(out)
    assert problems == ["run c0-r0 metrics.parquet is missing or its hash differs from done.json"]


def test_a_replay_of_another_config_says_so(old_locked: Path, tmp_path: Path) -> None:
    """`culturesim replay --study` may replay another study file: verify says which config the replay
    has, and that it no longer matches the replayed study's lock."""
    config = load_config(OLD_LOCKED)
    plan = config.preregistration.model_copy(update={"stopping_rule": "An analysis-only change."})
    other = config.model_copy(update={"preregistration": plan})
    out = replayed(old_locked, tmp_path / "other", config=other)
    problems, checked = verify_results(out)
    source = json.loads((old_locked / "manifest.json").read_text())["config_hash"]
    assert f"a replay of {old_locked} (config hash {source[:12]}) with another config, {other.hash()[:12]}" in checked
    assert problems == ["config differs from its preregistration lock and no deviation is recorded"]


def test_a_replay_keeps_the_deviations_of_the_study_it_replays(embedder, tmp_path: Path) -> None:
    study = tmp_path / "locked.toml"
    study.write_text(PLAN)
    write_lock(load_config(study), study)
    study.write_text(PLAN.replace("generations = 3", "generations = 2"))
    folder = locked_run(study, tmp_path / "out", embedder, deviation="ran short of time")
    out = replayed(folder, tmp_path / "replay")
    problems, checked = verify_results(out)
    assert problems == []
    assert "config differs from its lock, with recorded deviation(s): ran short of time" in checked


def test_a_replay_of_a_folder_from_before_the_split_verifies(old_locked: Path, tmp_path: Path) -> None:
    """A folder written before the split stores the flat config and is named after its hash; its replay
    stores the migrated config, whose flat-layout hash is the one `replay_of` records."""
    manifest = json.loads((old_locked / "manifest.json").read_text())
    flat = join_llm_tables(manifest["config"])
    old = tmp_path / "human_only" / stored_hash(flat)[:12]
    shutil.copytree(old_locked, old)
    (old / "manifest.json").write_text(json.dumps({**manifest, "config": flat, "config_hash": stored_hash(flat)}))
    assert verify_results(old)[0] == []
    out = replayed(old, tmp_path / "replay")
    problems, checked = verify_results(out)
    assert problems == []
    assert f"a replay of {old}, whose config hash {stored_hash(flat)[:12]} is this config's" in checked
