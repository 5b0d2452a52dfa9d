"""The fixed vocabularies of a study file: learning biases, network kinds, LLM roles, metric names.

The config schema validates a study against these lists, and the modules that implement
them (learning rules, network builders, role prompts, the metric registry) work from the
same lists, so both sides stay in one place at the bottom of the package: this module
imports nothing of culturesim, and every other module may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

Bias = Literal["unbiased", "conformist", "prestige", "content", "similarity"]  # the one list of biases
BIASES: tuple[str, ...] = get_args(Bias)
NetworkKind = Literal["small_world", "scale_free", "random", "lattice", "communities", "complete"]
NETWORK_KINDS: tuple[str, ...] = get_args(NetworkKind)
Device = Literal["auto", "cpu", "cuda"]  # auto: CUDA where torch sees a GPU, else the CPU
LLMRole = Literal["rewrite", "combine", "create", "advise", "continue"]
LLM_ROLES: tuple[str, ...] = get_args(LLMRole)
# What agents do with each other in a generation: pass texts on, or play a coordination game
# (a convention is the name a population settles on; `culturesim.simulation.conventions`).
Interaction = Literal["transmission", "coordination"]
CoordinationRule = Literal["best_response", "naming_game"]  # model humans' rules in the coordination game

# Every metric `culturesim.parts.metrics` registers, by the name a study's [metrics].names uses;
# the registry refuses a name missing here, so this list is the registry's, sorted.
METRIC_NAMES: tuple[str, ...] = (
    "attractor_distance",
    "centroid_drift",
    "community_divergence",
    "distinct_traits",
    "homozygosity",
    "lexical_diversity",
    "llm_trait_share",
    "machine_ancestry",
    "norm_position",
    "novelty",
    "off_task",
    "semantic_diversity",
    "trait_entropy",
    "vendi",
    "vendi_q",
)
# Metrics that record more than one value, and the value names they record.
MULTI_KEY_METRICS = {
    "lexical_diversity": ("distinct_1", "distinct_2", "mean_length"),
    "vendi_q": ("vendi_q0.5", "vendi_q2", "vendi_qinf"),  # orders metrics.VENDI_ORDERS
}
# Values every run records besides its configured metrics.
BOOKKEEPING_KEYS = ("llm_failures", "pool_size")
# Values every LLM run of a study that retrains records each generation, of its LLM agents' model as
# it is then (the base model's before the first retraining, and always in a frozen condition): the
# held-out mean token negative log-likelihood (nats), the mean pairwise cosine distance of its own
# probe retellings, and the cosine distance of their mean from the base model's
# (`culturesim.study.model_probe`; NaN where `probe_texts` is 0).
MODEL_KEYS = ("model_heldout_nll", "model_own_diversity", "model_attractor_distance")
# Values a coordination run records each generation (besides `name_share:<name>` for every name, the
# share of the names played in the last round, and the bookkeeping keys);
# `culturesim.simulation.conventions` computes them.
COORDINATION_KEYS = (
    "dominant_share",
    "consensus",
    "names_in_use",
    "committed_share",
    "success_rate",
    "invalid_moves",
    "llm_valid_share",
    "llm_first_option_share",
    "llm_matches_partner_last",
    "llm_best_response_share",
)


# Values a coordination run whose model humans keep inventories (rule "naming_game") records besides:
# `held_only:<name>` for every name, the share of agents whose inventory holds only that name, and these.
INVENTORY_KEYS = ("held_mixed",)


def coordination_keys(names: Sequence[str], *, inventories: bool = False) -> list[str]:
    """The value names a coordination run with this name list records (`inventories`: its rule keeps them)."""
    keys = [f"name_share:{name}" for name in names]
    if inventories:
        keys += [f"held_only:{name}" for name in names] + list(INVENTORY_KEYS)
    return keys + list(COORDINATION_KEYS) + list(BOOKKEEPING_KEYS)


def recorded_keys(names: Sequence[str], norm_axes: Sequence[str] = (), *, retrains: bool = False) -> list[str]:
    """The value names a run with these metrics records (`retrains`: in a study that retrains its
    model): what a hypothesis may name as outcome."""
    keys: list[str] = list(MODEL_KEYS) if retrains else []
    for name in names:
        if name == "norm_position":
            keys.extend(f"norm_position:{axis}" for axis in norm_axes)
        else:
            keys.extend(MULTI_KEY_METRICS.get(name, (name,)))
    return keys + list(BOOKKEEPING_KEYS)
