"""Keep the start-up chatter of vLLM, torch and transformers off the screen, never their errors.

Starting an engine prints dozens of lines a newcomer cannot act on: vLLM's WARNING records
(`... skip it`, `libtcmalloc is not found in LD_PRELOAD`), torch's C++ and Python warnings,
FutureWarnings from inside vLLM, weight-loading progress bars. They bury the progress display
and read like failures. A command run without `--verbose` therefore

* sets quiet defaults for the variables these libraries read when they are imported or start
  (`culturesim.core.settings.quiet_defaults`: VLLM_LOGGING_LEVEL=ERROR, TORCH_CPP_LOG_LEVEL=ERROR for
  torch's C++ warnings, which no Python setting reaches, ...); a user's own values win, and worker
  processes started meanwhile inherit them;
* lowers the Python loggers of those libraries to ERROR (for a library imported before);
* ignores FutureWarning, UserWarning and DeprecationWarning raised from any module outside
  culturesim;

and an engine start holds back what is written to Python's stderr (weight-loading bars),
showing it only if the start fails (`muted_stderr`). ERROR records, exceptions and lines that
name an error still show.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from culturesim.core.settings import environment_defaults, quiet_defaults

THIRD_PARTY_LOGGERS = ("vllm", "transformers", "torch", "sentence_transformers", "huggingface_hub", "filelock")
QUIET_WARNINGS = (FutureWarning, UserWarning, DeprecationWarning)
NOT_CULTURESIM = r"(?!culturesim(\.|$))"  # a warning's module, as `warnings` matches it
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|FATAL|Error|Exception|Traceback)\b")
HELD_LINES = 200  # lines of held-back output shown when an engine start fails


@contextmanager
def quiet_third_party(enabled: bool = True) -> Iterator[None]:
    """Inside the block (a command's body), third-party warnings and log records below ERROR are
    hidden; afterwards, the environment, the loggers and the warning filters are as they were.
    `enabled=False` (`--verbose`) changes nothing."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(name) for name in THIRD_PARTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    with environment_defaults(quiet_defaults()), warnings.catch_warnings():
        for category in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", category=category, module=NOT_CULTURESIM)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


class HeldLines(io.TextIOBase):
    """A stand-in for sys.stderr that keeps the last `keep` lines and passes on only error lines.

    A progress bar redrawn with carriage returns counts as one line, its last drawing."""

    def __init__(self, out: IO[str], *, keep: int = HELD_LINES) -> None:
        self.out = out
        self.lines: deque[str] = deque(maxlen=keep)
        self._pending = ""

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.out, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            self._line(line)
        self._pending = self._pending[-10_000:]  # a bar redrawn without newlines stays bounded
        return len(text)

    def finish(self) -> None:
        """Take the unfinished last line as a line."""
        if self._pending:
            self._line(self._pending)
            self._pending = ""

    def _line(self, line: str) -> None:
        shown = line.rsplit("\r", 1)[-1].rstrip()
        if not shown:
            return
        self.lines.append(shown)
        if ERROR_LINE.search(shown):
            self.out.write(shown + "\n")
            self.out.flush()


@contextmanager
def muted_stderr() -> Iterator[HeldLines]:
    """Hold back what Python code writes to sys.stderr inside the block; if the block raises,
    write the held lines to the real stderr first, so the cause of a failed start is seen.

    Only Python-level writes are held (tqdm bars, printed warnings, print to stderr); output of
    C code and of child processes is kept down by `quiet_defaults` instead."""
    real = sys.stderr
    held = HeldLines(real)
    sys.stderr = held
    try:
        yield held
    except BaseException:
        sys.stderr = real
        held.finish()
        if held.lines:
            real.write("output held back while the engine started:\n" + "\n".join(held.lines) + "\n")
            real.flush()
        raise
    finally:
        sys.stderr = real
