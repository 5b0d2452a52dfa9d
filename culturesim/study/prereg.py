"""Preregistration: freeze a study's plan in a lock file and check runs against it.

`culturesim preregister STUDY.toml` writes STUDY.lock.json beside it with the sha256
of the canonical config (key-sorted, defaults filled), so anyone can later verify
that results came from exactly the plan that was registered. A run of a changed
config is refused unless the researcher states a deviation, which is recorded.

A lock written before [llm] was split into tables (2026-12-01) hashed the flat layout: a config
matches it when its hash in that layout is the lock's (`config_hashes`), so an old study file,
unedited, still matches its lock, and a changed one is named in the lock's layout.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from culturesim.schema.config import ConfigError, StudyConfig, stored_hash
from culturesim.schema.llm_section import MOVED_LLM_SETTINGS, join_llm_tables
from culturesim.study.store import write_json

CURRENT_LAYOUT = "current"
FLAT_LLM_LAYOUT = "the flat llm-table layout of before 2026-12-01"  # no brackets: rich would read markup


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


def config_hashes(config: StudyConfig) -> dict[str, str]:
    """The config's hash in each layout a lock has been written in: {layout: sha256}.

    The flat layout's is the sha256 of the canonical JSON the code of before the split produced for
    the same study (`join_llm_tables`; each setting lives in one table, so the mapping is one to one
    and a changed setting changes both hashes)."""
    data = json.loads(config.canonical_json())
    return {CURRENT_LAYOUT: config.hash(), FLAT_LLM_LAYOUT: stored_hash(join_llm_tables(data))}


def _layout(locked: Any) -> str:
    """The layout a lock's stored config is written in (only to name changed fields as it does)."""
    llm = locked.get("llm") if isinstance(locked, dict) else None
    return (
        FLAT_LLM_LAYOUT if isinstance(llm, dict) and any(key in MOVED_LLM_SETTINGS for key in llm) else CURRENT_LAYOUT
    )


def check_lock(config: StudyConfig, study_file: Path, *, deviation: str | None) -> dict[str, Any] | None:
    """Compare a study with its lock; returns a deviation record, or None when it matches or is unlocked.

    A mismatch without a stated deviation raises ConfigError naming the changed fields, as the
    lock's layout names them.
    """
    lock = read_lock(study_file)
    if lock is None or lock["sha256"] in config_hashes(config).values():
        return None
    current = json.loads(config.canonical_json())
    if _layout(lock.get("config")) == FLAT_LLM_LAYOUT:
        current = join_llm_tables(current)
    fields = changed_fields(lock.get("config") or {}, current)
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
