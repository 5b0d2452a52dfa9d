"""Role prompts for LLM agents and consulted LLMs, and the cleaning of their answers.

Every request of a role shares a fixed prefix (the system prompt and the role's worked
example), so an engine with prefix caching reuses it across every request of a generation.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from culturesim.core.off_task import is_off_task

SYSTEM_PROMPT = (
    "You are a member of a community who shares short texts. You always answer with the text only: "
    "no greeting, no introduction, no comment on the task or on the texts."
)
PROMPT_CHAR_BUDGET = 1600  # neighbour text shown per request, in characters (keeps prompts far below the context)

ROLE_INSTRUCTIONS = {
    "rewrite": "Here is something a person near you said:\n{texts}\n\n"
    "Retell it in your own words as one or two sentences.",
    "combine": "Here are things people around you have been saying:\n{texts}\n\n"
    "Write one or two sentences that combine their ideas.",
    "create": "Here are things people around you have been saying:\n{texts}\n\n"
    "Write one or two new sentences of the same kind, on a related topic.",
    "advise": "Someone asks what they should think or do. People around them say:\n{texts}\n\n"
    "Give them your own answer in one or two sentences.",
    "continue": "Here is something a person near you said:\n{texts}\n\n"
    "Say what happened next, or what follows from it, in one or two sentences.",
}
# Roles that read one text only (the parent); the others read every shown neighbour.
SINGLE_TEXT_ROLES = frozenset({"rewrite", "continue"})


# Worked examples shown before each request (texts written for this project, not in the built-in
# corpus). A small chat model imitates the answers' form: a text of the culture, with no greeting,
# no "Here's a rewritten version:" and no comment on the task. Rewrite has six close retellings:
# measured on 20 built-in stories at temperature 0.8, the built-in model's first retelling kept a
# mean cosine of 0.85 to its parent with them, 0.59 with two (and 0.53 vs 0.32 after 4 retellings).
# Advise has three: over 200 requests, first-attempt meta-talk fell from 20.6 % (one example) to 4.5 %.
FEW_SHOT: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "rewrite": (
        (
            ("Our neighbour leaves a basket of apples by the gate every autumn for anyone who walks past.",),
            "Every autumn the woman next door puts out a basket of apples at her gate, free for whoever passes.",
        ),
        (
            ("When my grandmother lost her glasses, we found them three days later in the freezer next to the peas.",),
            "My grandmother lost her glasses once, and three days later they turned up in the freezer beside the peas.",
        ),
        (
            ("The bakery on our corner gives the last loaf of the day to whoever arrives just before closing.",),
            "Whoever gets to the corner bakery right before it closes is handed the day's last loaf for free.",
        ),
        (
            (
                "The first time my brother drove the tractor, he steered it straight into the pond "
                "and climbed out laughing.",
            ),
            "My brother's first go on the tractor ended in the pond, and he waded out of it laughing.",
        ),
        (
            ("At my cousin's wedding the band never showed up, so the guests took turns singing until midnight.",),
            "The band didn't turn up to my cousin's wedding, and the guests sang one after another "
            "until midnight instead.",
        ),
        (
            ("Never argue with the cook if you want a second helping.",),
            "If you hope for seconds, don't pick a fight with the person who made dinner.",
        ),
    ),
    "combine": (
        (
            (
                "The ferry stops running when the wind is too strong.",
                "Fishermen mend their nets on stormy days.",
                "The harbour cafe is always full when the weather is bad.",
            ),
            "On windy days the ferry stays in port, and the fishermen mend their nets in the crowded harbour cafe.",
        ),
    ),
    "create": (
        (
            (
                "Bread shared is bread doubled.",
                "Nobody leaves my aunt's kitchen hungry.",
                "We cook too much on purpose, so there is always a plate for a visitor.",
            ),
            "On our street, the first pot of soup of the winter is carried from door to door until it is empty.",
        ),
    ),
    "advise": (
        (
            ("Sleep on it before you decide.", "Ask your sister, she knows you best.", "Write both choices down."),
            "Write both choices down tonight, sleep on it, and talk it over with your sister in the morning.",
        ),
        (
            (
                "Never lend money you can't afford to lose.",
                "Family comes first, even when it costs you.",
                "Ask for it in writing.",
            ),
            "Lend your cousin only what you could live without, and write down what you agreed.",
        ),
        (
            (
                "Take the job that teaches you the most.",
                "Money matters more than people admit.",
                "You can always move again later.",
            ),
            "Take the job where you will learn the most; you can chase a bigger salary in a year or two.",
        ),
    ),
    "continue": (
        (
            ("The night the river froze, the whole village went out onto the ice with lanterns.",),
            "By midnight someone had brought a fiddle, and people were dancing in the middle of the river.",
        ),
        (
            ("Always knock twice before you open the shed door.",),
            "The cat sleeps on the top shelf, and she hates being surprised.",
        ),
    ),
}


def build_messages(role: str, texts: Sequence[str], *, max_chars: int) -> tuple[tuple[str, str], ...]:
    """Chat messages for one request: the system prompt, the role's worked examples, then the role
    instruction around the neighbours' texts (the last message)."""
    messages = [("system", SYSTEM_PROMPT)]
    for shown, answer in FEW_SHOT[role]:
        messages += [("user", _instruction(role, shown, max_chars=max_chars)), ("assistant", answer)]
    messages.append(("user", _instruction(role, texts, max_chars=max_chars)))
    return tuple(messages)


ECHO_WORDS = 6  # a completion sharing this many consecutive words with a worked example's answer echoes it


def echoes_example(text: str) -> bool:
    """Whether a completion copies a worked example, its texts or its answer (measured: without this
    check, 6.8 % of combine answers of the built-in model contained 6 consecutive words of its example)."""
    return bool(_word_runs(text) & _example_runs())


@functools.cache
def _example_runs() -> frozenset[tuple[str, ...]]:
    texts = [text for examples in FEW_SHOT.values() for shown, answer in examples for text in (*shown, answer)]
    return frozenset(run for text in texts for run in _word_runs(text))


def _word_runs(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i : i + ECHO_WORDS]) for i in range(len(words) - ECHO_WORDS + 1)}


def _instruction(role: str, texts: Sequence[str], *, max_chars: int) -> str:
    if role in SINGLE_TEXT_ROLES:
        texts = texts[:1]
    per_text = max(20, min(max_chars, PROMPT_CHAR_BUDGET // max(len(texts), 1)))
    shown = "\n".join(f"- {_shorten(t, per_text)}" for t in texts)
    return ROLE_INSTRUCTIONS[role].format(texts=shown)


_LEAD_IN = re.compile(r"^(sure|here('s| is)|okay|certainly)\b[^:\n]*:\s*", re.IGNORECASE)
_LEAD_IN_PARAGRAPH = re.compile(r"^(sure|okay|certainly|of course)\b[^\n]{0,40}$", re.IGNORECASE)
_QUOTES = ('"', "\u201c\u201d", "'")
_BULLET = re.compile(r"^[-*\u2022]\s+")  # the list marker of the prompt's "- text" lines, copied into an answer


def clean_completion(text: str, *, max_chars: int, prompt: str = "") -> str:
    """The trait text in a raw completion, by a fixed policy: strip whitespace; keep the first
    paragraph after any lead-in ("Sure! Here is..."); drop a leading list marker ("- ") and one
    pair of surrounding quotes; cut at max_chars on a sentence or word boundary.

    Returns "" (unusable: the caller retries with another seed, then counts a failure) when
    nothing is left, when no letter is left (non-text), when the text is a repetition loop, or
    when the answer repeats the prompt's instruction instead of answering it.
    """
    return _trait_or_nothing(_shorten(_first_paragraph(text, prompt), max_chars))


@dataclass(frozen=True)
class Adoption:
    """What one answer gives the culture, decided once per completion.

    `text`: the trait text an agent adopts, cut at max_chars ("" when nothing is left: the agent
    keeps its trait). `usable`: whether the whole answer, before the cut, is a trait text that is
    neither talk about the task (`culturesim.core.off_task`) nor a copy of a worked example; an unusable
    answer is asked again with a new seed while retries remain, and the last attempt's text is
    adopted even when off-task, so the `off_task` metric shows what got through."""

    text: str
    usable: bool


def adopt(text: str, *, prompt: str, max_chars: int) -> Adoption:
    """The adoption of a raw completion `text` answering `prompt` (see `Adoption`)."""
    paragraph = _first_paragraph(text, prompt)
    whole = _trait_or_nothing(" ".join(paragraph.split()))
    usable = bool(whole) and not is_off_task(whole) and not echoes_example(whole)
    return Adoption(text=_trait_or_nothing(_shorten(paragraph, max_chars)), usable=usable)


def _first_paragraph(text: str, prompt: str) -> str:
    """The answer's first paragraph after any lead-in, list marker and quotes ("" if none, or if
    it echoes the prompt's instruction)."""
    paragraphs = [p.strip() for p in text.strip().split("\n\n") if p.strip()]
    while len(paragraphs) > 1 and _LEAD_IN_PARAGRAPH.match(paragraphs[0]):
        paragraphs.pop(0)
    if not paragraphs or _repeats_prompt(paragraphs[0], prompt):
        return ""
    return _unquote(_BULLET.sub("", " ".join(_LEAD_IN.sub("", paragraphs[0]).split())))


def _trait_or_nothing(text: str) -> str:
    """`text`, or "" when it holds no letter or is a repetition loop."""
    return "" if not any(ch.isalpha() for ch in text) or _degenerate(text) else text


DEGENERATE_MIN_WORDS = 8  # shorter texts are never judged degenerate
DEGENERATE_DISTINCT_SHARE = 0.3  # below this share of distinct words, a text is a repetition loop


def _degenerate(text: str) -> bool:
    """A repetition loop ("No, no, no, no, ..."), which the built-in model writes now and then:
    at least 8 words of which fewer than 30 % are distinct."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    return len(words) >= DEGENERATE_MIN_WORDS and len(set(words)) < DEGENERATE_DISTINCT_SHARE * len(words)


def _repeats_prompt(text: str, prompt: str) -> bool:
    """True when the answer starts by echoing the instruction line of the prompt."""
    instruction = " ".join(prompt.split("\n", 1)[0].split()).lower()
    return len(instruction) >= 20 and " ".join(text.split()).lower().startswith(instruction[:40])


def _unquote(text: str) -> str:
    """Remove one pair of quotes around the whole text (not a quotation at its end)."""
    for quote in _QUOTES:
        opening, closing = (quote[0], quote[-1])
        if len(text) >= 2 and text[0] == opening and text[-1] == closing and text.count(opening) <= 2:
            return text[1:-1].strip()
    return text


def _shorten(text: str, max_chars: int) -> str:
    """Cut at a sentence end, else a word boundary, so a trait never ends mid-word."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if end >= max_chars // 2:
        return cut[: end + 1]
    return cut.rsplit(" ", 1)[0] if " " in cut else cut
