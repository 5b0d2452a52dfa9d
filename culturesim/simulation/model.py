"""One run of a study: a population on a network passing texts for some generations.

The run is an agentpy `Model` (kept behind this one module; only its parameter and
setup plumbing is used). A generation has phases so that `culturesim.simulation.generation` can
advance many runs in lockstep and answer all their LLM requests in one batched call:

1. `plan(g)`        humans choose whom to copy and how (vectorised); LLM agents,
                    humans who consult an LLM and copies an LLM retells produce `Request`s.
2. `step(g, c)`     the completions turn every outcome into new traits and replace the
                    learners (turnover).
3. the generation function embeds all runs' new texts in one call (`attach_embeddings`).
4. `record(g)`      per-generation metrics into a long table.

The generation number `g` is always passed explicitly (agentpy's clock `t` is not used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import agentpy as ap
import numpy as np

from culturesim.parts.learning import (
    CONSULT_LLM,
    COPY,
    COPY_ERROR,
    INNOVATE,
    LLM_MUTATION,
    SocialLearner,
    copy_with_error,
    corpus_vocabulary,
    learning_outcomes,
)
from culturesim.parts.llm.base import Request
from culturesim.parts.llm.prompts import SINGLE_TEXT_ROLES, build_messages
from culturesim.parts.metrics import MetricInput, compute_metrics, mean_embedding, metric_names
from culturesim.parts.network import Network, build_network
from culturesim.parts.traits import TraitPool
from culturesim.schema.config import StudyConfig

# Independent random streams of a run (see `CultureModel.setup`).
STREAMS = ("network", "roles", "prestige", "culture", "learning")
# Purposes mixed into per-request seeds so that two requests of one agent never share a seed.
_LLM_AGENT, _CONSULT, _MUTATE = 0, 1, 2
MUTATION_ROLE = "rewrite"  # an LLM used as mutation operator retells the copied text


@dataclass(frozen=True)
class RunSpec:
    """Identity of one run of a study: its condition, replicate and seed material.

    `condition` is the condition's label, `condition_index` its place in the study's condition
    grid (which config the run uses) and `levels` its factor levels as (field, level) pairs in grid
    order (the manifest records them as an object; a tuple keeps a planned run immutable); a run
    outside a study grid (validation, benchmarks) is condition 0 with no factors.
    The run's random streams derive from (`study_seed`, `replicate`) only, so replicate k of
    every condition shares common random numbers."""

    run_id: str
    condition: str
    replicate: int
    study_seed: int
    condition_index: int = 0
    levels: tuple[tuple[str, Any], ...] = ()


def request_seed(study_seed: int, replicate: int, generation: int, agent: int, purpose: int) -> int:
    """A 31-bit sampling seed derived from (study seed, replicate, generation, agent, purpose)."""
    state = np.random.SeedSequence([study_seed, replicate, generation, agent, purpose]).generate_state(1)
    return int(state[0] & 0x7FFFFFFF)


def run_streams(study_seed: int, replicate: int) -> dict[str, np.random.Generator]:
    """The independent random streams of one run, keyed by the part of the model they drive."""
    streams = np.random.SeedSequence(study_seed, spawn_key=(replicate,)).spawn(len(STREAMS))
    return dict(zip(STREAMS, (np.random.default_rng(s) for s in streams), strict=True))


def run_network(config: StudyConfig, network_rng: np.random.Generator) -> Network:
    """The network of a run, from its network stream (figures rebuild it the same way)."""
    return build_network(config.network, config.population.size, seed=int(network_rng.integers(2**31)))


class CultureModel(ap.Model):
    """A mixed human/LLM population evolving a culture of texts.

    Parameters (agentpy `p`): `config` (StudyConfig of one condition), `spec` (RunSpec),
    `corpus` (list of seed texts), `dim` (embedding size), `norm_axes` (name -> axis),
    `attractor` (the LLM's attractor, `culturesim.calibration.attractor`, or None in a human-only study).
    """

    def setup(self) -> None:
        config: StudyConfig = self.p["config"]
        spec: RunSpec = self.p["spec"]
        self.config, self.spec = config, spec
        self.corpus: list[str] = self.p["corpus"]
        self.vocabulary = corpus_vocabulary(self.corpus)
        # Common random numbers: one stream per part of the model, each depending on (study seed,
        # replicate) only, so replicate k of every condition shares every part its condition leaves
        # unchanged (e.g. the same initial culture when only the network differs).
        rngs = run_streams(spec.study_seed, spec.replicate)
        self.rng = rngs["learning"]

        n = config.population.size
        self.network: Network = run_network(config, rngs["network"])
        n_llm = round(config.population.llm_share * n)
        self.is_llm = np.zeros(n, dtype=bool)
        self.is_llm[rngs["roles"].permutation(n)[:n_llm]] = True
        self.humans = np.flatnonzero(~self.is_llm)
        self.llm_agents = np.flatnonzero(self.is_llm)
        self.prestige = rngs["prestige"].lognormal(0.0, 0.5, size=n)
        self.prestige[self.is_llm] = config.population.llm_visibility
        humans = config.humans
        self.learner = SocialLearner.checked(
            indptr=self.network.indptr,
            indices=self.network.indices,
            prestige=self.prestige,
            bias=humans.bias,
            k=humans.demonstrators,
            dim=self.p["dim"],
            conformity=humans.conformity,
            content_axis=self.p["content_axis"],
            content_strength=humans.content_strength,
            similarity_strength=humans.similarity_strength,
        )

        self.pool = TraitPool(self.p["dim"])
        self.traits = self._initial_traits(rngs["culture"], n)
        self.records: list[dict[str, object]] = []
        self.population: list[np.ndarray] = []  # trait id per agent, one array per recorded generation
        self.initial_centroid: np.ndarray | None = None
        self.word_cache: dict[int, tuple[list[str], list[tuple[str, str]]]] = {}  # see MetricInput
        self._plan: dict[str, np.ndarray] | None = None
        self.llm_failures = 0
        # The LLM agents' model as it is now (`culturesim.study.retraining` sets it): recorded with the culture.
        self.model_metrics: dict[str, float] = {}

    def _initial_traits(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Seed texts: one per agent, or `initial_variants` shared ones."""
        variants = self.config.corpus.initial_variants or n
        replace = variants > len(self.corpus)
        chosen = rng.choice(len(self.corpus), size=variants, replace=replace)
        ids = self.pool.add([self.corpus[i] for i in chosen], author_kind="seed", parents=[()] * variants, generation=0)
        if variants == n:
            return rng.permutation(ids)
        return rng.choice(ids, size=n)

    # -- phase 1 ---------------------------------------------------------------------------
    def plan(self, generation: int) -> list[Request]:
        """Choose learners, models and outcomes; return the LLM requests generation `generation` needs."""
        humans, config = self.config.humans, self.config
        n_learners = round(config.population.turnover * len(self.humans))
        # The draw of rng.choice(humans, ...) (choice draws the same positions for an array as for
        # its length), in agent order: a mask instead of a sort.
        chosen = np.zeros(len(self.humans), dtype=bool)
        chosen[self.rng.choice(len(self.humans), size=n_learners, replace=False)] = True
        learners = self.humans[chosen]
        models = self.learner.choose(learners, traits=self.traits, embeddings=self.pool.embeddings, rng=self.rng)
        outcomes = learning_outcomes(
            n_learners,
            copy_error=humans.copy_error,
            innovation=humans.innovation,
            llm_consultation=humans.llm_consultation,
            llm_mutation=humans.llm_mutation,
            rng=self.rng,
        )
        isolated = models < 0
        if isolated.any():  # isolated learners keep their own trait
            outcomes[isolated] = COPY
            models = np.where(isolated, learners, models)
        consulting = learners[outcomes == CONSULT_LLM]
        mutating = outcomes == LLM_MUTATION
        askers = np.concatenate([self.llm_agents, consulting, learners[mutating]])
        shown = self._neighbour_traits(askers[: len(askers) - int(mutating.sum())])
        copied = np.full((int(mutating.sum()), shown.shape[1]), -1, dtype=np.int64)
        copied[:, 0] = self.traits[models[mutating]]  # a mutation retells the copied text only
        shown = np.concatenate([shown, copied])
        if config.llm.prompt.role in SINGLE_TEXT_ROLES:
            shown[: len(self.llm_agents), 1:] = -1  # a rewrite or continuation reads one text: its only parent
        self._plan = {"learners": learners, "models": models, "outcomes": outcomes, "shown": shown, "askers": askers}
        self._plan["generation"] = np.int64(generation)
        self._plan["consulting"] = np.int64(len(consulting))
        purposes = np.repeat([_LLM_AGENT, _CONSULT, _MUTATE], [len(self.llm_agents), len(consulting), mutating.sum()])
        roles = {_LLM_AGENT: config.llm.prompt.role, _CONSULT: "advise", _MUTATE: MUTATION_ROLE}
        requests = []
        for row, (agent, purpose) in enumerate(zip(askers, purposes, strict=True)):
            role = roles[int(purpose)]
            texts = [self.pool.texts[t] for t in shown[row] if t >= 0]
            seed = request_seed(self.spec.study_seed, self.spec.replicate, generation, int(agent), int(purpose))
            requests.append(
                Request(
                    messages=build_messages(role, texts, max_chars=config.llm.prompt.max_chars),
                    seed=seed,
                    sampling=config.llm.sampling,
                )
            )
        return requests

    def _neighbour_traits(self, askers: np.ndarray) -> np.ndarray:
        """(A, r) trait ids of r sampled neighbours per asker (own trait for isolated ones)."""
        if len(askers) == 0:
            return np.zeros((0, self.config.llm.prompt.neighbours_read), dtype=np.int64)
        demonstrators = self.learner.sample(askers, rng=self.rng, k=self.config.llm.prompt.neighbours_read)
        demonstrators = np.where(demonstrators < 0, askers[:, None], demonstrators)
        return self.traits[demonstrators]

    def askers(self) -> np.ndarray:
        """Agents behind this generation's requests, in request order (LLM agents, then consulting humans)."""
        if self._plan is None:
            raise RuntimeError("askers() is only known between plan() and step()")
        return self._plan["askers"]

    # -- phase 2 ---------------------------------------------------------------------------
    def step(self, generation: int, texts: list[str]) -> None:
        """Turn this generation's outcomes into traits (synchronous update from the old state);
        `texts` are the adopted answers to the requests of `plan(generation)`, in the same order
        (`llm.prompts.Adoption.text`; "" where nothing usable came back)."""
        if self._plan is None or int(self._plan["generation"]) != generation:
            raise RuntimeError(f"plan({generation}) must run before step({generation})")
        if len(texts) != len(self._plan["askers"]):
            expected = len(self._plan["askers"])
            raise ValueError(f"step() needs one text per request: expected {expected}, got {len(texts)}")
        plan = self._plan
        new_traits = self.traits.copy()
        learners, models, outcomes = plan["learners"], plan["models"], plan["outcomes"]
        model_traits = self.traits[models]

        copying = outcomes == COPY
        new_traits[learners[copying]] = model_traits[copying]

        erring = outcomes == COPY_ERROR
        parents = model_traits[erring]
        mutated = copy_with_error([self.pool.texts[t] for t in parents], rng=self.rng, vocabulary=self.vocabulary)
        new_traits[learners[erring]] = self.pool.add(
            mutated, author_kind="human_error", parents=[(int(p),) for p in parents], generation=generation
        )

        innovating = outcomes == INNOVATE
        picks = self.rng.integers(len(self.corpus), size=int(innovating.sum()))
        new_traits[learners[innovating]] = self.pool.add(
            [self.corpus[i] for i in picks],
            author_kind="human_innovation",
            parents=[()] * len(picks),
            generation=generation,
        )

        # An LLM mutation that comes back unusable leaves the faithful copy.
        mutating = outcomes == LLM_MUTATION
        new_traits[learners[mutating]] = model_traits[mutating]

        askers = plan["askers"]
        n_agents = len(self.llm_agents)
        n_asking = n_agents + int(plan["consulting"])
        for kind, rows in (
            ("llm", slice(0, n_agents)),
            ("human_llm_assisted", slice(n_agents, n_asking)),
            ("human_llm_mutated", slice(n_asking, None)),
        ):
            self._adopt_texts(new_traits, askers[rows], plan["shown"][rows], texts[rows], kind, generation)

        self.traits = new_traits
        self._plan = None

    def _adopt_texts(
        self,
        new_traits: np.ndarray,
        agents: np.ndarray,
        shown: np.ndarray,
        texts: list[str],
        kind: str,
        generation: int,
    ) -> None:
        """Agents adopt their answer's text; where it is "" (nothing usable) they keep their trait."""
        usable = np.array([bool(t) for t in texts], dtype=bool)
        self.llm_failures += int((~usable).sum())
        if not usable.any():
            return
        new_traits[agents[usable]] = self.pool.add(
            [t for t, ok in zip(texts, usable, strict=True) if ok],
            author_kind=kind,
            parents=[tuple(int(p) for p in row if p >= 0) for row in shown[usable]],
            generation=generation,
        )

    # -- phase 4 ---------------------------------------------------------------------------
    def record(self, generation: int) -> dict[str, float]:
        """Metrics of generation `generation` (0: the initial culture), appended to `records` in long format."""
        embeddings = self.pool.embeddings
        if self.initial_centroid is None:
            self.initial_centroid = mean_embedding(self.traits, embeddings)
        values = compute_metrics(
            metric_names(self.config.metrics.names, attractor=self.p["attractor"] is not None),
            MetricInput(
                traits=self.traits,
                embeddings=embeddings,
                texts=self.pool.texts,
                machine_ancestry=self.pool.machine_ancestry,
                machine_authored=self.pool.machine_authored,
                born=self.pool.born,
                generation=generation,
                initial_centroid=self.initial_centroid,
                communities=self.network.communities,
                norm_axes=self.p["norm_axes"],
                attractor=self.p["attractor"],
                word_cache=self.word_cache,
            ),
        )
        values["llm_failures"] = float(self.llm_failures)
        values["pool_size"] = float(len(self.pool))
        values.update(self.model_metrics)
        self.llm_failures = 0
        if self.config.study.save_population:
            self.population.append(self.traits.copy())
        for metric, value in values.items():
            self.records.append({"generation": generation, "metric": metric, "value": float(value)})
        return values


def build_run(
    config: StudyConfig,
    spec: RunSpec,
    *,
    corpus: list[str],
    dim: int,
    content_axis: np.ndarray | None = None,
    norm_axes: dict[str, np.ndarray] | None = None,
    attractor: np.ndarray | None = None,
) -> CultureModel:
    """A run set up at generation 0 (its seed texts still wait for their embeddings)."""
    model = CultureModel(
        {
            "config": config,
            "spec": spec,
            "corpus": corpus,
            "dim": dim,
            "content_axis": content_axis,
            "norm_axes": norm_axes or {},
            "attractor": attractor,
        }
    )
    model.sim_setup(steps=config.study.generations, seed=spec.study_seed)
    return model
