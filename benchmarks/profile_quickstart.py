"""Where the quickstart's time goes: cProfile of one full run, grouped by engine phase.

Each phase is the cumulative time of one function of the package, found by its code object, so a
renamed or moved function fails here at import instead of reading as zero seconds.

Run: .venv/bin/python benchmarks/profile_quickstart.py [studies/quickstart.toml] [--smoke] [--out FOLDER]
(--smoke: the study's toy version, `StudyConfig.toy`.)
"""

from __future__ import annotations

import cProfile
import inspect
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import parse, parser, report  # noqa: E402

from culturesim.core.settings import NO_DISK_CACHE_ENV, environment_defaults  # noqa: E402
from culturesim.parts.embed import Embedder  # noqa: E402
from culturesim.parts.llm import Backend  # noqa: E402
from culturesim.schema.config import load_config  # noqa: E402
from culturesim.simulation.completions import CompletionSource  # noqa: E402
from culturesim.simulation.generation import _embed_pending  # noqa: E402
from culturesim.simulation.model import CultureModel  # noqa: E402
from culturesim.study.batch import _build_models  # noqa: E402
from culturesim.study.executors import GroupEngines  # noqa: E402
from culturesim.study.runner import StudyRunner  # noqa: E402
from culturesim.study.tables import combine_runs, write_run  # noqa: E402

QUICKSTART = Path(__file__).parents[1] / "studies" / "quickstart.toml"
PHASES: dict[str, Callable[..., object]] = {
    "LLM engine start (vLLM)": GroupEngines.backend,
    "embedder load": GroupEngines.embedder,
    "LLM generation (all lockstep calls)": CompletionSource._ask_engine,
    "embedding new texts": _embed_pending,
    "human learning + requests (plan)": CultureModel.plan,
    "new traits, turnover (step)": CultureModel.step,
    "metrics (record)": CultureModel.record,
    "model setup (network, seed culture)": _build_models,
    "writing run tables": write_run,
    "combining tables": combine_runs,
}
COLUMNS = {
    "phase": "a phase of the run (the last row: the whole run)",
    "calls": "calls of the phase's function (0: the run never entered it)",
    "seconds": "cumulative wall seconds inside the phase's function",
    "share": "seconds / the run's wall seconds",
}


def profile_key(function: Callable[..., object]) -> tuple[str, int, str]:
    """The (file, first line, name) under which cProfile records `function`."""
    code = inspect.unwrap(function).__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def main(
    argv: Sequence[str] | None = None, *, embedder: Embedder | None = None, backend: Backend | None = None
) -> Path:
    """Profile the study and write the table; returns the JSON's path. `embedder`, `backend`: already
    started engines for the runner to use (their start then costs nothing here, and the embedder may
    answer from its memory cache)."""
    options = parser(__doc__)
    options.add_argument("study", type=Path, nargs="?", default=QUICKSTART)
    args = parse(options, argv, smoke={})
    config = load_config(args.study)
    if args.smoke:
        config = config.toy()
    runner = StudyRunner(embedder=embedder, backend=backend)
    profile = cProfile.Profile()
    start = time.perf_counter()
    # Without the disk cache every text reaches the embedder, as on a first run.
    with tempfile.TemporaryDirectory() as out, environment_defaults({NO_DISK_CACHE_ENV: "1"}):
        profile.enable()
        runner.run(config, out_root=Path(out), toy=args.smoke)
        profile.disable()
    total = time.perf_counter() - start
    runner.close()
    stats = pstats.Stats(profile).stats
    rows = []
    for phase, function in PHASES.items():
        # (primitive calls, calls, own seconds, cumulative seconds, callers); a phase never entered has none
        _, calls, _, seconds, _ = stats.get(profile_key(function), (0, 0, 0.0, 0.0, {}))
        rows.append({"phase": phase, "calls": calls, "seconds": seconds, "share": seconds / total})
    rows.append({"phase": "total wall time", "calls": 1, "seconds": total, "share": 1.0})
    title = f"profile of {args.study.name} ({config.study.replicates} replicates)"
    return report("profile_quickstart", rows, title=title, columns=COLUMNS, args=args)


if __name__ == "__main__":
    main()
