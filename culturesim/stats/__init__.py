"""Preregistered hypothesis tests, effect sizes, attractor fits and simulation-based power.

Every run is reduced to one number (its outcome summary, `outcomes`), arms are compared with a
run-level OLS with HC3 standard errors and t reference distribution (`inference`), confirmatory
hypotheses are Holm-corrected and each hypothesis gets a verdict with a reason (`plan`). A linear
mixed model on whole trajectories is reported as a sensitivity analysis. Bad data never raise: a
fit that cannot be trusted becomes an "inconclusive" verdict naming why. Polars is converted to
pandas only where statsmodels needs it. `attractor_fit` (Perez et al. 2024) and `power` complete
the package; this module re-exports the public API.
"""

from culturesim.stats.attractor_fit import MIN_ATTRACTOR_RUNS, AttractorFit, ConditionFit, attractor_fit, condition_fits
from culturesim.stats.inference import (
    CI_LEVEL,
    FIT_ERRORS,
    MIN_RUNS_PER_ARM,
    InconclusiveError,
    RunLevelTest,
    arm_mean,
    hc3_two_arm,
    hedges_g,
    holm,
    mixed_model,
    p_value,
    run_level_test,
)
from culturesim.stats.outcomes import run_outcomes
from culturesim.stats.plan import HypothesisResult, analyze, results_table
from culturesim.stats.power import replicates_for_power, simulate_power

__all__ = [
    "CI_LEVEL",
    "FIT_ERRORS",
    "MIN_ATTRACTOR_RUNS",
    "MIN_RUNS_PER_ARM",
    "AttractorFit",
    "ConditionFit",
    "HypothesisResult",
    "InconclusiveError",
    "RunLevelTest",
    "analyze",
    "arm_mean",
    "attractor_fit",
    "condition_fits",
    "hc3_two_arm",
    "hedges_g",
    "holm",
    "mixed_model",
    "p_value",
    "replicates_for_power",
    "results_table",
    "run_level_test",
    "run_outcomes",
    "simulate_power",
]
