"""Trained adapters served on the CPU by merging them into the running engine's weights, one at a time.

vLLM's multi-LoRA serving on the CPU runs without compilation and through a PyTorch fallback of its
LoRA kernels: on a 2-core AVX-512 machine, 64 requests of 4 runs, each with its own rank-8 adapter,
came at 0.29x the base model's tokens per second in the same engine (`benchmarks/bench_training.py`).
Merging an adapter into the base weights (W + (alpha / r) B A, for every projection it adapts) and
reloading those weights in place (`reload_weights`, then a prefix-cache reset, since cached blocks
belong to the old weights) serves each run's requests at the base model's speed, at the cost of one
call per adapter: 0.47x there. The texts are a pure function of the seeds and the adapter's bytes
(the merge is the same float32 arithmetic every time; a request's text does not depend on the batch
it is in, `tests/test_prefix_cache.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from culturesim.parts.llm.base import AdapterRef

ADAPTER_PREFIX = "base_model.model."  # peft's name for the wrapped model in a saved adapter


class MergedAdapters:
    """Which adapter a running `vllm.LLM` answers with now, and the swap to another one."""

    def __init__(self, llm: Any, model_folder: str) -> None:
        self._llm = llm
        self._folder = Path(model_folder)
        self._base: dict[str, Any] | None = None  # the adapted projections' base weights, read on first need
        self.current: str | None = None  # the adapter merged in now (None: the base model)
        self.swaps = 0

    def use(self, adapter: AdapterRef | None) -> None:
        """Make the engine answer with `adapter` (None: the base model); nothing when it already does."""
        name = None if adapter is None else adapter.name
        if name == self.current:
            return
        weights = self._merged(Path(adapter.path)) if adapter is not None else self._base_weights(self._targets())
        self._llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights.items())})
        self._llm.reset_prefix_cache()
        self.current = name
        self.swaps += 1

    def _merged(self, folder: Path) -> dict[str, Any]:
        from safetensors.torch import load_file

        config = json.loads((folder / "adapter_config.json").read_text())
        scale = config["lora_alpha"] / config["r"]
        tensors = load_file(str(folder / "adapter_model.safetensors"))
        pairs = {
            name.removeprefix(ADAPTER_PREFIX).replace(".lora_A.weight", ".weight"): (
                a,
                tensors[name.replace("lora_A", "lora_B")],
            )
            for name, a in tensors.items()
            if ".lora_A." in name
        }
        base = self._base_weights(set(pairs))
        return {target: base[target] + scale * (b @ a) for target, (a, b) in sorted(pairs.items())}

    def _targets(self) -> set[str]:
        return set(self._base or {})

    def _base_weights(self, targets: set[str]) -> dict[str, Any]:
        """The base model's weights of `targets` (kept once read: a swap back restores them)."""
        from safetensors import safe_open

        if self._base is None:
            self._base = {}
        missing = targets - set(self._base)
        for path in sorted(self._folder.glob("*.safetensors")):
            with safe_open(str(path), framework="pt") as handle:
                for name in missing & set(handle.keys()):
                    self._base[name] = handle.get_tensor(name)
        return {name: self._base[name] for name in sorted(targets)}
