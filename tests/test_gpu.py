"""A toy study end to end on a CUDA GPU (transformers backend and embedder on `cuda`): it runs,
records its devices, and replays on the CPU from its log and stored vectors to the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from culturesim.schema.config import StudyConfig
from culturesim.study.runner import StudyRunner

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def test_a_toy_study_runs_on_cuda_and_replays_on_the_cpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    config = StudyConfig.model_validate(
        {
            "study": {"name": "gpu", "seed": 3, "replicates": 1, "generations": 2},
            "population": {"size": 12, "llm_share": 0.25},
            "llm": {"engine": {"backend": "transformers", "device": "cuda"}, "sampling": {"max_tokens": 12}},
            "embedding": {"device": "cuda"},
            "attractor": {"chains": 3, "generations": 2},
        }
    )
    runner = StudyRunner()
    try:
        folder = runner.run(config, out_root=tmp_path / "results")
    finally:
        runner.close()
    session = json.loads((folder / "manifest.json").read_text())["sessions"][-1]
    assert session["devices"] == {"embedding": "cuda", "llm": "cuda"}
    assert session["hardware"]["gpu"]
    replayed = StudyRunner().replay(folder, tmp_path / "replay")
    for table in ("metrics.parquet", "traits.parquet", "population.parquet"):
        assert (replayed / table).read_bytes() == (folder / table).read_bytes(), table
