"""The coordination (naming) game of one round: who plays whom, what each agent plays, what it learns.

A round pairs agents by a random matching, plays every pair once (speaker, listener), scores
success (equal plays) and updates each agent's record: a memory of its last M interactions
(best-response humans, LLM agents) or an inventory of known names (naming-game humans).
Studies (`culturesim.simulation.conventions`) and the oracles (`culturesim.checks.validate_conventions`) both run
`play_round`, so the oracles check the code the studies run.

Rules and their sources:

- `best_response` (Centola & Baronchelli 2015 PNAS 112:1989; Centola, Becker, Brackbill &
  Baronchelli 2018 Science 360:1116): play the name that would have earned most over the last M
  interactions held in memory. With one payoff for a match and a lower one for a mismatch, a name
  earns `match·c + mismatch·(M' − c)` when partners played it c times in M' remembered games, so
  this is the name partners played most often; ties are broken uniformly at random.
- `naming_game` (the minimal naming game, Baronchelli, Felici, Loreto, Caglioti & Steels 2006
  J. Stat. Mech. P06014; its two-name form with committed agents, the binary agreement model,
  Xie, Sreenivasan, Korniss, Zhang, Lim & Szymanski 2011 Phys. Rev. E 84:011130): the speaker
  says a uniformly random name of its inventory (inventing one if empty); the listener plays it
  back if it knows it (success: both keep only that name), else the game fails and the listener
  adds it.

Every draw comes from the generator passed in, in a fixed order, so a run is a pure function of
its seeds. Names are indices into the study's name list; times are rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_NAME = -1  # an agent without a name: no play this round, or an empty inventory
GIVE_RULE = -1  # in `given`: the human rule decides this agent's play
NO_MOVE = -2  # in `given`: the agent has no valid move, so its game is void
RULES = ("best_response", "naming_game")
_FEW_NAMES = 16  # up to this many names, `Inventory` draws a known name by scanning columns


def random_matching(
    n: int, indptr: np.ndarray, indices: np.ndarray, *, complete: bool, rng: np.random.Generator
) -> np.ndarray:
    """(P, 2) int64 pairs of distinct agents, each agent in at most one pair.

    Complete graph: a uniformly random permutation cut into consecutive pairs, so every agent but
    one (odd n) plays; `indptr`/`indices` are not read (pass empty arrays). Any other network
    (CSR neighbours, `culturesim.parts.network.Network`): a greedy random maximal matching: agents in a
    uniformly random order, each still free agent paired with a uniformly random free neighbour.
    Draws: the permutation, then (networks only) one uniform per agent, used where that agent
    picks a partner.
    """
    order = rng.permutation(n).astype(np.int64)
    if complete:
        return order[: 2 * (n // 2)].reshape(-1, 2)
    picks = rng.random(n)
    free = np.ones(n, dtype=bool)
    pairs = []
    for agent in order.tolist():  # greedy matching: each choice depends on the ones before it
        if not free[agent]:
            continue
        neighbours = indices[indptr[agent] : indptr[agent + 1]]
        open_ = neighbours[free[neighbours]]
        if open_.size == 0:
            continue
        partner = int(open_[int(picks[agent] * open_.size)])
        free[agent] = free[partner] = False
        pairs.append((agent, partner))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


class Memory:
    """The last M interactions of each agent: its own play, its partner's play, its payoff.

    Row i holds agent i's `filled[i]` entries in columns 0..filled[i]−1, oldest first (the newest
    at column filled[i]−1); when full, the oldest is dropped and the rest shift left. Empty cells
    hold NO_NAME (plays) and NaN (payoff). A partner without a name (NO_NAME) counts for no name.
    """

    def __init__(self, n: int, m: int) -> None:
        if m < 1:
            raise ValueError(f"memory must hold at least one interaction, got m={m}")
        self.m = m
        self.own = np.full((n, m), NO_NAME, dtype=np.int64)
        self.partner = np.full((n, m), NO_NAME, dtype=np.int64)
        self.payoff = np.full((n, m), np.nan)
        self.filled = np.zeros(n, dtype=np.int64)

    def push(self, agents: np.ndarray, own: np.ndarray, partner: np.ndarray, payoff: np.ndarray) -> None:
        """Append one interaction per agent (agents distinct), dropping the oldest of a full memory."""
        agents = np.asarray(agents, dtype=np.int64)
        full = agents[self.filled[agents] == self.m]
        for table in (self.own, self.partner, self.payoff):
            table[full, :-1] = table[full, 1:]
        column = np.minimum(self.filled[agents], self.m - 1)
        self.own[agents, column] = own
        self.partner[agents, column] = partner
        self.payoff[agents, column] = payoff
        self.filled[agents] = np.minimum(self.filled[agents] + 1, self.m)

    def fill(self, agents: np.ndarray, name: int, rounds: int, payoff: float) -> None:
        """An established convention: `rounds` past successes on `name`, replacing the memory (only
        the last m are remembered, so rounds > m fill it)."""
        if rounds < 0:
            raise ValueError(f"an established convention needs rounds >= 0, got {rounds}")
        rounds = min(rounds, self.m)
        agents = np.asarray(agents, dtype=np.int64)
        self.own[agents] = NO_NAME
        self.partner[agents] = NO_NAME
        self.payoff[agents] = np.nan
        self.own[agents, :rounds] = name
        self.partner[agents, :rounds] = name
        self.payoff[agents, :rounds] = payoff
        self.filled[agents] = rounds

    def entries(self, agent: int) -> list[tuple[int, int, float]]:
        """(own play, partner play, payoff) of an agent's remembered interactions, oldest first (for prompts)."""
        held = int(self.filled[agent])
        return [
            (int(o), int(p), float(x))
            for o, p, x in zip(
                self.own[agent, :held], self.partner[agent, :held], self.payoff[agent, :held], strict=True
            )
        ]

    def counts(self, agents: np.ndarray, n_names: int) -> np.ndarray:
        """(A, n_names) int64: how often each agent's remembered partners played each name (a partner
        without a name counts for none): what best response maximises."""
        agents = np.asarray(agents, dtype=np.int64)
        seen = self.partner[agents]
        rows, cols = np.nonzero((seen >= 0) & (seen < n_names))
        counts = np.bincount(rows * n_names + seen[rows, cols], minlength=agents.size * n_names)
        return counts.reshape(agents.size, n_names)

    def best_response(self, agents: np.ndarray, n_names: int, rng: np.random.Generator) -> np.ndarray:
        """The name each agent's partners played most often in its memory; ties (an empty memory:
        all names) broken uniformly at random. Draws one uniform per (agent, name)."""
        agents = np.asarray(agents, dtype=np.int64)
        counts = self.counts(agents, n_names)
        tiebreak = rng.random((agents.size, n_names))
        return np.where(counts == counts.max(axis=1, keepdims=True), tiebreak, -1.0).argmax(axis=1)


class Inventory:
    """The names each naming-game agent knows: a boolean (n, k) table, row i = agent i's inventory.

    `unbounded`: an agent that must speak with an empty inventory invents a brand-new name (index
    k, and k grows), as in the minimal naming game; otherwise it picks a uniformly random name of
    the k names of the list. Either way the invented name enters its inventory.
    """

    def __init__(self, n: int, k: int, *, unbounded: bool = False) -> None:
        if k < (0 if unbounded else 1):
            raise ValueError(f"an inventory needs names to choose from, got k={k}")
        self.unbounded = unbounded
        self.k = k
        self._known = np.zeros((n, max(k, 1)), dtype=bool)

    @property
    def known(self) -> np.ndarray:
        """(n, k) bool view: known[i, x] iff agent i knows name x."""
        return self._known[:, : self.k]

    def _reserve(self, k: int) -> None:
        """Make room for names 0..k−1 (capacity doubles, so invention costs amortised O(n) per name)."""
        if k > self._known.shape[1]:
            grown = np.zeros((self._known.shape[0], max(k, 2 * self._known.shape[1])), dtype=bool)
            grown[:, : self._known.shape[1]] = self._known
            self._known = grown
        self.k = max(self.k, k)

    def fill(self, agents: np.ndarray, name: int) -> None:
        """Set each agent's inventory to exactly {name}."""
        self._reserve(name + 1)
        self._known[agents] = False
        self._known[agents, name] = True

    @staticmethod
    def _random_known(rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A uniformly random known name per row: the floor(u·count)-th known one (u uniform in
        [0, 1)); NO_NAME for an empty row. Few names: a scan over columns; many: over the known
        cells only (both O(rows·k) in C, without an (rows, k) integer temporary)."""
        n_rows, k = rows.shape
        count = _row_counts(rows)
        rank = (u * count).astype(np.int64)
        pick = np.full(n_rows, NO_NAME, dtype=np.int64)
        if k <= _FEW_NAMES:
            seen = np.zeros(n_rows, dtype=np.int64)
            for name in range(k):
                column = rows[:, name]
                pick[column & (seen == rank)] = name
                seen += column
            return pick
        cells = np.flatnonzero(rows)  # row-major, so each row's known names are consecutive
        has = count > 0
        pick[has] = cells[(np.cumsum(count) - count)[has] + rank[has]] % k
        return pick

    def speak(self, agents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Each speaker's name: uniformly random from its inventory, or invented if that is empty.

        Draws one uniform per speaker, then (bounded, only if some inventory is empty) one integer
        per inventor.
        """
        agents = np.asarray(agents, dtype=np.int64)
        said = self._random_known(self.known[agents], rng.random(agents.size))
        inventors = np.flatnonzero(said == NO_NAME)
        if inventors.size:
            if self.unbounded:
                said[inventors] = self.k + np.arange(inventors.size)
                self._reserve(self.k + inventors.size)
            else:
                said[inventors] = rng.integers(self.k, size=inventors.size)
            self._known[agents[inventors], said[inventors]] = True
        return said

    def listen(self, agents: np.ndarray, heard: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Each listener's play: the heard name if it knows it, else a uniformly random known name
        (NO_NAME if its inventory is empty). Draws one uniform per listener."""
        agents = np.asarray(agents, dtype=np.int64)
        heard = np.asarray(heard, dtype=np.int64)
        self._reserve(int(heard.max(initial=-1)) + 1)
        rows = self.known[agents]
        other = self._random_known(rows, rng.random(agents.size))
        knows = (heard >= 0) & rows[np.arange(agents.size), np.maximum(heard, 0)]
        return np.where(knows, heard, other)

    def update(
        self,
        speakers: np.ndarray,
        listeners: np.ndarray,
        heard: np.ndarray,
        success: np.ndarray,
        frozen: np.ndarray,
    ) -> None:
        """Xie et al. 2011: on success both partners keep only the heard name; on failure the
        listener adds it (the speaker is unchanged). `frozen` (n,) bool: agents never changed
        (committed agents, agents whose play was given)."""
        speakers, listeners = np.asarray(speakers, dtype=np.int64), np.asarray(listeners, dtype=np.int64)
        heard = np.asarray(heard, dtype=np.int64)
        self._reserve(int(heard.max(initial=-1)) + 1)
        for agents, collapse in ((speakers, success), (listeners, success)):
            keep = collapse & ~frozen[agents]
            self._known[agents[keep]] = False
            self._known[agents[keep], heard[keep]] = True
        learn = ~success & ~frozen[listeners]
        self._known[listeners[learn], heard[learn]] = True

    def only(self, name: int) -> np.ndarray:
        """(n,) bool: agents whose inventory is exactly {name}."""
        if name >= self.k:
            return np.zeros(self._known.shape[0], dtype=bool)
        return self._known[:, name] & (_row_counts(self.known) == 1)


def _row_counts(rows: np.ndarray) -> np.ndarray:
    """True cells per row of a boolean table (a column sum when there are few columns: much faster
    than a reduction along a short axis)."""
    if rows.shape[1] > _FEW_NAMES:
        return np.count_nonzero(rows, axis=1)
    count = np.zeros(rows.shape[0], dtype=np.int64)
    for column in rows.T:
        count += column
    return count


@dataclass
class Round:
    """What one round did."""

    pairs: np.ndarray  # (P, 2): column 0 speaker, column 1 listener
    plays: np.ndarray  # (n,) name per agent, NO_NAME for agents outside a valid game
    success: np.ndarray  # (P,) bool (False for void games)
    void: np.ndarray  # (P,) bool: a partner made no valid move


def play_round(
    *,
    rule: str,
    memory: Memory | None,
    inventory: Inventory | None,
    pairs: np.ndarray,
    given: np.ndarray,
    n_names: int,
    payoffs: tuple[float, float],
    rng: np.random.Generator,
) -> Round:
    """One round over fixed pairs.

    `given` (n,): the name an agent plays whatever its rule (committed agents, LLM agents'
    answers), GIVE_RULE (−1) where the human rule decides, NO_MOVE (−2) for an agent with no valid
    move (its game is void: nothing changes for either partner, no payoff). Each pair is swapped
    with probability 1/2, then column 0 speaks and column 1 listens. `payoffs` = (match, mismatch).

    Updates in place: `memory` (pass one Memory covering every agent for best-response humans and
    LLM agents; every agent of a valid game gets the record, including those whose rule never
    reads it) and `inventory` (naming-game agents; never an agent with a given play).
    Draws, in order: the swaps (one uniform per pair), then the rule's draws (best_response: its
    tie-breaks for the deciding speakers, then listeners; naming_game: speak, then listen).
    """
    if rule not in RULES:
        raise ValueError(f"unknown coordination rule {rule!r}; choose one of {', '.join(RULES)}")
    given = np.asarray(given, dtype=np.int64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    swap = rng.random(len(pairs)) < 0.5
    pairs = np.where(swap[:, None], pairs[:, ::-1], pairs)
    void = (given[pairs[:, 0]] == NO_MOVE) | (given[pairs[:, 1]] == NO_MOVE)
    speakers, listeners = pairs[~void, 0], pairs[~void, 1]
    said, answer = given[speakers].copy(), given[listeners].copy()
    decide_s, decide_l = said == GIVE_RULE, answer == GIVE_RULE
    if rule == "best_response":
        if memory is None:
            raise ValueError("rule 'best_response' needs a Memory")
        deciders = np.concatenate([speakers[decide_s], listeners[decide_l]])
        chosen = memory.best_response(deciders, n_names, rng)
        said[decide_s] = chosen[: decide_s.sum()]
        answer[decide_l] = chosen[decide_s.sum() :]
    else:
        if inventory is None:
            raise ValueError("rule 'naming_game' needs an Inventory")
        said[decide_s] = inventory.speak(speakers[decide_s], rng)
        answer[decide_l] = inventory.listen(listeners[decide_l], said[decide_l], rng)
    matched = said == answer
    success = np.zeros(len(pairs), dtype=bool)
    success[~void] = matched
    plays = np.full(given.size, NO_NAME, dtype=np.int64)
    plays[speakers], plays[listeners] = said, answer
    if memory is not None:
        payoff = np.where(matched, payoffs[0], payoffs[1])
        memory.push(np.concatenate([speakers, listeners]), np.concatenate([said, answer]),
                    np.concatenate([answer, said]), np.concatenate([payoff, payoff]))  # fmt: skip
    if inventory is not None:
        inventory.update(speakers, listeners, said, matched, given != GIVE_RULE)
    return Round(pairs=pairs, plays=plays, success=success, void=void)
