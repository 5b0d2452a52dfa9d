"""Every benchmark script runs end to end at its smoke size and writes the table it promises.

Nothing else runs the benchmarks, so without these tests a benchmark rots unseen (an import of a
moved module, a renamed function). Scripts run in this process, on the session's engines where their
`main` takes them (an engine start saved); bench_prefix needs two fresh vLLM engines of its own, and
vLLM's engines cannot share a process with the session's, so it runs as a subprocess, as a person
runs it. Smoke numbers measure nothing: the tests check the tables' shape and that baseline and
candidate both ran, never a speed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import NEEDS_VLLM

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def scripts() -> list[str]:
    """The benchmark scripts (benchmarks/*.py but the shared helpers, `_common.py`)."""
    return sorted(path.stem for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_"))


def load(name: str) -> ModuleType:
    """benchmarks/<name>.py imported as the module `benchmark_<name>` (sys.path left as it was)."""
    saved = list(sys.path)
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look themselves up
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def table(path: Path, columns: dict[str, str]) -> dict:
    """A benchmark's JSON, checked: strict JSON (no NaN), written at smoke size, and every row holding
    exactly the columns the script promises, in order."""
    document = json.loads(path.read_text(), parse_constant=_not_json)
    assert document["benchmark"] == path.stem
    assert document["smoke"] is True
    assert document["columns"] == columns
    assert document["machine"]["logical_cores"] >= 1
    assert document["rows"], f"{path.name} has no rows"
    for row in document["rows"]:
        assert list(row) == list(columns), row
    return document


def test_every_benchmark_script_has_a_smoke_test() -> None:
    tested = {name.removeprefix("test_").removesuffix("_smoke") for name in globals() if name.endswith("_smoke")}
    missing = [name for name in scripts() if name not in tested]
    assert not missing, f"benchmarks without a smoke test here (add test_<script>_smoke): {missing}"
    assert {"bench_engine", "bench_embed"} <= set(scripts())


def test_bench_engine_smoke(tmp_path: Path, embedder) -> None:
    module = load("bench_engine")
    written = module.main(["--smoke", "--out", str(tmp_path)], embedder=embedder)
    assert written == tmp_path / "bench_engine.json"
    rows = table(written, module.COLUMNS)["rows"]
    assert [row["agents"] for row in rows] == [60, 200]
    for row in rows:
        assert row["engine_agent_gens_per_s"] > 0 and row["agentpy_agent_gens_per_s"] > 0
        assert row["speedup_of_best"] == pytest.approx(row["engine_agent_gens_per_s"] / row["agentpy_agent_gens_per_s"])
        assert row["speedup_min"] <= row["speedup"] <= row["speedup_max"]


def test_bench_engine_marks_the_baseline_it_skipped_as_null(tmp_path: Path, embedder) -> None:
    module = load("bench_engine")
    argv = ["--smoke", "--out", str(tmp_path), "--sizes", "60", "--baseline-max", "50"]
    [row] = table(module.main(argv, embedder=embedder), module.COLUMNS)["rows"]
    assert row["engine_agent_gens_per_s"] > 0
    assert row["agentpy_agent_gens_per_s"] is None and row["speedup"] is None


def test_bench_memory_smoke(tmp_path: Path, embedder) -> None:
    module = load("bench_memory")
    [row] = table(module.main(["--smoke", "--out", str(tmp_path)], embedder=embedder), module.COLUMNS)["rows"]
    assert row["agents"] == 2000 and row["generations"] == 2
    assert row["wall_seconds"] > 0 and row["peak_rss_gb"] > 0


def test_bench_embed_smoke(tmp_path: Path) -> None:
    module = load("bench_embed")
    document = table(module.main(["--smoke", "--out", str(tmp_path)]), module.COLUMNS)
    methods = {row["method"] for row in document["rows"]}
    assert {"raw encode", "culturesim", "culturesim before (width groups)"} <= methods
    for row in document["rows"]:
        assert row["texts_per_call"] in module.SMOKE_SIZES.calls
        assert row["texts_per_s"] > 0 and row["cpu_fraction"] > 0
        if row["method"] == "raw encode":
            assert row["vs_raw"] == 1.0
    assert document["summary"]["limit_gflop_per_s"] > 0
    [study] = table(tmp_path / "bench_embed_study.json", module.STUDY_COLUMNS)["rows"]
    assert study["runs"] == 4  # the toy study: 2 network kinds x 2 replicates
    assert study["embedding_requests"] >= study["embedded_texts"] > 0


@NEEDS_VLLM
def test_bench_llm_smoke(tmp_path: Path, vllm_backend) -> None:
    module = load("bench_llm")
    rows = table(module.main(["--smoke", "--out", str(tmp_path)], backend=vllm_backend), module.COLUMNS)["rows"]
    assert len(rows) == 4
    assert rows[0]["ratio"] == 1.0
    assert all(row["tokens"] > 0 and row["tokens_per_s"] > 0 for row in rows)


@NEEDS_VLLM
@pytest.mark.slow
def test_bench_prefix_smoke(tmp_path: Path) -> None:
    """From the command line (two engines of its own), writing where $CULTURESIM_BENCH_RESULTS says."""
    env = {**os.environ, "CULTURESIM_BENCH_RESULTS": str(tmp_path)}
    script = [sys.executable, str(BENCHMARKS / "bench_prefix.py"), "--smoke"]
    done = subprocess.run(script, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    module = load("bench_prefix")
    rows = table(tmp_path / "bench_prefix.json", module.COLUMNS)["rows"]
    assert [row["role"] for row in rows] == list(module.ROLES)
    for row in rows:
        assert row["prompt_tokens"] > row["own_tokens"] > 0
        assert row["seconds_cache_off"] > 0 and row["seconds_cache_on"] > 0


@NEEDS_VLLM
@pytest.mark.slow
def test_bench_training_smoke(tmp_path: Path) -> None:
    """From the command line (a LoRA engine of its own): training twice gives the same adapter bytes,
    and the adapters answer."""
    script = [sys.executable, str(BENCHMARKS / "bench_training.py"), "--smoke", "--out", str(tmp_path)]
    done = subprocess.run(script, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    module = load("bench_training")
    document = table(tmp_path / "bench_training.json", module.COLUMNS)
    training, base, merged, multi_lora = document["rows"]
    assert training["same_bytes"] == "True" and training["tokens"] > 0 and training["ratio"] > 0
    assert min(row["tokens"] for row in (base, merged, multi_lora)) > 0 and document["summary"]["limit_gflops"] > 0


@NEEDS_VLLM
@pytest.mark.slow
def test_profile_quickstart_smoke(tmp_path: Path, embedder, vllm_backend) -> None:
    """The quickstart's toy version; every phase's function must still be called by a study."""
    module = load("profile_quickstart")
    argv = ["--smoke", "--out", str(tmp_path)]
    rows = table(module.main(argv, embedder=embedder, backend=vllm_backend), module.COLUMNS)["rows"]
    assert [row["phase"] for row in rows] == [*module.PHASES, "total wall time"]
    never = [row["phase"] for row in rows if row["calls"] == 0]
    assert not never, f"phases the quickstart no longer enters (a renamed or bypassed function?): {never}"
    assert rows[-1]["share"] == 1.0 and all(0 <= row["share"] <= 1 for row in rows)
