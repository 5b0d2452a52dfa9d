"""Role prompts for LLM agents and consulted LLMs, and the cleaning of their answers.

Prompts are short and share a fixed system prefix, so an engine with prefix caching
reuses it across every request of a generation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SYSTEM_PROMPT = "You are a member of a community who shares short texts. You always answer with the text only."
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
}


def build_messages(role: str, texts: Sequence[str], *, max_chars: int) -> tuple[tuple[str, str], ...]:
    """Chat messages for one request: the role instruction around the neighbours' texts."""
    if role == "rewrite":
        texts = texts[:1]
    per_text = max(20, min(max_chars, PROMPT_CHAR_BUDGET // max(len(texts), 1)))
    shown = "\n".join(f"- {_shorten(t, per_text)}" for t in texts)
    return (("system", SYSTEM_PROMPT), ("user", ROLE_INSTRUCTIONS[role].format(texts=shown)))


_LEAD_IN = re.compile(r"^(sure|here('s| is)|okay|certainly)[^:\n]*:\s*", re.IGNORECASE)


def clean_completion(text: str, *, max_chars: int) -> str:
    """The trait text in a raw completion: first paragraph, no lead-in or quotes, at most max_chars.

    Returns "" when nothing usable is left; the caller counts that as a failure.
    """
    text = text.strip()
    text = _LEAD_IN.sub("", text)
    text = text.split("\n\n", 1)[0].replace("\n", " ").strip().strip('"').strip()
    return _shorten(text, max_chars)


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
