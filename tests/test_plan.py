"""A study is planned once: its condition grid is validated once per condition and shared by every reader."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import culturesim.schema.config as config_module
from culturesim.schema.config import StudyConfig
from tests.helpers import llm_toy_study


@pytest.fixture
def validations(monkeypatch) -> list[str]:
    """The source of every config validation made after the fixture starts (study file or condition)."""
    seen: list[str] = []
    original = config_module._validate

    def counting(data, *, source):
        seen.append(source)
        return original(data, source=source)

    monkeypatch.setattr(config_module, "_validate", counting)
    return seen


def test_a_run_validates_each_condition_once(runner, validations: list[str], tmp_path: Path) -> None:
    """Sizing, the attractor's calibration plan, engine groups, batches, the ODD and the tables of an LLM study
    with three conditions all read one grid: three condition validations in all (85 for the quickstart
    before the grid was planned once)."""
    extra = '[conditions]\n"population.llm_share" = [0.0, 0.25, 0.5]\n'
    text = llm_toy_study("planned", seed=3, replicates=1, generations=2, max_tokens=8, extra=extra)
    config = StudyConfig.model_validate(tomllib.loads(text))
    plan = runner.plan(config, out_root=tmp_path)
    runner.run(config, out_root=tmp_path, plan=plan)
    assert sorted(validations) == sorted(f"condition llm_share={v}" for v in ("0.0", "0.25", "0.5"))


def test_the_grid_is_the_same_objects_every_time() -> None:
    config = StudyConfig.model_validate({"study": {"name": "x"}, "conditions": {"population.size": [10, 20]}})
    first, second = config.condition_grid(), config.condition_grid()
    assert first == second and all(a[1] is b[1] for a, b in zip(first, second, strict=True))
    first.append(("mutated", config))  # a caller's list is its own
    assert len(config.condition_grid()) == 2


def test_a_copy_with_other_conditions_plans_its_own() -> None:
    config = StudyConfig.model_validate({"study": {"name": "x"}, "conditions": {"population.size": [10, 20]}})
    config.condition_grid()
    copy = config.model_copy(update={"conditions": {"population.size": [30]}})
    assert [c.population.size for _, c in copy.condition_grid()] == [30]
