"""Provenance: what produced a results folder (code, packages, models, hardware, command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from culturesim.core.fingerprint import hardware
from culturesim.parts.devices import resolve_device
from culturesim.parts.engine_identity import StudyEngines
from culturesim.schema.config import StudyConfig
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


def session_devices(config: StudyConfig, engines: StudyEngines) -> dict[str, str]:
    """Where this session's parts run, resolved (never 'auto'): the embedder's device, and each LLM
    engine of the study as '<backend> on <device>' ('vllm on cpu', 'openai on remote'), distinct engines
    joined by ', ' in order of first condition. `engines`: the study's recorded identities, so a
    resumed study names the engines its log was written with."""
    devices = {"embedding": resolve_device(config.embedding.device, field="embedding.device")}
    named = [
        f"{identity.backend} on {identity.device}"
        for identity in (engines.identity(cfg.llm.engine) for _, cfg in config.condition_grid() if cfg.uses_llm())
    ]
    if named:
        devices["llm"] = ", ".join(dict.fromkeys(named))
    return devices
