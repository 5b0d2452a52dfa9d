"""Lineages (culturesim.parts.lineage): the most widespread trait and every variant it descends from."""

from __future__ import annotations

import matplotlib.pyplot as plt
import polars as pl
import pytest

from culturesim.parts.lineage import ancestry, most_widespread
from culturesim.reports.figures import lineage_tree

# Run r0: seeds 0 and 1; 2 is a human copying error of 0; 3 an LLM's text from 2 and 1;
# 4 a human copying error of 3. Trait 5 (another seed) is in no lineage of 4.
TRAITS = pl.DataFrame(
    {
        "trait_id": [0, 1, 2, 3, 4, 5, 0],
        "parent_ids": [[], [], [0], [2, 1], [3], [], []],
        "author_kind": ["seed", "seed", "human_error", "llm", "human_error", "seed", "seed"],
        "generation": [0, 0, 1, 2, 3, 0, 0],
        "text": ["a", "b", "a2", "c", "c2", "d", "other run"],
        "run_id": ["r0"] * 6 + ["r1"],
    }
)
POPULATION = pl.DataFrame(
    {
        "run_id": ["r0"] * 5 + ["r1"] * 2,
        "generation": [3] * 7,
        "agent": [0, 1, 2, 3, 4, 0, 1],
        "trait_id": [4, 4, 4, 5, 1, 0, 0],
    }
)


def test_the_most_widespread_trait_is_found_per_run() -> None:
    assert most_widespread(POPULATION, generation=3) == ("r0", 4, 3)
    with pytest.raises(ValueError, match="no agent holds a trait at generation 9"):
        most_widespread(POPULATION, generation=9)


def test_the_ancestry_holds_every_variant_a_trait_descends_from() -> None:
    lineage = ancestry(TRAITS, "r0", 4)
    assert set(lineage.nodes) == {0, 1, 2, 3, 4}
    assert set(lineage.edges) == {(0, 2), (2, 3), (1, 3), (3, 4)}
    assert [n for n, d in lineage.nodes(data=True) if d["machine"]] == [3]
    assert lineage.nodes[4]["text"] == "c2" and lineage.nodes[0]["generation"] == 0
    with pytest.raises(ValueError, match="run r1 has no trait 4"):
        ancestry(TRAITS, "r1", 4)


def test_the_lineage_tree_draws_a_dot_per_variant_and_a_line_per_parent() -> None:
    fig = lineage_tree(ancestry(TRAITS, "r0", 4))
    ax = fig.axes[0]
    assert len(ax.collections) == 5 and len(ax.lines) == 4
    plt.close(fig)


def test_a_lineage_of_one_seed_draws_a_readable_axis() -> None:
    """A seed never copied (common at toy size) is one dot: the axis spans half a generation each side of
    it, and the figure is tall enough for the legend below it."""
    fig = lineage_tree(ancestry(TRAITS, "r0", 0))
    assert fig.axes[0].get_xlim() == (-0.5, 0.5) and fig.get_size_inches()[1] >= 1.8
    plt.close(fig)
