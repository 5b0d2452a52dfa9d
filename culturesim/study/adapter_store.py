"""Trained adapters in the results folder: content-addressed files and one record per retraining.

    adapters/<digest>/adapter_model.safetensors, adapter_config.json   the adapter (digest: SHA-256
                                                                        over its files, `adapter_digest`)
    adapters/trainings/<run_id>-g<generation>.json                      one retraining of one run

A record names the adapter, its parent (the adapter that answered the run before it, None for
the base model), the digest of its inputs (training texts, settings, seed) and of its training
set, the generation it was trained at, its loss curve and the model-side metrics. A resume finds
a retraining's record by its inputs and trains nothing; a replay only reads records. Files are
written to a temporary name and renamed, adapter before record, so a kill leaves no record
without its adapter, and `verify` re-hashes every adapter a record names.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from culturesim.parts.llm.base import AdapterRef
from culturesim.parts.llm.training import adapter_digest

ADAPTERS_FOLDER = "adapters"
RETRAINING_SCHEMA = {
    "run_id": pl.String,
    "generation": pl.Int64,
    "adapter": pl.String,
    "parent": pl.String,
    "texts": pl.Int64,
    "human_share": pl.Float64,
    "tokens": pl.Int64,
    "seconds": pl.Float64,
    "first_loss": pl.Float64,
    "last_loss": pl.Float64,
    "heldout_nll": pl.Float64,
}
TRAININGS_FOLDER = "trainings"


class AdapterStore:
    """The adapters and retraining records under `results/adapters`."""

    def __init__(self, results: Path) -> None:
        self.folder = results / ADAPTERS_FOLDER

    def adapter(self, digest: str) -> AdapterRef:
        return AdapterRef(digest, str(self.folder / digest))

    def record(self, run_id: str, generation: int) -> dict[str, Any] | None:
        path = self._record_path(run_id, generation)
        return json.loads(path.read_text()) if path.exists() else None

    def records(self) -> list[dict[str, Any]]:
        """Every retraining record, by run and generation."""
        folder = self.folder / TRAININGS_FOLDER
        found = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.exists() else []
        return sorted(found, key=lambda r: (r["run_id"], r["generation"]))

    def put_adapter(self, files: dict[str, bytes]) -> AdapterRef:
        """Store an adapter's files once per digest, atomically (a temporary folder, then a rename)."""
        digest = adapter_digest(files)
        target = self.folder / digest
        if not target.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}.", dir=self.folder))
            for name, data in files.items():
                (staging / name).write_bytes(data)
            try:
                os.replace(staging, target)
            except OSError:  # another batch stored the same adapter first
                for path in staging.iterdir():
                    path.unlink()
                staging.rmdir()
        return self.adapter(digest)

    def put_record(self, record: dict[str, Any]) -> None:
        """Store a retraining's record (after its adapter), atomically."""
        path = self._record_path(record["run_id"], record["generation"])
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        os.replace(temporary, path)

    def copy_from(self, other: AdapterStore) -> None:
        """Every adapter and record of `other` (a replay takes the study's own)."""
        if other.folder.is_dir():
            shutil.copytree(other.folder, self.folder, dirs_exist_ok=True)

    def problems(self) -> list[str]:
        """Adapters named by a record that are missing or whose bytes no longer match their digest."""
        found = []
        for record in self.records():
            digest = record["adapter"]
            if digest is None:  # the base model's record
                continue
            folder = self.folder / digest
            files = {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}
            if not files:
                found.append(
                    f"adapter {digest[:12]} of {record['run_id']} generation {record['generation']} is missing"
                )
            elif adapter_digest(files) != digest:
                found.append(f"adapter {digest[:12]} of {record['run_id']} generation {record['generation']} changed")
        return found

    def table(self) -> pl.DataFrame:
        """One row per retraining (generation 0: the base model's score): run, generation, adapter,
        parent, texts trained on, realised human share, tokens, seconds, first and last training
        loss (nats per token) and the held-out score (nats per token)."""
        rows = [
            {
                "run_id": r["run_id"],
                "generation": r["generation"],
                "adapter": r["adapter"],
                "parent": r.get("parent"),
                "texts": r.get("texts", 0),
                "human_share": r.get("human_share"),
                "tokens": r.get("tokens", 0),
                "seconds": r.get("seconds", 0.0),
                "first_loss": r["losses"][0] if r.get("losses") else None,
                "last_loss": r["losses"][-1] if r.get("losses") else None,
                "heldout_nll": r["heldout_nll"],
            }
            for r in self.records()
        ]
        return pl.DataFrame(rows, schema=RETRAINING_SCHEMA)

    def summary(self) -> list[dict[str, Any]]:
        """What the manifest lists: one line per retraining."""
        return [
            {key: record.get(key) for key in ("run_id", "generation", "adapter", "parent", "inputs")}
            for record in self.records()
        ]

    def _record_path(self, run_id: str, generation: int) -> Path:
        return self.folder / TRAININGS_FOLDER / f"{run_id}-g{generation}.json"
