"""A results folder is held by one culturesim process at a time.

Two processes writing the same results folder would interleave run tables and
manifests. The holder takes an OS file lock (flock on POSIX) on `.culturesim.lock`:
the kernel releases it when the holder exits or dies, even by kill -9, so a stale
lock never needs cleaning up. Beside it, `.holder.json` names the holder (pid, host,
command, start time) so that a refused process can tell its user whom to wait for.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from culturesim.study.store import write_json

LOCK_FILE = ".culturesim.lock"
HOLDER_FILE = ".holder.json"


class FolderHeldError(RuntimeError):
    """The results folder is held by another process; the message names it when it can."""

    def __init__(self, folder: Path, holder: dict[str, Any] | None) -> None:
        self.folder, self.holder = folder, holder
        if holder is None:
            who = "another culturesim process (holder unknown: its .holder.json is missing or unreadable)"
        else:
            who = (
                f"another culturesim process: pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
                f"running `{holder.get('command', '?')}` since {holder.get('started', '?')}"
            )
        super().__init__(
            f"results folder {folder} is held by {who}; wait for it to finish or stop it, "
            "then run again (a killed holder releases it automatically)"
        )


def read_holder(folder: Path) -> dict[str, Any] | None:
    """The holder record of `folder`, or None when it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads((folder / HOLDER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _this_process() -> dict[str, Any]:
    """Who we are, as written to the holder file; the start time (UTC, seconds) tells our record apart."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv),
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@contextmanager
def hold_folder(folder: Path) -> Iterator[None]:
    """Hold `folder` (created if needed) for the duration of the block, or raise FolderHeldError at once.

    The lock is taken without waiting: a second study on the same folder is a mistake to
    report, not something to queue behind a run that may take days.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE, timeout=0)
    record = _this_process()
    try:
        lock.acquire()
    except Timeout:
        raise FolderHeldError(folder, read_holder(folder)) from None
    try:
        write_json(record, folder / HOLDER_FILE)
        yield
    finally:
        if read_holder(folder) == record:
            with suppress(FileNotFoundError):
                (folder / HOLDER_FILE).unlink()
        lock.release()
