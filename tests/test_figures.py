"""Figures and the figure set, on a small synthetic results folder (no study run, no model loaded)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest

from culturesim.parts.traits import TRAITS_SCHEMA
from culturesim.reports import figures
from culturesim.reports.figure_set import NotApplicable, draw_figure, save_figure, write_figures
from culturesim.schema.config import StudyConfig
from culturesim.simulation.model import run_network, run_streams
from culturesim.stats import attractor_fit
from culturesim.study.store import METRICS_SCHEMA, POPULATION_SCHEMA, runs_table, write_json, write_parquet
from tests.helpers import SYNTHETIC_PLAN_TEXT

AGENTS, GENERATIONS, REPLICATES = 12, 4, 3
PLAN = {
    **SYNTHETIC_PLAN_TEXT,
    "hypotheses": [
        {
            "id": "H1",
            "statement": "LLM agents lower diversity.",
            "outcome": "semantic_diversity",
            "contrast": {"factor": "population.llm_share", "treatment": 0.25, "reference": 0.0},
            "direction": "less",
        },
        {
            "id": "H2",
            "statement": "LLM agents lower the Vendi score.",
            "outcome": "vendi",
            "contrast": {"factor": "population.llm_share", "treatment": 0.25, "reference": 0.0},
            "direction": "less",
            "confirmatory": False,
        },
    ],
}
EXPECTED_FIGURES = {
    "trajectory_semantic_diversity",
    "trajectory_vendi",
    "trajectory_machine_ancestry",
    "trait_space",
    "machine_ancestry",
    "network_snapshot",
    "forest",
    "attractor_semantic_diversity",
    "attractor_vendi",  # a preregistered outcome
}


def fake_embed(texts) -> np.ndarray:
    """Deterministic unit vectors seeded by each text's hash (stands in for the sentence model)."""
    rows = [
        np.random.default_rng(int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest())).normal(size=16)
        for t in texts
    ]
    vectors = np.array(rows).reshape(len(texts), 16)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def study_config(*, preregistered: bool = True) -> StudyConfig:
    return StudyConfig.model_validate(
        {
            "study": {"name": "synthetic", "seed": 7, "replicates": REPLICATES, "generations": GENERATIONS},
            "population": {"size": AGENTS},
            "conditions": {"population.llm_share": [0.0, 0.25]},
            "preregistration": PLAN if preregistered else None,
        }
    )


def simulate_run(rng: np.random.Generator, run_id: str, condition: str, llm_share: float):
    """Traits, population and metric rows of one synthetic run: every agent copies someone, then
    may err, innovate or adopt an LLM-assisted text; LLM agents write a new text every generation."""
    is_llm = np.zeros(AGENTS, dtype=bool)
    is_llm[rng.permutation(AGENTS)[: round(llm_share * AGENTS)]] = True
    traits = [(i, f"{run_id} seed {i}", "seed", [], 0) for i in range(AGENTS)]
    held = np.arange(AGENTS)
    population = []
    for generation in range(GENERATIONS + 1):
        if generation:
            held = held[rng.integers(AGENTS, size=AGENTS)]
            kinds = rng.choice(["human_error", "human_innovation", "human_llm_assisted", "copy"], size=AGENTS)
            kinds[is_llm] = "llm"
            for agent in np.flatnonzero(kinds != "copy"):
                text = f"{run_id} g{generation} a{agent}"
                traits.append((len(traits), text, str(kinds[agent]), [int(held[agent])], generation))
                held[agent] = len(traits) - 1
        population += [(run_id, generation, agent, int(held[agent]), bool(is_llm[agent])) for agent in range(AGENTS)]
    start = 0.85 + rng.normal(0, 0.02)
    metrics = []
    for generation in range(GENERATIONS + 1):
        weight = generation / GENERATIONS
        diversity = (
            (1 - weight) * start + weight * (0.8 - 0.05 * llm_share + 0.3 * (start - 0.85)) + rng.normal(0, 0.002)
        )
        values = {"semantic_diversity": diversity, "vendi": 8 * diversity, "machine_ancestry": weight * llm_share}
        metrics += [(run_id, condition, generation, m, v) for m, v in values.items()]
    columns = {k: v for k, v in TRAITS_SCHEMA.items() if k != "machine_ancestry"}
    trait_frame = pl.DataFrame(traits, schema=columns, orient="row").with_columns(
        machine_ancestry=pl.lit(0.0), run_id=pl.lit(run_id), condition=pl.lit(condition)
    )
    return trait_frame, population, metrics


def write_results(folder: Path, *, preregistered: bool = True) -> Path:
    """A results folder with the documented files and schemas."""
    config = study_config(preregistered=preregistered)
    rng = np.random.default_rng(1)
    runs, traits, population, metrics = [], [], [], []
    for index, (label, cfg) in enumerate(config.condition_grid()):
        share = cfg.population.llm_share
        for replicate in range(REPLICATES):
            run_id = f"c{index}-r{replicate}"
            runs.append(
                {
                    "run_id": run_id,
                    "condition": label,
                    "replicate": replicate,
                    "levels": {"population.llm_share": share},
                    "condition_index": index,
                }
            )
            run_traits, run_population, run_metrics = simulate_run(rng, run_id, label, share)
            traits.append(run_traits)
            population += run_population
            metrics += [(r, c, replicate, g, m, v) for r, c, g, m, v in run_metrics]
    write_parquet(pl.DataFrame(metrics, schema=METRICS_SCHEMA, orient="row"), folder / "metrics.parquet")
    write_parquet(pl.concat(traits).cast(TRAITS_SCHEMA), folder / "traits.parquet")
    write_parquet(pl.DataFrame(population, schema=POPULATION_SCHEMA, orient="row"), folder / "population.parquet")
    manifest = {
        "study": "synthetic",
        "config": config.model_dump(mode="json"),
        "config_hash": config.hash(),
        "runs": runs,
    }
    write_json(manifest, folder / "manifest.json")
    return folder


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return write_results(tmp_path / "synthetic")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def tables(folder: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(folder / f"{name}.parquet") for name in ("metrics", "traits", "population")}


def legend_texts(legend) -> list[str]:
    return [text.get_text() for text in legend.get_texts()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_trajectories_label_axes_and_conditions(results):
    fig = figures.trajectories(tables(results)["metrics"], "semantic_diversity")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "generation"
    assert ax.get_ylabel() == figures.METRIC_LABELS["semantic_diversity"]
    assert legend_texts(ax.get_legend()) == ["llm_share=0.0", "llm_share=0.25"]


def test_trait_space_shares_one_projection_across_generations(results):
    data = tables(results)
    fig = figures.trait_space(data["traits"], data["population"], fake_embed, run_id="c1-r0", generations=[0, 2, 4])
    assert [ax.get_title() for ax in fig.axes] == ["generation 0", "generation 2", "generation 4"]
    assert all(ax.get_xlabel().startswith("PC1 (") for ax in fig.axes)
    assert fig.axes[0].get_ylabel().startswith("PC2 (")
    assert fig.axes[0].get_shared_x_axes().joined(fig.axes[0], fig.axes[2])
    assert legend_texts(fig.legends[0]) == list(figures.AUTHOR_GROUPS)
    with pytest.raises(ValueError, match=r"generation\(s\) \[9\]"):
        figures.trait_space(data["traits"], data["population"], fake_embed, run_id="c1-r0", generations=[9])


def test_pca_recovers_a_plane_exactly():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(20, 2)) * [3.0, 1.0]
    basis = np.linalg.qr(rng.normal(size=(16, 2)))[0]  # orthonormal 2-D subspace of 16-D
    coords, explained = figures.pca_2d(plane @ basis.T + 5.0)
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.testing.assert_allclose(distances, np.linalg.norm(plane[:, None] - plane[None], axis=2), atol=1e-9)
    assert explained.sum() == pytest.approx(1.0) and explained[0] > explained[1]
    np.testing.assert_allclose(figures.pca_2d(-(plane @ basis.T))[0], -coords, atol=1e-9)  # signs fixed by convention
    assert figures.pca_2d(np.ones((3, 4)))[0].shape == (3, 2)  # one distinct point: no variance, no crash


def test_machine_ancestry_area_stacks_author_shares(results):
    data = tables(results)
    runs = runs_table(json.loads((results / "manifest.json").read_text()))
    shares = figures.author_shares(data["population"], data["traits"], runs)
    np.testing.assert_allclose(shares.select(pl.sum_horizontal(figures.AUTHOR_GROUPS)).to_series(), 1.0)
    no_llm = shares.filter(pl.col("condition") == "llm_share=0.0")
    assert no_llm["LLM-written"].max() == 0 and shares["LLM-written"].max() > 0
    fig = figures.machine_ancestry_area(data["population"], data["traits"], condition_runs=runs)
    assert [ax.get_title() for ax in fig.axes] == ["llm_share=0.0", "llm_share=0.25"]
    assert fig.axes[0].get_ylabel() == "share of agents" and fig.axes[0].get_xlabel() == "generation"
    assert legend_texts(fig.legends[0]) == list(figures.AUTHOR_GROUPS)
    one = figures.machine_ancestry_area(data["population"], data["traits"], condition_runs=runs.head(1))
    assert len(one.axes) == 1


def test_network_snapshot_colours_clusters_and_marks_llm_agents(results):
    data = tables(results)
    config = study_config()
    network = run_network(config.condition_grid()[1][1], run_streams(config.study.seed, 0)["network"])
    last = data["population"].filter(pl.col("run_id") == "c1-r0", pl.col("generation") == GENERATIONS).sort("agent")
    texts = last.join(data["traits"].filter(pl.col("run_id") == "c1-r0"), on="trait_id", maintain_order="left")["text"]
    embeddings = fake_embed(texts.to_list())
    trait_ids, is_llm = last["trait_id"].to_numpy(), last["is_llm"].to_numpy()
    fig = figures.network_snapshot(network, trait_ids, embeddings, is_llm=is_llm)
    labels = legend_texts(fig.legends[0])
    assert labels[-2:] == ["human", "LLM agent"]
    assert 1 <= len(labels) - 2 <= 6 and all(label.startswith("cluster ") for label in labels[:-2])
    markers = [c for c in fig.axes[0].collections if c.get_offsets().shape[0] in (is_llm.sum(), (~is_llm).sum())]
    assert sorted(len(c.get_offsets()) for c in markers) == sorted([int(is_llm.sum()), int((~is_llm).sum())])
    clusters = figures.trait_clusters(trait_ids, embeddings)
    np.testing.assert_array_equal(clusters, figures.trait_clusters(trait_ids, embeddings))
    assert len(np.unique(clusters)) == min(6, len(np.unique(trait_ids)))
    same = trait_ids[:, None] == trait_ids[None, :]
    assert (clusters[:, None] == clusters[None, :])[same].all()  # one trait, one cluster


def test_farthest_point_prototypes_spread_out():
    points = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 3.0], [5.0, 0.0]])
    np.testing.assert_array_equal(figures.farthest_point_prototypes(points, 3, start=0), [0, 2, 3])
    assert len(figures.farthest_point_prototypes(np.zeros((4, 2)), 6, start=0)) == 1


def forest_table() -> pl.DataFrame:
    """Three tested hypotheses and one whose effect is not estimable (NaN)."""
    nan = float("nan")
    return pl.DataFrame(
        {
            "id": ["H1", "H2", "H3", "H4"],
            "outcome": ["semantic_diversity", "vendi", "semantic_diversity", "machine_ancestry"],
            "estimate": [-0.02, -1.5, 0.001, nan],
            "ci_low": [-0.03, -2.5, -0.01, nan],
            "ci_high": [-0.01, -0.5, 0.012, nan],
            "hedges_g": [-1.2, -0.8, 0.1, nan],
            "g_ci_low": [-2.0, -1.6, -0.7, nan],
            "g_ci_high": [-0.4, 0.0, 0.9, nan],
            "confirmatory": [True, True, False, False],
            "verdict": ["supported", "not supported", "not supported", "inconclusive"],
        }
    )


@pytest.mark.parametrize(
    ("effect", "low", "high"), [("hedges_g", "g_ci_low", "g_ci_high"), ("estimate", "ci_low", "ci_high")]
)
def test_forest_plot_draws_one_ci_per_hypothesis(effect, low, high):
    table = forest_table()
    fig = figures.forest_plot(table, effect=effect)
    ax = fig.axes[0]
    (ci,) = [c for c in ax.collections if c.get_gid() == "ci"]
    segments = ci.get_segments()
    assert len(segments) == table.height
    drawn = [(s[0][0], s[1][0]) for s in segments[:3]]
    assert drawn == list(zip(table[low][:3], table[high][:3], strict=True))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["H1: semantic_diversity", "H2: vendi", "H3: semantic_diversity", "H4: machine_ancestry"]
    assert legend_texts(fig.legends[0]) == ["confirmatory", "exploratory"]
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.lines)  # the zero line
    (verdicts,) = ax.child_axes
    assert [t.get_text() for t in verdicts.get_yticklabels()] == table["verdict"].to_list()
    assert [t.get_text() for t in ax.texts] == ["not estimable"]


def test_attractor_plot_marks_the_fixed_point():
    rng = np.random.default_rng(3)
    initial = rng.uniform(0.7, 0.9, size=12)
    final = 0.4 + 0.5 * initial + rng.normal(0, 0.005, size=12)  # fixed point 0.8
    fit = attractor_fit(initial, final)
    fig = figures.attractor_plot(initial, final, fit, metric="semantic_diversity")
    ax = fig.axes[0]
    (point,) = [line for line in ax.lines if line.get_gid() == "fixed_point"]
    np.testing.assert_allclose(point.get_xydata(), [[fit.fixed_point, fit.fixed_point]])
    assert fit.fixed_point == pytest.approx(0.8, abs=0.02)
    assert legend_texts(ax.get_legend()) == ["final = initial", "run", "fitted map", "95 % CI of x*", "fixed point x*"]
    assert ax.get_xlabel().startswith("initial semantic diversity") and ax.get_ylabel().startswith("final ")


def test_write_figures_writes_every_figure_with_data_hashes(results):
    target = write_figures(results, formats=("png", "svg"), progress=False, embed=fake_embed)
    record = json.loads((target / "figures.json").read_text())
    expected = {f"{name}.{fmt}" for name in EXPECTED_FIGURES for fmt in ("png", "svg")}
    assert {entry["file"] for entry in record["files"]} == expected
    assert {p.name for p in target.iterdir()} == expected | {"figures.json"}
    assert record["skipped"] == {}
    for entry in record["files"]:
        assert entry["sha256"] == sha256(target / entry["file"])
        assert entry["sources"] and all(sha256(results / name) == digest for name, digest in entry["sources"].items())
    by_file = {entry["file"]: entry["sources"] for entry in record["files"]}
    assert set(by_file["trait_space.png"]) == {"manifest.json", "traits.parquet", "population.parquet"}
    assert set(by_file["trajectory_vendi.svg"]) == {"metrics.parquet"}


def test_figures_are_byte_identical_when_redrawn(results, tmp_path):
    for fmt in ("svg", "pdf", "png"):
        paths = [tmp_path / f"{i}.{fmt}" for i in range(2)]
        for path in paths:
            save_figure(draw_figure(results, "machine_ancestry"), path)
        assert paths[0].read_bytes() == paths[1].read_bytes(), fmt


def test_missing_population_is_named(results):
    (results / "population.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="population.parquet"):
        write_figures(results, progress=False, embed=fake_embed)


def test_study_without_preregistration_skips_the_forest(tmp_path):
    folder = write_results(tmp_path / "exploratory", preregistered=False)
    with pytest.raises(NotApplicable, match="preregistration"):
        draw_figure(folder, "forest")
    assert draw_figure(folder, "trajectory_semantic_diversity").axes[0].get_xlabel() == "generation"


def test_unknown_format_is_refused(results):
    with pytest.raises(ValueError, match="tiff"):
        write_figures(results, formats=("tiff",), progress=False, embed=fake_embed)


def test_drawing_and_saving_leave_the_callers_matplotlib_settings_alone(results, tmp_path):
    import matplotlib as mpl

    before = {key: value for key, value in mpl.rcParams.items() if key != "backend"}
    fig = figures.trajectories(tables(results)["metrics"], "semantic_diversity")
    save_figure(fig, tmp_path / "t.png")
    plt.close(fig)
    assert {key: value for key, value in mpl.rcParams.items() if key != "backend"} == before
    assert not fig.axes[0].spines["top"].get_visible()  # yet the figure itself is in the theme
    # saved at the theme's 300 dpi (bbox trimmed), not matplotlib's default 100
    assert plt.imread(tmp_path / "t.png").shape[1] > 200 * fig.get_figwidth()
