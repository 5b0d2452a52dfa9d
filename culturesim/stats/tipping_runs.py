"""Per-run outcomes of a coordination study with a committed minority: one row per run saying whether
the committed name won by the horizon (the Bernoulli outcomes `culturesim.stats.tipping` models), and
the factor levels of the runs table read back as numbers."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

COMMITTED_SHARE = "committed_share"
CONSENSUS = "consensus"
NAN = float("nan")


def run_table(metrics: pl.DataFrame, runs: pl.DataFrame, *, horizon: int, threshold: float) -> pl.DataFrame:
    """One row per run of `runs`: its columns (run_id, condition, replicate, factor levels as
    stored), then

    - `committed_share`: share of agents whose current name is the committed name at `horizon`;
    - `won` (bool): committed_share at `horizon` >= `threshold`, i.e. the committed name holds
      consensus at T;
    - `consensus_at_horizon` (bool): consensus on any name at `horizon`;
    - `generations_to_consensus`: first generation with consensus on any name (null if never);
    - `committed_generations_to_consensus`: first generation with committed_share >= threshold
      (null if never).

    The first-passage times look at every recorded generation, also after `horizon`. Raises
    ValueError, naming the runs, when a run has no finite committed_share at `horizon` (a study
    without a committed name, or one that has not reached T).
    """
    metric = pl.col("metric")
    committed = metrics.filter(metric == COMMITTED_SHARE).select("run_id", "generation", pl.col("value").cast(float))
    if committed.is_empty():
        raise ValueError("metrics has no committed_share rows: not a coordination study with a committed name")
    at_horizon = committed.filter(pl.col("generation") == horizon).select("run_id", committed_share="value")
    table = runs.join(at_horizon, on="run_id", how="left", maintain_order="left")
    missing = table.filter(~pl.col("committed_share").is_finite().fill_null(False))["run_id"].to_list()
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(
            f"no finite committed_share at generation {horizon} for run(s) {shown}: a condition without "
            "coordination.committed_name, or a run that did not reach that generation"
        )
    consensus = metrics.filter(metric == CONSENSUS).select("run_id", "generation", pl.col("value").cast(float))
    first_consensus = _first_generation(consensus.filter(pl.col("value") == 1.0), "generations_to_consensus")
    first_committed = _first_generation(
        committed.filter(pl.col("value") >= threshold), "committed_generations_to_consensus"
    )
    now = consensus.filter(pl.col("generation") == horizon).select(
        "run_id", consensus_at_horizon=pl.col("value") == 1.0
    )
    return (
        table.join(now, on="run_id", how="left", maintain_order="left")
        .join(first_consensus, on="run_id", how="left", maintain_order="left")
        .join(first_committed, on="run_id", how="left", maintain_order="left")
        .with_columns(
            won=pl.col("committed_share") >= threshold,
            consensus_at_horizon=pl.col("consensus_at_horizon").fill_null(False),
        )
        .select(
            *runs.columns,
            "committed_share",
            "won",
            "consensus_at_horizon",
            "generations_to_consensus",
            "committed_generations_to_consensus",
        )
    )


def _first_generation(rows: pl.DataFrame, name: str) -> pl.DataFrame:
    return rows.group_by("run_id").agg(pl.col("generation").min().alias(name))


def decode_level(value: Any) -> Any:
    """A factor level as stored by `runs_table` (JSON text, "0.25") back to its value; other values pass."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def factor_values(runs: pl.DataFrame, factor: str) -> np.ndarray:
    """A numeric factor's levels per run as floats (NaN where missing)."""
    if factor not in runs.columns:
        raise ValueError(f"runs table has no column {factor!r}; columns: {runs.columns}")
    values = [decode_level(v) for v in runs[factor].to_list()]
    bad = sorted({str(v) for v in values if v is not None and not isinstance(v, (int, float))})
    if bad:
        raise ValueError(f"factor {factor!r} must be numeric; got levels {bad}")
    return np.array([NAN if v is None else float(v) for v in values], dtype=float)
