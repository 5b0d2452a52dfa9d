"""Publication figures drawn from results tables, in one theme.

Every function takes polars tables or arrays and returns a matplotlib Figure sized for
one journal column; nothing is saved here (`culturesim.reports.figure_set` writes files).
Author kinds are always grouped, coloured and ordered the same way, so a colour
means the same thing in every figure of a paper.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Literal

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import polars as pl
import seaborn as sns
from cycler import cycler
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from culturesim.core.vocabulary import MODEL_KEYS
from culturesim.parts.network import Network

if TYPE_CHECKING:
    from culturesim.stats import AttractorFit

EmbedFn = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, d) embeddings

COLUMN_WIDTH = 4.5  # inches: one journal column
# Axis labels with units, broken to fit a single-column figure.
METRIC_LABELS = {
    "semantic_diversity": "semantic diversity\n(mean cosine distance)",
    "model_heldout_nll": "held-out NLL of the model\n(nats per token)",
    "model_own_diversity": "diversity of the model's\nown retellings",
    "model_attractor_distance": "model's attractor: distance\nfrom the base model's",
    "vendi": "Vendi score\n(effective number of texts)",
    "distinct_traits": "distinct variants",
    "machine_ancestry": "machine ancestry\n(share of lineage)",
    "centroid_drift": "centroid drift\n(1 − cosine)",
}
# Who wrote a trait, coarsened to what a reader needs: seed texts, copies with errors and
# innovations are all human-written; a consulted answer and an LLM-retold copy are LLM-assisted.
AUTHOR_GROUPS = ("human-written", "LLM-written", "LLM-assisted")
_MACHINE_GROUP = {"llm": "LLM-written", "human_llm_assisted": "LLM-assisted", "human_llm_mutated": "LLM-assisted"}
_GROUP_PALETTE = (0, 3, 2)  # colorblind palette: blue, vermillion, green


@functools.cache
def _theme_rc() -> dict[str, object]:
    """seaborn's paper context and ticks style, the colour-blind palette, and the project's settings."""
    return {
        **sns.axes_style("ticks"),
        **sns.plotting_context("paper", font_scale=1.1),
        "font.family": ["sans-serif"],
        "axes.prop_cycle": cycler(color=sns.color_palette("colorblind")),
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "savefig.dpi": 300,
        "savefig.bbox": "tight",  # never clip an outside legend
        "savefig.pad_inches": 0.02,
        "pdf.fonttype": 42,  # TrueType, which journals accept and editors can edit
        "ps.fonttype": 42,
        "svg.hashsalt": "culturesim",
    }


def themed() -> AbstractContextManager:
    """The figures' theme for the duration of a `with` block, leaving the caller's matplotlib and
    seaborn settings as they were: readable at single-column width, colour-blind-safe, no chart
    junk, embeddable fonts, and reproducible files (fixed SVG ids). Saving reads some of these
    settings, so `figure_set.save_figure` saves inside it too."""
    return plt.rc_context(_theme_rc())


def in_theme(draw: Callable[..., plt.Figure]) -> Callable[..., plt.Figure]:
    """A figure function drawn inside `themed()`."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> plt.Figure:
        with themed():
            return draw(*args, **kwargs)

    return wrapper


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def group_colours() -> dict[str, tuple[float, float, float]]:
    palette = sns.color_palette("colorblind")
    return {group: palette[i] for group, i in zip(AUTHOR_GROUPS, _GROUP_PALETTE, strict=True)}


def author_group(kind: pl.Expr) -> pl.Expr:
    """Author kind -> one of AUTHOR_GROUPS."""
    return kind.replace_strict(_MACHINE_GROUP, default=AUTHOR_GROUPS[0], return_dtype=pl.String)


def _group_legend(fig: plt.Figure, title: str) -> None:
    handles = [Patch(color=colour, label=group) for group, colour in group_colours().items()]
    fig.legend(handles=handles, title=title, loc="outside lower center", ncols=len(handles))


def _generation_axis(ax: plt.Axes) -> None:
    """Generations are whole numbers."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _grid(n: int) -> tuple[int, int]:
    """Rows and columns for n facets, as square as possible."""
    columns = math.ceil(math.sqrt(n))
    return math.ceil(n / columns), columns


# --- trajectories ----------------------------------------------------------------------


@in_theme
def trajectories(metrics: pl.DataFrame, metric: str = "semantic_diversity") -> plt.Figure:
    """Mean of one metric over generations per condition, with 95 % bootstrap CI bands across
    replicates (fixed bootstrap seed, so the same data give the same figure)."""
    data = metrics.filter(pl.col("metric") == metric).select("generation", "condition", "value").to_pandas()
    if data.empty:
        raise ValueError(f"metric {metric!r} is not in the results; recorded: {sorted(metrics['metric'].unique())}")
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 3.2), layout="constrained")
    sns.lineplot(data=data, x="generation", y="value", hue="condition", errorbar=("ci", 95), seed=0, marker="o", ax=ax)
    ax.set(xlabel="generation", ylabel=metric_label(metric))
    _generation_axis(ax)
    ax.legend(title="condition")
    return fig


def model_beside_culture(metrics: pl.DataFrame, culture: str = "semantic_diversity") -> plt.Figure:
    """The model that answered each generation (held-out NLL; where probed, own diversity and attractor
    distance) beside a culture metric (last panel): condition means, 95 % bootstrap CIs (fixed seed)."""
    present = set(metrics.filter(pl.col("value").is_not_nan())["metric"].unique().to_list())
    panels = ["model_heldout_nll", *(key for key in MODEL_KEYS[1:] if key in present), culture]
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * COLUMN_WIDTH, 3.2), layout="constrained")
    for ax, metric in zip(axes, panels, strict=True):
        data = metrics.filter(pl.col("metric") == metric).select("generation", "condition", "value").to_pandas()
        if data.empty:
            raise ValueError(f"metric {metric!r} is not in the results")
        style = {"hue": "condition", "errorbar": ("ci", 95), "seed": 0, "marker": "o"}
        sns.lineplot(data=data, x="generation", y="value", ax=ax, **style)
        ax.set(xlabel="generation", ylabel=metric_label(metric), title="the culture" if ax is axes[-1] else "the model")
        _generation_axis(ax)
        ax.get_legend().remove()
    axes[-1].legend(title="condition")
    return fig


# --- trait space -----------------------------------------------------------------------


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) coordinates on the first two principal components and their shares of variance.

    SVD signs are arbitrary, so each component is oriented with its largest loading positive:
    the same data always give the same picture.
    """
    centred = vectors - vectors.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    coords = u * s * np.where(signs == 0, 1.0, signs)
    total = float((s**2).sum())
    explained = s**2 / total if total > 0 else np.zeros_like(s)
    missing = max(0, 2 - coords.shape[1])
    return np.pad(coords, ((0, 0), (0, missing)))[:, :2], np.pad(explained, (0, missing))[:2]


def held_traits(
    traits: pl.DataFrame, population: pl.DataFrame, *, run_id: str, generations: Sequence[int]
) -> pl.DataFrame:
    """generation, trait_id, holders, text, author_kind, group: the traits one run's agents held."""
    held = population.filter(pl.col("run_id") == run_id, pl.col("generation").is_in(list(generations)))
    missing = sorted(set(generations) - set(held["generation"].unique().to_list()))
    if missing:
        recorded = sorted(population.filter(pl.col("run_id") == run_id)["generation"].unique().to_list())
        raise ValueError(f"run {run_id!r} has no population record for generation(s) {missing}; recorded: {recorded}")
    kinds = traits.filter(pl.col("run_id") == run_id).select("trait_id", "text", "author_kind")
    table = (
        held.group_by("generation", "trait_id")
        .agg(holders=pl.len())
        .join(kinds, on="trait_id", how="left")
        .with_columns(group=author_group(pl.col("author_kind")))
        .sort("generation", "trait_id")
    )
    if table["text"].null_count():
        raise ValueError(f"population of run {run_id!r} holds trait ids that traits.parquet does not list")
    return table


@in_theme
def trait_space(
    traits: pl.DataFrame,
    population: pl.DataFrame,
    embed: EmbedFn,
    *,
    run_id: str,
    generations: Sequence[int],
) -> plt.Figure:
    """Where one run's culture sits in meaning space and who wrote it, at chosen generations.

    One PCA of the embeddings of every trait held at any chosen generation, so the panels share
    axes and movement between them is real; marker area is proportional to the agents holding a text.
    """
    held = held_traits(traits, population, run_id=run_id, generations=generations)
    distinct = held.unique("trait_id").sort("trait_id")
    coords, explained = pca_2d(np.asarray(embed(distinct["text"].to_list()), dtype=np.float64))
    projected = distinct.select("trait_id").with_columns(pc1=pl.Series(coords[:, 0]), pc2=pl.Series(coords[:, 1]))
    held = held.join(projected, on="trait_id")
    scale = 60.0 / held["holders"].max()
    generations = sorted(generations)
    fig, axes = plt.subplots(
        1, len(generations), figsize=(COLUMN_WIDTH, 2.6), sharex=True, sharey=True, squeeze=False, layout="constrained"
    )
    colours = group_colours()
    for ax, generation in zip(axes[0], generations, strict=True):
        for group in AUTHOR_GROUPS:
            points = held.filter(pl.col("generation") == generation, pl.col("group") == group)
            ax.scatter(
                points["pc1"],
                points["pc2"],
                s=4 + scale * points["holders"].to_numpy(),
                color=colours[group],
                alpha=0.75,
                edgecolors="white",
                linewidths=0.3,
            )
        ax.set_title(f"generation {generation}")
        ax.set_xlabel(f"PC1 ({explained[0]:.0%})")
    axes[0, 0].set_ylabel(f"PC2 ({explained[1]:.0%})")
    _group_legend(fig, "author (area ∝ agents holding the text)")
    return fig


# --- machine ancestry -----------------------------------------------------------------


def author_shares(population: pl.DataFrame, traits: pl.DataFrame, condition_runs: pl.DataFrame) -> pl.DataFrame:
    """condition, generation and one column per author group: the share of agents holding a
    trait by that author, averaged over the condition's runs (a run without any counts as 0)."""
    held = population.join(condition_runs.select("run_id", "condition"), on="run_id").join(
        traits.select("run_id", "trait_id", "author_kind"), on=["run_id", "trait_id"], how="left"
    )
    if held["author_kind"].null_count():
        raise ValueError("population.parquet holds trait ids that traits.parquet does not list")
    group = author_group(pl.col("author_kind"))
    per_run = held.group_by("condition", "run_id", "generation").agg(
        *((group == name).mean().alias(name) for name in AUTHOR_GROUPS)
    )
    return per_run.group_by("condition", "generation").agg(pl.col(AUTHOR_GROUPS).mean()).sort("generation")


@in_theme
def machine_ancestry_area(
    population: pl.DataFrame, traits: pl.DataFrame, *, condition_runs: pl.DataFrame
) -> plt.Figure:
    """How much of the culture machines wrote, generation by generation: stacked shares of agents
    by the author of the trait they hold, mean over runs, one facet per condition.

    `condition_runs` has run_id and condition columns (e.g. `Results.runs`, or a filter of it for
    one condition); facets follow its order.
    """
    shares = author_shares(population, traits, condition_runs)
    conditions = [c for c in condition_runs["condition"].unique(maintain_order=True) if c in shares["condition"]]
    if not conditions:
        raise ValueError("no run of condition_runs appears in population.parquet")
    rows, columns = _grid(len(conditions))
    height = 0.8 + rows * (2.4 if columns == 1 else COLUMN_WIDTH / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(COLUMN_WIDTH, height), sharex=True, sharey=True, squeeze=False, layout="constrained"
    )
    colours = group_colours()
    for ax, condition in zip(axes.flat, conditions, strict=False):
        data = shares.filter(pl.col("condition") == condition)
        ax.stackplot(
            data["generation"], *(data[g] for g in AUTHOR_GROUPS), colors=[colours[g] for g in AUTHOR_GROUPS], lw=0
        )
        ax.set(
            xlabel="generation", ylabel="share of agents", ylim=(0, 1), title=condition if len(conditions) > 1 else ""
        )
        ax.set_xlim(data["generation"].min(), data["generation"].max())
        _generation_axis(ax)
        ax.label_outer()
    for ax in axes.flat[len(conditions) :]:
        ax.remove()
    _group_legend(fig, "author of the text held")
    return fig


# --- network snapshot ----------------------------------------------------------------


def network_graph(network: Network) -> nx.Graph:
    """The CSR network as a networkx graph with nodes 0..n-1."""
    graph = nx.Graph()
    graph.add_nodes_from(range(network.size))
    sources = np.repeat(np.arange(network.size), network.degrees())
    graph.add_edges_from(zip(sources.tolist(), network.indices.tolist(), strict=True))
    return graph


def farthest_point_prototypes(vectors: np.ndarray, k: int, *, start: int) -> np.ndarray:
    """Indices of up to k rows spread out in space: each next one is farthest from those chosen
    (ties: lowest index), so the choice is deterministic and needs no k-means restarts."""
    chosen = [start]
    distance = np.linalg.norm(vectors - vectors[start], axis=1)
    while len(chosen) < k and distance.max() > 0:
        chosen.append(int(distance.argmax()))
        distance = np.minimum(distance, np.linalg.norm(vectors - vectors[chosen[-1]], axis=1))
    return np.array(chosen)


def trait_clusters(trait_ids: np.ndarray, embeddings: np.ndarray, *, k: int = 6) -> np.ndarray:
    """Cluster (0..k-1) of each agent's trait: its nearest of k prototypes chosen among the distinct
    traits by farthest-point sampling, starting from the most widely held trait."""
    _, first, inverse, counts = np.unique(trait_ids, return_index=True, return_inverse=True, return_counts=True)
    vectors = np.asarray(embeddings, dtype=np.float64)[first]
    prototypes = vectors[farthest_point_prototypes(vectors, k, start=int(counts.argmax()))]
    distances = np.linalg.norm(vectors[:, None, :] - prototypes[None, :, :], axis=2)
    return distances.argmin(axis=1)[inverse]


@in_theme
def network_snapshot(
    network: Network,
    trait_ids: np.ndarray,
    embeddings: np.ndarray,
    *,
    is_llm: np.ndarray,
    seed: int = 0,
    clusters: int = 6,
) -> plt.Figure:
    """Who holds which kind of text on the network: spring layout (fixed seed), agents coloured by
    the cluster of their trait, LLM agents drawn as triangles.

    `trait_ids`, `embeddings` (one row per agent: its trait's embedding) and `is_llm` are per agent.
    """
    trait_ids, is_llm = np.asarray(trait_ids), np.asarray(is_llm, dtype=bool)
    if not len(trait_ids) == len(embeddings) == len(is_llm) == network.size:
        raise ValueError(
            f"network has {network.size} agents but got {len(trait_ids)} trait ids, "
            f"{len(embeddings)} embeddings and {len(is_llm)} LLM flags"
        )
    graph = network_graph(network)
    layout = nx.spring_layout(graph, seed=seed)
    xy = np.array([layout[agent] for agent in range(network.size)])
    labels = trait_clusters(trait_ids, embeddings, k=clusters)
    palette = np.array(sns.color_palette("colorblind", clusters))
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 4.0), layout="constrained")
    nx.draw_networkx_edges(graph, layout, ax=ax, width=0.4, edge_color="0.8")
    for mask, marker, size in ((~is_llm, "o", 22), (is_llm, "^", 40)):
        ax.scatter(
            xy[mask, 0],
            xy[mask, 1],
            c=palette[labels[mask]],
            marker=marker,
            s=size,
            edgecolors="black",
            linewidths=0.3,
            zorder=2,
        )
    ax.set_axis_off()
    handles = [Patch(color=palette[c], label=f"cluster {c + 1}") for c in np.unique(labels)]
    handles += [
        Line2D([], [], ls="", marker=m, color="0.6", markeredgecolor="black", label=name)
        for m, name in (("o", "human"), ("^", "LLM agent"))
    ]
    fig.legend(handles=handles, title="trait cluster / agent", loc="outside right center")
    return fig


# --- forest plot ----------------------------------------------------------------------

_EFFECTS = {
    "hedges_g": ("hedges_g", "g_ci_low", "g_ci_high", "Hedges' g, treatment − reference (SD units)"),
    "estimate": ("estimate", "ci_low", "ci_high", "difference, treatment − reference (outcome units)"),
}


@in_theme
def forest_plot(results_table: pl.DataFrame, *, effect: Literal["hedges_g", "estimate"] = "hedges_g") -> plt.Figure:
    """Each hypothesis' effect with its 95 % CI, confirmatory (filled) and exploratory (open)
    marked, a zero line, and the registered verdict at the right.

    Hedges' g by default, because hypotheses on different outcomes only share a scale when
    standardized; `effect="estimate"` shows the registered test's raw difference and CI instead.
    A row whose effect is NaN (zero variance, an inconclusive test) reads "not estimable".
    """
    column, low, high, label = _EFFECTS[effect]
    n = results_table.height
    y = np.arange(n)[::-1]
    values = results_table[column].to_numpy().astype(float)
    confirmatory = results_table["confirmatory"].to_numpy().astype(bool)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 1.0 + 0.35 * n), layout="constrained")
    ax.axvline(0, color="0.5", lw=0.8, ls="--", zorder=0)
    ax.hlines(y, results_table[low].to_numpy(), results_table[high].to_numpy(), color="black", lw=1.2, gid="ci")
    for mask, name, face in ((confirmatory, "confirmatory", "black"), (~confirmatory, "exploratory", "white")):
        if mask.any():
            ax.scatter(values[mask], y[mask], s=30, facecolors=face, edgecolors="black", zorder=3, label=name)
    for row in np.flatnonzero(np.isnan(values)):  # e.g. g with zero variance in both arms: say so, not a blank row
        ax.annotate("not estimable", (0, y[row]), xytext=(4, 0), textcoords="offset points", va="center", color="0.4")
    ax.set_yticks(y, [f"{i}: {o}" for i, o in zip(results_table["id"], results_table["outcome"], strict=True)])
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(label)
    verdicts = ax.secondary_yaxis("right")
    verdicts.set_yticks(y, results_table["verdict"].to_list())
    verdicts.tick_params(length=0)
    verdicts.spines["right"].set_visible(False)
    fig.legend(loc="outside upper center", ncols=2)
    return fig


# --- attractor ------------------------------------------------------------------------


@in_theme
def attractor_plot(
    initial: np.ndarray,
    final: np.ndarray,
    fit: AttractorFit,
    *,
    metric: str = "semantic_diversity",
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Final vs initial value per run with the fitted map, the identity line and its fixed point
    (where fit and identity cross, with its 95 % CI along the identity).

    Draws on `ax` when given (for faceted figures; the caller adds the legend), else on a new
    figure with a legend. The fit's numbers go in the axes title.
    """
    initial, final = np.asarray(initial, dtype=float), np.asarray(final, dtype=float)
    standalone = ax is None
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH * 0.8, 3.4), layout="constrained")
    colours = sns.color_palette("colorblind")
    lo, hi = _attractor_window(np.concatenate([initial, final]), fit.fixed_point)
    line = np.array([lo, hi])
    ax.plot(line, line, ls="--", lw=0.8, color="0.5", label="final = initial")
    ax.scatter(initial, final, s=18, color=colours[0], alpha=0.8, label="run")
    ax.plot(line, fit.a + fit.b * line, color=colours[3], lw=1.2, label="fitted map")
    ci = list(fit.fixed_point_ci)
    ax.plot(ci, ci, lw=4, alpha=0.3, color="black", solid_capstyle="butt", label="95 % CI of x*")
    point = fit.fixed_point
    ax.plot([point], [point], ls="", marker="*", ms=10, color="black", label="fixed point x*", gid="fixed_point")
    label = metric_label(metric)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=f"initial {label}", ylabel=f"final {label}")
    ax.set_title(f"slope b = {fit.b:.2f}, x* = {point:.3g}", fontsize="small")
    if standalone:
        ax.legend(fontsize="small")
    return ax.figure


def _attractor_window(values: np.ndarray, fixed_point: float) -> tuple[float, float]:
    """Axis range of the data, widened to show the fixed point unless it lies far outside
    (a slope near 1 puts it anywhere)."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    span = hi - lo or abs(hi) or 1.0
    if np.isfinite(fixed_point) and lo - span <= fixed_point <= hi + span:
        lo, hi = min(lo, fixed_point), max(hi, fixed_point)
    pad = 0.08 * (hi - lo or span)
    return lo - pad, hi + pad


@in_theme
def lineage_tree(lineage: nx.DiGraph, *, title: str = "") -> plt.Figure:
    """A trait's lineage (`culturesim.parts.lineage.ancestry`): one dot per variant at its birth generation,
    lines from parents to children, coloured by who wrote it (human, LLM, LLM-assisted)."""
    by_generation: dict[int, list[int]] = {}
    for node, data in sorted(lineage.nodes(data=True)):
        by_generation.setdefault(data["generation"], []).append(node)
    position = {
        node: (generation, rank - (len(nodes) - 1) / 2)
        for generation, nodes in by_generation.items()
        for rank, node in enumerate(nodes)
    }
    colours = group_colours()
    rows = max(map(len, by_generation.values()))  # tall enough for the legend below one lone variant too
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, max(1.8, 0.6 + 0.25 * rows)), layout="constrained")
    for parent, child in lineage.edges:
        (x0, y0), (x1, y1) = position[parent], position[child]
        ax.plot([x0, x1], [y0, y1], color="0.7", linewidth=0.6, zorder=1)
    for node, data in lineage.nodes(data=True):
        group = _MACHINE_GROUP.get(data["author_kind"], AUTHOR_GROUPS[0])
        ax.scatter(*position[node], s=18, color=colours[group], zorder=2)
    ax.set(xlabel="generation of birth", yticks=[], title=title)
    ax.set_xlim(min(by_generation) - 0.5, max(by_generation) + 0.5)  # one generation: not a ±0.05 axis
    _generation_axis(ax)
    sns.despine(ax=ax, left=True)
    _group_legend(fig, "written by")
    return fig
