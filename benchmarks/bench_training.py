"""Retraining: LoRA training speed against this machine's matrix-multiply limit, and generation with
trained adapters against the base model in one vLLM engine, in this process.

Training row: tokens per second of the optimizer steps (loading and saving excluded), and their
fraction of the limit, at TRAINED_FLOPS_PER_TOKEN (a forward pass, 2 FLOPs per weight, and a
backward pass through the frozen weights for the activations' gradients, 2 more; the adapters'
own FLOPs are under 1 %). The limit is the faster of a float32 2048 x 2048 `torch.mm` (MKL or
OpenBLAS) and the same product through `torch.nn.functional.linear`, measured here first. The
training runs twice: the adapter's digest must be the same.

Generation rows: the same requests (each of `--adapters` runs asks `--requests / --adapters`)
answered with the base model (the baseline), then with each run's own adapter, merged into the
weights one adapter at a time (the CPU's way) and by vLLM's multi-LoRA (the GPU's way), each in an
engine of its own, one after the other; tokens per second and the ratio to the baseline.

Run: .venv/bin/python benchmarks/bench_training.py [--texts 128] [--rank 8] [--batch-size 16]
     [--requests 64] [--adapters 4] [--max-tokens 48] [--smoke] [--out FOLDER]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import parse, parser, report  # noqa: E402

from culturesim.checks.chains import story_sample  # noqa: E402
from culturesim.parts.corpus import load_corpus  # noqa: E402
from culturesim.parts.llm.base import AdapterRef, Request  # noqa: E402
from culturesim.parts.llm.models import resolve_model  # noqa: E402
from culturesim.parts.llm.prompts import build_messages  # noqa: E402
from culturesim.parts.llm.training import LoraSettings, train_adapter  # noqa: E402
from culturesim.parts.llm.vllm_backend import VLLMBackend  # noqa: E402
from culturesim.schema.config import CorpusSection  # noqa: E402
from culturesim.schema.llm_section import BUILTIN_MODEL  # noqa: E402
from culturesim.schema.sampling import Sampling  # noqa: E402
from culturesim.simulation.model import request_seed  # noqa: E402

MODEL_PARAMETERS = 134.5e6  # SmolLM2-135M, embeddings tied to the output layer
TRAINED_FLOPS_PER_TOKEN = 4 * MODEL_PARAMETERS
SMOKE = {"texts": 8, "batch_size": 4, "requests": 4, "adapters": 2, "max_tokens": 4, "matrix": 256}
COLUMNS = {
    "part": "training, or generation with the base model (baseline) or with adapters",
    "tokens": "tokens trained on (padding excluded) or generated",
    "seconds": "wall seconds of the optimizer steps or of the engine call",
    "tokens_per_second": "tokens / seconds",
    "ratio": "training: fraction of the matmul limit; generation: tokens_per_second / the base model's",
    "same_bytes": "training: the second training's adapter digest equals the first's; generation: -",
}


def matmul_limit(size: int) -> dict[str, float]:
    """GFLOP/s of a float32 size x size product by `torch.mm` and by `F.linear`, best of 5 each."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    flops = 2 * size**3
    best = {}
    for name, product in (("mm", lambda: torch.mm(a, b)), ("linear", lambda: torch.nn.functional.linear(a, b))):
        product()
        times = []
        for _ in range(5):
            started = time.perf_counter()
            product()
            times.append(time.perf_counter() - started)
        best[name] = flops / min(times) / 1e9
    return best


def generation_requests(count: int, max_tokens: int) -> list[Request]:
    stories = story_sample(20)
    return [
        Request(
            build_messages("rewrite", [stories[i % 20], stories[(i + 3) % 20], stories[(i + 7) % 20]], max_chars=280),
            seed=request_seed(1, 0, 1, i, 0),
            sampling=Sampling(max_tokens=max_tokens),
        )
        for i in range(count)
    ]


def main(argv: Sequence[str] | None = None) -> Path:
    options = parser(__doc__)
    options.add_argument("--texts", type=int, default=128, help="training texts (built-in corpus)")
    options.add_argument("--rank", type=int, default=8, help="LoRA rank")
    options.add_argument("--batch-size", type=int, default=16, help="texts per optimizer step")
    options.add_argument("--requests", type=int, default=64, help="generation requests in all")
    options.add_argument("--adapters", type=int, default=4, help="runs, each with its own adapter")
    options.add_argument("--max-tokens", type=int, default=48, help="tokens per answer at most")
    options.add_argument("--matrix", type=int, default=2048, help="side of the matmul that sets the limit")
    args = parse(options, argv, smoke=SMOKE)
    model = resolve_model(BUILTIN_MODEL)
    limits = matmul_limit(args.matrix)
    limit = max(limits.values())
    corpus = load_corpus(CorpusSection())["text"].to_list()
    settings = LoraSettings(rank=args.rank, batch_size=args.batch_size, seed=1)
    first = train_adapter(model, BUILTIN_MODEL, corpus[: args.texts], settings)
    second = train_adapter(model, BUILTIN_MODEL, corpus[: args.texts], settings)
    speed = first.tokens / first.step_seconds
    rows = [
        {
            "part": "training",
            "tokens": first.tokens,
            "seconds": round(first.step_seconds, 2),
            "tokens_per_second": round(speed, 1),
            "ratio": round(speed * TRAINED_FLOPS_PER_TOKEN / 1e9 / limit, 3),
            "same_bytes": str(first.digest == second.digest),
        }
    ]
    with tempfile.TemporaryDirectory() as folder:
        adapters = []
        for run in range(args.adapters):
            texts = [corpus[i] for i in np.random.default_rng(run).permutation(len(corpus))[: args.texts]]
            trained = train_adapter(model, BUILTIN_MODEL, texts, LoraSettings(rank=args.rank, seed=run))
            (Path(folder) / trained.digest).mkdir()
            for name, data in trained.files.items():
                (Path(folder) / trained.digest / name).write_bytes(data)
            adapters.append(AdapterRef(trained.digest, str(Path(folder) / trained.digest)))
        requests = generation_requests(args.requests, args.max_tokens)
        per_run = max(1, len(requests) // len(adapters))
        adapted = [
            Request(r.messages, r.seed, r.sampling, adapter=adapters[min(i // per_run, len(adapters) - 1)])
            for i, r in enumerate(requests)
        ]
        base_speed = None
        for serving in ("merged", "multi-lora"):  # one engine alive at a time
            engine = VLLMBackend(model, lora_rank=args.rank, max_loras=len(adapters), adapter_serving=serving)
            try:
                engine.generate([Request((("user", "Say hello."),), seed=0)])  # warm-up
                parts = [(f"generation, adapters {serving}", adapted)]
                if base_speed is None:  # the baseline: the base model in the first engine
                    parts.insert(0, ("generation, base model", requests))
                for part, batch in parts:
                    started = time.perf_counter()
                    answers = engine.generate(batch)
                    seconds = time.perf_counter() - started
                    tokens = sum(a.tokens for a in answers)
                    base_speed = base_speed or tokens / seconds
                    rows.append(
                        {
                            "part": part,
                            "tokens": tokens,
                            "seconds": round(seconds, 2),
                            "tokens_per_second": round(tokens / seconds, 1),
                            "ratio": round(tokens / seconds / base_speed, 3),
                            "same_bytes": "-",
                        }
                    )
            finally:
                engine.close()
    title = f"LoRA rank {args.rank}: training vs the matmul limit, generation with adapters vs the base model"
    summary = {"matmul_gflops": {k: round(v, 1) for k, v in limits.items()}, "limit_gflops": round(limit, 1)}
    return report("bench_training", rows, title=title, columns=COLUMNS, args=args, summary=summary)


if __name__ == "__main__":
    main()
