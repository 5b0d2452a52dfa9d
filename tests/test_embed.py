"""The embedder is real, offline, unit-normalised, and embeds each distinct text once."""

from __future__ import annotations

import numpy as np


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


def test_embedding_does_not_depend_on_the_other_texts_in_a_call() -> None:
    """A resumed study re-embeds texts in other company; the bits must not change."""
    import json
    from importlib.resources import files

    from culturesim.config import EmbeddingSection
    from culturesim.embed import Embedder

    texts = [json.loads(line)["text"] for line in files("culturesim").joinpath("data", "seed_corpus.jsonl").open()]
    reference = Embedder(EmbeddingSection()).embed(texts[:60])
    rng = np.random.default_rng(0)
    for _ in range(3):
        fresh = Embedder(EmbeddingSection())
        fresh.embed([texts[i] for i in rng.choice(len(texts), size=int(rng.integers(1, 90)))])
        subset = sorted(rng.choice(60, size=25, replace=False))
        company = [texts[i] for i in rng.choice(len(texts), size=17)]
        vectors = fresh.embed([texts[i] for i in subset] + company)[: len(subset)]
        np.testing.assert_array_equal(vectors, reference[subset])


def test_disk_cache_persists_vectors_between_embedders(tmp_path) -> None:
    from culturesim.config import EmbeddingSection
    from culturesim.embed import Embedder

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
