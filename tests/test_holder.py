"""A results folder is held by one process: others are refused at once, a killed holder frees it. Its
workers (pool, Ray) write only for the study that holds it, and a new holder waits for none of them:
it is refused while workers of an earlier session still write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from culturesim.schema.config import StudyConfig
from culturesim.study.batch import LogPolicy
from culturesim.study.executors import _run_batch_in_worker
from culturesim.study.holder import HOLDER_FILE, FolderHeldError, hold_as_worker, hold_folder
from culturesim.study.planner import plan_study

HOLD_AND_SLEEP = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from culturesim.study.holder import hold_folder\n"
    "with hold_folder(Path(sys.argv[1])):\n"
    "    time.sleep(600)\n"
)
WORK_AS_WORKER = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from culturesim.study.holder import hold_as_worker\n"
    "with hold_as_worker(Path(sys.argv[1]), sys.argv[2]):\n"
    "    (Path(sys.argv[1]) / 'worker-started').touch()\n"
    "    time.sleep(600)\n"
)
STARTUP_SECONDS = 60  # imports on a busy machine


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not path.exists():
        assert process.poll() is None, process.stderr.read() if process.stderr else "holder exited"
        assert time.monotonic() < deadline, f"{path} did not appear within {STARTUP_SECONDS} s"
        time.sleep(0.05)


def test_another_process_is_refused_until_the_holder_is_killed(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "x" / "abc123"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_SLEEP, str(folder)], stderr=subprocess.PIPE)
    try:
        wait_for(folder / HOLDER_FILE, holder)
        start = time.perf_counter()
        with pytest.raises(FolderHeldError) as refused, hold_folder(folder):
            pass
        assert time.perf_counter() - start < 1.0
        message = str(refused.value)
        assert f"pid {holder.pid} on host" in message and str(folder) in message
        assert "killed holder releases it" in message
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    assert json.loads((folder / HOLDER_FILE).read_text())["pid"] == holder.pid  # left behind by kill -9
    with hold_folder(folder):
        assert json.loads((folder / HOLDER_FILE).read_text())["pid"] == os.getpid()
    assert not (folder / HOLDER_FILE).exists()


def test_sequential_holds_and_a_nested_one(tmp_path: Path) -> None:
    for _ in range(2):
        with hold_folder(tmp_path / "new"):
            holder = json.loads((tmp_path / "new" / HOLDER_FILE).read_text())
            assert holder["pid"] == os.getpid() and holder["started"].endswith("Z")
            with pytest.raises(FolderHeldError, match=f"pid {os.getpid()}"), hold_folder(tmp_path / "new"):
                pass
        assert not (tmp_path / "new" / HOLDER_FILE).exists()


def test_an_unknown_holder_is_still_refused(tmp_path: Path) -> None:
    with hold_folder(tmp_path):
        (tmp_path / HOLDER_FILE).write_text("{not json")
        with pytest.raises(FolderHeldError, match="holder unknown"), hold_folder(tmp_path):
            pass
    assert (tmp_path / HOLDER_FILE).exists()  # not ours any more: left alone


def test_a_worker_writes_only_for_the_study_that_holds_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    with hold_folder(folder) as session:
        with hold_as_worker(folder, session):
            pass
        stale = pytest.raises(FolderHeldError, match="no longer held by the study that started this worker")
        with stale, hold_as_worker(folder, "another-session"):
            pass
    with pytest.raises(FolderHeldError, match="held by no process"), hold_as_worker(folder, session):
        pass  # its study ended
    resumed = pytest.raises(FolderHeldError, match=f"pid {os.getpid()}")
    with hold_folder(folder), resumed, hold_as_worker(folder, session):
        pass  # a resumed study holds it now


def test_a_new_holder_is_refused_while_a_worker_of_an_earlier_session_writes(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    with hold_folder(folder) as session:
        worker = subprocess.Popen([sys.executable, "-c", WORK_AS_WORKER, str(folder), session], stderr=subprocess.PIPE)
        try:
            wait_for(folder / "worker-started", worker)
        except BaseException:
            worker.kill()
            raise
    try:  # the driver has stopped; its worker still writes
        with pytest.raises(FolderHeldError, match="still written by workers of an earlier"), hold_folder(folder):
            pass
        assert not (folder / HOLDER_FILE).exists()  # the refused holder leaves no record
    finally:
        worker.kill()  # SIGKILL: the kernel drops its lock
        worker.wait()
    with hold_folder(folder):
        pass


def test_a_pool_worker_of_a_stale_session_writes_nothing(tmp_path: Path) -> None:
    config = StudyConfig.model_validate({"study": {"name": "stale", "replicates": 1, "generations": 2}})
    folder = tmp_path / "f"
    with hold_folder(folder), pytest.raises(FolderHeldError, match="the worker wrote nothing"):
        plan = plan_study(config)
        [group] = plan.groups
        _run_batch_in_worker(plan, group, plan.runs, str(folder), set(), LogPolicy(folder / "log"), "old")
    assert not (folder / "runs").exists()
