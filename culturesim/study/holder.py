"""A results folder is held by one culturesim study at a time, its workers included.

Two processes writing the same results folder would interleave run tables and
manifests. The holder (the study's driver) takes an OS file lock (flock on POSIX) on
`.culturesim.lock`: the kernel releases it when the holder exits or dies, even by
kill -9, so a stale lock never needs cleaning up. Beside it, `.holder.json` names the
holder (pid, host, command, start time, and a random session token) so that a refused
process can tell its user whom to wait for.

The driver does not write alone: a process-pool worker or a Ray task writes its batch's
run tables and appends to the completion log itself (a Ray task retried after its worker
died answers from that log). Each holds a shared flock on `.writers.lock` while it runs
(`hold_as_worker`) and writes only while `.holder.json` names its own session; a new
holder takes that lock exclusively once, after writing its record, and is refused while
workers of an earlier session still write. So a worker whose driver died cannot write
into a folder a resumed study holds, whichever starts first.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from filelock import FileLock, Timeout

from culturesim.study.store import StorageError, write_json

LOCK_FILE = ".culturesim.lock"
HOLDER_FILE = ".holder.json"
WRITERS_FILE = ".writers.lock"  # shared by a session's workers; exclusive for a moment when a holder starts


class FolderHeldError(RuntimeError):
    """The results folder is held by another process (or written by another session's workers);
    the message names the holder when it can. `message` replaces the default text."""

    def __init__(self, folder: Path, holder: dict[str, Any] | None, message: str | None = None) -> None:
        self.folder, self.holder = folder, holder
        super().__init__(
            message
            or f"results folder {folder} is held by {_who(holder)}; wait for it to finish or stop it, "
            "then run again (a killed holder releases it automatically)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt with its message in a driver, from a worker's (pool or Ray) pickled copy."""
        return (type(self), (self.folder, self.holder, str(self)))


def _who(holder: dict[str, Any] | None) -> str:
    """The holder of a folder, in words."""
    if holder is None:
        return "another culturesim process (holder unknown: its .holder.json is missing or unreadable)"
    return (
        f"another culturesim process: pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
        f"running `{holder.get('command', '?')}` since {holder.get('started', '?')}"
    )


def read_holder(folder: Path) -> dict[str, Any] | None:
    """The holder record of `folder`, or None when it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads((folder / HOLDER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _this_process() -> dict[str, Any]:
    """Who we are, as written to the holder file; the session token tells our record apart and is
    what our workers check before they write."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv),
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "session": secrets.token_hex(8),
    }


@contextmanager
def hold_folder(folder: Path) -> Iterator[str]:
    """Hold `folder` (created if needed) for the duration of the block, or raise FolderHeldError at once;
    yields the session token this study's workers pass to `hold_as_worker`.

    The lock is taken without waiting: a second study on the same folder is a mistake to
    report, not something to queue behind a run that may take days. A folder the disk refuses
    (read-only, full) raises StorageError naming the file.
    """
    folder = Path(folder)
    lock = FileLock(folder / LOCK_FILE, timeout=0)
    record = _this_process()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise FolderHeldError(folder, read_holder(folder)) from None
    except OSError as exc:
        _raise_storage(exc, folder / LOCK_FILE)
    try:
        write_json(record, folder / HOLDER_FILE, inside=folder)
        _refuse_earlier_writers(folder)
        yield record["session"]
    finally:
        # Releasing must not hide the error that ends the block (a folder removed or made read-only).
        with suppress(OSError):
            if read_holder(folder) == record:
                (folder / HOLDER_FILE).unlink()
        with suppress(OSError):
            lock.release()


def _raise_storage(exc: OSError, path: Path) -> NoReturn:
    """Raise `exc` as the StorageError of writing `path` where the disk refused it, else as it is."""
    storage = StorageError.of(exc, path)
    if storage is None:
        raise exc
    raise storage from exc


def _open_writers(folder: Path) -> int:
    """A descriptor of `folder`'s writers lock file (created, mode 0666 through the umask, if missing)."""
    path = folder / WRITERS_FILE
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        _raise_storage(exc, path)


def _refuse_earlier_writers(folder: Path) -> None:
    """FolderHeldError while workers of an earlier session (a pool or Ray whose driver stopped) still write.

    Called after our holder record is written: a worker that locks after this check reads our
    session in it, not its own, and writes nothing."""
    descriptor = _open_writers(folder)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise FolderHeldError(
            folder,
            None,
            f"results folder {folder} is still written by workers of an earlier culturesim session (process-pool "
            "workers or Ray tasks whose study stopped); wait for them to finish or stop them, then run again",
        ) from None
    finally:
        os.close(descriptor)  # releases the lock if we took it


@contextmanager
def hold_as_worker(folder: Path, session: str | None) -> Iterator[None]:
    """For a worker (process pool, Ray task) that writes into `folder` on behalf of the study whose
    holder record carries `session`: a shared lock for the duration of the block, taken without
    waiting; FolderHeldError, before anything is written, when that study no longer holds the folder."""
    folder = Path(folder)
    descriptor = _open_writers(folder)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:  # a new holder is checking for earlier writers right now
            locked = False
        holder = read_holder(folder)
        if not locked or session is None or holder is None or holder.get("session") != session:
            raise FolderHeldError(folder, holder, _not_ours(folder, holder))
        yield
    finally:
        os.close(descriptor)  # the kernel drops the shared lock with it, as when the worker dies


def _not_ours(folder: Path, holder: dict[str, Any] | None) -> str:
    """Why a worker writes nothing: the study that started it no longer holds `folder`."""
    now = "no process" if holder is None else _who(holder)
    return (
        f"results folder {folder} is no longer held by the study that started this worker (it is held by {now}); "
        "the worker wrote nothing: continue the study with `culturesim run STUDY --resume`"
    )
