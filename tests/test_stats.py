"""Tests for culturesim.stats on synthetic data whose true answer is planted."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps

from culturesim import stats
from culturesim.schema.analysis_plan import Hypothesis, Preregistration
from tests.helpers import SYNTHETIC_PLAN_TEXT

FACTOR = "population.llm_share"
OUTCOME = "semantic_diversity"
GENERATIONS = 10
START = 0.6  # every trajectory starts here at generation 0
BASE = 0.5  # reference arm's expected final value


def hypothesis(**overrides) -> dict:
    """A registered hypothesis: 0.3 vs 0.0 LLM share, final semantic diversity lower."""
    return {
        "id": "H",
        "statement": "synthetic",
        "outcome": OUTCOME,
        "contrast": {"factor": FACTOR, "treatment": 0.3, "reference": 0.0},
        "direction": "less",
        **overrides,
    }


def make_plan(*hypotheses: dict) -> Preregistration:
    return Preregistration.model_validate({**SYNTHETIC_PLAN_TEXT, "hypotheses": list(hypotheses)})


def runs_table(levels: dict[str, float], replicates: dict[str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "run_id": list(levels),
            "condition": [f"llm_share={levels[r]}" for r in levels],
            "replicate": [replicates[r] for r in levels],
            FACTOR: [json.dumps(levels[r]) for r in levels],
        }
    )


def synthetic_study(
    rng: np.random.Generator,
    *,
    shifts: dict[float, float],
    n_per_arm: int,
    sd: float,
    step_sd: float = 0.005,
    start_sd: float = 0.01,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Runs whose trajectories go linearly from START + N(0, start_sd) to BASE + shift[level] + N(0, sd),
    plus N(0, step_sd) noise per generation; replicate k of every level shares nothing."""
    levels, replicates, rows = {}, {}, []
    generations = np.arange(GENERATIONS + 1)
    for level, shift in shifts.items():
        for replicate in range(n_per_arm):
            run_id = f"share{level}-rep{replicate}"
            levels[run_id], replicates[run_id] = level, replicate
            start, final = START + rng.normal(0, start_sd), BASE + shift + rng.normal(0, sd)
            values = start + (final - start) * generations / GENERATIONS + rng.normal(0, step_sd, generations.size)
            rows.append(
                pl.DataFrame(
                    {
                        "run_id": run_id,
                        "condition": f"llm_share={level}",
                        "replicate": replicate,
                        "generation": generations,
                        "metric": OUTCOME,
                        "value": values,
                    }
                )
            )
    return pl.concat(rows), runs_table(levels, replicates)


def with_nan(metrics: pl.DataFrame, run_id: str, generation: int) -> pl.DataFrame:
    hit = (pl.col("run_id") == run_id) & (pl.col("generation") == generation)
    return metrics.with_columns(pl.when(hit).then(float("nan")).otherwise(pl.col("value")).alias("value"))


def only(results: list[stats.HypothesisResult], hypothesis_id: str) -> stats.HypothesisResult:
    return next(r for r in results if r.id == hypothesis_id)


# --- planted effect -----------------------------------------------------------


def test_planted_effect_is_recovered_and_supported_only_in_its_direction():
    difference, sd, step_sd = -0.03, 0.02, 0.005
    rng = np.random.default_rng(1)
    # the 0.1 arm is far off: if it leaked into the contrast the estimate would be wrong
    metrics, runs = synthetic_study(rng, shifts={0.0: 0.0, 0.3: difference, 0.1: 1.0}, n_per_arm=30, sd=sd)
    metrics = with_nan(metrics, "share0.3-rep3", GENERATIONS)
    plan = make_plan(
        hypothesis(id="less", model="value ~ treatment + C(replicate)", random_slope=True),
        hypothesis(id="greater", direction="greater"),
    )
    results = stats.analyze(metrics, runs, plan, final_generation=GENERATIONS)
    less, greater = only(results, "less"), only(results, "greater")

    assert less.ci_low <= difference <= less.ci_high
    assert less.verdict == "supported" and less.p_adjusted < 0.05
    assert greater.verdict == "not supported" and greater.p_value > 0.5
    assert (less.n_treatment, less.n_reference, less.n_dropped) == (29, 30, 1)
    # the NaN run's replicate partner is fitted exactly by C(replicate) and left out of HC3
    assert any("leverage 1" in w for w in less.warnings)
    assert math.isfinite(less.se) and less.se > 0
    total_sd = math.hypot(sd, step_sd)
    assert abs(less.mean_treatment - (BASE + difference)) < 3 * less.mcse_treatment
    assert abs(less.mean_reference - BASE) < 3 * less.mcse_reference
    assert less.g_ci_low <= difference / total_sd <= less.g_ci_high
    # mixed model: trajectories of the treatment arm fall by difference / GENERATIONS more per generation
    mixed = less.mixed
    assert mixed["converged"] and mixed["error"] is None and mixed["random_slope"]
    assert abs(mixed["interaction"] - difference / GENERATIONS) < 3 * mixed["interaction_se"]

    table = stats.results_table(results)
    assert table.height == 2 and table["verdict"].to_list() == ["supported", "not supported"]
    assert {"tost_ci_low", "mixed_interaction", "mixed_converged", "family"} <= set(table.columns)


# --- calibration --------------------------------------------------------------


def run_level_frame(rng: np.random.Generator, *, n_per_arm: int, difference: float, sd: float) -> pl.DataFrame:
    treatment = np.repeat([1, 0], n_per_arm)
    return pl.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(2 * n_per_arm)],
            "replicate": np.tile(np.arange(n_per_arm), 2),
            "treatment": treatment,
            "value": BASE + difference * treatment + rng.normal(0, sd, 2 * n_per_arm),
        }
    )


def test_false_positive_rate_and_ci_coverage_are_nominal():
    """The registered OLS/HC3 test, run on many datasets with a known truth."""
    n_datasets, alpha, sd = 600, 0.05, 0.02
    rng = np.random.default_rng(7)
    less = Hypothesis.model_validate(hypothesis(alpha=alpha))
    null_p = [
        stats.run_level_test(run_level_frame(rng, n_per_arm=10, difference=0.0, sd=sd), less).p_value
        for _ in range(n_datasets)
    ]
    false_positive_rate = float(np.mean(np.array(null_p) < alpha))
    difference = -0.01
    covered = [
        (test.ci_low <= difference <= test.ci_high)
        for test in (
            stats.run_level_test(run_level_frame(rng, n_per_arm=20, difference=difference, sd=sd), less)
            for _ in range(n_datasets)
        )
    ]
    coverage = float(np.mean(covered))
    print(f"false-positive rate {false_positive_rate:.3f} (alpha {alpha}), 95 % CI coverage {coverage:.3f}")
    assert abs(false_positive_rate - alpha) < 3 * math.sqrt(alpha * (1 - alpha) / n_datasets)
    assert abs(coverage - 0.95) < 3 * math.sqrt(0.95 * 0.05 / n_datasets)


def test_fast_two_arm_path_agrees_with_statsmodels_hc3():
    rng = np.random.default_rng(3)
    for n_treatment, n_reference in ((5, 9), (12, 12), (30, 7)):
        treated, reference = rng.normal(0.2, 1.0, n_treatment), rng.normal(0.0, 2.0, n_reference)
        estimate, se, df = stats.hc3_two_arm(reference, treated)
        frame = pd.DataFrame(
            {"treatment": [1] * n_treatment + [0] * n_reference, "value": np.concatenate([treated, reference])}
        )
        fit = smf.ols("value ~ treatment", frame).fit(cov_type="HC3", use_t=True)
        assert estimate == pytest.approx(fit.params["treatment"], rel=1e-10)
        assert se == pytest.approx(fit.bse["treatment"], rel=1e-10)
        assert df == fit.df_resid
        fast_p = stats.p_value(estimate, se, df, direction="two-sided", sesoi=0.0)
        assert fast_p == pytest.approx(fit.pvalues["treatment"], rel=1e-8)
        runs = pl.from_pandas(frame).with_columns(run_id=pl.int_range(pl.len()).cast(pl.String), replicate=0)
        registered = stats.run_level_test(runs, Hypothesis.model_validate(hypothesis()))
        assert registered.p_value == pytest.approx(stats.p_value(estimate, se, df, direction="less", sesoi=0.0))


# --- equivalence --------------------------------------------------------------


@pytest.mark.parametrize(("difference", "verdict"), [(0.0, "supported"), (0.02, "not supported")])
def test_equivalence_by_tost(difference, verdict):
    sesoi = 0.01
    rng = np.random.default_rng(11)
    metrics, runs = synthetic_study(rng, shifts={0.0: 0.0, 0.3: difference}, n_per_arm=12, sd=0.002, step_sd=0.0005)
    plan = make_plan(hypothesis(direction="equivalent", sesoi=sesoi))
    (result,) = stats.analyze(metrics, runs, plan, final_generation=GENERATIONS)
    assert result.verdict == verdict
    low, high = result.tost_ci
    # TOST at alpha is equivalent to the (1 - 2 alpha) CI lying inside +/- sesoi
    assert (-sesoi < low and high < sesoi) == (verdict == "supported")


# --- Holm ---------------------------------------------------------------------


def test_holm_hand_worked_example():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_holm_covers_confirmatory_hypotheses_only():
    rng = np.random.default_rng(13)
    metrics, runs = synthetic_study(rng, shifts={0.0: 0.0, 0.3: -0.01}, n_per_arm=8, sd=0.02)
    plan = make_plan(
        hypothesis(id="c1"),
        hypothesis(id="c2", direction="two-sided"),
        hypothesis(id="c3", outcome="vendi"),  # not recorded: inconclusive, still in the family with p = 1
        hypothesis(id="e1", confirmatory=False),
    )
    results = stats.analyze(metrics, runs, plan, final_generation=GENERATIONS)
    c1, c2, c3, e1 = (only(results, i) for i in ("c1", "c2", "c3", "e1"))
    np.testing.assert_allclose([c1.p_adjusted, c2.p_adjusted], stats.holm([c1.p_value, c2.p_value, 1.0])[:2])
    assert c3.verdict == "inconclusive" and math.isnan(c3.p_adjusted)
    assert math.isnan(e1.p_adjusted) and e1.p_value == c1.p_value
    for result in (c1, c2):
        assert (result.verdict == "supported") == (result.p_adjusted < 0.05)
    assert (e1.verdict == "supported") == (e1.p_value < 0.05)


# --- inconclusive -------------------------------------------------------------


def constant_study() -> tuple[pl.DataFrame, pl.DataFrame]:
    metrics, runs = synthetic_study(np.random.default_rng(0), shifts={0.0: 0.0, 0.3: 0.0}, n_per_arm=4, sd=0.0)
    return metrics.with_columns(value=pl.lit(0.5)), runs


@pytest.mark.parametrize(
    ("case", "model", "reason"),
    [
        ("identical values", "value ~ treatment", "zero variance"),
        ("one run in an arm", "value ~ treatment", "fewer than 2 runs per arm"),
        ("formula needs a missing column", "value ~ treatment + generation", "OLS fit failed"),
        ("treatment confounded with replicate", "value ~ treatment + C(replicate)", "rank deficient"),
    ],
)
def test_unanswerable_hypothesis_is_inconclusive_with_a_reason(case, model, reason):
    rng = np.random.default_rng(17)
    if case == "identical values":
        metrics, runs = constant_study()
    else:
        metrics, runs = synthetic_study(rng, shifts={0.0: 0.0, 0.3: -0.03}, n_per_arm=6, sd=0.02)
    if case == "one run in an arm":
        runs = runs.filter(~pl.col("run_id").is_in([f"share0.3-rep{k}" for k in range(1, 6)]))
    if case == "treatment confounded with replicate":
        runs = runs.with_columns(
            replicate=pl.col("replicate") + pl.when(pl.col(FACTOR) == "0.3").then(100).otherwise(0)
        )
    (result,) = stats.analyze(metrics, runs, make_plan(hypothesis(model=model)), final_generation=GENERATIONS)
    assert result.verdict == "inconclusive"
    assert reason in result.reason
    assert math.isnan(result.estimate) and math.isnan(result.p_value)
    assert isinstance(result.mixed, dict) and "converged" in result.mixed


def test_a_bug_inside_a_fit_surfaces_instead_of_reading_inconclusive(monkeypatch):
    """Only the errors of a fit that cannot be made (stats.FIT_ERRORS) become "inconclusive"."""
    metrics, runs = synthetic_study(np.random.default_rng(3), shifts={0.0: 0.0, 0.3: -0.03}, n_per_arm=6, sd=0.02)

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr("statsmodels.formula.api.ols", broken)
    with pytest.raises(TypeError, match="a bug"):
        stats.analyze(metrics, runs, make_plan(hypothesis()), final_generation=GENERATIONS)


def test_mixed_model_trouble_is_recorded_not_raised():
    metrics, runs = constant_study()
    plan = make_plan(hypothesis(id="constant"), hypothesis(id="unrecorded", outcome="vendi"))
    results = stats.analyze(metrics, runs, plan, final_generation=GENERATIONS)
    constant, unrecorded = only(results, "constant").mixed, only(results, "unrecorded").mixed
    assert any(w.startswith("ConvergenceWarning") for w in constant["warnings"])
    assert math.isnan(constant["treatment_se"])
    assert unrecorded["error"] and not unrecorded["converged"] and unrecorded["n_obs"] == 0


# --- run-level summaries -------------------------------------------------------


# run -> (llm_share, replicate, values at generations 0..3); treatment arm is llm_share 0.3
HAND_MADE = {
    "a": (0.3, 0, [1.0, 2.0, 4.0, 6.0]),
    "b": (0.3, 1, [0.0, 1.0, 1.0, 4.0]),
    "c": (0.0, 0, [5.0, 5.0, 4.0, 3.0]),
    "d": (0.0, 1, [2.0, 2.0, 2.0, 2.5]),
    "outside": (0.1, 0, [9.0, 9.0, 9.0, 9.0]),
    "nan_final": (0.3, 2, [1.0, 1.0, 1.0, float("nan")]),
}


TREATED = {"a", "b", "nan_final", "gap"}
CONTRAST_RUNS = 6  # all of HAND_MADE but "outside", plus "gap"


def hand_made() -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = [
        {"run_id": r, "condition": "c", "replicate": rep, "generation": g, "metric": OUTCOME, "value": v}
        for r, (_, rep, values) in HAND_MADE.items()
        for g, v in enumerate(values)
    ]
    levels = {r: level for r, (level, _, _) in HAND_MADE.items()}
    replicates = {r: rep for r, (_, rep, _) in HAND_MADE.items()}
    # a run of the treatment arm with no generation 2: no slope over [1, 3], but a final value
    rows += [
        {"run_id": "gap", "condition": "c", "replicate": 3, "generation": g, "metric": OUTCOME, "value": v}
        for g, v in ((0, 1.0), (1, 2.0), (3, 3.0))
    ]
    levels["gap"], replicates["gap"] = 0.3, 3
    return pl.DataFrame(rows), runs_table(levels, replicates)


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"summary": "value"}, {"a": 6.0, "b": 4.0, "c": 3.0, "d": 2.5, "gap": 3.0}),
        ({"summary": "value", "generation": 1}, {"a": 2.0, "b": 1.0, "c": 5.0, "d": 2.0, "gap": 2.0, "nan_final": 1.0}),
        ({"summary": "change"}, {"a": 5.0, "b": 4.0, "c": -2.0, "d": 0.5, "gap": 2.0}),
        ({"summary": "change", "generation": 2}, {"a": 3.0, "b": 1.0, "c": -1.0, "d": 0.0, "nan_final": 0.0}),
        ({"summary": "slope", "window": [1, 3]}, {"a": 2.0, "b": 1.5, "c": -1.0, "d": 0.25, "nan_final": float("nan")}),
        ({"summary": "slope", "window": [0, 2]}, {"a": 1.5, "b": 0.5, "c": -0.5, "d": 0.0, "nan_final": 0.0}),
    ],
)
def test_run_outcomes_summaries_on_a_hand_made_table(summary, expected):
    metrics, runs = hand_made()
    h = Hypothesis.model_validate(hypothesis(**summary))
    outcomes = stats.run_outcomes(metrics, runs, h, final_generation=3)
    finite = {r: v for r, v in expected.items() if not math.isnan(v)}
    assert dict(zip(outcomes["run_id"], outcomes["value"], strict=True)) == pytest.approx(finite)
    assert dict(zip(outcomes["run_id"], outcomes["treatment"], strict=True)) == {r: int(r in TREATED) for r in finite}
    (result,) = stats.analyze(metrics, runs, make_plan(hypothesis(**summary)), final_generation=3)
    assert result.n_dropped == CONTRAST_RUNS - len(finite)
    assert result.n_treatment + result.n_reference == len(finite)


# --- attractor ----------------------------------------------------------------


@pytest.mark.parametrize(("intercept", "slope"), [(0.5, 0.4), (1.0, -0.5)])
def test_attractor_fit_recovers_planted_fixed_point_and_strength(intercept, slope):
    # a 95 % CI misses the truth for 1 seed in 20; the coverage itself is tested below
    rng = np.random.default_rng(24)
    initial = rng.uniform(0.0, 2.0, 200)
    final = intercept + slope * initial + rng.normal(0, 0.05, initial.size)
    fit = stats.attractor_fit(initial, final)
    fixed_point, strength = intercept / (1 - slope), 1 - abs(slope)
    assert fit.fixed_point_ci[0] <= fixed_point <= fit.fixed_point_ci[1]
    assert fit.strength_ci[0] <= strength <= fit.strength_ci[1]
    assert abs(fit.b - slope) < 3 * fit.b_se
    assert fit.p_value < 1e-6 and fit.n == 200


def test_attractor_fit_intervals_cover_the_truth():
    n_datasets, intercept, slope = 400, 0.5, 0.4
    rng = np.random.default_rng(43)
    fixed_point, strength = intercept / (1 - slope), 1 - abs(slope)
    fixed_covered, strength_covered = [], []
    for _ in range(n_datasets):
        initial = rng.uniform(0.0, 2.0, 30)
        fit = stats.attractor_fit(initial, intercept + slope * initial + rng.normal(0, 0.05, initial.size))
        fixed_covered.append(fit.fixed_point_ci[0] <= fixed_point <= fit.fixed_point_ci[1])
        strength_covered.append(fit.strength_ci[0] <= strength <= fit.strength_ci[1])
    tolerance = 3 * math.sqrt(0.95 * 0.05 / n_datasets)
    assert abs(np.mean(fixed_covered) - 0.95) < tolerance
    assert abs(np.mean(strength_covered) - 0.95) < tolerance


def test_attractor_fit_does_not_call_an_expanding_map_contracting():
    rng = np.random.default_rng(29)
    initial = rng.uniform(0.0, 2.0, 100)
    fit = stats.attractor_fit(initial, 0.1 + 1.2 * initial + rng.normal(0, 0.05, initial.size))
    assert fit.strength < 0 and fit.p_value > 0.99


def test_condition_fits_keeps_the_given_order_and_skips_what_cannot_be_fitted():
    """'flat' has 4 runs but equal initial values, 'few' 2 runs, 'kept' 4 runs of which one is
    undefined (NaN) at generation 0: only 'kept' is fitted, on its 3 finite runs."""
    rows = []
    for condition, initial in (("kept", [0.1, 0.4, float("nan"), 0.9]), ("flat", [0.5] * 4), ("few", [0.1, 0.2])):
        for run, start in enumerate(initial):
            run_id = f"{condition}-{run}"
            rows += [
                (run_id, condition, 0, start),
                (run_id, condition, 5, 0.2 + 0.5 * (start if start == start else 0)),
            ]
    metrics = pl.DataFrame(rows, schema=["run_id", "condition", "generation", "value"], orient="row").with_columns(
        metric=pl.lit("vendi")
    )
    (kept,) = stats.condition_fits(metrics, "vendi", ["few", "flat", "kept"])
    assert kept.condition == "kept" and kept.fit.n == 3
    np.testing.assert_allclose(sorted(kept.initial), [0.1, 0.4, 0.9])
    assert kept.fit.b == pytest.approx(0.5) and kept.fit.a == pytest.approx(0.2)
    assert stats.condition_fits(metrics, "vendi", ["few", "flat"]) == []


# --- power --------------------------------------------------------------------


def pilot(rng: np.random.Generator, size: int, sd: float) -> np.ndarray:
    """Normal pilot values standardised to mean 0 and population SD exactly `sd`."""
    values = rng.normal(size=size)
    return sd * (values - values.mean()) / values.std()


def test_simulated_power_rises_with_n_and_matches_the_t_test():
    rng = np.random.default_rng(31)
    sd, n_sim = 0.02, 4000
    less = Hypothesis.model_validate(hypothesis(sesoi=0.01))
    table = stats.simulate_power(
        pilot(rng, 200, sd), pilot(rng, 200, sd), hypothesis=less, n_grid=[4, 8, 16, 32], n_sim=n_sim, rng=rng
    )
    power = table["power"].to_numpy()
    assert np.all(np.diff(power) > 0)
    np.testing.assert_allclose(table["mcse"], np.sqrt(power * (1 - power) / n_sim))
    # normal data, equal n: the HC3 t is the Student t times sqrt((n-1)/n)
    for n, simulated, mcse in table.select("n", "power", "mcse").iter_rows():
        critical = sps.t.ppf(0.95, 2 * n - 2) * math.sqrt(n / (n - 1))
        exact = sps.nct.sf(critical, 2 * n - 2, 0.01 / (sd * math.sqrt(2 / n)))
        assert abs(simulated - exact) < 4 * mcse + 0.01


def test_simulated_power_with_a_huge_effect_is_one():
    rng = np.random.default_rng(37)
    for direction in ("greater", "less", "two-sided"):
        h = Hypothesis.model_validate(hypothesis(direction=direction, sesoi=1.0))
        table = stats.simulate_power(
            pilot(rng, 20, 0.02), pilot(rng, 20, 0.02), hypothesis=h, n_grid=[3, 5], n_sim=500, rng=rng
        )
        assert table["power"].min() >= 0.99


def test_simulated_equivalence_power():
    rng = np.random.default_rng(41)
    h = Hypothesis.model_validate(hypothesis(direction="equivalent", sesoi=0.01))
    tight = stats.simulate_power(
        pilot(rng, 20, 0.001), pilot(rng, 20, 0.001), hypothesis=h, n_grid=[5], n_sim=500, rng=rng
    )
    assert tight["power"].item() >= 0.99
    noisy = stats.simulate_power(
        pilot(rng, 50, 0.02), pilot(rng, 50, 0.02), hypothesis=h, n_grid=[5, 40], n_sim=2000, rng=rng
    )
    assert noisy["power"][0] < 0.1 < noisy["power"][1]


def test_replicates_for_power_returns_the_first_n_reaching_the_target():
    table = pl.DataFrame({"n": [2, 4, 8, 16], "power": [0.3, 0.79, 0.85, 0.95], "mcse": [0.01] * 4})
    assert stats.replicates_for_power(table) == 8
    assert stats.replicates_for_power(table, target=0.3) == 2
    assert stats.replicates_for_power(table, target=0.99) is None


def test_hedges_g_by_hand():
    """d = 1 / pooled SD 1.2910 = 0.7746; small-sample factor 1 − 3/(4·8 − 9) = 20/23; g = 0.6736."""
    g, low, high = stats.hedges_g(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    assert g == pytest.approx((20 / 23) / math.sqrt(5 / 3), rel=1e-12)
    se = math.sqrt(8 / 16 + g**2 / (2 * (8 - 3.94)))
    assert (low, high) == pytest.approx((g - 1.959964 * se, g + 1.959964 * se), rel=1e-6)
    assert all(math.isnan(v) for v in stats.hedges_g(np.ones(4), np.ones(4)))
