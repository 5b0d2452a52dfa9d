"""The run-level test of one hypothesis: OLS with HC3 errors and t intervals, the mixed-model
sensitivity analysis, effect sizes and the Holm adjustment.

A fit that cannot be made becomes an `InconclusiveError` naming why (`FIT_ERRORS`); any other
error is a bug and surfaces.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import polars as pl
import statsmodels.formula.api as smf
from patsy import PatsyError
from scipy import stats as sps
from statsmodels.stats.meta_analysis import effectsize_smd
from statsmodels.stats.multitest import multipletests

from culturesim.schema.analysis_plan import Hypothesis
from culturesim.stats.outcomes import finite

CI_LEVEL = 0.95
MIN_RUNS_PER_ARM = 2
# Leverage above this means the model fits a run exactly (e.g. a replicate block with one
# run left); HC3 then divides 0 by 0, so such runs are left out of the run-level fit.
EXACT_FIT_LEVERAGE = 1.0 - 1e-8
# Warnings about library versions, not about the fit: not recorded.
IGNORED_WARNINGS = (DeprecationWarning, FutureWarning)
INTERACTION_TERM = "generation:treatment"

T = TypeVar("T")


class InconclusiveError(Exception):
    """The data cannot answer the hypothesis; the message is the reason reported."""


@dataclass(frozen=True)
class RunLevelTest:
    """The treatment coefficient of the run-level OLS (outcome units) and its inference."""

    estimate: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    p_value: float
    tost_ci: tuple[float, float] | None
    warnings: list[str]


# --- tests shared by the OLS fit and the fast power path ----------------------


def t_interval(estimate: Any, se: Any, df: Any, level: float) -> tuple[Any, Any]:
    half = sps.t.ppf(0.5 + level / 2, df) * se
    return estimate - half, estimate + half


def p_value(estimate: Any, se: Any, df: Any, *, direction: str, sesoi: float) -> Any:
    """t-test p-value in the registered direction; TOST (max of two one-sided p) for 'equivalent'.

    Works elementwise on arrays, so the power simulation and the OLS path share it.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        if direction == "greater":
            return sps.t.sf(estimate / se, df)
        if direction == "less":
            return sps.t.cdf(estimate / se, df)
        if direction == "two-sided":
            return 2 * sps.t.sf(np.abs(estimate / se), df)
        above_lower = sps.t.sf((estimate + sesoi) / se, df)
        below_upper = sps.t.cdf((estimate - sesoi) / se, df)
        return np.maximum(above_lower, below_upper)


def supports(estimate: Any, p: Any, *, alpha: float, direction: str) -> Any:
    """p below alpha and, for one-sided hypotheses, the estimate on the registered side."""
    significant = np.asarray(p) < alpha
    if direction == "greater":
        return significant & (np.asarray(estimate) > 0)
    if direction == "less":
        return significant & (np.asarray(estimate) < 0)
    return significant


def hc3_two_arm(reference: np.ndarray, treatment: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed form of OLS `value ~ treatment` with HC3 errors, along the last axis.

    With a 0/1 dummy each run's leverage is 1/n of its arm, so the HC3 variance of the
    difference is s1²/(n1-1) + s0²/(n0-1) (sample variances); df is n1 + n0 - 2.
    Returns (estimate, se, df) in outcome units.
    """
    n1, n0 = treatment.shape[-1], reference.shape[-1]
    estimate = treatment.mean(axis=-1) - reference.mean(axis=-1)
    variance = treatment.var(axis=-1, ddof=1) / (n1 - 1) + reference.var(axis=-1, ddof=1) / (n0 - 1)
    return estimate, np.sqrt(variance), np.full_like(estimate, n1 + n0 - 2, dtype=float)


# --- run-level OLS --------------------------------------------------------------


def recording(fn: Callable[[], T]) -> tuple[T, list[str]]:
    """Call fn, returning its result and the distinct warnings it emitted as 'Category: message'."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for category in IGNORED_WARNINGS:
            warnings.simplefilter("ignore", category)
        result = fn()
    return result, list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))


# What a fit that cannot be made raises (a formula naming no column, a singular design, a value
# statsmodels refuses); anything else is a bug in culturesim and must surface, not read "inconclusive".
FIT_ERRORS = (PatsyError, ValueError, ArithmeticError, np.linalg.LinAlgError)


def _ols_model(formula: str, frame: pd.DataFrame) -> Any:
    """The run-level OLS model, or InconclusiveError when it cannot estimate treatment."""
    try:
        model = smf.ols(formula, frame)
    except FIT_ERRORS as exc:  # a failed fit is a reported outcome, not a crash
        raise InconclusiveError(f"the OLS fit failed: {type(exc).__name__}: {exc}") from exc
    if "treatment" not in model.exog_names:
        raise InconclusiveError(f"the model {formula!r} has no 'treatment' coefficient")
    rows, columns = model.exog.shape
    rank = np.linalg.matrix_rank(model.exog)
    if rank < columns:
        raise InconclusiveError(
            f"the run-level design is rank deficient (rank {rank} < {columns} columns), "
            "e.g. treatment confounded with replicate"
        )
    if rows <= rank:
        raise InconclusiveError(f"no residual degrees of freedom ({rows} runs, {rank} coefficients)")
    return model


def _without_exact_fits(formula: str, frame: pd.DataFrame) -> tuple[Any, int]:
    """Leave out runs the model fits exactly (leverage 1): they carry no information on the
    treatment coefficient and make HC3 divide 0 by 0. Returns the model and how many left."""
    left_out = 0
    while True:
        model = _ols_model(formula, frame)
        exact = model.fit().get_influence().hat_matrix_diag > EXACT_FIT_LEVERAGE
        if not exact.any():
            return model, left_out
        frame = frame.loc[~exact]
        left_out += int(exact.sum())


def _check_answerable(outcomes: pl.DataFrame) -> None:
    """Inconclusive before any fit: too few runs in an arm, or nothing varies."""
    counts = [outcomes.filter(pl.col("treatment") == arm).height for arm in (1, 0)]
    if min(counts) < MIN_RUNS_PER_ARM:
        raise InconclusiveError(
            f"fewer than {MIN_RUNS_PER_ARM} runs per arm (treatment {counts[0]}, reference {counts[1]})"
        )
    values = outcomes["value"].to_numpy()
    if np.ptp(values) == 0:
        raise InconclusiveError(f"zero variance: all {values.size} runs have the value {values[0]:g}")


def _fit_ols(formula: str, frame: pd.DataFrame) -> tuple[Any, int]:
    """OLS with HC3 errors after leaving out exactly fitted runs; any failure is inconclusive."""
    model, left_out = _without_exact_fits(formula, frame)
    try:
        return model.fit(cov_type="HC3", use_t=True), left_out
    except FIT_ERRORS as exc:  # a failed fit is a reported outcome, not a crash
        raise InconclusiveError(f"the OLS fit failed: {type(exc).__name__}: {exc}") from exc


def run_level_test(outcomes: pl.DataFrame, hypothesis: Hypothesis) -> RunLevelTest:
    """OLS `hypothesis.model` on run-level values with HC3 errors; t with residual df.

    Raises InconclusiveError (with the reason) when the data cannot answer the hypothesis.
    """
    _check_answerable(outcomes)
    (fit, left_out), fit_warnings = recording(lambda: _fit_ols(hypothesis.model, outcomes.to_pandas()))
    estimate, se, df = float(fit.params["treatment"]), float(fit.bse["treatment"]), float(fit.df_resid)
    if not np.isfinite(estimate):
        raise InconclusiveError("the treatment estimate is NaN")
    if not np.isfinite(se) or se <= 0:
        raise InconclusiveError(f"zero or non-finite residual variance (HC3 SE {se})")
    if left_out:
        fit_warnings.append(f"{left_out} run(s) fitted exactly by the model (leverage 1) left out of the HC3 fit")
    ci_low, ci_high = fit.conf_int(alpha=1 - CI_LEVEL).loc["treatment"]
    tost_ci = None
    if hypothesis.direction == "equivalent":
        low, high = fit.conf_int(alpha=2 * hypothesis.alpha).loc["treatment"]
        tost_ci = (float(low), float(high))
    p = p_value(estimate, se, df, direction=hypothesis.direction, sesoi=hypothesis.sesoi)
    return RunLevelTest(estimate, se, df, float(ci_low), float(ci_high), float(p), tost_ci, fit_warnings)


# --- mixed model sensitivity ----------------------------------------------------


def mixed_model(long: pl.DataFrame, hypothesis: Hypothesis) -> dict[str, Any]:
    """Linear mixed model `hypothesis.mixed_model` on every generation, grouped by run.

    Returns the treatment and generation:treatment coefficients (estimate, se, p; NaN when
    the formula lacks them), convergence, warnings and any error; never raises.
    """
    data = finite(long).to_pandas()
    report: dict[str, Any] = {
        "formula": hypothesis.mixed_model,
        "random_slope": hypothesis.random_slope,
        "n_runs": int(data["run_id"].nunique()),
        "n_obs": len(data),
        "converged": False,
        "error": None,
        "warnings": [],
    }
    for key in ("treatment", "interaction"):
        report.update({key: float("nan"), f"{key}_se": float("nan"), f"{key}_p": float("nan")})
    re_formula = "~generation" if hypothesis.random_slope else None

    def fit() -> Any:
        return smf.mixedlm(hypothesis.mixed_model, data, groups="run_id", re_formula=re_formula).fit()

    try:
        result, report["warnings"] = recording(fit)
    except FIT_ERRORS as exc:  # a failed sensitivity analysis is reported, and does not stop the report
        report["error"] = f"{type(exc).__name__}: {exc}"
        return report
    report["converged"] = bool(result.converged)
    for key, term in (("treatment", "treatment"), ("interaction", INTERACTION_TERM)):
        if term in result.fe_params.index:
            estimate, se, p = result.params[term], result.bse[term], result.pvalues[term]
            report.update({key: float(estimate), f"{key}_se": float(se), f"{key}_p": float(p)})
    return report


# --- effect sizes and multiplicity ---------------------------------------------


def arm_mean(values: np.ndarray) -> tuple[float, float]:
    """Mean and its Monte Carlo standard error sd/sqrt(n) (NaN below 2 runs)."""
    if values.size == 0:
        return float("nan"), float("nan")
    mcse = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return float(values.mean()), float(mcse)


def hedges_g(treatment: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """Standardized mean difference with Hedges' small-sample correction and a 95 % normal CI,
    by statsmodels' `effectsize_smd` (variance (n1+n0)/(n1 n0) + g²/(2(n1+n0−3.94)), Borenstein 2009).
    NaN when an arm has fewer than 2 runs or the pooled SD is zero.
    """
    n1, n0 = treatment.size, reference.size
    nan = (float("nan"),) * 3
    if min(n1, n0) < MIN_RUNS_PER_ARM:
        return nan
    if (n1 - 1) * treatment.var(ddof=1) + (n0 - 1) * reference.var(ddof=1) <= 0:
        return nan
    g, variance = effectsize_smd(
        treatment.mean(), treatment.std(ddof=1), n1, reference.mean(), reference.std(ddof=1), n0
    )
    half = sps.norm.ppf(0.5 + CI_LEVEL / 2) * np.sqrt(variance)
    return float(g), float(g - half), float(g + half)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels' `multipletests(method="holm")`)."""
    return multipletests(np.asarray(pvalues, dtype=float), method="holm")[1]
