"""The vectors of a study's texts, stored with its results.

Every distinct text a run embedded (its traits and the pole sentences of its axes) is
stored with the results, so analysis and replay on another machine use the very floats
the study used, not a recomputation that may differ in the last bits. `StoredVectors`
answers `embed` from such a table, without loading any model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import polars as pl


def text_key(text: str) -> bytes:
    """16-byte content address of a text (the embedder's cache key)."""
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def vectors_frame(texts: Iterable[str], vectors: np.ndarray) -> pl.DataFrame:
    """A table of distinct texts and their float32 vectors, sorted by text key (stable bytes)."""
    texts = list(texts)
    keys = [text_key(t) for t in texts]
    order = sorted(range(len(texts)), key=keys.__getitem__)
    dim = vectors.shape[1]
    return pl.DataFrame(
        {
            "text_key": [keys[i].hex() for i in order],
            "text": [texts[i] for i in order],
            "vector": vectors[order].astype(np.float32) if order else np.zeros((0, dim), dtype=np.float32),
        },
        schema={"text_key": pl.String, "text": pl.String, "vector": pl.Array(pl.Float32, dim)},
    )


class MissingVector(RuntimeError):
    """A replay asked for the vector of a text the results do not hold."""


class StoredVectors:
    """The embedder protocol (`dim`, `embed`), answered from stored vector tables only."""

    def __init__(self, frames: Sequence[pl.DataFrame], *, where: str) -> None:
        frame = pl.concat(frames).unique("text_key", keep="first", maintain_order=True)
        if frame.is_empty():
            raise MissingVector(f"{where} holds no stored vectors")
        self.dim = int(frame.schema["vector"].size)
        matrix = frame["vector"].to_numpy()
        self._rows = {bytes.fromhex(k): i for i, k in enumerate(frame["text_key"].to_list())}
        self._matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self._where = where
        self.encoded = 0  # nothing is ever computed here

    @classmethod
    def from_folder(cls, folder: Path) -> StoredVectors:
        """The vectors of a results folder: its combined table, else every run's table."""
        combined = folder / "vectors.parquet"
        paths = [combined] if combined.exists() else sorted(folder.glob("runs/*/vectors.parquet"))
        if not paths:
            raise MissingVector(f"{folder} holds no vectors.parquet: it was written before vectors were stored")
        return cls([pl.read_parquet(p) for p in paths], where=str(folder))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            row = self._rows.get(text_key(text))
            if row is None:
                raise MissingVector(
                    f"{self._where} holds no vector for the text {text[:60]!r}: the config makes a text the study "
                    "never made; replay with the study's own config"
                )
            rows.append(row)
        return self._matrix[rows] if rows else np.zeros((0, self.dim), dtype=np.float32)

    def save(self) -> None:
        """Nothing to persist (the embedder protocol's disk-cache hook)."""
