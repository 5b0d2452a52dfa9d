"""One progress display for everything a study waits on: calibration, engine start, run-generations.

A study spends its first minutes calibrating the attractor (20 chains x 10 generations) and
starting the LLM engine, then runs its generations. A newcomer should see each of these as it
happens, with a time they can trust, and nothing else. The runner, the calibration and the
engines report to one `Reporter` in *phases*:

    calibrating attractor <role>: generation g/G
    starting engine <backend/model>
    run-generations n/N

`Reporter` itself draws nothing (the library default); `RichReporter` draws rich bars on a
terminal; `PlainReporter` prints one plain line at every phase change and at least every
`interval` seconds (30 by default) for a log file, CI or nohup, where a redrawn bar shows
nothing until it ends. `progress_display` picks one for a stream. A reporter only counts and
draws: it never changes what a study computes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column

from culturesim.core.quiet import muted_stderr

HEARTBEAT_S = 30.0  # longest silence of a plain display, seconds
BAR_WIDTH = 12  # characters: bar and elapsed time leave 60 of 80 columns to the text
RUN_GENERATIONS = "run-generations"

Clock = Callable[[], float]  # seconds, monotonic


@dataclass
class Phase:
    """One thing being waited on: `done` of `total` steps (total None: no steps, e.g. an engine start).

    `seconds` is the time spent in the phase so far over all its visits (a study's run-generations
    phase is left for the next engine group's calibration and resumed), and `first_done` the count
    it started from (a resume starts with finished runs counted), so the remaining time is
    extrapolated from this session's own pace only."""

    label: str
    total: int | None = None
    unit: str = ""  # the name of one step, e.g. "generation"; "" shows n/N (p %)
    done: int = 0
    first_done: int = 0
    seconds: float = 0.0
    entered: float | None = None  # clock reading when the phase was last entered; None while left

    def elapsed(self, now: float) -> float:
        """Seconds spent in this phase, counting the current visit."""
        return self.seconds + (now - self.entered if self.entered is not None else 0.0)

    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total

    def remaining(self, now: float) -> float | None:
        """Seconds left at this session's pace so far, or None before the first step."""
        steps = self.done - self.first_done
        if self.total is None or steps <= 0 or self.done >= self.total:
            return None
        return self.elapsed(now) / steps * (self.total - self.done)

    def count(self) -> str:
        """'generation 4/10', '120/480 (25 %)' or '' for a phase without steps."""
        if self.total is None:
            return ""
        if self.unit:
            return f"{self.unit} {self.done}/{self.total}"
        percent = 100 * self.done // self.total if self.total else 100
        return f"{self.done}/{self.total} ({percent} %)"

    def describe(self, now: float, *, times: bool = True) -> str:
        """The phase as one line of text, e.g. 'run-generations 120/480 (25 %), ~3 min left';
        `times=False` leaves out the time spent (a display with its own elapsed-time column)."""
        if self.total is None:
            return f"{self.label} ({duration(self.elapsed(now))} so far)" if times else self.label
        text = f"{self.label}: {self.count()}" if self.unit else f"{self.label} {self.count()}"
        left = self.remaining(now)
        if left is not None:
            text += f", ~{duration(left)} left"
        elif self.finished() and times:
            text += f", done in {duration(self.elapsed(now))}"
        return text


def duration(seconds: float) -> str:
    """A rounded, readable duration: '45 s', '3 min', '2 h 5 min'."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def clock_text(seconds: float) -> str:
    """Elapsed time as mm:ss, or h:mm:ss from an hour on."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class Reporter:
    """Counts the phases of a study and draws nothing; subclasses draw (`_show`).

    `quiet`: while an engine starts, third-party chatter on Python's stderr (progress bars of
    weight loading, printed warnings) is held back, and shown only if the start fails, or
    line by line where it reports an error (see `culturesim.core.quiet.muted_stderr`).
    Methods are called from one thread (the runner's); drawing may happen on another."""

    def __init__(self, *, quiet: bool = False, clock: Clock = time.monotonic) -> None:
        self.quiet = quiet
        self.clock = clock
        self.started = clock()
        self.phases: dict[str, Phase] = {}
        self.current: Phase | None = None
        self._lock = threading.RLock()

    # -- what the runner, the calibration and the engines call ---------------------------------------
    def phase(self, label: str, *, total: int | None = None, unit: str = "", done: int | None = None) -> None:
        """Enter the phase `label` (created on first use). A phase entered again keeps its count
        unless `done` is given; `total` and `unit` are updated when given."""
        with self._lock:
            now = self.clock()
            if self.current is not None and self.current.label != label:
                self._leave(self.current, now)
            known = self.phases.get(label)
            phase = known if known is not None and done is None else Phase(label, unit=unit)
            if done is not None:
                phase.done = phase.first_done = done
            if total is not None:
                phase.total = total
            if unit:
                phase.unit = unit
            switched = self.current is not phase
            if phase.entered is None:
                phase.entered = now
            self.phases[label] = self.current = phase
            self._show(phase, switched=switched or done is not None)

    def update(self, done: int) -> None:
        """The current phase has completed `done` steps in all."""
        with self._lock:
            if self.current is not None:
                self.current.done = done
                self._show(self.current, switched=False)

    def advance(self, steps: int = 1) -> None:
        """The current phase has completed `steps` more steps."""
        with self._lock:
            if self.current is not None:
                self.update(self.current.done + steps)

    @contextmanager
    def engine_start(self, name: str) -> Iterator[None]:
        """A phase 'starting engine <name>' around an engine start, then back to the phase before.

        With `quiet`, Python-level stderr written meanwhile is held back (`muted_stderr`)."""
        before = self.current
        self.phase(f"starting engine {name}", done=0)
        with muted_stderr() if self.quiet else nullcontext():
            yield
        with self._lock:
            started = self.current
            if started is not None and started.label == f"starting engine {name}":
                self._leave(started, self.clock(), ended=True)
                self.current = None
            if before is not None:
                self.phase(before.label)

    def close(self) -> None:
        """Stop drawing (the display stays on screen)."""

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- drawing ----------------------------------------------------------------------------------------------
    def line(self, phase: Phase | None = None) -> str:
        """The plain progress line for `phase` (default: the current one)."""
        now = self.clock()
        phase = phase or self.current
        text = "starting" if phase is None else phase.describe(now)
        return f"[culturesim {clock_text(now - self.started)}] {text}"

    def _leave(self, phase: Phase, now: float, *, ended: bool = False) -> None:
        if phase.entered is not None:
            phase.seconds += now - phase.entered
            phase.entered = None
        self._left(phase, ended=ended or phase.finished())

    def _show(self, phase: Phase, *, switched: bool) -> None:
        """Draw `phase` after a change (`switched`: it was just entered or reset)."""

    def _left(self, phase: Phase, *, ended: bool) -> None:
        """`phase` is no longer the current one (`ended`: it will not come back)."""


class PlainReporter(Reporter):
    """One plain line per phase change and at least every `interval` seconds, for a log, CI or nohup.

    A daemon thread prints the current line when nothing else has for `interval` seconds (an
    engine start or one long generation can take minutes); `heartbeat=False` leaves it out, for
    tests that drive the clock themselves and call `tick`."""

    def __init__(
        self,
        stream: IO[str],
        *,
        interval: float = HEARTBEAT_S,
        quiet: bool = False,
        clock: Clock = time.monotonic,
        heartbeat: bool = True,
    ) -> None:
        super().__init__(quiet=quiet, clock=clock)
        self.stream, self.interval = stream, interval
        self._printed = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if heartbeat:
            self._thread = threading.Thread(target=self._beat, name="culturesim-progress", daemon=True)
            self._thread.start()

    def tick(self) -> None:
        """Print the current line if nothing has been printed for `interval` seconds."""
        with self._lock:
            if self.current is not None and self.clock() - self._printed >= self.interval:
                self._print(self.current)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval / 4)):
            self.tick()

    def _print(self, phase: Phase) -> None:
        self._printed = self.clock()
        try:
            self.stream.write(self.line(phase) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head) must not stop the study
            pass

    def _show(self, phase: Phase, *, switched: bool) -> None:
        if switched or phase.finished() or self.clock() - self._printed >= self.interval:
            self._print(phase)

    def _left(self, phase: Phase, *, ended: bool) -> None:
        if ended and phase.total is None:  # an engine start has no steps: say when it is over
            self._print_text(f"{phase.label}: done in {duration(phase.seconds)}")

    def _print_text(self, text: str) -> None:
        self._printed = self.clock()
        try:
            self.stream.write(f"[culturesim {clock_text(self.clock() - self.started)}] {text}\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass


class RichReporter(Reporter):
    """Rich bars on a terminal: one line per phase (a finished one stays, with its time), the bar and
    the time first and the plain line's text after them, so that 80 columns show all of it."""

    def __init__(self, console: Console, *, quiet: bool = False, clock: Clock = time.monotonic) -> None:
        super().__init__(quiet=quiet, clock=clock)
        columns = (
            BarColumn(bar_width=BAR_WIDTH),
            TimeElapsedColumn(),
            TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis")),
        )
        self.progress = Progress(*columns, console=console)
        self._tasks: dict[str, TaskID] = {}
        self.progress.start()

    def close(self) -> None:
        self.progress.stop()

    def _show(self, phase: Phase, *, switched: bool) -> None:
        task = self._tasks.get(phase.label)
        if task is None or (switched and self._task(task).finished):
            task = self.progress.add_task(phase.label, total=phase.total)
            self._tasks[phase.label] = task
        text = phase.describe(self.clock(), times=False)
        self.progress.update(task, total=phase.total, completed=phase.done, description=text)

    def _task(self, task: TaskID):
        return next(t for t in self.progress.tasks if t.id == task)

    def _left(self, phase: Phase, *, ended: bool) -> None:
        task = self._tasks.get(phase.label)
        if task is None or not ended:
            return
        if phase.total is None:  # a start without steps: show it full once over
            self.progress.update(task, total=1, completed=1)
        self.progress.update(task, description=phase.describe(self.clock(), times=False))
        self.progress.stop_task(task)


def progress_display(stream: IO[str], *, quiet: bool = False, interval: float = HEARTBEAT_S) -> Reporter:
    """Rich bars where `stream` is a terminal, plain lines every `interval` seconds elsewhere
    (a file, a pipe, CI: rich's own terminal detection decides). Use it as a context manager."""
    console = Console(file=stream)
    if console.is_terminal:
        return RichReporter(console, quiet=quiet)
    return PlainReporter(stream, interval=interval, quiet=quiet)
