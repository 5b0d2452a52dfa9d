"""Every figure of a results folder, written in one go and traceable to its data.

`write_figures(folder)` draws each figure that applies to the study into
`folder/figures/` under stable names, and records in `figures/figures.json` the
sha256 of every data file each figure was drawn from, so a figure in a paper can
be matched to the exact results behind it. A figure that does not apply (a forest
plot without a preregistration, an attractor fit with fewer than 3 runs per
condition, maps without a saved population) is listed under `skipped` with the
reason instead. Files carry no timestamps, so the same data give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from culturesim.core.fingerprint import file_sha256
from culturesim.reports import figures
from culturesim.reports.convention_report import convention_section
from culturesim.reports.figures import EmbedFn
from culturesim.schema.config import StudyConfig, stored_config
from culturesim.simulation.model import run_network, run_streams
from culturesim.stats import MIN_ATTRACTOR_RUNS, ConditionFit, analyze, condition_fits, results_table
from culturesim.study.store import read_manifest, require_files, runs_table, write_json

FORMATS = ("png", "pdf", "svg")
REQUIRED_FILES = ("manifest.json", "metrics.parquet", "traits.parquet", "population.parquet")
TRAJECTORY_METRICS = ("semantic_diversity", "vendi", "machine_ancestry")
CONVENTION_TRAJECTORIES = ("committed_share", "dominant_share", "success_rate")
CONVENTION_FIGURES = ("tipping", "name_shares")  # convention_report.convention_section draws both
ATTRACTOR_METRICS = ("semantic_diversity",)
_NO_TIMESTAMPS = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}


class NotApplicable(ValueError):
    """This figure cannot be drawn from this results folder; the message says why."""


@dataclass(frozen=True)
class FigureJob:
    """One figure: its file stem, the data files it reads, and how to draw it."""

    name: str
    sources: tuple[str, ...]
    draw: Callable[[], plt.Figure]


class StudyData:
    """A results folder read lazily: each table once, and only if a figure needs it."""

    def __init__(self, folder: Path, embed: EmbedFn | None = None) -> None:
        self.folder = folder
        self._embed = embed

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.folder)

    @cached_property
    def config(self) -> StudyConfig:
        return stored_config(self.manifest["config"])

    @cached_property
    def metrics(self) -> pl.DataFrame:
        return pl.read_parquet(self.folder / "metrics.parquet")

    @cached_property
    def traits(self) -> pl.DataFrame:
        return pl.read_parquet(self.folder / "traits.parquet")

    @cached_property
    def population(self) -> pl.DataFrame:
        population = pl.read_parquet(self.folder / "population.parquet")
        if population.is_empty():
            raise NotApplicable("population.parquet is empty: the study ran with study.save_population = false")
        return population

    @cached_property
    def runs(self) -> pl.DataFrame:
        return runs_table(self.manifest)

    @cached_property
    def embed(self) -> EmbedFn:
        """The caller's embedder, else the study's own (loaded only when a map needs it)."""
        if self._embed is not None:
            return self._embed
        from culturesim.parts.embed import Embedder

        return Embedder(self.config.embedding).embed

    def recorded(self, names: tuple[str, ...]) -> list[str]:
        """`names` plus the preregistered outcomes, in that order, kept if the metrics table has them."""
        plan = self.config.preregistration
        outcomes = tuple(h.outcome for h in plan.hypotheses) if plan else ()
        wanted = list(dict.fromkeys(names + outcomes))
        present = set(self.metrics["metric"].unique().to_list())
        return [name for name in wanted if name in present]

    def showcase_run(self) -> dict[str, Any]:
        """Replicate 0 of the condition with the most machine presence (LLM share, then LLM
        consultation; the first such condition on ties): the run the maps show."""
        settings = dict(self.config.condition_grid())

        def presence(run: dict[str, Any]) -> tuple[float, float]:
            cfg = settings[run["condition"]]
            return cfg.population.llm_share, cfg.humans.llm_consultation

        runs = self.manifest["runs"]
        return max([r for r in runs if r["replicate"] == 0] or runs, key=presence)


def _slug(metric: str) -> str:
    return metric.replace(":", "_")


def _trajectory(data: StudyData, metric: str) -> plt.Figure:
    return figures.trajectories(data.metrics, metric)


def _model_and_culture(data: StudyData) -> plt.Figure:
    if "model_heldout_nll" not in data.metrics["metric"].unique().to_list():
        raise NotApplicable("the study does not retrain its LLM agents' model ([llm.retraining])")
    return figures.model_beside_culture(data.metrics)


def _trait_space(data: StudyData) -> plt.Figure:
    run_id = data.showcase_run()["run_id"]
    recorded = sorted(data.population.filter(pl.col("run_id") == run_id)["generation"].unique().to_list())
    shown = sorted({recorded[0], recorded[len(recorded) // 2], recorded[-1]})
    return figures.trait_space(data.traits, data.population, data.embed, run_id=run_id, generations=shown)


def _machine_ancestry(data: StudyData) -> plt.Figure:
    return figures.machine_ancestry_area(data.population, data.traits, condition_runs=data.runs)


def _network_snapshot(data: StudyData) -> plt.Figure:
    """The showcase run's network, rebuilt from its seed, at its last recorded generation."""
    run = data.showcase_run()
    condition = dict(data.config.condition_grid())[run["condition"]]
    network = run_network(condition, run_streams(data.config.study.seed, run["replicate"])["network"])
    population = data.population.filter(pl.col("run_id") == run["run_id"])
    last = population.filter(pl.col("generation") == population["generation"].max()).sort("agent")
    texts = last.join(
        data.traits.filter(pl.col("run_id") == run["run_id"]).select("trait_id", "text"),
        on="trait_id",
        how="left",
        maintain_order="left",
    )["text"]
    if texts.null_count():
        raise ValueError(f"population of run {run['run_id']!r} holds trait ids that traits.parquet does not list")
    return figures.network_snapshot(
        network,
        last["trait_id"].to_numpy(),
        data.embed(texts.to_list()),
        is_llm=last["is_llm"].to_numpy(),
    )


def _convention_figure(data: StudyData, name: str) -> plt.Figure:
    """The tipping curve or the name shares of a coordination study (the report section's figures)."""
    _, drawn = convention_section(data.folder)
    for other, fig in drawn.items():
        if other != f"{name}.png":
            plt.close(fig)
    return drawn[f"{name}.png"]


def _forest(data: StudyData) -> plt.Figure:
    plan = data.config.preregistration
    if plan is None:
        raise NotApplicable("the study has no [preregistration]: no hypotheses to plot")
    final = int(data.metrics["generation"].max())
    return figures.forest_plot(results_table(analyze(data.metrics, data.runs, plan, final_generation=final)))


def _attractor(data: StudyData, metric: str) -> plt.Figure:
    """One panel per condition with enough runs whose initial values vary."""
    panels = condition_fits(data.metrics, metric, data.runs["condition"].unique(maintain_order=True).to_list())
    if not panels:
        raise NotApplicable(
            f"no condition has {MIN_ATTRACTOR_RUNS}+ runs with varying initial {metric}: nothing to fit"
        )
    if len(panels) == 1:
        return figures.attractor_plot(panels[0].initial, panels[0].final, panels[0].fit, metric=metric)
    return _attractor_facets(panels, metric)


@figures.in_theme
def _attractor_facets(panels: list[ConditionFit], metric: str) -> plt.Figure:
    columns = min(len(panels), 2)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(figures.COLUMN_WIDTH, 0.8 + 2.4 * rows), squeeze=False, layout="constrained"
    )
    for ax, panel in zip(axes.flat, panels, strict=False):
        figures.attractor_plot(panel.initial, panel.final, panel.fit, metric=metric, ax=ax)
        ax.set(xlabel="", ylabel="")
        ax.set_title(f"{panel.condition}\n{ax.get_title()}", fontsize="small")
    for ax in axes.flat[len(panels) :]:
        ax.remove()
    label = figures.metric_label(metric)
    fig.supxlabel(f"initial {label}")
    fig.supylabel(f"final {label}")
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="outside upper center", ncols=3)
    return fig


def figure_jobs(data: StudyData) -> list[FigureJob]:
    """Every figure this study could have, in a fixed order; a job raises NotApplicable when drawn
    if its data do not allow it."""
    maps = ("manifest.json", "traits.parquet", "population.parquet")
    if data.config.study.interaction == "coordination":  # names, not texts: no trait space or ancestry
        return [
            *(
                FigureJob(f"trajectory_{_slug(m)}", ("metrics.parquet",), partial(_trajectory, data, m))
                for m in data.recorded(CONVENTION_TRAJECTORIES)
            ),
            *(
                FigureJob(name, ("manifest.json", "metrics.parquet"), partial(_convention_figure, data, name))
                for name in CONVENTION_FIGURES
            ),
            FigureJob("forest", ("manifest.json", "metrics.parquet"), partial(_forest, data)),
        ]
    return [
        *(
            FigureJob(f"trajectory_{_slug(m)}", ("metrics.parquet",), partial(_trajectory, data, m))
            for m in data.recorded(TRAJECTORY_METRICS)
        ),
        *(
            [FigureJob("model_and_culture", ("metrics.parquet",), partial(_model_and_culture, data))]
            if data.config.retrains()
            else []
        ),
        FigureJob("trait_space", maps, partial(_trait_space, data)),
        FigureJob("machine_ancestry", maps, partial(_machine_ancestry, data)),
        FigureJob("network_snapshot", maps, partial(_network_snapshot, data)),
        FigureJob("forest", ("manifest.json", "metrics.parquet"), partial(_forest, data)),
        *(
            FigureJob(f"attractor_{_slug(m)}", ("manifest.json", "metrics.parquet"), partial(_attractor, data, m))
            for m in data.recorded(ATTRACTOR_METRICS)
        ),
    ]


def draw_figure(folder: str | Path, name: str, *, embed: EmbedFn | None = None) -> plt.Figure:
    """One figure of a results folder by its stem (e.g. "trait_space"), for paper scripts.

    Raises NotApplicable when the study does not allow it, FileNotFoundError when a file it reads is missing.
    """
    folder = Path(folder)
    require_files(folder, ("manifest.json", "metrics.parquet"))
    jobs = {job.name: job for job in figure_jobs(StudyData(folder, embed))}
    if name not in jobs:
        raise KeyError(f"no figure {name!r} for {folder}; available: {sorted(jobs)}")
    require_files(folder, jobs[name].sources)
    return jobs[name].draw()


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Save in the format of the suffix, without timestamps (same figure, same bytes)."""
    fmt = path.suffix.removeprefix(".")
    if fmt not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; choose from {FORMATS}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with figures.themed():
        fig.savefig(path, format=fmt, metadata=_NO_TIMESTAMPS[fmt])


def write_figures(
    folder: str | Path,
    *,
    formats: tuple[str, ...] = ("png",),
    progress: bool = True,
    embed: EmbedFn | None = None,
) -> Path:
    """Draw every applicable figure of a results folder into folder/figures/ in each format, and
    figures/figures.json (each file, its sha256, the sha256 of the data it came from, and the
    figures skipped with why). Returns the figures folder.

    `embed` maps texts to embeddings for the trait-space map and the network snapshot; by default
    the study's own embedding model is loaded.
    """
    folder = Path(folder)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"unknown figure format(s) {unknown or formats}; choose from {FORMATS}")
    require_files(folder, REQUIRED_FILES)
    target = folder / "figures"
    data = StudyData(folder, embed)
    jobs = figure_jobs(data)
    hashes: dict[str, str] = {}
    files, skipped = [], {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("figures", total=len(jobs))
        for job in jobs:
            bar.update(task, description=f"figure {job.name}")
            try:
                fig = job.draw()
            except NotApplicable as exc:
                skipped[job.name] = str(exc)
            else:
                sources = {name: _sha256(folder / name, hashes) for name in job.sources}
                for fmt in formats:
                    path = target / f"{job.name}.{fmt}"
                    save_figure(fig, path)
                    files.append(
                        {"file": path.name, "figure": job.name, "sha256": file_sha256(path), "sources": sources}
                    )
                plt.close(fig)
            bar.advance(task)
    write_json(
        {
            "study": data.manifest["study"],
            "config_hash": data.manifest["config_hash"],
            "formats": list(formats),
            "files": files,
            "skipped": skipped,
        },
        target / "figures.json",
    )
    return target


def _sha256(path: Path, cache: dict[str, str]) -> str:
    if path.name not in cache:
        cache[path.name] = file_sha256(path)
    return cache[path.name]
