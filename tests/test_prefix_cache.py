"""vLLM's prefix cache is on for every dtype: it must save the shared prefix and change no text.

Every request of a role starts with the same system prompt and worked examples, so the engine
computes that prefix once and reads it from its cache afterwards. A seeded request's text must
not depend on whether its prefix was computed or read: not on a cold or warm engine, not on
which requests the engine served before (including the same neighbour text under other seeds,
whose cache hits reach into the request's own text), not on the batch it shares, and not on
whether caching is on at all.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from culturesim.checks.chains import story_sample
from culturesim.parts.llm.base import Completion, Request
from culturesim.parts.llm.prompts import build_messages
from culturesim.schema.sampling import Sampling
from tests.helpers import NEEDS_VLLM

SAMPLING = Sampling(max_tokens=24)
ROLES = ("rewrite", "advise", "combine", "create", "continue")
TEMPLATE_TOKENS = 8  # chat-template tokens around the last message and the assistant's header


def _requests(role: str, count: int, first_seed: int) -> list[Request]:
    stories = story_sample(20)
    return [
        Request(
            build_messages(role, [stories[i % 20], stories[(i + 3) % 20], stories[(i + 7) % 20]], max_chars=280),
            seed=first_seed + i,
            sampling=SAMPLING,
        )
        for i in range(count)
    ]


def _texts(completions: list[Completion]) -> list[str]:
    return [c.text for c in completions]


def probe() -> dict[str, dict[str, list[str]]]:
    """Two fresh engines, one after the other (each starts with an empty cache): with caching on, the
    target requests on the cold engine, again after other roles and the same neighbour texts under
    other seeds, and in two reversed halves; with caching off, once. Run in a subprocess by the slow
    test, so the session's warm engine plays no part."""
    from culturesim.parts.llm.models import resolve_model
    from culturesim.parts.llm.vllm_backend import VLLMBackend
    from culturesim.schema.llm_section import BUILTIN_MODEL

    target = _requests("rewrite", 12, 1000)
    runs = {}
    for caching in (True, False):
        backend = VLLMBackend(resolve_model(BUILTIN_MODEL), prefix_caching=caching)
        texts = {"cold": _texts(backend.generate(target))}
        if caching:
            backend.generate(_requests("advise", 6, 5) + _requests("rewrite", 12, 99_999))
            texts["warm"] = _texts(backend.generate(target))
            second, first = backend.generate(target[6:]), backend.generate(target[:6])
            texts["halves"] = _texts(first + second)
        backend.close()
        runs[str(caching)] = texts
    return runs


@NEEDS_VLLM
def test_warm_engine_and_batch_composition_keep_every_text(vllm_backend) -> None:
    target = _requests("rewrite", 8, 2000)
    alone = _texts(vllm_backend.generate(target))
    vllm_backend.generate(_requests("combine", 4, 7) + _requests("rewrite", 8, 77_777))  # same texts, other seeds
    mixed = vllm_backend.generate(_requests("advise", 3, 11) + target[::-1])
    assert _texts(mixed[3:])[::-1] == alone
    assert all(c.cached_tokens > 0 for c in mixed[3:]), "a warm engine must read the shared prefix from its cache"


@NEEDS_VLLM
@pytest.mark.parametrize("role", ROLES)
def test_each_role_computes_little_more_than_its_own_tokens(role: str, vllm_backend) -> None:
    """After the first request of a role, the engine computes about the request's own tokens (its last
    message: the neighbours' texts and the instruction), not the system prompt and worked examples:
    at most those, the chat template's tokens and the part of a KV block the shared prefix leaves
    unfilled (the cache reuses whole blocks)."""
    from transformers import AutoTokenizer

    from culturesim.parts.llm.vllm_backend import CPU_BLOCK_SIZE

    requests = _requests(role, 4, 3000)
    vllm_backend.generate(requests[:1])
    answers = vllm_backend.generate(requests[1:])
    tokenizer = AutoTokenizer.from_pretrained(vllm_backend.model_id)
    for request, answer in zip(requests[1:], answers, strict=True):
        own = len(tokenizer(request.prompt, add_special_tokens=False)["input_ids"])
        computed = answer.prompt_tokens - answer.cached_tokens
        assert answer.prompt_tokens > 2 * own, "the prompt holds the role's shared prefix"
        assert computed < own + TEMPLATE_TOKENS + CPU_BLOCK_SIZE, (role, computed, own, answer.prompt_tokens)


@NEEDS_VLLM
@pytest.mark.slow
def test_cold_warm_and_uncached_engines_write_the_same_texts() -> None:
    code = "import json; from tests.test_prefix_cache import probe; print(json.dumps(probe()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    reference = runs["False"]["cold"]
    assert len(set(reference)) > 6, "seeded requests over different texts should give different texts"
    for name, texts in runs["True"].items():
        assert texts == reference, f"{name} engine with prefix caching wrote other texts than an uncached one"


def test_transformers_prefix_cache_is_computed_once_and_changes_no_text() -> None:
    """The transformers backend computes each role's prefix KV once per engine; a cold engine, a warm
    one and another batch order give the same texts."""
    from culturesim.parts.llm import create_backend
    from culturesim.schema.llm_section import EngineSection

    backend = create_backend(EngineSection(backend="transformers"), seed=0)
    target = _requests("rewrite", 4, 4000) + _requests("advise", 3, 60)
    cold = backend.generate(target)
    backend.generate(_requests("rewrite", 3, 4000)[::-1] + _requests("create", 2, 9))
    warm = backend.generate(target[::-1])[::-1]
    backend.close()
    assert _texts(warm) == _texts(cold)
    assert len(set(_texts(cold))) == len(target)
    assert all(c.cached_tokens > 2 * (c.prompt_tokens - c.cached_tokens) for c in cold)
