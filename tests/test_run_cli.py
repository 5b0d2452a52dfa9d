"""`culturesim run` before it runs: the size plan, --dry-run, disk and lock refusals, shared fields."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.schema.config import ConfigError, load_config
from culturesim.study.store import results_dir

STUDIES = Path(__file__).resolve().parents[1] / "studies"
SLOW_HUMANS = (
    '[study]\nname = "held"\nseed = 1\nreplicates = 40\ngenerations = 200\n'
    "[population]\nsize = 300\n[humans]\ncopy_error = 0.2\ninnovation = 0.05\n"
)


def _output(result) -> str:
    return " ".join(result.output.split())


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(STUDIES / "homogenization.toml"), "--out", str(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    text = _output(result)
    for word in ("runs", "agent-generations", "LLM requests", "metrics", "traits", "population", "log", "vectors"):
        assert word in text, word
    assert list(tmp_path.iterdir()) == []


def test_a_study_too_big_for_the_disk_is_refused_with_its_estimate(tmp_path: Path) -> None:
    study = tmp_path / "huge.toml"
    study.write_text(
        '[study]\nname = "huge"\nreplicates = 10000\ngenerations = 100000\n[population]\nsize = 10000000\n'
    )
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    text = _output(result)
    assert "ConfigError" in text and "needs about" in text and "save_population" in text, text
    assert not (tmp_path / "out").exists()


def test_a_condition_over_a_shared_field_is_refused(tmp_path: Path) -> None:
    study = tmp_path / "seeds.toml"
    study.write_text('[study]\nname = "seeds"\n[conditions]\n"study.seed" = [1, 2]\n')
    with pytest.raises(ConfigError, match=r"'study.seed' cannot vary per condition"):
        load_config(study)


@pytest.mark.slow
def test_a_second_run_into_a_held_folder_stops_at_once_naming_the_holder(tmp_path: Path) -> None:
    study = tmp_path / "held.toml"
    study.write_text(SLOW_HUMANS)
    folder = results_dir(load_config(study), tmp_path / "out")
    env = {**os.environ, "CULTURESIM_NO_DISK_CACHE": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "culturesim.cli", "run", str(study), "--out", str(tmp_path / "out")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not (folder / ".holder.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run never held its folder"
            time.sleep(0.05)
        started = time.perf_counter()
        result = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / "out"), "--resume"])
        waited = time.perf_counter() - started
        assert result.exit_code == 2
        text = _output(result)
        assert f"held by another culturesim process: pid {first.pid}" in text, text
        assert waited < 5, f"refused after {waited:.1f} s"
        print(text)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


TINY_HUMANS = (
    '[study]\nname = "tiny"\nseed = 5\nreplicates = 2\ngenerations = 4\n'
    "[population]\nsize = 30\n[humans]\ncopy_error = 0.2\n"
)


def test_without_a_terminal_run_prints_plain_progress_lines_and_then_knows_its_time(monkeypatch, tmp_path) -> None:
    """CliRunner's stderr is no terminal (as in CI, nohup or a log file): plain lines, no bars. A
    first run on a machine cannot estimate its time; once it finished, the plan gives one."""
    from culturesim.core.settings import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    study = tmp_path / "tiny.toml"
    study.write_text(TINY_HUMANS)
    out = ["--out", str(tmp_path / "out")]
    planned = CliRunner().invoke(app, ["run", str(study), *out, "--dry-run", "--verbose"])
    assert planned.exit_code == 0, planned.output
    assert "estimated wall time on this machine: unknown" in _output(planned)
    result = CliRunner().invoke(app, ["run", str(study), *out])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("[culturesim ")]
    assert lines[0].endswith("run-generations 0/8 (0 %)"), result.output
    assert "run-generations 8/8 (100 %), done in" in lines[-1]
    drawn = [line for line in result.output.splitlines() if "run-generations" in line]
    assert drawn == lines, drawn  # no bar drawn into a log
    again = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / "again"), "--dry-run"])
    assert "estimated wall time on this machine: ~" in _output(again), again.output
