"""LoRA fine-tuning of the engine's model on a run's texts, and the held-out negative log-likelihood.

The model learns the texts as plain language-model text (each text, then the end-of-sequence
token), the setting of the model-collapse studies (Shumailov et al. 2024 fine-tuned OPT-125m on
the previous generation's text and measured perplexity on the original test set; Gerstgrasser
et al. 2024 likewise): no chat template, so no training compute goes to a fixed prompt.

Same inputs, same adapter bytes, on one device kind (a CPU kind, or a GPU with cuBLAS's fixed
workspace): the trainer seeds torch, trains on the GPU where there is one, runs with
`torch.use_deterministic_algorithms`, no dropout, a shuffle drawn from its own seed, and saves
the adapter with a config that names the model by its study-file name, not a machine's path.
Each retraining starts from the base model (as each of Shumailov's generations started from the
pretrained model): a run's model lineage lives in its data, and every adapter records its parent.

Batches are cut from texts sorted by length within the shuffled order's windows, so a batch pads
little (padding is computed for nothing), while which texts meet in a step stays a function of the
seed. Units: tokens are the SmolLM2 tokenizer's; seconds are wall-clock.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from culturesim.core.settings import cuda_training_defaults, environment_defaults

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SORT_WINDOW = 8  # batches whose texts are sorted by length together (padding vs. order randomness)
MAX_TEXT_TOKENS = 256  # a trait is at most a few hundred characters; longer input is cut


@dataclass(frozen=True)
class LoraSettings:
    """What a retraining does; every field changes the adapter's bytes."""

    rank: int = 8
    epochs: int = 1
    learning_rate: float = 2e-4
    batch_size: int = 16
    seed: int = 0


@dataclass(frozen=True)
class TrainedAdapter:
    """A trained adapter's files (name -> bytes) and how the training went."""

    files: dict[str, bytes]
    losses: tuple[float, ...]  # mean token loss (nats) of each optimizer step
    tokens: int  # tokens the model was trained on (forward and backward), padding excluded
    seconds: float  # the whole training: loading the model, the steps, saving the adapter
    step_seconds: float = 0.0  # the optimizer steps alone (what tokens per second is taken over)

    @property
    def digest(self) -> str:
        """Content address: SHA-256 over the files' names and bytes, in name order."""
        return adapter_digest(self.files)


def adapter_digest(files: dict[str, bytes]) -> str:
    hasher = hashlib.sha256()
    for name in sorted(files):
        hasher.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return hasher.hexdigest()


def training_device() -> str:
    """Where training and scoring run: the GPU where torch sees one, else the CPU."""
    from culturesim.parts.devices import cuda_available

    return "cuda" if cuda_available() else "cpu"


@contextmanager
def deterministic_torch(seed: int) -> Iterator[None]:
    """Seeded torch with deterministic algorithms inside the block; the previous mode restored. On
    CUDA, cuBLAS is deterministic only with a fixed workspace (CUBLAS_WORKSPACE_CONFIG, set unless given)."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    with environment_defaults(cuda_training_defaults()):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(before)


def _load(model_path: str, adapter: Path | None = None):
    """The base model in float32 (with `adapter` applied, frozen, when given) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(training_device())
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    return model, tokenizer


def _encode(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Each text's token ids followed by the end-of-sequence token, cut at MAX_TEXT_TOKENS."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [row[: MAX_TEXT_TOKENS - 1] + [tokenizer.eos_token_id] for row in ids]


def _batch(rows: Sequence[list[int]], pad: int):
    """Right-padded input ids, attention mask and labels (-100 on padding: no loss there)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    device = training_device()
    return ids.to(device), mask.to(device), labels.to(device)


def training_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Index batches of one epoch: a seeded shuffle, sorted by length within windows of SORT_WINDOW
    batches, then the batches themselves in a seeded order."""
    order = rng.permutation(len(lengths))
    window = batch_size * SORT_WINDOW
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: (lengths[i], i))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def train_adapter(
    model_path: str,
    model_name: str,
    texts: Sequence[str],
    settings: LoraSettings,
    *,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainedAdapter:
    """Fine-tune a fresh LoRA adapter (all seven projections, alpha = 2 x rank, no dropout) of
    the model at `model_path` on `texts`; `model_name` is written into the adapter's config in
    place of the path. `on_step(done, total)` is told after each optimizer step."""
    import torch
    from peft import LoraConfig, get_peft_model

    if not texts:
        raise ValueError("a retraining needs at least one text")
    started = time.perf_counter()
    with deterministic_torch(settings.seed):
        model, tokenizer = _load(model_path)
        config = LoraConfig(
            r=settings.rank,
            lora_alpha=2 * settings.rank,
            lora_dropout=0.0,
            target_modules=list(TARGET_MODULES),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
        model.train()
        rows = _encode(tokenizer, texts)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        rng = np.random.default_rng(settings.seed)
        epochs = [training_batches([len(r) for r in rows], settings.batch_size, rng) for _ in range(settings.epochs)]
        total = sum(len(e) for e in epochs)
        if on_step is not None:
            on_step(0, total)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate)
        losses, tokens = [], 0
        stepping = time.perf_counter()
        for batches in epochs:
            for indices in batches:
                ids, mask, labels = _batch([rows[i] for i in indices], pad)
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                tokens += int(mask.sum())
                if on_step is not None:
                    on_step(len(losses), total)
        step_seconds = time.perf_counter() - stepping
        files = _adapter_files(model, model_name)
    return TrainedAdapter(files, tuple(losses), tokens, time.perf_counter() - started, step_seconds)


def _adapter_files(model, model_name: str) -> dict[str, bytes]:
    """The adapter's files as bytes, its config naming the model by `model_name`, keys sorted."""
    model.peft_config["default"].base_model_name_or_path = model_name
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        # peft looks for the model's config under `model_name` to see whether the vocabulary grew; it did not.
        warnings.filterwarnings("ignore", message="Could not find a config file")
        model.save_pretrained(folder)
        files = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
    config = json.loads(files[ADAPTER_CONFIG])
    # peft keeps target_modules as a set: its saved order follows the process's string hashing.
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    files[ADAPTER_CONFIG] = (json.dumps(config, sort_keys=True, indent=1) + "\n").encode()
    return files


def mean_token_nll(
    model_path: str, texts: Sequence[str], *, adapter: Path | None = None, batch_size: int = 16
) -> float:
    """Mean negative log-likelihood per token (nats) of `texts` under the model (with `adapter` if
    given), scored as the trainer trains: each text, then end-of-sequence. exp() of it is the
    perplexity Shumailov et al. report."""
    import torch

    with deterministic_torch(0), torch.no_grad():
        model, tokenizer = _load(model_path, adapter)
        model.eval()
        rows = _encode(tokenizer, texts)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        total, count = 0.0, 0
        for start in range(0, len(rows), batch_size):
            ids, mask, labels = _batch(rows[start : start + batch_size], pad)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            target = labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += float(nll)
            count += int((target != -100).sum())
    if count == 0:
        return math.nan
    return total / count
