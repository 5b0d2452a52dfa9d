"""Each run reduced to one number: its outcome at a generation, its change, or its slope over a window."""

from __future__ import annotations

import json

import polars as pl

from culturesim.schema.analysis_plan import Contrast, Hypothesis

# --- run-level outcomes -------------------------------------------------------


def select_contrast_runs(runs: pl.DataFrame, contrast: Contrast) -> pl.DataFrame:
    """run_id, replicate, treatment (1/0) for runs at either contrast level; levels compared as JSON."""
    if contrast.factor not in runs.columns:
        raise ValueError(f"runs table has no column for factor {contrast.factor!r}; columns: {runs.columns}")
    treatment, reference = json.dumps(contrast.treatment), json.dumps(contrast.reference)
    level = pl.col(contrast.factor)
    return runs.filter(level.is_in([treatment, reference])).select(
        "run_id", "replicate", (level == treatment).cast(pl.Int64).alias("treatment")
    )


def outcome_long(metrics: pl.DataFrame, contrast_runs: pl.DataFrame, outcome: str) -> pl.DataFrame:
    """All generations of `outcome` for the contrast runs; nulls become NaN."""
    long = (
        metrics.filter(pl.col("metric") == outcome)
        .select("run_id", "generation", pl.col("value").cast(pl.Float64).fill_null(float("nan")))
        .join(contrast_runs, on="run_id", how="inner")
    )
    if long.select(pl.struct("run_id", "generation").is_duplicated().any()).item():
        raise ValueError(f"metrics repeats (run_id, generation) rows for {outcome!r}")
    return long


def _at_generation(long: pl.DataFrame, generation: int) -> pl.DataFrame:
    return long.filter(pl.col("generation") == generation).select("run_id", "value")


def _window_slope(long: pl.DataFrame, window: tuple[int, int]) -> pl.DataFrame:
    """OLS slope (outcome units per generation); NaN unless every generation in the window is present."""
    start, end = window
    generation = pl.col("generation").cast(pl.Float64)
    centred = generation - generation.mean()
    value = pl.col("value")
    return (
        long.filter(pl.col("generation").is_between(start, end))
        .group_by("run_id")
        .agg(
            slope=(centred * (value - value.mean())).sum() / (centred**2).sum(),
            points=pl.col("generation").n_unique(),
        )
        .select(
            "run_id",
            value=pl.when(pl.col("points") == end - start + 1).then(pl.col("slope")).otherwise(float("nan")),
        )
    )


def _summarize(long: pl.DataFrame, hypothesis: Hypothesis, *, final_generation: int) -> pl.DataFrame:
    """run_id, value: the registered per-run summary of the outcome."""
    if hypothesis.summary == "slope":
        assert hypothesis.window is not None  # guaranteed by Hypothesis validation
        return _window_slope(long, hypothesis.window)
    generation = final_generation if hypothesis.generation == "final" else hypothesis.generation
    at = _at_generation(long, generation)
    if hypothesis.summary == "value":
        return at
    start = _at_generation(long, 0).rename({"value": "start"})
    return at.join(start, on="run_id", how="inner").select("run_id", value=pl.col("value") - pl.col("start"))


def run_summaries(
    contrast_runs: pl.DataFrame, long: pl.DataFrame, hypothesis: Hypothesis, *, final_generation: int
) -> pl.DataFrame:
    """One row per contrast run, value NaN where the summary is missing or not finite."""
    summary = _summarize(long, hypothesis, final_generation=final_generation)
    return (
        contrast_runs.join(summary, on="run_id", how="left")
        .with_columns(pl.col("value").fill_null(float("nan")))
        .select("run_id", "replicate", "treatment", "value")
    )


def finite(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows whose `value` is finite (a run with no defined outcome drops out, and is counted)."""
    return frame.filter(pl.col("value").is_finite())


def run_outcomes(
    metrics: pl.DataFrame, runs: pl.DataFrame, hypothesis: Hypothesis, *, final_generation: int
) -> pl.DataFrame:
    """run_id, replicate, treatment (1/0), value for the contrast runs with a finite summary.

    Runs left out for a NaN summary are counted in `HypothesisResult.n_dropped` by `analyze`.
    """
    contrast_runs = select_contrast_runs(runs, hypothesis.contrast)
    long = outcome_long(metrics, contrast_runs, hypothesis.outcome)
    return finite(run_summaries(contrast_runs, long, hypothesis, final_generation=final_generation))
