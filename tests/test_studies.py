"""Every shipped study is valid, matches its preregistration lock, and runs at toy size."""

from __future__ import annotations

import time
from pathlib import Path

import jupytext
import polars as pl
import pytest
from nbclient import NotebookClient

from culturesim.reports.analysis_report import write_analysis
from culturesim.schema.config import load_config
from culturesim.study.prereg import read_lock
from culturesim.study.runner import StudyRunner

ANALYSIS = Path(__file__).parents[1] / "analysis"
STUDIES = sorted((Path(__file__).parents[1] / "studies").glob("*.toml"))


def test_studies_are_shipped() -> None:
    names = {p.stem for p in STUDIES}
    assert {
        "quickstart",
        "homogenization",
        "llm_consultation",
        "network_structure",
        "norm_shift",
        "mutation_operator",
    } <= names


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_study_matches_its_lock(study: Path) -> None:
    config = load_config(study)
    lock = read_lock(study)
    assert lock is not None, f"{study.name} is not preregistered: run culturesim preregister {study}"
    assert lock["sha256"] == config.hash(), f"{study.name} changed since its lock; re-lock or record a deviation"
    assert config.preregistration is not None


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_study_runs_at_toy_size_and_its_analysis_runs(
    study: Path, tmp_path: Path, embedder, vllm_backend, monkeypatch
) -> None:
    config = load_config(study).toy()
    start = time.perf_counter()
    folder = StudyRunner(embedder=embedder, backend=vllm_backend).run(config, out_root=tmp_path, toy=True)
    print(f"{study.stem}: toy run {time.perf_counter() - start:.1f} s")
    metrics = pl.read_parquet(folder / "metrics.parquet")
    assert metrics["run_id"].n_unique() == 2 * len(config.condition_grid())
    assert sorted(metrics["generation"].unique()) == [0, 1, 2]

    report = write_analysis(folder)
    text = report.read_text()
    for hypothesis in config.preregistration.hypotheses:
        assert f"| {hypothesis.id} |" in text
    html = report.with_suffix(".html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html and 'src="trajectory' not in html

    monkeypatch.setenv("CULTURESIM_RESULTS", str(folder))  # the kernel inherits the environment
    notebooks = [ANALYSIS / f"{study.stem}.py"] + (
        [ANALYSIS / "explore_results.py", ANALYSIS / "lineage_tree.py"] if study.stem == "quickstart" else []
    )
    for notebook in notebooks:
        outputs = _run_notebook(notebook)
        text = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
        assert text.strip(), f"{notebook.name} printed nothing"
        if notebook.stem == study.stem:
            assert config.study.name in text, f"{notebook.name} does not name the study it analysed"
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{notebook.name} drew no figure"


def _run_notebook(path: Path) -> list:
    """Execute an analysis file as a notebook (jupytext -> nbclient, one kernel) and return every
    cell's outputs; a cell that raises fails the test with the notebook's traceback."""
    notebook = jupytext.read(path)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ANALYSIS)}}
    ).execute()
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def test_every_study_has_an_analysis_notebook() -> None:
    for study in STUDIES:
        assert (ANALYSIS / f"{study.stem}.py").exists(), f"analysis/{study.stem}.py is missing"
