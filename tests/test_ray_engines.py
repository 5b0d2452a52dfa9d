"""Ray spreads an LLM study: with two engine actors its runs are cut into two lockstep batches, one
per actor, and the results are the local executor's, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from culturesim.core.fingerprint import file_sha256
from tests.helpers import NEEDS_VLLM, llm_toy_study, run_cli

pytestmark = [
    pytest.mark.slow,
    NEEDS_VLLM,
]

STUDY = llm_toy_study("spread", seed=9, replicates=4, generations=2, max_tokens=12)
TABLES = ("metrics.parquet", "traits.parquet", "generations.parquet", "population.parquet", "vectors.parquet")


def test_two_engine_actors_split_an_llm_study_and_give_the_local_bytes(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install culturesim[ray]")
    study = tmp_path / "spread.toml"
    study.write_text(STUDY, encoding="utf-8")
    local = run_cli(study, tmp_path / "local")
    assert local.returncode == 0, local.stderr[-3000:]
    spread = run_cli(study, tmp_path / "ray", "--executor", "ray", "--engines", "2")
    assert spread.returncode == 0, spread.stderr[-3000:]
    [local_folder] = (tmp_path / "local" / "spread").iterdir()
    [ray_folder] = (tmp_path / "ray" / "spread").iterdir()
    digests = {table: file_sha256(ray_folder / table) for table in TABLES}
    assert digests == {table: file_sha256(local_folder / table) for table in TABLES}
    print(json.dumps(digests, indent=1))
    calls = [
        json.loads((f / "manifest.json").read_text())["throughput"]["llm_calls"] for f in (local_folder, ray_folder)
    ]
    # Local: one lockstep batch, one engine call per generation and retry round; Ray: two batches.
    assert calls[1] > calls[0], calls


def test_engines_without_ray_is_refused(tmp_path: Path) -> None:
    study = tmp_path / "spread.toml"
    study.write_text(STUDY, encoding="utf-8")
    refused = run_cli(study, tmp_path / "out", "--engines", "2")
    assert refused.returncode == 2 and "--executor ray" in refused.stdout + refused.stderr
