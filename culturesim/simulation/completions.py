"""Completion sources and the completion log: where a generation's LLM answers come from.

The completion log is the primary data of an LLM study: vLLM output is not reproducible
across hardware, dtype or versions, so a study must be recoverable and replayable from
what its engine once answered. After every engine call, every request of that call (one
entry per asking agent, retries included) is appended to a JSON Lines file, followed by a
commit line, and fsynced: a call is in the log whole or not at all, so a kill -9 at any
moment loses at most the call in flight.

A `CompletionSource` answers a round of requests from the log first and sends only what
the log lacks to its engine. Its three uses are one class with different parts:

- a fresh run:  an empty log and an engine;
- a resume:     the partial log and an engine (the logged requests cost zero engine calls);
- a replay:     the log and no engine (a request the log lacks stops the replay, naming it).

A request is identified in the log by its engine (`EngineIdentity.key`: the backend and device
that really ran, see `culturesim.parts.engine_identity`) and its content hash (`Request.key`, which
includes the exact seed): two engines never share an answer, unless a source is told to accept
another's (the engines one study ran with, when it is resumed elsewhere or replayed).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from culturesim.parts.engine_identity import EngineIdentity, migrate_entry
from culturesim.parts.llm.base import Backend, Completion, Request, retry_seed
from culturesim.parts.llm.convention_prompts import adopt_choice
from culturesim.parts.llm.prompts import Adoption, adopt
from culturesim.schema.llm_section import EngineSection

LOG_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class Origin:
    """Who asked: a run, a generation and an agent of that run, or (`probe`, agent -1) a chain of
    the run's model probe (`culturesim.study.model_probe`)."""

    run_id: str
    generation: int
    agent: int
    probe: int | None = None

    def describe(self) -> str:
        asker = f"agent {self.agent}" if self.probe is None else f"model probe chain {self.probe}"
        return f"run {self.run_id}, generation {self.generation}, {asker}"


class MissingCompletion(RuntimeError):
    """A replay met a request its log does not hold."""


class CompletionLog:
    """The JSON Lines files under `folder`: read them all, append to one of them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(
        self, legacy: EngineSection | None = None, legacy_device: str = "cpu"
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Every committed entry of every file, keyed by (engine key, request key).

        An entry written before engine keys were resolved by an engine with the settings `legacy`
        is keyed as the migration rule (`engine_identity.legacy_identity`) says, with
        `legacy_device` where the study recorded no device; the files stay as they are."""
        entries: dict[tuple[str, str], dict[str, Any]] = {}
        for path in sorted(self.folder.glob(f"*{LOG_SUFFIX}")):
            for entry in _committed(path)[0]:
                if legacy is not None and "device" not in entry:
                    entry = migrate_entry(entry, legacy, legacy_device) or entry
                entries[(entry["engine_key"], entry["request_key"])] = entry
        return entries

    def append(self, name: str, entries: list[dict[str, Any]]) -> None:
        """Append one engine call's entries and a commit line to `name`.jsonl, durably.

        A torn tail left by a killed writer is cut off first, so the file stays a
        sequence of whole, committed calls. The log folder is made inside an existing results folder only:
        a results folder removed mid-run is an error, never silently re-created."""
        path = self.folder / f"{name}{LOG_SUFFIX}"
        lines = [json.dumps(e, sort_keys=True, ensure_ascii=False) for e in entries]
        lines.append(json.dumps({"commit": len(entries)}))
        try:
            self.folder.mkdir(exist_ok=True)
            if path.exists():
                _, end = _committed(path)
                if end != path.stat().st_size:
                    os.truncate(path, end)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            if exc.filename is not None:
                raise
            # A write or fsync refused by a full disk names no file; name the log, so the study's one
            # message can say which file failed.
            raise OSError(exc.errno, exc.strerror, str(path)) from exc


def _committed(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The entries of `path` that a commit line vouches for, and the byte offset after the last commit."""
    entries: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    offset = end = 0
    with open(path, "rb") as handle:
        for raw in handle:
            offset += len(raw)
            if not raw.endswith(b"\n"):
                break  # torn tail
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                break
            if "commit" in record:
                if record["commit"] != len(pending):
                    break
                entries += pending
                pending = []
                end = offset
            else:
                pending.append(record)
    return entries, end


@dataclass
class SourceCounters:
    """What a source did: requests answered by the log, engine calls and their cost."""

    from_log: int = 0  # requests answered from the log (no engine call)
    engine_calls: int = 0
    engine_requests: int = 0  # distinct requests sent to the engine
    engine_tokens: int = 0  # generated tokens
    engine_prompt_tokens: int = 0  # prompt tokens of the requests sent to the engine
    engine_prompt_tokens_reused: int = 0  # of those, taken from the engine's prefix cache, not computed
    engine_seconds: float = 0.0


@dataclass
class CompletionSource:
    """Answers rounds of requests: from `log` first, then from an engine started on first need.

    `log_name`: the file this source appends the engine's answers to (None: answers are not
    logged, as in a validation chain). `start_engine`: None for a replay. `accepts`: other engines
    whose logged answers answer this source too (after its own engine's): the engines a study ran
    with on other machines, so that a resume there or a replay asks no request twice."""

    engine: EngineIdentity
    known: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    accepts: tuple[EngineIdentity, ...] = ()
    log: CompletionLog | None = None
    log_name: str | None = None
    start_engine: Callable[[], Backend] | None = None
    counters: SourceCounters = field(default_factory=SourceCounters)
    _backend: Backend | None = None
    _new: set[tuple[str, str]] = field(default_factory=set)

    def answer(self, requests: list[Request], origins: list[Origin], attempt: int) -> list[Completion]:
        """One round: completions in request order; identical requests are answered once."""
        engine_keys = [self.engine.key(), *(identity.key() for identity in self.accepts)]
        keys = [self._logged(adapter_keys(engine_keys, r), r.key()) for r in requests]
        missing: dict[tuple[str, str], Request] = {}
        for key, request in zip(keys, requests, strict=True):
            if key not in self.known and key not in missing:
                missing[key] = request
        self.counters.from_log += sum(1 for k in keys if k in self.known and k not in self._new)
        if missing:
            self._ask_engine(missing, keys, requests, origins, attempt)
        return [Completion(self.known[k]["completion"], self.known[k]["tokens"]) for k in keys]

    def _logged(self, engine_keys: list[str], request_key: str) -> tuple[str, str]:
        """Where the log answers a request: under the first of `engine_keys` that holds it, else
        (this source's engine, request) for the engine to answer."""
        for engine_key in engine_keys:
            if (engine_key, request_key) in self.known:
                return engine_key, request_key
        return engine_keys[0], request_key

    def _ask_engine(self, missing, keys, requests, origins, attempt) -> None:
        if self.start_engine is None:
            first = next(i for i, k in enumerate(keys) if k in missing)
            raise MissingCompletion(
                f"the completion log has no answer for {origins[first].describe()} (attempt {attempt}, "
                f"engine {self.engine.key()}, request {keys[first][1][:12]}): the config asks for a request "
                "the study never made; replay with the study's own config, or run it with --resume to ask the engine"
            )
        if self._backend is None:
            self._backend = self.start_engine()
        started = time.perf_counter()
        answers = self._backend.generate(list(missing.values()))
        self.counters.engine_seconds += time.perf_counter() - started
        self.counters.engine_calls += 1
        self.counters.engine_requests += len(missing)
        self.counters.engine_tokens += sum(a.tokens for a in answers)
        self.counters.engine_prompt_tokens += sum(a.prompt_tokens for a in answers)
        self.counters.engine_prompt_tokens_reused += sum(a.cached_tokens for a in answers)
        engine_version = getattr(self._backend, "engine_version", "unknown")
        for key, answer in zip(missing, answers, strict=True):
            self.known[key] = {"completion": answer.text, "tokens": answer.tokens}
            self._new.add(key)
        entries = [
            _entry(request, origin, attempt, self.engine, engine_version, key, self.known[key])
            for key, request, origin in zip(keys, requests, origins, strict=True)
            if key in missing
        ]
        if self.log is not None and self.log_name is not None:
            self.log.append(self.log_name, entries)

    def close(self) -> None:
        """Release the engine this source started (an injected shared one is closed by its owner)."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def adapter_keys(engine_keys: list[str], request: Request) -> list[str]:
    """The engine keys a request is logged under: an engine's key, with `+lora:<digest>` where the
    request is answered with a trained adapter (so the log names the adapter that answered)."""
    if request.adapter is None:
        return engine_keys
    return [f"{key}+lora:{request.adapter.name[:16]}" for key in engine_keys]


def _entry(
    request, origin, attempt, engine: EngineIdentity, engine_version: str, key: tuple[str, str], answer
) -> dict[str, Any]:
    """One log line: the exact request (messages, sampling, seed), who asked, which engine (and
    adapter) answered."""
    messages = dict(request.messages)
    return {
        "run_id": origin.run_id,
        "generation": origin.generation,
        "agent": origin.agent,
        **({"probe": origin.probe} if origin.probe is not None else {}),
        "attempt": attempt,
        "request_key": request.key(),
        "seed": request.seed,
        "system": messages.get("system", ""),
        "user": messages.get("user", ""),
        "max_tokens": request.sampling.max_tokens,
        "temperature": request.sampling.temperature,
        "top_p": request.sampling.top_p,
        **({"choices": list(request.choices)} if request.choices else {}),
        "engine_key": key[0],
        **({"adapter": request.adapter.name} if request.adapter is not None else {}),
        "backend": engine.backend,
        "model": engine.model,
        "dtype": engine.dtype,
        "device": engine.device,
        "engine_version": engine_version,
        "completion": answer["completion"],
        "tokens": answer["tokens"],
    }


def answer_with_retries(
    source: CompletionSource,
    requests: list[Request],
    origins: list[Origin],
    *,
    max_chars: list[int],
    retries: list[int],
) -> tuple[list[Request], list[Completion], list[Adoption], list[int]]:
    """Answer every request; an unusable answer is asked again with a new seed, up to its `retries`.

    Each round is one batched call for all the requests still unanswered. Every completion is
    judged once (`llm.prompts.adopt`, cut at the request's `max_chars`). Returns the request that
    produced each final completion (its seed is the one actually used), the completions (the last
    attempt's where none was usable), their adoptions and the attempts per request."""
    used = list(requests)
    completions = source.answer(requests, origins, attempt=0) if requests else []
    adoptions = [_adopt(r, c, m) for r, c, m in zip(requests, completions, max_chars, strict=True)]
    attempts = [1] * len(requests)
    for attempt in range(1, max(retries, default=0) + 1):
        bad = [i for i, a in enumerate(adoptions) if attempt <= retries[i] and not a.usable]
        if not bad:
            break
        again = [replace(requests[i], seed=retry_seed(requests[i].seed, attempt)) for i in bad]
        answers = source.answer(again, [origins[i] for i in bad], attempt=attempt)
        for i, request, completion in zip(bad, again, answers, strict=True):
            used[i], completions[i], adoptions[i] = request, completion, _adopt(request, completion, max_chars[i])
            attempts[i] += 1
    return used, completions, adoptions, attempts


def _adopt(request: Request, completion: Completion, max_chars: int) -> Adoption:
    if request.choices:  # a move of the coordination game: one of the allowed names, or nothing
        return adopt_choice(completion.text, request.choices)
    return adopt(completion.text, prompt=request.prompt, max_chars=max_chars)
