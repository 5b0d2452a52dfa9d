"""The report section of a coordination (naming-game) study: does a committed minority tip the
population, from what size, does that depend on the LLM agents present, and how well does the
built-in model play the game?

`convention_section` returns Markdown and the figures it refers to (file name -> Figure), for
`analysis_report` to place; it writes nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from culturesim.reports.convention_figures import (
    FRACTION_FACTOR,
    NAME_SHARE_PREFIX,
    name_share_figure,
    tipping_figure,
)
from culturesim.stats.tipping import compare_tipping, group_levels
from culturesim.stats.tipping_runs import decode_level, factor_values, run_table
from culturesim.study.store import read_manifest, require_files, runs_table

GROUP_FACTOR = "population.llm_share"
DEFAULT_WIN_SHARE = 0.5  # the [coordination] default: the committed name held by half the agents has won
LLM_METRICS = {
    "llm_valid_share": "valid answers",
    "llm_first_option_share": "first listed option",
    "llm_matches_partner_last": "plays partner's last name",
    "llm_best_response_share": "best response to memory",
}
# When the report calls the model's play bad (shares of its valid answers, except the first):
MIN_VALID_SHARE = 0.9  # more than 1 request in 10 without a usable name wastes games (they go void)
POSITION_BIAS_RATIO = 1.5  # choosing the first-listed option 1.5x as often as chance (1/K)
MIN_BEST_RESPONSE = 0.5  # best-responding less than half the time: a coordination player should mostly


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def _label(group: str | None, level: str) -> str:
    return "all runs" if group is None else f"{group.rsplit('.', 1)[-1]}={decode_level(level)}"


def _interval(low: float, high: float) -> str:
    if math.isinf(low) and math.isinf(high):
        return "unbounded"
    return f"[{_num(low)}, {_num(high)}]"


# --- inputs ----------------------------------------------------------------------------


def _read_folder(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """metrics, runs and the stored [coordination] table (empty if the config has none)."""
    require_files(folder, ("manifest.json", "metrics.parquet"))
    manifest = read_manifest(folder)
    settings = manifest.get("config", {}).get("coordination") or {}
    return pl.read_parquet(folder / "metrics.parquet"), runs_table(manifest), settings


def _grouping(runs: pl.DataFrame, group: str | None) -> str | None:
    """The grouping factor if the study varies it, else None (one curve for all runs)."""
    if group is None or group not in runs.columns or runs[group].n_unique() < 2:
        return None
    return group


# --- tables ------------------------------------------------------------------------------


def tipping_table(outcomes: pl.DataFrame, *, fraction: str, group: str | None) -> tuple[str, pl.DataFrame]:
    """Markdown table of one tipping curve per group (p50, Fieller and delta CIs, slope, runs,
    wins, and the difference from the reference group with its p-values), and the comparison frame."""
    keyed = outcomes if group else outcomes.with_columns(pl.lit("all runs").alias("_all"))
    comparison = compare_tipping(keyed, fraction=fraction, group=group or "_all")
    header = (
        "| group | runs | wins | p50 | 95 % CI (Fieller) | 95 % CI (delta) | slope (logit / unit fraction) "
        "| difference vs reference [95 % CI] | p (difference) | p (curves equal, LR / Wald) |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows, notes = [], []
    for r in comparison.iter_rows(named=True):
        label = _label(group, r["group"])
        if r["status"] == "ok":
            p50 = _num(r["p50"])
            ci, delta = _interval(r["ci_low"], r["ci_high"]), _interval(r["delta_ci_low"], r["delta_ci_high"])
            slope = f"{_num(r['slope'], 1)} (SE {_num(r['slope_se'], 1)})"
        else:
            low, high = r["bracket_low"], r["bracket_high"]
            p50 = "no finite fit" if math.isnan(low) else f"in [{_num(low)}, {_num(high)}]"
            ci = delta = slope = "–"
        if r["reference"]:
            difference = "reference" if group else "–"
            p_diff = p_equal = "–"
        else:
            difference = f"{_num(r['difference'])} [{_num(r['diff_ci_low'])}, {_num(r['diff_ci_high'])}]"
            p_diff, p_equal = _p(r["diff_p"]), f"{_p(r['lr_p'])} / {_p(r['wald_p'])}"
        rows.append(
            f"| {label} | {r['n_runs']} | {r['wins']} | {p50} | {ci} | {delta} | {slope} "
            f"| {difference} | {p_diff} | {p_equal} |"
        )
        if r["reason"]:
            notes.append(f"- {label}: {r['reason']}")
    notes += _ordering_notes(comparison, group)
    return header + "\n".join(rows) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else ""), comparison


def _ordering_notes(comparison: pl.DataFrame, group: str | None) -> list[str]:
    """Where a group has no finite curve (separation) its p50 still lies in a bracket: a non-reference
    level whose curve or bracket lies wholly on one side of the reference's says which needs the larger
    committed minority, an ordering of intervals rather than a test (no difference can be estimated); the
    likelihood-ratio test that the curves coincide, which separation leaves defined, is quoted beside it."""
    rows = comparison.to_dicts()
    reference = next((r for r in rows if r["reference"]), None)
    if group is None or reference is None:
        return []
    notes = []
    for row in rows:
        if row["reference"] or (row["status"] == "ok" and reference["status"] == "ok"):
            continue
        mine, theirs = _p50_range(row), _p50_range(reference)
        if mine is None or theirs is None:
            continue
        label, ref_label = _label(group, row["group"]), _label(group, reference["group"])
        if mine[0] > theirs[1]:
            side = "above"
            meaning = "a larger committed minority is needed to tip it"
        elif mine[1] < theirs[0]:
            side = "below"
            meaning = "a smaller committed minority tips it"
        else:
            notes.append(f"- {label} vs {ref_label}: their p50 ranges overlap; the data do not order them")
            continue
        test = (
            ""
            if math.isnan(row["lr_p"])
            else f"; the likelihood-ratio test that the curves coincide: p = {_p(row['lr_p'])}"
        )
        notes.append(
            f"- {label} vs {ref_label}: p50 of {label} lies in [{_num(mine[0])}, {_num(mine[1])}], wholly {side} "
            f"[{_num(theirs[0])}, {_num(theirs[1])}] for {ref_label}: {meaning} (an ordering of intervals, "
            f"not a test of the p50s{test})"
        )
    return notes


def _p50_range(row: dict[str, Any]) -> tuple[float, float] | None:
    """A group's 95 % CI of p50 (finite fit) or its bracket (separation); None where neither is finite."""
    low, high = (row["ci_low"], row["ci_high"]) if row["status"] == "ok" else (row["bracket_low"], row["bracket_high"])
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return None
    return float(low), float(high)


def outcome_counts(outcomes: pl.DataFrame, *, fraction: str, group: str | None) -> str:
    """Markdown table: per group and committed fraction, how the runs ended at the horizon."""
    table = outcomes.with_columns(
        _group=pl.col(group).cast(pl.String) if group else pl.lit("all runs"),
        _fraction=pl.Series(factor_values(outcomes, fraction)) if fraction in outcomes.columns else pl.lit(math.nan),
    )
    counts = (
        table.group_by("_group", "_fraction")
        .agg(
            runs=pl.len(),
            won=pl.col("won").sum(),
            other=(pl.col("consensus_at_horizon") & ~pl.col("won")).sum(),
            none=(~pl.col("consensus_at_horizon") & ~pl.col("won")).sum(),
            median=pl.col("committed_generations_to_consensus").median(),
        )
        .sort("_fraction")
    )
    order = group_levels(table, "_group") if group else ["all runs"]
    header = (
        "| group | committed fraction | runs | committed name won | consensus on another name "
        "| no consensus | median generations to committed consensus |\n|---|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| {_label(group, r['_group'])} | {_num(r['_fraction'], 3)} | {r['runs']} | {r['won']} | {r['other']} "
        f"| {r['none']} | {_num(r['median'], 1)} |"
        for level in order
        for r in counts.filter(pl.col("_group") == level).iter_rows(named=True)
    ]
    return header + "\n".join(rows) + "\n"


def llm_play(metrics: pl.DataFrame, runs: pl.DataFrame, *, group: str | None, n_names: int) -> str:
    """Markdown: the built-in model's play per group (means over runs of each run's mean over
    generations, NaN generations skipped), against chance, with a plain verdict."""
    present = [m for m in LLM_METRICS if m in set(metrics["metric"].unique().to_list())]
    values = metrics.filter(pl.col("metric").is_in(present), pl.col("value").is_finite())
    if values.is_empty():
        return "No LLM agent answered in this study: nothing to say about the model as a player.\n"
    keys = runs.select("run_id", _group=pl.col(group).cast(pl.String) if group else pl.lit("all runs"))
    per_run = (
        values.group_by("run_id", "metric")
        .agg(pl.col("value").mean())
        .join(keys, on="run_id", how="inner")
        .group_by("_group", "metric")
        .agg(pl.col("value").mean(), runs=pl.len())
    )
    chance = 1 / n_names if n_names > 0 else math.nan
    header = (
        "| group | runs | "
        + " | ".join(LLM_METRICS[m] for m in present)
        + " |\n|---|---|"
        + "---|" * len(present)
        + "\n"
    )
    rows, verdicts = [], []
    for level in group_levels(per_run, "_group"):
        means = {r["metric"]: r for r in per_run.filter(pl.col("_group") == level).iter_rows(named=True)}
        label = _label(group, level)
        runs_with = max(r["runs"] for r in means.values())
        rows.append(f"| {label} | {runs_with} | " + " | ".join(_num(_mean(means, m)) for m in present) + " |")
        verdicts.append(f"- {label}: {_verdict(means, chance)}")
    note = (
        f"\nShares of the model's requests (valid answers) or of its valid answers (the rest); with "
        f"{n_names} names, a choice blind to the list picks the first option with probability 1/K = {_num(chance)}.\n\n"
    )
    return header + "\n".join(rows) + "\n" + note + "\n".join(verdicts) + "\n"


def _mean(means: dict[str, dict[str, Any]], metric: str) -> float:
    return float(means[metric]["value"]) if metric in means else math.nan


def _verdict(means: dict[str, dict[str, Any]], chance: float) -> str:
    """Plain words on how the model played: what is wrong, or that nothing is."""
    valid = _mean(means, "llm_valid_share")
    first = _mean(means, "llm_first_option_share")
    best = _mean(means, "llm_best_response_share")
    problems = []
    if valid < MIN_VALID_SHARE:
        problems.append(f"only {valid:.0%} of its answers named a valid option (games with an invalid move are void)")
    if first > POSITION_BIAS_RATIO * chance:
        problems.append(f"it picks the first-listed option {first:.0%} of the time against {chance:.0%} by chance")
    if best < MIN_BEST_RESPONSE:
        problems.append(f"it plays a best response to its memory only {best:.0%} of the time")
    if problems:
        return "**the model plays badly**: " + "; ".join(problems) + "."
    checked = sum(not math.isnan(v) for v in (valid, first, best))
    return "no sign of bad play" + ("" if checked == 3 else f" in the {checked} diagnostics recorded") + "."


# --- the section --------------------------------------------------------------------------


def convention_section(
    source: Path | tuple[pl.DataFrame, pl.DataFrame],
    *,
    horizon: int | None = None,
    threshold: float | None = None,
    fraction: str = FRACTION_FACTOR,
    group: str | None = GROUP_FACTOR,
    n_names: int | None = None,
) -> tuple[str, dict[str, plt.Figure]]:
    """Markdown of a coordination study's section and its figures ("tipping.png", "name_shares.png").

    `source` is a results folder (reads metrics.parquet, and from manifest.json the runs with their
    condition levels and the stored [coordination] table: `win_share` as the default threshold,
    `names` for K) or a pair (metrics, runs): `metrics` the long table (run_id, generation, metric,
    value) with committed_share, consensus, name_share:<name> and, where LLM agents play, the
    llm_* diagnostics; `runs` as `study.store.runs_table` makes it (run_id, condition, replicate,
    factor levels JSON-encoded). `horizon` T defaults to the last generation recorded, `threshold`
    (share of agents) to the study's win_share or DEFAULT_WIN_SHARE, `n_names` (K) to the number
    of name_share metrics. `fraction` is the factor holding the committed fraction; `group` the
    factor to compare curves across (ignored when the study does not vary it).
    """
    if isinstance(source, tuple):
        (metrics, runs), settings = source, {}
    else:
        metrics, runs, settings = _read_folder(Path(source))
    horizon = int(metrics["generation"].max()) if horizon is None else horizon
    threshold = float(settings.get("win_share", DEFAULT_WIN_SHARE)) if threshold is None else threshold
    if n_names is None:
        names = settings.get("names")
        shares = metrics.filter(pl.col("metric").str.starts_with(NAME_SHARE_PREFIX))["metric"].n_unique()
        n_names = len(names) if names else shares
    group = _grouping(runs, group)
    outcomes = run_table(metrics, runs, horizon=horizon, threshold=threshold)
    parts = [
        "## Coordination: the committed minority\n\n",
        f"{outcomes.height} runs. A run is **won** when the committed name holds at least {threshold:g} of "
        f"the agents (with a name) at generation T = {horizon}.\n",
    ]
    figures: dict[str, plt.Figure] = {}
    varied = fraction in runs.columns and np.unique(factor_values(runs, fraction)).size > 1
    parts.append("\n### Tipping point\n\n")
    if varied:
        table, _ = tipping_table(outcomes, fraction=fraction, group=group)
        parts.append(
            "p50 is the committed fraction (share of agents) at which half the runs are won, from a "
            "logistic regression (GLM Binomial, logit) of won on the committed fraction, one per group. "
            "The reported 95 % CI is Fieller's (unbounded when the slope is not distinguishable from 0); "
            "the delta method's is beside it. The difference is p50 of the group minus p50 of the "
            "reference (negative: a smaller committed minority tips it), from the joint GLM "
            "`won ~ fraction * C(group)` with a delta-method CI and z-test; the last column tests that "
            "the two curves coincide (likelihood ratio / Wald, 2 df).\n\n" + table
        )
        figures["tipping.png"] = tipping_figure(outcomes, fraction=fraction, group=group, threshold=threshold)
        parts.append("\n![share of runs won against the committed fraction](tipping.png)\n")
    else:
        parts.append(f"The study does not vary `{fraction}`: there is no curve to fit.\n")
    parts.append("\n### Outcomes per run\n\n" + outcome_counts(outcomes, fraction=fraction, group=group))
    figures["name_shares.png"] = name_share_figure(metrics, runs, fraction=fraction, panel=group, threshold=threshold)
    parts.append("\n![share of the committed name over generations](name_shares.png)\n")
    parts.append("\n### The built-in model as a player\n\n" + llm_play(metrics, runs, group=group, n_names=n_names))
    return "".join(parts), figures
