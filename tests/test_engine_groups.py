"""Conditions over engine fields run each group with its own engine, one engine alive at a time."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from culturesim.parts.devices import cuda_available
from culturesim.schema.config import StudyConfig
from culturesim.study.planner import plan_study
from tests.helpers import NEEDS_VLLM, llm_toy_study, run_cli


def dtype_study(**conditions) -> StudyConfig:
    return StudyConfig.model_validate(
        {
            "study": {"name": "dtypes", "seed": 2, "replicates": 2, "generations": 2},
            "population": {"size": 12, "llm_share": 0.25},
            "llm": {"engine": {"backend": "vllm"}, "sampling": {"max_tokens": 12}},
            "attractor": {"chains": 3, "generations": 1},
            "conditions": conditions or {"llm.engine.dtype": ["float32", "bfloat16"], "humans.copy_error": [0.0, 0.2]},
        }
    )


def test_runs_are_grouped_by_engine_and_lockstep_stays_within_a_group() -> None:
    config = dtype_study()
    groups = plan_study(config).groups
    assert [g.config.llm.engine.dtype for g in groups] == ["float32", "bfloat16"]  # in order of first appearance
    assert [len(g.plans) for g in groups] == [4, 4]
    assert all(len({p.condition for p in g.plans}) == 2 for g in groups)
    human_only = dtype_study(**{"population.llm_share": [0.0, 0.25]})
    groups = plan_study(human_only).groups
    assert [g.needs_llm for g in groups] == [True, False]  # LLM groups run first: they make the calibration
    assert [len(g.batches) for g in groups] == [1, 2]  # an LLM group is one lockstep batch, a human run its own


DTYPE_STUDY = llm_toy_study(
    "dtypes",
    seed=2,
    replicates=2,
    generations=2,
    max_tokens=12,
    calibration_generations=1,
    extra='[conditions]\n"llm.engine.dtype" = ["float32", "bfloat16"]\n',
)


@pytest.mark.slow
@NEEDS_VLLM
def test_a_dtype_condition_runs_two_real_engines(tmp_path: Path) -> None:
    """In its own process: engines started and stopped there leave this session's engine alone."""
    study = tmp_path / "dtypes.toml"
    study.write_text(DTYPE_STUDY, encoding="utf-8")
    done = run_cli(study, tmp_path / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    [folder] = (tmp_path / "out" / "dtypes").iterdir()
    entries = [json.loads(line) for path in (folder / "log").glob("*.jsonl") for line in path.read_text().splitlines()]
    entries = [e for e in entries if "commit" not in e]
    by_run = pl.DataFrame(entries).group_by("run_id").agg(pl.col("dtype").unique(), pl.col("engine_key").unique())
    dtypes = {row["run_id"]: row["dtype"] for row in by_run.to_dicts()}
    assert dtypes == {"c0-r0": ["float32"], "c0-r1": ["float32"], "c1-r0": ["bfloat16"], "c1-r1": ["bfloat16"]}
    assert len({e["engine_key"] for e in entries}) == 2
    manifest = json.loads((folder / "manifest.json").read_text())
    engines = manifest["engines"]
    # one start per engine: each calibrates its attractor with the engine it then runs on; keys name the device
    device = "cuda" if cuda_available() else "cpu"
    assert [e["engine"].split("#")[0] for e in engines] == [f"vllm/builtin:smollm2-135m/float32/{device}",
                                                            f"vllm/builtin:smollm2-135m/bfloat16/{device}"]  # fmt: skip
    assert datetime.fromisoformat(engines[0]["stopped"]) <= datetime.fromisoformat(engines[1]["started"])
    assert sorted(entry["spec"]["engine"].split("#")[0] for entry in manifest["attractors"].values()) == [
        f"vllm/builtin:smollm2-135m/bfloat16/{device}", f"vllm/builtin:smollm2-135m/float32/{device}"]  # fmt: skip
    print(json.dumps(engines, indent=1))
