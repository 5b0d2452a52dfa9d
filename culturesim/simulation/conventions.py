"""One run of a coordination study: a population on a network settling on a name (a convention).

The second kind of interaction beside text transmission (`culturesim.simulation.model.CultureModel`). It has
the same phases, so `culturesim.simulation.generation.advance` runs it unchanged (lockstep batching of every
run's LLM requests, the completion log, resume, replay, executors):

1. `plan(g)`   pair the agents (a random matching over the network, `coordination_rules`) and
               write one `Request` per uncommitted LLM agent in a pair: the game's rules, its last
               M rounds and the names in a random order (`llm.convention_prompts`), constrained to
               the names where the engine can.
2. `step(g, a)` the answers become moves (an invalid answer is no move: its pair's game is void),
               committed agents play their name, model humans play by their rule, and every pair's
               game is scored and remembered (`coordination_rules.play_round`).
3. `record(g)` name shares, consensus, the LLM players' diagnostics; under the naming game also
               what the inventories hold (`held_only:<name>`, `held_mixed`).

The names are the run's traits (trait id = the name's place in the list, author kind "seed"), so
`population.parquet` says which name each agent last played (-1: none yet) and the results folder
has the same tables as a transmission study.
"""

from __future__ import annotations

import agentpy as ap
import numpy as np

from culturesim.parts.coordination_rules import (
    GIVE_RULE,
    NO_MOVE,
    NO_NAME,
    Inventory,
    Memory,
    Round,
    play_round,
    random_matching,
)
from culturesim.parts.llm.base import Request
from culturesim.parts.llm.convention_prompts import game_messages
from culturesim.parts.network import Network
from culturesim.parts.traits import TraitPool
from culturesim.schema.config import StudyConfig
from culturesim.simulation.model import RunSpec, request_seed, run_network

# Independent random streams of a coordination run; each depends on (study seed, replicate) only, so
# replicate k of every condition shares them (common random numbers): the same network, the same
# agents committed first (a larger committed fraction adds agents to a smaller one's), the same
# LLM agents among the rest, the same pairings.
STREAMS = ("network", "roles", "committed", "pairing", "play", "order")
_COORDINATE = 3  # purpose mixed into request seeds (0-2 are the transmission model's)


def convention_streams(study_seed: int, replicate: int) -> dict[str, np.random.Generator]:
    """The random streams of one coordination run, keyed by what they drive."""
    streams = np.random.SeedSequence(study_seed, spawn_key=(replicate, _COORDINATE)).spawn(len(STREAMS))
    return dict(zip(STREAMS, (np.random.default_rng(s) for s in streams), strict=True))


class ConventionModel(ap.Model):
    """A mixed human/LLM population playing the coordination game of a study's [coordination] table.

    Parameters (agentpy `p`): `config` (StudyConfig of one condition), `spec` (RunSpec), `dim`
    (embedding size of the names' vectors)."""

    def setup(self) -> None:
        config: StudyConfig = self.p["config"]
        self.config, self.spec = config, self.p["spec"]
        game = config.coordination
        self.names = list(game.names)
        rngs = convention_streams(self.spec.study_seed, self.spec.replicate)
        self.pairing_rng, self.play_rng, self.order_rng = rngs["pairing"], rngs["play"], rngs["order"]
        n = config.population.size
        self.network: Network = run_network(config, rngs["network"])
        self.complete = config.network.kind == "complete"

        self.committed = np.zeros(n, dtype=bool)
        self.committed[rngs["committed"].permutation(n)[: round(game.committed_fraction * n)]] = True
        order = rngs["roles"].permutation(n)
        llm_agents = order[~self.committed[order]][: round(config.population.llm_share * n)]
        self.is_llm = np.zeros(n, dtype=bool)
        self.is_llm[llm_agents] = True
        self.asks_llm = self.is_llm.copy()  # LLM agents that decide by asking (committed ones never do)
        if game.committed_kind == "llm":
            self.is_llm |= self.committed
        self.committed_name = game.name_index(game.committed_name)
        self.payoffs = (game.payoff_match, game.payoff_mismatch)

        self.memory = Memory(n, game.memory)
        self.inventory = Inventory(n, len(self.names)) if game.rule == "naming_game" else None
        established = game.name_index(game.established_name)
        self.traits = np.full(n, NO_NAME, dtype=np.int64)  # each agent's current name (its last play)
        if established != NO_NAME:
            everyone = np.arange(n)
            self.memory.fill(everyone, established, game.established_rounds, game.payoff_match)
            if self.inventory is not None:
                self.inventory.fill(everyone, established)
            self.traits[:] = established
        if self.committed.any():
            self.traits[self.committed] = self.committed_name
            if self.inventory is not None:
                self.inventory.fill(np.flatnonzero(self.committed), self.committed_name)

        self.pool = TraitPool(self.p["dim"])
        self.pool.add(self.names, author_kind="seed", parents=[()] * len(self.names), generation=0)
        self.records: list[dict[str, object]] = []
        self.population: list[np.ndarray] = []
        self.llm_failures = 0
        self.last_round: Round | None = None  # the round step() played last (pairs, plays, outcomes)
        self._plan: dict[str, np.ndarray] | None = None
        self._round: dict[str, float] = {}

    # -- phase 1 ---------------------------------------------------------------------------
    def plan(self, generation: int) -> list[Request]:
        """Pair the agents; one request per uncommitted LLM agent in a pair."""
        n = len(self.traits)
        pairs = random_matching(n, self.network.indptr, self.network.indices, complete=self.complete,
                                rng=self.pairing_rng)  # fmt: skip
        playing = np.zeros(n, dtype=bool)
        playing[pairs.ravel()] = True
        askers = np.flatnonzero(playing & self.asks_llm)
        orders = np.array([self.order_rng.permutation(len(self.names)) for _ in askers], dtype=np.int64)
        orders = orders.reshape(len(askers), len(self.names))
        requests = []
        for agent, order in zip(askers, orders, strict=True):
            history = [(self.names[own], self.names[partner], points)
                       for own, partner, points in self.memory.entries(int(agent))]  # fmt: skip
            seed = request_seed(self.spec.study_seed, self.spec.replicate, generation, int(agent), _COORDINATE)
            requests.append(
                Request(
                    messages=game_messages(history, [self.names[i] for i in order], payoffs=self.payoffs),
                    seed=seed,
                    sampling=self.config.llm.sampling,
                    choices=tuple(self.names),
                )
            )
        self._plan = {"pairs": pairs, "askers": askers, "orders": orders, "generation": np.int64(generation)}
        return requests

    def askers(self) -> np.ndarray:
        """Agents behind this generation's requests, in request order."""
        if self._plan is None:
            raise RuntimeError("askers() is only known between plan() and step()")
        return self._plan["askers"]

    # -- phase 2 ---------------------------------------------------------------------------
    def step(self, generation: int, texts: list[str]) -> None:
        """Play the round: `texts` are the LLM agents' adopted answers in request order (a name, or ""
        where no answer was a valid move)."""
        if self._plan is None or int(self._plan["generation"]) != generation:
            raise RuntimeError(f"plan({generation}) must run before step({generation})")
        plan = self._plan
        if len(texts) != len(plan["askers"]):
            raise ValueError(f"step() needs one answer per request: expected {len(plan['askers'])}, got {len(texts)}")
        chosen = np.array([self.names.index(t) if t else NO_MOVE for t in texts], dtype=np.int64)
        self._round = self._player_diagnostics(plan["askers"], plan["orders"], chosen)
        given = np.full(len(self.traits), GIVE_RULE, dtype=np.int64)
        given[self.committed] = self.committed_name
        given[plan["askers"]] = chosen
        played = play_round(
            rule=self.config.coordination.rule,
            memory=self.memory,
            inventory=self.inventory,
            pairs=plan["pairs"],
            given=given,
            n_names=len(self.names),
            payoffs=self.payoffs,
            rng=self.play_rng,
        )
        self.last_round = played
        moved = played.plays >= 0
        self.traits = np.where(moved, played.plays, self.traits)
        valid_games = ~played.void
        self._round["success_rate"] = float(played.success[valid_games].mean()) if valid_games.any() else np.nan
        self._round["invalid_moves"] = float((chosen == NO_MOVE).sum())
        self.llm_failures += int((chosen == NO_MOVE).sum())
        self._plan = None

    def _player_diagnostics(self, askers: np.ndarray, orders: np.ndarray, chosen: np.ndarray) -> dict[str, float]:
        """How the LLM agents played this round, from their memory before it: valid answers, the share
        that took the first option shown (1/K without position bias), that repeated the last partner's
        name, and that were a best response to their memory (any of its tied best names)."""
        valid = chosen != NO_MOVE
        result = dict.fromkeys(
            ("llm_valid_share", "llm_first_option_share", "llm_matches_partner_last", "llm_best_response_share"),
            np.nan,
        )
        if len(askers) == 0:
            return result
        result["llm_valid_share"] = float(valid.mean())
        if not valid.any():
            return result
        result["llm_first_option_share"] = float((orders[valid, 0] == chosen[valid]).mean())
        remembered = valid & (self.memory.filled[askers] > 0)
        if remembered.any():
            agents, picks = askers[remembered], chosen[remembered]
            last = self.memory.partner[agents, self.memory.filled[agents] - 1]  # newest entry (left-aligned rows)
            result["llm_matches_partner_last"] = float((last == picks).mean())
            counts = self.memory.counts(agents, len(self.names))
            best = counts[np.arange(len(agents)), picks] == counts.max(axis=1)
            result["llm_best_response_share"] = float(best.mean())
        return result

    def _inventory_shares(self) -> dict[str, float]:
        """What the naming game's inventories hold, as shares of the agents that keep one (all but
        the LLM agents that ask; committed agents hold only their name): `held_only:<name>`, the share
        whose inventory is exactly {name}, and `held_mixed`, the share holding two names or more. These
        are the densities of Xie et al. 2011's mean-field theory (`core.convention_theory`: n_A + p for
        the committed name A, n_B, n_AB); the rest of the agents hold no name yet."""
        known = self.inventory.known[~self.asks_llm]
        sizes = known.sum(axis=1)
        only = np.bincount(known[sizes == 1].argmax(axis=1), minlength=len(self.names))
        keepers = len(known)
        shares = only / keepers if keepers else np.full(len(self.names), np.nan)
        values = {f"held_only:{name}": float(share) for name, share in zip(self.names, shares, strict=True)}
        values["held_mixed"] = float((sizes > 1).sum() / keepers) if keepers else np.nan
        return values

    # -- phase 4 ---------------------------------------------------------------------------
    def record(self, generation: int) -> dict[str, float]:
        """Name shares and consensus of generation `generation` (0: the state before any round),
        with this round's games and LLM diagnostics (NaN where there were none).

        `name_share:<name>` is the share of the names played in the last round, among the agents that
        have played (an agent that sat the round out, or whose game was void, counts with the name it
        played before). A listener in the naming game plays the name it heard when it knows it, so this
        is what was said, not what the inventories hold: that is `held_only:<name>`."""
        game = self.config.coordination
        held = self.traits[self.traits >= 0]
        shares = np.bincount(held, minlength=len(self.names)) / len(held) if len(held) else np.zeros(len(self.names))
        values = {f"name_share:{name}": float(share) for name, share in zip(self.names, shares, strict=True)}
        if self.inventory is not None:
            values.update(self._inventory_shares())
        dominant = float(shares.max())
        values.update(
            dominant_share=dominant,
            consensus=float(len(held) > 0 and dominant >= game.consensus),
            names_in_use=float((shares > 0).sum()),
            committed_share=float(shares[self.committed_name]) if self.committed_name >= 0 else np.nan,
        )
        empty = dict.fromkeys(
            ("success_rate", "invalid_moves", "llm_valid_share", "llm_first_option_share",
             "llm_matches_partner_last", "llm_best_response_share"),
            np.nan,
        )  # fmt: skip
        values.update({**empty, **self._round})
        values["llm_failures"] = float(self.llm_failures)
        values["pool_size"] = float(len(self.pool))
        self.llm_failures, self._round = 0, {}
        if self.config.study.save_population:
            self.population.append(self.traits.copy())
        for metric, value in values.items():
            self.records.append({"generation": generation, "metric": metric, "value": float(value)})
        return values


def build_convention_run(config: StudyConfig, spec: RunSpec, *, dim: int) -> ConventionModel:
    """A coordination run set up at generation 0 (its names still wait for their embeddings)."""
    model = ConventionModel({"config": config, "spec": spec, "dim": dim})
    model.sim_setup(steps=config.study.generations, seed=spec.study_seed)
    return model
