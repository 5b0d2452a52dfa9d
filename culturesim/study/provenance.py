"""Provenance: what produced a results folder (code, packages, models, hardware, command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from culturesim.core.fingerprint import hardware
from culturesim.study.store import package_versions


def git_commit() -> str | None:
    """The commit of the culturesim checkout, with '+dirty' when it has local changes; None outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def provenance() -> dict[str, Any]:
    return {
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "hardware": hardware(),
        "command": sys.argv,
    }
