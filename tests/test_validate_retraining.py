"""`culturesim validate retraining`: the data regimes of retraining against exact model-collapse theory,
and that the check fails when a regime or an estimator is broken."""

from __future__ import annotations

import numpy as np
import pytest

from culturesim.checks.validate_retraining import (
    check_retraining,
    compare,
    gaussian_refit,
    gaussian_theory,
    linear_regression,
    regression_theory,
)
from culturesim.core import retraining_theory as theory

REPLICATES = 600  # test size: ~1 s for the whole table
LATE = [5, 10]  # steps where a broken regime is far from the theory


# --- the theory on paper ---------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [2, 10, 50])
def test_closed_forms_are_the_recurrence_without_real_data(samples: int) -> None:
    variance, drift = theory.refit_moments(30, samples=samples, regime="replace")
    for n in range(31):
        assert variance[n] == pytest.approx(theory.refit_variance_replace(n, samples=samples))
        assert drift[n] == pytest.approx(theory.refit_drift_replace(n, samples=samples))
    variance, _ = theory.refit_moments(30, samples=samples, regime="accumulate")
    for n in range(31):
        assert variance[n] == pytest.approx(theory.refit_variance_accumulate(n, samples=samples))


@pytest.mark.parametrize(("samples", "human"), [(10, 1), (10, 2), (10, 5), (10, 10), (7, 3)])
def test_real_data_keep_the_replaced_variance_at_its_fixed_point(samples: int, human: int) -> None:
    limit_variance, limit_drift = theory.refit_replace_limit(samples=samples, human=human)
    variance, drift = theory.refit_moments(3000, samples=samples, human=human, regime="replace")
    assert variance[-1] == pytest.approx(limit_variance) and drift[-1] == pytest.approx(limit_drift)
    assert limit_variance > 0.5  # any real item keeps the variance away from collapse


def test_accumulated_variance_stays_above_its_limit_and_regimes_agree_at_first() -> None:
    limit = theory.refit_variance_accumulate_limit(samples=10)
    values = [theory.refit_variance_accumulate(n, samples=10) for n in range(200)]
    assert all(v >= limit for v in values) and values[-1] == pytest.approx(limit, rel=1e-3)
    for human in (0, 3):
        replaced = theory.refit_moments(1, samples=10, human=human, regime="replace")
        accumulated = theory.refit_moments(1, samples=10, human=human, regime="accumulate")
        np.testing.assert_allclose(replaced, accumulated)


def test_accumulated_regression_error_meets_its_limit_below_the_bound() -> None:
    bound = theory.regression_accumulate_bound(dim=5, samples=20)
    limit = theory.regression_error_accumulate_limit(dim=5, samples=20)
    assert theory.regression_error_accumulate(100_000, dim=5, samples=20) == pytest.approx(limit, rel=1e-4)
    assert limit < bound
    first = theory.regression_error_replace(1, dim=5, samples=20)
    assert theory.regression_error_accumulate(1, dim=5, samples=20) == pytest.approx(first)
    with pytest.raises(ValueError, match="T > d \\+ 1"):
        theory.regression_error_replace(3, dim=5, samples=6)


# --- simulation against theory ---------------------------------------------------------------------


def test_every_oracle_agrees_with_simulation_at_test_size() -> None:
    table = check_retraining(replicates=REPLICATES)
    failed = table.filter(~table["within"])
    assert failed.is_empty(), failed
    cells = set(table.select("learner", "regime", "share").unique().iter_rows())
    assert cells == {("gaussian", "replace", 0.0), ("gaussian", "replace", 0.2), ("gaussian", "replace", 0.5),
                     ("gaussian", "accumulate", 0.0), ("gaussian", "accumulate", 0.5),
                     ("regression", "replace", 0.0), ("regression", "accumulate", 0.0)}  # fmt: skip
    assert set(table["kind"]) == {"exact", "bound"}
    assert (table["mcse"] > 0).all() and table["z"].is_finite().all()


# --- a broken regime or estimator must fail ----------------------------------------------------------


def _within(values: np.ndarray, expected: np.ndarray) -> list[bool]:
    return [row["within"] for row in compare(values, expected, steps=LATE, labels={})]


def test_accumulated_data_fail_the_replace_theory_and_back() -> None:
    rng = np.random.default_rng(1)
    replace = gaussian_theory(regime="replace", share=0.0, samples=10, generations=10)["variance"][0]
    accumulate = gaussian_theory(regime="accumulate", share=0.0, samples=10, generations=10)["variance"][0]
    accumulated = gaussian_refit(regime="accumulate", share=0.0, replicates=REPLICATES, rng=rng)["variance"]
    replaced = gaussian_refit(regime="replace", share=0.0, replicates=REPLICATES, rng=rng)["variance"]
    assert _within(accumulated, accumulate) == [True, True]  # the control: right theory, right data
    assert not any(_within(accumulated, replace))
    assert not any(_within(replaced, accumulate))


def test_an_unbiased_variance_estimator_fails_the_replace_check() -> None:
    rng = np.random.default_rng(2)
    expected = gaussian_theory(regime="replace", share=0.0, samples=10, generations=10)["variance"][0]
    biased = gaussian_refit(regime="replace", share=0.0, ddof=1, replicates=REPLICATES, rng=rng)["variance"]
    assert not any(_within(biased, expected))  # divisor M − 1 keeps E[σ²] = σ0²: no collapse


def test_a_mix_without_its_human_share_fails() -> None:
    rng = np.random.default_rng(3)
    expected = gaussian_theory(regime="replace", share=0.5, samples=10, generations=10)["variance"][0]
    machine_only = gaussian_refit(regime="replace", share=0.0, replicates=REPLICATES, rng=rng)["variance"]
    assert not any(_within(machine_only, expected))


def test_regression_regimes_cannot_be_swapped() -> None:
    rng = np.random.default_rng(4)
    replace, _ = regression_theory(regime="replace", dim=5, samples=20, iterations=10)
    accumulate, _ = regression_theory(regime="accumulate", dim=5, samples=20, iterations=10)
    replaced = linear_regression(regime="replace", replicates=REPLICATES, rng=rng)
    accumulated = linear_regression(regime="accumulate", replicates=REPLICATES, rng=rng)
    assert not any(_within(replaced, accumulate))
    assert not any(_within(accumulated, replace))


# --- the command -----------------------------------------------------------------------------------


def test_validate_command_prints_the_retraining_table() -> None:
    from typer.testing import CliRunner

    from culturesim.cli import app

    result = CliRunner().invoke(app, ["validate", "retraining", "--replicates", "200"])
    assert result.exit_code == 0, result.output
    assert "gaussian" in result.output and "regression" in result.output and "accumulate" in result.output
