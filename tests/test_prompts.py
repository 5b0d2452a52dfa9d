"""Tests for culturesim.parts.llm.prompts: request messages and the cleaning of completions."""

from __future__ import annotations

import pytest

from culturesim.core.off_task import is_off_task
from culturesim.core.vocabulary import LLM_ROLES
from culturesim.parts.corpus import load_corpus
from culturesim.parts.llm.prompts import (
    FEW_SHOT,
    PROMPT_CHAR_BUDGET,
    SINGLE_TEXT_ROLES,
    SYSTEM_PROMPT,
    adopt,
    build_messages,
    clean_completion,
    echoes_example,
)
from culturesim.schema.config import CorpusSection

TEXTS = ["The bakery opens at six.", "Always thank the bus driver.", "Rain is good for gardens."]
CORPUS = set(load_corpus(CorpusSection())["text"].to_list())


def shown_texts(messages) -> list[str]:
    """The neighbour texts listed in the user message (lines starting with '- ')."""
    return [line[2:] for line in messages[-1][1].splitlines() if line.startswith("- ")]


# -- build_messages -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [r for r in LLM_ROLES if r not in SINGLE_TEXT_ROLES])
def test_every_neighbour_text_is_shown(role):
    messages = build_messages(role, TEXTS, max_chars=280)
    assert messages[0] == ("system", SYSTEM_PROMPT)
    assert messages[-1][0] == "user"
    assert shown_texts(messages) == TEXTS


@pytest.mark.parametrize("role", sorted(SINGLE_TEXT_ROLES))
def test_rewrite_and_continue_show_only_the_first_text(role):
    messages = build_messages(role, TEXTS, max_chars=280)
    assert shown_texts(messages) == TEXTS[:1]
    assert TEXTS[1] not in messages[-1][1] and TEXTS[2] not in messages[-1][1]


@pytest.mark.parametrize("role", LLM_ROLES)
def test_worked_examples_precede_the_request_and_are_themselves_on_task(role):
    messages = build_messages(role, TEXTS, max_chars=280)
    turns = [speaker for speaker, _ in messages]
    assert turns == ["system"] + ["user", "assistant"] * len(FEW_SHOT[role]) + ["user"]
    for shown, answer in FEW_SHOT[role]:
        assert not is_off_task(answer)
        assert all(text not in CORPUS for text in (*shown, answer)), "examples must not be corpus texts"
        assert answer not in shown  # an example retells, it does not copy


def test_a_copy_of_a_worked_example_is_recognised():
    answer = FEW_SHOT["combine"][0][1]
    assert echoes_example(answer) and echoes_example("Yes. " + answer.upper() + " And more.")
    assert not echoes_example("On windy days the ferry waits.")  # five shared words only
    assert echoes_example("Never argue with the cook if you want a second helping of soup.")  # an example's input
    assert not any(echoes_example(text) for text in sorted(CORPUS))


def test_roles_have_different_instructions():
    users = {build_messages(role, TEXTS, max_chars=280)[-1][1] for role in LLM_ROLES}
    assert len(users) == len(LLM_ROLES)


@pytest.mark.parametrize("role", LLM_ROLES)
@pytest.mark.parametrize("count", [1, 3, 32])
def test_very_long_texts_stay_within_the_budget(role, count):
    texts = [f"story {i} " + "word " * 3000 for i in range(count)]
    shown = shown_texts(build_messages(role, texts, max_chars=10_000))
    assert len(shown) == (1 if role in SINGLE_TEXT_ROLES else count)
    assert sum(len(t) for t in shown) <= PROMPT_CHAR_BUDGET
    for text, original in zip(shown, texts, strict=False):
        assert text and original.startswith(text)  # a prefix, cut at a word boundary
        assert not text.endswith(" ")


def test_each_text_is_cut_at_max_chars():
    long = "The first sentence is here. " + "more words " * 50
    shown = shown_texts(build_messages("combine", [long, "short one"], max_chars=40))
    assert shown == ["The first sentence is here.", "short one"]


# -- clean_completion -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Sure! Here is a rewritten version: The cat sat on the mat.", "The cat sat on the mat."),
        ("Here's my version:\nThe cat sat on the mat.", "The cat sat on the mat."),
        ('Certainly, here is the text:\n\n"The cat sat on the mat."', "The cat sat on the mat."),
        ("Okay: The cat sat on the mat.", "The cat sat on the mat."),
        ('"The cat sat on the mat."', "The cat sat on the mat."),
        ("  The cat sat on the mat.  ", "The cat sat on the mat."),
        ("The cat sat on the mat.\n\nI hope this helps!", "The cat sat on the mat."),
        ("The cat sat\non the mat.", "The cat sat on the mat."),
        ("It was 10:30: the cat sat.", "It was 10:30: the cat sat."),
    ],
    ids=[
        "sure-here-is",
        "heres",
        "certainly-quoted",
        "okay",
        "quotes",
        "spaces",
        "second-paragraph",
        "line-break",
        "colon-in-text",
    ],
)
def test_clean_completion(raw, expected):
    assert clean_completion(raw, max_chars=280) == expected


@pytest.mark.parametrize("raw", ["", "   ", "\n\n\t", '""'])
def test_clean_completion_of_nothing_is_empty(raw):
    assert clean_completion(raw, max_chars=280) == ""


def test_truncates_at_a_sentence_end():
    raw = "One two three four. Five six seven eight nine ten eleven twelve thirteen."
    assert clean_completion(raw, max_chars=30) == "One two three four."


def test_truncates_at_a_word_boundary_without_a_sentence_end():
    raw = "alpha beta gamma delta epsilon zeta eta theta"
    cleaned = clean_completion(raw, max_chars=20)
    assert cleaned == "alpha beta gamma"
    assert len(cleaned) <= 20


def test_early_sentence_end_is_not_used_when_it_loses_most_of_the_text():
    raw = "Hi. alpha beta gamma delta epsilon zeta eta theta"
    assert clean_completion(raw, max_chars=30) == "Hi. alpha beta gamma delta"


def test_short_text_is_kept_whole():
    raw = "A short answer. Nothing more."
    assert clean_completion(raw, max_chars=len(raw)) == raw


def test_lead_in_paragraph_without_colon_is_dropped():
    assert clean_completion("Sure!\n\nThe cat sat on the mat.", max_chars=280) == "The cat sat on the mat."


def test_quotation_at_the_end_is_kept_intact():
    raw = 'My grandmother always said "waste not, want not"'
    assert clean_completion(raw, max_chars=280) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "No, no, no, no, no, no, no, no, no, no, no, no",
        "The teacher was a joke, a joke, a joke, a joke, a joke, a joke, a joke.",
    ],
)
def test_a_repetition_loop_is_unusable(raw):
    assert clean_completion(raw, max_chars=280) == ""


def test_a_story_with_some_repeated_words_is_kept():
    text = "The dog ran to the gate, and the dog ran back to the door, and then the dog slept."
    assert clean_completion(text, max_chars=280) == text


def test_the_prompts_list_marker_is_not_part_of_a_trait():
    raw = "- When a recipe says to chop the onions finely, believe it."
    assert clean_completion(raw, max_chars=280) == raw[2:]
    assert clean_completion("Twenty-one - or so - came.", max_chars=280) == "Twenty-one - or so - came."


def test_an_answer_is_judged_whole_and_adopted_cut():
    """`adopt` cleans an answer once: the retry decision reads the whole answer, the culture gets
    the text cut at max_chars, and that text is what `clean_completion` gives."""
    answer = "The fox ran home before dark. As an AI language model, I cannot say more about it."
    judged = adopt(answer, prompt="Retell the text.", max_chars=40)
    assert judged.text == "The fox ran home before dark." == clean_completion(answer, max_chars=40)
    assert not judged.usable  # the talk about being an AI lies past the cut, and is still caught
    assert adopt("The fox ran home before dark.", prompt="Retell the text.", max_chars=40).usable
    for raw in (
        "Sure! Here is a retelling:\n\nA boy lost his kite.",
        '"- Quoted list item."',
        "no no no no no no no no no",
    ):
        assert adopt(raw, prompt="", max_chars=280).text == clean_completion(raw, max_chars=280)
