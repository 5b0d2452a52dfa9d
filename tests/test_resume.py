"""Crash safety: a study killed with SIGKILL resumes to byte-identical results; workers don't matter."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from culturesim.config import load_config
from culturesim.fingerprint import file_sha256
from culturesim.study.runner import StudyRunner
from culturesim.study.tables import finished_runs
from tests.helpers import CLI, ENV, run_cli

STUDY = """
[study]
name = "crashy"
seed = 11
replicates = 4
generations = 12
[population]
size = 120
turnover = 0.5
[humans]
bias = "conformist"
copy_error = 0.1
innovation = 0.02
[conditions]
"network.kind" = ["small_world", "scale_free"]
"""


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study") / "crashy.toml"
    path.write_text(STUDY)
    return path


def _wait_for_first_run(folder_root: Path, process: subprocess.Popen, timeout: float = 240) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        markers = list(folder_root.glob("crashy/*/runs/*/done.json"))
        if markers:
            return markers[0].parents[2]
        if process.poll() is not None:
            raise AssertionError(f"study ended before it could be interrupted: {process.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("no run finished in time")


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(study_file: Path, tmp_path: Path) -> None:
    complete = run_cli(study_file, tmp_path / "whole")
    assert complete.returncode == 0, complete.stderr
    [whole] = list((tmp_path / "whole" / "crashy").iterdir())

    process = subprocess.Popen(
        [*CLI, "run", str(study_file), "--out", str(tmp_path / "killed")], stderr=subprocess.PIPE, text=True, env=ENV
    )
    folder = _wait_for_first_run(tmp_path / "killed", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = finished_runs(folder)
    assert 0 < len(finished) < 8, "the kill should land mid-study"
    # Every marker that exists vouches for complete files; nothing half-written is accepted.
    for run_id in finished:
        marker = json.loads((folder / "runs" / run_id / "done.json").read_text())
        for name, digest in marker["files"].items():
            assert file_sha256(folder / "runs" / run_id / name) == digest
    assert not (folder / "metrics.parquet").exists()
    assert json.loads((folder / "manifest.json").read_text())["status"] in ("running", "interrupted")

    refused = run_cli(study_file, tmp_path / "killed")
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = run_cli(study_file, tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for table in ("metrics.parquet", "traits.parquet"):
        assert (folder / table).read_bytes() == (whole / table).read_bytes(), table
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["sessions"]) == 2
    assert {r["status"] for r in manifest["runs"]} == {"complete"}
    verified = subprocess.run([*CLI, "verify", str(folder)], capture_output=True, text=True, env=ENV)
    assert verified.returncode == 0, verified.stderr


@pytest.mark.slow
def test_ctrl_c_saves_finished_runs(study_file: Path, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*CLI, "run", str(study_file), "--out", str(tmp_path)], stderr=subprocess.PIPE, text=True, env=ENV
    )
    folder = _wait_for_first_run(tmp_path, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert {r["run_id"] for r in manifest["runs"] if r["status"] == "complete"} == finished_runs(folder)


@pytest.mark.slow
def test_thread_count_and_disk_cache_do_not_change_results(study_file: Path, tmp_path: Path) -> None:
    """OMP_NUM_THREADS 1 and 2, a cold and a warm embedding cache: the same bytes as without a cache."""
    reference = run_cli(study_file, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    [expected] = list((tmp_path / "reference" / "crashy").iterdir())
    cache = tmp_path / "cache"
    for label, threads in (("cold", "1"), ("warm", "2"), ("warm-1", "1")):
        env = {k: v for k, v in ENV.items() if k != "CULTURESIM_NO_DISK_CACHE"}
        env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, CULTURESIM_CACHE=str(cache))
        result = subprocess.run(
            [*CLI, "run", str(study_file), "--out", str(tmp_path / label)], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr
        [folder] = list((tmp_path / label / "crashy").iterdir())
        for table in ("metrics.parquet", "traits.parquet", "population.parquet", "vectors.parquet"):
            assert (folder / table).read_bytes() == (expected / table).read_bytes(), (label, table)
    assert list(cache.glob("embeddings/*/*.npz")), "the cache was used"


@pytest.mark.slow
def test_workers_do_not_change_results(study_file: Path, tmp_path: Path, embedder) -> None:
    config = load_config(study_file)
    one = StudyRunner(embedder=embedder).run(config, out_root=tmp_path / "one", workers=1)
    two = StudyRunner(embedder=embedder).run(config, out_root=tmp_path / "two", workers=2)
    for table in ("metrics.parquet", "traits.parquet", "population.parquet", "vectors.parquet"):
        assert (one / table).read_bytes() == (two / table).read_bytes(), table
    assert pl.read_parquet(one / "metrics.parquet")["run_id"].n_unique() == 8
