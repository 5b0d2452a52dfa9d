"""Tests for culturesim.parts.traits: the append-only trait pool, lineage and machine ancestry."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from culturesim.parts.traits import AUTHOR_KINDS, TRAITS_SCHEMA, TraitPool

DIM = 4


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def pool() -> TraitPool:
    """Two seed texts (ids 0, 1) and one LLM text (id 2) written from both."""
    pool = TraitPool(DIM)
    pool.add(["seed a", "seed b"], author_kind="seed", parents=[(), ()], generation=0)
    pool.add(["llm c"], author_kind="llm", parents=[(0, 1)], generation=1)
    return pool


def test_ids_are_consecutive_across_adds():
    pool = TraitPool(DIM)
    first = pool.add(["a", "b", "c"], author_kind="seed", parents=[(), (), ()], generation=0)
    empty = pool.add([], author_kind="human_innovation", parents=[], generation=1)
    second = pool.add(["d", "e"], author_kind="human_innovation", parents=[(), ()], generation=1)
    assert first.tolist() == [0, 1, 2]
    assert empty.tolist() == []
    assert second.tolist() == [3, 4]
    assert len(pool) == 5
    assert pool.texts == ["a", "b", "c", "d", "e"]


def test_lineage_and_birth_are_kept(pool):
    ids = pool.add(["err"], author_kind="human_error", parents=[(2,)], generation=4)
    assert pool.parents == [(), (), (0, 1), (2,)]
    assert pool.born.tolist() == [0, 0, 1, 4]
    assert pool.author_kinds(np.array([0, 2, int(ids[0])])) == ["seed", "llm", "human_error"]


@pytest.mark.parametrize(("kind", "expected"), [("llm", 1.0), ("human_llm_assisted", 1.0)])
def test_machine_kinds_have_full_ancestry(kind, expected):
    pool = TraitPool(DIM)
    pool.add(["seed"], author_kind="seed", parents=[()], generation=0)
    ids = pool.add(["machine"], author_kind=kind, parents=[(0,)], generation=1)
    assert pool.machine_ancestry[ids].tolist() == [expected]
    assert pool.machine_authored.tolist() == [False, True]


def test_seed_and_innovation_have_no_machine_ancestry(pool):
    ids = pool.add(["new idea"], author_kind="human_innovation", parents=[()], generation=2)
    assert pool.machine_ancestry[[0, 1]].tolist() == [0.0, 0.0]
    assert pool.machine_ancestry[ids].tolist() == [0.0]
    assert not pool.machine_authored[ids].any()


def test_copy_error_inherits_mean_ancestry_of_parents(pool):
    of_llm = pool.add(["llm c!"], author_kind="human_error", parents=[(2,)], generation=2)
    mixed = pool.add(["mix"], author_kind="human_error", parents=[(0, 2)], generation=2)
    of_mix = pool.add(["mix!"], author_kind="human_error", parents=[(int(mixed[0]), 2)], generation=3)
    of_seed = pool.add(["seed a!"], author_kind="human_error", parents=[(0,)], generation=2)
    assert pool.machine_ancestry[of_llm].tolist() == [1.0]
    assert pool.machine_ancestry[mixed].tolist() == [0.5]
    assert pool.machine_ancestry[of_mix].tolist() == [0.75]
    assert pool.machine_ancestry[of_seed].tolist() == [0.0]
    assert not pool.machine_authored[[int(of_llm[0]), int(mixed[0])]].any()


def test_add_rejects_bad_arguments(pool):
    with pytest.raises(ValueError, match="unknown author kind"):
        pool.add(["x"], author_kind="robot", parents=[()], generation=1)
    with pytest.raises(ValueError, match="one tuple per text"):
        pool.add(["x", "y"], author_kind="seed", parents=[()], generation=1)
    assert len(pool) == 3


def test_pending_texts_and_attach(pool):
    assert pool.pending_texts() == ["seed a", "seed b", "llm c"]
    assert pool.embeddings.shape == (0, DIM)
    vectors = unit_rows(3)
    pool.attach_embeddings(vectors)
    assert pool.pending_texts() == []
    assert np.array_equal(pool.embeddings, vectors)
    pool.add(["d"], author_kind="human_innovation", parents=[()], generation=2)
    assert pool.pending_texts() == ["d"]
    assert pool.embeddings.shape == (3, DIM)  # only embedded traits are exposed


@pytest.mark.parametrize("shape", [(2, DIM), (4, DIM), (3, DIM + 1), (3,)])
def test_attach_rejects_wrong_shape(pool, shape):
    with pytest.raises(ValueError, match="expected 3 embeddings of dim 4"):
        pool.attach_embeddings(np.zeros(shape, dtype=np.float32))
    assert pool.pending_texts() == ["seed a", "seed b", "llm c"]


def test_embeddings_grow_over_many_attach_calls():
    pool = TraitPool(DIM)
    expected = []
    for batch, size in enumerate([1, 5, 0, 2, 17, 3]):
        pool.add([f"t{batch}-{i}" for i in range(size)], author_kind="seed", parents=[()] * size, generation=batch)
        vectors = unit_rows(size, seed=batch)
        pool.attach_embeddings(vectors)
        expected.append(vectors)
        assert np.array_equal(pool.embeddings, np.concatenate(expected))
    assert pool.embeddings.shape == (28, DIM)
    assert pool.embeddings.dtype == np.float32


def test_to_frame_schema_and_values(pool):
    pool.add(["err"], author_kind="human_error", parents=[(0, 2)], generation=3)
    frame = pool.to_frame()
    assert dict(frame.schema) == TRAITS_SCHEMA
    assert frame["trait_id"].to_list() == [0, 1, 2, 3]
    assert frame["text"].to_list() == ["seed a", "seed b", "llm c", "err"]
    assert frame["author_kind"].to_list() == ["seed", "seed", "llm", "human_error"]
    assert frame["parent_ids"].to_list() == [[], [], [0, 1], [0, 2]]
    assert frame["generation"].to_list() == [0, 0, 1, 3]
    assert frame["machine_ancestry"].to_list() == [0.0, 0.0, 1.0, 0.5]
    assert set(frame["author_kind"].to_list()) <= set(AUTHOR_KINDS)


def test_to_frame_of_empty_pool():
    frame = TraitPool(DIM).to_frame()
    assert frame.height == 0
    assert frame.schema == pl.Schema(TRAITS_SCHEMA)
