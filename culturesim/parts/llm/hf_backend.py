"""transformers backend: the same protocol with a batched decoding loop of our own.

Portable (no vLLM needed) and an independent cross-check of the vLLM path. Each
request samples from its own `torch.Generator` seeded with the request's seed, so
a request's text does not depend on which other requests share its batch beyond
padding numerics.

Every request of a role starts with the same system prompt and worked examples (its
messages before the last). That prefix's KV cache is computed once per engine, alone,
and every later batch of the role starts from a copy of it: a batch is laid out as
[shared prefix][padding][request's own tokens], the padding masked out and positions
continuing the prefix's. Because the prefix is always computed the same way, a text
does not depend on whether the engine was cold or warm.

A request with `choices` (a move of the coordination game) is decoded under a constraint, as vLLM's
structured outputs do it: at each step only the tokens that continue some option are allowed, and
end-of-text only once the tokens spell a whole option, so every answer is exactly one option.
"""

from __future__ import annotations

import copy
from importlib.metadata import version

import torch

from culturesim.parts.llm.base import Completion, Request

DEFAULT_BATCH_SIZE = 32


def _nucleus(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero the tail of each row outside its top-p nucleus and renormalise."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(-1) - sorted_probs > top_p[:, None]
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(-1, keepdim=True)


def _allowed_tokens(options: tuple[tuple[int, ...], ...], generated: list[int], eos: int) -> list[int]:
    """The tokens that keep `generated` on the way to an option (each option given as its token ids):
    the next token of every option `generated` begins, and `eos` where it already is a whole option."""
    step = len(generated)
    allowed = {option[step] for option in options if len(option) > step and list(option[:step]) == generated}
    if any(list(option) == generated for option in options):
        allowed.add(eos)
    return sorted(allowed)


class TransformersBackend:
    """Left-padded batched generation with per-request seeds, temperature and top-p."""

    def __init__(
        self, model: str, *, dtype: str = "float32", batch_size: int = DEFAULT_BATCH_SIZE, device: str = "cpu"
    ) -> None:
        """`device`: 'cpu' or 'cuda' (see `culturesim.parts.devices`). The forward passes run there; each
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
        self._prefixes: dict[tuple[int, ...], object] = {}  # prefix token ids -> its KV cache (batch 1)

    def generate(self, requests: list[Request]) -> list[Completion]:
        """Batches of requests that share a prefix (a role's system prompt and worked examples), in
        request order within each prefix; completions come back in request order."""
        split = [self._split(r) for r in requests]
        by_prefix: dict[tuple[int, ...], list[int]] = {}
        for index, (prefix, _) in enumerate(split):
            by_prefix.setdefault(prefix, []).append(index)
        completions: list[Completion | None] = [None] * len(requests)
        for prefix, indices in by_prefix.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                answers = self._generate_batch([requests[i] for i in chunk], prefix, [split[i][1] for i in chunk])
                for i, answer in zip(chunk, answers, strict=True):
                    completions[i] = answer
        return [c for c in completions if c is not None]

    def _split(self, request: Request) -> tuple[tuple[int, ...], list[int]]:
        """A request's prompt tokens as (shared prefix, own tokens): the prefix is the chat template of
        every message before the last, where the whole prompt starts with it (else there is none)."""
        chat = request.chat()
        whole = self._tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = self._tokenizer(whole, add_special_tokens=False)["input_ids"]
        if len(chat) < 2:
            return (), ids
        head = self._tokenizer.apply_chat_template(chat[:-1], tokenize=False)
        prefix = self._tokenizer(head, add_special_tokens=False)["input_ids"]
        if not whole.startswith(head) or ids[: len(prefix)] != prefix:
            return (), ids
        return tuple(prefix), ids[len(prefix) :]

    def _prefix_cache(self, prefix: tuple[int, ...]):
        """The KV cache of `prefix` alone (batch 1), computed on first use and kept for the engine's life."""
        if prefix not in self._prefixes:
            ids = torch.tensor([prefix], device=self.device)
            self._prefixes[prefix] = self._model(input_ids=ids, use_cache=True).past_key_values
        return self._prefixes[prefix]

    @torch.inference_mode()
    def _generate_batch(
        self, requests: list[Request], prefix: tuple[int, ...], own: list[list[int]]
    ) -> list[Completion]:
        """One batch of requests sharing `prefix`, each with its `own` tokens, left-padded after the prefix."""
        width = max(len(ids) for ids in own)
        pad = self._tokenizer.pad_token_id
        own_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in own])
        own_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in own])
        past = None
        if prefix:
            past = copy.deepcopy(self._prefix_cache(prefix))
            past.batch_repeat_interleave(len(requests))
        generators = [torch.Generator().manual_seed(r.seed) for r in requests]
        sampling = [r.sampling for r in requests]
        temperature = torch.tensor([max(s.temperature, 1e-5) for s in sampling])
        greedy = torch.tensor([s.temperature == 0 for s in sampling])
        top_p = torch.tensor([s.top_p for s in sampling])
        budget = torch.tensor([s.max_tokens for s in sampling])
        eos = self._tokenizer.eos_token_id
        attention = torch.cat([torch.ones(len(requests), len(prefix), dtype=own_mask.dtype), own_mask], -1)
        attention = attention.to(self.device)
        position = ((attention.cumsum(-1) - 1).clamp(min=0))[:, len(prefix) :]
        out = self._model(
            input_ids=own_ids.to(self.device),
            attention_mask=attention,
            position_ids=position,
            past_key_values=past,
            use_cache=True,
        )
        generated: list[list[int]] = [[] for _ in requests]
        options = [self._option_tokens(r.choices) for r in requests]
        done = torch.zeros(len(requests), dtype=torch.bool)
        for step in range(int(budget.max())):
            logits = out.logits[:, -1, :].float().cpu()
            for i, allowed in enumerate(options):
                if allowed and not done[i]:
                    keep = torch.full_like(logits[i], float("-inf"))
                    keep[_allowed_tokens(allowed, generated[i], eos)] = 0.0
                    logits[i] += keep
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
        return [
            Completion(text=t, tokens=len(ids), prompt_tokens=len(prefix) + len(mine), cached_tokens=len(prefix))
            for t, ids, mine in zip(texts, generated, own, strict=True)
        ]

    def _option_tokens(self, choices: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
        """Each option's token ids as the answer starts with it (empty without choices)."""
        return tuple(tuple(self._tokenizer(c, add_special_tokens=False)["input_ids"]) for c in choices)

    def close(self) -> None:
        self._model = None
        self._prefixes.clear()
