"""The committed-minority analysis of a coordination study: does a committed minority tip the
population to its name, from what size, and does that size depend on who else is in the population?

Each run becomes one Bernoulli outcome (`culturesim.stats.tipping_runs.run_table`: did the
committed name hold at least a threshold share of the agents at the horizon T? The study's
`[coordination] win_share`, half the population by default), and the share of runs won is modelled
as a logistic curve of the committed fraction
(`fit_tipping`, statsmodels GLM Binomial with logit link). The tipping point p50 is the fraction
where that curve crosses 1/2: p50 = -b0/b1 (a share of agents, 0..1). Its 95 % CI is Fieller's
interval (the set of θ for which b0 + θ·b1 = 0 is not rejected by a Wald test); it is the one
reported because it keeps its coverage when the slope is imprecise, where the delta method's
symmetric interval does not, and it says so honestly by becoming unbounded when the slope is not
distinguishable from 0. The delta-method interval is given beside it.

Data that admit no finite fit (every run won, none won, one fraction only, or perfect separation
of wins and losses by the fraction) are reported as such, never as a number: with separation the
maximum likelihood slope is infinite, and all the data say is the bracket between the largest
fraction that never won and the smallest that always won.

`compare_tipping` fits one curve per level of a grouping factor (e.g. population.llm_share) and
compares each level with a reference level: the difference of p50 with a delta-method CI from the
joint GLM `won ~ fraction * C(group)`, and 2-df Wald and likelihood-ratio tests that the group's
intercept and slope shifts are both zero (the curves coincide). Where a group's curve has no finite
fit (separation), no difference can be estimated, but the likelihood-ratio test still can be: its
statistic needs only the supremum of each likelihood, which separated data reach in the limit of an
infinitely steep curve (`sup_loglik`). The delta method rather than a
bootstrap over runs: it is exact to first order for the joint GLM's asymptotically normal
coefficients, costs one fit (the tests check its size on hundreds of simulated datasets), and does
not break down where the bootstrap does: with a handful of runs per fraction many resamples are
perfectly separated and have no finite p50 at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import stats as sps
from scipy.special import xlogy

from culturesim.stats.inference import CI_LEVEL, FIT_ERRORS, recording
from culturesim.stats.tipping_runs import decode_level, factor_values

INF = float("inf")
NAN = float("nan")
# The reasons a curve has no finite fit; "ok" is a finite fit.
STATUSES = ("ok", "no_runs", "all_won", "none_won", "one_level", "separation", "fit_failed")


# --- one curve ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TippingFit:
    """A logistic curve P(won) = expit(intercept + slope · fraction) across runs.

    `slope` is in logit units per unit committed fraction; p50 (a committed fraction, 0..1) is
    where the curve crosses 1/2. `status` is "ok" for a finite fit and otherwise one of STATUSES,
    with `reason` saying it in words and every estimate NaN. `bracket` is where the data put p50
    when no finite fit exists: (largest fraction that never won, smallest that always won) under
    separation, (-inf, smallest fraction) when every run won, (largest fraction, inf) when none did.
    """

    n_runs: int
    wins: int
    levels: int
    status: str
    reason: str
    intercept: float = NAN
    slope: float = NAN
    slope_se: float = NAN
    p50: float = NAN
    p50_se: float = NAN
    ci_fieller: tuple[float, float] = (NAN, NAN)
    ci_delta: tuple[float, float] = (NAN, NAN)
    bracket: tuple[float, float] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def finite(self) -> bool:
        return self.status == "ok"

    @property
    def ci(self) -> tuple[float, float]:
        """The reported 95 % CI of p50: Fieller's (±inf when unbounded)."""
        return self.ci_fieller

    @property
    def ci_bounded(self) -> bool:
        return all(math.isfinite(v) for v in self.ci_fieller)


def fieller_interval(b0: float, b1: float, cov: np.ndarray, *, level: float = CI_LEVEL) -> tuple[float, float]:
    """Fieller's CI for θ = -b0/b1: every θ with (b0 + θ b1)² <= z² Var(b0 + θ b1).

    Bounded only when b1 differs from 0 at this level (b1² > z² Var b1); otherwise the set is the
    whole line or two rays, returned as (-inf, inf).
    """
    z2 = sps.norm.ppf(0.5 + level / 2) ** 2
    a = b1**2 - z2 * cov[1, 1]
    half_b = b0 * b1 - z2 * cov[0, 1]
    c = b0**2 - z2 * cov[0, 0]
    discriminant = half_b**2 - a * c
    if a <= 0 or discriminant < 0:
        return -INF, INF
    root = math.sqrt(discriminant)
    return (-half_b - root) / a, (-half_b + root) / a


def p50_delta(b0: float, b1: float, cov: np.ndarray) -> tuple[float, float]:
    """p50 = -b0/b1 and its delta-method standard error."""
    gradient = np.array([-1.0 / b1, b0 / b1**2])
    return -b0 / b1, float(np.sqrt(gradient @ cov @ gradient))


def _clean(runs: pl.DataFrame, fraction: str, won: str) -> tuple[np.ndarray, np.ndarray]:
    """Fractions and 0/1 outcomes of the runs that have both."""
    if won not in runs.columns:
        raise ValueError(f"runs table has no column {won!r}; columns: {runs.columns}")
    x = factor_values(runs, fraction)
    y = runs[won].cast(pl.Float64).fill_null(NAN).to_numpy()
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _degenerate(x: np.ndarray, y: np.ndarray) -> TippingFit | None:
    """The TippingFit of data with no finite maximum likelihood fit, else None.

    With one covariate the logistic MLE is infinite exactly when a threshold separates wins from
    losses, ties allowed at one fraction (complete or quasi-complete separation).
    """
    n, wins = int(x.size), int(y.sum())
    levels = np.unique(x)
    base = {"n_runs": n, "wins": wins, "levels": int(levels.size)}
    if n == 0:
        return TippingFit(**base, status="no_runs", reason="no runs with a committed fraction and an outcome")
    if wins == n:
        return TippingFit(
            **base,
            status="all_won",
            reason=f"all {n} runs won: p50 lies below the smallest fraction tested ({levels[0]:g})",
            bracket=(-INF, float(levels[0])),
        )
    if wins == 0:
        return TippingFit(
            **base,
            status="none_won",
            reason=f"no run won: p50 lies above the largest fraction tested ({levels[-1]:g}), if it exists",
            bracket=(float(levels[-1]), INF),
        )
    if levels.size == 1:
        return TippingFit(
            **base,
            status="one_level",
            reason=f"every run has the committed fraction {levels[0]:g}: a curve needs at least two",
        )
    won_at, lost_at = x[y == 1], x[y == 0]
    always = [v for v in levels if np.all(y[x == v] == 1)]
    never = [v for v in levels if np.all(y[x == v] == 0)]
    if lost_at.max() <= won_at.min():
        low, high = max(never, default=-INF), min(always, default=INF)
        words = "the committed name won at every run above a threshold and at none below it"
    elif won_at.max() <= lost_at.min():
        low, high = max(always, default=-INF), min(never, default=INF)
        words = "the committed name won only at small fractions and never at large ones"
    else:
        return None
    return TippingFit(
        **base,
        status="separation",
        reason=f"perfect separation ({words}): the slope is infinite, so no finite p50 or CI exists; "
        f"p50 lies between {low:g} and {high:g}",
        bracket=(float(low), float(high)),
    )


def glm_logit(y: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, list[str]]:
    """Coefficients, their covariance, the log-likelihood and the warnings of a Binomial logit GLM.

    Raises ArithmeticError when the fit does not converge or its covariance is not finite.
    """
    result, caught = recording(lambda: sm.GLM(y, design, family=sm.families.Binomial()).fit())
    params, cov = np.asarray(result.params, dtype=float), np.asarray(result.cov_params(), dtype=float)
    if not result.converged:
        raise ArithmeticError("the GLM did not converge")
    if not (np.all(np.isfinite(params)) and np.all(np.isfinite(cov))):
        raise ArithmeticError("the GLM's coefficients or covariance are not finite")
    return params, cov, float(result.llf), caught


def sup_loglik(x: np.ndarray, y: np.ndarray) -> float | None:
    """The supremum of the logistic curve's log-likelihood on fractions `x` and outcomes `y` (nats).

    A finite fit's is the GLM's maximum. Data with no finite fit (separation, every run or none won,
    one fraction) reach their supremum in a limit (an infinitely steep or a flat curve) where each
    fraction's runs are fitted at that fraction's own share of wins: the per-fraction binomial
    log-likelihood. None where no supremum is known (no runs, a GLM that failed)."""
    degenerate = _degenerate(x, y)
    if degenerate is None:
        try:
            return glm_logit(y, sm.add_constant(x, has_constant="add"))[2]
        except FIT_ERRORS:
            return None
    if degenerate.status == "no_runs":
        return None
    total = 0.0
    for level in np.unique(x):
        outcomes = y[x == level]
        share = float(outcomes.mean())
        total += float(xlogy(outcomes.sum(), share) + xlogy(outcomes.size - outcomes.sum(), 1.0 - share))
    return total


def curves_coincide_lr_p(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]) -> float:
    """p of the 2-df likelihood-ratio test that two groups' (fractions, outcomes) share one curve, from
    the supremum log-likelihoods (`sup_loglik`) of each group and of the pooled runs, so that a group
    with no finite curve still takes part; NaN where a supremum is unknown."""
    pooled = (np.concatenate([reference[0], other[0]]), np.concatenate([reference[1], other[1]]))
    parts = [sup_loglik(*reference), sup_loglik(*other), sup_loglik(*pooled)]
    if any(part is None for part in parts):
        return NAN
    return float(sps.chi2.sf(max(2 * (parts[0] + parts[1] - parts[2]), 0.0), df=2))


def fit_tipping(runs: pl.DataFrame, *, fraction: str, won: str = "won") -> TippingFit:
    """The logistic curve of `won` on the committed fraction across runs (GLM Binomial, logit).

    `runs` has one row per run (e.g. `run_table`'s); `fraction` is the column of the committed
    fraction (JSON-encoded as `runs_table` stores factor levels, or numeric); runs missing either
    value are left out. Never raises on bad data: a curve that cannot be fitted comes back with
    status and reason (see TippingFit).
    """
    x, y = _clean(runs, fraction, won)
    degenerate = _degenerate(x, y)
    if degenerate is not None:
        return degenerate
    base = {"n_runs": int(x.size), "wins": int(y.sum()), "levels": int(np.unique(x).size)}
    try:
        params, cov, _, caught = glm_logit(y, sm.add_constant(x, has_constant="add"))
    except FIT_ERRORS as exc:  # a failed fit is a reported outcome, not a crash
        return TippingFit(**base, status="fit_failed", reason=f"the GLM failed: {type(exc).__name__}: {exc}")
    b0, b1 = float(params[0]), float(params[1])
    p50, se = p50_delta(b0, b1, cov)
    z = sps.norm.ppf(0.5 + CI_LEVEL / 2)
    return TippingFit(
        **base,
        status="ok",
        reason="" if b1 > 0 else "the fitted slope is not positive: larger committed minorities won less often",
        intercept=b0,
        slope=b1,
        slope_se=float(np.sqrt(cov[1, 1])),
        p50=p50,
        p50_se=se,
        ci_fieller=fieller_interval(b0, b1, cov),
        ci_delta=(p50 - z * se, p50 + z * se),
        warnings=tuple(caught),
    )


# --- curves compared across groups --------------------------------------------------------


def group_levels(runs: pl.DataFrame, group: str) -> list[str]:
    """The distinct levels of `group` as text, numeric levels in numeric order (e.g. LLM share 0 first)."""
    if group not in runs.columns:
        raise ValueError(f"runs table has no column {group!r}; columns: {runs.columns}")
    levels = runs[group].cast(pl.String).drop_nulls().unique().to_list()
    values = [decode_level(v) for v in levels]
    if all(isinstance(v, (int, float)) for v in values):
        return [level for _, level in sorted(zip(values, levels, strict=True))]
    return sorted(levels)


@dataclass(frozen=True)
class Difference:
    """p50(level) - p50(reference) from the joint GLM, with its delta-method CI and z-test p, and
    two 2-df tests that the level's intercept and slope shifts are both zero (the curves coincide):
    Wald and likelihood ratio. The Wald test is conservative for steep curves (Hauck-Donner: its
    standard errors grow faster than the coefficients); in the tests' design (p50 0.2, slope 25,
    90 runs per group) it rejected 2 % of null datasets at alpha 0.05, the likelihood ratio 5 %."""

    estimate: float = NAN
    se: float = NAN
    ci: tuple[float, float] = (NAN, NAN)
    p_value: float = NAN
    wald_p: float = NAN
    lr_p: float = NAN
    reason: str = ""


def p50_difference(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]) -> Difference:
    """Joint GLM `won ~ fraction * C(group)` on two groups' (fractions, outcomes).

    Coefficients (b0, b1, g0, g1): the reference curve b0 + b1·x, the other b0 + g0 + (b1 + g1)·x.
    """
    (x0, y0), (x1, y1) = reference, other
    x, y = np.concatenate([x0, x1]), np.concatenate([y0, y1])
    d = np.concatenate([np.zeros(x0.size), np.ones(x1.size)])
    design = np.column_stack([np.ones_like(x), x, d, d * x])
    try:
        params, cov, llf, _ = glm_logit(y, design)
        _, _, llf_pooled, _ = glm_logit(y, design[:, :2])
    except FIT_ERRORS as exc:  # reported in the table, not raised
        return Difference(reason=f"the joint GLM failed: {type(exc).__name__}: {exc}")
    b0, b1, g0, g1 = (float(v) for v in params)
    s = b1 + g1
    estimate = -(b0 + g0) / s + b0 / b1
    gradient = np.array([-1 / s + 1 / b1, (b0 + g0) / s**2 - b0 / b1**2, -1 / s, (b0 + g0) / s**2])
    se = float(np.sqrt(gradient @ cov @ gradient))
    z = sps.norm.ppf(0.5 + CI_LEVEL / 2)
    shifts = params[2:]
    wald = float(shifts @ np.linalg.solve(cov[2:, 2:], shifts))
    return Difference(
        estimate=estimate,
        se=se,
        ci=(estimate - z * se, estimate + z * se),
        p_value=float(2 * sps.norm.sf(abs(estimate / se))),
        wald_p=float(sps.chi2.sf(wald, df=2)),
        lr_p=float(sps.chi2.sf(max(2 * (llf - llf_pooled), 0.0), df=2)),
    )


def _without_difference(broken: list[str], pair: tuple[tuple[np.ndarray, np.ndarray], ...]) -> Difference:
    """The comparison where a curve has no finite fit: no difference, but the likelihood-ratio test."""
    lr_p = curves_coincide_lr_p(*pair)
    reason = "; ".join(broken)
    if math.isfinite(lr_p):
        reason += "; the likelihood-ratio test that the curves coincide uses that curve's supremum likelihood"
    return Difference(reason=reason, lr_p=lr_p)


COMPARISON_SCHEMA = {
    "group": pl.String,
    "level": pl.String,
    "reference": pl.Boolean,
    "status": pl.String,
    "reason": pl.String,
    "n_runs": pl.Int64,
    "wins": pl.Int64,
    **dict.fromkeys(
        (
            "p50",
            "ci_low",
            "ci_high",
            "delta_ci_low",
            "delta_ci_high",
            "slope",
            "slope_se",
            "bracket_low",
            "bracket_high",
            "difference",
            "diff_ci_low",
            "diff_ci_high",
            "diff_p",
            "wald_p",
            "lr_p",
        ),
        pl.Float64,
    ),
}


def compare_tipping(
    runs: pl.DataFrame, *, fraction: str, group: str, reference: str | None = None, won: str = "won"
) -> pl.DataFrame:
    """One tipping curve per level of `group`, each compared with the `reference` level.

    Returns one row per level (in `group_levels` order): group (the level as stored), level (its
    value as text), reference (bool), status, reason, n_runs, wins, p50, ci_low, ci_high (Fieller,
    the reported CI), delta_ci_low, delta_ci_high, slope, slope_se, bracket_low, bracket_high, and
    against the reference: difference (p50 of the level − p50 of the reference, a committed
    fraction: negative means the level tips with a smaller committed minority), diff_ci_low,
    diff_ci_high, diff_p (z-test of the difference), and wald_p and lr_p (the level's curve equals
    the reference's; see Difference for why both). Each level is compared with the reference
    separately; with several levels the p-values are not adjusted for multiplicity. `reference`
    defaults to the first level (the smallest, e.g. no LLM agents).
    """
    levels = group_levels(runs, group)
    if not levels:
        raise ValueError(f"column {group!r} has no levels")
    reference = levels[0] if reference is None else reference
    if reference not in levels:
        raise ValueError(f"reference {reference!r} is not a level of {group!r}; levels: {levels}")
    keyed = runs.with_columns(pl.col(group).cast(pl.String).alias("_level"))
    subsets = {level: keyed.filter(pl.col("_level") == level) for level in levels}
    fits = {level: fit_tipping(subsets[level], fraction=fraction, won=won) for level in levels}
    rows = []
    for level in levels:
        fit = fits[level]
        difference = Difference()
        if level != reference:
            broken = [
                f"{group}={decode_level(name)} has no finite curve ({fits[name].status})"
                for name in (reference, level)
                if not fits[name].finite
            ]
            pair = (_clean(subsets[reference], fraction, won), _clean(subsets[level], fraction, won))
            difference = p50_difference(*pair) if not broken else _without_difference(broken, pair)
        bracket = fit.bracket or (NAN, NAN)
        rows.append(
            {
                "group": level,
                "level": str(decode_level(level)),
                "reference": level == reference,
                "status": fit.status,
                "reason": "; ".join(r for r in (fit.reason, difference.reason) if r),
                "n_runs": fit.n_runs,
                "wins": fit.wins,
                "p50": fit.p50,
                "ci_low": fit.ci_fieller[0],
                "ci_high": fit.ci_fieller[1],
                "delta_ci_low": fit.ci_delta[0],
                "delta_ci_high": fit.ci_delta[1],
                "slope": fit.slope,
                "slope_se": fit.slope_se,
                "bracket_low": bracket[0],
                "bracket_high": bracket[1],
                "difference": difference.estimate,
                "diff_ci_low": difference.ci[0],
                "diff_ci_high": difference.ci[1],
                "diff_p": difference.p_value,
                "wald_p": difference.wald_p,
                "lr_p": difference.lr_p,
            }
        )
    return pl.DataFrame(rows, schema=COMPARISON_SCHEMA)
