"""transformers backend: the same protocol with a batched decoding loop of our own.

Portable (no vLLM needed) and an independent cross-check of the vLLM path. Each
request samples from its own `torch.Generator` seeded with the request's seed, so
a request's text does not depend on which other requests share its batch beyond
padding numerics.
"""

from __future__ import annotations

from importlib.metadata import version

import torch

from culturesim.llm.base import Completion, Request

DEFAULT_BATCH_SIZE = 32


def _nucleus(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero the tail of each row outside its top-p nucleus and renormalise."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(-1) - sorted_probs > top_p[:, None]
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(-1, keepdim=True)


class TransformersBackend:
    """Left-padded batched generation with per-request seeds, temperature and top-p."""

    def __init__(
        self, model: str, *, dtype: str = "float32", batch_size: int = DEFAULT_BATCH_SIZE, device: str = "cpu"
    ) -> None:
        """`device`: 'cpu' or 'cuda' (see `culturesim.devices`). The forward passes run there; each
        token is drawn on the CPU from the request's own generator, as on a CPU-only machine."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_id = model
        self.device = torch.device(device)
        self.engine_version = f"transformers {version('transformers')}"
        self.batch_size = batch_size
        self._tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        torch_dtype = torch.float32 if dtype in ("float32", "auto") else getattr(torch, dtype)
        self._model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).eval().to(self.device)

    def generate(self, requests: list[Request]) -> list[Completion]:
        completions: list[Completion] = []
        for start in range(0, len(requests), self.batch_size):
            completions.extend(self._generate_batch(requests[start : start + self.batch_size]))
        return completions

    @torch.inference_mode()
    def _generate_batch(self, requests: list[Request]) -> list[Completion]:
        prompts = [
            self._tokenizer.apply_chat_template(r.chat(), tokenize=False, add_generation_prompt=True) for r in requests
        ]
        batch = self._tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        generators = [torch.Generator().manual_seed(r.seed) for r in requests]
        sampling = [r.sampling for r in requests]
        temperature = torch.tensor([max(s.temperature, 1e-5) for s in sampling])
        greedy = torch.tensor([s.temperature == 0 for s in sampling])
        top_p = torch.tensor([s.top_p for s in sampling])
        budget = torch.tensor([s.max_tokens for s in sampling])
        eos = self._tokenizer.eos_token_id
        attention = batch["attention_mask"].to(self.device)
        position = (attention.cumsum(-1) - 1).clamp(min=0)
        input_ids = batch["input_ids"].to(self.device)
        out = self._model(input_ids=input_ids, attention_mask=attention, position_ids=position, use_cache=True)
        generated: list[list[int]] = [[] for _ in requests]
        done = torch.zeros(len(requests), dtype=torch.bool)
        for step in range(int(budget.max())):
            logits = out.logits[:, -1, :].float().cpu()
            probs = _nucleus(torch.softmax(logits / temperature[:, None], dim=-1), top_p)
            tokens = torch.stack(
                [torch.multinomial(probs[i], 1, generator=generators[i])[0] for i in range(len(requests))]
            )
            tokens = torch.where(greedy, logits.argmax(-1), tokens)
            for i, token in enumerate(tokens.tolist()):
                if not done[i]:
                    generated[i].append(token)
            done |= (tokens == eos) | (budget <= step + 1)
            if bool(done.all()):
                break
            ones = torch.ones(len(requests), 1, dtype=attention.dtype, device=self.device)
            attention = torch.cat([attention, ones], dim=-1)
            position = position[:, -1:] + 1
            out = self._model(
                input_ids=tokens[:, None].to(self.device),
                attention_mask=attention,
                position_ids=position,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        texts = [self._tokenizer.decode(ids, skip_special_tokens=True) for ids in generated]
        return [Completion(text=t, tokens=len(ids)) for t, ids in zip(texts, generated, strict=True)]

    def close(self) -> None:
        self._model = None
