"""An LLM study killed with SIGKILL anywhere resumes from its completion log to the same bytes,
and replays from its log and stored vectors with no LLM (vLLM made unimportable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from culturesim.core.fingerprint import file_sha256
from culturesim.schema.config import load_config
from tests.helpers import NEEDS_VLLM, llm_toy_study

pytestmark = [
    pytest.mark.slow,
    NEEDS_VLLM,
]

STUDY = llm_toy_study(
    "llmkill",
    seed=5,
    replicates=2,
    generations=3,
    max_tokens=16,
    extra="[humans]\ncopy_error = 0.1\ninnovation = 0.05\nllm_consultation = 0.1\n",
)
TABLES = ("metrics", "traits", "population", "generations", "vectors")
# Runs the CLI with CompletionLog.append patched to SIGKILL the process: after its N-th durable
# commit, or (N = 0) inside the first engine call, after the engine answered and before the commit.
KILLER = """
import os, signal, sys
from culturesim.simulation import completions
kill_at, commits = int(sys.argv.pop(1)), [0]
append = completions.CompletionLog.append
def killing_append(self, name, entries):
    if kill_at == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    append(self, name, entries)
    commits[0] += 1
    if commits[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
completions.CompletionLog.append = killing_append
from culturesim.cli import app
app()
"""
# Runs the CLI where `import vllm` fails, as on a machine without vLLM.
NO_VLLM = "import sys; sys.modules['vllm'] = None\nfrom culturesim.cli import app\napp()"


def _cli(*args: str, prelude: str | None = None, threads: int | None = None) -> subprocess.CompletedProcess:
    """The command line in its own process; `threads` sets the OpenMP and BLAS thread counts it may use."""
    command = [sys.executable, "-c", prelude, *args] if prelude else [sys.executable, "-m", "culturesim.cli", *args]
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return subprocess.run(command, capture_output=True, text=True, env=env)


def _calls_by_run(folder: Path) -> dict[str, list[list[dict]]]:
    """Each run's logged engine calls, in the order they were committed."""
    return {path.stem: _commits_of(path) for path in sorted((folder / "log").glob("*.jsonl"))}


def _commits_of(path: Path) -> list[list[dict]]:
    calls, pending = [], []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "commit" in record:
            calls.append(pending)
            pending = []
        else:
            pending.append(record)
    return calls


def _commits(folder: Path) -> list[list[dict]]:
    """The log's engine calls, run after run, each a list of entries."""
    return [call for calls in _calls_by_run(folder).values() for call in calls]


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study") / "llmkill.toml"
    path.write_text(STUDY)
    return path


@pytest.fixture(scope="module")
def whole(study_file: Path, runner, tmp_path_factory) -> Path:
    """The uninterrupted run, in this process on the session's engine: the killed and resumed command
    lines, each with its own engine, must give its bytes."""
    return runner.run(load_config(study_file), out_root=tmp_path_factory.mktemp("whole"))


def _kill_points(whole: Path) -> dict[str, int]:
    """Commits in the log at each kill: inside generation 1 (before any commit), after the first commit
    of generation 2, after the first commit of the last generation (its tables are not written yet)."""
    generations = [call[0]["generation"] for call in _commits(whole)]
    return {"first": 0, "middle": generations.index(2) + 1, "last": generations.index(3) + 1}


def test_sigkill_at_three_points_then_resume_from_the_log(study_file: Path, whole: Path, tmp_path: Path) -> None:
    """One study killed three times over: the first run at the first point, its resume at the second,
    that resume at the third; the last resume ends with the uninterrupted run's bytes. Each killed
    process leaves whole calls only, each the uninterrupted run's call (chained, the three points
    start 4 engines instead of 6)."""
    expected = _calls_by_run(whole)
    committed = logged = 0
    for point, kill_at in _kill_points(whole).items():
        resume = ["--resume"] if point != "first" else []
        args = [str(kill_at - committed), "run", str(study_file), "--out", str(tmp_path), *resume]
        killed = _cli(*args, prelude=KILLER)
        assert killed.returncode == -9, (point, killed.stderr[-3000:])
        [folder] = list((tmp_path / "llmkill").iterdir())
        assert not (folder / "metrics.parquet").exists() and not list(folder.glob("runs/*/done.json")), point
        assert len(_commits(folder)) == kill_at, f"{point}: a call is in the log whole or not at all"
        for run, calls in _calls_by_run(folder).items():
            assert calls == expected[run][: len(calls)], f"{point}: {run} logged other calls than the whole run"
        committed, logged = kill_at, sum(len(call) for call in _commits(folder))

    resumed = _cli("run", str(study_file), "--out", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for table in TABLES:
        assert file_sha256(folder / f"{table}.parquet") == file_sha256(whole / f"{table}.parquet"), table
    throughput = json.loads((folder / "manifest.json").read_text())["throughput"]
    total_calls = len(_commits(whole))
    assert throughput["llm_from_log"] == logged
    assert throughput["llm_calls"] == total_calls - committed
    assert _calls_by_run(folder) == expected
    print(f"killed after 0, {committed} of {total_calls} calls: {logged} requests answered by the log")


@pytest.mark.parametrize("threads", [None, 1], ids=["default-threads", "one-thread"])
def test_replay_without_vllm_gives_the_same_bytes(threads: int | None, whole: Path, tmp_path: Path) -> None:
    """The study ran with vLLM on every core; its replay, with or without one thread, gives its bytes."""
    result = _cli("replay", str(whole), "--out", str(tmp_path / "replay"), prelude=NO_VLLM, threads=threads)
    assert result.returncode == 0, result.stderr
    for table in TABLES:
        assert file_sha256(tmp_path / "replay" / f"{table}.parquet") == file_sha256(whole / f"{table}.parquet"), table
    manifest = json.loads((tmp_path / "replay" / "manifest.json").read_text())
    assert manifest["throughput"]["llm_calls"] == 0 and manifest["throughput"]["embedded_texts"] == 0
    assert manifest["throughput"]["llm_from_log"] == manifest["throughput"]["llm_attempts"] > 0


def test_replay_with_an_analysis_only_change(whole: Path, study_file: Path, tmp_path: Path) -> None:
    changed = tmp_path / "fewer_metrics.toml"
    changed.write_text(study_file.read_text() + '[metrics]\nnames = ["semantic_diversity", "distinct_traits"]\n')
    result = _cli("replay", str(whole), "--out", str(tmp_path / "replay"), "--study", str(changed), prelude=NO_VLLM)
    assert result.returncode == 0, result.stderr
    for table in ("traits", "population", "generations"):
        assert file_sha256(tmp_path / "replay" / f"{table}.parquet") == file_sha256(whole / f"{table}.parquet"), table
    metrics = pl.read_parquet(tmp_path / "replay" / "metrics.parquet")
    original = pl.read_parquet(whole / "metrics.parquet").filter(pl.col("metric").is_in(metrics["metric"].unique()))
    assert metrics.sort("run_id", "generation", "metric").equals(original.sort("run_id", "generation", "metric"))


def test_replay_of_a_request_the_log_lacks_names_it(whole: Path, study_file: Path, tmp_path: Path) -> None:
    """Consulting humans reading 2 neighbours instead of 3 ask requests the log never saw (the
    attractor calibration, which reads one text per chain, is unchanged)."""
    changed = tmp_path / "narrower.toml"
    changed.write_text(
        study_file.read_text().replace("max_tokens = 16", "max_tokens = 16\n[llm.prompt]\nneighbours_read = 2")
    )
    result = _cli("replay", str(whole), "--out", str(tmp_path / "replay"), "--study", str(changed), prelude=NO_VLLM)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "MissingCompletion" in message and "generation 1, agent" in message, message
    assert "Traceback" not in result.stderr


def test_replay_with_other_sampling_names_the_missing_calibration(
    whole: Path, study_file: Path, tmp_path: Path
) -> None:
    changed = tmp_path / "hotter.toml"
    changed.write_text(study_file.read_text().replace("max_tokens = 16", "max_tokens = 16\ntemperature = 1.1"))
    result = _cli("replay", str(whole), "--out", str(tmp_path / "replay"), "--study", str(changed), prelude=NO_VLLM)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "MissingCalibration" in message and "holds no calibration" in message, message
    assert "Traceback" not in result.stderr
