"""Closed-form results of cultural-evolution theory that `culturesim.checks.validate` checks the simulator against.

Neutral transmission with innovation (Wright–Fisher infinite alleles, the Ewens sampling
formula) and conformist transmission (Boyd & Richerson 1985). Pure functions of their
parameters; no simulation here.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def ewens_homozygosity(theta: float) -> float:
    """Equilibrium probability that two distinct genes are identical, F = 1/(1+θ) (diffusion limit)."""
    if theta < 0:
        raise ValueError(f"theta must be >= 0, got {theta}")
    return 1.0 / (1.0 + theta)


def ewens_expected_k(n: int, theta: float) -> float:
    """Ewens sampling formula: expected number of distinct variants in a sample of n,
    E[K_n] = Σ_{i=0}^{n−1} θ/(θ+i). θ → 0 gives 1, θ → ∞ gives n."""
    if n < 1 or theta < 0:
        raise ValueError(f"need n >= 1 and theta >= 0, got n={n}, theta={theta}")
    if theta == 0:
        return 1.0
    i = np.arange(n)
    return float(np.sum(theta / (theta + i)))


def wf_coalescence_probability(n_pop: int, *, exclude_self: bool = True) -> float:
    """Probability that two distinct learners copy the same model in one Wright–Fisher generation.

    Each learner copies one of the N−1 *others* on a complete network (no self-copying), so two
    learners i ≠ j share a model with probability Σ_{x≠i,j} 1/(N−1)² = (N−2)/(N−1)², i.e. an
    effective size N_e = (N−1)²/(N−2) = N + 1/(N−2): the correction is O(1/N²) relative.
    With self-copying allowed it is the textbook 1/N.
    """
    if n_pop < 2:
        raise ValueError(f"need a population of at least 2, got {n_pop}")
    return (n_pop - 2) / (n_pop - 1) ** 2 if exclude_self else 1.0 / n_pop


def wf_homozygosity(n_pop: int, mu: float, *, exclude_self: bool = True) -> float:
    """Exact stationary pair homozygosity of the discrete haploid Wright–Fisher infinite-alleles model.

    F' = (1−μ)²·[c + (1−c)·F] (both learners must not innovate; they either copy the same model,
    probability c, or two distinct models identical with probability F), so
    F* = (1−μ)²c / (1 − (1−μ)²(1−c)). With c = 1/N and dropping O(μ², μ/N) terms, F* = 1/(1+2Nμ).
    """
    c = wf_coalescence_probability(n_pop, exclude_self=exclude_self)
    keep = (1.0 - mu) ** 2
    return keep * c / (1.0 - keep * (1.0 - c))


def wf_expected_k(n: int, n_pop: int, mu: float) -> float:
    """Exact E[K_n] of the discrete Wright–Fisher infinite-alleles model at stationarity.

    Backward in time, each of m sampled lineages was an innovator with probability μ (its lineage
    ends: one distinct variant), otherwise it copied a model drawn uniformly from N; lineages that
    drew the same model merge (classical occupancy: r balls in N boxes). Every variant in the sample
    is exactly one such lineage end, so f(m) = E[K | m lineages] solves
    f(m) = mμ + Σ_d P(m → d) f(d), f(0) = 0, in increasing m. Self-copying is allowed here; the
    model's self-exclusion changes pair coalescence by a relative 1/(N−1)² (negligible).
    """
    if not 1 <= n <= n_pop:
        raise ValueError(f"need 1 <= n <= N, got n={n}, N={n_pop}")
    occupancy = _occupancy(n, n_pop)
    f = np.zeros(n + 1)
    for m in range(1, n + 1):
        b = np.arange(m + 1)
        transition = sps.binom.pmf(b, m, mu) @ occupancy[m - b]  # (n+1,) over distinct models d
        f[m] = (m * mu + transition[:m] @ f[:m]) / (1.0 - transition[m])
    return float(f[n])


def _occupancy(r_max: int, boxes: int) -> np.ndarray:
    """(r_max+1, r_max+1) P[r, d]: probability that r balls thrown uniformly into `boxes` fill d boxes."""
    p = np.zeros((r_max + 1, r_max + 1))
    p[0, 0] = 1.0
    d = np.arange(1, r_max + 1)
    for r in range(1, r_max + 1):
        p[r, 1:] = p[r - 1, 1:] * d / boxes + p[r - 1, :-1] * (boxes - d + 1) / boxes
    return p


def conformist_adoption(m: np.ndarray | int, k: int, a: float) -> np.ndarray:
    """Probability of adopting a variant held by m of k demonstrators when the rest hold one other:
    m^a / (m^a + (k−m)^a), with 0 for m = 0 and 1 for m = k (also when a = 0)."""
    m = np.asarray(m, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = m**a / (m**a + (k - m) ** a)
    return np.where(m <= 0, 0.0, np.where(m >= k, 1.0, share))


def conformity_expected_next(p: np.ndarray | float, a: float, k: int = 3) -> np.ndarray:
    """Exact expected frequency of a variant after one generation of conformist learning.

    Two variants at frequency p and 1−p, k demonstrators drawn with replacement, so the sample
    holds m ~ Binomial(k, p) of the focal variant: p' = Σ_m C(k,m) p^m (1−p)^{k−m} · g(m) with
    g = `conformist_adoption`. For k = 3, g(1) = 1/(1+2^a) = 1/3 − D/3, g(2) = 1 − g(1), and
    p' = p + D·p(1−p)(2p−1) exactly (Boyd & Richerson 1985), D = `boyd_richerson_d(a)`.
    """
    p = np.asarray(p, dtype=float)
    m = np.arange(k + 1)
    weights = sps.binom.pmf(m, k, p[..., None])
    return weights @ conformist_adoption(m, k, a)


def boyd_richerson_d(a: float, k: int = 3) -> float:
    """D-equivalent of exponent a: D = 2·d(Δp)/dp at p = 1/2 (the slope of the BR cubic there).

    For k = 3 the two rules coincide for every p and D = (2^a − 2)/(2^a + 1): a = 1 gives D = 0,
    a = 0 gives D = −1/2, a = 2 gives D = 1/3 and a → ∞ gives D → 1. For k ≠ 3 it is the local slope.
    """
    g = conformist_adoption(np.arange(k + 1), k, a)
    m = np.arange(k)
    slope = k * np.sum(sps.binom.pmf(m, k - 1, 0.5) * np.diff(g))  # derivative of E[p'] at p = 1/2
    return float(2.0 * (slope - 1.0))


def exponent_for_d(d: float) -> float:
    """Inverse of `boyd_richerson_d` for k = 3: a = log2((2 + D)/(1 − D)), D in (−1/2, 1)."""
    if not -0.5 < d < 1.0:
        raise ValueError(f"D must lie in (-1/2, 1) for k = 3, got {d}")
    return float(np.log2((2.0 + d) / (1.0 - d)))


def mean_mcse(values: np.ndarray) -> tuple[float, float]:
    """Mean and Monte Carlo SE (sd of independent replicates / √R): what a simulated quantity is
    compared with its theory by."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))
