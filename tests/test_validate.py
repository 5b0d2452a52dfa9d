"""Scientific validation: theory functions (culturesim.core.theory),
the model against theory (culturesim.checks.validate).

Simulation checks run the real `CultureModel` / `learning` code at small sizes with fixed seeds; each
assertion compares with a closed-form value within 3 Monte Carlo SE, or tests a direction over
independent replicates, so each can fail if the model's transmission rules were wrong. Run with -s to
see the tables.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from culturesim.checks import validate as v
from culturesim.core import theory

# --- theory -------------------------------------------------------------------------------------


def test_ewens_expected_k_limits():
    assert theory.ewens_expected_k(10, 0.0) == 1.0
    assert theory.ewens_expected_k(10, 1e-9) == pytest.approx(1.0, abs=1e-6)
    assert theory.ewens_expected_k(10, 1e12) == pytest.approx(10.0, rel=1e-9)
    assert theory.ewens_expected_k(1, 3.0) == 1.0
    assert theory.ewens_expected_k(2, 1.0) == pytest.approx(1.5)  # 1 + θ/(θ+1)


def test_ewens_homozygosity():
    assert theory.ewens_homozygosity(1.0) == 0.5
    assert theory.ewens_homozygosity(0.0) == 1.0
    assert theory.ewens_homozygosity(4.0) == pytest.approx(0.2)


def test_self_exclusion_coalescence_by_enumeration():
    """Learners 0 and 1 each copy one of the other N−1 agents: enumerate all model pairs."""
    for n in (3, 5, 8):
        pairs = [(a, b) for a in range(n) for b in range(n) if a != 0 and b != 1]
        same = sum(a == b for a, b in pairs) / len(pairs)
        assert theory.wf_coalescence_probability(n) == pytest.approx(same)
    assert theory.wf_coalescence_probability(10, exclude_self=False) == 0.1


def test_wf_homozygosity_is_the_fixed_point_and_tends_to_ewens():
    n, mu = 50, 0.02
    f = theory.wf_homozygosity(n, mu)
    c = theory.wf_coalescence_probability(n)
    assert f == pytest.approx((1 - mu) ** 2 * (c + (1 - c) * f))
    theta = 2.0
    big = 200_000
    assert theory.wf_homozygosity(big, theta / (2 * big)) == pytest.approx(theory.ewens_homozygosity(theta), rel=1e-4)


def test_wf_expected_k_limits_and_ewens_limit():
    assert theory.wf_expected_k(1, 50, 0.01) == pytest.approx(1.0)
    assert theory.wf_expected_k(7, 50, 1.0) == pytest.approx(7.0)  # every lineage innovates
    theta, big = 2.0, 200_000
    assert theory.wf_expected_k(10, big, theta / (2 * big)) == pytest.approx(
        theory.ewens_expected_k(10, theta), rel=1e-3
    )
    # two lineages: K = 2 − F (they are one variant with probability F); self-copying allowed in both
    n, mu = 40, 0.03
    assert theory.wf_expected_k(2, n, mu) == pytest.approx(2 - theory.wf_homozygosity(n, mu, exclude_self=False))


def test_occupancy_distribution():
    occupancy = theory._occupancy(12, 30)
    assert np.allclose(occupancy.sum(axis=1), 1.0)
    r = np.arange(13)
    assert np.allclose(occupancy @ np.arange(13), 30 * (1 - (1 - 1 / 30) ** r))


def test_conformist_rule_matches_boyd_richerson_for_three_demonstrators():
    p = np.linspace(0, 1, 21)
    assert np.allclose(theory.conformity_expected_next(p, 1.0), p)  # a = 1 is unbiased copying
    for a in (0.0, 0.3, 1.7, 2.0, 6.0):
        d = theory.boyd_richerson_d(a)
        assert d == pytest.approx((2**a - 2) / (2**a + 1))
        assert np.allclose(theory.conformity_expected_next(p, a), p + d * p * (1 - p) * (2 * p - 1))
        if d > -0.5:
            assert theory.exponent_for_d(d) == pytest.approx(a)
    assert theory.boyd_richerson_d(0.0) == -0.5
    assert theory.boyd_richerson_d(2.0) == pytest.approx(0.4)


def test_d_equivalent_is_the_slope_at_one_half_for_other_k():
    k, a, h = 5, 2.0, 1e-6
    slope = (theory.conformity_expected_next(0.5 + h, a, k) - theory.conformity_expected_next(0.5 - h, a, k)) / (2 * h)
    assert theory.boyd_richerson_d(a, k) == pytest.approx(2 * (slope - 1), rel=1e-6)
    assert theory.conformist_adoption(np.arange(6), 5, 1.0) == pytest.approx(np.arange(6) / 5)


# --- 1. neutral model -----------------------------------------------------------------------------


def test_neutral_model_matches_wright_fisher_and_ewens():
    table = v.neutral([(50, 0.01), (50, 0.04)], replicates=12, generations=400, burn_in=300, rng_seed=1)
    print("\n" + v.format(table))
    assert table.height == 6
    assert (table["mcse"] > 0).all()
    # exact discrete Wright–Fisher values: every quantity, every grid point
    assert (table["z_exact"].abs() < 3).all()
    # Ewens (diffusion) values for homozygosity and a sample of 10; for the whole population (n = N)
    # Kingman's coalescent is too coarse at θ = 4 and the exact value is the oracle
    ewens = table.filter(pl.col("quantity").is_in(["homozygosity", "k_sample"]))
    assert (ewens["z"].abs() < 3).all()
    # the check has power: the same runs reject theory at twice the innovation rate
    wrong = [
        (row["sim"] - theory.wf_homozygosity(row["N"], 2 * row["mu"])) / row["mcse"]
        for row in table.filter(pl.col("quantity") == "homozygosity").iter_rows(named=True)
    ]
    assert max(abs(z) for z in wrong) > 3


def test_time_averages_need_a_generator_for_samples():
    config = v.human_config(20, 0.01, generations=5)
    with pytest.raises(ValueError, match="rng"):
        v.time_averages(config, replicate=0, study_seed=0, burn_in=1, generations=2, sample_n=5)


# --- 2. conformity -------------------------------------------------------------------------------


def test_conformity_one_generation_matches_exact_expectation():
    p_grid = [round(0.1 * i, 1) for i in range(1, 10)]
    table = v.conformity([0.0, 0.5, 1.0, 2.0, 4.0], p_grid, n=20_000, rng_seed=0)
    print("\n" + v.format(table))
    assert table.height == 45
    assert (table["z"].abs() < 3).all()
    assert np.allclose(table["delta_exact"], table["delta_br"])  # k = 3: the BR cubic is exact
    # the simulated change has the sign of the BR cubic wherever it is not tiny (0.5 is a fixed point)
    away = table.filter((pl.col("a") != 1.0) & ((pl.col("p") - 0.5).abs() >= 0.2))
    assert (np.sign(away["delta_sim"]) == np.sign(away["delta_br"])).all()


def test_conformity_ordering_of_diversity():
    table = v.conformity_ordering((0.5, 1.0, 2.0), n=100, mu=0.02, replicates=12, generations=200, burn_in=200)
    print("\n" + v.format(table))
    distinct = table.filter(pl.col("metric") == "distinct_traits")
    assert distinct["hypothesis"].to_list() == ["a=0.5 > a=1", "a=1 > a=2"]
    assert (distinct["mean_high"] > distinct["mean_low"]).all()
    assert (distinct["welch_p"] < 0.01).all()
    assert (distinct["mwu_p"] < 0.01).all()


# --- 3. network ----------------------------------------------------------------------------------


def test_lattice_is_more_diverse_than_complete_graph():
    table = v.network_effect(n=100, mu=0.01, replicates=6, generations=200, burn_in=200)
    print("\n" + v.format(table))
    assert table["hypothesis"].to_list() == ["lattice > complete"] * 2
    assert (table["mean_high"] > table["mean_low"]).all()
    assert (table["welch_p"] < 0.05).all()
    assert (table["mwu_p"] < 0.05).all()


def test_one_sided_tests_point_the_right_way():
    rng = np.random.default_rng(0)
    high, low = rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 30)
    assert v.one_sided(high, low)["welch_p"] < 0.01
    assert v.one_sided(low, high)["welch_p"] > 0.99


def test_format_prints_every_row():
    frame = pl.DataFrame({"x": np.arange(40), "y": np.linspace(0, 1, 40)})
    text = v.format(frame)
    assert "39" in text and "…" not in text


@pytest.mark.slow
def test_neutral_dynamics_do_not_depend_on_embeddings(embedder):
    """Unbiased copying reads trait ids only: real embeddings and the placeholder give the same run."""
    config = v.human_config(20, 0.05, generations=8)
    kwargs = dict(replicate=0, study_seed=4, burn_in=3, generations=5, sample_n=5)
    real = v.time_averages(config, rng=np.random.default_rng(0), embedder=embedder, **kwargs)
    placeholder = v.time_averages(config, rng=np.random.default_rng(0), **kwargs)
    assert real == placeholder
    run = v.build_model(config, replicate=0, study_seed=4, embedder=embedder)
    run.advance()
    assert run.model.pool.embeddings.shape == (len(run.model.pool), embedder.dim)
    assert np.allclose(np.linalg.norm(run.model.pool.embeddings, axis=1), 1.0, atol=1e-5)


# --- the command ---------------------------------------------------------------------------------


def test_validate_command_prints_the_network_check() -> None:
    from typer.testing import CliRunner

    from culturesim.cli import app

    result = CliRunner().invoke(app, ["validate", "network", "--replicates", "3"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "lattice > complete" in line]
    assert len(rows) == 2  # distinct traits and 1 − homozygosity, each with its numbers
    assert {"distinct_traits", "1-homozygosity"} == {m for m in ("distinct_traits", "1-homozygosity")
                                                     if any(m in row for row in rows)}  # fmt: skip
    bad = CliRunner().invoke(app, ["validate", "gravity"])
    assert bad.exit_code == 2 and "unknown check" in bad.output
