"""A study's tables: each run's tables and done marker, written from its model, and the combined long tables.

A run counts as finished only when its `done.json` exists; it is written last, with the
sha256 of every table, so a killed study never counts a half-written run. Where the files
live and how they are written atomically is `culturesim.study.store`'s; every write names the
results folder (`inside`), so one removed while its study runs stops the study instead of being
re-created with only the runs written after.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from culturesim.core.fingerprint import file_sha256
from culturesim.parts.vectors import vectors_frame
from culturesim.simulation.model import CultureModel
from culturesim.study.store import (
    GENERATIONS_SCHEMA,
    METRICS_SCHEMA,
    POPULATION_SCHEMA,
    run_folder,
    write_json,
    write_parquet,
)

RUN_TABLES = ("metrics", "traits", "generations", "population", "vectors")


def write_run(
    folder: Path,
    model: CultureModel,
    log: list[dict[str, object]],
    vectors: pl.DataFrame,
    *,
    models: dict[str, Any],
) -> None:
    """One run's tables, each atomic, then the done marker with their hashes (written last)."""
    spec = model.spec
    target = run_folder(folder, spec.run_id)
    metrics = pl.DataFrame(
        [
            {"run_id": spec.run_id, "condition": spec.condition, "replicate": spec.replicate, **row}
            for row in model.records
        ],
        schema=METRICS_SCHEMA,
    )
    traits = model.pool.to_frame().with_columns(run_id=pl.lit(spec.run_id), condition=pl.lit(spec.condition))
    tables = {
        "metrics": metrics,
        "traits": traits,
        "generations": pl.DataFrame(log, schema=GENERATIONS_SCHEMA),
        "population": population_frame(model),
        "vectors": vectors,
    }
    for name, frame in tables.items():
        write_parquet(frame, target / f"{name}.parquet", inside=folder)
    write_json(
        {
            "run_id": spec.run_id,
            "files": {f"{name}.parquet": file_sha256(target / f"{name}.parquet") for name in tables},
            "models": models,
            "finished": datetime.now(UTC).isoformat(),
        },
        target / "done.json",
        inside=folder,
    )


def population_frame(model: CultureModel) -> pl.DataFrame:
    """Long table of who held what: run_id, generation, agent, trait_id, is_llm (empty if not saved)."""
    n, generations = len(model.traits), len(model.population)
    return pl.DataFrame(
        {
            "run_id": [model.spec.run_id] * (n * generations),
            "generation": np.repeat(np.arange(generations, dtype=np.int64), n),
            "agent": np.tile(np.arange(n, dtype=np.int64), generations),
            "trait_id": np.concatenate(model.population) if model.population else np.zeros(0, dtype=np.int64),
            "is_llm": np.tile(model.is_llm, generations),
        },
        schema=POPULATION_SCHEMA,
    )


def combine_runs(folder: Path, run_ids: list[str]) -> None:
    """The study-level long tables: every run's table in plan order; vectors once per distinct text."""
    for table in RUN_TABLES:
        frames = [pl.read_parquet(run_folder(folder, run_id) / f"{table}.parquet") for run_id in run_ids]
        combined = pl.concat(frames, how="vertical")
        if table == "vectors":
            combined = combined.unique("text_key", keep="first").sort("text_key")
        write_parquet(combined, folder / f"{table}.parquet", inside=folder)


def run_vectors(model: CultureModel, texts: list[str], embed) -> pl.DataFrame:
    """The vectors of every distinct text a run used: its traits and `texts` (axis poles)."""
    distinct = list(dict.fromkeys([*model.pool.texts, *texts]))
    return vectors_frame(distinct, embed(distinct))
