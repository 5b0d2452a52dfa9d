"""OpenAI-compatible HTTP backend: every request of a generation sent concurrently to `/chat/completions`.

Works with any server that speaks the chat-completions protocol (a `vllm serve` on a GPU
machine, llama.cpp's server, a hosted API). Only the standard library is used: one
thread per in-flight request (at most `max_concurrency`), bounded retries with
exponential backoff on connection errors, timeouts, HTTP 429 and 5xx, and no retry on
other 4xx answers, which mean the request itself is wrong.

A move of the coordination game (`Request.choices`) is constrained to its options where the server
is a `vllm serve` (found once, from its `/version` answer): the request then carries vLLM's
`structured_outputs` field. Other servers would refuse an unknown field, so they get the plain
request, and the answer is parsed and retried like any other.

The API key is read from the environment variable named by `api_key_env` at the moment
each request is sent; it is never stored on the backend, so it cannot end up in `repr`,
in a pickle, in a log line or in an exception message (server answers quoted in errors
are scrubbed of it as well).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from http.client import HTTPException
from typing import Any

from culturesim.core.settings import api_key
from culturesim.parts.llm.base import Completion, EngineError, Request
from culturesim.schema.config import ConfigError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER = 60.0  # seconds; a server's Retry-After is honoured up to this
QUOTE_LIMIT = 300  # characters of a server's error answer quoted in an exception


def _public_url(url: str) -> str:
    """The URL without user:password@ or query string, fit for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _Retryable(Exception):
    """A failure worth another attempt; `reason` is safe to show."""

    def __init__(self, reason: str, *, unreachable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable
        self.retry_after = retry_after


class _Aborted(Exception):
    """Another request of the batch failed for good; this one stops early."""


class OpenAIBackend:
    """A chat-completions server wrapped in the batch protocol."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        max_retries: int = 3,
        timeout: float = 60.0,
        backoff: float = 0.5,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"llm.engine.base_url must start with http:// or https:// (got {_public_url(base_url)!r})"
            )
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0 or backoff < 0:
            raise ValueError("max_concurrency >= 1, max_retries >= 0, timeout > 0 and backoff >= 0 are required")
        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.engine_version = f"openai-compatible {_public_url(self.base_url)}"
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self._endpoint = f"{self.base_url}/chat/completions"
        self._shown = _public_url(self._endpoint)
        # Own opener: proxies are read from the environment now, not whenever urllib first ran.
        self._opener = urllib.request.build_opener()
        self._jitter = random.Random()
        self._serves_vllm: bool | None = None  # asked once, at the first batch with choices

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(base_url={_public_url(self.base_url)!r}, model={self.model_id!r}, "
            f"api_key_env={self.api_key_env!r}, max_concurrency={self.max_concurrency})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_opener", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._opener = urllib.request.build_opener()

    # -- protocol ------------------------------------------------------------------------------------

    def generate(self, requests: list[Request]) -> list[Completion]:
        """Completions in request order; the first request that fails for good fails the batch."""
        if not requests:
            return []
        if self._serves_vllm is None and any(r.choices for r in requests):
            self._serves_vllm = self._is_vllm_server()
        abort = threading.Event()
        workers = min(self.max_concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai-backend") as pool:
            futures = [pool.submit(self._complete, request, abort) for request in requests]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f in done and f.exception() is not None), None)
            if failed is not None:
                abort.set()
                for future in futures:
                    future.cancel()
                raise failed.exception()
            return [future.result() for future in futures]

    def close(self) -> None:
        """Nothing to release: every request opens and closes its own connection."""

    # -- one request ---------------------------------------------------------------------------------

    def _payload(self, request: Request) -> bytes:
        body = {
            "model": self.model_id,
            "messages": request.chat(),
            "max_tokens": request.sampling.max_tokens,
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
            "seed": request.seed,
        }
        if request.choices and self._serves_vllm:
            body["structured_outputs"] = {"choice": list(request.choices)}
        return json.dumps(body).encode("utf-8")

    def _is_vllm_server(self) -> bool:
        """Whether the server is a `vllm serve`: its `/version` (beside `/v1`) answers {"version": ...}.
        Any other answer, or none within 5 s, means another server."""
        asked = urllib.request.Request(f"{self.base_url.removesuffix('/v1')}/version", headers=self._headers())
        try:
            with self._opener.open(asked, timeout=5) as answer:
                found = json.loads(answer.read())
        except (OSError, HTTPException, ValueError):
            return False
        return isinstance(found, dict) and isinstance(found.get("version"), str)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = api_key(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _complete(self, request: Request, abort: threading.Event) -> Completion:
        payload = self._payload(request)
        last: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            if abort.is_set():
                raise _Aborted()
            try:
                return self._post(payload)
            except _Retryable as exc:
                last = exc
            if attempt == self.max_retries:
                break
            delay = self.backoff * 2**attempt * (1 + 0.1 * self._jitter.random())
            if last.retry_after is not None:
                delay = max(delay, min(last.retry_after, MAX_RETRY_AFTER))
            log.warning(
                "%s: %s; retry %d of %d in %.2f s", self._shown, last.reason, attempt + 1, self.max_retries, delay
            )
            if abort.wait(delay):
                raise _Aborted()
        assert last is not None
        attempts = self.max_retries + 1
        if last.unreachable:
            raise EngineError(
                f"llm.engine.base_url {_public_url(self.base_url)} is unreachable ({last.reason}) after {attempts} "
                "attempts; is the server running, and is the URL right (it usually ends in /v1)?"
            )
        raise EngineError(
            f"the server at llm.engine.base_url {_public_url(self.base_url)} kept failing ({last.reason}) "
            f"after {attempts} attempts"
        )

    def _post(self, payload: bytes) -> Completion:
        http_request = urllib.request.Request(self._endpoint, data=payload, headers=self._headers(), method="POST")
        try:
            with self._opener.open(http_request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            detail = self._error_detail(exc)
            exc.close()
            if status in RETRY_STATUS:
                raise _Retryable(f"HTTP {status}", unreachable=False, retry_after=_retry_after(exc.headers)) from None
            raise EngineError(
                f"the server at llm.engine.base_url {_public_url(self.base_url)} refused the request for model "
                f"{self.model_id!r} with HTTP {status}{detail}; check llm.engine.model, llm.sampling.max_tokens and "
                f"the API key in ${self.api_key_env}"
            ) from None
        except urllib.error.URLError as exc:
            raise _Retryable(f"{type(exc.reason).__name__}: {exc.reason}", unreachable=True) from None
        except TimeoutError:
            raise _Retryable(f"no answer within {self.timeout:g} s", unreachable=False) from None
        except (HTTPException, OSError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}", unreachable=True) from None
        except ValueError as exc:  # http.client.InvalidURL and the like
            raise ConfigError(f"llm.engine.base_url {_public_url(self.base_url)} is not a usable URL ({exc})") from None
        return self._completion(raw)

    def _completion(self, raw: bytes) -> Completion:
        try:
            answer = json.loads(raw)
            choice = answer["choices"][0]
            text = choice["message"].get("content") or ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise EngineError(
                f"the server at llm.engine.base_url {_public_url(self.base_url)} did not answer in the "
                f"chat-completions format ({type(exc).__name__}: {self._scrub(str(exc))[:QUOTE_LIMIT]})"
            ) from None
        usage = answer.get("usage") if isinstance(answer, dict) else None
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            tokens = len(text.split())
        return Completion(text=text, tokens=tokens, **_prompt_usage(usage))

    def _error_detail(self, exc: urllib.error.HTTPError) -> str:
        """The server's own error message, shortened and scrubbed of the key."""
        try:
            body = exc.read(4096).decode("utf-8", errors="replace")
        except (OSError, HTTPException):
            return ""
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = body
        message = self._scrub(str(message)).strip()
        return f": {message[:QUOTE_LIMIT]}" if message else ""

    def _scrub(self, text: str) -> str:
        key = api_key(self.api_key_env)
        return text.replace(key, "***") if key else text


def _retry_after(headers: Any) -> float | None:
    try:
        value = float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def _prompt_usage(usage: object) -> dict[str, int]:
    """Prompt tokens and, where the server reports them (vLLM's `prompt_tokens_details`), the ones it
    read from its prefix cache; zeros where the answer does not say."""
    if not isinstance(usage, dict):
        return {}
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    counts = {"prompt_tokens": prompt, "cached_tokens": cached}
    return {k: v for k, v in counts.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}
