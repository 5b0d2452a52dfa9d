"""Exact theory of model collapse for two simple learners, refitted on their own samples.

`culturesim validate retraining` checks the data regimes of retraining (`parts/training_data.py`)
against these numbers. Pure functions of their parameters; no simulation here. Each was derived
on paper, as each docstring shows; they are expectations over every sample ever drawn.

1. Gaussian refit (Shumailov et al. 2024, "AI models collapse when trained on recursively generated
   data", Nature 631:755). Generation 0 is the real distribution N(μ0, σ0²). At each generation a
   mix of M items is drawn: k = round(p·M) fresh real items and M − k items sampled from the current
   fit N(μn, σn²). The next fit is the maximum-likelihood one (sample mean; variance with divisor =
   number of items) of the newest mix (*replace*) or of every mix so far (*accumulate*).
   V_n = E[σn²] and D_n = E[(μn − μ0)²] are in the data's squared unit (σ0² = 1 by default).
2. Linear regression (Gerstgrasser et al. 2024, "Is model collapse inevitable? Breaking the curse of
   recursion by accumulating real and synthetic data", COLM, arXiv:2404.01413). d features
   x ~ N(0, I_d), T rows per iteration, label noise ε ~ N(0, σ²). Iteration 1 fits OLS to
   y = xᵀw* + ε; iteration n labels fresh x with the previous fit, y = xᵀŵ_{n−1} + ε. The test error
   E‖ŵ_n − w*‖² (the excess squared-error risk for isotropic x) is in the label's squared unit.
"""

from __future__ import annotations

import numpy as np
from scipy import special

# ---------------------------------------------------------------------------------------------
# 1. Gaussian refit
# ---------------------------------------------------------------------------------------------


def refit_moments(
    generations: int, *, samples: int, human: int = 0, regime: str = "replace", sigma0_sq: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(V, D) for generations 0..`generations`: V_n = E[σn²], D_n = E[(μn − μ0)²] (σ0²'s unit).

    `samples` = M items per mix, `human` = k of them real. Exact: both are affine maps of (V_n, D_n).
    Given the fit n, the new mix holds independent items, k with mean μ0 and variance σ0², M − k with
    mean μn and variance σn². Write S = kσ0² + (M − k)σn² (the summed variances) and Δ = μn − μ0.
    For independent items with means m_i and variances v_i the within sum of squares has
    E Σ(x_i − x̄)² = (1 − 1/M) Σv_i + Σ(m_i − m̄)², and the between-group term is
    Σ(m_i − m̄)² = k(M − k)Δ²/M. The mix mean has E[x̄] − μ0 = (M − k)Δ/M, Var x̄ = S/M².

    replace (the fit sees the newest mix only), by the law of total expectation:
        V_{n+1} = (1/M)[(1 − 1/M)(kσ0² + (M − k)V_n) + (k(M − k)/M)·D_n]
        D_{n+1} = ((M − k)/M)²·D_n + (kσ0² + (M − k)V_n)/M²
    accumulate (the fit sees all N_n = nM earlier items and the new mix): the pooled sum of squares
    W = N·σ² grows by the mix's own plus N_n·M/(N_n + M)·(x̄ − μn)², where
    E[(x̄ − μn)²] = (k/M)²D_n + E[S]/M², and the pooled mean moves to (N_n·μn + M·x̄)/(N_n + M):
        E W_{n+1} = E W_n + (1 − 1/M)E[S] + (k(M − k)/M)D_n + (N_n·M/(N_n + M))((k/M)²D_n + E[S]/M²)
        D_{n+1} = ((N_n + M − k)/(N_n + M))²·D_n + E[S]/(N_n + M)²,   V_{n+1} = E W_{n+1}/N_{n+1}
    with E[S] = kσ0² + (M − k)V_n, V_0 = σ0², D_0 = 0. At generation 1 both regimes coincide.
    """
    if samples < 2 or not 0 <= human <= samples or generations < 0:
        raise ValueError(
            f"need samples >= 2, 0 <= human <= samples, generations >= 0; got {samples}, {human}, {generations}"
        )
    if regime not in ("replace", "accumulate"):
        raise ValueError(f"unknown data regime {regime!r}; expected 'replace' or 'accumulate'")
    m, k = float(samples), float(human)
    variance, drift = np.empty(generations + 1), np.empty(generations + 1)
    variance[0], drift[0] = sigma0_sq, 0.0
    pooled_ss = 0.0  # E W_n, the expected pooled sum of squares (accumulate)
    for n in range(generations):
        earlier = n * m if regime == "accumulate" else 0.0  # N_n, items the fit also sees
        spread = k * sigma0_sq + (m - k) * variance[n]  # E[S]
        mix_ss = (1 - 1 / m) * spread + k * (m - k) / m * drift[n]
        jump = (k / m) ** 2 * drift[n] + spread / m**2  # E[(x̄ − μn)²]
        pooled_ss = (pooled_ss if regime == "accumulate" else 0.0) + mix_ss + earlier * m / (earlier + m) * jump
        variance[n + 1] = pooled_ss / (earlier + m)
        drift[n + 1] = ((earlier + m - k) / (earlier + m)) ** 2 * drift[n] + spread / (earlier + m) ** 2
    return variance, drift


def refit_variance_replace(generation: int, *, samples: int, sigma0_sq: float = 1.0) -> float:
    """E[σn²] = σ0²·((M − 1)/M)^n under replace with no real data (σ0²'s unit).

    Each fit's MLE variance of M items from N(μ, σ²) has mean σ²(M − 1)/M; iterate. It goes to 0:
    the collapse of Shumailov et al. (their Gaussian example, Nature 2024, Fig. 2 and §3)."""
    return sigma0_sq * ((samples - 1) / samples) ** generation


def refit_drift_replace(generation: int, *, samples: int, sigma0_sq: float = 1.0) -> float:
    """E[(μn − μ0)²] = σ0²·(1 − ((M − 1)/M)^n) under replace with no real data (σ0²'s unit).

    D_{n+1} = D_n + V_n/M (the mean of M items from the fit has variance σn²/M), summed as a
    geometric series: the mean wanders a total variance σ0² while the variance dies."""
    return sigma0_sq * (1.0 - ((samples - 1) / samples) ** generation)


def refit_replace_limit(*, samples: int, human: int, sigma0_sq: float = 1.0) -> tuple[float, float]:
    """(V*, D*): the fixed point of the replace recurrence with k real items per mix of M.

    Solving V = V_{n+1}, D = D_{n+1} of `refit_moments`: with S* = kσ0² + (M − k)V*,
        V* = σ0²·k(2M − k − 1)/(k(2M − k − 1) + M),   D* = S*/(k(2M − k)).
    Any k > 0 keeps the variance away from 0 (k = 1, M = 10: V* = 0.64σ0²; k = M: (M − 1)/M·σ0²,
    an ordinary MLE). k = 0 is the collapse: V* = 0 and D_n → σ0²."""
    m, k = samples, human
    if k == 0:
        return 0.0, sigma0_sq
    variance = sigma0_sq * k * (2 * m - k - 1) / (k * (2 * m - k - 1) + m)
    return variance, (k * sigma0_sq + (m - k) * variance) / (k * (2 * m - k))


def refit_variance_accumulate(generation: int, *, samples: int, sigma0_sq: float = 1.0) -> float:
    """E[σn²] = σ0²·Π_{j=1}^{n} (1 − 1/(j²M)) under accumulate with no real data beyond generation 0's
    model (σ0²'s unit).

    `refit_moments` at k = 0: E W_{n+1} = E W_n + (M − 1/(n + 1))·V_n with E W_n = nM·V_n, hence
    V_{n+1} = V_n·(1 − 1/((n + 1)²M)). Shumailov et al. show collapse when data are replaced; this
    is the accumulating counterpart, in the spirit of Gerstgrasser et al. 2024."""
    j = np.arange(1, generation + 1, dtype=float)
    return float(sigma0_sq * np.prod(1.0 - 1.0 / (j**2 * samples)))


def refit_variance_accumulate_limit(*, samples: int, sigma0_sq: float = 1.0) -> float:
    """lim E[σn²] = σ0²·sin(π/√M)/(π/√M) under accumulate with no real data (σ0²'s unit).

    Euler's product sin(πz)/(πz) = Π_j (1 − z²/j²) at z = 1/√M. Every factor is below 1, so it is
    also a lower bound of E[σn²] for every n: the variance never collapses (M = 10: 0.844σ0²)."""
    z = np.pi / np.sqrt(samples)
    return float(sigma0_sq * np.sin(z) / z)


# ---------------------------------------------------------------------------------------------
# 2. Linear regression
# ---------------------------------------------------------------------------------------------


def _check_design(dim: int, samples: int) -> None:
    if dim < 1 or samples <= dim + 1:
        raise ValueError(f"OLS on T rows of d features needs T > d + 1 for a finite error, got d={dim}, T={samples}")


def regression_error_replace(iteration: int, *, dim: int, samples: int, noise_var: float = 1.0) -> float:
    """E‖ŵ_n − w*‖² = n·σ²d/(T − d − 1) when each fit sees only the newest T rows (label unit²).

    ŵ_n = (XᵀX)⁻¹Xᵀ(Xŵ_{n−1} + ε) = ŵ_{n−1} + (XᵀX)⁻¹Xᵀε: each iteration adds independent noise of
    mean square σ²·E tr(XᵀX)⁻¹ = σ²d/(T − d − 1) (inverse Wishart mean). Gerstgrasser et al. 2024,
    the replace case (after Dohmatob et al. 2024): the error grows linearly in n."""
    _check_design(dim, samples)
    return iteration * noise_var * dim / (samples - dim - 1)


def regression_error_accumulate(iteration: int, *, dim: int, samples: int, noise_var: float = 1.0) -> float:
    """E‖ŵ_n − w*‖² = σ²d·Σ_{i=1}^{n} 1/(i(iT − d − 1)) when each fit sees every iteration's rows (label unit²).

    With G_n = Σ_{i≤n} X_iᵀX_i, the pooled normal equations give G_n·e_n = G_{n−1}e_{n−1} + X_nᵀX_n·e_{n−1}
    + X_nᵀε_n, i.e. e_n = e_{n−1} + G_n⁻¹X_nᵀε_n (e = ŵ − w*, ŵ_0 = w*). The noises are independent
    and centred, so E‖e_n‖² = σ² Σ_i E tr(G_i⁻² X_iᵀX_i); the i blocks of G_i are exchangeable, so
    that trace is E tr(G_i⁻¹)/i = d/(i(iT − d − 1)) (G_i is Wishart(I_d, iT)). Derived here; it is
    the exact expression behind Gerstgrasser et al.'s bound (`regression_accumulate_bound`)."""
    _check_design(dim, samples)
    i = np.arange(1, iteration + 1, dtype=float)
    return float(noise_var * dim * np.sum(1.0 / (i * (i * samples - dim - 1))))


def regression_error_accumulate_limit(*, dim: int, samples: int, noise_var: float = 1.0) -> float:
    """lim E‖ŵ_n − w*‖² under accumulate = σ²d/(d + 1)·(ψ(1) − ψ(1 − (d + 1)/T)) (label unit²).

    Partial fractions 1/(i(iT − c)) = (1/c)(1/(i − c/T) − 1/i) with c = d + 1, and
    Σ_{i≥1} (1/(i − a) − 1/i) = ψ(1) − ψ(1 − a) for the digamma function ψ."""
    _check_design(dim, samples)
    c = dim + 1
    return float(noise_var * dim / c * (special.digamma(1.0) - special.digamma(1.0 - c / samples)))


def regression_accumulate_bound(*, dim: int, samples: int, noise_var: float = 1.0) -> float:
    """Gerstgrasser et al. 2024's bound: E‖ŵ_n − w*‖² ≤ (π²/6)·σ²d/(T − d − 1) for every n (label unit²).

    From the exact sum, since iT − d − 1 ≥ i(T − d − 1) for i ≥ 1 and Σ 1/i² = π²/6."""
    _check_design(dim, samples)
    return np.pi**2 / 6 * noise_var * dim / (samples - dim - 1)
