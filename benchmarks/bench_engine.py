"""Engine speed: agent-generations per second of culturesim's vectorised human transmission
vs a straightforward per-agent agentpy implementation of the same rule, in one process.

Rule (both): each generation a `turnover` share of agents are learners; a learner samples
k=3 neighbours on a small-world network and copies one under conformist bias (a trait held
by n of the 3 is chosen with probability ∝ n^a), or with probability mu innovates a new
variant. No LLM; the seed corpus the innovations draw from is embedded before timing.

Each repeat times a fresh engine run and then a fresh baseline run, back to back, so both see the
machine in the same state: on a shared virtual machine a single timing varies by 20 % from run to
run, and the machine's speed drifts over minutes. `speedup` is the median over repeats of these
paired ratios; `speedup_of_best` divides the best rates (as `timeit` reports the minimum), and
`speedup_min`/`speedup_max` give the spread of the pairs.

Run: .venv/bin/python benchmarks/bench_engine.py [--sizes 1000,10000,100000] [--generations 100] [--repeats 3]
     [--smoke] [--out FOLDER]
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Sequence
from pathlib import Path

import agentpy as ap
import networkx as nx
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import parse, parser, report, timed  # noqa: E402

from culturesim.parts.corpus import load_corpus  # noqa: E402
from culturesim.parts.embed import Embedder  # noqa: E402
from culturesim.schema.config import EmbeddingSection, StudyConfig  # noqa: E402
from culturesim.simulation import generation  # noqa: E402
from culturesim.simulation.generation import Throughput  # noqa: E402
from culturesim.simulation.model import RunSpec, build_run  # noqa: E402

K, CONFORMITY, MU, TURNOVER, DEGREE, REWIRE = 3, 2.0, 0.01, 0.5, 6, 0.1
SMOKE = {"sizes": "60,200", "generations": 3, "baseline_generations": 2, "repeats": 1}
COLUMNS = {
    "agents": "population size, agents",
    "generations": "generations the engine ran per repeat",
    "repeats": "paired engine/baseline runs at this size",
    "engine_agent_gens_per_s": "culturesim's best rate, agent-generations per second",
    "engine_ms_per_generation": "culturesim's best time per generation, milliseconds",
    "agentpy_agent_gens_per_s": "the baseline's best rate, agent-generations per second (null above --baseline-max)",
    "speedup": "median over repeats of the paired rate ratios, culturesim / agentpy",
    "speedup_of_best": "best culturesim rate / best agentpy rate",
    "speedup_min": "smallest paired ratio",
    "speedup_max": "largest paired ratio",
    "peak_rss_mb": "the process's peak resident memory so far, MiB",
}


class PerAgentLearner(ap.Agent):
    """The baseline: one Python object per agent, one Python decision per learner."""

    def setup(self) -> None:
        self.trait = self.id

    def choose(self, graph: nx.Graph, agents: list, rng: np.random.Generator) -> int:
        neighbours = list(graph.neighbors(self.node))
        sample = [agents[neighbours[rng.integers(len(neighbours))]].trait for _ in range(K)]
        weights = [sample.count(t) ** (CONFORMITY - 1) for t in sample]
        total = sum(weights)
        pick, acc = rng.random() * total, 0.0
        for trait, weight in zip(sample, weights, strict=True):
            acc += weight
            if pick <= acc:
                return trait
        return sample[-1]


class PerAgentModel(ap.Model):
    """The baseline's model: a networkx graph, an agentpy list of agents, one Python loop per generation."""

    def setup(self) -> None:
        self.graph = nx.connected_watts_strogatz_graph(self.p["n"], DEGREE, REWIRE, seed=1)
        self.agents = ap.AgentList(self, self.p["n"], PerAgentLearner)
        for node, agent in enumerate(self.agents):
            agent.node = node
        self.rng = np.random.default_rng(1)
        self.next_variant = self.p["n"]

    def step(self) -> None:
        agents = list(self.agents)
        learners = [a for a in agents if self.rng.random() < TURNOVER]
        new = {}
        for learner in learners:
            if self.rng.random() < MU:
                new[learner] = self.next_variant
                self.next_variant += 1
            else:
                new[learner] = learner.choose(self.graph, agents, self.rng)
        for learner, trait in new.items():
            learner.trait = trait


def baseline_rate(n: int, generations: int) -> float:
    """Agent-generations per second of the per-agent agentpy model."""
    model = PerAgentModel({"n": n})
    model.sim_setup(steps=generations)
    seconds = timed(lambda: [model.sim_step() for _ in range(generations)])
    return n * generations / seconds


def engine_rate(n: int, generations: int, embedder: Embedder) -> float:
    """Agent-generations per second of culturesim's engine on one run, as a study advances it."""
    config = StudyConfig.model_validate(
        {
            "study": {
                "name": "bench",
                "seed": 1,
                "replicates": 1,
                "generations": generations,
                "save_population": False,
            },
            "population": {"size": n, "turnover": TURNOVER},
            "network": {"kind": "small_world", "degree": DEGREE, "rewire": REWIRE},
            "humans": {
                "bias": "conformist",
                "conformity": CONFORMITY,
                "demonstrators": K,
                "copy_error": 0.0,
                "innovation": MU,
            },
            "metrics": {"names": ["distinct_traits", "homozygosity"]},
        }
    )
    corpus = load_corpus(config.corpus)["text"].to_list()
    # Innovations draw seed-corpus texts; embed them all before timing, as a study does once per
    # process (`bench_embed.py` measures embedding, this script the transmission engine).
    embedder.embed(corpus)
    model = build_run(config, RunSpec("bench", "bench", 0, 1), corpus=corpus, dim=embedder.dim)
    stats = Throughput()
    generation.start([model], embedder, stats)  # generation 0 (seed embeddings, first metrics): setup, not timed

    def generation_loop() -> None:  # as `generation.run_generations` runs it in a study
        with generation.simulator_threads():
            for g in range(1, generations + 1):
                generation.advance([model], g, source=None, vectors=embedder, stats=stats)

    return n * generations / timed(generation_loop)


def main(argv: Sequence[str] | None = None, *, embedder: Embedder | None = None) -> Path:
    """Run the benchmark and write its table; returns the JSON's path. `embedder`: an already-loaded
    embedder to reuse (it only embeds the seed corpus, before any timing)."""
    options = parser(__doc__)
    options.add_argument("--sizes", default="1000,10000,100000", help="population sizes, agents, comma-separated")
    options.add_argument("--generations", type=int, default=100)
    options.add_argument("--baseline-generations", type=int, default=5)
    options.add_argument("--baseline-max", type=int, default=10000, help="largest size the slow baseline runs at")
    options.add_argument("--repeats", type=int, default=3, help="paired engine/baseline runs per size")
    args = parse(options, argv, smoke=SMOKE)
    embedder = embedder or Embedder(EmbeddingSection())
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        engine, baseline = [], []
        for _ in range(args.repeats):
            engine.append(engine_rate(n, args.generations, embedder))
            baseline.append(baseline_rate(n, args.baseline_generations) if n <= args.baseline_max else float("nan"))
        ratios = np.array(engine) / np.array(baseline)  # agent-generations per second, engine / agentpy
        rows.append(
            {
                "agents": n,
                "generations": args.generations,
                "repeats": args.repeats,
                "engine_agent_gens_per_s": max(engine),
                "engine_ms_per_generation": 1e3 * n / max(engine),
                "agentpy_agent_gens_per_s": max(baseline),
                "speedup": float(np.median(ratios)),
                "speedup_of_best": max(engine) / max(baseline),
                "speedup_min": float(ratios.min()),
                "speedup_max": float(ratios.max()),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    title = "culturesim engine vs per-agent agentpy (conformist copying + innovation)"
    return report("bench_engine", rows, title=title, columns=COLUMNS, args=args)


if __name__ == "__main__":
    main()
