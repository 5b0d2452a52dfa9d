"""LLM throughput: lockstep batched generation vs one request at a time through the same
backend, and culturesim's end-to-end generation path vs raw `vllm.LLM.chat` on the same
requests at the same batch size. Built-in model (SmolLM2-135M), vLLM, per-request seeds.

Run: .venv/bin/python benchmarks/bench_llm.py [--batch 64] [--sequential 8] [--max-tokens 40] [--smoke] [--out FOLDER]
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import parse, parser, report  # noqa: E402

from culturesim.parts.llm import Backend, Request, create_backend, deduplicated_generate  # noqa: E402
from culturesim.parts.llm.prompts import build_messages, clean_completion  # noqa: E402
from culturesim.schema.llm_section import EngineSection  # noqa: E402
from culturesim.schema.sampling import Sampling  # noqa: E402
from culturesim.simulation.model import request_seed  # noqa: E402

SMOKE = {"batch": 6, "sequential": 2, "max_tokens": 4}
COLUMNS = {
    "path": "how the requests reach the engine",
    "tokens": "tokens generated",
    "seconds": "wall seconds of the path",
    "tokens_per_s": "tokens generated per wall second",
    "ratio": "tokens_per_s over one request per call's (the last row: over raw vllm.LLM.chat's)",
}


def corpus_texts() -> list[str]:
    lines = files("culturesim").joinpath("data", "seed_corpus.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines]


def culturesim_requests(texts: list[str], max_tokens: int) -> list[Request]:
    """Requests as the model builds them: role prompt, per-agent seed, the default sampling settings."""
    sampling = Sampling(max_tokens=max_tokens)
    return [
        Request(
            messages=build_messages("rewrite", [text], max_chars=280),
            seed=request_seed(1, 0, 1, agent, 0),
            sampling=sampling,
        )
        for agent, text in enumerate(texts)
    ]


def measured(generate: Callable[[], int]) -> tuple[int, float]:
    """Tokens `generate` returns it generated, and its wall seconds."""
    start = time.perf_counter()
    tokens = generate()
    return tokens, time.perf_counter() - start


def raw_chat(backend: Backend, requests: list[Request]) -> Callable[[], int]:
    """The same requests through `vllm.LLM.chat` itself, with no culturesim code around it."""
    import vllm

    params = [
        vllm.SamplingParams(
            temperature=r.sampling.temperature, top_p=r.sampling.top_p, max_tokens=r.sampling.max_tokens, seed=r.seed
        )
        for r in requests
    ]
    chats = [r.chat() for r in requests]
    return lambda: sum(len(o.outputs[0].token_ids) for o in backend._llm.chat(chats, params, use_tqdm=False))


def end_to_end(backend: Backend, texts: list[str], max_tokens: int) -> Callable[[], int]:
    """culturesim's whole path: building the requests, deduplicating, generating, cleaning the answers."""

    def run() -> int:
        completions = deduplicated_generate(backend, culturesim_requests(texts, max_tokens))
        [clean_completion(c.text, max_chars=280) for c in completions]
        return sum(c.tokens for c in completions)

    return run


def main(argv: Sequence[str] | None = None, *, backend: Backend | None = None) -> Path:
    """Run the benchmark and write its table; returns the JSON's path. `backend`: an already-started
    vLLM engine on the built-in model at --dtype, with a batch limit of at least --batch, used instead
    of starting one (and not closed)."""
    options = parser(__doc__)
    options.add_argument("--batch", type=int, default=64, help="requests per lockstep call")
    options.add_argument("--sequential", type=int, default=8, help="requests sent one at a time for the baseline")
    options.add_argument("--max-tokens", type=int, default=40, help="tokens per answer at most")
    options.add_argument("--dtype", default="float32")
    args = parse(options, argv, smoke=SMOKE)
    engine = backend or create_backend(EngineSection(backend="vllm", dtype=args.dtype, max_num_seqs=args.batch), seed=0)
    texts = corpus_texts()[: args.batch]
    requests = culturesim_requests(texts, args.max_tokens)
    try:
        engine.generate(requests[:4])  # warm-up
        sequential = measured(lambda: sum(engine.generate([r])[0].tokens for r in requests[: args.sequential]))
        batched = measured(lambda: sum(c.tokens for c in engine.generate(requests)))
        raw = measured(raw_chat(engine, requests))
        ours = measured(end_to_end(engine, texts, args.max_tokens))
    finally:
        if backend is None:
            engine.close()
    one, raw_path = f"one request per call ({args.sequential} calls)", f"raw vllm.LLM.chat, batch {len(requests)}"
    paths = [  # (path, (tokens, seconds), the path it is compared with)
        (one, sequential, one),
        (f"lockstep batch of {len(requests)}", batched, one),
        (raw_path, raw, one),
        ("culturesim end to end (prompts, seeds, dedup, cleaning)", ours, raw_path),
    ]
    rate = {path: tokens / seconds for path, (tokens, seconds), _ in paths}
    rows = [
        {
            "path": path,
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": rate[path],
            "ratio": rate[path] / rate[base],
        }
        for path, (tokens, seconds), base in paths
    ]
    title = f"LLM throughput, built-in model, vLLM {args.dtype} (last ratio: vs raw)"
    return report("bench_llm", rows, title=title, columns=COLUMNS, args=args)


if __name__ == "__main__":
    main()
