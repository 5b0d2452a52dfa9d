"""The OpenAI-compatible HTTP backend against a local protocol test server (no model, no network).

`ProtocolTestServer` is not a language model: it speaks the chat-completions protocol on
127.0.0.1 and answers with a fake sentence derived from a hash of (messages, seed), so
that a test knows the exact answer each request must get back. It records every request
it receives and can be told to fail the first N requests, to sleep, or to reject a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from culturesim.parts.llm import Request, create_backend
from culturesim.parts.llm.base import EngineError
from culturesim.parts.llm.openai_backend import OpenAIBackend
from culturesim.schema.config import ConfigError, load_config
from culturesim.schema.llm_section import EngineSection
from culturesim.schema.sampling import Sampling
from tests.helpers import free_port

WORDS = ["amber", "basil", "cedar", "dune", "ember", "fern", "grove", "harbor", "iris", "juniper", "kelp", "moss"]
KEY_ENV = "CULTURESIM_TEST_API_KEY"
SECRET = "sk-test-Zq8xSECRETvalue41"
REJECTED_MODEL = "rejected-model"  # the server answers 400 for this model name
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def fake_sentence(messages: list[dict[str, str]], seed: int) -> str:
    """The protocol test server's deterministic answer: words picked by a hash of (messages, seed)."""
    digest = hashlib.sha256(json.dumps([messages, seed], sort_keys=True).encode()).digest()
    count = 3 + digest[0] % 6
    return " ".join(WORDS[b % len(WORDS)] for b in digest[1 : 1 + count]) + "."


class _LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops bursts of concurrent connections


class ProtocolTestServer:
    """A chat-completions protocol server for tests; it is not a model."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[dict] = []  # {"headers": {...}, "body": {...}, "time": t}
        self.fail_first = 0
        self.fail_status = 503
        self.sleep = 0.0
        self.report_usage = True
        self.malformed = False
        self.version: str | None = None  # set: GET /version answers as `vllm serve` does
        self.in_flight = 0
        self.max_in_flight = 0
        self.httpd = _LoopbackServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path == "/version" and server.version is not None:
                    self._send(200, {"version": server.version})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.received.append({"headers": dict(self.headers), "body": body, "time": time.monotonic()})
                    failing = server.fail_first > 0
                    server.fail_first -= failing
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.sleep:
                        time.sleep(server.sleep)
                    status, payload = self._answer(body, failing)
                finally:
                    with server.lock:  # before the answer goes out: the client may send its next request at once
                        server.in_flight -= 1
                self._send(status, payload)

            def _answer(self, body: dict, failing: bool) -> tuple[int, dict]:
                if self.path != "/v1/chat/completions":
                    return 404, {"error": {"message": f"no route {self.path}"}}
                if failing:
                    return server.fail_status, {"error": {"message": "try again later"}}
                if body["model"] == REJECTED_MODEL:
                    # A careless server that echoes the request's headers in its error message.
                    echo = self.headers.get("Authorization", "")
                    return 400, {"error": {"message": f"unknown model for credentials {echo}"}}
                if server.malformed:
                    return 200, {"unexpected": True}
                text = fake_sentence(body["messages"], body["seed"])
                answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
                if server.report_usage:
                    answer["usage"] = {"completion_tokens": 100 + len(text.split())}
                return 200, answer

        return Handler


@pytest.fixture()
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProtocolTestServer]:
    for name in PROXY_VARIABLES:  # a proxy setting must not route loopback traffic elsewhere
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    fake = ProtocolTestServer()
    fake.thread.start()

    def stop() -> None:
        fake.httpd.shutdown()
        fake.httpd.server_close()
        fake.thread.join(timeout=5)

    request.addfinalizer(stop)
    yield fake


def backend_for(server: ProtocolTestServer, **options) -> OpenAIBackend:
    options.setdefault("backoff", 0.02)
    options.setdefault("timeout", 5.0)
    options.setdefault("api_key_env", KEY_ENV)
    return OpenAIBackend(server.base_url, options.pop("model", "protocol-test-model"), **options)


def make_requests(n: int) -> list[Request]:
    return [
        Request(
            messages=(("system", "Retell."), ("user", f"text number {i}")),
            seed=1000 + 7 * i,
            sampling=Sampling(max_tokens=20 + i),
        )
        for i in range(n)
    ]


def expected(requests: list[Request]) -> list[str]:
    return [fake_sentence(r.chat(), r.seed) for r in requests]


# -- the protocol ----------------------------------------------------------------------------------


def test_fifty_concurrent_requests_come_back_in_order(server: ProtocolTestServer) -> None:
    server.sleep = 0.05  # long enough that requests overlap
    requests = make_requests(50)
    completions = backend_for(server, max_concurrency=16).generate(requests)
    assert [c.text for c in completions] == expected(requests)
    assert [c.tokens for c in completions] == [100 + len(t.split()) for t in expected(requests)], "usage is used"
    assert len(server.received) == 50
    assert 1 < server.max_in_flight <= 16, "requests must run concurrently, at most max_concurrency at a time"


def test_each_request_sends_its_own_seed_and_sampling_settings(server: ProtocolTestServer) -> None:
    requests = [
        Request(
            messages=(("user", "same prompt"),),
            seed=s,
            sampling=Sampling(max_tokens=16 + s, temperature=0.1 * s, top_p=0.9),
        )
        for s in range(1, 6)
    ]
    completions = backend_for(server, model="served-name").generate(requests)
    bodies = sorted((r["body"] for r in server.received), key=lambda b: b["seed"])
    assert [b["seed"] for b in bodies] == [1, 2, 3, 4, 5]
    for body, request in zip(bodies, requests):
        assert body == {
            "model": "served-name",
            "messages": [{"role": "user", "content": "same prompt"}],
            "max_tokens": request.sampling.max_tokens,
            "temperature": request.sampling.temperature,
            "top_p": 0.9,
            "seed": request.seed,
        }
    assert len({c.text for c in completions}) > 1, "different seeds, different answers"


def test_choices_are_constrained_on_a_vllm_server_only(server: ProtocolTestServer) -> None:
    """A move's options travel as vLLM's `structured_outputs` only where /version says the server is
    vLLM; another server would refuse the unknown field, so it gets the plain request."""
    moves = [Request(messages=(("user", "Which name?"),), seed=s, choices=("F", "J")) for s in range(3)]
    backend_for(server).generate(moves)
    assert [r["body"].get("structured_outputs") for r in server.received] == [None] * 3
    server.received.clear()
    server.version = "0.32.0"
    backend_for(server).generate([*moves, *make_requests(1)])
    sent = {r["body"]["seed"]: r["body"].get("structured_outputs") for r in server.received}  # in any order
    assert sent == {0: {"choice": ["F", "J"]}, 1: {"choice": ["F", "J"]}, 2: {"choice": ["F", "J"]}, 1000: None}


def test_tokens_fall_back_to_a_word_count_without_usage(server: ProtocolTestServer) -> None:
    server.report_usage = False
    requests = make_requests(3)
    completions = backend_for(server).generate(requests)
    assert [c.tokens for c in completions] == [len(t.split()) for t in expected(requests)]


def test_empty_batch_sends_nothing(server: ProtocolTestServer) -> None:
    assert backend_for(server).generate([]) == []
    assert server.received == []


# -- retries -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429, 500])
def test_transient_failures_are_retried(server: ProtocolTestServer, status: int) -> None:
    server.fail_first, server.fail_status = 5, status
    requests = make_requests(8)
    completions = backend_for(server, max_retries=3).generate(requests)
    assert [c.text for c in completions] == expected(requests)
    assert len(server.received) == 8 + 5


def test_retries_back_off_exponentially(server: ProtocolTestServer) -> None:
    server.fail_first = 3
    backoff = 0.1
    start = time.monotonic()
    [completion] = backend_for(server, max_retries=3, backoff=backoff).generate(make_requests(1))
    assert completion.text == expected(make_requests(1))[0]
    times = [r["time"] for r in server.received]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == 3
    for attempt, gap in enumerate(gaps):
        assert gap >= backoff * 2**attempt * 0.95, gaps
    assert time.monotonic() - start < 3.0


def test_persistent_server_errors_fail_after_the_retry_bound(server: ProtocolTestServer) -> None:
    server.fail_first = 10_000
    start = time.monotonic()
    with pytest.raises(EngineError, match=r"llm\.engine\.base_url .*HTTP 503.* after 3 attempts"):
        backend_for(server, max_retries=2).generate(make_requests(4))
    assert time.monotonic() - start < 5.0
    assert len(server.received) <= 4 * 3


def test_a_400_is_not_retried_and_explains_itself(server: ProtocolTestServer) -> None:
    with pytest.raises(EngineError) as info:
        backend_for(server, model=REJECTED_MODEL, max_retries=3).generate(make_requests(1))
    message = str(info.value)
    assert "HTTP 400" in message and REJECTED_MODEL in message and "llm.engine.model" in message
    assert "unknown model" in message, "the server's own explanation is quoted"
    assert len(server.received) == 1, "a 400 must not be retried"


def test_a_malformed_answer_is_a_clear_error(server: ProtocolTestServer) -> None:
    server.malformed = True
    with pytest.raises(EngineError, match="chat-completions format"):
        backend_for(server).generate(make_requests(2))


def test_a_slow_server_times_out_within_the_bound(server: ProtocolTestServer) -> None:
    server.sleep = 1.0
    start = time.monotonic()
    with pytest.raises(EngineError, match=r"no answer within 0\.2 s"):
        backend_for(server, timeout=0.2, max_retries=1).generate(make_requests(1))
    assert time.monotonic() - start < 4.0
    assert len(server.received) == 2


def test_an_unreachable_server_is_a_runtime_error_naming_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that is down is not a mistake in the study file: EngineError, never ConfigError."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAIBackend(url, "m", max_retries=2, backoff=0.05, timeout=2.0)
    start = time.monotonic()
    with pytest.raises(EngineError) as info:
        backend.generate(make_requests(20))
    assert not isinstance(info.value, ConfigError)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert "llm.engine.base_url" in message and url in message and "unreachable" in message and "3 attempts" in message
    # 3 attempts, backoff 0.05 + 0.1 (+10 % jitter): well under a second on an idle machine.
    assert 0.15 <= elapsed < 5.0, elapsed


# -- the API key -------------------------------------------------------------------------------------


def test_api_key_is_sent_but_never_shown(
    server: ProtocolTestServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    server.fail_first = 2  # so that the retry path logs
    backend = backend_for(server, max_retries=3)
    backend.generate(make_requests(2))
    assert {r["headers"].get("Authorization") for r in server.received} == {f"Bearer {SECRET}"}

    rejecting = backend_for(server, model=REJECTED_MODEL)
    with pytest.raises(EngineError) as info:
        rejecting.generate(make_requests(1))
    assert "HTTP 400" in str(info.value)

    dead = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m", api_key_env=KEY_ENV, max_retries=1, backoff=0.01)
    with pytest.raises(EngineError) as unreachable:
        dead.generate(make_requests(1))

    assert caplog.records, "retries should have been logged"
    shown = [repr(backend), str(backend), repr(rejecting), str(info.value), repr(info.value), str(unreachable.value)]
    shown += [record.getMessage() for record in caplog.records] + [caplog.text]
    shown += [
        backend.engine_version,
        EngineSection(backend="openai", base_url=server.base_url, model="m").model_dump_json(),
    ]
    for text in shown:
        assert SECRET not in text, text
    assert SECRET.encode() not in pickle.dumps(backend), "the key must not be stored on the backend"
    assert KEY_ENV in repr(backend), "repr names the variable, not its value"


def test_no_authorization_header_without_a_key(server: ProtocolTestServer) -> None:
    backend_for(server).generate(make_requests(1))
    assert "Authorization" not in server.received[0]["headers"]


def test_credentials_in_the_url_are_not_shown() -> None:
    backend = OpenAIBackend("https://user:hunter2@example.invalid/v1?token=abc", "m")
    assert "hunter2" not in repr(backend) and "hunter2" not in backend.engine_version
    assert "token=abc" not in repr(backend)


# -- configuration -----------------------------------------------------------------------------------


def test_create_backend_builds_the_http_backend(server: ProtocolTestServer) -> None:
    spec = EngineSection(backend="openai", base_url=server.base_url + "/", model="served-name", api_key_env=KEY_ENV)
    backend = create_backend(spec)
    assert isinstance(backend, OpenAIBackend)
    assert backend.model_id == "served-name"
    assert backend.engine_version == f"openai-compatible {server.base_url}"
    requests = make_requests(3)
    assert [c.text for c in backend.generate(requests)] == expected(requests)
    backend.close()


@pytest.mark.parametrize(
    ("llm", "detail"),
    [
        ('backend = "openai"\nmodel = "m"\n', "llm.engine.base_url"),
        ('backend = "openai"\nmodel = "m"\nbase_url = "localhost:8000/v1"\n', "llm.engine.base_url"),
        ('backend = "openai"\nbase_url = "http://localhost:8000/v1"\n', "llm.engine.model"),
        ('backend = "openai"\nmodel = "m"\nbase_url = 8000\n', "llm.engine.base_url"),
        ('backend = "openai"\nmodel = "m"\nbase_url = "http://h/v1"\napi_key_env = ""\n', "llm.engine.api_key_env"),
    ],
    ids=["no-url", "no-scheme", "builtin-model", "url-not-string", "empty-key-env"],
)
def test_study_file_validation(tmp_path: Path, llm: str, detail: str) -> None:
    path = tmp_path / "study.toml"
    path.write_text(f'[study]\nname = "t"\n\n[llm.engine]\n{llm}', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and detail in str(info.value)


def test_study_file_with_a_server_loads_and_unset_server_fields_stay_out(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text(
        '[study]\nname = "t"\n\n[llm.engine]\nbackend = "openai"\nmodel = "Qwen/Qwen2.5-7B-Instruct"\n'
        'base_url = "http://gpu-box:8000/v1"\napi_key_env = "MY_KEY"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    engine = config.llm.engine
    assert engine.base_url == "http://gpu-box:8000/v1" and engine.api_key_env == "MY_KEY"
    assert config.model_dump()["llm"]["engine"]["base_url"] == "http://gpu-box:8000/v1"
    default = EngineSection().model_dump()
    assert "base_url" not in default and "api_key_env" not in default, "unset server fields stay out of study hashes"
