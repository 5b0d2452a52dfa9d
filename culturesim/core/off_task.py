"""Off-task texts: chatbot talk about the task, the text or the assistant, instead of a text of the culture.

An LLM agent asked to retell a neighbour's story sometimes answers "I'd be happy to help!
Here's a rewritten version:" or "The text suggests that...". Such a text is not a cultural
trait, and if humans copy it, it inflates diversity with noise. `is_off_task` flags a text by
the fixed rules below (case-insensitive; each rule names one way of talking about the task);
the `off_task` metric is the share of agents holding a flagged trait.

The rules were written from the kinds of meta-talk and from 166 hand-labelled completions of
the built-in model, then measured on a labelled set the project wrote itself
(tests/data/off_task_labels.jsonl) and on other hand-labelled completions; the test prints
precision and recall.
"""

from __future__ import annotations

import functools
import re

# Each rule: a name (what kind of meta-talk) and a pattern on the lowercased text.
RULES: dict[str, re.Pattern[str]] = {
    # The assistant offers, promises, explains itself or apologises: "I'd be happy to help", "I've tried to".
    "assistant_voice": re.compile(
        r"^(i'd|i would|i'll|i will|i can|i'm|i am|i've|i have|i hope|i understand|i apologi[sz]e|let me|let's)\b"
        r".{0,60}\b(help|rewrit|rephras|retell|refine|write|continue|provide|shorten|suggest|say the same|"
        r"understand|sorry|not sure (what|how|of the)|cannot|can't|this helps|add (a|another|more))|"
        r"\bi'?ve (tried|managed|kept|made|used|changed|rewritten|shortened|added|removed)\b|"
        r"\b(i'm|i am) (so )?(glad you|happy to share|sorry for the)\b|\blet's have a conversation\b"
    ),
    # The answer presents itself: "Here's a rewritten version", "The answer is:", "One possible story could be".
    "presents_output": re.compile(
        r"\b(here('s| is| are| you go)|below is|the following( is| are)?|this is what i|as requested|you could say it|"
        r"a better way to put it)\b.{0,50}\b(version|rewrit|retell|paraphras|summary|translation|sentences?|"
        r"text|answer|attempt|way to say|something new|new one|another one|example|saying|like this|put it|came up)|"
        r"^this is (a|an|one) (\w+ ){0,3}(passage|example|variation|paraphrase|version|text|sentence|narrative|"
        r"summary|description|clich|metaphor|retelling|rewrite|response|puzzle)|"
        r"^(the answer( to (your|this|the above|that) \w+)? is|i would say|my answer( to this \w+)?( would be| is)?|"
        r"this is my answer|"
        r"one possible (story|answer|sentence|version)( could be| is)?|lets? break it down)\b|"
        r"^(that's|that is) a (great|good|nice|wonderful) (example|question|idea|point|story)|"
        r"^(these|this) (are|is) (personal|my|just) (thoughts|opinions|ideas)|"
        r"\bhere'?s (one|a suggestion|an idea|my take)\b|"
        r"^write (down )?(two|one|a|the|your)( \w+){0,2} (sentences?|paragraph|text|story|answer)\b"
    ),
    # Talk about the source text: "the original message", "the text suggests", "in this metaphor".
    "about_the_text": re.compile(
        r"\b(the|this|these|that|your|my|above|given|provided|original|previous)( \w+){0,2} "
        r"(text|texts|message|sentence|sentences|passage|statement|statements|quote|phrase|translation|"
        r"response|prompt|version|story you|ideas from|people around (you|me)|person near (you|me))"
        r"( \w+)?\b.{0,40}\b(is|are|was|were|has been|could|can|suggests?|says?|means?|conveys?|describes?|"
        r"explains?|talks?|reflects?|teaches|encourages|combines?|keeps|removes|asks|about|seems?|"
        r"shows?|wants|believes|simplified|shortened|long|quite|above|consists?)\b|"
        r"\b(the|this|that|your|my) (original|given|above|provided|previous) (text|texts|message|sentences?|passage|"
        r"statements?|story|quote|version|words)\b|"
        r"\bthe person'?s (message|tweet|text|post|statement|words|sentence|note|response)\b|"
        r"^(- )?the person is (simply |just )?\w+ing\b|^when someone says,? \"|"
        r"\bin this (context|metaphor|sentence|text|passage)\b|"
        r"\bthis (story|sentence|text|passage) (retells|tells|describes|uses|shows|is about)\b|"
        r"^(these|those|this|that|it) (are|is|was|sounds?|seems?|looks?)( (all|just|really|quite|like|a|an))* "
        r"(\w+ )?(stories|story|examples?|texts?|ideas?|sentences?|language|quotes?|sayings?|meme)\b|"
        r"\b(they|he|she|the person) (meant|means) it\b|\bthe person above\b"
    ),
    # Names of the task itself: "rewritten", "in my own words", "to summarize", "translation:".
    "task_words": re.compile(
        r"\b(rewritten|rephrased|paraphrase[ds]?|retold|retelling|in (my|your) own words|in other words|"
        r"to (summari[sz]e|rephrase)|in summary|rewrite|rephrase|translates to|can be rewritten|"
        r"combined idea|combine their ideas|combines (these|their|both) ideas|revised version|revise it)\b|"
        r"^(summary|translation|answer|response|rewritten|note)\s*:"
    ),
    # The instructions echoed back: the system prompt or a role instruction of culturesim.parts.llm.prompts.
    "echoes_instructions": re.compile(
        r"\b(a member of a community who shares short texts|answer with the text only|"
        r"(something a person|people) (near|around) you (said|have been saying)|one or two (new )?sentences)\b"
    ),
    # The assistant persona: "As an AI language model", "As an assistant".
    "assistant_persona": re.compile(r"\b(as an ai|language model|as an assistant|chatbot)\b"),
    # Addressing the user: "Sure!", "Great question!", "Thank you for sharing", "Feel free to ask".
    "addresses_user": re.compile(
        r"^(sure|certainly|of course|okay|ok|absolutely|awesome|great question|what a (lovely|great|nice)|folks|"
        r"friends|hey|hi|hello|greetings?)\b[,!.]|"
        r"\b(thank you for sharing|feel free to|let me know|please provide|if you (would like|need|want) "
        r"(more|another|me|to know))\b|"
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
