"""Lineages of traits: which variant descends from which, and who wrote each.

A variant's parents are the texts it was made from (the copied text of a copying error or an LLM
retelling, the texts an LLM agent read); seed texts and innovations have none. The lineage of a
trait is every variant it descends from, as a graph from parents to children.
"""

from __future__ import annotations

import networkx as nx
import polars as pl

from culturesim.parts.traits import MACHINE_KINDS


def most_widespread(population: pl.DataFrame, *, generation: int) -> tuple[str, int, int]:
    """(run id, trait id, agents holding it): the trait held by the most agents of one run at
    `generation` (ties: the first run and the smallest id)."""
    counts = (
        population.filter(pl.col("generation") == generation)
        .group_by("run_id", "trait_id")
        .len()
        .sort(["len", "run_id", "trait_id"], descending=[True, False, False])
    )
    if counts.is_empty():
        raise ValueError(f"no agent holds a trait at generation {generation} (is population.parquet saved?)")
    run_id, trait_id, holders = counts.row(0)
    return str(run_id), int(trait_id), int(holders)


def ancestry(traits: pl.DataFrame, run_id: str, trait_id: int) -> nx.DiGraph:
    """The lineage of one trait of one run: a node per variant it descends from (itself included)
    with its `generation`, `author_kind`, `machine` (an LLM wrote it) and `text`; edges parent -> child."""
    rows = {
        row["trait_id"]: row
        for row in traits.filter(pl.col("run_id") == run_id)
        .select("trait_id", "parent_ids", "author_kind", "generation", "text")
        .iter_rows(named=True)
    }
    if trait_id not in rows:
        raise ValueError(f"run {run_id} has no trait {trait_id}")
    graph = nx.DiGraph()
    pending = [trait_id]
    while pending:
        node = pending.pop()
        if node in graph and "author_kind" in graph.nodes[node]:
            continue
        row = rows[node]
        graph.add_node(node, generation=row["generation"], author_kind=row["author_kind"], text=row["text"],
                       machine=row["author_kind"] in MACHINE_KINDS)  # fmt: skip
        for parent in row["parent_ids"]:
            graph.add_edge(parent, node)
            pending.append(parent)
    return graph
