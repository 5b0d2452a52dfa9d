"""Faults of the disk, for real: a full disk (a small tmpfs), a read-only folder (a read-only bind mount)
and a results folder removed mid-run each stop `culturesim run` with one message and no traceback; it
names the file, the bytes the plan needs and the bytes free, the finished runs stay, and `--resume`
then finishes the study with the bytes of an undisturbed run.

Each fault strikes right after the manifest update that follows the first finished run (the store is
patched in the study's process, as tests/test_resume.py does), so the next run's first table is the
write that fails, whatever the machine's speed. With pool workers the study's process strikes while
the workers go on, so each worker's writes into runs/ wait, once a run has finished, until the fault has
struck (WORKER_GATE): otherwise a fast worker could finish every run before the folder turns read-only.
Mounts come from `tests/mounts.py` (the tmpfs fixture from conftest): where mounting is impossible, the
tests that need it skip and say why.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from culturesim.schema.config import load_config
from culturesim.study import store
from culturesim.study.batch import LogPolicy
from culturesim.study.executors import run_on_ray
from culturesim.study.holder import FolderHeldError, hold_folder
from culturesim.study.planner import plan_study
from culturesim.study.sizing import human_bytes
from culturesim.study.store import StorageError, finished_runs, results_dir, run_folder, write_json, write_parquet
from tests.helpers import CLI, ENV
from tests.mounts import NEEDS_MOUNTS, TMPFS_BYTES, mount, unmount

# A human-only study of 3 runs, one per batch (so each is written as soon as it ends): seconds a run.
DISK_STUDY = """
[study]
name = "disk"
seed = 3
replicates = 3
generations = 4
[population]
size = 40
[humans]
copy_error = 0.1
innovation = 0.05
"""
TABLES = ("metrics.parquet", "traits.parquet", "population.parquet", "vectors.parquet", "generations.parquet")
# The embedding disk cache (in the session's own cache folder, never on the disks faulted here) saves a
# few seconds a run; vectors are bit-identical with or without it.
FAULT_ENV = {name: value for name, value in ENV.items() if name != "CULTURESIM_NO_DISK_CACHE"}

# The CLI with the store patched: once the manifest has been rewritten after the first finished run,
# the fault (fill | readonly | remove) strikes TARGET, before the next run writes anything.
FAULT_AFTER_FIRST_RUN = """
import os, shutil, subprocess, sys, time
from pathlib import Path
from culturesim.study import store

fault, target = sys.argv.pop(1), Path(sys.argv.pop(1))
atomic_write, struck = store._atomic_write, []


def fill(path):
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    for chunk in (1 << 20, 1 << 16, 4096, 1):
        try:
            while True:
                os.write(descriptor, b"x" * chunk)
        except OSError:
            pass
    os.close(descriptor)


def readonly(path):
    for _ in range(200):  # EBUSY while a pool worker still has a file open there
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.05)
    raise SystemExit("could not remount read-only")


def remove(path):
    shutil.copytree(path, path.with_name(path.name + ".saved"))
    shutil.rmtree(path)


def write_then_strike(path, write):
    atomic_write(path, write)
    if not struck and path.name == "manifest.json" and store.finished_runs(path.parent):
        struck.append(fault)
        {"fill": fill, "readonly": readonly, "remove": remove}[fault](target)
        if "CULTURESIM_TEST_STRUCK" in os.environ:
            Path(os.environ["CULTURESIM_TEST_STRUCK"]).touch()


store._atomic_write = write_then_strike
from culturesim.cli import app
app()
"""


# Loaded as sitecustomize by every process of the faulted CLI; it acts in pool workers only (the study's
# own process strikes the fault). A worker's write into runs/ waits while a run has finished and the fault
# has not struck yet (the flag file CULTURESIM_TEST_STRUCK), at most 60 s.
WORKER_GATE = """
import multiprocessing, os, time
from pathlib import Path
from culturesim.study import store

atomic_write, struck = store._atomic_write, Path(os.environ["CULTURESIM_TEST_STRUCK"])


def wait_for_the_fault(path, write):
    if multiprocessing.parent_process() is not None and "runs" in Path(path).parts:
        folder = next(parent for parent in Path(path).parents if parent.name == "runs").parent
        deadline = time.monotonic() + 60
        while store.finished_runs(folder) and not struck.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    atomic_write(path, write)


store._atomic_write = wait_for_the_fault
"""


@pytest.fixture(scope="module")
def disk_study(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study") / "disk.toml"
    path.write_text(DISK_STUDY)
    return path


@pytest.fixture(scope="module")
def undisturbed(disk_study: Path, tmp_path_factory) -> Path:
    """The study's results folder from one run on a normal disk."""
    out = tmp_path_factory.mktemp("undisturbed")
    result = _cli(disk_study, out)
    assert result.returncode == 0, result.stderr
    return results_dir(load_config(disk_study), out)


def _cli(
    study: Path, out: Path, *extra: str, fault: tuple[str, Path] | None = None, gate: Path | None = None
) -> subprocess.CompletedProcess:
    """`culturesim run STUDY --out OUT ...`, with `fault` (kind, target) striking after the first run; with
    `gate` (an empty folder), pool workers wait for the fault before writing more runs (WORKER_GATE)."""
    head = [sys.executable, "-c", FAULT_AFTER_FIRST_RUN, fault[0], str(fault[1])] if fault else CLI
    command = [*head, "run", str(study), "--out", str(out), *extra]
    env = dict(FAULT_ENV)
    if gate is not None:
        (gate / "sitecustomize.py").write_text(WORKER_GATE)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(gate), env.get("PYTHONPATH")]))
        env["CULTURESIM_TEST_STRUCK"] = str(gate / "struck")
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _one_message(result: subprocess.CompletedProcess, study: Path, folder: Path) -> str:
    """The single StorageError line of a failed run, checked for what a person needs."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "StorageError" in line]
    assert result.stderr.count("Error") == 1, result.stderr  # nothing raised on top of it
    print(line)
    total = human_bytes(plan_study(load_config(study)).size.total_bytes)
    assert re.search(rf"needs about [\d.,]+ k?M?B more by its plan \({re.escape(total)} in all\)", line), line
    assert re.search(rf"the disk of {re.escape(str(folder))} has [\d.,]+ k?M?G?B free", line), line
    assert f"writing {folder}/runs/" in line and "--resume" in line, line
    return line


def _same_as(folder: Path, reference: Path) -> None:
    for table in TABLES:
        assert (folder / table).read_bytes() == (reference / table).read_bytes(), table


# -- the store's writers ---------------------------------------------------------------------------------
@NEEDS_MOUNTS
def test_a_full_disk_is_one_storage_error_naming_the_file(tmpfs: Path) -> None:
    big = pl.DataFrame({"x": range(4 * TMPFS_BYTES // 8)}).with_columns(pl.col("x").hash())  # incompressible
    with pytest.raises(StorageError) as raised:
        write_parquet(big, tmpfs / "big.parquet")
    error = raised.value
    assert error.errno == errno.ENOSPC and error.path == tmpfs / "big.parquet"
    assert str(error).startswith(f"the disk is full: writing {tmpfs}/big.parquet failed (No space left on device)")
    assert list(tmpfs.iterdir()) == []  # no temporary left behind
    copy = pickle.loads(pickle.dumps(error))  # as a pool worker's error reaches the driver
    assert type(copy) is StorageError and str(copy) == str(error) and copy.free == error.free


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (pl.exceptions.ComputeError("parquet: underlying IO error: No space left on device (os error 28)"), 28),
        (OSError("Read-only file system (os error 30): .../.metrics.parquet.tmp"), 30),  # polars, no errno
        (OSError(errno.EACCES, "Permission denied"), errno.EACCES),
        (pl.exceptions.ComputeError("unable to find column"), None),
    ],
)
def test_polars_wrapped_io_errors_are_recognised(tmp_path: Path, raised: Exception, code: int | None) -> None:
    def write(_: Path) -> None:
        raise raised

    with pytest.raises(StorageError if code else type(raised)) as caught:
        store._write(tmp_path / "t.parquet", write, None)
    assert getattr(caught.value, "errno", None) == code
    assert list(tmp_path.iterdir()) == []


def test_a_removed_results_folder_is_not_created_again(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "x" / "abc"
    write_json({"a": 1}, folder / "runs" / "r0" / "done.json", inside=tmp_path)
    shutil.rmtree(folder)
    with pytest.raises(StorageError) as raised:
        write_json({"a": 1}, folder / "runs" / "r1" / "done.json", inside=folder)
    assert raised.value.errno == errno.ENOENT and "its folder was removed" in str(raised.value)
    assert not folder.exists()
    write_json({"a": 1}, tmp_path / "cache" / "new" / "x.json")  # elsewhere, folders are made as before


# -- the command line --------------------------------------------------------------------------------------
@pytest.mark.slow
@NEEDS_MOUNTS
def test_full_disk_then_resume(disk_study: Path, undisturbed: Path, tmpfs: Path) -> None:
    folder = results_dir(load_config(disk_study), tmpfs)
    filler = tmpfs / "filler"
    failed = _cli(disk_study, tmpfs, fault=("fill", filler))
    line = _one_message(failed, disk_study, folder)
    assert "the disk is full" in line and f"the disk of {folder} has 0 B free" in line, line
    assert "Free space, then `culturesim run STUDY --resume` continues" in line and "runs are kept" in line, line
    assert len(finished_runs(folder)) == 1  # the finished run is kept
    filler.unlink()
    resumed = _cli(disk_study, tmpfs, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _same_as(folder, undisturbed)


@pytest.mark.slow
@NEEDS_MOUNTS
@pytest.mark.parametrize("workers", [1, 2])
def test_read_only_folder_then_resume(disk_study: Path, undisturbed: Path, tmp_path: Path, workers: int) -> None:
    """With 2 workers the write that fails is a pool worker's: its error reaches the driver as itself.
    (A fresh-clone CI run once saw the 2-worker study finish before the remount; WORKER_GATE orders them.)"""
    folder = results_dir(load_config(disk_study), tmp_path)
    runs = folder / "runs"
    runs.mkdir(parents=True)
    mount("--bind", str(runs), str(runs))
    try:
        gate = tmp_path / "gate"
        gate.mkdir()
        failed = _cli(disk_study, tmp_path, "--workers", str(workers), fault=("readonly", runs), gate=gate)
        assert (gate / "struck").exists()
        line = _one_message(failed, disk_study, folder)
        assert "its folder is read-only" in line and "Make the folder writable, then" in line, line
        kept = finished_runs(folder)
        assert 1 <= len(kept) < 3, kept
        mount("-o", "remount,rw,bind", str(runs))
        resumed = _cli(disk_study, tmp_path, "--resume", "--workers", str(workers))
        assert resumed.returncode == 0, resumed.stderr
    finally:
        unmount(runs)
    _same_as(folder, undisturbed)


@pytest.mark.slow
def test_removed_results_folder_then_resume(disk_study: Path, undisturbed: Path, tmp_path: Path) -> None:
    folder = results_dir(load_config(disk_study), tmp_path)
    failed = _cli(disk_study, tmp_path, fault=("remove", folder))
    line = _one_message(failed, disk_study, folder)
    assert "its folder was removed while the study ran" in line and "Restore the results folder, then" in line
    assert "runs are kept" not in line  # only where the folder comes back
    assert not folder.exists()  # not created again by the runs after the removal
    shutil.move(folder.with_name(folder.name + ".saved"), folder)  # restored
    assert len(finished_runs(folder)) == 1
    resumed = _cli(disk_study, tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _same_as(folder, undisturbed)


# -- Ray ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
@NEEDS_MOUNTS
def test_ray_tasks_hold_the_folder_and_raise_disk_faults_as_themselves(
    disk_study: Path, undisturbed: Path, tmp_path: Path
) -> None:
    """A Ray task writes its runs itself, so it checks that its study holds the folder (a stale session
    writes nothing), and its StorageError reaches the driver as itself, not as Ray's RayTaskError."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install culturesim[ray]")
    config = load_config(disk_study)
    folder = results_dir(config, tmp_path)
    runs = folder / "runs"
    runs.mkdir(parents=True)
    plan = plan_study(config)
    [group] = plan.groups
    batches, log = list(group.batches), LogPolicy(folder / "log")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with hold_folder(folder) as session:
            with pytest.raises(FolderHeldError, match="no longer held by the study that started this worker"):
                list(run_on_ray(plan, group, batches[:1], folder, set(), log, address=None, session="stale"))
            assert list(runs.iterdir()) == []
            mount("--bind", str(runs), str(runs))
            try:
                mount("-o", "remount,ro,bind", str(runs))
                with pytest.raises(StorageError) as raised:
                    list(run_on_ray(plan, group, batches[:1], folder, set(), log, address=None, session=session))
            finally:
                unmount(runs)
            assert raised.value.errno == errno.EROFS and raised.value.path.parent.parent == runs, raised.value
            list(run_on_ray(plan, group, batches, folder, set(), log, address=None, session=session))
    finally:
        ray.shutdown()
    assert finished_runs(folder) == finished_runs(undisturbed)
    for run_id in finished_runs(folder):
        for table in TABLES:
            assert (run_folder(folder, run_id) / table).read_bytes() == (
                run_folder(undisturbed, run_id) / table
            ).read_bytes()


@pytest.mark.slow
@NEEDS_MOUNTS
def test_a_replay_onto_a_full_disk_is_one_message(undisturbed: Path, tmpfs: Path) -> None:
    """`culturesim replay` meets a full disk with the same single StorageError line, no traceback."""
    (tmpfs / "filler").write_bytes(b"\0" * (TMPFS_BYTES - 4096))  # leave too little for the replay's tables
    result = subprocess.run([*CLI, "replay", str(undisturbed), "--out", str(tmpfs / "replay")],
                            capture_output=True, text=True, env=FAULT_ENV, timeout=300)  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in (result.stdout + result.stderr).splitlines() if "StorageError" in line]
    assert "the disk is full" in line and str(tmpfs / "replay") in line, line
