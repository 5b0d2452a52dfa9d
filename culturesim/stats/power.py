"""Power by simulation from pilot run-level values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from culturesim.schema.analysis_plan import Hypothesis
from culturesim.stats.inference import MIN_RUNS_PER_ARM, hc3_two_arm, p_value, supports

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
        powers.append(float(np.mean(supports(estimate, p, alpha=hypothesis.alpha, direction=hypothesis.direction))))
    power = np.array(powers)
    return pl.DataFrame({"n": list(n_grid), "power": power, "mcse": np.sqrt(power * (1 - power) / n_sim)})


def replicates_for_power(table: pl.DataFrame, target: float = 0.8) -> int | None:
    """Smallest n in a `simulate_power` table whose power reaches `target`, or None."""
    reaching = table.filter(pl.col("power") >= target)
    return int(reaching["n"].min()) if reaching.height else None
