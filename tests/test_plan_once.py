"""A study is planned once: the planner alone calls the derivations, and its plan never changes.

`culturesim.study.planner.plan_study` turns a config and a results folder's state into one frozen
`StudyPlan`; `run`, `--dry-run`, `describe`, `status`, `calibrate`, the executors, the batches, the
sizes, the rates and the reports read it. These tests fail when any other module derives a part of
the plan again, when a plan can be changed, and when what a dry run prints differs from what runs.
"""

from __future__ import annotations

import ast
import dataclasses
import pickle
from pathlib import Path

import pytest

import culturesim
from culturesim.schema.config import StudyConfig, load_config
from culturesim.study.planner import plan_study
from culturesim.study.runner import StudyRunner
from culturesim.study.store import read_manifest

ROOT = Path(culturesim.__file__).parent.parent
PLANNER = ROOT / "culturesim" / "study" / "planner.py"
# What the planner derives a plan from: runs, engine groups and batches, calibrations, corpora, sizes, time.
DERIVATIONS = frozenset(
    {"plan_runs", "engine_groups", "plan_batches", "study_specs", "condition_corpora", "size_study", "estimate_wall"}
)
SOURCES = ("culturesim", "benchmarks", "analysis", "paper")


def calls_of_derivations(path: Path) -> list[str]:
    """`name (line)` for each call of a derivation in a file, by plain or attribute name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in DERIVATIONS:
                found.append(f"{name} (line {node.lineno})")
    return found


def test_only_the_planner_calls_the_derivations() -> None:
    """Every derivation has one caller, the planner (a derivation calling its own helper within its
    module, as `engine_groups` cuts batches with `plan_batches`, is part of that one call)."""
    callers: dict[str, list[str]] = {}
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for call in calls_of_derivations(path):
                callers.setdefault(call.split()[0], []).append(f"{path.relative_to(ROOT)}: {call}")
    outside = {
        name: [c for c in where if not c.startswith(("culturesim/study/planner.py", "culturesim/study/grid.py"))]
        for name, where in callers.items()
    }
    assert not {name: where for name, where in outside.items() if where}, outside
    planner_calls = {call.split()[0] for call in calls_of_derivations(PLANNER)}
    assert planner_calls == DERIVATIONS - {"plan_batches"}, planner_calls
    assert [c for c in callers["plan_batches"]] == [c for c in callers["plan_batches"] if "grid.py" in c]


def test_the_check_above_would_see_a_second_caller(tmp_path: Path) -> None:
    """The scan finds a derivation called through a module attribute or by its own name."""
    source = tmp_path / "module.py"
    source.write_text("from culturesim.study import grid\nruns = grid.plan_runs(config)\nsize_study(config)\n")
    assert calls_of_derivations(source) == ["plan_runs (line 2)", "size_study (line 3)"]


def test_a_plan_cannot_change_and_travels_whole() -> None:
    """Frozen records and tuples only: no field can be set, no mapping or list inside can be mutated,
    and a pool worker or Ray task receives an equal plan."""
    plan = plan_study(load_config(ROOT / "studies" / "quickstart.toml"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.runs = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.groups[0].batches = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.calibrations[0].source = "cache"  # type: ignore[misc]

    def mutable(value: object) -> list[str]:
        if isinstance(value, (list, dict, set)):
            return [type(value).__name__]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return [m for f in dataclasses.fields(value) for m in mutable(getattr(value, f.name))]
        if isinstance(value, tuple):
            return [m for item in value for m in mutable(item)]
        return []

    assert not mutable(plan), "a plan holds only frozen records and tuples"
    assert pickle.loads(pickle.dumps(plan)) == plan


def test_a_dry_run_prints_the_plan_that_runs(embedder, tmp_path: Path) -> None:
    """The plan `run` executes is the one it was handed: the manifest records its groups, batches and
    calibration sources, equal to the plan made before; a plan of another folder is refused."""
    config = StudyConfig.model_validate(
        {
            "study": {"name": "planned-once", "seed": 4, "replicates": 3, "generations": 2},
            "population": {"size": 12},
            "conditions": {"humans.copy_error": [0.0, 0.3]},
        }
    )
    runner = StudyRunner(embedder=embedder)
    plan = runner.plan(config, out_root=tmp_path, batch_runs=2)
    assert [[len(b) for b in g.batches] for g in plan.groups] == [[2, 2, 2]]
    folder = runner.run(config, out_root=tmp_path, plan=plan)
    manifest = read_manifest(folder)
    assert manifest["plan"] == plan.summary()
    assert [run["run_id"] for run in manifest["runs"]] == [run.run_id for run in plan.runs]
    with pytest.raises(ValueError, match="another study or results folder"):
        runner.run(config, out_root=tmp_path / "elsewhere", plan=plan)
    resumed = runner.plan(config, out_root=tmp_path, batch_runs=2)
    assert resumed.done == frozenset(run.run_id for run in plan.runs) and resumed.pending(resumed.groups[0]) == []
