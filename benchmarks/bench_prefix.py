"""Prefix caching: the same requests of every role through vLLM with its prefix cache off (the
baseline: every request recomputes the system prompt and worked examples) and on (the default),
one engine after the other in this process. Prints, per role: prompt tokens per request, the
request's own tokens (its last message), prompt tokens computed and reused per request with the
cache on, seconds and the speed-up, and whether every text is identical.

Run: .venv/bin/python benchmarks/bench_prefix.py [--requests 32] [--max-tokens 48] [--smoke] [--out FOLDER]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import parse, parser, report  # noqa: E402

from culturesim.checks.chains import story_sample  # noqa: E402
from culturesim.parts.llm.base import Completion, Request  # noqa: E402
from culturesim.parts.llm.models import resolve_model  # noqa: E402
from culturesim.parts.llm.prompts import build_messages  # noqa: E402
from culturesim.parts.llm.vllm_backend import VLLMBackend  # noqa: E402
from culturesim.schema.llm_section import BUILTIN_MODEL  # noqa: E402
from culturesim.schema.sampling import Sampling  # noqa: E402
from culturesim.simulation.model import request_seed  # noqa: E402

ROLES = ("rewrite", "combine", "create", "advise", "continue")
SMOKE = {"requests": 2, "max_tokens": 4}
COLUMNS = {
    "role": "the LLM role of every request of the row",
    "prompt_tokens": "prompt tokens per request",
    "own_tokens": "the request's own tokens (its last message) per request",
    "computed_tokens": "prompt tokens computed per request, cache on",
    "reused_tokens": "prompt tokens read from the prefix cache per request, cache on",
    "computed_over_own": "computed_tokens / own_tokens",
    "seconds_cache_off": "wall seconds of the role's batch, cache off (the baseline)",
    "seconds_cache_on": "wall seconds of the role's batch, cache on",
    "speedup": "seconds_cache_off / seconds_cache_on",
    "identical_texts": "requests whose text is the same with the cache on and off, of all",
}


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


def measure(backend: VLLMBackend, batches: dict[str, list[Request]]) -> dict[str, tuple[float, list[Completion]]]:
    """Per role, in order: the wall seconds of one batched call and its completions."""
    backend.generate([Request((("user", "Say hello."),), seed=0)])  # engine warm-up, sharing no role prefix
    results = {}
    for role, requests in batches.items():
        started = time.perf_counter()
        completions = backend.generate(requests)
        results[role] = (time.perf_counter() - started, completions)
    return results


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the benchmark and write its table; returns the JSON's path. Both engines are fresh: an
    engine that served these roles before would hold their prefixes already (and vLLM's engines cannot
    share a process: closing one stops the other's parallel state)."""
    options = parser(__doc__)
    options.add_argument("--requests", type=int, default=32, help="requests per role")
    options.add_argument("--max-tokens", type=int, default=48, help="tokens per answer at most")
    args = parse(options, argv, smoke=SMOKE)
    from transformers import AutoTokenizer

    batches = {role: role_requests(role, args.requests, args.max_tokens) for role in ROLES}
    measured = {}
    for caching in (False, True):  # the baseline first; one engine alive at a time
        engine = VLLMBackend(resolve_model(BUILTIN_MODEL), prefix_caching=caching)
        try:
            measured[caching] = measure(engine, batches)
        finally:
            engine.close()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(BUILTIN_MODEL))
    rows = []
    for role, requests in batches.items():
        (off_seconds, uncached), (on_seconds, cached) = measured[False][role], measured[True][role]
        own = sum(len(tokenizer(r.prompt, add_special_tokens=False)["input_ids"]) for r in requests) / len(requests)
        prompt = sum(c.prompt_tokens for c in cached) / len(cached)
        reused = sum(c.cached_tokens for c in cached) / len(cached)
        same = sum(a.text == b.text for a, b in zip(uncached, cached, strict=True))
        rows.append(
            {
                "role": role,
                "prompt_tokens": round(prompt, 1),
                "own_tokens": round(own, 1),
                "computed_tokens": round(prompt - reused, 1),
                "reused_tokens": round(reused, 1),
                "computed_over_own": round((prompt - reused) / own, 2),
                "seconds_cache_off": round(off_seconds, 2),
                "seconds_cache_on": round(on_seconds, 2),
                "speedup": round(off_seconds / on_seconds, 2),
                "identical_texts": f"{same}/{len(requests)}",
            }
        )
    title = f"Prefix caching, {args.requests} requests per role, float32 (cache off = baseline)"
    return report("bench_prefix", rows, title=title, columns=COLUMNS, args=args)


if __name__ == "__main__":
    main()
