"""`culturesim validate conventions`: the coordination game against naming-game theory.

Every check plays the real `coordination_rules.play_round` over `random_matching` pairs (humans
only, no LLM), as a coordination study does, and returns polars DataFrames:

1. `tipping` (Xie et al. 2011, binary agreement with committed agents, complete graph): the
   committed fraction at which A wins within a fixed horizon in half of the replicates approaches
   the mean-field p_c (`convention_theory.critical_fraction`) as N grows.
2. `consensus_scaling`: above p_c the time to A-consensus grows like ln N (slope against the
   mean-field prediction, a power law's exponent near 0); below p_c, A never wins in the horizon.
3. `naming_game_scaling` (Baronchelli et al. 2006, the minimal naming game, complete graph):
   the time of the peak number of words, the peak itself and the convergence time against N^1.5.
4. `best_response_networks` (Centola & Baronchelli 2015): memory-based best response reaches a
   global convention on a complete graph but keeps local conventions on a ring lattice.

Time unit: a round (each agent plays at most once; N/2 pairs on a complete graph). The mean-field
unit of `convention_theory` is N interactions = 2 rounds. The minimal naming game's times are
interactions (rounds × pairs), as in Baronchelli et al.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import optimize
from scipy import stats as sps

from culturesim.checks.validate import format as format_table
from culturesim.checks.validate import one_sided
from culturesim.core.convention_theory import critical_fraction, round_map_rounds, round_relaxation
from culturesim.parts.coordination_rules import GIVE_RULE, NO_NAME, Inventory, Memory, play_round, random_matching
from culturesim.parts.network import build_network
from culturesim.schema.config import NetworkSection

PAYOFFS = (100.0, -50.0)  # (match, mismatch), the project's defaults; only best response reads them
A, B = 0, 1  # the binary agreement's names: A is committed, B everyone's initial name
_NO_EDGES = np.zeros(0, dtype=np.int64)  # random_matching(complete=True) reads no network


# ---------------------------------------------------------------------------------------------
# Simulations
# ---------------------------------------------------------------------------------------------


def binary_agreement_times(
    n: int, committed: int, *, replicates: int, horizon: int, rng: np.random.Generator
) -> np.ndarray:
    """Rounds until every agent holds only A (inf if not within `horizon`), one per replicate.

    Xie et al.'s setting: `committed` agents always say A, the other n − committed start with {B}; complete graph.
    The replicates run side by side as one population of replicates·n agents whose pairs never
    cross replicates (each replicate its own `random_matching`), so one `play_round` plays them
    all; a replicate stops being paired once it reaches consensus (an absorbing state).
    """
    given = np.full((replicates, n), GIVE_RULE, dtype=np.int64)
    given[:, :committed] = A
    inventory = Inventory(replicates * n, 2)
    inventory.fill(np.flatnonzero(given == GIVE_RULE), B)
    inventory.fill(np.flatnonzero(given == A), A)
    given = given.ravel()
    times = np.full(replicates, np.inf)
    active = np.arange(replicates)
    for t in range(1, horizon + 1):
        pairs = np.concatenate(
            [random_matching(n, _NO_EDGES, _NO_EDGES, complete=True, rng=rng) + r * n for r in active]
        )
        play_round(rule="naming_game", memory=None, inventory=inventory, pairs=pairs, given=given,
                   n_names=2, payoffs=PAYOFFS, rng=rng)  # fmt: skip
        done = inventory.only(A).reshape(replicates, n)[active].all(axis=1)
        times[active[done]] = t
        active = active[~done]
        if active.size == 0:
            break
    return times


def naming_game_run(n: int, *, rng: np.random.Generator, max_rounds: int = 100_000) -> dict[str, float]:
    """One minimal naming game (empty inventories, unbounded invented names, complete graph).

    Returns, in interactions (rounds × n//2 pairs): `t_conv`, when every agent holds the same single
    name; `t_max`, when the total number of words held peaks (first maximum; measured after each
    round); and `words_max`, that peak.
    """
    inventory = Inventory(n, 0, unbounded=True)
    given = np.full(n, GIVE_RULE, dtype=np.int64)
    pairs_per_round = n // 2
    words_max, t_max = 0, 0
    for t in range(1, max_rounds + 1):
        pairs = random_matching(n, _NO_EDGES, _NO_EDGES, complete=True, rng=rng)
        play_round(rule="naming_game", memory=None, inventory=inventory, pairs=pairs, given=given, n_names=0,
                   payoffs=PAYOFFS, rng=rng)  # fmt: skip
        known = inventory.known
        words = int(known.sum())
        if words > words_max:
            words_max, t_max = words, t
        if words == n and known.any(axis=0).sum() == 1:
            return {"t_conv": t * pairs_per_round, "t_max": t_max * pairs_per_round, "words_max": words_max}
    raise RuntimeError(f"the minimal naming game with N={n} did not converge in {max_rounds} rounds")


def best_response_run(
    n: int,
    *,
    network: str,
    names: int,
    memory: int,
    horizon: int,
    rng: np.random.Generator,
    degree: int = 4,
    consensus: float = 0.9,
) -> dict[str, float]:
    """One population of best-response humans with empty memories, played for `horizon` rounds.

    `network` 'complete' or a `NetworkSection` kind (built by `build_network`, matched greedily).
    An agent's current name is its last play. Returns the dominant name's share (of agents with a
    name) and the number of names in use at the horizon, and the first round the dominant share
    reached `consensus` (inf if never).
    """
    complete, spec = network == "complete", NetworkSection(kind=network, degree=degree)
    built = None if complete else build_network(spec, n, seed=int(rng.integers(2**31)))
    indptr, indices = (_NO_EDGES, _NO_EDGES) if built is None else (built.indptr, built.indices)
    record = Memory(n, memory)
    given = np.full(n, GIVE_RULE, dtype=np.int64)
    current = np.full(n, NO_NAME, dtype=np.int64)
    reached = np.inf
    for t in range(1, horizon + 1):
        pairs = random_matching(n, indptr, indices, complete=complete, rng=rng)
        played = play_round(rule="best_response", memory=record, inventory=None, pairs=pairs, given=given,
                            n_names=names, payoffs=PAYOFFS, rng=rng)  # fmt: skip
        current = np.where(played.plays >= 0, played.plays, current)
        counts = np.bincount(current[current >= 0], minlength=names)
        share = counts.max() / max(counts.sum(), 1)
        if np.isinf(reached) and share >= consensus:
            reached = t
    return {"dominant_share": float(share), "names_in_use": float((counts > 0).sum()), "consensus_round": reached}


# ---------------------------------------------------------------------------------------------
# Estimators
# ---------------------------------------------------------------------------------------------


def _half_crossing(p: np.ndarray, wins: np.ndarray, replicates: int) -> tuple[float, float, float]:
    """(p50, p_lo, p_hi): where the win share, made monotone in p (isotonic regression weighted by
    replicates), crosses 1/2, interpolated linearly between the last grid point below 1/2 (p_lo)
    and the first above (p_hi). NaNs if the grid does not bracket the crossing."""
    fit = optimize.isotonic_regression(wins / replicates, weights=np.full(p.size, float(replicates))).x
    below, above = np.flatnonzero(fit < 0.5), np.flatnonzero(fit > 0.5)
    if below.size == 0 or above.size == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = below.max(), above.min()
    p50 = p[lo] + (0.5 - fit[lo]) * (p[hi] - p[lo]) / (fit[hi] - fit[lo])
    return float(p50), float(p[lo]), float(p[hi])


def _weighted_line(x: np.ndarray, y: np.ndarray, se: np.ndarray) -> tuple[float, float, float, float]:
    """Weighted least squares y = a + b·x with known SEs of y: (b, SE of b, a, χ² of the residuals)."""
    w = 1.0 / np.asarray(se, dtype=float) ** 2
    x_bar, y_bar = np.sum(w * x) / w.sum(), np.sum(w * y) / w.sum()
    sxx = np.sum(w * (x - x_bar) ** 2)
    b = np.sum(w * (x - x_bar) * (y - y_bar)) / sxx
    a = y_bar - b * x_bar
    return float(b), float(np.sqrt(1.0 / sxx)), float(a), float(np.sum(w * (y - a - b * x) ** 2))


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


# ---------------------------------------------------------------------------------------------
# 1. Tipping point of the binary agreement model
# ---------------------------------------------------------------------------------------------


def tipping_curve(
    sizes: Sequence[int] = (200, 1000, 5000),
    *,
    replicates: int = 20,
    horizon: int = 600,
    width: float = 0.15,
    steps: Sequence[float] = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0),
    rng_seed: int = 0,
) -> pl.DataFrame:
    """Share of replicates in which the committed name A wins within `horizon` rounds, per (N, p).

    The committed fractions are p_c + step·width/√N (rounded to whole agents), p_c the mean-field
    value: a grid that narrows with N as the transition sharpens. It is centred on theory, so a
    simulated transition elsewhere leaves the 1/2 crossing outside the grid and the check fails.
    """
    p_c = critical_fraction()
    rows = []
    for n in sizes:
        counts = sorted({int(round((p_c + step * width / np.sqrt(n)) * n)) for step in steps})
        for committed in counts:
            rng = np.random.default_rng([rng_seed, 1, n, committed])
            times = binary_agreement_times(n, committed, replicates=replicates, horizon=horizon, rng=rng)
            won = np.isfinite(times)
            rows.append(
                {"N": n, "committed": committed, "p": committed / n, "replicates": replicates,
                 "wins": int(won.sum()), "win_share": float(won.mean()),
                 "mean_rounds_to_win": float(times[won].mean()) if won.any() else float("nan")}
            )  # fmt: skip
    return pl.DataFrame(rows)


def horizon_threshold(n: int, horizon: int) -> float:
    """The committed fraction whose mean-field round map reaches A-consensus (to within one agent,
    eps = 1/N) in exactly `horizon` rounds: the N → ∞ limit of the finite-horizon 1/2 point,
    slightly above p_c (passing the saddle-node's bottleneck takes longer the closer p is to p_c)."""
    p_c = critical_fraction()
    return float(
        optimize.brentq(lambda p: min(round_map_rounds(p, eps=1.0 / n, max_rounds=4 * horizon), 4.0 * horizon)
                        - horizon, p_c + 1e-9, 0.5, xtol=1e-8)
    )  # fmt: skip


def tipping_points(curve: pl.DataFrame, *, horizon: int = 600, boot: int = 1000, rng_seed: int = 0) -> pl.DataFrame:
    """The simulated tipping fraction p50 per N against the mean-field p_c.

    p50: `_half_crossing` of the win shares. Its Monte Carlo SE is a parametric bootstrap (wins
    redrawn Binomial(R, share) at every grid point, `boot` times); the grid also limits how
    precisely the crossing is located, a uniform error over the bracketing interval, SD
    (p_hi − p_lo)/√12; `error` combines both. z = (p50 − p_c)/error. `p_c_horizon`: the mean-field
    1/2 point of this finite horizon (`horizon_threshold`).
    """
    p_c = critical_fraction()
    rng = np.random.default_rng([rng_seed, 2])
    rows = []
    for (n,), cells in curve.sort("p").group_by(["N"], maintain_order=True):
        p, wins = cells["p"].to_numpy(), cells["wins"].to_numpy()
        replicates = int(cells["replicates"][0])
        p50, p_lo, p_hi = _half_crossing(p, wins, replicates)
        draws = rng.binomial(replicates, wins / replicates, size=(boot, p.size))
        resampled = np.array([_half_crossing(p, row, replicates)[0] for row in draws])
        se = float(np.nanstd(resampled, ddof=1)) if np.isfinite(resampled).sum() > 1 else float("nan")
        resolution = (p_hi - p_lo) / np.sqrt(12.0)
        error = float(np.hypot(se, resolution))
        rows.append(
            {"N": n, "p_c": p_c, "p_c_horizon": horizon_threshold(n, horizon), "p50": p50, "mcse": se,
             "resolution": resolution, "error": error, "deviation": p50 - p_c, "z": (p50 - p_c) / error,
             "boot_missing": float(np.mean(~np.isfinite(resampled)))}
        )  # fmt: skip
    return pl.DataFrame(rows).sort("N")


# ---------------------------------------------------------------------------------------------
# 2. Consensus time above p_c (ln N) and no win below it
# ---------------------------------------------------------------------------------------------


def consensus_scaling(
    p: float = 0.15,
    sizes: Sequence[int] = (1000, 2000, 4000, 8000, 16000, 32000),
    *,
    replicates: int = 20,
    horizon: int = 2000,
    rng_seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rounds to A-consensus from all-B at committed fraction p > p_c, over N (Xie et al. 2011: ∝ ln N).

    Returns (per N: mean rounds, MC SE, the mean-field round map's rounds to within one agent;
    fits of the per-N means weighted by 1/SE²: T = a + b·ln N, and the power law ln T = c + β·ln N,
    each with its χ²). `theory`: the round map's b over the same sizes; `asymptotic`: its limit,
    `round_relaxation(p)` rounds per e-fold of N (Δ-method weights for the power law). Small N is
    left out: there the stochastic start adds rounds that flatten the slope.
    """
    rows = []
    for n in sizes:
        rng = np.random.default_rng([rng_seed, 3, n])
        times = binary_agreement_times(n, int(round(p * n)), replicates=replicates, horizon=horizon, rng=rng)
        if not np.isfinite(times).all():
            raise RuntimeError(f"p={p} did not reach A-consensus within {horizon} rounds at N={n}")
        mean, se = _mean_se(times)
        rows.append({"N": n, "p": p, "replicates": replicates, "mean_rounds": mean, "mcse": se,
                     "mean_field_rounds": round_map_rounds(p, eps=1.0 / n)})  # fmt: skip
    per_size = pl.DataFrame(rows)
    log_n = np.log(per_size["N"].to_numpy().astype(float))
    mean, se = per_size["mean_rounds"].to_numpy(), per_size["mcse"].to_numpy()
    b, b_se, a, chi2_log = _weighted_line(log_n, mean, se)
    beta, beta_se, c, _ = _weighted_line(log_n, np.log(mean), se / mean)
    chi2_power = float(np.sum(((mean - np.exp(c + beta * log_n)) / se) ** 2))
    theory = _weighted_line(log_n, per_size["mean_field_rounds"].to_numpy(), np.ones_like(log_n))[0]
    fits = pl.DataFrame(
        [
            {"model": "T = a + b ln N", "slope": b, "se": b_se, "intercept": a, "chi2": chi2_log,
             "dof": len(sizes) - 2, "theory": theory, "asymptotic": round_relaxation(p)},
            {"model": "ln T = c + beta ln N", "slope": beta, "se": beta_se, "intercept": c, "chi2": chi2_power,
             "dof": len(sizes) - 2, "theory": float("nan"), "asymptotic": 0.0},
        ]
    )  # fmt: skip
    return per_size, fits


def below_threshold(
    p: float = 0.05,
    sizes: Sequence[int] = (200, 1000, 5000),
    *,
    replicates: int = 20,
    horizon: int = 600,
    rng_seed: int = 0,
) -> pl.DataFrame:
    """Below p_c the B-dominated state is stable: A should win in no replicate within the horizon."""
    rows = []
    for n in sizes:
        rng = np.random.default_rng([rng_seed, 4, n])
        times = binary_agreement_times(n, int(round(p * n)), replicates=replicates, horizon=horizon, rng=rng)
        rows.append({"N": n, "p": p, "horizon": horizon, "replicates": replicates,
                     "wins": int(np.isfinite(times).sum())})  # fmt: skip
    return pl.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# 3. The minimal naming game: N^1.5
# ---------------------------------------------------------------------------------------------

NAMING_GAME_QUANTITIES = ("t_max", "t_conv", "words_max")


def naming_game_scaling(
    sizes: Sequence[int] = (100, 200, 400, 800, 1600),
    *,
    replicates: int = 20,
    exponent: float = 1.5,
    rng_seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The minimal naming game's times (interactions) and peak memory against N^1.5 (Baronchelli et al. 2006).

    Returns (per N: means and their ratio to N^1.5; per quantity: the log-log OLS slope over all
    replicates, its SE, z against 1.5 and `within` = |slope − 1.5| <= 2 SE). The peak time t_max
    scales as N^1.5 from small N on; the convergence time t_conv and the peak number of words
    approach it only slowly: t_conv/N^1.5 still falls at N ~ 10³ (fitted exponent ≈ 1.3 there), a
    finite-size effect, not the matching: Baronchelli's sequential random pairs, coded independently,
    gave t_conv/N^1.5 = 2.58, 1.82, 1.44, 1.34, 1.33 at N = 100, 400, 1600, 3200, 6400.
    """
    records = []
    for n in sizes:
        rng = np.random.default_rng([rng_seed, 5, n])
        records += [{"N": n, **naming_game_run(n, rng=rng)} for _ in range(replicates)]
    runs = pl.DataFrame(records)
    per_size = (
        runs.group_by("N", maintain_order=True)
        .agg(pl.len().alias("replicates"), *(pl.col(q).mean() for q in NAMING_GAME_QUANTITIES))
        .with_columns(
            (pl.col(q) / pl.col("N").cast(pl.Float64) ** exponent).alias(f"{q}/N^{exponent:g}")
            for q in NAMING_GAME_QUANTITIES
        )
    )
    log_n = np.log(runs["N"].to_numpy().astype(float))
    fits = []
    for quantity in NAMING_GAME_QUANTITIES:
        fit = sps.linregress(log_n, np.log(runs[quantity].to_numpy().astype(float)))
        slope, se = float(fit.slope), float(fit.stderr)
        fits.append({"quantity": quantity, "slope": slope, "se": se, "theory": exponent,
                     "z": (slope - exponent) / se, "within": abs(slope - exponent) <= 2 * se})  # fmt: skip
    return per_size, pl.DataFrame(fits)


# ---------------------------------------------------------------------------------------------
# 4. Best response: global convention on a complete graph, local ones on a lattice
# ---------------------------------------------------------------------------------------------


def best_response_networks(
    n: int = 200,
    *,
    names: int = 10,
    memory: int = 5,
    horizon: int = 200,
    degree: int = 4,
    replicates: int = 20,
    consensus: float = 0.9,
    rng_seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Memory-based best response (Centola & Baronchelli 2015) on a complete graph and a ring lattice.

    Empty memories, `names` names, memory M = `memory` (5: the `[coordination] memory` default, the
    setting studies run), the same N and horizon on both networks. Returns
    (per network: mean dominant share and names in use at the horizon with MC SEs, the share of
    replicates whose dominant share reached `consensus`, the median round it did; one-sided tests
    'complete > lattice' on the dominant share and 'lattice > complete' on names in use).
    """
    results = {}
    for arm, network in enumerate(("complete", "lattice")):
        rng = np.random.default_rng([rng_seed, 6, arm])
        results[network] = pl.DataFrame(
            [best_response_run(n, network=network, names=names, memory=memory, horizon=horizon, rng=rng,
                               degree=degree, consensus=consensus) for _ in range(replicates)]
        )  # fmt: skip
    rows = []
    for network, runs in results.items():
        share, share_se = _mean_se(runs["dominant_share"].to_numpy())
        in_use, in_use_se = _mean_se(runs["names_in_use"].to_numpy())
        reached = runs["consensus_round"].to_numpy()
        rows.append(
            {"network": network, "N": n, "degree": n - 1 if network == "complete" else degree, "memory": memory,
             "names": names, "horizon": horizon, "replicates": replicates, "dominant_share": share,
             "dominant_mcse": share_se, "names_in_use": in_use, "names_mcse": in_use_se,
             "consensus_share": float(np.isfinite(reached).mean()), "median_consensus_round": float(np.median(reached))}
        )  # fmt: skip
    complete, lattice = results["complete"], results["lattice"]
    with warnings.catch_warnings():  # every complete-graph replicate can end at share 1: Welch's t warns
        warnings.simplefilter("ignore", RuntimeWarning)
        tests = [
            {"metric": "dominant_share", "hypothesis": "complete > lattice",
             **one_sided(complete["dominant_share"].to_numpy(), lattice["dominant_share"].to_numpy())},
            {"metric": "names_in_use", "hypothesis": "lattice > complete",
             **one_sided(lattice["names_in_use"].to_numpy(), complete["names_in_use"].to_numpy())},
        ]  # fmt: skip
    return pl.DataFrame(rows), pl.DataFrame(tests)


# ---------------------------------------------------------------------------------------------
# All checks, the oracle table, printing
# ---------------------------------------------------------------------------------------------


TITLES = {  # the tables of `check_conventions`, in order, with their titles
    "tipping_curve": "1a. Binary agreement (complete graph): replicates where committed A wins within the horizon",
    "tipping": "1b. Tipping fraction p50 (win share 1/2) against the mean-field p_c",
    "consensus": "2a. Rounds to A-consensus above p_c (mean_field_rounds: the round map to within one agent)",
    "consensus_fits": "2b. Rounds against ln N and a power law (weighted by 1/SE²; slope in rounds per e-fold of N)",
    "below": "2c. Below p_c: replicates where A won within the horizon",
    "naming_game": "3a. Minimal naming game (complete graph), means in interactions (rounds x N/2 pairs)",
    "naming_game_fits": "3b. Log-log slopes against N (OLS over replicates) vs 1.5",
    "best_response": "4a. Best response with memory: dominant share and names in use at the horizon",
    "best_response_tests": "4b. One-sided tests between the networks",
    "oracles": "Oracle table (times in rounds: a round pairs every agent at most once, N/2 pairs on a complete "
    "graph; mean-field unit = N interactions = 2 rounds)",
}


def _oracle(oracle: str, claim: str, value: float, se: float, reference: float, criterion: str, passed: bool,
            seconds: float = float("nan")) -> dict[str, object]:  # fmt: skip
    """One row of the oracle table; `seconds`: wall time of the check behind it (on its first row)."""
    return {"oracle": oracle, "claim": claim, "value": float(value), "se": float(se), "reference": float(reference),
            "criterion": criterion, "passed": bool(passed), "seconds": round(float(seconds), 1)}  # fmt: skip


def check_conventions(*, replicates: int = 20, horizon: int = 600, rng_seed: int = 0) -> dict[str, pl.DataFrame]:
    """Every check at its default design with `replicates` per cell and `horizon` rounds for the tipping
    and below-p_c runs: the tables of `TITLES`, the oracle table (one verdict per claim) last."""
    marks = [time.perf_counter()]
    curve = tipping_curve(replicates=replicates, horizon=horizon, rng_seed=rng_seed)
    tipping = tipping_points(curve, horizon=horizon, rng_seed=rng_seed)
    marks.append(time.perf_counter())
    consensus, consensus_fits = consensus_scaling(replicates=replicates, rng_seed=rng_seed)
    below = below_threshold(replicates=replicates, horizon=horizon, rng_seed=rng_seed)
    marks.append(time.perf_counter())
    naming_game, naming_game_fits = naming_game_scaling(replicates=replicates, rng_seed=rng_seed)
    marks.append(time.perf_counter())
    best_response, best_response_tests = best_response_networks(replicates=replicates, rng_seed=rng_seed)
    marks.append(time.perf_counter())
    seconds_tipping, seconds_consensus, seconds_naming, seconds_best = np.diff(marks)

    largest = tipping.row(-1, named=True)
    gaps = np.abs(tipping["deviation"].to_numpy())
    log_fit, power_fit = consensus_fits.row(0, named=True), consensus_fits.row(1, named=True)
    slopes = {row["quantity"]: row for row in naming_game_fits.iter_rows(named=True)}
    arms = {row["network"]: row for row in best_response.iter_rows(named=True)}
    names_test = best_response_tests.row(1, named=True)
    rows = [
        _oracle("binary agreement tipping", f"p50 at N={largest['N']} matches the mean-field p_c", largest["p50"],
                largest["error"], largest["p_c"], "|p50 - p_c| <= 2 error", abs(largest["z"]) <= 2, seconds_tipping),
        _oracle("binary agreement tipping", "|p50 - p_c| shrinks as N grows", gaps[-1], float("nan"), gaps[0],
                "decreasing over N", bool(np.all(np.diff(gaps) < 0))),
        _oracle("consensus above p_c", f"rounds grow like ln N (p={consensus['p'][0]:g}; b per e-fold)",
                log_fit["slope"], log_fit["se"], log_fit["theory"], "|b - round map| <= 2 SE and b > 2 SE",
                abs(log_fit["slope"] - log_fit["theory"]) <= 2 * log_fit["se"] and log_fit["slope"] > 2 * log_fit["se"],
                seconds_consensus),
        _oracle("consensus above p_c", "a power law fits only with a vanishing exponent", power_fit["slope"],
                power_fit["se"], 0.0, "beta < 0.1", power_fit["slope"] < 0.1),
        _oracle("below p_c", f"A never wins at p={below['p'][0]:g} within {below['horizon'][0]} rounds",
                below["wins"].sum(), float("nan"), 0.0, "no win in any replicate", below["wins"].sum() == 0),
        _oracle("minimal naming game", "peak time t_max ~ N^1.5", slopes["t_max"]["slope"], slopes["t_max"]["se"],
                1.5, "|slope - 1.5| <= 2 SE", slopes["t_max"]["within"], seconds_naming),
        _oracle("minimal naming game", "convergence time t_conv ~ N^1.5 (asymptotic)", slopes["t_conv"]["slope"],
                slopes["t_conv"]["se"], 1.5, "|slope - 1.5| <= 2 SE", slopes["t_conv"]["within"]),
        _oracle("best response", "a global convention on a complete graph", arms["complete"]["consensus_share"],
                float("nan"), 0.9, "share of replicates reaching 0.9 >= 0.9",
                arms["complete"]["consensus_share"] >= 0.9, seconds_best),
        _oracle("best response", "local conventions persist on a ring lattice", arms["lattice"]["dominant_share"],
                arms["lattice"]["dominant_mcse"], 0.9,
                "dominant + 2 SE < 0.9, <= 10% reach 0.9, more names than complete (MWU p < 0.01)",
                arms["lattice"]["dominant_share"] + 2 * arms["lattice"]["dominant_mcse"] < 0.9
                and arms["lattice"]["consensus_share"] <= 0.1 and names_test["mwu_p"] < 0.01),
    ]  # fmt: skip
    return dict(zip(TITLES, (curve, tipping, consensus, consensus_fits, below, naming_game, naming_game_fits,
                             best_response, best_response_tests, pl.DataFrame(rows)), strict=True))  # fmt: skip


def format_report(tables: dict[str, pl.DataFrame]) -> str:
    """Every table with its title, the oracle table last."""
    return "\n\n".join(f"{TITLES[name]}\n{format_table(frame)}" for name, frame in tables.items())
