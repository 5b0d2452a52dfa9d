"""The coordination game as an LLM agent reads it, and how its answer becomes a move.

The prompt has the form Ashery, Aiello & Baronchelli 2025 (Science Advances 11:eadu9368) gave
their agents: the rules and the payoffs (system message, the same for every request of a study, so
the engine's prefix cache computes it once), then the agent's last M interactions (its name, its
partner's name, its points) and the list of names (user message). The list is in a different random
order for every request (drawn from the run's streams), so a model that prefers the first option
it reads spreads that preference over all names instead of turning it into a "collective bias".

An answer is a move only if it names exactly one option of the list (`adopt_choice`); vLLM
(structured outputs, in process or behind `vllm serve`) and the transformers backend (a token mask)
constrain decoding to the list (`Request.choices`); another OpenAI-compatible server's answers are
parsed and retried, and an answer that stays invalid is no move at all (counted, never guessed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from culturesim.parts.llm.prompts import Adoption

_QUOTES = "\"'`*“”‘’«»()[]{}<>.,;:!? \t\n"


def game_rules(payoff_match: float, payoff_mismatch: float) -> str:
    """The system message: the game and its payoffs (points per round, for each partner)."""
    return (
        "You are playing a game with a partner, for many rounds. In each round, you and your partner "
        "each choose a name from a list, at the same time and without talking. "
        f"If you both choose the same name, you each get {_points(payoff_match)}. "
        f"If you choose different names, you each get {_points(payoff_mismatch)}. "
        "Your goal is to get as many points as possible. "
        "Answer with exactly one name from the list and nothing else."
    )


def game_messages(
    history: Sequence[tuple[str, str, float]], options: Sequence[str], *, payoffs: tuple[float, float]
) -> tuple[tuple[str, str], ...]:
    """The chat of one move: `history` is the agent's remembered rounds, oldest first, as (its name,
    its partner's name, its points); `options` the names in the order this request shows them."""
    if history:
        lines = [
            f"Round {i}: you chose {own}, your partner chose {partner}, you got {_points(points)}."
            for i, (own, partner, points) in enumerate(history, start=1)
        ]
        past = f"Your last {len(history)} rounds, oldest first:\n" + "\n".join(lines)
    else:
        past = "You have not played any rounds yet."
    user = f"{past}\n\nThe names you can choose: {', '.join(options)}.\nWhich name do you choose?"
    return (("system", game_rules(*payoffs)), ("user", user))


def adopt_choice(text: str, choices: Sequence[str]) -> Adoption:
    """The move an answer makes: the one option it names (`text`), usable; or "" and not usable
    when it names none or several (talk about the game, a refusal, a list of options).

    An answer that is exactly an option (after quotes and punctuation are stripped) is that option;
    otherwise the options named as whole words (case-sensitive, so "I" or "a" in a sentence never
    counts as a name unless the list has it) must be exactly one."""
    stripped = text.strip(_QUOTES)
    if stripped in choices:
        return Adoption(text=stripped, usable=True)
    named = {c for c in choices if re.search(rf"(?<!\w){re.escape(c)}(?!\w)", text)}
    if len(named) == 1:
        return Adoption(text=named.pop(), usable=True)
    return Adoption(text="", usable=False)


def _points(points: float) -> str:
    value = f"{points:g}"
    return f"{'+' if points > 0 else ''}{value} points"
