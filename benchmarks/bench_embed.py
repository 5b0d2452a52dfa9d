"""Embedding throughput against the CPU's limit: raw `SentenceTransformer.encode`, culturesim's
Embedder (packed, and the width groups it replaced), and other CPU runtimes, in one process.

Sizes: 16, 375 and 1,500 texts per call (20, 2 and 1 calls), texts like a study's: the seed corpus
and copy-error variants of it (`culturesim.parts.learning._mutate`). Each call is timed 3 times; the best
counts (other processes share the 2 cores). Every method encodes texts it has never cached.
`--smoke` shrinks every size (`SMOKE_SIZES`) and measures the study too (`--study`).

Methods (all float32, 2 intra-op threads):
- raw: `model.encode(texts, batch_size=128)`: length-sorted padded batches, torch/MKL.
- culturesim: `Embedder.embed` (packed tokens, oneDNN products; `culturesim.parts.embed.PackedBert`).
- culturesim width groups: the previous scheme (groups padded to multiples of 8 tokens, MKL).
- onnxruntime / openvino (if installed): the model exported locally to ONNX by torch.onnx.export
  (no hub); `padded` runs encode-like batches, `exact` one call per group of equal token length
  (no padding: the only way their vectors stay independent of the batch).

`exact`: a text's vector has the same bits alone, in other company and at 1 or 2 threads
(checked on 300 texts against 12 random sub-batches and a 1-thread run).

FLOPs per text, from its own token count n (padding is not counted: it is waste):
    2 * P * n + 4 * layers * n^2 * hidden
P = parameters of the encoder's linear layers (non-embedding, 10.6 M for MiniLM-L6); the second
term is attention's two products QK^T and AV. Pooling, norms and GELU are below 1 % and left out.
`cpu_fraction` = achieved FLOP/s over the CPU's limit: the faster of two measured float32 products
in this process (2048x2048 torch.mm, which is MKL, and the same product by oneDNN; on AMD CPUs MKL
reaches about half of oneDNN, so torch.mm alone would understate the limit), each the best of 20
runs before and 20 after the timings (other load only ever lowers it).

Run: .venv/bin/python benchmarks/bench_embed.py [--study] [--smoke] [--out FOLDER]  (--study adds a
quickstart-like study's cache hit rate and embedding rate, as bench_embed_study).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import parse, parser, report  # noqa: E402

from culturesim.core.settings import NO_DISK_CACHE_ENV, environment_defaults  # noqa: E402
from culturesim.parts.embed import EMBED_THREADS, Embedder, _onednn_linear  # noqa: E402
from culturesim.parts.learning import _mutate, corpus_vocabulary  # noqa: E402
from culturesim.schema.config import EmbeddingSection, StudyConfig  # noqa: E402
from culturesim.study.runner import StudyRunner  # noqa: E402

Encode = Callable[[list[str]], np.ndarray]
RUNTIMES = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class Sizes:
    """How much the benchmark measures."""

    calls: dict[int, int]  # texts per call -> calls timed
    repeats: int  # timings of each call; the best counts
    exact_texts: int  # texts of the exactness check
    exact_batches: int  # random sub-batches of them the check encodes
    peak_side: int  # side of the square float32 product that measures the CPU's limit
    peak_repeats: int  # timings of that product, before and after the timings; the best counts


FULL_SIZES = Sizes(
    {16: 20, 375: 2, 1500: 1}, repeats=3, exact_texts=300, exact_batches=12, peak_side=2048, peak_repeats=20
)
SMOKE_SIZES = Sizes({4: 2, 16: 1}, repeats=1, exact_texts=8, exact_batches=2, peak_side=256, peak_repeats=2)
COLUMNS = {
    "texts_per_call": "texts in each timed call",
    "method": "what encodes the texts",
    "texts_per_s": "texts encoded per wall second (best of the repeats, summed over the calls)",
    "vs_raw": "texts_per_s over raw SentenceTransformer.encode's (the baseline)",
    "gflop_per_s": "useful GFLOP per wall second (padding not counted)",
    "exact": "whether a text's vector has the same bits in any batch and at 1 or 2 threads",
    "cpu_fraction": "gflop_per_s over the CPU's measured float32 limit",
}
STUDY_COLUMNS = {
    "runs": "runs of the human-only study",
    "embedding_requests": "texts the runs asked the embedder for",
    "embedded_texts": "texts the embedder computed (the rest came from its memory cache)",
    "cache_hit_rate": "1 - embedded_texts / embedding_requests",
    "texts_per_s": "texts computed per wall second of embedding, as the manifest reports",
}


def corpus_texts() -> list[str]:
    lines = files("culturesim").joinpath("data", "seed_corpus.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines]


def study_texts(count: int, seed: int = 0) -> list[str]:
    """The corpus and distinct copy-error variants of its texts (and of variants), shuffled."""
    corpus = corpus_texts()
    pool, rng = corpus_vocabulary(corpus), np.random.default_rng(seed)
    texts, seen = list(corpus), set(corpus)
    while len(texts) < count:
        variant = _mutate(texts[rng.integers(len(texts))], rng, pool)
        if variant not in seen:
            seen.add(variant)
            texts.append(variant)
    return [texts[i] for i in rng.permutation(len(texts))]


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Shortest wall time of `repeats` calls, seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_gflops(sizes: Sizes) -> dict[str, float]:
    """GFLOP/s of a square float32 product on EMBED_THREADS threads, by MKL and by oneDNN (the best of
    `sizes.peak_repeats`: other load only ever lowers it)."""
    previous = torch.get_num_threads()
    torch._C.set_num_threads(EMBED_THREADS)
    side = sizes.peak_side
    a, b = torch.randn(side, side), torch.randn(side, side)
    zero = torch.zeros(side)
    flops = 2 * side**3 / 1e9
    try:
        return {
            "mkl_torch_mm": flops / best_seconds(lambda: torch.mm(a, b), sizes.peak_repeats),
            "onednn": flops / best_seconds(lambda: _onednn_linear(a, b, zero), sizes.peak_repeats),
        }
    finally:
        torch._C.set_num_threads(previous)


class Flops:
    """FLOPs of a text from its token count (formula in the module docstring)."""

    def __init__(self, embedder: Embedder) -> None:
        model = embedder._model
        bert = model[0].auto_model
        self.params = sum(m.weight.numel() for m in bert.encoder.modules() if isinstance(m, torch.nn.Linear))
        self.layers, self.hidden = bert.config.num_hidden_layers, bert.config.hidden_size
        self._tokenizer, self._max = model.tokenizer, model.max_seq_length

    def of(self, texts: list[str]) -> float:
        counts = np.array([len(ids) for ids in self._tokenizer(texts, truncation=True, max_length=self._max).input_ids])
        return float((2 * self.params * counts + 4 * self.layers * counts**2 * self.hidden).sum())


def fresh(embedder: Embedder) -> Encode:
    """Embedder.embed with its text cache emptied first, so every text reaches the model."""

    def encode(texts: list[str]) -> np.ndarray:
        embedder._cache.clear()
        embedder._by_text.clear()
        return embedder.embed(texts)

    return encode


def export_onnx(embedder: Embedder, folder: Path) -> Path:
    """The model's BertModel as ONNX (input ids, mask, token types -> last hidden state), exported
    here from the packaged torch weights: nothing is fetched."""
    bert = embedder._model[0].auto_model

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = torch.tensor([[101, 7592, 2088, 102]] * 2)
    path = folder / "model.onnx"
    torch.onnx.export(
        Hidden().eval(),
        (example, torch.ones_like(example), torch.zeros_like(example)),
        str(path),
        input_names=names,
        output_names=["hidden"],
        dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*names, "hidden"]},
        dynamo=False,
        opset_version=17,
    )
    return path


def onnxruntime_forward(path: Path, threads: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """onnxruntime's CPU session of the exported model, on `threads` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda ids, mask: session.run(
        None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    )[0]


def openvino_forward(path: Path, threads: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """OpenVINO at float32: its CPU plugin would run bfloat16 by default on CPUs with AVX512_BF16."""
    import openvino as ov

    core = ov.Core()
    settings = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", settings | {"PERFORMANCE_HINT": "LATENCY"})
    request, output = compiled.create_infer_request(), compiled.output(0)
    return lambda ids, mask: request.infer(
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    )[output].copy()


def runtime_encoders(embedder: Embedder, forward: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict[str, Encode]:
    """Encode-like padded batches and exact-length groups around a runtime's forward pass; mean
    pooling and unit norm in numpy."""
    tokenizer, limit = embedder._model.tokenizer, embedder._model.max_seq_length

    def pooled(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        weights = mask[..., None].astype(np.float32)
        mean = (forward(ids, mask) * weights).sum(axis=1) / weights.sum(axis=1)
        return mean / np.linalg.norm(mean, axis=1, keepdims=True)

    def run(texts: list[str], *, exact: bool) -> np.ndarray:
        seqs = tokenizer(texts, truncation=True, max_length=limit).input_ids
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        if exact:
            batches = [[i for i in order if len(seqs[i]) == n] for n in sorted({len(s) for s in seqs})]
        else:
            batches = [order[s : s + 128] for s in range(0, len(order), 128)]
        out = np.empty((len(texts), embedder.dim), dtype=np.float32)
        for rows in batches:
            ids = np.zeros((len(rows), len(seqs[rows[0]])), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                ids[r, : len(seqs[i])], mask[r, : len(seqs[i])] = seqs[i], 1
            out[rows] = pooled(ids, mask)
        return out

    return {"padded": lambda t: run(t, exact=False), "exact": lambda t: run(t, exact=True)}


def is_exact(encode: Encode, encode_one_thread: Encode | None, texts: list[str], batches: int) -> bool:
    """Same bits for each text in `batches` random sub-batches (sizes 1 to 80, at most all) as in one
    call of all `texts`, and (where given) as at one thread."""
    reference = encode(texts)
    if encode_one_thread is not None and not np.array_equal(encode_one_thread(texts), reference):
        return False
    rng = np.random.default_rng(1)
    for _ in range(batches):
        picked = rng.choice(len(texts), size=int(rng.integers(1, min(80, len(texts)) + 1)), replace=False)
        if not np.array_equal(encode([texts[i] for i in picked]), reference[picked]):
            return False
    return True


def at_one_thread(encode: Encode) -> Encode:
    """`encode` with the process at one torch thread (culturesim must not care)."""

    def run(texts: list[str]) -> np.ndarray:
        previous = torch.get_num_threads()
        torch._C.set_num_threads(1)
        try:
            return encode(texts)
        finally:
            torch._C.set_num_threads(previous)

    return run


def methods(embedder: Embedder, folder: Path) -> dict[str, tuple[Encode, Encode | None]]:
    """name -> (encode, the same at one thread) for every method available here."""
    model = embedder._model
    width_groups = Embedder(EmbeddingSection())
    width_groups._packed = None
    found: dict[str, tuple[Encode, Encode | None]] = {
        "raw encode": (
            lambda t: model.encode(t, batch_size=128),
            at_one_thread(lambda t: model.encode(t, batch_size=128)),
        ),
        "culturesim": (fresh(embedder), at_one_thread(fresh(embedder))),
        "culturesim before (width groups)": (fresh(width_groups), at_one_thread(fresh(width_groups))),
    }
    installed = [name for name in RUNTIMES if importlib.util.find_spec(name) is not None]
    for name in sorted(set(RUNTIMES) - set(installed)):
        print(f"{name}: not installed, skipped")
    if not installed:
        return found
    path = export_onnx(embedder, folder)
    for name, make in (("onnxruntime", onnxruntime_forward), ("openvino", openvino_forward)):
        if name not in installed:
            continue
        ours = runtime_encoders(embedder, make(path, EMBED_THREADS))
        one = runtime_encoders(embedder, make(path, 1))
        for kind in ("padded", "exact"):
            found[f"{name} {kind}"] = (ours[kind], one[kind])
    return found


def study_table(args: argparse.Namespace) -> Path:
    """A quickstart-like human-only study (its toy version with --smoke): the share of embedding
    requests answered from the text cache, and the embedding rate its manifest reports."""
    config = StudyConfig.model_validate(
        {
            "study": {"name": "embed-bench", "seed": 3, "replicates": 3, "generations": 8},
            "population": {"size": 60},
            "humans": {"bias": "conformist", "copy_error": 0.05, "innovation": 0.02},
            "conditions": {"network.kind": ["small_world", "scale_free"]},
        }
    )
    if args.smoke:
        config = config.toy()
    # Without the disk cache every text reaches the embedder, as on a first run.
    with tempfile.TemporaryDirectory() as out, environment_defaults({NO_DISK_CACHE_ENV: "1"}):
        folder = StudyRunner().run(config, out_root=Path(out), toy=args.smoke)
        manifest = json.loads((folder / "manifest.json").read_text())
    throughput = manifest["throughput"]
    requested, encoded = throughput["embedding_requests"], throughput["embedded_texts"]
    row = {
        "runs": len(manifest["runs"]),
        "embedding_requests": requested,
        "embedded_texts": encoded,
        "cache_hit_rate": 1 - encoded / requested,
        "texts_per_s": throughput["embedded_texts_per_second"],
    }
    title = (
        f"embedding in a human-only study of {config.population.size} agents, {config.study.generations} generations"
    )
    return report("bench_embed_study", [row], title=title, columns=STUDY_COLUMNS, args=args)


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the benchmark and write its table; returns the JSON's path. It loads its own embedders,
    whose caches it empties before every timed call."""
    options = parser(__doc__)
    options.add_argument("--study", action="store_true", help="also measure a human-only study (bench_embed_study)")
    args = parse(options, argv, smoke={"study": True})
    sizes = SMOKE_SIZES if args.smoke else FULL_SIZES
    embedder = Embedder(EmbeddingSection())
    texts = study_texts(
        len(corpus_texts()) + sum(size * calls for size, calls in sizes.calls.items()) + sizes.exact_texts
    )
    flops = Flops(embedder)
    peaks = peak_gflops(sizes)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as folder:
        found = methods(embedder, Path(folder))
        check = texts[-sizes.exact_texts :]
        exact = {name: is_exact(encode, one, check, sizes.exact_batches) for name, (encode, one) in found.items()}
        start = 0
        for size, calls in sizes.calls.items():
            chunks = [texts[start + i * size : start + (i + 1) * size] for i in range(calls)]
            start += size * calls
            work = sum(flops.of(chunk) for chunk in chunks)
            best = {name: [float("inf")] * calls for name in found}
            for encode, _ in found.values():
                encode(chunks[0][:8])  # warm-up: first-call allocations and kernel choice
            for _ in range(sizes.repeats):  # methods interleaved, so a burst of other load hits them alike
                for name, (encode, _) in found.items():
                    for i, chunk in enumerate(chunks):
                        best[name][i] = min(best[name][i], best_seconds(lambda c=chunk: encode(c), 1))
            seconds = {name: sum(times) for name, times in best.items()}
            for name, spent in seconds.items():
                rows.append(
                    {
                        "texts_per_call": size,
                        "method": name,
                        "texts_per_s": size * calls / spent,
                        "vs_raw": seconds["raw encode"] / spent,
                        "gflop_per_s": work / spent / 1e9,
                        "exact": exact[name],
                    }
                )
    after = peak_gflops(sizes)  # measured before and after the timings: the best of both is the limit
    peaks = {k: max(v, after[k]) for k, v in peaks.items()}
    limit = max(peaks.values())
    for row in rows:
        row["cpu_fraction"] = row["gflop_per_s"] / limit
    side = sizes.peak_side
    measured = ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
    print(f"float32 {side}x{side} product on {EMBED_THREADS} threads, GFLOP/s: {measured}; limit {limit:.0f}")
    print(f"encoder linear parameters: {flops.params / 1e6:.2f} M")
    if args.study:
        study_table(args)
    summary = {"limit_gflop_per_s": limit, "peak_gflop_per_s": peaks, "encoder_linear_params": flops.params}
    title = "embedding: texts/s, vs raw encode, fraction of the CPU's float32 limit"
    return report("bench_embed", rows, title=title, columns=COLUMNS, args=args, summary=summary)


if __name__ == "__main__":
    main()
