"""Whole studies: reproducible bit-for-bit, lockstep-batched, and written out completely."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.reports.report import write_report
from culturesim.schema.config import StudyConfig
from culturesim.study.runner import StudyRunner


def tiny_study(**overrides) -> StudyConfig:
    data = {
        "study": {"name": "tiny", "seed": 7, "replicates": 2, "generations": 3},
        "population": {"size": 16, "turnover": 0.5},
        "network": {"kind": "small_world", "degree": 4},
        "humans": {"bias": "conformist", "copy_error": 0.1, "innovation": 0.05, "llm_consultation": 0.1},
        "llm": {"sampling": {"max_tokens": 16}, "engine": {"backend": "vllm"}},
        "attractor": {"chains": 3, "generations": 2},
        "conditions": {"population.llm_share": [0.0, 0.25]},
    }
    for key, value in overrides.items():  # "llm__prompt__retries" sets data["llm"]["prompt"]["retries"]
        *tables, field = key.split("__")
        table = data
        for name in tables:
            table = table.setdefault(name, {})
        table[field] = value
    return StudyConfig.model_validate(data)


@pytest.mark.slow
def test_same_seed_gives_identical_results(runner: StudyRunner, tmp_path: Path) -> None:
    config = tiny_study()
    first = runner.run(config, out_root=tmp_path / "a")
    second = runner.run(config, out_root=tmp_path / "b")
    for table in ("metrics.parquet", "traits.parquet", "generations.parquet"):
        assert_frame_equal(pl.read_parquet(first / table), pl.read_parquet(second / table))
    other = runner.run(tiny_study(study__seed=8), out_root=tmp_path / "c")
    assert not pl.read_parquet(first / "traits.parquet").equals(pl.read_parquet(other / "traits.parquet"))


@pytest.mark.slow
def test_results_folder_is_complete(runner: StudyRunner, tmp_path: Path) -> None:
    config = tiny_study()
    folder = runner.run(config, out_root=tmp_path)
    assert folder == tmp_path / "tiny" / config.hash()[:12]
    metrics = pl.read_parquet(folder / "metrics.parquet")
    assert metrics.columns == ["run_id", "condition", "replicate", "generation", "metric", "value"]
    assert metrics["run_id"].n_unique() == 4
    assert sorted(metrics["generation"].unique()) == [0, 1, 2, 3]
    lexical = {"distinct_1", "distinct_2", "mean_length"}
    expected = (set(config.metrics.names) - {"lexical_diversity"}) | lexical | {"llm_failures", "pool_size"}
    expected.add("attractor_distance")  # every LLM study records it
    assert set(metrics["metric"]) == expected
    traits = pl.read_parquet(folder / "traits.parquet")
    llm_traits = traits.filter(pl.col("author_kind") == "llm")
    assert llm_traits.height > 0 and set(llm_traits["condition"]) == {"llm_share=0.25"}
    assert (llm_traits["machine_ancestry"] == 1.0).all()
    assert traits.filter(pl.col("author_kind") == "human_llm_assisted").height > 0
    log = pl.read_parquet(folder / "generations.parquet")
    # 4 LLM agents per run of the 0.25 condition, every generation, plus consultations.
    assert log.filter(pl.col("run_id").str.starts_with("c1")).height >= 4 * 2 * 3
    shares = metrics.filter((pl.col("metric") == "llm_trait_share") & (pl.col("generation") == 3))
    assert shares.filter(pl.col("condition") == "llm_share=0.25")["value"].min() > 0
    report = write_report(folder)
    assert "semantic_diversity" in report.read_text() and (folder / "diversity.png").stat().st_size > 10_000


def test_all_llm_requests_of_a_generation_go_in_one_call(embedder, vllm_backend, tmp_path: Path) -> None:
    calls: list[int] = []

    class Recording:
        model_id, engine_version = vllm_backend.model_id, vllm_backend.engine_version

        def generate(self, requests):
            calls.append(len(requests))
            return vllm_backend.generate(requests)

        def close(self) -> None:
            pass

    config = tiny_study(humans__llm_consultation=0.0, llm__prompt__retries=0)  # retry rounds are extra calls
    StudyRunner(embedder=embedder, backend=Recording()).run(config, out_root=tmp_path)
    # The attractor calibration (3 chains, 2 generations), then one call per generation:
    # 2 replicates x 4 LLM agents of the 0.25 condition, deduplicated.
    assert calls == [3, 3, 8, 8, 8]


def test_cli_runs_a_human_only_study(tmp_path: Path) -> None:
    study = tmp_path / "humans.toml"
    study.write_text(
        '[study]\nname = "humans"\nseed = 3\nreplicates = 2\ngenerations = 4\n'
        '[population]\nsize = 30\n[humans]\nbias = "unbiased"\ninnovation = 0.05\n'
        '[conditions]\n"network.kind" = ["small_world", "complete"]\n'
    )
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    folder = next((tmp_path / "results" / "humans").iterdir())
    for name in ("manifest.json", "metrics.parquet", "traits.parquet", "report.md", "diversity.png"):
        assert (folder / name).exists(), name
    metrics = pl.read_parquet(folder / "metrics.parquet")
    assert set(metrics["condition"]) == {"kind=small_world", "kind=complete"}
    assert metrics.filter(pl.col("metric") == "machine_ancestry")["value"].max() == 0.0
    odd = (folder / "odd.md").read_text(encoding="utf-8")  # every results folder carries its ODD description
    assert odd.startswith("# ODD description: humans") and "`network.kind` ∈ {small_world, complete}" in odd
    # every run writes its explorer, which the report links (and a study may opt out)
    assert "Plotly" in (folder / "explorer.html").read_text(encoding="utf-8")
    assert "(explorer.html)" in (folder / "report.md").read_text(encoding="utf-8") and "explorer.html" in odd
    study.write_text(study.read_text().replace('name = "humans"', 'name = "humans"\nexplorer = false'))
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / "quiet")])
    assert result.exit_code == 0, result.output
    folder = next((tmp_path / "quiet" / "humans").iterdir())
    assert (folder / "report.md").exists() and not (folder / "explorer.html").exists()
