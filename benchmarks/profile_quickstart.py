"""Where the quickstart's time goes: cProfile of one full run, grouped by engine phase.

Run: .venv/bin/python benchmarks/profile_quickstart.py [studies/quickstart.toml]
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import report  # noqa: E402

from culturesim.schema.config import load_config  # noqa: E402
from culturesim.study.runner import StudyRunner  # noqa: E402

PHASES = {
    "LLM engine start (vLLM)": ("runner.py", "backend"),
    "embedder load": ("runner.py", "embedder"),
    "LLM generation (all lockstep calls)": ("completions.py", "_ask_engine"),
    "embedding new texts": ("generation.py", "_embed_pending"),
    "human learning + requests (plan)": ("model.py", "plan"),
    "new traits, turnover (step)": ("model.py", "step"),
    "metrics (record)": ("model.py", "record"),
    "model setup (network, seed culture)": ("batch.py", "_build_models"),
    "writing run tables": ("tables.py", "write_run"),
    "combining tables": ("tables.py", "combine_runs"),
}


def main() -> None:
    study = Path(sys.argv[1] if len(sys.argv) > 1 else "studies/quickstart.toml")
    config = load_config(study)
    os.environ["CULTURESIM_NO_DISK_CACHE"] = "1"
    runner = StudyRunner()
    profile = cProfile.Profile()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        profile.enable()
        runner.run(config, out_root=Path(out))
        profile.disable()
    total = time.perf_counter() - start
    runner.close()
    stats = pstats.Stats(profile).stats
    rows = []
    for phase, (file, function) in PHASES.items():
        seconds = sum(v[3] for (path, _, name), v in stats.items() if path.endswith(file) and name == function)
        rows.append({"phase": phase, "seconds": seconds, "share": seconds / total})
    rows.append({"phase": "total wall time", "seconds": total, "share": 1.0})
    report("profile_quickstart", rows, title=f"profile of {study} ({config.study.replicates} replicates)")


if __name__ == "__main__":
    main()
