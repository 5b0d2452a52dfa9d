"""Naming-game theory (culturesim.core.convention_theory) and the coordination oracles
(culturesim.checks.validate_conventions).

The theory is checked against the literature and an independent closed form; each oracle runs the
real `play_round` in a small design that still fails if the rules were wrong (a tipping point in the
wrong place, consensus times growing too fast, a convention that never forms or never fragments).
Run with -s to see the tables.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from culturesim.checks import validate_conventions as vc
from culturesim.checks.validate import format as format_table
from culturesim.core import convention_theory as theory

# --- theory -------------------------------------------------------------------------------------


def test_critical_fraction_matches_xie_et_al():
    assert theory.critical_fraction() == pytest.approx(0.0979, abs=1e-3)


def test_critical_fraction_matches_the_double_root_by_hand():
    """On the B-nullcline (n_B = s², n_AB = s − s², n_A = 1 − p − s), dn_A/dt = s·h(s) with
    h = s³ + (p/2 − 2)s + 1 + p/2. The saddle-node is a double root, h = h' = 0: eliminating p gives
    2s³ + 3s² − 3 = 0 and p = 4 − 6s². Checks the numerical derivation, not the literature."""
    s = optimize.brentq(lambda x: 2 * x**3 + 3 * x**2 - 3, 0.5, 1.0, xtol=1e-15)
    assert theory.critical_fraction() == pytest.approx(4 - 6 * s**2, abs=1e-8)


def test_fixed_points_and_their_stability():
    golden = (3 - np.sqrt(5)) / 2  # the symmetric saddle without committed agents
    points = theory.fixed_points(0.0)
    assert points == [pytest.approx((1.0, 0.0)), pytest.approx((golden, golden)), pytest.approx((0.0, 1.0))]
    assert [theory.is_stable(a, b, 0.0) for a, b in points] == [True, False, True]
    below = theory.fixed_points(0.05)
    assert len(below) == 3 and theory.is_stable(*below[-1], 0.05) and below[-1][1] > 0.8
    assert theory.fixed_points(0.15) == [pytest.approx((0.85, 0.0))]
    for p in (0.0, 0.05, 0.15):
        for a, b in theory.fixed_points(p):
            assert np.allclose(theory.binary_agreement_rhs(a, b, p), 0.0, atol=1e-12)


def test_jacobian_matches_finite_differences():
    h = 1e-6
    for a, b, p in ((0.2, 0.3, 0.07), (0.5, 0.1, 0.15), (0.0, 0.9, 0.1)):
        numeric = np.column_stack(
            [(theory.binary_agreement_rhs(a + h, b, p) - theory.binary_agreement_rhs(a - h, b, p)) / (2 * h),
             (theory.binary_agreement_rhs(a, b + h, p) - theory.binary_agreement_rhs(a, b - h, p)) / (2 * h)]
        )  # fmt: skip
        assert np.allclose(theory.binary_agreement_jacobian(a, b, p), numeric, atol=1e-8)


def test_consensus_times_of_the_flow_and_the_round_map():
    assert theory.consensus_time(0.05, eps=1e-3) == np.inf
    assert theory.round_map_rounds(0.05, eps=1e-3, max_rounds=5000) == np.inf
    flow = 2 * theory.consensus_time(0.15, eps=1e-3)
    rounds = theory.round_map_rounds(0.15, eps=1e-3)
    assert rounds < flow < rounds + 5  # the map relaxes faster near consensus
    assert theory.relaxation_rate(0.15) == pytest.approx(1.0)  # eigenvalues −1 and −(1 + p/2)
    assert theory.round_relaxation(0.15) == pytest.approx(1 / np.log(2))  # per round: 1 − 1/2


# --- oracles (small designs) --------------------------------------------------------------------


def test_committed_minority_wins_above_p_c_and_not_below():
    rng = np.random.default_rng(0)
    above = vc.binary_agreement_times(400, 60, replicates=10, horizon=300, rng=rng)  # p = 0.15
    below = vc.binary_agreement_times(400, 20, replicates=10, horizon=300, rng=rng)  # p = 0.05
    assert np.isfinite(above).all() and not np.isfinite(below).any()
    assert abs(above.mean() - theory.round_map_rounds(0.15, eps=1 / 400)) < 8


def test_consensus_time_grows_like_log_n():
    per_size, fits = vc.consensus_scaling(sizes=(1000, 4000, 16000), replicates=8)
    print(format_table(per_size), format_table(fits), sep="\n")
    log_fit, power_fit = fits.row(0, named=True), fits.row(1, named=True)
    assert abs(log_fit["slope"] - log_fit["theory"]) <= 3 * log_fit["se"]
    assert 0 < power_fit["slope"] < 0.1
    assert np.allclose(per_size["mean_rounds"], per_size["mean_field_rounds"], atol=3)


def test_tipping_fraction_approaches_p_c():
    curve = vc.tipping_curve(sizes=(200, 1000), replicates=12)
    tipping = vc.tipping_points(curve, boot=200)
    print(format_table(curve), format_table(tipping), sep="\n")
    gaps = tipping["deviation"].to_numpy()
    assert np.all(np.isfinite(gaps)) and abs(gaps[1]) < abs(gaps[0])
    assert -0.008 < gaps[1] < 0.001  # finite N tips a little below p_c (fluctuations), never far above


def test_naming_game_peak_time_scales_as_n_to_the_1_5():
    per_size, fits = vc.naming_game_scaling(sizes=(100, 200, 400, 800), replicates=10)
    print(format_table(per_size), format_table(fits), sep="\n")
    slopes = {row["quantity"]: row for row in fits.iter_rows(named=True)}
    assert abs(slopes["t_max"]["slope"] - 1.5) <= 3 * slopes["t_max"]["se"]
    assert 1.15 < slopes["t_conv"]["slope"] < 1.55  # below 1.5 at these N: a finite-size effect


def test_best_response_is_global_on_complete_and_local_on_lattice():
    arms, tests = vc.best_response_networks(n=100, horizon=100, replicates=6)
    print(format_table(arms), format_table(tests), sep="\n")
    complete, lattice = arms.row(0, named=True), arms.row(1, named=True)
    assert complete["consensus_share"] == 1.0 and complete["dominant_share"] >= 0.9
    assert lattice["consensus_share"] == 0.0 and lattice["dominant_share"] < 0.6
    assert lattice["names_in_use"] > complete["names_in_use"] + 2


@pytest.mark.slow
def test_validate_conventions_command_prints_the_oracle_table():
    from typer.testing import CliRunner

    from culturesim.cli import app

    result = CliRunner().invoke(app, ["validate", "conventions", "--replicates", "8"])
    assert result.exit_code == 0, result.output
    assert "Oracle table" in result.output and "minimal naming game" in result.output
