"""Seaborn figures drawn from results tables, in one publication theme."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

METRIC_LABELS = {
    "semantic_diversity": "semantic diversity (mean cosine distance)",
    "vendi": "Vendi score (effective number of texts)",
    "distinct_traits": "distinct variants",
    "machine_ancestry": "machine ancestry share",
    "centroid_drift": "centroid drift (1 − cosine)",
}


def apply_theme() -> None:
    """Readable at single-column width, colour-blind-safe palette, no chart junk."""
    sns.set_theme(context="paper", style="ticks", palette="colorblind", font_scale=1.1)


def trajectories(metrics: pl.DataFrame, metric: str = "semantic_diversity") -> plt.Figure:
    """Mean of one metric over generations per condition, with 95 % CI bands across replicates."""
    apply_theme()
    data = metrics.filter(pl.col("metric") == metric).select("generation", "condition", "value").to_pandas()
    if data.empty:
        raise ValueError(f"metric {metric!r} is not in the results; recorded: {sorted(metrics['metric'].unique())}")
    fig, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
    sns.lineplot(data=data, x="generation", y="value", hue="condition", errorbar=("ci", 95), marker="o", ax=ax)
    ax.set(xlabel="generation", ylabel=METRIC_LABELS.get(metric, metric))
    ax.legend(title="condition", frameon=False)
    sns.despine(fig)
    return fig
