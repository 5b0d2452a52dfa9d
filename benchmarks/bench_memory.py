"""Memory bound: a 1,000,000-agent human-only run on a scale-free network, peak memory and time.

State is integer arrays plus the trait pool (texts, lineage, one float32 embedding row per
variant); no N x N matrix anywhere, so memory grows linearly in agents.

Run: .venv/bin/python benchmarks/bench_memory.py [--agents 1000000] [--generations 10] [--smoke] [--out FOLDER]
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import parse, parser, report  # noqa: E402

from culturesim.parts.embed import Embedder  # noqa: E402
from culturesim.schema.config import StudyConfig  # noqa: E402
from culturesim.study.runner import StudyRunner  # noqa: E402

BOUND_GB = 8.0  # peak resident memory a 1M-agent run must stay under, GiB
SMOKE = {"agents": 2000, "generations": 2}
COLUMNS = {
    "agents": "population size, agents",
    "generations": "generations run",
    "network": "the network the agents live on",
    "wall_seconds": "wall seconds of the whole study (setup, generations, writing)",
    "peak_rss_gb": "the process's peak resident memory, GiB",
    "bound_gb": "the bound the run must stay under, GiB",
    "within_bound": "whether peak_rss_gb < bound_gb",
}


def main(argv: Sequence[str] | None = None, *, embedder: Embedder | None = None) -> Path:
    """Run the benchmark and write its table; returns the JSON's path. `embedder`: an already-loaded
    embedder for the study runner to use instead of loading one."""
    options = parser(__doc__)
    options.add_argument("--agents", type=int, default=1_000_000)
    options.add_argument("--generations", type=int, default=10)
    args = parse(options, argv, smoke=SMOKE)
    config = StudyConfig.model_validate(
        {
            "study": {
                "name": "memory",
                "seed": 1,
                "replicates": 1,
                "generations": args.generations,
                "save_population": False,
            },
            "population": {"size": args.agents, "turnover": 0.5},
            "network": {"kind": "scale_free", "attach": 3},
            "humans": {"bias": "conformist", "copy_error": 0.0, "innovation": 0.01},
            "metrics": {"names": ["homozygosity", "distinct_traits", "semantic_diversity", "vendi"]},
        }
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        StudyRunner(embedder=embedder).run(config, out_root=Path(out))
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    row = {
        "agents": args.agents,
        "generations": args.generations,
        "network": "scale_free (m=3)",
        "wall_seconds": seconds,
        "peak_rss_gb": peak_gb,
        "bound_gb": BOUND_GB,
        "within_bound": peak_gb < BOUND_GB,
    }
    title = f"{args.agents:,}-agent human-only run: peak memory"
    return report("bench_memory", [row], title=title, columns=COLUMNS, args=args)


if __name__ == "__main__":
    main()
