"""Crash safety: a study killed with SIGKILL resumes to byte-identical results; workers don't matter."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from culturesim.core.fingerprint import file_sha256
from culturesim.schema.config import load_config
from culturesim.study.runner import StudyRunner
from culturesim.study.store import finished_runs
from tests.helpers import CLI, ENV, run_cli

TABLES = ("metrics.parquet", "traits.parquet", "population.parquet", "vectors.parquet")
# Runs the CLI with the results store patched so that the process signals itself in the middle
# of the study by construction, whatever the machine's speed: after the first run's done.json,
# once the second run's traits.parquet is in its temporary file and before it is renamed.
SIGNAL_MID_STUDY = """
import os, signal, sys
from culturesim.study import store
sent, markers = getattr(signal, sys.argv.pop(1)), [0]
atomic_write = store._atomic_write
def signalling_write(path, write):
    def write_then_signal(tmp):
        write(tmp)
        if path.name == "traits.parquet" and markers[0] == 1:
            os.kill(os.getpid(), sent)
    atomic_write(path, write_then_signal)
    markers[0] += path.name == "done.json"
store._atomic_write = signalling_write
from culturesim.cli import app
app()
"""


def _run_signalled(study: Path, out: Path, sent: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", SIGNAL_MID_STUDY, sent, "run", str(study), "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV)


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(
    crashy_study: Path, crashy_whole: Path, tmp_path: Path
) -> None:
    killed = _run_signalled(crashy_study, tmp_path / "killed", "SIGKILL")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [folder] = list((tmp_path / "killed" / "crashy").iterdir())
    finished = finished_runs(folder)
    started = {p.name for p in (folder / "runs").iterdir()}
    assert len(finished) == 1 and len(started) == 2, f"killed inside the second run: {finished} of {started}"
    [half] = started - finished
    assert (folder / "runs" / half / "metrics.parquet").exists()
    assert not (folder / "runs" / half / "traits.parquet").exists()
    # Every marker that exists vouches for complete files; nothing half-written is accepted.
    for run_id in finished:
        marker = json.loads((folder / "runs" / run_id / "done.json").read_text())
        for name, digest in marker["files"].items():
            assert file_sha256(folder / "runs" / run_id / name) == digest
    assert not (folder / "metrics.parquet").exists()
    assert json.loads((folder / "manifest.json").read_text())["status"] in ("running", "interrupted")

    refused = run_cli(crashy_study, tmp_path / "killed")
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = run_cli(crashy_study, tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for table in TABLES:
        assert (folder / table).read_bytes() == (crashy_whole / table).read_bytes(), table
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["sessions"]) == 2
    assert {r["status"] for r in manifest["runs"]} == {"complete"}
    verified = subprocess.run([*CLI, "verify", str(folder)], capture_output=True, text=True, env=ENV)
    assert verified.returncode == 0, verified.stderr


@pytest.mark.slow
def test_ctrl_c_saves_finished_runs(crashy_study: Path, tmp_path: Path) -> None:
    interrupted = _run_signalled(crashy_study, tmp_path, "SIGINT")
    assert interrupted.returncode == 130, interrupted.stderr
    assert "--resume" in interrupted.stderr
    [folder] = list((tmp_path / "crashy").iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    complete = {r["run_id"] for r in manifest["runs"] if r["status"] == "complete"}
    assert complete == finished_runs(folder) and len(complete) == 1, complete
    assert not list(folder.rglob("*.tmp")), "the interrupted write left its temporary file"


@pytest.mark.slow
def test_thread_count_and_disk_cache_do_not_change_results(
    crashy_study: Path, crashy_whole: Path, tmp_path: Path
) -> None:
    """OMP_NUM_THREADS 1 and 2, a cold and a warm embedding cache: the same bytes as without a cache."""
    cache = tmp_path / "cache"
    for label, threads in (("cold", "1"), ("warm", "2"), ("warm-1", "1")):
        env = {k: v for k, v in ENV.items() if k != "CULTURESIM_NO_DISK_CACHE"}
        env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, CULTURESIM_CACHE=str(cache))
        result = subprocess.run(
            [*CLI, "run", str(crashy_study), "--out", str(tmp_path / label)], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr
        [folder] = list((tmp_path / label / "crashy").iterdir())
        for table in TABLES:
            assert (folder / table).read_bytes() == (crashy_whole / table).read_bytes(), (label, table)
    assert list(cache.glob("embeddings/*/*.npz")), "the cache was used"


@pytest.mark.slow
def test_workers_do_not_change_results(crashy_study: Path, tmp_path: Path, embedder) -> None:
    config = load_config(crashy_study)
    one = StudyRunner(embedder=embedder).run(config, out_root=tmp_path / "one", workers=1)
    two = StudyRunner(embedder=embedder).run(config, out_root=tmp_path / "two", workers=2)
    for table in TABLES:
        assert (one / table).read_bytes() == (two / table).read_bytes(), table
    assert pl.read_parquet(one / "metrics.parquet")["run_id"].n_unique() == 8
