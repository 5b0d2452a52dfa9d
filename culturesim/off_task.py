"""Off-task texts: chatbot talk about the task, the text or the assistant, instead of a text of the culture.

An LLM agent asked to retell a neighbour's story sometimes answers "I'd be happy to help!
Here's a rewritten version:" or "The text suggests that...". Such a text is not a cultural
trait, and if humans copy it, it inflates diversity with noise. `is_off_task` flags a text by
the fixed rules below (case-insensitive; each rule names one way of talking about the task);
the `off_task` metric is the share of agents holding a flagged trait.

The rules were written from the kinds of meta-talk, then measured on a labelled set the
project wrote itself (tests/data/off_task_labels.jsonl, 218 texts); the test prints their
precision and recall. They are a diagnostic, not a filter: nothing is removed by them.
"""

from __future__ import annotations

import functools
import re

# Each rule: a name (what kind of meta-talk) and a pattern on the lowercased text.
RULES: dict[str, re.Pattern[str]] = {
    # The assistant offers, promises or apologises: "I'd be happy to help", "Let me rephrase".
    "assistant_voice": re.compile(
        r"^(i'd|i would|i'll|i will|i can|i'm|i am|i've|i have|i hope|i understand|i apologi[sz]e|let me|let's)\b"
        r".{0,60}\b(help|rewrit|rephras|retell|refine|write|continue|provide|shorten|suggest|say the same|"
        r"understand|sorry|not sure|cannot|can't|this helps)"
    ),
    # The answer presents itself: "Here's a rewritten version", "This is what I came up with".
    "presents_output": re.compile(
        r"^(here('s| is| are| you go)|below is|the following is|this is what i|as requested|you could say it|"
        r"a better way to put it)\b.{0,50}\b(version|rewrit|retell|paraphras|summary|translation|sentence|"
        r"text|answer|attempt|way to say|something new|new sentence|saying|like this|put it|came up)"
    ),
    # Talk about the source text: "the original message", "the text suggests", "this sentence describes".
    "about_the_text": re.compile(
        r"\b(the|this|these|that|your|my|above|given|provided|original|previous)( \w+){0,2} "
        r"(text|texts|message|sentence|sentences|passage|statement|statements|quote|phrase|translation|"
        r"response|prompt|version|story you|ideas from|people around (you|me)|person near (you|me))"
        r"( \w+)?\b.{0,40}\b(is|are|was|were|has been|could|can|suggests?|says?|means?|conveys?|describes?|"
        r"explains?|talks?|reflects?|teaches|encourages|combines?|keeps|removes|asks|about|seems?|"
        r"shows?|wants|believes|simplified|shortened|long|quite|above)\b"
    ),
    # Names of the task itself: "rewritten", "in my own words", "to summarize", "translation:".
    "task_words": re.compile(
        r"\b(rewritten|rephrased|paraphrase[ds]?|retold|retelling|in (my|your) own words|in other words|"
        r"to (summari[sz]e|rephrase)|in summary|rewrite|rephrase|translates to|can be rewritten|"
        r"combined idea|combine their ideas)\b|^(summary|translation|answer|response|rewritten|note)\s*:"
    ),
    # The assistant persona: "As an AI language model", "As an assistant".
    "assistant_persona": re.compile(r"\b(as an ai|language model|as an assistant|chatbot)\b"),
    # Addressing the user: "Sure!", "Great question!", "Thank you for sharing", "Feel free to ask".
    "addresses_user": re.compile(
        r"^(sure|certainly|of course|okay|ok|absolutely|great question|what a (lovely|great|nice))\b[,!.]|"
        r"\b(thank you for sharing|feel free to|let me know|please provide|if you (would like|need|want))\b|"
        r"^(based on (what they said|the text)|it sounds like the person|i think what they mean|the person is saying|"
        r"someone near you said|your friend is trying|the person you mentioned|the speaker in the text|"
        r"the author of this)\b"
    ),
}


@functools.lru_cache(maxsize=65_536)
def off_task_rule(text: str) -> str | None:
    """The name of the first rule a text breaks, or None for a text of the culture."""
    lowered = " ".join(text.lower().split())
    for name, pattern in RULES.items():
        if pattern.search(lowered):
            return name
    return None


def is_off_task(text: str) -> bool:
    """Whether a text is talk about the task, the text or the assistant (see RULES)."""
    return off_task_rule(text) is not None
