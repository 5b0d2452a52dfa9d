"""Preregistration: freeze a study's plan in a lock file and check runs against it.

`culturesim preregister STUDY.toml` writes STUDY.lock.json beside it with the sha256
of the canonical config (key-sorted, defaults filled), so anyone can later verify
that results came from exactly the plan that was registered. A run of a changed
config is refused unless the researcher states a deviation, which is recorded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from culturesim.config import ConfigError, StudyConfig
from culturesim.study.store import write_json


def lock_path(study_file: Path) -> Path:
    return study_file.with_name(study_file.name.removesuffix(".toml") + ".lock.json")


def write_lock(config: StudyConfig, study_file: Path) -> Path:
    """Freeze the config: hash, time, package version, hypotheses as text, the canonical config."""
    if config.preregistration is None:
        raise ConfigError(f"{study_file} has no [preregistration] section; add the plan before preregistering")
    path = lock_path(study_file)
    write_json(
        {
            "study": config.study.name,
            "sha256": config.hash(),
            "locked_at": datetime.now(UTC).isoformat(),
            "culturesim_version": version("culturesim"),
            "hypotheses": [f"{h.id}: {h.statement}" for h in config.preregistration.hypotheses],
            "config": json.loads(config.canonical_json()),
        },
        path,
    )
    return path


def read_lock(study_file: Path) -> dict[str, Any] | None:
    path = lock_path(study_file)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def changed_fields(locked: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dicts."""
    changed = []
    for key in sorted(set(locked) | set(current)):
        name = f"{prefix}{key}"
        a, b = locked.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed.extend(changed_fields(a, b, name + "."))
        elif a != b:
            changed.append(name)
    return changed


def check_lock(config: StudyConfig, study_file: Path, *, deviation: str | None) -> dict[str, Any] | None:
    """Compare a study with its lock; returns a deviation record, or None when it matches or is unlocked.

    A mismatch without a stated deviation raises ConfigError naming the changed fields.
    """
    lock = read_lock(study_file)
    if lock is None or lock["sha256"] == config.hash():
        return None
    fields = changed_fields(lock["config"], json.loads(config.canonical_json()))
    if not deviation:
        raise ConfigError(
            f"{study_file} no longer matches its preregistration {lock_path(study_file).name} "
            f"(changed: {', '.join(fields)}); restore the registered plan, or run with "
            '--deviation "why" to record a deviation'
        )
    return {
        "reason": deviation,
        "changed_fields": fields,
        "locked_sha256": lock["sha256"],
        "recorded_at": datetime.now(UTC).isoformat(),
    }
