"""The `[coordination]` table of a study file: the coordination (naming) game and its committed minority.

A study with `[study] interaction = "coordination"` plays this game each generation instead of
passing texts (`culturesim.simulation.conventions`): agents are paired, each names one option of `names`, and
both partners score `payoff_match` when the names agree, `payoff_mismatch` otherwise. The defaults
follow Ashery, Aiello & Baronchelli 2025 (Science Advances 11:eadu9368): +100 / -50 and a memory of
the last 5 interactions.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from culturesim.core.vocabulary import CoordinationRule
from culturesim.schema.sections import Section

DEFAULT_NAMES = ("F", "J", "K", "M", "Q", "R", "V", "W", "X", "Z")


class CoordinationSection(Section):
    names: tuple[str, ...] = Field(
        default=DEFAULT_NAMES, min_length=2, max_length=100, description="the options every agent names one of"
    )
    rule: CoordinationRule = Field(
        default="best_response",
        description="model humans' rule: 'best_response' to their last `memory` games (Centola et al. 2018) "
        "or the binary-agreement 'naming_game' with an inventory of names (Xie et al. 2011)",
    )
    memory: int = Field(default=5, ge=1, le=1000, description="interactions each agent remembers (M)")
    payoff_match: float = Field(default=100.0, ge=-1e6, le=1e6, description="points each partner gets on a match")
    payoff_mismatch: float = Field(default=-50.0, ge=-1e6, le=1e6, description="points each partner gets otherwise")
    committed_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0, description="share of the population that always plays committed_name"
    )
    committed_name: str | None = Field(default=None, description="the committed minority's name (one of names)")
    committed_kind: Literal["human", "llm"] = Field(
        default="human", description="what the committed agents are counted as (they never ask an LLM)"
    )
    established_name: str | None = Field(
        default=None, description="a convention in place at generation 0 (one of names), or none"
    )
    established_rounds: int = Field(
        default=0, ge=0, le=1000, description="past successful games on established_name in every memory"
    )
    consensus: float = Field(
        default=0.9, gt=0.5, le=1.0, description="share of agents on one name that counts as consensus"
    )
    win_share: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="share of agents on the committed name at the last round for the committed minority to have "
        "won (at least; default: half the population, as LLM agents that play at random can keep a population "
        "from consensus while the committed name still takes the majority)",
    )

    @model_validator(mode="after")
    def _names_consistent(self) -> CoordinationSection:
        if len(set(self.names)) < len(self.names):
            raise ValueError(f"names repeats a name: {list(self.names)}")
        if any(not name.strip() or name != name.strip() or "\n" in name for name in self.names):
            raise ValueError("every name must be non-empty text without surrounding spaces or line breaks")
        for field in ("committed_name", "established_name"):
            value = getattr(self, field)
            if value is not None and value not in self.names:
                raise ValueError(f"{field} {value!r} is not one of names {list(self.names)}")
        if self.committed_fraction > 0 and self.committed_name is None:
            raise ValueError("committed_fraction > 0 needs committed_name = one of names")
        if self.established_rounds > 0 and self.established_name is None:
            raise ValueError("established_rounds > 0 needs established_name = one of names")
        if self.established_name is not None and self.established_rounds == 0:
            raise ValueError("established_name needs established_rounds >= 1 (how many past games it won)")
        if self.established_rounds > self.memory:
            raise ValueError(
                f"established_rounds ({self.established_rounds}) cannot exceed memory ({self.memory}): "
                "agents remember only their last `memory` games"
            )
        return self

    def name_index(self, name: str | None) -> int:
        """The index of `name` in `names` (-1 for None)."""
        return -1 if name is None else self.names.index(name)


def check_coordination_study(game: CoordinationSection, humans: Any, *, llm_share: float) -> None:
    """A coordination study has no texts to consult an LLM about or to mutate (`humans`: the study's
    [humans] table), and its committed agents and LLM agents are different agents, so together they
    must fit in the population."""
    if humans.llm_consultation > 0 or humans.llm_mutation > 0:
        raise ValueError(
            "humans.llm_consultation and humans.llm_mutation are text-transmission settings; "
            "a coordination study (study.interaction = 'coordination') needs both at 0"
        )
    if game.committed_fraction + llm_share > 1:
        raise ValueError(
            f"coordination.committed_fraction ({game.committed_fraction}) + population.llm_share "
            f"({llm_share}) exceeds 1: committed agents and LLM agents are different agents"
        )
