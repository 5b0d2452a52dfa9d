"""The progress display (culturesim.core.progress) and the quiet start-up (culturesim.core.quiet): what a
newcomer sees while a study calibrates, starts its engine and runs, with and without a terminal."""

from __future__ import annotations

import io
import logging
import os
import sys
import time
import warnings

import numpy as np
import pytest

from culturesim.calibration import attractor
from culturesim.calibration.chains import run_chains
from culturesim.core.progress import (
    RUN_GENERATIONS,
    PlainReporter,
    Reporter,
    RichReporter,
    clock_text,
    duration,
    progress_display,
)
from culturesim.core.quiet import muted_stderr, quiet_third_party
from culturesim.parts.llm.base import Completion
from culturesim.schema.config import StudyConfig


class FakeClock:
    """A clock the test moves by hand, in seconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """An engine that retells each text with its seed: deterministic, instant."""

    model_id = "scripted"

    def generate(self, requests):
        return [Completion(text=f"A retold story number {r.seed % 997}.", tokens=6) for r in requests]

    def close(self):
        pass


class HashVectors:
    """Unit vectors from a hash of each text (the calibration only calls `embed`)."""

    def embed(self, texts):
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=8) for t in texts]
        return np.asarray(rows, dtype=np.float32)


def test_plain_lines_at_phase_changes_and_at_least_every_interval() -> None:
    clock, stream = FakeClock(), io.StringIO()
    reporter = PlainReporter(stream, interval=30, clock=clock, heartbeat=False)
    reporter.phase("calibrating attractor rewrite", total=10, unit="generation", done=0)
    clock.now += 20
    reporter.update(1)  # 20 s since the last line: nothing yet
    clock.now += 131
    reporter.update(4)
    reporter.tick()  # just printed: nothing
    with reporter.engine_start("vllm/builtin:smollm2-135m"):
        clock.now += 45
        reporter.tick()  # no update for 45 s: the heartbeat line
    reporter.phase(RUN_GENERATIONS, total=480, done=0)
    clock.now += 60
    reporter.advance(120)  # the first step after 60 s: 60 s since the last line
    clock.now += 10
    reporter.advance(360)
    reporter.close()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[culturesim 00:00] calibrating attractor rewrite: generation 0/10",
        "[culturesim 02:31] calibrating attractor rewrite: generation 4/10, ~4 min left",
        "[culturesim 02:31] starting engine vllm/builtin:smollm2-135m (0 s so far)",
        "[culturesim 03:16] starting engine vllm/builtin:smollm2-135m (45 s so far)",
        "[culturesim 03:16] starting engine vllm/builtin:smollm2-135m: done in 45 s",
        "[culturesim 03:16] calibrating attractor rewrite: generation 4/10, ~4 min left",
        "[culturesim 03:16] run-generations 0/480 (0 %)",
        "[culturesim 04:16] run-generations 120/480 (25 %), ~3 min left",
        "[culturesim 04:26] run-generations 480/480 (100 %), done in 70 s",
    ]


def test_a_resumed_phase_keeps_its_count_and_its_pace() -> None:
    """Run-generations are left for the next engine group's calibration and resumed; a resume starts
    from the finished runs' count and extrapolates from this session's pace only."""
    clock = FakeClock()
    reporter = Reporter(clock=clock)
    reporter.phase(RUN_GENERATIONS, total=100, done=40)
    clock.now += 30
    reporter.advance(10)
    reporter.phase("calibrating attractor create", total=2, unit="generation", done=0)
    clock.now += 500  # not run-generations time
    reporter.update(2)
    reporter.phase(RUN_GENERATIONS)
    phase = reporter.current
    assert (phase.done, phase.total, phase.first_done) == (50, 100, 40)
    assert phase.remaining(clock()) == pytest.approx(30 / 10 * 50)


def test_heartbeat_prints_while_nothing_moves() -> None:
    """With the real clock and a short interval: an engine start that reports nothing still gets lines."""
    stream = io.StringIO()
    with PlainReporter(stream, interval=0.05) as reporter:
        reporter.phase("starting engine vllm/x")
        time.sleep(0.4)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3, lines
    assert all(line.startswith("[culturesim 00:00] starting engine vllm/x") for line in lines)


def test_a_pipe_gets_plain_lines_and_a_terminal_gets_bars() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with progress_display(io.StringIO()) as plain:
        assert isinstance(plain, PlainReporter)
    terminal = Terminal()
    with progress_display(terminal) as bars:
        assert isinstance(bars, RichReporter)
        bars.phase("calibrating attractor rewrite", total=3, unit="generation", done=0)
        bars.update(3)
        with bars.engine_start("vllm/m"):
            pass
        bars.phase(RUN_GENERATIONS, total=8, done=0)
        bars.advance(8)
    drawn = terminal.getvalue()
    assert "calibrating attractor rewrite" in drawn and "starting engine vllm/m" in drawn
    assert "run-generations" in drawn and "8/8" in drawn


def test_readable_times() -> None:
    assert [duration(s) for s in (0.4, 45, 89, 150, 3000, 7500)] == ["0 s", "45 s", "89 s", "2 min", "50 min",
                                                                    "2 h 5 min"]  # fmt: skip
    assert clock_text(151) == "02:31" and clock_text(3723) == "1:02:03"


def test_an_engine_start_holds_back_chatter_but_not_errors(capsys) -> None:
    reporter = Reporter(quiet=True)
    with reporter.engine_start("vllm/m"):
        print("Loading safetensors checkpoint shards: 100% Completed | 1/1", file=sys.stderr)
        sys.stderr.write("Loading weights:   0%\rLoading weights: 100%\n")
        print("ERROR 12-05 [core.py] the engine ran out of memory", file=sys.stderr)
    captured = capsys.readouterr()
    assert captured.err == "ERROR 12-05 [core.py] the engine ran out of memory\n"
    loud = Reporter(quiet=False)
    with loud.engine_start("vllm/m"):
        print("Loading weights: 100%", file=sys.stderr)
    assert capsys.readouterr().err == "Loading weights: 100%\n"


def test_a_failed_engine_start_shows_what_was_held_back(capsys) -> None:
    with pytest.raises(RuntimeError, match="no KV cache"), muted_stderr():
        print("Loading weights: 100%", file=sys.stderr)
        print("warming up the model", file=sys.stderr)
        raise RuntimeError("no KV cache")
    err = capsys.readouterr().err
    assert "output held back while the engine started" in err and "warming up the model" in err


def test_quiet_hides_third_party_warnings_and_logs_then_restores_everything(monkeypatch) -> None:
    monkeypatch.delenv("VLLM_LOGGING_LEVEL", raising=False)
    monkeypatch.setenv("TORCH_CPP_LOG_LEVEL", "INFO")  # a user's own value wins
    torch_logger = logging.getLogger("torch")
    level = torch_logger.level
    third_party = {"__name__": "vllm.triton_utils.dispatcher"}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_third_party():
            assert os.environ["VLLM_LOGGING_LEVEL"] == "ERROR"
            assert os.environ["TORCH_CPP_LOG_LEVEL"] == "INFO"
            assert torch_logger.level == logging.ERROR
            exec("import warnings; warnings.warn('reduce_op is deprecated', FutureWarning)", third_party)
            exec("import warnings; warnings.warn('a culturesim warning', UserWarning)", {"__name__": "culturesim.x"})
        assert [str(w.message) for w in seen] == ["a culturesim warning"]
        with quiet_third_party(enabled=False):  # --verbose
            exec("import warnings; warnings.warn('reduce_op is deprecated', FutureWarning)", third_party)
        assert len(seen) == 2
    assert "VLLM_LOGGING_LEVEL" not in os.environ and torch_logger.level == level


def test_calibration_reports_each_generation_and_computes_the_same_record() -> None:
    condition = StudyConfig.model_validate(
        {"study": {"name": "c"}, "population": {"llm_share": 0.5}, "attractor": {"chains": 3, "generations": 4}}
    )
    texts = ["A fox crossed the river.", "The baker lost her keys.", "Rain came early that year.", "A kite."]
    spec = attractor.calibration_spec(condition, texts)
    seen: list[int] = []
    reported = attractor.calibrate(spec, Scripted(), HashVectors(), texts, on_generation=seen.append)
    silent = attractor.calibrate(spec, Scripted(), HashVectors(), texts)
    assert seen == [1, 2, 3, 4]
    for record in (reported, silent):
        del record["seconds"], record["created"]
    assert reported == silent
    history, _ = run_chains(Scripted(), texts, generations=2, on_generation=seen.append)
    assert seen[-2:] == [1, 2] and history == run_chains(Scripted(), texts, generations=2)[0]
