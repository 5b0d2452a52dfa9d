"""The data behind the study explorer (`culturesim.reports.explore`): a results folder as compact JSON.

Per run the page needs where each agent sits (a seeded spring layout of the run's network, rebuilt
from its seed as the run built it), which text each agent held at each generation
(population.parquet), the texts most agents held, each text's parents, author kind and machine
ancestry (traits.parquet), the request behind each LLM-written text (generations.parquet), and its
trait cluster and norm-axis positions (vectors.parquet). A text is stored once for the whole study
and referred to by its index, so the seed texts that replicates share cost nothing twice.

Past `Limits` (sized so the homogenization study at full size, 36 runs x 16 recorded generations x
100 agents, is shown whole) runs, agents and generations are sampled, and `payload["limits"]`
says in words what the page leaves out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import polars as pl

from culturesim.parts.network import Network
from culturesim.parts.traits import AUTHOR_KINDS, MACHINE_KINDS
from culturesim.reports.explore_coordination import SHARE_PREFIXES, coordination_shares, game_data
from culturesim.reports.figures import farthest_point_prototypes
from culturesim.schema.config import StudyConfig, stored_config
from culturesim.simulation.conventions import convention_streams
from culturesim.simulation.model import run_network, run_streams
from culturesim.study.store import read_manifest, require_files

KIND_LABELS = {
    "seed": "seed",
    "human": "human",
    "human_error": "human error",
    "human_innovation": "innovation",
    "llm": "LLM",
    "human_llm_assisted": "LLM-assisted",
    "human_llm_mutated": "LLM-mutated",
}
KIND_COLOURS = {  # Okabe-Ito: humans in blues and green, machines in warm colours
    "seed": "#999999",
    "human": "#0072B2",
    "human_error": "#56B4E9",
    "human_innovation": "#009E73",
    "llm": "#D55E00",
    "human_llm_assisted": "#E69F00",
    "human_llm_mutated": "#CC79A7",
}
CLUSTERS = 6  # trait clusters per run, as in the network snapshot figure
LAYOUT_SEED = 0  # networkx spring layout
SAMPLE_SEED = 0  # where the sample of drawn agents starts past Limits.agents
# The curves view's first metrics (then the rest, alphabetically): diversity, a retrained model's held-out
# score, own diversity and attractor distance beside it, and a convention's spread.
FIRST_METRICS = (
    "semantic_diversity",
    "model_heldout_nll",
    "model_own_diversity",
    "model_attractor_distance",
    "vendi",
    "distinct_traits",
    "machine_ancestry",
    "llm_trait_share",
    "dominant_share",
    "consensus",
)
LOG_COLUMNS = ("system", "prompt", "completion", "seed", "attempts", "temperature", "top_p", "max_tokens", "model_id")


@dataclass(frozen=True)
class Limits:
    """How much per-agent data one page holds; past a limit the page holds a sample and says so."""

    runs: int = 48  # runs with per-agent data, first replicates first (curves always use every run)
    agents: int = 500  # agents drawn per run: a seeded snowball sample past it (top texts count every agent)
    generations: int = 61  # recorded generations with per-agent data: evenly spaced, first and last kept
    curve_points: int = 400  # generations per metric curve, evenly spaced
    top_texts: int = 12  # texts listed per generation
    text_chars: int = 600  # characters kept of a text, a prompt or a completion ("…" marks a cut)
    page_mb: float = 60.0  # data past this: the runs are halved until it fits


DEFAULT_LIMITS = Limits()


def spaced(values: list[int], limit: int) -> list[int]:
    """At most `limit` of `values`, evenly spaced, the first and the last kept."""
    if len(values) <= limit:
        return list(values)
    picks = np.unique(np.round(np.linspace(0, len(values) - 1, max(limit, 2))).astype(int))
    return [values[i] for i in picks]


def kept_runs(runs: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The runs with per-agent data: replicate 0 of every condition, then replicate 1, ... (plan order)."""
    if len(runs) <= limit:
        return list(runs)
    chosen = sorted(range(len(runs)), key=lambda i: (runs[i]["replicate"], i))[:limit]
    return [runs[i] for i in sorted(chosen)]


def drawn_agents(network: Network, limit: int) -> np.ndarray:
    """The agents a run's views draw (sorted): all, or past `limit` a snowball sample, the `limit`
    agents nearest in hops to a seeded random agent (another one when its component runs out), so
    that the drawn part of the network keeps its edges (a uniform sample of a sparse network has
    almost none)."""
    n = network.size
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(SAMPLE_SEED)
    seen = np.zeros(n, dtype=bool)
    drawn: list[np.ndarray] = []
    count = 0
    while count < limit:
        frontier = np.array([rng.choice(np.flatnonzero(~seen))])
        while len(frontier) and count < limit:
            frontier = frontier[: limit - count]
            seen[frontier] = True
            drawn.append(frontier)
            count += len(frontier)
            starts, ends = network.indptr[frontier], network.indptr[frontier + 1]
            neighbours = np.concatenate([network.indices[a:b] for a, b in zip(starts, ends, strict=True)])
            frontier = np.unique(neighbours[~seen[neighbours]])
    return np.sort(np.concatenate(drawn))


def rebuilt_network(config: StudyConfig, replicate: int) -> Network:
    """A run's network, rebuilt from its network stream as the run built it (`model.run_network`)."""
    if getattr(config.study, "interaction", "transmission") == "coordination":  # it seeds its own streams
        rng = convention_streams(config.study.seed, replicate)["network"]
    else:
        rng = run_streams(config.study.seed, replicate)["network"]
    return run_network(config, rng)


def network_layout(network: Network, drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, 2) positions of the drawn agents in a seeded spring layout of the network among them, and
    its edges as (E, 2) indices into `drawn`. O(edges) numpy, then networkx on the drawn agents only."""
    index = np.full(network.size, -1, dtype=np.int64)
    index[drawn] = np.arange(len(drawn))
    sources = np.repeat(np.arange(network.size), network.degrees())
    keep = (index[sources] >= 0) & (index[network.indices] >= 0) & (sources < network.indices)
    edges = np.stack([index[sources[keep]], index[network.indices[keep]]], axis=1)
    graph = nx.Graph()
    graph.add_nodes_from(range(len(drawn)))
    graph.add_edges_from(edges.tolist())
    layout = nx.spring_layout(graph, seed=LAYOUT_SEED)
    return np.array([layout[i] for i in range(len(drawn))]).reshape(-1, 2), edges


def with_ancestors(ids: set[int], parents: dict[int, list[int]]) -> list[int]:
    """`ids` and every variant they descend from, sorted (the nodes of `lineage.ancestry`, for many traits at once)."""
    seen, frontier = set(ids), list(ids)
    while frontier:
        frontier = [p for t in frontier for p in parents.get(t, ()) if p not in seen]
        seen.update(frontier)
    return sorted(seen)


def top_traits(population: pl.DataFrame, generations: list[int], k: int) -> list[list[list[int]]]:
    """Per generation, the k traits the most agents held as [trait id, holders] (ties: smaller id);
    agents holding nothing (-1, a coordination run's first rounds) are not counted as a text."""
    counts = (
        population.filter(pl.col("generation").is_in(generations) & (pl.col("trait_id") >= 0))
        .group_by("generation", "trait_id")
        .len()
        .sort(["generation", "len", "trait_id"], descending=[False, True, False])
        .group_by("generation", maintain_order=True)
        .head(k)
    )
    top: dict[int, list[list[int]]] = {g: [] for g in generations}
    for generation, trait, holders in counts.select("generation", "trait_id", "len").iter_rows():
        top[generation].append([trait, holders])
    return [top[g] for g in generations]


def llm_requests(machine: pl.DataFrame, population: pl.DataFrame, log: pl.DataFrame) -> pl.DataFrame:
    """The logged request behind each machine-written trait (trait_id, generation, text): the one of
    the agent that held it in its birth generation (only its author can), else the one whose
    completion is its text (when the population was not saved)."""
    authors = (
        machine.join(population.select("generation", "agent", "trait_id"), on=["trait_id", "generation"])
        .group_by("trait_id", "generation")
        .agg(pl.col("agent").min())
    )
    by_agent = authors.join(log, on=["generation", "agent"]).select("trait_id", *LOG_COLUMNS, "agent")
    rest = machine.join(by_agent.select("trait_id"), on="trait_id", how="anti")
    by_text = (
        rest.join(log, left_on=["generation", "text"], right_on=["generation", "completion"])
        .with_columns(completion=pl.col("text"))
        .unique("trait_id", keep="first", maintain_order=True)
        .select("trait_id", *LOG_COLUMNS, "agent")
    )
    return pl.concat([by_agent, by_text]).sort("trait_id")


def metric_curves(metrics: pl.DataFrame, run_ids: list[str], *, points: int) -> dict[str, Any]:
    """Every recorded metric over generations but the per-name shares of a coordination study (its
    own view draws them): per condition the mean, min and max over its runs (every run of the
    study), and per run of the page its own values."""
    metrics = metrics.filter(~pl.any_horizontal(pl.col("metric").str.starts_with(p) for p in SHARE_PREFIXES))
    present = metrics["metric"].unique().to_list()
    names = [m for m in FIRST_METRICS if m in present] + sorted(set(present) - set(FIRST_METRICS))
    generations = spaced(sorted(metrics["generation"].unique().to_list()), points)
    metrics = metrics.filter(pl.col("generation").is_in(generations))
    conditions: dict[str, dict[str, dict[str, list[float | None]]]] = {name: {} for name in names}
    summary = (
        metrics.group_by("metric", "condition", "generation")
        .agg(mean=pl.col("value").mean(), lo=pl.col("value").min(), hi=pl.col("value").max())
        .sort("metric", "condition")
    )
    for (metric, condition), part in summary.partition_by("metric", "condition", as_dict=True).items():
        rows = {row["generation"]: row for row in part.iter_rows(named=True)}
        conditions[metric][condition] = {
            stat: [_num(rows[g][stat]) if g in rows else None for g in generations] for stat in ("mean", "lo", "hi")
        }
    runs: dict[str, dict[str, list[float | None]]] = {name: {} for name in names}
    own = metrics.filter(pl.col("run_id").is_in(run_ids)).sort("metric", "run_id")
    for (metric, run_id), part in own.partition_by("metric", "run_id", as_dict=True).items():
        values = dict(part.select("generation", "value").iter_rows())
        runs[metric][run_id] = [_num(values.get(g)) for g in generations]
    return {"metrics": names, "generations": generations, "conditions": conditions, "runs": runs}


def _num(value: float | None, digits: int = 5) -> float | None:
    """A JSON number with `digits` significant digits; None for missing or NaN (JSON has no NaN)."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _cut(text: str | None, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Strings:
    """A table of distinct strings: each stored once, referred to by index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        return self.index.setdefault(text, len(self.index))

    def table(self) -> list[str]:
        return list(self.index)


class _Study:
    """A results folder's tables, read once, and what every run's data shares (strings, layouts)."""

    def __init__(self, folder: Path, limits: Limits) -> None:
        self.folder, self.limits = folder, limits
        self.manifest = read_manifest(folder)
        self.config = stored_config(self.manifest["config"])
        self.grid = self.config.condition_grid()
        self.metrics = pl.read_parquet(folder / "metrics.parquet")
        self.texts, self.systems = _Strings(), _Strings()
        self.layouts: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        population = folder / "population.parquet"
        self.population = pl.scan_parquet(population) if population.exists() else None
        generations = folder / "generations.parquet"
        self.log = pl.scan_parquet(generations) if generations.exists() else None
        vectors = folder / "vectors.parquet"
        self.vectors = pl.scan_parquet(vectors) if vectors.exists() else None
        self.axes = {name: tuple(poles) for name, poles in self.config.metrics.norm_axes.items()}
        self.axis_vectors = self._axis_vectors()

    def _axis_vectors(self) -> dict[str, np.ndarray]:
        """Each norm axis as a unit vector, e(positive) - e(negative) (as the norm_position metric)."""
        poles = [p for pair in self.axes.values() for p in pair]
        found = self._vectors(poles)
        axes = {}
        for name, (positive, negative) in self.axes.items():
            if positive in found and negative in found:
                axis = found[positive].astype(np.float64) - found[negative]
                axes[name] = axis / (np.linalg.norm(axis) or 1.0)
        return axes

    def _vectors(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self.vectors is None or not texts:
            return {}
        frame = self.vectors.filter(pl.col("text").is_in(texts)).select("text", "vector").collect()
        return dict(zip(frame["text"].to_list(), frame["vector"].to_numpy(), strict=True))

    def layout(self, run: dict[str, Any], condition: StudyConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(drawn agents, positions, edges) of a run, computed once per distinct network."""
        n = condition.population.size
        key = (condition.network.model_dump_json(), n, run["replicate"], getattr(condition.study, "interaction", ""))
        if key not in self.layouts:
            network = rebuilt_network(condition, run["replicate"])
            drawn = drawn_agents(network, self.limits.agents)
            xy, edges = network_layout(network, drawn)
            self.layouts[key] = (drawn, xy, edges)
        return self.layouts[key]

    def run_data(self, run: dict[str, Any]) -> dict[str, Any]:
        run_id, limits = run["run_id"], self.limits
        condition = self.grid[run.get("condition_index", 0)][1]
        entry: dict[str, Any] = {"id": run_id, "condition": run["condition"], "replicate": run["replicate"]}
        population = (
            self.population.filter(pl.col("run_id") == run_id).collect()
            if self.population is not None
            else pl.DataFrame()
        )
        if population.is_empty():
            return {**entry, "agents": condition.population.size, "gens": []}
        generations = spaced(sorted(population["generation"].unique().to_list()), limits.generations)
        drawn, xy, edges = self.layout(run, condition)
        shown = population.filter(pl.col("generation").is_in(generations) & pl.col("agent").is_in(drawn))
        shown = shown.sort("generation", "agent")
        if shown.height != len(generations) * len(drawn):
            raise ValueError(f"population.parquet of run {run_id} misses agents in generations {generations}")
        held = shown["trait_id"].to_numpy().reshape(len(generations), len(drawn))
        is_llm = shown.filter(pl.col("generation") == generations[0])["is_llm"].to_numpy()
        top = top_traits(population, generations, limits.top_texts)
        traits = pl.scan_parquet(self.folder / "traits.parquet").filter(pl.col("run_id") == run_id).collect()
        parents = dict(zip(traits["trait_id"].to_list(), traits["parent_ids"].to_list(), strict=True))
        wanted = {int(t) for t in np.unique(held) if t >= 0} | {t for gen in top for t, _ in gen}
        ids = with_ancestors(wanted, parents)
        local = {t: i for i, t in enumerate(ids)}
        rows = traits.filter(pl.col("trait_id").is_in(ids)).sort("trait_id")
        holders = population.filter(pl.col("trait_id").is_in(ids)).group_by("trait_id").len()
        entry.update(
            agents=condition.population.size,
            drawn=None if len(drawn) == condition.population.size else drawn.tolist(),
            x=[round(float(v), 3) for v in xy[:, 0]],
            y=[round(float(v), 3) for v in xy[:, 1]],
            edges=edges.ravel().tolist(),
            llm=np.flatnonzero(is_llm).tolist(),
            gens=generations,
            held=[[local.get(int(t), -1) for t in row] for row in held],
            top=[[[local[t], holders_] for t, holders_ in gen] for gen in top],
            traits=self._traits(rows, local, dict(holders.iter_rows()), population),
        )
        if getattr(condition.study, "interaction", "transmission") == "coordination":
            log = self.log.filter(pl.col("run_id") == run_id).collect() if self.log is not None else None
            metrics = self.metrics.filter(pl.col("run_id") == run_id)
            entry["game"] = game_data(
                condition, run, population=population, metrics=metrics, log=log, shown=generations, drawn=drawn
            )
        return entry

    def _traits(
        self, rows: pl.DataFrame, local: dict[int, int], holders: dict[int, int], population: pl.DataFrame
    ) -> dict[str, Any]:
        """The run's traits of the page as columns: text (index into the study's strings), author
        kind, birth generation, machine ancestry, parents (local indices), cluster, norm positions,
        and the LLM request that wrote it (index into `requests`, -1 for none)."""
        limit, texts = self.limits.text_chars, rows["text"].to_list()
        machine = rows.filter(pl.col("author_kind").is_in(sorted(MACHINE_KINDS))).select(
            "trait_id", "generation", "text"
        )
        requests, request_of = [], {}
        if self.log is not None and not machine.is_empty():
            run_id = rows["run_id"][0]
            log = self.log.filter(pl.col("run_id") == run_id).collect()
            for row in llm_requests(machine, population, log).iter_rows(named=True):
                request_of[row["trait_id"]] = len(requests)
                requests.append(
                    {
                        "system": self.systems(row["system"] or ""),
                        "prompt": _cut(row["prompt"], 4 * limit),
                        "completion": _cut(row["completion"], limit),
                        **{k: row[k] for k in ("seed", "attempts", "agent", "max_tokens", "model_id")},
                        "temperature": _num(row["temperature"]),
                        "top_p": _num(row["top_p"]),
                    }
                )
        columns: dict[str, Any] = {
            "id": rows["trait_id"].to_list(),
            "text": [self.texts(_cut(t, limit)) for t in texts],
            "kind": rows["author_kind"].to_list(),
            "born": rows["generation"].to_list(),
            "anc": [round(float(a), 3) for a in rows["machine_ancestry"].to_list()],
            "parents": [[local[p] for p in ps if p in local] for ps in rows["parent_ids"].to_list()],
            "request": [request_of.get(t, -1) for t in rows["trait_id"].to_list()],
            "requests": requests,
        }
        vectors = self._vectors(list(dict.fromkeys(texts)))
        if texts and all(t in vectors for t in texts):
            matrix = np.stack([vectors[t] for t in texts]).astype(np.float64)
            unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
            counts = np.array([holders.get(t, 0) for t in columns["id"]])
            # The clusters of `figures.trait_clusters`: the nearest of k farthest-point prototypes (for unit
            # vectors the largest cosine), started from the most held trait.
            prototypes = farthest_point_prototypes(unit, CLUSTERS, start=int(counts.argmax()))
            columns["cluster"] = (unit @ unit[prototypes].T).argmax(axis=1).tolist()
            columns["clusters"] = [self.texts(_cut(texts[p], limit)) for p in prototypes]
            columns["norm"] = {
                name: [round(float(v), 4) for v in unit @ axis] for name, axis in self.axis_vectors.items()
            }
        return columns


def explorer_data(folder: str | Path, *, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Everything the explorer page shows, as JSON-ready data (see the module docstring)."""
    folder = Path(folder)
    require_files(folder, ("manifest.json", "metrics.parquet", "traits.parquet"))
    while True:
        study = _Study(folder, limits)
        runs = study.manifest["runs"]
        kept = kept_runs(runs, limits.runs)
        data = {
            "study": study.manifest["study"],
            "config_hash": study.manifest["config_hash"],
            "description": study.config.study.description,
            "toy": bool(study.manifest.get("toy")),
            "interaction": getattr(study.config.study, "interaction", "transmission"),
            "conditions": [label for label, _ in study.grid],
            "kinds": {k: {"label": KIND_LABELS.get(k, k), "colour": KIND_COLOURS.get(k)} for k in _kinds(folder)},
            "runs": [study.run_data(run) for run in kept],
            "curves": metric_curves(study.metrics, [r["run_id"] for r in kept], points=limits.curve_points),
            "norm_axes": {name: list(poles) for name, poles in study.axes.items() if name in study.axis_vectors},
        }
        data["coordination"] = coordination_shares(
            study.metrics, study.config, generations=data["curves"]["generations"]
        )
        data["texts"], data["systems"] = study.texts.table(), study.systems.table()
        size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
        if size <= limits.page_mb * 1e6 or len(kept) <= 1:
            data["limits"] = describe_limits(study, kept, limits, size=size)
            return data
        limits = replace(limits, runs=max(1, len(kept) // 2))


def _kinds(folder: Path) -> list[str]:
    """The author kinds in the study's traits table, in the canonical order (unknown ones last)."""
    present = pl.scan_parquet(folder / "traits.parquet").select(pl.col("author_kind").unique()).collect()
    present = set(present["author_kind"].to_list())
    canonical = [k for k in KIND_LABELS if k in present or k in AUTHOR_KINDS]
    return [k for k in canonical if k in present] + sorted(present - set(canonical))


def describe_limits(study: _Study, kept: list[dict[str, Any]], limits: Limits, *, size: int) -> dict[str, Any]:
    """What the page leaves out, in words (shown in the page) and as numbers."""
    runs = study.manifest["runs"]
    notes = []
    if len(kept) < len(runs):
        notes.append(
            f"per-agent views hold {len(kept)} of {len(runs)} runs (replicates "
            f"{min(r['replicate'] for r in kept)}–{max(r['replicate'] for r in kept)} of each condition, first "
            f"replicates first; at most {limits.runs} runs and {limits.page_mb:g} MB of data per page)"
        )
    sizes = {condition.population.size for _, condition in study.grid}
    if max(sizes) > limits.agents:
        notes.append(
            f"the network and norm views draw {limits.agents} agents per run (of up to {max(sizes)}): those "
            "nearest in hops to a seeded random agent, with the edges among them; the texts view counts every agent"
        )
    generations = int(study.metrics["generation"].n_unique())
    if generations > limits.generations:
        notes.append(
            f"per-agent views hold {limits.generations} of {generations} generations (evenly spaced, first and "
            "last kept)"
        )
    if generations > limits.curve_points:
        notes.append(f"curves show {limits.curve_points} of {generations} generations (evenly spaced)")
    bounds = (
        f"(a page holds at most {limits.runs} runs, {limits.agents} agents per run, {limits.generations} "
        f"generations and {limits.page_mb:g} MB of data; this one's data take {size / 1e6:.1f} MB, Plotly about 5 MB)"
    )
    text = (
        f"Shown whole: every run, agent and generation of the study {bounds}."
        if not notes
        else f"Sampled to keep this page usable {bounds}: " + "; ".join(notes) + "."
    )
    return {
        "text": text,
        "runs": len(kept),
        "runs_total": len(runs),
        "data_mb": round(size / 1e6, 2),
        "limits": {k: getattr(limits, k) for k in Limits.__dataclass_fields__},
    }
