"""Real mounts for the disk-fault tests: a small tmpfs (a disk that fills) and a read-only bind mount.
Mounting needs root (CAP_SYS_ADMIN); where it is impossible, NEEDS_MOUNTS skips and says why."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

TMPFS_BYTES = 8 * 1024 * 1024  # the disk-fault studies' plans (about 1 MB or less) fit, so a run starts


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def unmount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _why_no_mounts() -> str | None:
    """None where this process can mount a tmpfs and remount a bind mount read-only, else why not."""
    if not shutil.which("mount") or os.geteuid() != 0:
        return "mounting a tmpfs or a read-only bind mount needs root and mount(8)"
    folder = Path(tempfile.mkdtemp(prefix="culturesim-mount-probe-"))
    try:
        mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder))
        unmount(folder)
        mount("--bind", str(folder), str(folder))
        try:
            mount("-o", "remount,ro,bind", str(folder))
            if os.access(folder, os.W_OK) and _writable(folder):
                return "a read-only bind mount is still writable here"
        finally:
            unmount(folder)
    except subprocess.CalledProcessError as exc:
        return f"cannot mount here: {exc.stderr.strip() or exc}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return None


def _writable(folder: Path) -> bool:
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return False
    return True


NO_MOUNTS = _why_no_mounts()
NEEDS_MOUNTS = pytest.mark.skipif(NO_MOUNTS is not None, reason=str(NO_MOUNTS))
