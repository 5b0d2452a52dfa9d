"""The coordination game's rules (culturesim.parts.coordination_rules): matchings, best response, the naming game.

Behaviour, not implementation: every pair a valid matching, every choice rule against its definition
(uniform choices and tie-breaks by chi-square at a strict level), updates against Xie et al. 2011,
committed agents and void games unchanged, and one seed giving one set of bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from culturesim.parts.coordination_rules import (
    GIVE_RULE,
    NO_MOVE,
    NO_NAME,
    Inventory,
    Memory,
    play_round,
    random_matching,
)
from culturesim.parts.network import build_network
from culturesim.schema.config import NetworkSection

EMPTY = np.zeros(0, dtype=np.int64)
PAYOFFS = (100.0, -50.0)


def _uniform(counts: np.ndarray) -> float:
    """Chi-square p-value of counts against equal probabilities."""
    return float(sps.chisquare(counts).pvalue)


# --- matching -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 101])
def test_complete_matching_pairs_everyone_but_one_odd_agent(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        pairs = random_matching(n, EMPTY, EMPTY, complete=True, rng=rng)
        assert pairs.shape == (n // 2, 2) and pairs.dtype == np.int64
        flat = pairs.ravel()
        assert len(np.unique(flat)) == flat.size  # each agent in at most one pair
        assert np.all((flat >= 0) & (flat < n))
        assert n - flat.size == n % 2  # all but at most one agent play


def test_complete_matching_is_uniform_over_matchings():
    """Four agents have three perfect matchings, each with probability 1/3."""
    rng = np.random.default_rng(0)
    keys = {frozenset({frozenset({0, 1}), frozenset({2, 3})}): 0, frozenset({frozenset({0, 2}), frozenset({1, 3})}): 1,
            frozenset({frozenset({0, 3}), frozenset({1, 2})}): 2}  # fmt: skip
    counts = np.zeros(3)
    for _ in range(3000):
        pairs = random_matching(4, EMPTY, EMPTY, complete=True, rng=rng)
        counts[keys[frozenset(frozenset(map(int, pair)) for pair in pairs)]] += 1
    assert _uniform(counts) > 1e-3


def test_network_matching_uses_edges_and_is_maximal():
    n = 60
    network = build_network(NetworkSection(kind="lattice", degree=4), n, seed=3)
    edges = {(a, int(b)) for a in range(n) for b in network.neighbours(a)}
    rng = np.random.default_rng(1)
    sizes = []
    for _ in range(50):
        pairs = random_matching(n, network.indptr, network.indices, complete=False, rng=rng)
        flat = pairs.ravel()
        assert len(np.unique(flat)) == flat.size
        assert all((int(a), int(b)) in edges for a, b in pairs)
        free = np.setdiff1d(np.arange(n), flat)
        assert not any((int(a), int(b)) in edges for a in free for b in free)  # maximal: no free edge left
        sizes.append(len(pairs))
    assert np.mean(sizes) > 0.8 * n / 2  # a ring matches most agents


def test_network_matching_leaves_isolated_agents_out():
    indptr = np.array([0, 1, 2, 2], dtype=np.int64)  # 0—1, and agent 2 has no neighbour
    indices = np.array([1, 0], dtype=np.int64)
    pairs = random_matching(3, indptr, indices, complete=False, rng=np.random.default_rng(0))
    assert sorted(pairs.ravel().tolist()) == [0, 1]


# --- memory and best response -------------------------------------------------------------------


def test_memory_keeps_the_last_m_oldest_first():
    memory = Memory(2, 3)
    for t in range(5):
        memory.push(np.array([0]), np.array([t]), np.array([t + 10]), np.array([float(t)]))
    assert memory.filled.tolist() == [3, 0]
    assert memory.entries(0) == [(2, 12, 2.0), (3, 13, 3.0), (4, 14, 4.0)]
    assert memory.partner[0].tolist() == [12, 13, 14]  # left-aligned: newest at column filled − 1
    assert memory.entries(1) == [] and np.all(memory.partner[1] == NO_NAME)


def test_memory_fill_is_an_established_convention():
    memory = Memory(3, 5)
    memory.push(np.array([1]), np.array([4]), np.array([4]), np.array([100.0]))
    memory.fill(np.array([0, 1]), 2, 3, 100.0)
    assert memory.entries(1) == [(2, 2, 100.0)] * 3
    assert memory.filled.tolist() == [3, 3, 0]
    memory.fill(np.array([2]), 1, 9, 100.0)  # more past rounds than memory: it is full
    assert memory.filled[2] == 5


def test_best_response_is_the_most_frequent_partner_name():
    memory = Memory(3, 5)
    for partner in ([2, 1], [2, 3], [1, 3], [2, 3], [0, 3]):
        memory.push(np.array([0, 1]), np.array([0, 0]), np.array(partner), np.zeros(2))
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert memory.best_response(np.array([0, 1]), 5, rng).tolist() == [2, 3]
    # what best response maximises: each name's count among the remembered partners (agent 2: none)
    assert memory.counts(np.array([1, 0, 2]), 5).tolist() == [[0, 1, 0, 4, 0], [1, 1, 3, 0, 0], [0] * 5]


def test_best_response_breaks_ties_uniformly():
    memory = Memory(2, 4)
    for partner in (1, 4, 4, 1):
        memory.push(np.array([0]), np.array([0]), np.array([partner]), np.zeros(1))
    rng = np.random.default_rng(1)
    tied = np.concatenate([memory.best_response(np.zeros(50, dtype=np.int64), 6, rng) for _ in range(80)])
    assert set(tied.tolist()) == {1, 4}
    assert _uniform(np.bincount(tied, minlength=6)[[1, 4]]) > 1e-3
    empty = memory.best_response(np.ones(3000, dtype=np.int64), 6, rng)  # agent 1: empty memory
    assert _uniform(np.bincount(empty, minlength=6)) > 1e-3


def test_best_response_round_scores_and_remembers_both_partners():
    memory = Memory(2, 5)
    memory.fill(np.array([0, 1]), 3, 2, 100.0)
    played = play_round(rule="best_response", memory=memory, inventory=None, pairs=np.array([[0, 1]]),
                        given=np.array([GIVE_RULE, 1]), n_names=4, payoffs=PAYOFFS,
                        rng=np.random.default_rng(0))  # fmt: skip
    assert played.plays.tolist() == [3, 1] and played.success.tolist() == [False]
    assert memory.entries(0)[-1] == (3, 1, -50.0) and memory.entries(1)[-1] == (1, 3, -50.0)


# --- naming game --------------------------------------------------------------------------------


def _inventory(rows: list[set[int]], k: int) -> Inventory:
    inventory = Inventory(len(rows), k)
    for agent, names in enumerate(rows):
        inventory.known[agent, list(names)] = True
    return inventory


def test_speaker_says_a_uniformly_random_known_name():
    inventory = _inventory([{0, 2, 3}], 5)
    rng = np.random.default_rng(2)
    said = np.concatenate([inventory.speak(np.zeros(1, dtype=np.int64), rng) for _ in range(3000)])
    assert set(said.tolist()) == {0, 2, 3}
    assert _uniform(np.bincount(said, minlength=5)[[0, 2, 3]]) > 1e-3


def test_many_names_are_drawn_uniformly_too():
    inventory = _inventory([{0, 7, 30, 39}], 40)  # above the column-scan threshold
    rng = np.random.default_rng(3)
    said = np.concatenate([inventory.speak(np.zeros(1, dtype=np.int64), rng) for _ in range(2000)])
    assert set(said.tolist()) == {0, 7, 30, 39}
    assert _uniform(np.bincount(said, minlength=40)[[0, 7, 30, 39]]) > 1e-3


def test_empty_speakers_invent_and_remember():
    bounded = Inventory(4, 3)
    said = bounded.speak(np.arange(4), np.random.default_rng(0))
    assert np.all((said >= 0) & (said < 3)) and np.all(bounded.known[np.arange(4), said])
    unbounded = Inventory(4, 0, unbounded=True)
    said = unbounded.speak(np.array([2, 0]), np.random.default_rng(0))
    assert said.tolist() == [0, 1] and unbounded.k == 2  # brand-new names
    assert unbounded.only(0).tolist() == [False, False, True, False]


def test_listener_plays_the_heard_name_if_known_else_another_or_none():
    inventory = _inventory([{1}, {0, 2}, set()], 3)
    played = inventory.listen(np.array([0, 1, 2]), np.array([1, 1, 1]), np.random.default_rng(0))
    assert played[0] == 1 and played[1] in (0, 2) and played[2] == NO_NAME


@pytest.mark.parametrize("seed", range(30))
def test_naming_game_success_collapses_both_failure_teaches_the_listener(seed):
    before = [{0, 1}, {1, 2}]
    inventory = _inventory(before, 3)
    played = play_round(rule="naming_game", memory=None, inventory=inventory, pairs=np.array([[0, 1]]),
                        given=np.full(2, GIVE_RULE), n_names=3, payoffs=PAYOFFS,
                        rng=np.random.default_rng(seed))  # fmt: skip
    speaker, listener = played.pairs[0]
    heard = played.plays[speaker]
    assert heard in before[speaker]
    after = [set(np.flatnonzero(row).tolist()) for row in inventory.known]
    if played.success[0]:
        assert heard in before[listener] and after[speaker] == after[listener] == {heard}
    else:
        assert heard not in before[listener]
        assert after[listener] == before[listener] | {heard} and after[speaker] == before[speaker]


def test_committed_agents_never_change():
    n = 40
    committed = np.arange(n) < 10
    given = np.where(committed, 0, GIVE_RULE)
    inventory = Inventory(n, 2)
    inventory.fill(np.flatnonzero(~committed), 1)
    inventory.fill(np.flatnonzero(committed), 0)
    rng = np.random.default_rng(4)
    for _ in range(50):
        pairs = random_matching(n, EMPTY, EMPTY, complete=True, rng=rng)
        played = play_round(rule="naming_game", memory=None, inventory=inventory, pairs=pairs, given=given,
                            n_names=2, payoffs=PAYOFFS, rng=rng)  # fmt: skip
        assert np.all(played.plays[committed & (played.plays != NO_NAME)] == 0)
        assert np.all(inventory.only(0)[committed])
    memory = Memory(n, 5)
    for _ in range(20):
        pairs = random_matching(n, EMPTY, EMPTY, complete=True, rng=rng)
        played = play_round(rule="best_response", memory=memory, inventory=None, pairs=pairs, given=given,
                            n_names=2, payoffs=PAYOFFS, rng=rng)  # fmt: skip
        assert np.all(played.plays[committed & (played.plays != NO_NAME)] == 0)


@pytest.mark.parametrize("rule", ["best_response", "naming_game"])
def test_no_move_voids_the_pair(rule):
    memory = Memory(4, 3)
    inventory = _inventory([{0}, {1}, {0}, {0}], 2)
    known, partners = inventory.known.copy(), memory.partner.copy()
    given = np.array([NO_MOVE, GIVE_RULE, GIVE_RULE, GIVE_RULE])
    played = play_round(rule=rule, memory=memory, inventory=inventory, pairs=np.array([[0, 1], [2, 3]]),
                        given=given, n_names=2, payoffs=PAYOFFS, rng=np.random.default_rng(0))  # fmt: skip
    assert played.void.tolist() == [True, False]
    assert not played.success[0] and played.plays[0] == played.plays[1] == NO_NAME
    assert np.array_equal(inventory.known[:2], known[:2]) and np.array_equal(memory.partner[:2], partners[:2])
    assert memory.filled.tolist() == [0, 0, 1, 1]


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown coordination rule"):
        play_round(rule="voter", memory=None, inventory=None, pairs=EMPTY.reshape(0, 2), given=EMPTY, n_names=2,
                   payoffs=PAYOFFS, rng=np.random.default_rng(0))  # fmt: skip


def _run_bytes(seed: int) -> bytes:
    """Twenty rounds of each rule on a ring, with a committed agent and a void move: all state as bytes."""
    n = 30
    network = build_network(NetworkSection(kind="lattice", degree=4), n, seed=0)
    rng = np.random.default_rng(seed)
    memory, inventory = Memory(n, 4), Inventory(n, 5)
    given = np.full(n, GIVE_RULE)
    given[0], given[1] = 2, NO_MOVE
    chunks = []
    for rule in ("best_response", "naming_game"):
        for _ in range(20):
            pairs = random_matching(n, network.indptr, network.indices, complete=False, rng=rng)
            played = play_round(rule=rule, memory=memory, inventory=inventory if rule == "naming_game" else None,
                                pairs=pairs, given=given, n_names=5, payoffs=PAYOFFS, rng=rng)  # fmt: skip
            chunks += [played.pairs.tobytes(), played.plays.tobytes(), played.success.tobytes()]
    return b"".join([*chunks, memory.own.tobytes(), memory.payoff.tobytes(), inventory.known.tobytes()])


def test_same_seed_same_bytes():
    assert _run_bytes(7) == _run_bytes(7)
    assert _run_bytes(7) != _run_bytes(8)
