"""LLM throughput: lockstep batched generation vs one request at a time through the same
backend, and culturesim's end-to-end generation path vs raw `vllm.LLM.chat` on the same
requests at the same batch size. Built-in model (SmolLM2-135M), vLLM, per-request seeds.

Run: .venv/bin/python benchmarks/bench_llm.py [--batch 64] [--sequential 8] [--max-tokens 40]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.resources import files

sys.path.insert(0, os.path.dirname(__file__))
from _common import report, timed  # noqa: E402

from culturesim.parts.llm import Request, create_backend, deduplicated_generate  # noqa: E402
from culturesim.parts.llm.prompts import build_messages, clean_completion  # noqa: E402
from culturesim.schema.llm_section import EngineSection  # noqa: E402
from culturesim.schema.sampling import Sampling  # noqa: E402
from culturesim.simulation.model import request_seed  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=8, help="requests sent one at a time for the baseline")
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    backend = create_backend(EngineSection(backend="vllm", dtype=args.dtype, max_num_seqs=args.batch), seed=0)
    texts = corpus_texts()[: args.batch]
    requests = culturesim_requests(texts, args.max_tokens)
    backend.generate(requests[:4])  # warm-up

    sequential_tokens = 0

    def one_at_a_time() -> None:
        nonlocal sequential_tokens
        for request in requests[: args.sequential]:
            sequential_tokens += backend.generate([request])[0].tokens

    sequential_seconds = timed(one_at_a_time)

    batched_tokens = 0

    def batched() -> None:
        nonlocal batched_tokens
        batched_tokens = sum(c.tokens for c in backend.generate(requests))

    batched_seconds = timed(batched)

    import vllm

    raw_params = [
        vllm.SamplingParams(
            temperature=r.sampling.temperature, top_p=r.sampling.top_p, max_tokens=r.sampling.max_tokens, seed=r.seed
        )
        for r in requests
    ]
    raw_chats = [r.chat() for r in requests]
    raw_tokens = 0

    def raw() -> None:
        nonlocal raw_tokens
        outputs = backend._llm.chat(raw_chats, raw_params, use_tqdm=False)
        raw_tokens = sum(len(o.outputs[0].token_ids) for o in outputs)

    raw_seconds = timed(raw)

    end_to_end_tokens = 0

    def end_to_end() -> None:
        nonlocal end_to_end_tokens
        built = culturesim_requests(texts, args.max_tokens)
        completions = deduplicated_generate(backend, built)
        [clean_completion(c.text, max_chars=280) for c in completions]
        end_to_end_tokens = sum(c.tokens for c in completions)

    end_to_end_seconds = timed(end_to_end)
    backend.close()

    sequential_rate = sequential_tokens / sequential_seconds
    batched_rate = batched_tokens / batched_seconds
    raw_rate = raw_tokens / raw_seconds
    end_to_end_rate = end_to_end_tokens / end_to_end_seconds
    rows = [
        {
            "path": f"one request per call ({args.sequential} calls)",
            "tokens": sequential_tokens,
            "seconds": sequential_seconds,
            "tokens_per_s": sequential_rate,
            "ratio": 1.0,
        },
        {
            "path": f"lockstep batch of {args.batch}",
            "tokens": batched_tokens,
            "seconds": batched_seconds,
            "tokens_per_s": batched_rate,
            "ratio": batched_rate / sequential_rate,
        },
        {
            "path": f"raw vllm.LLM.chat, batch {args.batch}",
            "tokens": raw_tokens,
            "seconds": raw_seconds,
            "tokens_per_s": raw_rate,
            "ratio": raw_rate / sequential_rate,
        },
        {
            "path": "culturesim end to end (prompts, seeds, dedup, cleaning)",
            "tokens": end_to_end_tokens,
            "seconds": end_to_end_seconds,
            "tokens_per_s": end_to_end_rate,
            "ratio": end_to_end_rate / raw_rate,
        },
    ]
    report("bench_llm", rows, title=f"LLM throughput, built-in model, vLLM {args.dtype} (last ratio: vs raw)")


if __name__ == "__main__":
    main()
