"""The ODD sections of a coordination study (`[study] interaction = "coordination"`).

`culturesim.study.odd.describe` writes the header and the purpose for every study, and these sections
for a coordination study instead of the text-transmission ones. The LLM prompt is
`llm.convention_prompts.game_rules` verbatim; the rules' sources are those of
`culturesim.parts.coordination_rules`.
"""

from __future__ import annotations

from culturesim.core.vocabulary import COORDINATION_KEYS
from culturesim.parts.llm.convention_prompts import game_rules
from culturesim.schema.config import StudyConfig

RULES = {
    "best_response": (
        "memory-based best response (Centola, Becker, Brackbill & Baronchelli 2018; Centola & Baronchelli "
        "2015): it plays the name its partners played most often in its last {memory} games (the name that "
        "would have earned most there), ties broken uniformly at random, a uniformly random name before its "
        "first game"
    ),
    "naming_game": (
        "the binary-agreement naming game (Baronchelli et al. 2006; Xie et al. 2011): it keeps an inventory "
        "of names; as speaker it says a uniformly random name of it; as listener it plays the speaker's name "
        "if it knows it, else a random name it knows; on a match both partners keep only that name, on a "
        "mismatch the listener adds the speaker's name"
    ),
}


def coordination_sections(config: StudyConfig, base: StudyConfig) -> list[str]:
    """ODD sections 2-7 of a coordination study; `base` is the condition described in full."""
    return [_entities(base), _process(base), _design_concepts(base), _initialization(config, base),
            _input_data(base), _submodels(base)]  # fmt: skip


def _entities(base: StudyConfig) -> str:
    game, population = base.coordination, base.population
    return "\n".join(
        [
            "## 2. Entities, state variables and scales",
            "",
            f"- **Agents**: {population.size} per run: a share {game.committed_fraction} committed agents "
            f"(counted as {game.committed_kind}s) who always play `{game.committed_name}`, a share "
            f"{population.llm_share} LLM agents, the rest model humans. State: the name each played last; "
            f"its last {game.memory} games (its name, its partner's, its points); model humans of the naming "
            "game also an inventory of names.",
            f"- **Names**: {', '.join(f'`{n}`' for n in game.names)}.",
            f"- **Network**: who can be paired; {base.network.kind} (fixed during a run).",
            f"- **Scales**: time in rounds ({base.study.generations} per run, one game per agent per round); "
            f"{base.study.replicates} replicates per condition.",
        ]
    )


def _process(base: StudyConfig) -> str:
    return "\n".join(
        [
            "## 3. Process overview and scheduling",
            "",
            "Each round, for every run of the study in lockstep:",
            "",
            "1. **Pairing.** A random matching over the network: on a complete graph a random permutation cut "
            "into pairs, elsewhere a greedy random maximal matching; an unpaired agent sits the round out. One "
            "partner of each pair is the speaker, the other the listener (at random).",
            "2. **LLM requests.** Every uncommitted LLM agent in a pair is asked for its name; every request of "
            "every run of the round is answered in one batched engine call (plus retry rounds).",
            "3. **Moves.** Committed agents play their name; LLM agents their answer (an answer that names no "
            "single option is no move, and its pair's game is void); model humans play by their rule.",
            "4. **Scoring and memory.** A pair matches when both play the same name; both partners score the "
            "payoff and remember the game; naming-game inventories are updated.",
            "5. **Observation.** The values below are recorded.",
        ]
    )


def _design_concepts(base: StudyConfig) -> str:
    game = base.coordination
    return "\n".join(
        [
            "## 4. Design concepts",
            "",
            "- **Basic principles**: social conventions as equilibria of a coordination game (Lewis 1969); "
            "the naming game (Baronchelli et al. 2006) and committed minorities that tip a convention "
            "(Xie et al. 2011; Centola et al. 2018); LLM populations playing the same game (Ashery, Aiello & "
            "Baronchelli 2025).",
            "- **Emergence**: a shared name (consensus: a share of at least "
            f"{game.consensus} of the agents on one name), and whether the committed name takes over.",
            f"- **Adaptation**: model humans follow the rule `{game.rule}`; LLM agents answer from their memory.",
            f"- **Objectives**: each game pays {game.payoff_match:g} points to both partners on a match, "
            f"{game.payoff_mismatch:g} otherwise.",
            f"- **Sensing**: an agent knows only its own last {game.memory} games.",
            "- **Interaction**: pairwise games along network edges.",
            f"- **Stochasticity**: independent streams per run part (network, roles, committed, pairing, play, "
            f"option order), seeded from the study seed {base.study.seed} and the replicate; the committed "
            "agents of a larger fraction include those of a smaller one (common random numbers). Each LLM "
            "request has its own seed and shows the names in its own random order, so a model's position bias "
            "cannot become a collective bias.",
            "- **Observation**: `name_share:<name>`, the share of the names played in the last round (an agent "
            "that sat the round out, or whose game was void, counts with the name it played before; a listener "
            "in the naming game plays the name it heard when it knows it)"
            + (
                "; `held_only:<name>`, the share of the agents keeping an inventory whose inventory holds only "
                "that name, and `held_mixed`, the share holding two names or more (the densities of the "
                "mean-field theory, Xie et al. 2011)"
                if game.rule == "naming_game"
                else ""
            )
            + "; "
            + ", ".join(f"`{key}`" for key in COORDINATION_KEYS)
            + ".",
        ]
    )


def _initialization(config: StudyConfig, base: StudyConfig) -> str:
    game = base.coordination
    if game.established_name is None:
        start = "Agents start with no name and an empty memory."
    else:
        start = (
            f"An established convention: every agent starts with `{game.established_name}`, its memory holding "
            f"{game.established_rounds} past successful games on it (naming game: an inventory of that name only)."
        )
    lines = ["## 5. Initialization", "", start]
    grid = config.condition_grid()
    if len(grid) > 1:
        lines += ["", "Conditions:", ""] + [f"- `{label}`" for label, _ in grid]
    return "\n".join(lines)


def _input_data(base: StudyConfig) -> str:
    return "## 6. Input data\n\nNone: the names are the study's list; no external data drive the dynamics."


def _submodels(base: StudyConfig) -> str:
    game, llm = base.coordination, base.llm
    lines = [
        "## 7. Submodels",
        "",
        f"- **Model humans**: {RULES[game.rule].format(memory=game.memory)}.",
    ]
    if base.uses_llm():
        sampling = llm.sampling
        lines += [
            f"- **LLM agents** are told (system message): “{game_rules(game.payoff_match, game.payoff_mismatch)}” "
            f"and then shown their last {game.memory} rounds (their name, their partner's, their points) and the "
            "names in a random order. vLLM (structured outputs, also behind `vllm serve`) and the transformers "
            "backend (a token mask) constrain the answer to the names; another server's answers are parsed "
            f"(exactly one name) and asked again up to {llm.prompt.retries} times. "
            f"Model `{llm.engine.model}` ({llm.engine.backend}, {llm.engine.dtype}), temperature "
            f"{sampling.temperature}, top-p {sampling.top_p}, at most {sampling.max_tokens} new tokens.",
        ]
    return "\n".join(lines)
