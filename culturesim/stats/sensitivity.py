"""Sobol indices of a design study's outcomes: each design point's final value, then SALib."""

from __future__ import annotations

import numpy as np
import polars as pl

from culturesim.schema.design import DesignSection, sobol_indices


def design_outputs(metrics: pl.DataFrame, labels: list[str], outcome: str, *, generation: int) -> np.ndarray:
    """(points,) the mean over replicates of `outcome` at `generation` for each design point, in
    the order of `labels` (the conditions' labels, which are the points' order)."""
    means = (
        metrics.filter(pl.col("metric") == outcome, pl.col("generation") == generation)
        .group_by("condition")
        .agg(pl.col("value").mean())
    )
    by_label = dict(zip(means["condition"], means["value"], strict=True))
    missing = [label for label in labels if label not in by_label]
    if missing:
        raise ValueError(f"{outcome} at generation {generation} is missing for {len(missing)} design points")
    return np.array([by_label[label] for label in labels], dtype=float)


def sensitivity(
    metrics: pl.DataFrame, design: DesignSection, labels: list[str], outcome: str, *, generation: int
) -> list[dict[str, float | str]]:
    """First-order and total Sobol indices of `outcome` with bootstrap CIs (`design.sobol_indices`)."""
    return sobol_indices(design, design_outputs(metrics, labels, outcome, generation=generation))
