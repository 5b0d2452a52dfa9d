"""Embedding throughput: culturesim's embedder (token-length groups on a fixed thread count,
text cache) vs raw `SentenceTransformer.encode` (batch 128, torch's default threads) on the
same texts, plus the cache hit rate of a quickstart-like human-only study.

Run: .venv/bin/python benchmarks/bench_embed.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import report, timed  # noqa: E402

from culturesim.config import EmbeddingSection, StudyConfig  # noqa: E402
from culturesim.embed import Embedder  # noqa: E402
from culturesim.study.runner import StudyRunner  # noqa: E402


def corpus_texts() -> list[str]:
    lines = files("culturesim").joinpath("data", "seed_corpus.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines]


def main() -> None:
    corpus = corpus_texts()
    texts = [f"{t} ({i // len(corpus)})" if i >= len(corpus) else t for i, t in enumerate(corpus * 4)]
    rows = []
    for size in (len(texts), len(corpus), 16):
        chunk = texts[:size]
        ours = Embedder(EmbeddingSection())
        raw_model = ours._model
        raw_model.encode(chunk[:8])  # warm-up
        calls = max(1, 64 // size)
        raw_seconds = timed(lambda: [raw_model.encode(chunk, batch_size=128) for _ in range(calls)])

        def culturesim_embed() -> None:
            for _ in range(calls):
                ours._cache.clear()
                ours.embed(chunk)

        our_seconds = timed(culturesim_embed)
        rows.append(
            {
                "texts_per_call": size,
                "raw_texts_per_s": size * calls / raw_seconds,
                "culturesim_texts_per_s": size * calls / our_seconds,
                "ratio": raw_seconds / our_seconds,
            }
        )
    config = StudyConfig.model_validate(
        {
            "study": {"name": "embed-bench", "seed": 3, "replicates": 3, "generations": 8},
            "population": {"size": 60},
            "humans": {"bias": "conformist", "copy_error": 0.05, "innovation": 0.02},
            "conditions": {"network.kind": ["small_world", "scale_free"]},
        }
    )
    os.environ["CULTURESIM_NO_DISK_CACHE"] = "1"
    with tempfile.TemporaryDirectory() as out:
        folder = StudyRunner().run(config, out_root=Path(out))
        throughput = json.loads((folder / "manifest.json").read_text())["throughput"]
    requested, encoded = throughput["embedding_requests"], throughput["embedded_texts"]
    rows.append(
        {
            "texts_per_call": "quickstart-like study (6 runs, humans only)",
            "raw_texts_per_s": float("nan"),
            "culturesim_texts_per_s": throughput["embedded_texts_per_second"],
            "ratio": 1 - encoded / requested,
        }
    )
    report("bench_embed", rows, title="embedding: culturesim vs raw encode (last row: ratio = cache hit rate)")


if __name__ == "__main__":
    main()
