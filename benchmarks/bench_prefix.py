"""Prefix caching: the same requests of every role through vLLM with its prefix cache off (the
baseline: every request recomputes the system prompt and worked examples) and on (the default),
one engine after the other in this process. Prints, per role: prompt tokens per request, the
request's own tokens (its last message), prompt tokens computed and reused per request with the
cache on, seconds and the speed-up, and whether every text is identical.

Run: .venv/bin/python benchmarks/bench_prefix.py [--requests 32] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import report  # noqa: E402

from culturesim.checks.chains import story_sample  # noqa: E402
from culturesim.parts.llm.base import Request  # noqa: E402
from culturesim.parts.llm.models import resolve_model  # noqa: E402
from culturesim.parts.llm.prompts import build_messages  # noqa: E402
from culturesim.parts.llm.vllm_backend import VLLMBackend  # noqa: E402
from culturesim.schema.llm_section import BUILTIN_MODEL  # noqa: E402
from culturesim.schema.sampling import Sampling  # noqa: E402
from culturesim.simulation.model import request_seed  # noqa: E402

ROLES = ("rewrite", "combine", "create", "advise", "continue")


def role_requests(role: str, count: int, max_tokens: int) -> list[Request]:
    """`count` requests of `role` over the built-in stories (three neighbours each), per-agent seeds."""
    stories = story_sample(20)
    return [
        Request(
            build_messages(role, [stories[i % 20], stories[(i + 3) % 20], stories[(i + 7) % 20]], max_chars=280),
            seed=request_seed(1, 0, 1, i, 0),
            sampling=Sampling(max_tokens=max_tokens),
        )
        for i in range(count)
    ]


def measure(prefix_caching: bool, batches: dict[str, list[Request]]) -> dict[str, dict]:
    """Per role: seconds of one batched call, its completions. A fresh engine, roles in order."""
    backend = VLLMBackend(resolve_model(BUILTIN_MODEL), prefix_caching=prefix_caching)
    backend.generate([Request((("user", "Say hello."),), seed=0)])  # engine warm-up, sharing no role prefix
    results = {}
    for role, requests in batches.items():
        started = time.perf_counter()
        completions = backend.generate(requests)
        results[role] = {"seconds": time.perf_counter() - started, "completions": completions}
    backend.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    batches = {role: role_requests(role, args.requests, args.max_tokens) for role in ROLES}
    off = measure(False, batches)
    on = measure(True, batches)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(BUILTIN_MODEL))
    rows = []
    for role, requests in batches.items():
        cached = on[role]["completions"]
        own = sum(len(tokenizer(r.prompt, add_special_tokens=False)["input_ids"]) for r in requests) / len(requests)
        prompt = sum(c.prompt_tokens for c in cached) / len(cached)
        reused = sum(c.cached_tokens for c in cached) / len(cached)
        same = sum(a.text == b.text for a, b in zip(off[role]["completions"], cached, strict=True))
        rows.append(
            {
                "role": role,
                "prompt_tokens": round(prompt, 1),
                "own_tokens": round(own, 1),
                "computed_tokens": round(prompt - reused, 1),
                "reused_tokens": round(reused, 1),
                "computed_over_own": round((prompt - reused) / own, 2),
                "seconds_cache_off": round(off[role]["seconds"], 2),
                "seconds_cache_on": round(on[role]["seconds"], 2),
                "speedup": round(off[role]["seconds"] / on[role]["seconds"], 2),
                "identical_texts": f"{same}/{len(requests)}",
            }
        )
    title = f"Prefix caching, {args.requests} requests per role, float32 (cache off = baseline)"
    report("bench_prefix", rows, title=title)


if __name__ == "__main__":
    main()
