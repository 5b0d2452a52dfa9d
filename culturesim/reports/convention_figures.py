"""Figures of a coordination (naming-game) study, in the theme of `culturesim.reports.figures`.

`name_share_figure`: how the committed name spreads, generation by generation, for each committed
fraction. `tipping_figure`: the share of runs the committed minority won against its size, with the
fitted logistic curves and tipping points of `culturesim.stats.tipping`. Both take polars tables
and return a Figure; nothing is saved here. Lines carry a `gid` ("committed:<fraction>",
"curve:<group>", ...) so tests and paper scripts can find them.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.lines import Line2D
from scipy import stats as sps
from scipy.special import expit
from statsmodels.stats.proportion import proportion_confint

from culturesim.reports.figures import COLUMN_WIDTH, _generation_axis, _grid, in_theme
from culturesim.stats.inference import CI_LEVEL
from culturesim.stats.tipping import fit_tipping, group_levels
from culturesim.stats.tipping_runs import COMMITTED_SHARE, decode_level, factor_values

NAME_SHARE_PREFIX = "name_share:"
FRACTION_FACTOR = "coordination.committed_fraction"
ALL_RUNS = "all runs"
_CURVE_POINTS = 200
_P50_BAR_SPACING = 0.04  # vertical offset between groups' p50 bars around y = 1/2 (share of runs)
_DODGE = 0.12  # horizontal offset between groups' points, as a share of the smallest gap between fractions


# --- data ----------------------------------------------------------------------------------


def name_shares(metrics: pl.DataFrame) -> pl.DataFrame:
    """run_id, generation, committed, other: the share of agents (with a current name) holding the
    committed name, and the largest share held by any other name.

    The committed name need not be known: the largest share after setting aside one name whose
    share equals committed_share is the largest other name's (ties give the same value either way).
    """
    shares = (
        metrics.filter(pl.col("metric").str.starts_with(NAME_SHARE_PREFIX))
        .select("run_id", "generation", pl.col("value").cast(float).fill_nan(None))
        .group_by("run_id", "generation")
        .agg(
            top=pl.col("value").max(), second=pl.col("value").sort(descending=True, nulls_last=True).slice(1, 1).first()
        )
    )
    committed = metrics.filter(pl.col("metric") == COMMITTED_SHARE).select(
        "run_id", "generation", committed=pl.col("value").cast(float).fill_nan(None)
    )
    if committed.is_empty():
        raise ValueError("metrics has no committed_share rows: not a coordination study with a committed name")
    top_is_committed = (pl.col("top") - pl.col("committed")).abs() < 1e-12
    return (
        committed.join(shares, on=["run_id", "generation"], how="left")
        .with_columns(
            other=pl.when(top_is_committed).then(pl.col("second").fill_null(0.0)).otherwise(pl.col("top")),
        )
        .select("run_id", "generation", "committed", "other")
        .sort("run_id", "generation")
    )


def facet_factors(runs: pl.DataFrame, exclude: tuple[str, ...]) -> list[str]:
    """Factor columns of a runs table (beyond run_id, condition, replicate and `exclude`) with more than one level."""
    fixed = {"run_id", "condition", "replicate", *exclude}
    return [c for c in runs.columns if c not in fixed and runs[c].n_unique() > 1]


def _facet_labels(runs: pl.DataFrame, factors: list[str]) -> pl.Series:
    """One facet label per run: "llm_share=0.25" (several factors joined by ", ")."""
    if not factors:
        return pl.Series("facet", [ALL_RUNS] * runs.height)
    labels = [
        ", ".join(f"{f.rsplit('.', 1)[-1]}={decode_level(v)}" for f, v in zip(factors, row, strict=True))
        for row in runs.select(factors).iter_rows()
    ]
    return pl.Series("facet", labels)


def _mean_band(values: pl.Expr) -> list[pl.Expr]:
    """Mean, standard deviation (0 with one run) and number of runs: what `_band_line` draws."""
    n = values.drop_nulls().len()
    return [values.mean().alias("mean"), values.std().fill_null(0.0).alias("sd"), n.alias("n")]


# --- name shares over generations ---------------------------------------------------------


@in_theme
def name_share_figure(
    metrics: pl.DataFrame,
    runs: pl.DataFrame,
    *,
    fraction: str = FRACTION_FACTOR,
    panel: str | None = None,
    threshold: float | None = None,
) -> plt.Figure:
    """Share of agents holding the committed name (solid) and the strongest other name (dashed)
    over generations: one colour per committed fraction, mean over its runs with a 95 % t band
    (mean ± t·sd/√n across runs, clipped to [0, 1]), one panel per level of `panel` (default: every other factor
    that varies, e.g. population.llm_share). `threshold` (a share) draws the consensus line.

    `runs` is `runs_table(manifest)` (run_id, condition, replicate, factor levels); a study that
    does not vary `fraction` gets one line per panel.
    """
    has_fraction = fraction in runs.columns
    fractions = factor_values(runs, fraction) if has_fraction else np.full(runs.height, np.nan)
    facets = [panel] if panel else facet_factors(runs, (fraction,))
    keyed = runs.select("run_id").with_columns(_facet_labels(runs, facets), fraction=pl.Series(fractions))
    data = name_shares(metrics).join(keyed, on="run_id", how="inner")
    if data.is_empty():
        raise ValueError("no run of `runs` has name shares in `metrics`")
    summary = (
        data.unpivot(
            index=["facet", "fraction", "generation", "run_id"], on=["committed", "other"], variable_name="name"
        )
        .group_by("facet", "fraction", "name", "generation")
        .agg(_mean_band(pl.col("value")))
        .sort("generation")
    )
    panels = list(dict.fromkeys(keyed["facet"].to_list()))
    levels = sorted({float(v) for v in fractions if math.isfinite(v)}) or [math.nan]
    colours = sns.color_palette("viridis", len(levels))
    rows, columns = _grid(len(panels))
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(COLUMN_WIDTH, 0.9 + rows * (2.6 if columns == 1 else COLUMN_WIDTH / columns)),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, facet in zip(axes.flat, panels, strict=False):
        for level, colour in zip(levels, colours, strict=True):
            for name, style in (("committed", "-"), ("other", "--")):
                _band_line(ax, summary, facet, level, name, style=style, colour=colour)
        if threshold is not None:
            ax.axhline(threshold, color="0.5", lw=0.7, ls=":", gid="threshold")
        ax.set(ylim=(-0.02, 1.02), xlabel="generation", ylabel="share of agents\n(current name)")
        ax.set_title(facet if len(panels) > 1 else "", fontsize="small")
        _generation_axis(ax)
        ax.label_outer()
    for ax in axes.flat[len(panels) :]:
        ax.remove()
    handles = [
        Line2D([], [], color=c, label="not varied" if math.isnan(v) else f"{v:g}")
        for v, c in zip(levels, colours, strict=True)
    ]
    handles += [
        Line2D([], [], color="0.3", ls="-", label="committed name"),
        Line2D([], [], color="0.3", ls="--", label="strongest other"),
    ]
    fig.legend(handles=handles, title="committed fraction", loc="outside lower center", ncols=min(len(handles), 4))
    return fig


def _band_line(
    ax: plt.Axes, summary: pl.DataFrame, facet: str, level: float, name: str, *, style: str, colour: object
) -> None:
    same_level = pl.col("fraction").is_nan() if math.isnan(level) else pl.col("fraction") == level
    rows = summary.filter(pl.col("facet") == facet, same_level, pl.col("name") == name)
    if rows.is_empty():
        return
    x, mean = rows["generation"].to_numpy(), rows["mean"].to_numpy()
    n = rows["n"].to_numpy()
    t = np.where(n > 1, sps.t.ppf(0.5 + CI_LEVEL / 2, np.maximum(n - 1, 1)), 0.0)
    half = t * rows["sd"].to_numpy() / np.sqrt(np.maximum(n, 1))
    ax.fill_between(x, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1), color=colour, alpha=0.2, lw=0)
    ax.plot(x, mean, color=colour, ls=style, lw=1.2, gid=f"{name}:{level:g}")


# --- tipping curves ----------------------------------------------------------------------


def won_by_fraction(outcomes: pl.DataFrame, *, fraction: str, won: str = "won") -> pl.DataFrame:
    """fraction, runs, wins, share, low, high: the share of runs won at each committed fraction
    with its 95 % Wilson interval (a share of runs)."""
    table = pl.DataFrame({"fraction": factor_values(outcomes, fraction), "won": outcomes[won].cast(pl.Float64)})
    counts = (
        table.drop_nans()
        .drop_nulls()
        .group_by("fraction")
        .agg(runs=pl.len(), wins=pl.col("won").sum().cast(pl.Int64))
        .sort("fraction")
    )
    low, high = proportion_confint(counts["wins"].to_numpy(), counts["runs"].to_numpy(), 1 - CI_LEVEL, "wilson")
    # At 0 or all wins a Wilson bound can miss the share by a rounding error: it must hold the share.
    share = pl.col("wins") / pl.col("runs")
    return counts.with_columns(
        share=share,
        low=pl.min_horizontal(pl.Series(np.atleast_1d(low)), share),
        high=pl.max_horizontal(pl.Series(np.atleast_1d(high)), share),
    )


@in_theme
def tipping_figure(
    outcomes: pl.DataFrame,
    *,
    fraction: str = FRACTION_FACTOR,
    group: str | None = None,
    won: str = "won",
    threshold: float | None = None,
) -> plt.Figure:
    """Share of runs won against the committed fraction, one colour per level of `group`: points
    with 95 % Wilson intervals, the fitted logistic curve, its tipping point p50 (diamond at 1/2)
    and p50's 95 % Fieller CI as a horizontal bar (arrows where it is unbounded). A group without
    a finite fit shows its points and, where the data give one, the bracket holding p50 (hatched).

    `outcomes` is `culturesim.stats.tipping_runs.run_table`'s output (one row per run, with `won`);
    `threshold` the share of agents on the committed name that made a run won (for the axis label).
    """
    levels = group_levels(outcomes, group) if group else [ALL_RUNS]
    palette = sns.color_palette("colorblind", max(len(levels), 1))
    x_all = factor_values(outcomes, fraction)
    x_all = x_all[np.isfinite(x_all)]
    if x_all.size == 0:
        raise ValueError(f"no run has a value of {fraction!r}")
    lo, hi = float(x_all.min()), float(x_all.max())
    pad = 0.05 * (hi - lo or 1.0)
    gaps = np.diff(np.unique(x_all))
    dodge = _DODGE * (gaps.min() if gaps.size else 0.0)  # side by side, so groups' error bars stay apart
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 3.2), layout="constrained")
    ax.axhline(0.5, color="0.6", lw=0.6, ls=":")
    for i, level in enumerate(levels):
        subset = outcomes if group is None else outcomes.filter(pl.col(group).cast(pl.String) == level)
        label = level if group is None else f"{decode_level(level)}"
        colour = palette[i]
        points = won_by_fraction(subset, fraction=fraction, won=won)
        x = points["fraction"].to_numpy()
        share = points["share"].to_numpy()
        yerr = np.vstack([share - points["low"].to_numpy(), points["high"].to_numpy() - share])
        shift = dodge * (i - (len(levels) - 1) / 2)
        bars = ax.errorbar(x + shift, share, yerr=yerr, fmt="o", ms=4, color=colour, capsize=2, lw=0.8, label=label)
        bars.lines[0].set_gid(f"points:{label}")
        fit = fit_tipping(subset, fraction=fraction, won=won)
        y_bar = 0.5 + _P50_BAR_SPACING * (i - (len(levels) - 1) / 2)
        if fit.finite:
            grid = np.linspace(lo - pad, hi + pad, _CURVE_POINTS)
            ax.plot(grid, expit(fit.intercept + fit.slope * grid), color=colour, lw=1.2, gid=f"curve:{label}")
            _interval(ax, fit.ci, y_bar, colour, (lo - pad, hi + pad), gid=f"p50_ci:{label}")
            ax.plot([fit.p50], [y_bar], marker="D", ms=5, color=colour, mec="black", mew=0.5, gid=f"p50:{label}")
        elif fit.bracket is not None:
            low, high = (min(max(v, lo - pad), hi + pad) for v in fit.bracket)
            ax.fill_between(
                [low, high], y_bar - 0.012, y_bar + 0.012, color=colour, alpha=0.3, hatch="///", gid=f"bracket:{label}"
            )
    ax.set(
        xlim=(lo - pad, hi + pad),
        ylim=(-0.03, 1.03),
        xlabel="committed fraction (share of agents)",
        ylabel="share of runs won"
        if threshold is None
        else f"share of runs won\n(committed name ≥ {threshold:g} of agents)",
    )
    if group is not None:
        ax.legend(title=group.rsplit(".", 1)[-1], fontsize="small", loc="upper left")
    return fig


def _interval(
    ax: plt.Axes, ci: tuple[float, float], y: float, colour: object, window: tuple[float, float], *, gid: str
) -> None:
    """A CI bar at height y, clipped to the window; an open end (unbounded CI) gets an arrow."""
    low, high = max(ci[0], window[0]), min(ci[1], window[1])
    ax.plot([low, high], [y, y], color=colour, lw=2.5, alpha=0.7, solid_capstyle="butt", gid=gid)
    for end, direction, is_open in ((low, "<", ci[0] < window[0]), (high, ">", ci[1] > window[1])):
        if is_open:
            ax.plot([end], [y], marker=direction, ms=5, color=colour)
