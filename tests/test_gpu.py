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


def test_lora_training_runs_on_cuda_and_is_deterministic_there() -> None:
    """The same texts, settings and seed give the same adapter bytes on the GPU, twice, and the
    adapter changes the model's score of its training texts."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    from culturesim.parts.corpus import load_corpus
    from culturesim.parts.llm.models import resolve_model
    from culturesim.parts.llm.training import LoraSettings, train_adapter, training_device
    from culturesim.schema.config import CorpusSection
    from culturesim.schema.llm_section import BUILTIN_MODEL

    assert training_device() == "cuda"
    texts = load_corpus(CorpusSection())["text"].to_list()[:32]
    model = resolve_model(BUILTIN_MODEL)
    settings = LoraSettings(rank=8, epochs=2, learning_rate=1e-3, batch_size=8, seed=5)
    first, second = (train_adapter(model, BUILTIN_MODEL, texts, settings) for _ in range(2))
    assert first.digest == second.digest and first.losses[-1] < first.losses[0]
