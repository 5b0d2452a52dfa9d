"""The completion log and completion sources, with a scripted engine (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from culturesim.parts.llm.base import Completion, Request, retry_seed
from culturesim.simulation.completions import (
    CompletionLog,
    CompletionSource,
    EngineIdentity,
    MissingCompletion,
    Origin,
    answer_with_retries,
)

ENGINE = EngineIdentity("vllm", "builtin:smollm2-135m", "float32", 64, device="cpu")


class Scripted:
    """Answers with `text(request)`; records every call."""

    model_id, engine_version = "scripted", "scripted 1"

    def __init__(self, text=lambda r: f"Answer to seed {r.seed}.") -> None:
        self.text = text
        self.calls: list[list[Request]] = []

    def generate(self, requests):
        self.calls.append(list(requests))
        return [Completion(self.text(r), 4) for r in requests]

    def close(self) -> None:
        pass


def requests(n: int, *, seed0: int = 100) -> tuple[list[Request], list[Origin]]:
    asked = [Request(messages=(("system", "S"), ("user", f"Prompt {i}")), seed=seed0 + i) for i in range(n)]
    return asked, [Origin("c0-r0", 1, i) for i in range(n)]


def source(folder: Path, engine=None, identity: EngineIdentity = ENGINE) -> CompletionSource:
    log = CompletionLog(folder)
    return CompletionSource(
        engine=identity,
        known=log.load(),
        log=log,
        log_name="c0-r0",
        start_engine=None if engine is None else (lambda: engine),
    )


def test_every_engine_call_is_logged_with_the_exact_request(tmp_path: Path) -> None:
    engine = Scripted()
    asked, origins = requests(3)
    answers = source(tmp_path, engine).answer(asked, origins, attempt=0)
    assert [a.text for a in answers] == ["Answer to seed 100.", "Answer to seed 101.", "Answer to seed 102."]
    lines = [json.loads(x) for x in (tmp_path / "c0-r0.jsonl").read_text().splitlines()]
    assert lines[-1] == {"commit": 3}
    first = lines[0]
    assert first["seed"] == 100 and first["system"] == "S" and first["user"] == "Prompt 0"
    assert (first["temperature"], first["top_p"], first["max_tokens"]) == (0.8, 0.95, 48)
    assert (first["backend"], first["model"], first["dtype"], first["device"], first["engine_version"]) == (
        "vllm",
        "builtin:smollm2-135m",
        "float32",
        "cpu",
        "scripted 1",
    )
    assert first["request_key"] == asked[0].key() and first["engine_key"] == ENGINE.key()
    assert (first["run_id"], first["generation"], first["agent"], first["attempt"]) == ("c0-r0", 1, 0, 0)


def test_a_second_source_answers_from_the_log_with_no_engine_call(tmp_path: Path) -> None:
    asked, origins = requests(4)
    first = source(tmp_path, Scripted()).answer(asked, origins, attempt=0)
    engine = Scripted()
    again = source(tmp_path, engine)
    assert again.answer(asked, origins, attempt=0) == first
    assert engine.calls == [] and again.counters.from_log == 4 and again.counters.engine_calls == 0
    more, more_origins = requests(2, seed0=500)
    again.answer(asked[:1] + more, origins[:1] + more_origins, attempt=0)
    assert [len(c) for c in engine.calls] == [2], "only what the log lacks goes to the engine"


def test_a_replay_names_the_first_request_the_log_lacks(tmp_path: Path) -> None:
    asked, origins = requests(3)
    source(tmp_path, Scripted()).answer(asked[:2], origins[:2], attempt=0)
    with pytest.raises(MissingCompletion, match="run c0-r0, generation 1, agent 2 \\(attempt 0"):
        source(tmp_path).answer(asked, origins, attempt=0)


def test_two_engines_never_share_an_answer(tmp_path: Path) -> None:
    asked, origins = requests(2)
    source(tmp_path, Scripted()).answer(asked, origins, attempt=0)
    bf16 = EngineIdentity("vllm", "builtin:smollm2-135m", "bfloat16", 64, device="cpu")
    engine = Scripted(lambda r: "bf16 answer.")
    answers = source(tmp_path, engine, bf16).answer(asked, origins, attempt=0)
    assert [a.text for a in answers] == ["bf16 answer."] * 2 and len(engine.calls) == 1
    keys = {json.loads(x).get("engine_key") for x in (tmp_path / "c0-r0.jsonl").read_text().splitlines()}
    assert keys - {None} == {ENGINE.key(), bf16.key()}


def test_a_torn_tail_is_ignored_and_cut_before_the_next_append(tmp_path: Path) -> None:
    asked, origins = requests(3)
    source(tmp_path, Scripted()).answer(asked[:2], origins[:2], attempt=0)
    path = tmp_path / "c0-r0.jsonl"
    whole = path.read_bytes()
    with open(path, "ab") as handle:  # a killed writer: entries of a call without its commit, half a line
        handle.write(whole.splitlines(keepends=True)[0] + b'{"agent": 7, "compl')
    log = CompletionLog(tmp_path)
    assert len(log.load()) == 2
    engine = Scripted()
    source(tmp_path, engine).answer(asked, origins, attempt=0)
    assert [len(c) for c in engine.calls] == [1]
    assert path.read_bytes().startswith(whole) and len(CompletionLog(tmp_path).load()) == 3
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_retries_use_new_seeds_and_report_the_seed_that_wrote_the_text(tmp_path: Path) -> None:
    asked, origins = requests(3)
    bad_seed = asked[1].seed
    engine = Scripted(lambda r: "   " if r.seed == bad_seed else f"Text {r.seed}.")
    src = source(tmp_path, engine)
    used, answers, adoptions, attempts = answer_with_retries(src, asked, origins, max_chars=[280] * 3, retries=[2] * 3)
    assert attempts == [1, 2, 1]
    assert used[1].seed == retry_seed(bad_seed, 1) != bad_seed
    assert answers[1].text == adoptions[1].text == f"Text {retry_seed(bad_seed, 1)}."
    assert all(a.usable for a in adoptions)
    assert [len(c) for c in engine.calls] == [3, 1]
    attempts_logged = [json.loads(x).get("attempt") for x in (tmp_path / "c0-r0.jsonl").read_text().splitlines()]
    assert attempts_logged == [0, 0, 0, None, 1, None]


def test_a_request_still_unusable_after_its_retries_keeps_the_last_answer(tmp_path: Path) -> None:
    asked, origins = requests(2)
    engine = Scripted(lambda r: "")
    used, answers, adoptions, attempts = answer_with_retries(
        source(tmp_path, engine), asked, origins, max_chars=[280, 280], retries=[1, 0]
    )
    assert attempts == [2, 1] and [a.text for a in answers] == ["", ""]
    assert [(a.text, a.usable) for a in adoptions] == [("", False), ("", False)]
    assert used[1] == asked[1]


def test_a_move_naming_several_options_is_asked_again_and_logged_with_its_choices(tmp_path: Path) -> None:
    """Engines without constrained decoding (transformers, an OpenAI server) answer a coordination move in
    free text: it counts only when it names exactly one option, and is retried with a new seed otherwise."""
    asked = [Request(messages=(("user", "Which name?"),), seed=5, choices=("F", "Z"))]
    first = asked[0].seed
    engine = Scripted(lambda r: "F or Z, hard to say" if r.seed == first else "I pick Z.")
    src = source(tmp_path, engine)
    _, answers, adoptions, attempts = answer_with_retries(
        src, asked, [Origin("c0-r0", 1, 0)], max_chars=[280], retries=[1]
    )
    assert (
        attempts == [2] and answers[0].text == "I pick Z." and (adoptions[0].text, adoptions[0].usable) == ("Z", True)
    )
    logged = [json.loads(x) for x in (tmp_path / "c0-r0.jsonl").read_text().splitlines() if "choices" in x]
    assert [entry["choices"] for entry in logged] == [["F", "Z"], ["F", "Z"]]
