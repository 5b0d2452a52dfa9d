"""Fingerprints of files, model folders and the machine: what makes a computation repeatable."""

from __future__ import annotations

import hashlib
import os
import platform
from functools import cache
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@cache
def weights_digest(model: str) -> dict[str, str]:
    """sha256 of each weight file of a local model folder (empty for a hub id)."""
    folder = Path(model)
    if not folder.is_dir():
        return {}
    return {p.name: file_sha256(p) for p in sorted(folder.rglob("*")) if p.suffix in WEIGHT_SUFFIXES}


def hardware() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(), "os": platform.platform(), "gpu": gpu}
