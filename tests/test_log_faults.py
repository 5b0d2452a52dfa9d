"""Faults of the disk under the completion log, for real: the log is appended by the engine's batch,
not by the store, so a full disk (a small tmpfs) or a removed results folder must still end an LLM
study with the store's one StorageError naming the log file, and a resume after the fix must give
the bytes of an undisturbed run. The study runs in this process on the session's vLLM engine; the
fault strikes just before the log's first append."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from culturesim.schema.config import load_config
from culturesim.simulation.completions import CompletionLog
from culturesim.study.store import StorageError, finished_runs, results_dir
from tests.helpers import NEEDS_VLLM, llm_toy_study
from tests.mounts import NEEDS_MOUNTS
from tests.test_disk_faults import TABLES

pytestmark = [pytest.mark.slow, NEEDS_VLLM]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "logfault.toml"
    path.write_text(llm_toy_study("logfault", seed=8, replicates=2, generations=2, max_tokens=8))
    return load_config(path)


@pytest.fixture(scope="module")
def undisturbed(study, runner, tmp_path_factory) -> Path:
    return runner.run(study, out_root=tmp_path_factory.mktemp("undisturbed"))


def _fill(path: Path) -> None:
    """Write `path` until the disk refuses even one more byte."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    for chunk in (1 << 20, 1 << 16, 4096, 1):
        try:
            while True:
                os.write(descriptor, b"x" * chunk)
        except OSError:
            pass
    os.close(descriptor)


def _strike_before_the_first_append(monkeypatch, fault) -> None:
    append, struck = CompletionLog.append, []

    def strike_then_append(self, name, entries):
        if not struck:
            struck.append(name)
            fault(self)
        append(self, name, entries)

    monkeypatch.setattr(CompletionLog, "append", strike_then_append)


def _same_as(folder: Path, reference: Path) -> None:
    for table in TABLES:
        assert (folder / table).read_bytes() == (reference / table).read_bytes(), table


@NEEDS_MOUNTS
def test_a_full_disk_under_the_log_is_one_storage_error_then_resume(study, runner, undisturbed, tmpfs, monkeypatch):
    filler = tmpfs / "filler"
    _strike_before_the_first_append(monkeypatch, lambda log: _fill(filler))
    with pytest.raises(StorageError) as raised:
        runner.run(study, out_root=tmpfs)
    message = str(raised.value)
    print(message)
    assert message.startswith("the disk is full: writing ") and "/log/" in message and ".jsonl failed" in message
    assert "Free space, then `culturesim run STUDY --resume` continues" in message
    monkeypatch.undo()
    filler.unlink()
    resumed = runner.run(study, out_root=tmpfs, resume=True)
    _same_as(resumed, undisturbed)


def test_a_results_folder_removed_under_the_log_is_one_storage_error(study, runner, tmp_path, monkeypatch):
    saved = tmp_path / "saved"

    def remove(log: CompletionLog) -> None:
        shutil.copytree(log.folder.parent, saved)
        shutil.rmtree(log.folder.parent)

    _strike_before_the_first_append(monkeypatch, remove)
    with pytest.raises(StorageError) as raised:
        runner.run(study, out_root=tmp_path / "out")
    message = str(raised.value)
    print(message)
    assert message.startswith("its folder was removed while the study ran: writing ") and "/log" in message
    assert "Restore the results folder, then" in message
    assert not results_dir(study, tmp_path / "out").exists()  # the log never re-creates a removed results folder
    assert not finished_runs(saved)
