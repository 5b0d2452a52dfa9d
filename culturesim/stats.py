"""Preregistered hypothesis tests, effect sizes, attractor fits and simulation-based power.

Every run is reduced to one number (its outcome summary), arms are compared with a
run-level OLS with HC3 standard errors and t reference distribution, confirmatory
hypotheses are Holm-corrected, and each hypothesis gets a verdict with a reason.
A linear mixed model on whole trajectories is reported as a sensitivity analysis.
Statistical code never raises on bad data: a fit that cannot be trusted becomes an
"inconclusive" verdict naming why. Polars is converted to pandas only where
statsmodels needs it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import polars as pl
import statsmodels.api as sm
import statsmodels.formula.api as smf
from patsy import PatsyError
from scipy import stats as sps
from statsmodels.stats.meta_analysis import effectsize_smd
from statsmodels.stats.multitest import multipletests

from culturesim.analysis_plan import Contrast, Hypothesis, Preregistration

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


@dataclass(frozen=True)
class HypothesisResult:
    """Everything reported for one preregistered hypothesis (differences are treatment - reference)."""

    id: str
    statement: str
    confirmatory: bool
    outcome: str
    summary: str
    direction: str
    alpha: float
    sesoi: float
    n_treatment: int
    n_reference: int
    n_dropped: int
    mean_treatment: float
    mean_reference: float
    mcse_treatment: float
    mcse_reference: float
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    tost_ci: tuple[float, float] | None
    hedges_g: float
    g_ci_low: float
    g_ci_high: float
    mixed: dict[str, Any]
    verdict: str
    reason: str
    warnings: list[str]


@dataclass(frozen=True)
class AttractorFit:
    """final = a + b * initial across chains (Perez et al. 2024 notation); a contracting map has |b| < 1.

    p_value is the one-sided p of |b| < 1 (H1 b < 1 when b >= 0, b > -1 when b < 0).
    """

    n: int
    a: float
    b: float
    b_se: float
    fixed_point: float
    fixed_point_ci: tuple[float, float]
    strength: float
    strength_ci: tuple[float, float]
    p_value: float


# --- run-level outcomes -------------------------------------------------------


def _contrast_runs(runs: pl.DataFrame, contrast: Contrast) -> pl.DataFrame:
    """run_id, replicate, treatment (1/0) for runs at either contrast level; levels compared as JSON."""
    if contrast.factor not in runs.columns:
        raise ValueError(f"runs table has no column for factor {contrast.factor!r}; columns: {runs.columns}")
    treatment, reference = json.dumps(contrast.treatment), json.dumps(contrast.reference)
    level = pl.col(contrast.factor)
    return runs.filter(level.is_in([treatment, reference])).select(
        "run_id", "replicate", (level == treatment).cast(pl.Int64).alias("treatment")
    )


def _outcome_long(metrics: pl.DataFrame, contrast_runs: pl.DataFrame, outcome: str) -> pl.DataFrame:
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


def _run_summaries(
    contrast_runs: pl.DataFrame, long: pl.DataFrame, hypothesis: Hypothesis, *, final_generation: int
) -> pl.DataFrame:
    """One row per contrast run, value NaN where the summary is missing or not finite."""
    summary = _summarize(long, hypothesis, final_generation=final_generation)
    return (
        contrast_runs.join(summary, on="run_id", how="left")
        .with_columns(pl.col("value").fill_null(float("nan")))
        .select("run_id", "replicate", "treatment", "value")
    )


def _finite(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("value").is_finite())


def run_outcomes(
    metrics: pl.DataFrame, runs: pl.DataFrame, hypothesis: Hypothesis, *, final_generation: int
) -> pl.DataFrame:
    """run_id, replicate, treatment (1/0), value for the contrast runs with a finite summary.

    Runs left out for a NaN summary are counted in `HypothesisResult.n_dropped` by `analyze`.
    """
    contrast_runs = _contrast_runs(runs, hypothesis.contrast)
    long = _outcome_long(metrics, contrast_runs, hypothesis.outcome)
    return _finite(_run_summaries(contrast_runs, long, hypothesis, final_generation=final_generation))


# --- tests shared by the OLS fit and the fast power path ----------------------


def _t_interval(estimate: Any, se: Any, df: Any, level: float) -> tuple[Any, Any]:
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


def _supports(estimate: Any, p: Any, *, alpha: float, direction: str) -> Any:
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


def _recording(fn: Callable[[], T]) -> tuple[T, list[str]]:
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
    (fit, left_out), fit_warnings = _recording(lambda: _fit_ols(hypothesis.model, outcomes.to_pandas()))
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
    data = _finite(long).to_pandas()
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
        result, report["warnings"] = _recording(fit)
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


# --- analysis -------------------------------------------------------------------


def _analyze_one(
    metrics: pl.DataFrame, runs: pl.DataFrame, hypothesis: Hypothesis, *, final_generation: int
) -> HypothesisResult:
    """Everything but the multiplicity adjustment and verdict (left for `analyze`)."""
    contrast_runs = _contrast_runs(runs, hypothesis.contrast)
    long = _outcome_long(metrics, contrast_runs, hypothesis.outcome)
    summaries = _run_summaries(contrast_runs, long, hypothesis, final_generation=final_generation)
    outcomes = _finite(summaries)
    n_dropped = summaries.height - outcomes.height
    notes = [f"{n_dropped} run(s) dropped: no finite {hypothesis.summary} of {hypothesis.outcome}"] if n_dropped else []
    treated = outcomes.filter(pl.col("treatment") == 1)["value"].to_numpy()
    reference = outcomes.filter(pl.col("treatment") == 0)["value"].to_numpy()
    (mean_t, mcse_t), (mean_r, mcse_r) = arm_mean(treated), arm_mean(reference)
    g, g_low, g_high = hedges_g(treated, reference)
    nan = float("nan")
    test, reason = RunLevelTest(nan, nan, nan, nan, nan, nan, None, []), ""
    try:
        test = run_level_test(outcomes, hypothesis)
    except InconclusiveError as exc:
        reason = str(exc)
    return HypothesisResult(
        id=hypothesis.id,
        statement=hypothesis.statement,
        confirmatory=hypothesis.confirmatory,
        outcome=hypothesis.outcome,
        summary=hypothesis.summary,
        direction=hypothesis.direction,
        alpha=hypothesis.alpha,
        sesoi=hypothesis.sesoi,
        n_treatment=treated.size,
        n_reference=reference.size,
        n_dropped=n_dropped,
        mean_treatment=mean_t,
        mean_reference=mean_r,
        mcse_treatment=mcse_t,
        mcse_reference=mcse_r,
        estimate=test.estimate,
        se=test.se,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        p_value=test.p_value,
        p_adjusted=nan,
        tost_ci=test.tost_ci,
        hedges_g=g,
        g_ci_low=g_low,
        g_ci_high=g_high,
        mixed=mixed_model(long, hypothesis),
        verdict="inconclusive" if reason else "",
        reason=reason,
        warnings=notes + test.warnings,
    )


def _with_holm(results: list[HypothesisResult]) -> list[HypothesisResult]:
    """Holm over the confirmatory family; an inconclusive member counts with p = 1 (family size
    stays as registered) and keeps a NaN adjusted p. Exploratory results are not adjusted."""
    family = [i for i, r in enumerate(results) if r.confirmatory]
    if not family:
        return results
    adjusted = holm([results[i].p_value if np.isfinite(results[i].p_value) else 1.0 for i in family])
    updated = list(results)
    for i, p in zip(family, adjusted, strict=True):
        updated[i] = replace(results[i], p_adjusted=float(p) if np.isfinite(results[i].p_value) else float("nan"))
    return updated


def _with_verdict(result: HypothesisResult) -> HypothesisResult:
    if result.verdict == "inconclusive":
        return result
    p = result.p_adjusted if result.confirmatory else result.p_value
    label = ("Holm-adjusted " if result.confirmatory else "") + ("TOST p" if result.direction == "equivalent" else "p")
    supported = bool(_supports(result.estimate, p, alpha=result.alpha, direction=result.direction))
    comparison = "<" if p < result.alpha else ">="
    side = "" if supported or p >= result.alpha else " but the estimate lies on the other side"
    verdict = "supported" if supported else "not supported"
    return replace(result, verdict=verdict, reason=f"{label} = {p:.4g} {comparison} alpha {result.alpha:g}{side}")


def analyze(
    metrics: pl.DataFrame, runs: pl.DataFrame, plan: Preregistration, *, final_generation: int
) -> list[HypothesisResult]:
    """Test every registered hypothesis; Holm across the confirmatory ones; one verdict each."""
    results = [_analyze_one(metrics, runs, h, final_generation=final_generation) for h in plan.hypotheses]
    return [_with_verdict(r) for r in _with_holm(results)]


def results_table(results: Sequence[HypothesisResult]) -> pl.DataFrame:
    """One row per hypothesis; the mixed model flattened to mixed_* columns, warnings joined by '; '."""
    rows = []
    for result in results:
        row = asdict(result)
        tost = row.pop("tost_ci") or (float("nan"), float("nan"))
        mixed = row.pop("mixed")
        row.update(
            tost_ci_low=tost[0],
            tost_ci_high=tost[1],
            family="confirmatory" if result.confirmatory else "exploratory",
            warnings="; ".join(result.warnings + [f"mixed: {w}" for w in mixed["warnings"]]),
            mixed_converged=mixed["converged"],
            mixed_error=mixed["error"] or "",
            **{f"mixed_{k}": mixed[k] for k in ("treatment", "treatment_se", "treatment_p")},
            **{f"mixed_{k}": mixed[k] for k in ("interaction", "interaction_se", "interaction_p")},
        )
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


# --- attractor analysis (Perez et al. 2024) -------------------------------------


def attractor_fit(initial: np.ndarray, final: np.ndarray) -> AttractorFit:
    """Fit final = a + b * initial across chains (OLS, HC3, t with residual df).

    Fixed point a/(1-b) with a delta-method 95 % CI (unreliable as b nears 1), strength
    1 - |b| with a 95 % CI, and a one-sided p for |b| < 1: H1 b < 1 when b >= 0, b > -1 when b < 0.
    """
    initial, final = np.asarray(initial, dtype=float), np.asarray(final, dtype=float)
    if initial.shape != final.shape or initial.ndim != 1:
        raise ValueError(f"initial and final must be 1-D of equal length, got {initial.shape} and {final.shape}")
    keep = np.isfinite(initial) & np.isfinite(final)
    if keep.sum() < 3:
        raise ValueError(f"attractor_fit needs at least 3 chains with finite values, got {int(keep.sum())}")
    if np.ptp(initial[keep]) == 0:
        raise ValueError("attractor_fit needs initial values that vary across chains")
    fit = sm.OLS(final[keep], sm.add_constant(initial[keep])).fit(cov_type="HC3")
    (a, b), cov, df = fit.params, fit.cov_params(), fit.df_resid
    gradient = np.array([1 / (1 - b), a / (1 - b) ** 2])
    fixed_point, fixed_se = a / (1 - b), float(np.sqrt(gradient @ cov @ gradient))
    b_se = float(np.sqrt(cov[1, 1]))
    strength = 1 - abs(b)
    bound = 1.0 if b >= 0 else -1.0
    t_stat = (b - bound) / b_se
    p_contraction = sps.t.cdf(t_stat, df) if b >= 0 else sps.t.sf(t_stat, df)
    fixed_ci = _t_interval(fixed_point, fixed_se, df, CI_LEVEL)
    strength_ci = _t_interval(strength, b_se, df, CI_LEVEL)
    return AttractorFit(
        n=int(keep.sum()),
        a=float(a),
        b=float(b),
        b_se=b_se,
        fixed_point=float(fixed_point),
        fixed_point_ci=(float(fixed_ci[0]), float(fixed_ci[1])),
        strength=float(strength),
        strength_ci=(float(strength_ci[0]), float(strength_ci[1])),
        p_value=float(p_contraction),
    )


# --- power by simulation ----------------------------------------------------------


def _true_shift(hypothesis: Hypothesis) -> float:
    """The simulated treatment - reference difference: the sesoi in the registered direction,
    +sesoi for two-sided, and 0 for equivalence (power = chance of showing equivalence)."""
    return {"greater": hypothesis.sesoi, "less": -hypothesis.sesoi, "two-sided": hypothesis.sesoi}.get(
        hypothesis.direction, 0.0
    )


def simulate_power(
    reference: np.ndarray,
    treatment: np.ndarray,
    *,
    hypothesis: Hypothesis,
    n_grid: Sequence[int],
    n_sim: int,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Power per runs-per-arm n, from pilot run-level values, with its Monte Carlo SE.

    Residuals (pilot values centred per arm, pooled) are resampled with replacement; the
    treatment arm is shifted by `_true_shift`. Each dataset gets the unblocked run-level
    test via `hc3_two_arm` (identical to OLS `value ~ treatment` with HC3), so blocking on
    replicate, if registered, can only raise the real power above this.
    """
    reference, treatment = np.asarray(reference, dtype=float), np.asarray(treatment, dtype=float)
    if min(np.isfinite(reference).sum(), np.isfinite(treatment).sum()) < MIN_RUNS_PER_ARM:
        raise ValueError(f"each pilot arm needs at least {MIN_RUNS_PER_ARM} finite values")
    reference, treatment = reference[np.isfinite(reference)], treatment[np.isfinite(treatment)]
    if min(n_grid) < MIN_RUNS_PER_ARM:
        raise ValueError(f"every n in n_grid must be at least {MIN_RUNS_PER_ARM}, got {list(n_grid)}")
    residuals = np.concatenate([reference - reference.mean(), treatment - treatment.mean()])
    shift = _true_shift(hypothesis)
    powers = []
    for n in n_grid:
        simulated_reference = rng.choice(residuals, size=(n_sim, n))
        simulated_treatment = shift + rng.choice(residuals, size=(n_sim, n))
        estimate, se, df = hc3_two_arm(simulated_reference, simulated_treatment)
        p = p_value(estimate, se, df, direction=hypothesis.direction, sesoi=hypothesis.sesoi)
        powers.append(float(np.mean(_supports(estimate, p, alpha=hypothesis.alpha, direction=hypothesis.direction))))
    power = np.array(powers)
    return pl.DataFrame({"n": list(n_grid), "power": power, "mcse": np.sqrt(power * (1 - power) / n_sim)})


def replicates_for_power(table: pl.DataFrame, target: float = 0.8) -> int | None:
    """Smallest n in a `simulate_power` table whose power reaches `target`, or None."""
    reaching = table.filter(pl.col("power") >= target)
    return int(reaching["n"].min()) if reaching.height else None
