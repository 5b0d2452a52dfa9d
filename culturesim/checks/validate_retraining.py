"""`culturesim validate retraining`: the data regimes of retraining against exact model-collapse theory.

The LLM agents' model is refitted every K generations on a mix of texts (`parts/training_data.py`:
`draw_mix` picks it, `TrainingHistory` says what a fit sees under *replace* or *accumulate*). Here
that very code feeds two learners whose theory is exact (`core/retraining_theory.py`), so the
bookkeeping is tested without any LLM:

1. `gaussian_refit`     a Gaussian refitted by maximum likelihood on its own samples, with a share of
                        fresh real items (Shumailov et al. 2024, Nature 631:755).
2. `linear_regression`  OLS refitted on labels from its previous fit (Gerstgrasser et al. 2024,
                        arXiv:2404.01413).

Each replicate and generation calls `draw_mix` and `TrainingHistory.add`/`.data` itself; sampling
and fitting are vectorised over replicates. `check_retraining` compares the replicate mean of each
quantity with its theory, as `validate neutral` does: Monte Carlo SE = sd/√R over independent
replicates, z = (sim − theory)/MCSE, an exact row passes when |z| ≤ `Z_TOLERANCE`, a bound when it
is not exceeded by more than `Z_TOLERANCE` MCSE.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from culturesim.core.retraining_theory import (
    refit_drift_replace,
    refit_moments,
    refit_replace_limit,
    refit_variance_accumulate,
    refit_variance_accumulate_limit,
    refit_variance_replace,
    regression_accumulate_bound,
    regression_error_accumulate,
    regression_error_accumulate_limit,
    regression_error_replace,
)
from culturesim.core.theory import mean_mcse
from culturesim.parts.training_data import REGIMES, Regime, TrainingHistory, draw_mix

# 4 MCSE: with ~50 rows, a correct simulation fails some row by chance with probability < 0.5 %
# (two-sided normal tail 6e-5 per row), while a broken regime misses by tens of MCSE.
Z_TOLERANCE = 4.0
DEFAULT_REPLICATES = 2000
DEFAULT_STEPS = (1, 2, 5, 10)  # generations (Gaussian) and iterations (regression) reported
GAUSSIAN_SAMPLES = 10  # M items per mix
GAUSSIAN_SHARES = {"replace": (0.0, 0.2, 0.5), "accumulate": (0.0, 0.5)}  # human share p of each mix
REGRESSION_DIM = 5  # d features
REGRESSION_ROWS = 20  # T rows per iteration (T > d + 1)
COLUMNS = ("learner", "regime", "share", "quantity", "step", "replicates", "theory", "sim", "mcse", "z",
           "within", "kind", "claim", "limit")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 1. Gaussian refit
# ---------------------------------------------------------------------------------------------


def gaussian_refit(
    *,
    regime: Regime,
    share: float,
    samples: int = GAUSSIAN_SAMPLES,
    generations: int = max(DEFAULT_STEPS),
    replicates: int = DEFAULT_REPLICATES,
    mu0: float = 0.0,
    sigma0: float = 1.0,
    ddof: int = 0,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Per replicate and generation 0..`generations`: the fitted variance σn² and the drift (μn − μ0)².

    Generation 0 is the real N(μ0, σ0²). Each generation draws `samples` = M fresh real (human)
    candidates from N(μ0, σ0²) and M machine candidates from the current fit N(μn, σn²), so a mix of
    M takes its k = round(share·M) human and M − k machine items without replacement; the history
    adds the mix, and the next fit is the MLE of `history.data(regime)`: the sample mean and the
    variance with divisor items − `ddof` (0: the MLE; 1, the unbiased estimator, breaks the theory).
    Returns {"variance": (R, G + 1), "drift": (R, G + 1)} in the data's squared unit.
    """
    histories: list[TrainingHistory[float]] = [TrainingHistory() for _ in range(replicates)]
    mean, variance = np.full(replicates, mu0), np.full(replicates, sigma0**2)
    out = {"variance": np.empty((replicates, generations + 1)), "drift": np.empty((replicates, generations + 1))}
    out["variance"][:, 0], out["drift"][:, 0] = variance, 0.0
    for n in range(1, generations + 1):
        human = rng.normal(mu0, sigma0, size=(replicates, samples))
        machine = rng.normal(mean[:, None], np.sqrt(variance)[:, None], size=(replicates, samples))
        seen = []
        for r in range(replicates):
            mix, _ = draw_mix(human[r].tolist(), machine[r].tolist(), size=samples, human_share=share, rng=rng)
            histories[r] = histories[r].add(mix)
            seen.append(histories[r].data(regime))
        data = np.asarray(seen)  # (R, items): every replicate's history holds as many items
        mean, variance = data.mean(axis=1), data.var(axis=1, ddof=ddof)
        out["variance"][:, n], out["drift"][:, n] = variance, (mean - mu0) ** 2
    return out


def gaussian_theory(
    *, regime: Regime, share: float, samples: int, generations: int, sigma0: float = 1.0
) -> dict[str, tuple[np.ndarray, float]]:
    """{quantity: (theory for generations 0..G, its limit as G → ∞ or NaN where none is derived)}.

    Closed forms where they exist (no real data: `refit_variance_replace`, `refit_drift_replace`,
    `refit_variance_accumulate`), else the exact recurrence of expectations `refit_moments`."""
    k = int(round(share * samples))  # k = round(pM), computed here, independently of draw_mix
    sigma0_sq = sigma0**2
    steps = range(generations + 1)
    variance, drift = refit_moments(generations, samples=samples, human=k, regime=regime, sigma0_sq=sigma0_sq)
    limits = (float("nan"), float("nan"))
    if regime == "replace":
        limits = refit_replace_limit(samples=samples, human=k, sigma0_sq=sigma0_sq)
        if k == 0:
            variance = np.array([refit_variance_replace(n, samples=samples, sigma0_sq=sigma0_sq) for n in steps])
            drift = np.array([refit_drift_replace(n, samples=samples, sigma0_sq=sigma0_sq) for n in steps])
    elif k == 0:
        variance = np.array([refit_variance_accumulate(n, samples=samples, sigma0_sq=sigma0_sq) for n in steps])
        limits = (refit_variance_accumulate_limit(samples=samples, sigma0_sq=sigma0_sq), float("nan"))
    return {"variance": (variance, limits[0]), "drift": (drift, limits[1])}


# ---------------------------------------------------------------------------------------------
# 2. Linear regression
# ---------------------------------------------------------------------------------------------


def linear_regression(
    *,
    regime: Regime,
    dim: int = REGRESSION_DIM,
    samples: int = REGRESSION_ROWS,
    iterations: int = max(DEFAULT_STEPS),
    replicates: int = DEFAULT_REPLICATES,
    noise_sd: float = 1.0,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per replicate and iteration 0..`iterations`: the test error ‖ŵ_n − w*‖² (label unit²; 0 at n = 0).

    The model before iteration 1 is the truth w* (a fixed unit vector), so iteration 1's rows carry
    real labels y = xᵀw* + ε; iteration n draws T = `samples` fresh rows x ~ N(0, I_d) labelled by the
    previous fit, y = xᵀŵ_{n−1} + ε, ε ~ N(0, noise_sd²). A row (x, y) is an item: `draw_mix` takes all
    T machine rows (human share 0), the history adds them, and OLS is fitted to `history.data(regime)`.
    """
    w_star = np.ones(dim) / np.sqrt(dim)
    weights = np.tile(w_star, (replicates, 1))
    histories: list[TrainingHistory[np.ndarray]] = [TrainingHistory() for _ in range(replicates)]
    errors = np.zeros((replicates, iterations + 1))
    for n in range(1, iterations + 1):
        x = rng.standard_normal((replicates, samples, dim))
        y = np.einsum("rtd,rd->rt", x, weights) + noise_sd * rng.standard_normal((replicates, samples))
        rows = np.concatenate([x, y[..., None]], axis=2)
        seen = []
        for r in range(replicates):
            mix, _ = draw_mix([], list(rows[r]), size=samples, human_share=0.0, rng=rng)
            histories[r] = histories[r].add(mix)
            seen.append(histories[r].data(regime))
        data = np.asarray(seen)  # (R, items, d + 1)
        design, labels = data[..., :dim], data[..., dim]
        gram = np.einsum("rti,rtj->rij", design, design)
        weights = np.linalg.solve(gram, np.einsum("rti,rt->ri", design, labels)[..., None])[..., 0]
        errors[:, n] = np.sum((weights - w_star) ** 2, axis=1)
    return errors


def regression_theory(
    *, regime: Regime, dim: int, samples: int, iterations: int, noise_sd: float = 1.0
) -> tuple[np.ndarray, float]:
    """(exact E‖ŵ_n − w*‖² for iterations 0..n, its limit as n → ∞) under `regime`."""
    noise_var = noise_sd**2
    error = regression_error_replace if regime == "replace" else regression_error_accumulate
    theory = np.array([error(n, dim=dim, samples=samples, noise_var=noise_var) for n in range(iterations + 1)])
    limit = float("inf")
    if regime == "accumulate":
        limit = regression_error_accumulate_limit(dim=dim, samples=samples, noise_var=noise_var)
    return theory, limit


# ---------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------


def compare(
    values: np.ndarray,
    theory: np.ndarray | float,
    *,
    steps: Sequence[int],
    labels: dict[str, object],
    kind: str = "exact",
    claim: str = "=",
    limit: float = float("nan"),
) -> list[dict[str, object]]:
    """Rows of the oracle table: at each step, the replicate mean of `values[:, step]` against `theory`
    (an array over steps, or one number for a bound). claim '=': |z| ≤ tol; '≤': z ≤ tol; '≥': z ≥ −tol."""
    rows = []
    for step in steps:
        expected = float(theory if np.ndim(theory) == 0 else theory[step])
        sim, mcse = mean_mcse(values[:, step])
        z = (sim - expected) / mcse
        within = {"=": abs(z) <= Z_TOLERANCE, "≤": z <= Z_TOLERANCE, "≥": z >= -Z_TOLERANCE}[claim]
        rows.append({**labels, "step": step, "replicates": len(values), "theory": expected, "sim": sim,
                     "mcse": mcse, "z": z, "within": bool(within), "kind": kind, "claim": claim,
                     "limit": float(limit)})  # fmt: skip
    return rows


def _rng(rng_seed: int, *cell: int) -> np.random.Generator:
    """An independent stream per learner and cell, so cells do not share draws."""
    return np.random.default_rng(np.random.SeedSequence([rng_seed, *cell]))


def check_retraining(
    *,
    replicates: int = DEFAULT_REPLICATES,
    steps: Sequence[int] = DEFAULT_STEPS,
    samples: int = GAUSSIAN_SAMPLES,
    shares: dict[str, Sequence[float]] | None = None,
    dim: int = REGRESSION_DIM,
    rows: int = REGRESSION_ROWS,
    rng_seed: int = 0,
) -> pl.DataFrame:
    """Every oracle: one row per (learner, regime, share, quantity, step), plus the two bound rows at
    the last step (accumulate's Gaussian variance ≥ σ0²·sinc(π/√M); Gerstgrasser et al.'s π²/6 bound).

    `samples` = M items per Gaussian mix, `shares` the human shares per regime, `dim` = d and `rows`
    = T for the regression. `limit` is each theory's value as the step → ∞ (NaN: not derived).
    """
    shares = GAUSSIAN_SHARES if shares is None else shares
    last = max(steps)
    table = []
    cells = [(regime, share) for regime in REGIMES for share in shares.get(regime, ())]
    for cell, (regime, share) in enumerate(cells):
        sim = gaussian_refit(
            regime=regime,
            share=share,
            samples=samples,
            generations=last,
            replicates=replicates,
            rng=_rng(rng_seed, 0, cell),
        )
        theory = gaussian_theory(regime=regime, share=share, samples=samples, generations=last)
        labels = {"learner": "gaussian", "regime": regime, "share": float(share)}
        for quantity, (expected, limit) in theory.items():
            table += compare(sim[quantity], expected, steps=steps, labels={**labels, "quantity": quantity}, limit=limit)
        if regime == "accumulate" and share == 0:
            floor = refit_variance_accumulate_limit(samples=samples)
            table += compare(sim["variance"], floor, steps=[last], kind="bound", claim="≥", limit=floor,
                             labels={**labels, "quantity": "variance"})  # fmt: skip
    for cell, regime in enumerate(REGIMES):
        errors = linear_regression(regime=regime, dim=dim, samples=rows, iterations=last, replicates=replicates,
                                   rng=_rng(rng_seed, 1, cell))  # fmt: skip
        expected, limit = regression_theory(regime=regime, dim=dim, samples=rows, iterations=last)
        labels = {"learner": "regression", "regime": regime, "share": 0.0, "quantity": "test_error"}
        table += compare(errors, expected, steps=steps, labels=labels, limit=limit)
        if regime == "accumulate":
            bound = regression_accumulate_bound(dim=dim, samples=rows)
            table += compare(errors, bound, steps=[last], labels=labels, kind="bound", claim="≤", limit=limit)
    return pl.DataFrame(table).select(COLUMNS)
