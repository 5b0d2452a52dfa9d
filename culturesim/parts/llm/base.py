"""The batch-first language-model protocol every backend implements.

One call takes all the requests of a generation (every agent of every run in the
batch): batching is where an LLM simulation gets its speed, so the protocol has
no single-prompt method at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol

from culturesim.schema.sampling import Sampling


@dataclass(frozen=True)
class AdapterRef:
    """A trained LoRA adapter a request is answered with: `name` is its content digest (what the
    request key and the log record), `path` the folder holding its files on this machine."""

    name: str
    path: str = field(compare=False)


@dataclass(frozen=True)
class Request:
    """One chat completion to produce; `seed` makes sampling reproducible per request."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    seed: int
    sampling: Sampling = Sampling()
    # The answers allowed (a move of the coordination game): vLLM (in process or `vllm serve`) and the
    # transformers backend constrain decoding to them; another HTTP server's answer is parsed and retried.
    choices: tuple[str, ...] = ()
    # The run's current adapter (None: the engine's base model); part of the request's identity.
    adapter: AdapterRef | None = None

    @property
    def prompt(self) -> str:
        """The last message's content: the text a completion answers (and may echo back)."""
        return self.messages[-1][1]

    def key(self) -> str:
        """Content hash: identical requests (prompt, sampling settings, seed) share one answer.

        The payload is a flat list in this exact order, as before sampling settings were one
        object: completion logs store these keys, so the same request must keep its key. `choices`
        and the adapter join the list only when there are some (other requests keep their old keys)."""
        s = self.sampling
        fields = [self.messages, self.seed, s.max_tokens, s.temperature, s.top_p]
        fields += [list(self.choices)] if self.choices else []
        fields += [{"adapter": self.adapter.name}] if self.adapter is not None else []
        payload = json.dumps(fields, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass(frozen=True)
class Completion:
    """One answer, with what it cost the engine. `prompt_tokens` is the request's whole prompt after
    the chat template; `cached_tokens` the part of it the engine took from its prefix cache instead
    of computing (the role's system prompt and worked examples, shared by every request of a role).
    Both are 0 where a backend cannot tell (a remote server that does not report them)."""

    text: str
    tokens: int  # generated tokens
    prompt_tokens: int = 0
    cached_tokens: int = 0


class EngineError(RuntimeError):
    """The engine failed while answering (a server that is unreachable, keeps failing, refuses a
    request or answers out of format): a failure at run time, not a mistake in the study file.
    What finished before it (runs, the completion log) is kept; `--resume` continues."""


class Backend(Protocol):
    """A language model that answers a batch of requests in one call."""

    model_id: str

    def generate(self, requests: list[Request]) -> list[Completion]:
        """Completions in request order."""
        ...

    def close(self) -> None:
        """Release the engine (processes, memory)."""
        ...


def retry_seed(seed: int, attempt: int) -> int:
    """A fresh 31-bit seed for the attempt-th retry of a request, derived from its own seed."""
    digest = hashlib.sha256(f"{seed}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def deduplicated_generate(backend: Backend, requests: list[Request]) -> list[Completion]:
    """Answer identical requests once, then fan the answers back out in request order."""
    index: dict[str, int] = {}
    unique: list[Request] = []
    slots = []
    for request in requests:
        key = request.key()
        if key not in index:
            index[key] = len(unique)
            unique.append(request)
        slots.append(index[key])
    answers = backend.generate(unique) if unique else []
    return [answers[slot] for slot in slots]
