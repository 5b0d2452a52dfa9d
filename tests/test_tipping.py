"""The committed-minority analysis on data with a known answer: synthetic runs drawn from a known
logistic curve (true p50 0.2, slope 25 logit per unit fraction), hand-made metrics, and the figures
and report section drawn from a small synthetic coordination study (no study run, no model)."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest
from scipy.special import expit, xlogy

from culturesim.reports.convention_figures import name_share_figure, name_shares, tipping_figure, won_by_fraction
from culturesim.reports.convention_report import convention_section, tipping_table
from culturesim.stats.tipping import compare_tipping, fieller_interval, fit_tipping, sup_loglik
from culturesim.stats.tipping_runs import run_table

TRUE_P50, TRUE_SLOPE = 0.2, 25.0
FRACTIONS = np.round(np.arange(0.0, 0.41, 0.05), 2)  # 9 levels around the tipping point
RUNS_PER_LEVEL = 10
DATASETS = 200
FRACTION, GROUP = "coordination.committed_fraction", "population.llm_share"


def simulated_runs(rng: np.random.Generator, *, p50: float = TRUE_P50, level: float | None = None) -> pl.DataFrame:
    """One run per row: the committed fraction (JSON-encoded, as runs_table stores it) and whether it won."""
    x = np.repeat(FRACTIONS, RUNS_PER_LEVEL)
    won = rng.random(x.size) < expit(TRUE_SLOPE * (x - p50))
    frame = pl.DataFrame({FRACTION: [json.dumps(float(v)) for v in x], "won": won})
    return frame if level is None else frame.with_columns(pl.lit(json.dumps(level)).alias(GROUP))


def runs_of(fractions: list[float], wins: list[bool]) -> pl.DataFrame:
    return pl.DataFrame({FRACTION: [json.dumps(f) for f in fractions], "won": [bool(w) for w in wins]})


# --- run_table -----------------------------------------------------------------------------


def long_metrics(series: dict[str, dict[str, list[float]]]) -> pl.DataFrame:
    """run -> metric -> values by generation, as the long metrics table."""
    rows = [
        {"run_id": run, "condition": "c", "generation": g, "metric": metric, "value": float(v)}
        for run, by_metric in series.items()
        for metric, values in by_metric.items()
        for g, v in enumerate(values)
    ]
    return pl.DataFrame(rows)


def test_run_table_outcomes_and_first_passage_times():
    metrics = long_metrics(
        {
            "won": {"committed_share": [0.1, 0.3, 0.95, 0.92, 0.97], "consensus": [0, 0, 1, 1, 1]},
            "other": {"committed_share": [0.1, 0.1, 0.05, 0.0, 0.0], "consensus": [0, 1, 1, 1, 1]},
            "lost_lead": {"committed_share": [0.2, 0.5, 0.91, 0.6, 0.5], "consensus": [0, 0, 1, 0, 0]},
            "never": {"committed_share": [0.3, 0.4, 0.5, 0.6, 0.7], "consensus": [0, 0, 0, 0, 0]},
            "boundary": {"committed_share": [0.0, 0.0, 0.0, 0.0, 0.9], "consensus": [0, 0, 0, 0, 1]},
        }
    )
    runs = pl.DataFrame(
        {
            "run_id": ["won", "other", "lost_lead", "never", "boundary"],
            "condition": ["c"] * 5,
            "replicate": [0, 1, 2, 3, 4],
            FRACTION: ["0.1"] * 5,
        }
    )
    table = run_table(metrics, runs, horizon=4, threshold=0.9)
    assert table.columns[:4] == runs.columns
    assert table["run_id"].to_list() == runs["run_id"].to_list()
    assert table["won"].to_list() == [True, False, False, False, True]  # share == threshold counts
    assert table["consensus_at_horizon"].to_list() == [True, True, False, False, True]
    assert table["generations_to_consensus"].to_list() == [2, 1, 2, None, 4]
    assert table["committed_generations_to_consensus"].to_list() == [2, None, 2, None, 4]
    assert table["committed_share"].to_list() == pytest.approx([0.97, 0.0, 0.5, 0.7, 0.9])
    early = run_table(metrics, runs, horizon=2, threshold=0.9)
    assert early["won"].to_list() == [True, False, True, False, False]
    with pytest.raises(ValueError, match="generation 9"):
        run_table(metrics, runs, horizon=9, threshold=0.9)
    with pytest.raises(ValueError, match="no committed_share"):
        run_table(metrics.filter(pl.col("metric") == "consensus"), runs, horizon=4, threshold=0.9)


# --- one curve -----------------------------------------------------------------------------


def test_fitted_p50_ci_covers_the_truth_about_95_percent():
    rng = np.random.default_rng(20240601)
    fits = [fit_tipping(simulated_runs(rng), fraction=FRACTION) for _ in range(DATASETS)]
    assert all(f.finite for f in fits)
    fieller = np.mean([f.ci[0] <= TRUE_P50 <= f.ci[1] for f in fits])
    delta = np.mean([f.ci_delta[0] <= TRUE_P50 <= f.ci_delta[1] for f in fits])
    # Binomial MC error of a coverage estimate from 200 datasets is about 1.5 percentage points.
    assert 0.91 <= fieller <= 0.99, fieller
    assert 0.90 <= delta <= 0.99, delta
    assert np.median([f.p50 for f in fits]) == pytest.approx(TRUE_P50, abs=0.01)
    assert np.median([f.slope for f in fits]) == pytest.approx(TRUE_SLOPE, rel=0.2)
    assert all(f.n_runs == FRACTIONS.size * RUNS_PER_LEVEL for f in fits)


def test_fieller_interval_is_unbounded_when_the_slope_is_not_significant():
    cov = np.array([[1.0, 0.0], [0.0, 4.0]])
    assert fieller_interval(-1.0, 1.0, cov) == (-math.inf, math.inf)  # |b1| / se = 0.5
    low, high = fieller_interval(-2.0, 10.0, np.diag([0.01, 0.04]))
    assert low < 0.2 < high


def test_perfect_separation_is_flagged_and_bracketed():
    complete = fit_tipping(runs_of([0.05, 0.05, 0.1, 0.1, 0.2, 0.2, 0.3], [0, 0, 0, 0, 1, 1, 1]), fraction=FRACTION)
    assert complete.status == "separation" and not complete.finite
    assert complete.bracket == (0.1, 0.2)
    assert math.isnan(complete.p50) and math.isnan(complete.slope) and math.isnan(complete.ci[0])
    assert "perfect separation" in complete.reason
    quasi = fit_tipping(runs_of([0.05, 0.1, 0.1, 0.2, 0.3], [0, 0, 1, 1, 1]), fraction=FRACTION)
    assert quasi.status == "separation" and quasi.bracket == (0.05, 0.2)
    reversed_ = fit_tipping(runs_of([0.05, 0.1, 0.2, 0.3], [1, 1, 0, 0]), fraction=FRACTION)
    assert reversed_.status == "separation" and reversed_.bracket == (0.1, 0.2)
    overlap = fit_tipping(runs_of([0.05, 0.1, 0.1, 0.2, 0.2, 0.3], [0, 0, 1, 0, 1, 1]), fraction=FRACTION)
    assert overlap.finite and overlap.slope > 0


@pytest.mark.parametrize(
    ("fractions", "wins", "status", "bracket"),
    [
        ([0.1, 0.2, 0.3], [1, 1, 1], "all_won", (-math.inf, 0.1)),
        ([0.1, 0.2, 0.3], [0, 0, 0], "none_won", (0.3, math.inf)),
        ([0.2, 0.2, 0.2], [0, 1, 1], "one_level", None),
        ([], [], "no_runs", None),
    ],
)
def test_degenerate_data_get_no_number(fractions, wins, status, bracket):
    fit = fit_tipping(runs_of(fractions, wins), fraction=FRACTION)
    assert fit.status == status and not fit.finite and fit.reason
    assert fit.bracket == bracket
    assert math.isnan(fit.p50) and math.isnan(fit.slope)


# --- groups compared --------------------------------------------------------------------------


def _compare(rng: np.random.Generator, other_p50: float) -> dict:
    runs = pl.concat([simulated_runs(rng, level=0.0), simulated_runs(rng, p50=other_p50, level=0.5)])
    table = compare_tipping(runs, fraction=FRACTION, group=GROUP)
    assert table["level"].to_list() == ["0.0", "0.5"] and table["reference"].to_list() == [True, False]
    return table.row(1, named=True)


def test_no_group_difference_rejects_at_about_alpha():
    rng = np.random.default_rng(7)
    rows = [_compare(rng, TRUE_P50) for _ in range(DATASETS)]
    size = np.mean([r["diff_p"] < 0.05 for r in rows])
    lr_size = np.mean([r["lr_p"] < 0.05 for r in rows])
    covered = np.mean([r["diff_ci_low"] <= 0 <= r["diff_ci_high"] for r in rows])
    assert 0.01 <= size <= 0.10, size
    assert 0.01 <= lr_size <= 0.10, lr_size
    assert covered == pytest.approx(1 - size)  # the CI and the z-test agree
    assert all(r["wald_p"] <= 1 for r in rows)


def test_a_group_difference_is_detected():
    rng = np.random.default_rng(8)
    rows = [_compare(rng, TRUE_P50 + 0.08) for _ in range(40)]
    assert np.mean([r["diff_p"] < 0.05 for r in rows]) >= 0.8
    assert np.mean([r["diff_ci_low"] <= 0.08 <= r["diff_ci_high"] for r in rows]) >= 0.85
    assert np.median([r["difference"] for r in rows]) == pytest.approx(0.08, abs=0.02)


def test_a_separated_group_gets_no_difference_but_a_reason():
    rng = np.random.default_rng(9)
    separated = runs_of([0.05, 0.1, 0.3, 0.4], [0, 0, 1, 1]).with_columns(pl.lit("0.5").alias(GROUP))
    table = compare_tipping(pl.concat([simulated_runs(rng, level=0.0), separated]), fraction=FRACTION, group=GROUP)
    row = table.row(1, named=True)
    assert row["status"] == "separation" and (row["bracket_low"], row["bracket_high"]) == (0.1, 0.3)
    assert math.isnan(row["difference"]) and "no finite curve" in row["reason"]


def test_a_separated_curves_supremum_likelihood_is_the_limit_of_steeper_fits():
    """Quasi-separated data (none won at 0.1, 2 of 5 at 0.2, all at 0.3): the supremum is each fraction
    fitted at its own share, approached by ever steeper curves through p = 0.4 at 0.2, never exceeded."""
    x, y = np.repeat([0.1, 0.2, 0.3], 5), np.array([0] * 5 + [1, 1, 0, 0, 0] + [1] * 5, dtype=float)
    supremum = sup_loglik(x, y)
    assert supremum == pytest.approx(5 * (0.4 * math.log(0.4) + 0.6 * math.log(0.6)))

    def loglik(b0: float, b1: float) -> float:
        p = expit(b0 + b1 * x)
        return float(np.sum(xlogy(y, p) + xlogy(1 - y, 1 - p)))

    steeper = [loglik(math.log(0.4 / 0.6) - b1 * 0.2, b1) for b1 in (10.0, 100.0, 1000.0)]
    assert steeper[0] < steeper[1] < steeper[2] <= supremum and steeper[2] == pytest.approx(supremum, abs=1e-9)
    rng = np.random.default_rng(0)
    assert all(loglik(b0, b1) <= supremum for b0, b1 in rng.normal(0, 30, size=(500, 2)))


def _steep_compare(rng: np.random.Generator, other_p50: float) -> tuple[dict, dict]:
    """Two groups on curves 60 logit units per unit fraction steep: about half the datasets have a
    separated curve."""
    runs = [
        pl.DataFrame({FRACTION: [json.dumps(float(v)) for v in x], "won": rng.random(x.size) < expit(60 * (x - p50)),
                      GROUP: [json.dumps(level)] * x.size})
        for p50, level, x in ((TRUE_P50, 0.0, np.repeat(FRACTIONS, 10)), (other_p50, 0.5, np.repeat(FRACTIONS, 10)))
    ]  # fmt: skip
    table = compare_tipping(pl.concat(runs), fraction=FRACTION, group=GROUP)
    return table.row(0, named=True), table.row(1, named=True)


def test_the_curves_equal_test_holds_its_size_and_power_when_a_curve_is_separated():
    """Where a curve has no finite fit no difference is estimated, but the likelihood-ratio test that
    the curves coincide still is (supremum likelihoods): under the null it rejects about 5 % of all
    datasets and not much more of the separated ones; a shift of the p50 from 0.2 to 0.3 it finds."""
    rng = np.random.default_rng(11)
    null = [_steep_compare(rng, TRUE_P50) for _ in range(300)]
    separated = [row for reference, row in null if reference["status"] != "ok" or row["status"] != "ok"]
    assert len(separated) > 60
    assert 0.01 <= np.mean([row["lr_p"] < 0.05 for _, row in null]) <= 0.09
    assert np.mean([row["lr_p"] < 0.05 for row in separated]) <= 0.12
    assert all(math.isnan(row["difference"]) and "supremum likelihood" in row["reason"] for row in separated)
    shifted = [row for reference, row in (_steep_compare(rng, 0.3) for _ in range(60)) if reference["status"] != "ok"]
    assert shifted and np.mean([row["lr_p"] < 0.05 for row in shifted]) >= 0.9


@pytest.mark.parametrize(("p50", "side"), [(0.33, "wholly above"), (0.2, "overlap")])
def test_a_separated_reference_still_orders_a_fitted_group_by_intervals(p50: float, side: str):
    """The reference tips between 0.15 and 0.25 (separated, no finite p50); a group whose p50 CI lies wholly
    above that bracket is said to need a larger minority, and one that overlaps it is not ordered."""
    separated = runs_of([0.1, 0.15, 0.25, 0.3] * 5, [0, 0, 1, 1] * 5).with_columns(pl.lit("0.0").alias(GROUP))
    fitted = simulated_runs(np.random.default_rng(3), p50=p50, level=0.5)
    text, _ = tipping_table(pl.concat([separated, fitted]), fraction=FRACTION, group=GROUP)
    assert side in text and ("larger committed minority" in text) == (side == "wholly above")
    assert ("the likelihood-ratio test that the curves coincide: p = " in text) == (side == "wholly above")


# --- figures and report ----------------------------------------------------------------------


def synthetic_study(rng: np.random.Generator, *, generations: int = 8, replicates: int = 6):
    """metrics and runs of a coordination study over committed fraction x LLM share; names A (committed), B, C."""
    runs, rows = [], []
    for f in (0.1, 0.2, 0.3):
        for s in (0.0, 0.5):
            for rep in range(replicates):
                run_id = f"f{f}-s{s}-r{rep}"
                runs.append((run_id, f"committed_fraction={f},llm_share={s}", rep, json.dumps(f), json.dumps(s)))
                won = rng.random() < expit(TRUE_SLOPE * (f - TRUE_P50))
                end = np.linspace(0, 1, generations + 1)
                a = f + (0.97 - f) * end if won else f * (1 - end) + 0.01
                b = (1 - a) * 0.8
                values = {"name_share:A": a, "name_share:B": b, "name_share:C": 1 - a - b, "committed_share": a}
                values["consensus"] = (np.maximum(a, b) >= 0.9).astype(float)
                llm = np.full(generations + 1, np.nan if s == 0 else 1.0)
                values |= {
                    "llm_valid_share": llm * 0.95,
                    "llm_first_option_share": llm * 0.8,
                    "llm_matches_partner_last": llm * 0.5,
                    "llm_best_response_share": llm * 0.6,
                }
                for metric, series in values.items():
                    rows += [(run_id, g, metric, float(v)) for g, v in enumerate(series)]
    metrics = pl.DataFrame(rows, schema=["run_id", "generation", "metric", "value"], orient="row")
    columns = ["run_id", "condition", "replicate", FRACTION, GROUP]
    return metrics, pl.DataFrame(runs, schema=columns, orient="row")


def _gids(ax) -> set[str]:
    return {line.get_gid() for line in ax.get_lines() if line.get_gid()}


def test_name_shares_find_the_strongest_other_name():
    metrics, _ = synthetic_study(np.random.default_rng(1), replicates=1)
    shares = name_shares(metrics).join(
        metrics.filter(pl.col("metric") == "name_share:B").select("run_id", "generation", b="value"),
        on=["run_id", "generation"],
    )
    expected = np.maximum(shares["b"].to_numpy(), 1 - shares["committed"].to_numpy() - shares["b"].to_numpy())
    assert shares["other"].to_numpy() == pytest.approx(expected)


def test_name_share_figure_draws_one_line_per_fraction_and_name_in_each_panel():
    metrics, runs = synthetic_study(np.random.default_rng(2))
    fig = name_share_figure(metrics, runs, threshold=0.9)
    axes = fig.get_axes()
    assert len(axes) == 2  # one panel per LLM share
    for ax in axes:
        expected = {f"{name}:{f:g}" for name in ("committed", "other") for f in (0.1, 0.2, 0.3)}
        assert expected | {"threshold"} == _gids(ax)
        assert len(ax.get_lines()[0].get_xdata()) == 9  # generations 0..8
    plt.close(fig)


def test_tipping_figure_draws_points_curves_and_p50_per_group():
    rng = np.random.default_rng(3)
    outcomes = pl.concat([simulated_runs(rng, level=0.0), simulated_runs(rng, p50=0.3, level=0.5)])
    fig = tipping_figure(outcomes, fraction=FRACTION, group=GROUP)
    (ax,) = fig.get_axes()
    expected = {f"{kind}:{level}" for kind in ("points", "curve", "p50", "p50_ci") for level in ("0.0", "0.5")}
    assert expected <= _gids(ax)
    points = won_by_fraction(outcomes.filter(pl.col(GROUP) == "0.0"), fraction=FRACTION)
    assert points["runs"].to_list() == [RUNS_PER_LEVEL] * FRACTIONS.size
    assert ((points["low"] <= points["share"]) & (points["share"] <= points["high"])).all()
    plt.close(fig)
    separated = runs_of([0.05, 0.1, 0.3, 0.4], [0, 0, 1, 1])
    fig = tipping_figure(separated, fraction=FRACTION)
    (ax,) = fig.get_axes()
    assert "curve:all runs" not in _gids(ax) and "points:all runs" in _gids(ax)
    assert any(c.get_gid() == "bracket:all runs" for c in ax.collections)
    plt.close(fig)


def test_convention_section_reports_tipping_outcomes_and_bad_play():
    metrics, runs = synthetic_study(np.random.default_rng(4))
    text, figures = convention_section((metrics, runs))
    assert set(figures) == {"tipping.png", "name_shares.png"}
    assert "| llm_share=0.0 |" in text and "| llm_share=0.5 |" in text
    assert "95 % CI (Fieller)" in text and "committed name won" in text
    assert "**the model plays badly**" in text and "first-listed option 80%" in text
    assert "1/K = 0.333" in text
    for fig in figures.values():
        plt.close(fig)


def test_convention_section_reads_a_results_folder(tmp_path):
    metrics, runs = synthetic_study(np.random.default_rng(5), replicates=2)
    metrics.write_parquet(tmp_path / "metrics.parquet")
    manifest = {
        "config": {"coordination": {"win_share": 0.8, "names": list("ABCD")}},
        "runs": [
            {
                "run_id": r["run_id"],
                "condition": r["condition"],
                "replicate": r["replicate"],
                "levels": {FRACTION: json.loads(r[FRACTION]), GROUP: json.loads(r[GROUP])},
            }
            for r in runs.iter_rows(named=True)
        ],
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    text, figures = convention_section(tmp_path, horizon=4)
    assert "holds at least 0.8 of the agents" in text and "generation T = 4" in text
    assert "with 4 names" in text and "1/K = 0.250" in text
    for fig in figures.values():
        plt.close(fig)
