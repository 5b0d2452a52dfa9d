"""How on-task an LLM agent's writing is, per role: meta-talk, verbatim copies, closeness to the parents.

A fix for meta-talk that makes the model copy its input verbatim is not a fix, so the
check reports three numbers per role over many real completions:

- `off_task`: share of usable completions that are talk about the task (`culturesim.core.off_task`);
- `verbatim`: share of usable completions identical to one of the texts shown (whitespace and
  case aside);
- `parent_cosine`: mean cosine similarity between a completion and the texts it was shown.

Requests are built exactly as a study builds them (`build_messages`, the role, the neighbours'
texts), answered in batched rounds with the study's retry policy (`llm.prompt.retries` new-seed retries
of an unusable or off-task answer), and cleaned as a study cleans them. `first_off_task` is the
share before any retry, i.e. what the prompt alone achieves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from culturesim.core.off_task import is_off_task, off_task_rule
from culturesim.core.vocabulary import LLM_ROLES
from culturesim.parts.llm.base import Backend, Request
from culturesim.parts.llm.prompts import SINGLE_TEXT_ROLES, adopt, build_messages
from culturesim.schema.llm_section import LLMSection
from culturesim.simulation.completions import CompletionSource, EngineIdentity, Origin, answer_with_retries
from culturesim.simulation.model import request_seed

ROLES = LLM_ROLES


def role_requests(role: str, texts: Sequence[str], *, count: int, spec: LLMSection, seed: int):
    """`count` requests of one role, each showing texts drawn from `texts` (one for rewrite and continue)."""
    rng = np.random.default_rng([seed, ROLES.index(role)])
    shown_per_request = 1 if role in SINGLE_TEXT_ROLES else spec.prompt.neighbours_read
    shown = [[texts[i] for i in rng.choice(len(texts), size=shown_per_request, replace=False)] for _ in range(count)]
    requests = [
        Request(
            messages=build_messages(role, parents, max_chars=spec.prompt.max_chars),
            seed=request_seed(seed, ROLES.index(role), 0, i, 0),
            sampling=spec.sampling,
        )
        for i, parents in enumerate(shown)
    ]
    return requests, shown


def check_role(backend: Backend, embedder, role: str, texts: Sequence[str], *, count: int, spec: LLMSection,
               seed: int = 0) -> tuple[dict[str, object], list[dict[str, object]]]:  # fmt: skip
    """One role's summary row and its completions (shown texts, raw and cleaned answer, rule)."""
    requests, shown = role_requests(role, texts, count=count, spec=spec, seed=seed)
    source = CompletionSource(engine=EngineIdentity.of(spec.engine), start_engine=lambda: backend)
    origins = [Origin(f"check-{role}", 0, i) for i in range(count)]
    first = source.answer(requests, origins, attempt=0)
    _, completions, adoptions, attempts = answer_with_retries(
        source, requests, origins, max_chars=[spec.prompt.max_chars] * count, retries=[spec.prompt.retries] * count
    )
    cleaned = [adoption.text for adoption in adoptions]
    first_cleaned = [
        adopt(c.text, prompt=r.prompt, max_chars=spec.prompt.max_chars).text
        for r, c in zip(requests, first, strict=True)
    ]
    usable = [i for i, text in enumerate(cleaned) if text]
    samples = [
        {"role": role, "shown": shown[i], "raw": completions[i].text, "text": cleaned[i],
         "rule": off_task_rule(cleaned[i]) if cleaned[i] else None}
        for i in range(count)
    ]  # fmt: skip
    verbatim = [_normal(cleaned[i]) in {_normal(t) for t in shown[i]} for i in usable]
    cosines = []
    if usable:
        vectors = embedder.embed([cleaned[i] for i in usable])
        for vector, i in zip(vectors, usable, strict=True):
            cosines.append(float(np.mean(embedder.embed(shown[i]) @ vector)))
    row = {
        "role": role,
        "completions": count,
        "usable": len(usable),
        "first_off_task": _share(is_off_task(t) for t in first_cleaned if t),
        "off_task": _share(is_off_task(cleaned[i]) for i in usable),
        "attempts": float(np.mean(attempts)),
        "verbatim": _share(verbatim),
        "parent_cosine": float(np.mean(cosines)) if cosines else float("nan"),
    }
    return row, samples


def check_roles(
    backend: Backend, embedder, texts: Sequence[str], *, count: int, spec: LLMSection, roles=ROLES, seed: int = 0
) -> tuple[pl.DataFrame, list[dict[str, object]]]:
    """The summary table over `roles` and every completion behind it."""
    rows, samples = [], []
    for role in roles:
        row, role_samples = check_role(backend, embedder, role, texts, count=count, spec=spec, seed=seed)
        rows.append(row)
        samples += role_samples
    return pl.DataFrame(rows), samples


def _normal(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .!?\"'")


def _share(flags) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else float("nan")
