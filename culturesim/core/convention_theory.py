"""Mean-field theory of the binary agreement naming game with committed agents (Xie et al. 2011).

Xie, Sreenivasan, Korniss, Zhang, Lim & Szymanski 2011, Phys. Rev. E 84:011130: N agents on a
complete graph, names A and B; a fraction p is committed to A (never changes); the others hold
{A}, {B} or {A, B}, with densities n_A, n_B and n_AB = 1 − p − n_A − n_B. Interactions are the
naming game's (`culturesim.parts.coordination_rules`). Counting the transitions of a random
speaker–listener pair gives, per unit time t = interactions / N,

    dn_A/dt = −n_A n_B + n_AB² + n_A n_AB + (3/2) p n_AB
    dn_B/dt = −n_A n_B + n_AB² + n_B n_AB − p n_B

Below a critical p_c the B-dominated state is a stable fixed point next to a saddle; at p_c the
two merge (a saddle-node bifurcation) and every start flows to A-consensus. `critical_fraction`
derives p_c from the equations (Xie et al. report 0.0979); nothing here hard-codes it. Above p_c
the consensus time from all-B grows like ln N, with slope 1/λ where λ is the slowest relaxation
rate at A-consensus (`relaxation_rate`). Times are in mean-field units (N interactions).

Rounds. A round of `culturesim.parts.coordination_rules` plays N/2 disjoint pairs at once, each on the
state at the start of the round, so for large N the expected change per round is exactly
½·f(n): a round is one step of the map n ↦ n + ½ f(n) (`round_map_rounds`), an Euler step of
half a mean-field unit, not half a unit of the flow. The map has the flow's fixed points, hence
the same p_c, but relaxes faster near consensus (a factor 1 − λ/2 per round instead of e^{−λ/2}):
`round_relaxation` gives the rounds per e-fold that set the ln N slope of rounds to consensus.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy import integrate, optimize

ROUND_IN_MEAN_FIELD_UNITS = 0.5  # a round plays N/2 pairs; the mean-field unit is N interactions


def binary_agreement_rhs(n_a: float, n_b: float, p: float) -> np.ndarray:
    """(dn_A/dt, dn_B/dt) per mean-field unit, with n_AB = 1 − p − n_A − n_B."""
    n_ab = 1.0 - p - n_a - n_b
    return np.array(
        [
            -n_a * n_b + n_ab**2 + n_a * n_ab + 1.5 * p * n_ab,
            -n_a * n_b + n_ab**2 + n_b * n_ab - p * n_b,
        ]
    )


def binary_agreement_jacobian(n_a: float, n_b: float, p: float) -> np.ndarray:
    """2×2 Jacobian of `binary_agreement_rhs` in (n_A, n_B) (n_AB follows: ∂n_AB/∂n_A = ∂n_AB/∂n_B = −1)."""
    n_ab = 1.0 - p - n_a - n_b
    return np.array(
        [
            [-n_a - n_b - n_ab - 1.5 * p, -2.0 * n_a - 2.0 * n_ab - 1.5 * p],
            [-2.0 * n_b - 2.0 * n_ab, -n_a - n_b - n_ab - p],
        ]
    )


def _on_b_nullcline(s: float, p: float) -> tuple[float, float]:
    """(n_A, n_B) on the curve dn_B/dt = 0, parametrised by s = √n_B.

    dn_B/dt = (n_B + n_AB)² − n_B once n_A + p = 1 − n_B − n_AB is substituted, so on the nullcline
    n_B + n_AB = √n_B: n_B = s², n_AB = s − s², n_A = 1 − p − s (physical for 0 <= s <= 1 − p).
    """
    return 1.0 - p - s, s * s


def fixed_points(p: float, *, grid: int = 2001) -> list[tuple[float, float]]:
    """Fixed points (n_A, n_B) in the physical simplex, by increasing n_B.

    Every fixed point lies on the B-nullcline (`_on_b_nullcline`), so they are the zeros of
    dn_A/dt along it: bracketed by sign changes on `grid` points of s, refined by Brent's method.
    A double root (exactly at p_c) shows no sign change and is missed; `critical_fraction`
    solves for it directly.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"the committed fraction must lie in [0, 1), got {p}")

    def along(s: float) -> float:
        return float(binary_agreement_rhs(*_on_b_nullcline(s, p), p)[0])

    s = np.linspace(0.0, 1.0 - p, grid)
    g = np.array([along(x) for x in s])
    points = [_on_b_nullcline(float(x), p) for x in s[g == 0.0]]
    for i in np.flatnonzero(g[:-1] * g[1:] < 0):
        points.append(_on_b_nullcline(optimize.brentq(along, s[i], s[i + 1], xtol=1e-14), p))
    return sorted(points, key=lambda point: point[1])


def is_stable(n_a: float, n_b: float, p: float) -> bool:
    """Whether a fixed point attracts: both Jacobian eigenvalues have negative real parts."""
    return bool(np.all(np.linalg.eigvals(binary_agreement_jacobian(n_a, n_b, p)).real < 0))


@cache
def critical_fraction(*, bisections: int = 40) -> float:
    """The committed fraction p_c at which the stable B-dominated fixed point and the saddle merge.

    Two steps, both from the equations alone: (1) bisection on p in [0, 1/2] for the largest p
    whose `fixed_points` include a stable B-dominated one (n_B > n_A); (2) Newton-type root finding
    (scipy `root`) on the saddle-node conditions in (n_A, n_B, p): dn_A/dt = dn_B/dt = 0 and
    det J = 0, started at the midpoint of that last saddle and stable point. Xie et al. 2011
    report p_c ≈ 0.0979.
    """

    def has_b_state(p: float) -> bool:
        return any(b > a and is_stable(a, b, p) for a, b in fixed_points(p))

    low, high = 0.0, 0.5
    if not has_b_state(low) or has_b_state(high):
        raise RuntimeError("the bisection bracket [0, 1/2] does not contain the saddle-node")
    for _ in range(bisections):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if has_b_state(middle) else (low, middle)
    mixed = [point for point in fixed_points(low) if point[1] > 0.0]  # the saddle and the B state
    start = [*np.mean(mixed[-2:], axis=0), low]

    def conditions(x: np.ndarray) -> np.ndarray:
        n_a, n_b, p = x
        return np.array([*binary_agreement_rhs(n_a, n_b, p), np.linalg.det(binary_agreement_jacobian(n_a, n_b, p))])

    solution = optimize.root(conditions, start, tol=1e-14)
    if not solution.success:
        raise RuntimeError(f"the saddle-node conditions did not converge: {solution.message}")
    return float(solution.x[2])


def relaxation_rate(p: float) -> float:
    """Slowest relaxation rate λ (per mean-field unit) at A-consensus (n_A = 1 − p, n_B = 0).

    The last non-A agents die out like e^{−λt}, so reaching consensus among N agents takes
    ≈ (ln N)/λ mean-field units plus a constant: the slope of consensus time on ln N.
    """
    eigenvalues = np.linalg.eigvals(binary_agreement_jacobian(1.0 - p, 0.0, p))
    return float(-np.max(eigenvalues.real))


def consensus_time(p: float, *, eps: float, t_max: float = 1e4) -> float:
    """Mean-field time (units of N interactions) from all-B (n_B = 1 − p) until n_A >= 1 − p − eps.

    `eps` stands for the finite population's last agents (e.g. 1/N). Returns inf if A-consensus
    is not reached by `t_max` (below p_c, where the B-dominated state is stable).
    """

    def reached(_t: float, y: np.ndarray) -> float:
        return y[0] - (1.0 - p - eps)

    reached.terminal = True
    reached.direction = 1
    solution = integrate.solve_ivp(
        lambda _t, y: binary_agreement_rhs(y[0], y[1], p), (0.0, t_max), [0.0, 1.0 - p],
        events=reached, rtol=1e-9, atol=1e-12, method="LSODA",
    )  # fmt: skip
    return float(solution.t_events[0][0]) if solution.t_events[0].size else float("inf")


def round_map_rounds(p: float, *, eps: float, max_rounds: int = 100_000) -> float:
    """Rounds of the round map n ↦ n + ½ f(n) from all-B (n_B = 1 − p) until n_A >= 1 − p − eps,
    interpolated linearly within the last round; inf if not reached in `max_rounds` (below p_c)."""
    target = 1.0 - p - eps
    state = np.array([0.0, 1.0 - p])
    for rounds in range(1, max_rounds + 1):
        step = state + ROUND_IN_MEAN_FIELD_UNITS * binary_agreement_rhs(state[0], state[1], p)
        if step[0] >= target:
            return rounds - 1 + (target - state[0]) / (step[0] - state[0])
        state = step
    return float("inf")


def round_relaxation(p: float) -> float:
    """Rounds per e-fold of the round map's slowest decay at A-consensus: −1/ln ρ, with ρ the
    largest |eigenvalue| of I + ½J there (ρ = 1 − λ/2 for real eigenvalues λ). Rounds to consensus
    among N agents grow by this much per e-fold of N."""
    step = np.eye(2) + ROUND_IN_MEAN_FIELD_UNITS * binary_agreement_jacobian(1.0 - p, 0.0, p)
    return float(-1.0 / np.log(np.max(np.abs(np.linalg.eigvals(step)))))
