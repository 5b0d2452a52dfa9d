"""Power by simulation: how many replicates a preregistered hypothesis needs, from a pilot.

A pilot runs the study with a few replicates per condition. Its run-level outcomes
give the noise; the smallest effect of interest gives the signal; simulated studies
at each replicate count give the power, with its Monte Carlo standard error.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
from rich.table import Table

from culturesim.schema.analysis_plan import Hypothesis
from culturesim.schema.config import ConfigError, StudyConfig
from culturesim.stats import replicates_for_power, run_outcomes, simulate_power
from culturesim.stats.outcomes import select_contrast_runs
from culturesim.study.runner import StudyRunner
from culturesim.study.store import load_results, write_json

TARGET_POWER = 0.8


def pilot_config(config: StudyConfig, replicates: int) -> StudyConfig:
    """The study with `replicates` per condition and a '-pilot' name, so its results never mix with the real run."""
    data = config.model_dump(mode="json")
    data["study"].update(replicates=replicates, name=f"{config.study.name}-pilot")
    return StudyConfig.model_validate(data)


def pilot_power(
    config: StudyConfig,
    *,
    runner: StudyRunner,
    pilot: int,
    out_root: Path,
    max_replicates: int = 60,
    simulations: int = 1000,
    seed: int = 0,
) -> tuple[Table, Path]:
    """Run (or resume) the pilot, then simulate power for every confirmatory hypothesis."""
    if config.preregistration is None:
        raise ConfigError(f"study {config.study.name} has no [preregistration]: no hypotheses to power")
    pilot_study = pilot_config(config, pilot)
    folder = runner.run(pilot_study, out_root=out_root, resume=True)
    results = load_results(folder)
    rng = np.random.default_rng(seed)
    n_grid = list(range(2, max_replicates + 1))
    table = Table(title=f"power of {config.study.name} (pilot: {pilot} replicates per condition)")
    columns = (
        "hypothesis",
        "outcome",
        "sesoi",
        "runs per arm for 80 %",
        "replicates for 80 %",
        "power there (± MC SE)",
    )
    for column in columns:
        table.add_column(column)
    summary = []
    for hypothesis in (h for h in config.preregistration.hypotheses if h.confirmatory):
        outcomes = run_outcomes(results.metrics, results.runs, hypothesis, final_generation=results.final_generation)
        # An arm pools every condition at its level of the contrast factor: each replicate adds that many runs.
        arm_conditions = _conditions_per_arm(results.runs, hypothesis)
        treated = outcomes.filter(pl.col("treatment") == 1)["value"].to_numpy()
        reference = outcomes.filter(pl.col("treatment") == 0)["value"].to_numpy()
        curve = simulate_power(reference, treated, hypothesis=hypothesis, n_grid=n_grid, n_sim=simulations, rng=rng)
        needed = replicates_for_power(curve, target=TARGET_POWER)
        row = curve.filter(pl.col("n") == needed).row(0, named=True) if needed else None
        replicates = math.ceil(needed / arm_conditions) if needed else None
        table.add_row(
            hypothesis.id,
            hypothesis.outcome,
            f"{hypothesis.sesoi:g}",
            str(needed) if needed else f"> {max_replicates}",
            str(replicates) if replicates else f"> {max_replicates // arm_conditions}",
            f"{row['power']:.3f} ± {row['mcse']:.3f}" if row else "–",
        )
        summary.append(
            {
                "id": hypothesis.id,
                "runs_per_arm_for_80": needed,
                "conditions_per_arm": arm_conditions,
                "replicates_for_80": replicates,
                "curve": curve.to_dicts(),
            }
        )
    write_json({"study": config.study.name, "pilot_replicates": pilot, "hypotheses": summary}, folder / "power.json")
    return table, folder


def _conditions_per_arm(runs: pl.DataFrame, hypothesis: Hypothesis) -> int:
    """Conditions in the smaller arm of a hypothesis's contrast (1 when nothing else is varied)."""
    arms = select_contrast_runs(runs, hypothesis.contrast).join(runs.select("run_id", "condition"), on="run_id")
    sizes = arms.group_by("treatment").agg(pl.col("condition").n_unique())["condition"].to_list()
    return max(min(sizes, default=1), 1)
