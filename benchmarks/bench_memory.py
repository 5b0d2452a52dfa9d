"""Memory bound: a 1,000,000-agent human-only run on a scale-free network, peak memory and time.

State is integer arrays plus the trait pool (texts, lineage, one float32 embedding row per
variant); no N x N matrix anywhere, so memory grows linearly in agents.

Run: .venv/bin/python benchmarks/bench_memory.py [--agents 1000000] [--generations 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import report  # noqa: E402

from culturesim.schema.config import StudyConfig  # noqa: E402
from culturesim.study.runner import StudyRunner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1_000_000)
    parser.add_argument("--generations", type=int, default=10)
    args = parser.parse_args()
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
        StudyRunner().run(config, out_root=Path(out))
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    report(
        "bench_memory",
        [
            {
                "agents": args.agents,
                "generations": args.generations,
                "network": "scale_free (m=3)",
                "wall_seconds": seconds,
                "peak_rss_gb": peak_gb,
                "bound_gb": 8.0,
                "within_bound": peak_gb < 8.0,
            }
        ],
        title="1M-agent human-only run: peak memory",
    )


if __name__ == "__main__":
    main()
