"""Fault injection: a worker killed mid-batch (process pool, Ray) loses nothing and counts no run twice."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import CLI, ENV, run_cli

pytestmark = pytest.mark.slow


def _processes() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path(f"/proc/{pid}/task").iterdir():
        path = entry / "children"
        if path.exists():
            children += [int(c) for c in path.read_text().split()]
    return children


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether `pid` is a descendant of `ancestor` (Ray's workers are, through the raylet)."""
    try:
        while pid > 1:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if pid == ancestor:
                return True
    except (OSError, IndexError, ValueError):
        pass
    return False


def _kill_first(match, process: subprocess.Popen, timeout: float = 240) -> str:
    """SIGKILL the first of the study's descendants that `match`es. The match is checked again while
    the candidate and the study's own process are frozen (SIGSTOP), so between that check and the
    kill the study cannot end and the candidate cannot move on (a Ray worker cannot finish its task)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, cmdline in _processes().items():
            if not match(pid, cmdline) or not _descends_from(pid, process.pid):
                continue
            os.kill(process.pid, signal.SIGSTOP)
            try:
                if process.poll() is not None:
                    raise AssertionError("study ended before a worker could be killed")
                with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                    os.kill(pid, signal.SIGSTOP)
                    frozen = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if match(pid, frozen):
                        os.kill(pid, signal.SIGKILL)
                        return frozen
                    os.kill(pid, signal.SIGCONT)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
        if process.poll() is not None:
            raise AssertionError("study ended before a worker could be killed")
        time.sleep(0.01)
    raise AssertionError("no worker to kill appeared in time")


def _check_same(folder: Path, reference: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    run_ids = [r["run_id"] for r in manifest["runs"]]
    assert len(run_ids) == len(set(run_ids)) == 8
    metrics = pl.read_parquet(folder / "metrics.parquet")
    assert metrics.group_by("run_id", "generation", "metric").len()["len"].max() == 1, "a run was counted twice"
    for table in ("metrics.parquet", "traits.parquet", "population.parquet", "vectors.parquet"):
        assert (folder / table).read_bytes() == (reference / table).read_bytes(), table


def test_killed_pool_worker_then_resume(crashy_study: Path, crashy_whole: Path, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*CLI, "run", str(crashy_study), "--out", str(tmp_path), "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )

    def pool_worker(pid: int, cmdline: str) -> bool:
        started = any(tmp_path.glob("crashy/*/runs/*/done.json"))
        return started and pid in _children(process.pid) and "multiprocessing.spawn" in cmdline

    _kill_first(pool_worker, process)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 1 and "worker process died" in stderr, stderr
    [folder] = list((tmp_path / "crashy").iterdir())
    assert json.loads((folder / "manifest.json").read_text())["status"] == "interrupted"
    resumed = run_cli(crashy_study, tmp_path, "--resume", "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr
    _check_same(folder, crashy_whole)


def test_killed_ray_worker_is_retried(crashy_study: Path, crashy_whole: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install culturesim[ray]")
    process = subprocess.Popen(
        [*CLI, "run", str(crashy_study), "--out", str(tmp_path), "--executor", "ray"],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    killed = _kill_first(lambda pid, cmdline: cmdline.startswith("ray::_run_batch_task"), process)
    _, stderr = process.communicate(timeout=300)
    [folder] = list((tmp_path / "crashy").iterdir())
    print(f"killed {killed!r}; exit code {process.returncode}")
    assert process.returncode == 0, f"Ray did not retry the killed task: {stderr[-2000:]}"
    _check_same(folder, crashy_whole)
