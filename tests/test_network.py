"""Tests for culturesim.parts.network: networkx builders frozen into CSR neighbour arrays."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from culturesim.core.vocabulary import NETWORK_KINDS
from culturesim.parts.network import build_network, complete_network
from culturesim.schema.config import NetworkSection

N = 60


def edge_set(net) -> set[tuple[int, int]]:
    return {(i, int(j)) for i in range(net.size) for j in net.neighbours(i)}


@pytest.fixture(params=NETWORK_KINDS)
def kind(request) -> str:
    return request.param


def test_csr_shapes(kind):
    net = build_network(NetworkSection(kind=kind), N, seed=3)
    assert net.size == N
    assert net.indptr.shape == (N + 1,)
    assert net.indptr[0] == 0 and np.all(np.diff(net.indptr) >= 0)
    assert net.indices.shape == (net.indptr[-1],)
    assert net.indices.size > 0
    assert net.indices.min() >= 0 and net.indices.max() < N
    assert np.issubdtype(net.indptr.dtype, np.integer) and np.issubdtype(net.indices.dtype, np.integer)
    assert np.array_equal(net.degrees(), np.diff(net.indptr))


def test_symmetric_without_self_loops_or_duplicates(kind):
    net = build_network(NetworkSection(kind=kind), N, seed=3)
    edges = edge_set(net)
    assert len(edges) == net.indices.size  # no repeated neighbour within a row
    assert all((j, i) in edges for i, j in edges)
    assert all(i != j for i, j in edges)


@pytest.mark.parametrize("degree", [4, 6, 10])
def test_lattice_degree_is_exact(degree):
    net = build_network(NetworkSection(kind="lattice", degree=degree), N, seed=0)
    assert np.all(net.degrees() == degree)
    # ring lattice: neighbours are the degree/2 nearest on each side
    for i in (0, 17, N - 1):
        expected = {(i + s) % N for s in range(1, degree // 2 + 1)} | {(i - s) % N for s in range(1, degree // 2 + 1)}
        assert set(net.neighbours(i).tolist()) == expected


def test_small_world_keeps_the_mean_degree_and_is_connected():
    spec = NetworkSection(kind="small_world", degree=6, rewire=0.2)
    net = build_network(spec, N, seed=5)
    assert net.degrees().mean() == pytest.approx(6.0)
    assert not np.all(net.degrees() == 6)  # rewiring moved some edges
    graph = nx.Graph(list(edge_set(net)))
    assert graph.number_of_nodes() == N and nx.is_connected(graph)


def test_random_and_scale_free_degrees_are_roughly_as_configured():
    random = build_network(NetworkSection(kind="random", degree=6), 400, seed=1)
    assert 5.0 < random.degrees().mean() < 7.0
    scale_free = build_network(NetworkSection(kind="scale_free", attach=3), 400, seed=1)
    assert scale_free.degrees()[4:].min() >= 3  # every node added after the initial star brings 3 edges
    assert 5.5 < scale_free.degrees().mean() <= 6.0
    assert scale_free.degrees().max() > 4 * scale_free.degrees().mean()  # hubs


def test_complete_kind_links_everyone():
    net = build_network(NetworkSection(kind="complete"), N, seed=0)
    assert np.all(net.degrees() == N - 1)
    assert len(edge_set(net)) == N * (N - 1)


@pytest.mark.parametrize("n", [2, 3, 7, 60])
def test_complete_network_equals_networkx(n):
    net = complete_network(n)
    expected = nx.to_scipy_sparse_array(nx.complete_graph(n), nodelist=range(n), format="csr")
    assert np.array_equal(net.indptr, expected.indptr)
    assert np.array_equal(net.indices, expected.indices)


@pytest.mark.parametrize("communities", [3, 4, 7])
def test_communities_are_labelled_and_denser_inside(communities):
    spec = NetworkSection(kind="communities", communities=communities, p_in=0.4, p_out=0.02)
    net = build_network(spec, N, seed=2)
    labels = net.communities
    assert labels is not None and labels.shape == (N,)
    assert set(labels.tolist()) == set(range(communities))
    sizes = np.bincount(labels)
    assert sizes.max() - sizes.min() <= 1
    source = np.repeat(np.arange(N), net.degrees())
    inside = int((labels[source] == labels[net.indices]).sum())
    across = net.indices.size - inside
    assert inside > 2 * across


def test_only_communities_kind_has_labels(kind):
    net = build_network(NetworkSection(kind=kind), N, seed=0)
    assert (net.communities is not None) == (kind == "communities")


def test_same_seed_same_network(kind):
    a = build_network(NetworkSection(kind=kind), N, seed=11)
    b = build_network(NetworkSection(kind=kind), N, seed=11)
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    if kind == "communities":
        assert np.array_equal(a.communities, b.communities)


@pytest.mark.parametrize("kind", ["small_world", "random", "scale_free", "communities"])
def test_different_seed_different_network(kind):
    a = build_network(NetworkSection(kind=kind), N, seed=11)
    b = build_network(NetworkSection(kind=kind), N, seed=12)
    assert edge_set(a) != edge_set(b)


def test_smallest_valid_population_builds_default_network():
    """Two agents on the default small world (degree 6 > N − 1) are each other's only neighbour."""
    net = build_network(NetworkSection(), 2, seed=0)
    assert net.size == 2
    assert edge_set(net) == {(0, 1), (1, 0)}
    assert net.neighbours(0).tolist() == [1] and net.neighbours(1).tolist() == [0]


def test_complete_network_of_one_agent_is_empty():
    net = complete_network(1)
    assert net.indptr.tolist() == [0, 0] and net.indices.size == 0


@pytest.mark.parametrize("kind", ["scale_free", "small_world", "lattice", "random", "communities"])
def test_large_network_builder_gives_symmetric_seeded_graphs(kind: str) -> None:
    """Above LARGE_NETWORK agents igraph builds the graph; check the same contract on a small n."""
    from culturesim.parts.network import _large_network

    spec = NetworkSection(kind=kind, p_in=0.02, p_out=0.001)
    net = _large_network(spec, 3000, seed=4)
    again = _large_network(spec, 3000, seed=4)
    assert np.array_equal(net.indices, again.indices)
    rows = np.repeat(np.arange(3000), net.degrees())
    pairs = set(zip(rows.tolist(), net.indices.tolist(), strict=True))
    assert all((b, a) in pairs for a, b in pairs), "undirected: every edge in both directions"
    assert all(a != b for a, b in pairs), "no self loops"
    assert 3 < net.degrees().mean() < 80
    if kind == "communities":
        assert len(np.unique(net.communities)) == spec.communities
