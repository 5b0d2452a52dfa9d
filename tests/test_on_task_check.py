"""The on-task check runs real requests of every role through the study's retry policy."""

from __future__ import annotations

import pytest

from culturesim.checks.on_task_check import ROLES, check_roles, role_requests
from culturesim.parts.corpus import load_corpus
from culturesim.parts.llm.prompts import SINGLE_TEXT_ROLES
from culturesim.schema.config import CorpusSection
from culturesim.schema.llm_section import LLMSection

TEXTS = load_corpus(CorpusSection())["text"].to_list()


def test_requests_show_one_text_to_rewrite_and_continue_and_several_to_the_other_roles() -> None:
    spec = LLMSection()
    for role in ROLES:
        requests, shown = role_requests(role, TEXTS, count=5, spec=spec, seed=3)
        assert len(requests) == 5 and len({r.seed for r in requests}) == 5
        assert {len(s) for s in shown} == ({1} if role in SINGLE_TEXT_ROLES else {spec.prompt.neighbours_read})
        for request, parents in zip(requests, shown):
            assert all(p[:40] in request.prompt for p in parents)


@pytest.mark.slow
def test_on_task_check_with_the_real_model(vllm_backend, embedder) -> None:
    spec = LLMSection(engine={"backend": "vllm"}, sampling={"max_tokens": 24})
    table, samples = check_roles(vllm_backend, embedder, TEXTS, count=12, spec=spec, roles=("rewrite", "advise"))
    assert table["role"].to_list() == ["rewrite", "advise"] and len(samples) == 24
    for row in table.to_dicts():
        assert row["completions"] == 12 and 0 < row["usable"] <= 12
        assert 1.0 <= row["attempts"] <= 1 + spec.prompt.retries
        assert 0.0 <= row["off_task"] <= row["first_off_task"] + 1 / 12  # retries only replace flagged answers
        assert row["verbatim"] < 0.5 and 0.0 < row["parent_cosine"] < 1.0
    rewrite = table.filter(table["role"] == "rewrite").to_dicts()[0]
    assert rewrite["parent_cosine"] > 0.3, "a retelling stays close to its one parent"
