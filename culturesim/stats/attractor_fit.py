"""The attractor fit of Perez et al. (2024): final = a + b · initial across chains or runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import stats as sps

from culturesim.stats.inference import CI_LEVEL, t_interval

MIN_ATTRACTOR_RUNS = 3  # an OLS line through fewer points has no residual degrees of freedom


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
    fixed_ci = t_interval(fixed_point, fixed_se, df, CI_LEVEL)
    strength_ci = t_interval(strength, b_se, df, CI_LEVEL)
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


@dataclass(frozen=True)
class ConditionFit:
    """One condition's attractor fit of a metric across its runs, with the points fitted."""

    condition: str
    initial: np.ndarray  # (runs,) the metric at generation 0
    final: np.ndarray  # (runs,) the metric at the last generation
    fit: AttractorFit


def condition_fits(metrics: pl.DataFrame, metric: str, conditions: Sequence[str]) -> list[ConditionFit]:
    """The attractor fit of `metric` (last generation on generation 0, across runs) per condition,
    in the order of `conditions`; the report's table and the attractor figures both use it.

    A condition is left out with fewer than MIN_ATTRACTOR_RUNS runs with finite values at both
    generations (e.g. novelty is undefined at generation 0), or when its initial values do not vary.
    """
    last = metrics["generation"].max()
    wide = (
        metrics.filter(pl.col("metric") == metric, pl.col("generation").is_in([0, last]))
        .pivot(on="generation", index=["run_id", "condition"], values="value")
        .drop_nulls()
        .drop_nans()
    )
    fits = []
    for condition in conditions:
        rows = wide.filter(pl.col("condition") == condition)
        initial, final = rows[str(0)].to_numpy(), rows[str(last)].to_numpy()
        if rows.height >= MIN_ATTRACTOR_RUNS and np.ptp(initial) > 0:
            fits.append(ConditionFit(condition, initial, final, attractor_fit(initial, final)))
    return fits
