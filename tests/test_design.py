"""Global sensitivity designs (culturesim.schema.design): sampling, Sobol indices against the Ishigami
function's analytic values, and a culturesim parameter with no effect indexed 0."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from SALib.test_functions import Ishigami

from culturesim.reports.analysis_report import write_analysis
from culturesim.schema.config import StudyConfig
from culturesim.schema.design import DesignSection, sobol_indices
from culturesim.stats.sensitivity import design_outputs
from culturesim.study.runner import StudyRunner

# Ishigami (a = 7, b = 0.1) on [-π, π]³: exact first-order and total indices (Saltelli et al. 2008).
ISHIGAMI_S1 = (0.3139, 0.4424, 0.0)
ISHIGAMI_ST = (0.5576, 0.4424, 0.2437)


def test_sobol_indices_recover_the_ishigami_function() -> None:
    design = DesignSection(samples=2048, parameters={f"x{i}": (-math.pi, math.pi) for i in (1, 2, 3)})
    points = design.points()
    assert points.shape == (2048 * 5, 3)
    rows = sobol_indices(design, Ishigami.evaluate(points))
    for row, s1, st in zip(rows, ISHIGAMI_S1, ISHIGAMI_ST, strict=True):
        assert abs(row["S1"] - s1) < 0.05 and abs(row["ST"] - st) < 0.05, row
        assert row["S1_conf"] < 0.1 and row["ST_conf"] < 0.1


def test_a_design_becomes_one_condition_per_point_and_is_checked() -> None:
    design = {"samples": 4, "parameters": {"humans.copy_error": [0.0, 0.3], "humans.innovation": [0.0, 0.1]}}
    config = StudyConfig.model_validate({"study": {"name": "d"}, "design": design})
    grid = config.condition_grid()
    points = config.design.points()
    assert len(grid) == 4 * (2 + 2) and grid[0][0] == "design0000"
    assert [c.humans.copy_error for _, c in grid] == pytest.approx(points[:, 0])
    lhs = StudyConfig.model_validate({"study": {"name": "d"}, "design": {**design, "method": "lhs", "samples": 5}})
    assert len(lhs.condition_grid()) == 5
    with pytest.raises(ValueError, match="use one of"):
        StudyConfig.model_validate(
            {"study": {"name": "d"}, "design": design, "conditions": {"humans.bias": ["unbiased"]}}
        )
    with pytest.raises(ValueError, match="low < high"):
        StudyConfig.model_validate(
            {"study": {"name": "d"}, "design": {**design, "parameters": {"humans.innovation": [0.2, 0.1]}}}
        )
    with pytest.raises(ValueError, match="power of 2"):
        StudyConfig.model_validate({"study": {"name": "d"}, "design": {**design, "samples": 6}})


@pytest.mark.slow
def test_a_parameter_a_human_only_study_never_reads_has_sobol_indices_of_zero(tmp_path: Path) -> None:
    """The LLM's temperature cannot matter where no LLM writes: its indices are 0, the copying
    error's are not, and the analysis report shows both."""
    config = StudyConfig.model_validate(
        {
            "study": {"name": "null", "seed": 2, "replicates": 1, "generations": 4, "save_population": False},
            "population": {"size": 30},
            "humans": {"innovation": 0.0},
            "design": {
                "samples": 16,
                "parameters": {"humans.copy_error": [0.0, 0.6], "llm.sampling.temperature": [0.1, 1.5]},
                "outcomes": ["distinct_traits"],
            },
        }
    )
    folder = StudyRunner().run(config, out_root=tmp_path)
    metrics = pl.read_parquet(folder / "metrics.parquet")
    labels = [label for label, _ in config.condition_grid()]
    outputs = design_outputs(metrics, labels, "distinct_traits", generation=4)
    assert np.ptp(outputs) > 0
    error, temperature = sobol_indices(config.design, outputs)
    assert temperature["S1"] == pytest.approx(0.0, abs=1e-12) and temperature["ST"] == pytest.approx(0.0, abs=1e-12)
    assert error["ST"] > 0.5
    report = write_analysis(folder).read_text()
    assert "## Global sensitivity" in report and "| llm.sampling.temperature | 0.000 [0.000, 0.000] |" in report


@pytest.mark.slow
def test_the_shipped_sensitivity_study_runs_at_toy_size_with_its_indices(tmp_path: Path) -> None:
    from culturesim.schema.config import load_config
    from culturesim.study.odd import describe
    from culturesim.study.planner import plan_study

    config = load_config(Path(__file__).parents[1] / "studies" / "exploratory" / "sensitivity.toml")
    assert len(config.condition_grid()) == 32 * (4 + 2)
    assert "sobol sample of 192 points" in describe(plan_study(config))
    toy = config.toy()
    folder = StudyRunner().run(toy, out_root=tmp_path, toy=True)
    report = write_analysis(folder).read_text()
    for parameter in config.design.parameters:
        assert f"| {parameter} | " in report
    assert report.count("| parameter | S1 [95 % CI] | ST [95 % CI] |") == len(config.design.outcomes)
