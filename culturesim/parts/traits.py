"""The trait pool of one run: every variant ever born, with its lineage and embedding.

Agents hold integer trait ids, so copying a trait is an integer copy and metrics
gather embedding rows. The pool is append-only: a trait, once born, keeps its id,
text, author kind, parents, birth generation and machine-ancestry share.

A trait is a *variant* (one birth event), not a distinct string: two innovations
that happen to produce the same text are two variants, as in the infinite-alleles
model. Their embedding is still computed once, by the embedder's text cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

AUTHOR_KINDS = ("seed", "human_error", "human_innovation", "llm", "human_llm_assisted", "human_llm_mutated")
# Texts an LLM wrote: an LLM agent's, a consulted LLM's answer, an LLM's retelling of a human's copy.
MACHINE_KINDS = frozenset({"llm", "human_llm_assisted", "human_llm_mutated"})
_CODE = {kind: code for code, kind in enumerate(AUTHOR_KINDS)}
# The embedding matrix grows by 1/GROWTH_DIVISOR of its size: at a million traits, doubling
# would briefly hold 1.5 GB + 3 GB of float32 rows.
GROWTH_DIVISOR = 4
MIN_CAPACITY = 1024  # rows the per-trait columns start with (a few kB)

TRAITS_SCHEMA = {
    "trait_id": pl.Int64,
    "text": pl.String,
    "author_kind": pl.String,
    "parent_ids": pl.List(pl.Int64),
    "generation": pl.Int64,
    "machine_ancestry": pl.Float64,
}


class TraitPool:
    """Append-only table of variants plus a float32 matrix of unit embeddings (row = trait id)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.texts: list[str] = []
        self.parents: list[tuple[int, ...]] = []
        # Per-trait columns with spare capacity (rows past len(self) are unused), grown like the
        # embedding matrix, so appending a generation's variants costs O(new), not O(pool).
        self._author = np.empty(0, dtype=np.int8)
        self._born = np.empty(0, dtype=np.int64)
        self._ancestry = np.empty(0, dtype=np.float64)
        self._machine = np.empty(0, dtype=bool)  # written by an LLM (author kind in MACHINE_KINDS)
        self._embeddings = np.zeros((0, dim), dtype=np.float32)
        self._embedded = 0

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def embeddings(self) -> np.ndarray:
        """(T, d) unit embeddings of all embedded traits."""
        return self._embeddings[: self._embedded]

    @property
    def born(self) -> np.ndarray:
        return self._born[: len(self)]

    @property
    def machine_ancestry(self) -> np.ndarray:
        return self._ancestry[: len(self)]

    @property
    def machine_authored(self) -> np.ndarray:
        return self._machine[: len(self)]

    def author_kinds(self, ids: np.ndarray) -> list[str]:
        return [AUTHOR_KINDS[c] for c in self._author[ids]]

    def add(
        self,
        texts: Sequence[str],
        *,
        author_kind: str,
        parents: Sequence[tuple[int, ...]],
        generation: int,
    ) -> np.ndarray:
        """Append variants and return their ids; embeddings are attached later by `attach_embeddings`.

        Machine ancestry (0..1, the machine share of a trait's lineage): text written by
        an LLM, or adopted from one, is 1; a copying error inherits the mean share of its
        parents; seed texts and human innovations are 0.
        """
        if author_kind not in _CODE:
            raise ValueError(f"unknown author kind {author_kind!r}; expected one of {AUTHOR_KINDS}")
        if len(parents) != len(texts):
            raise ValueError("parents must give one tuple per text")
        start, end = len(self), len(self) + len(texts)
        if author_kind in MACHINE_KINDS:
            ancestry: np.ndarray | float = 1.0
        elif author_kind == "human_error":
            ancestry = np.array([self._ancestry[list(p)].mean() if p else 0.0 for p in parents])
        else:
            ancestry = 0.0
        if end > len(self._author):
            capacity = max(end, len(self._author) + len(self._author) // GROWTH_DIVISOR, MIN_CAPACITY)
            self._author, self._born, self._ancestry, self._machine = (
                _grown(column, capacity, start) for column in (self._author, self._born, self._ancestry, self._machine)
            )
        self._author[start:end] = _CODE[author_kind]
        self._machine[start:end] = author_kind in MACHINE_KINDS
        self._born[start:end] = generation
        self._ancestry[start:end] = ancestry
        self.texts.extend(texts)
        self.parents.extend(tuple(map(int, p)) for p in parents)
        return np.arange(start, end, dtype=np.int64)

    def pending_texts(self) -> list[str]:
        """Texts of the variants still waiting for an embedding, in id order."""
        return self.texts[self._embedded :]

    def attach_embeddings(self, vectors: np.ndarray) -> None:
        """Attach unit embeddings for all pending variants (in `pending_texts` order)."""
        pending = len(self) - self._embedded
        if vectors.shape != (pending, self.dim):
            raise ValueError(f"expected {pending} embeddings of dim {self.dim}, got {vectors.shape}")
        needed = len(self)
        if needed > len(self._embeddings):
            # Headroom from the first allocation on, so a run's early generations do not each
            # copy the matrix; rows past `_embedded` are never read, so they are left unset.
            capacity = max(
                needed + needed // GROWTH_DIVISOR, len(self._embeddings) + len(self._embeddings) // GROWTH_DIVISOR
            )
            grown = np.empty((capacity, self.dim), dtype=np.float32)
            grown[: self._embedded] = self._embeddings[: self._embedded]
            self._embeddings = grown
        self._embeddings[self._embedded : needed] = vectors
        self._embedded = needed

    def to_frame(self) -> pl.DataFrame:
        """The pool as a long table with lineage (no embeddings)."""
        n = len(self)
        return pl.DataFrame(
            {
                "trait_id": np.arange(n, dtype=np.int64),
                "text": self.texts,
                "author_kind": [AUTHOR_KINDS[c] for c in self._author[:n]],
                "parent_ids": [list(p) for p in self.parents],
                "generation": self._born[:n],
                "machine_ancestry": self._ancestry[:n],
            },
            schema=TRAITS_SCHEMA,
        )


def _grown(column: np.ndarray, capacity: int, used: int) -> np.ndarray:
    """A copy of `column`'s first `used` rows in a new array of `capacity` rows."""
    grown = np.empty(capacity, dtype=column.dtype)
    grown[:used] = column[:used]
    return grown
