"""The embedder is real, offline, unit-normalised, and embeds each distinct text once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pytest

from culturesim.parts.embed import PACKED_MIN_TOKENS, Embedder, PackedBert, _cache_namespace, resolve_embedder
from culturesim.schema.config import EmbeddingSection


def corpus_texts() -> list[str]:
    return [json.loads(line)["text"] for line in files("culturesim").joinpath("data", "seed_corpus.jsonl").open()]


def test_identical_texts_are_embedded_once(embedder) -> None:
    texts = [
        "A cat sat on the warm windowsill.",
        "Bread tastes better on the second day.",
        "A cat sat on the warm windowsill.",
    ]
    before = embedder.encoded
    vectors = embedder.embed(texts)
    assert embedder.encoded - before == 2
    again = embedder.embed(texts[:1])
    assert embedder.encoded - before == 2
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(again[0], vectors[0])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors.shape == (3, embedder.dim) == (3, 384)


def test_embeddings_carry_meaning(embedder) -> None:
    cat, kitten, tax = embedder.embed(
        ["The cat is sleeping on the sofa.", "A kitten naps on the couch.", "Quarterly tax returns are due in April."]
    )
    assert cat @ kitten > cat @ tax + 0.3


def test_empty_batch(embedder) -> None:
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_embedders_share_one_loaded_model(embedder) -> None:
    """A model load costs seconds; the runner and the tests build many Embedders on one model,
    each with its own text cache."""
    vector = embedder.embed(["Rain again."])
    fresh = Embedder(EmbeddingSection())
    assert fresh._model is embedder._model
    np.testing.assert_array_equal(fresh.embed(["Rain again."]), vector)
    assert fresh.encoded == 1, "a fresh Embedder starts with a cold text cache"


def test_an_embedder_leaves_the_environment_alone(embedder, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = dict(os.environ)
    Embedder(EmbeddingSection())
    assert dict(os.environ) == before


# HF_HUB_OFFLINE unset and the hub's address a closed local port: any network call would fail.
OFFLINE_LOAD = """
import os
from culturesim.schema.config import EmbeddingSection
from culturesim.parts.embed import Embedder
embedder = Embedder(EmbeddingSection())
assert "HF_HUB_OFFLINE" not in os.environ
print(embedder.embed(["The river keeps its own time."]).shape)
"""


def test_the_builtin_model_loads_without_network_or_offline_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-c", OFFLINE_LOAD], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("(1, 384)"), result.stdout


@pytest.mark.parametrize("scheme", ["packed", "width groups"])
def test_embedding_does_not_depend_on_the_other_texts_in_a_call(scheme: str) -> None:
    """A resumed study re-embeds texts in other company; the bits must not change. Each Embedder
    starts with a cold text cache (its model is the shared one). The built-in model runs packed;
    other models fall back to width groups, tested here on the same model."""
    texts = corpus_texts()

    def embedder() -> Embedder:
        made = Embedder(EmbeddingSection())
        assert made._packed is not None, "the built-in model runs packed on the CPU"
        if scheme == "width groups":
            made._packed = None
        return made

    first = embedder()
    reference = first.embed(texts[:60])
    rng = np.random.default_rng(0)
    for _ in range(3):
        fresh = embedder()
        assert fresh._model is first._model and fresh.encoded == 0
        fresh.embed([texts[i] for i in rng.choice(len(texts), size=int(rng.integers(1, 90)))])
        subset = sorted(rng.choice(60, size=25, replace=False))
        company = [texts[i] for i in rng.choice(len(texts), size=17)]
        vectors = fresh.embed([texts[i] for i in subset] + company)[: len(subset)]
        np.testing.assert_array_equal(vectors, reference[subset])


def test_disk_cache_persists_vectors_between_embedders(tmp_path) -> None:
    texts = ["Soup tastes better the day after.", "Nobody whistles in our library."]
    first = Embedder(EmbeddingSection(), cache_dir=tmp_path)
    vectors = first.embed(texts)
    first.save()
    second = Embedder(EmbeddingSection(), cache_dir=tmp_path)
    assert second.loaded == 2
    np.testing.assert_array_equal(second.embed(texts), vectors)
    assert second.encoded == 0
    second.embed(["A new sentence nobody has embedded."])
    assert second.encoded == 1


def test_a_shard_another_process_is_still_writing_is_not_read(tmp_path) -> None:
    """Two pool workers share the disk cache: one may open the cache while the other's shard is a
    half-written `.tmp.npz` that is renamed away a moment later. Only whole shards are read."""
    first = Embedder(EmbeddingSection(), cache_dir=tmp_path)
    first.embed(["Soup tastes better the day after."])
    first.save()
    [store] = {shard.parent for shard in tmp_path.rglob("*.npz")}
    (store / "999-0123456789abcdef.tmp.npz").write_bytes(b"PK\x03\x04 half a zip")  # being written
    assert Embedder(EmbeddingSection(), cache_dir=tmp_path).loaded == 1


def test_a_text_alone_equals_the_same_text_in_a_large_call() -> None:
    """Calls of one or two short texts hold fewer token rows than MKL's row-independent kernels
    need; the packed forward tops them up to PACKED_MIN_TOKENS rows."""
    texts = ["Hi.", "Rain again.", *corpus_texts()[:150]]
    reference = Embedder(EmbeddingSection()).embed(texts)
    for i in (0, 1, 2, 149):
        alone = Embedder(EmbeddingSection()).embed([texts[i]])
        np.testing.assert_array_equal(alone[0], reference[i])
    pair = Embedder(EmbeddingSection()).embed(texts[:2])
    np.testing.assert_array_equal(pair, reference[:2])
    assert PACKED_MIN_TOKENS >= 16


def test_packed_forward_matches_sentence_transformers(embedder) -> None:
    """The packed pass is the model's own computation, reordered: equal to encoding one text at a
    time up to float rounding."""
    texts = ["Hi.", *corpus_texts()[:40], "word " * 300]  # the last one is cut at max_seq_length
    assert PackedBert.supports(embedder._model)
    ours = embedder._packed.encode(texts)
    theirs = np.concatenate([embedder._model.encode([t], normalize_embeddings=True) for t in texts])
    np.testing.assert_allclose(ours, theirs, atol=2e-6)


# The vectors of texts at one torch thread and OMP_NUM_THREADS=1, printed as hex bytes.
ONE_THREAD = """
import sys, torch
torch.set_num_threads(1)
from culturesim.schema.config import EmbeddingSection
from culturesim.parts.embed import Embedder
texts = sys.stdin.read().split("\\n")
print(Embedder(EmbeddingSection()).embed(texts).tobytes().hex())
"""


def test_vectors_do_not_depend_on_the_process_thread_count(embedder) -> None:
    texts = [*corpus_texts()[:30], "Hi."]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", ONE_THREAD], input="\n".join(texts), capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one_thread = np.frombuffer(bytes.fromhex(result.stdout.strip()), dtype=np.float32).reshape(len(texts), -1)
    np.testing.assert_array_equal(one_thread, Embedder(EmbeddingSection()).embed(texts))


def test_the_disk_cache_key_names_the_forward_scheme() -> None:
    """Packed and width-group vectors differ in the last bits, so they never share a cache folder."""
    path = resolve_embedder(EmbeddingSection().model)
    assert _cache_namespace(path, "cpu", "packed-v1") != _cache_namespace(path, "cpu")
