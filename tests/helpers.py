"""What several test modules share: a locked study plan and the command line in a subprocess.

(Test modules never import each other; they import this.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLAN = """
[study]
name = "locked"
seed = 5
replicates = 2
generations = 3
[population]
size = 24
[humans]
innovation = 0.05
[conditions]
"network.kind" = ["small_world", "complete"]
[preregistration]
aims = "Does a complete network lose diversity faster than a small world?"
data_generating_mechanism = "24 humans, unbiased copying, innovation 0.05."
estimands = "Difference in final semantic diversity."
methods = "OLS of the final value on the network kind, HC3 errors."
performance_measures = "Estimate, 95 % CI, one-sided p."
stopping_rule = "Fixed design."
replicates_justification = "A test fixture."
[[preregistration.hypotheses]]
id = "H1"
statement = "Complete networks end less diverse."
outcome = "semantic_diversity"
contrast = { factor = "network.kind", treatment = "complete", reference = "small_world" }
direction = "less"
"""

CLI = [sys.executable, "-m", "culturesim.cli"]
# Without the embedding disk cache each run takes about a second, so a signal lands mid-study.
ENV = {**os.environ, "CULTURESIM_NO_DISK_CACHE": "1"}


def run_cli(study: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "run", str(study), "--out", str(out), *extra], capture_output=True, text=True, env=ENV)
