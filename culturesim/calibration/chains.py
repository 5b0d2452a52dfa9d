"""Pure-LLM transmission chains: the mechanism of the attractor calibration and of the chain checks.

A chain hands one text to the LLM, its answer to the LLM again, and so on for some generations;
many chains from different starts run in lockstep (one engine call per generation), judged and
cut as a study judges its answers. The attractor calibration (`culturesim.calibration.attractor`)
is the mean end point of such chains; `culturesim validate chains` (`culturesim.checks.chains`)
compares them with Perez et al. 2024's findings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from culturesim.parts.llm.base import Backend, Request
from culturesim.parts.llm.prompts import build_messages
from culturesim.schema.llm_section import PromptSection
from culturesim.schema.sampling import Sampling
from culturesim.simulation.completions import CompletionSource, EngineIdentity, Origin, answer_with_retries
from culturesim.simulation.model import request_seed

# A study's prompt defaults (role, max_chars) without retries: exactly one engine call per generation.
ONE_CALL_PROMPT = PromptSection(retries=0)


def run_chains(
    backend: Backend,
    initial_texts: Sequence[str],
    *,
    generations: int,
    prompt: PromptSection = ONE_CALL_PROMPT,
    sampling: Sampling = Sampling(),
    seed: int = 0,
    on_generation: Callable[[int], None] | None = None,
) -> tuple[list[list[str]], list[int]]:
    """Texts per generation (generation 0 = initial) and failures per generation.

    All chains advance in lockstep: one `backend.generate` call per generation holding every chain's
    request. Chain c's request at generation g has seed `request_seed(seed, c, g, 0, 0)`.
    `prompt` gives the role, the longest text kept (max_chars) and the retries, as `[llm.prompt]` does
    (neighbours_read is unused: a chain reads one text). Answers are judged and cut as a study does
    (`llm.prompts.adopt`); with `prompt.retries` > 0 an unusable one is asked again with a new seed
    (one more batched call per round for the unusable ones only). A final answer that leaves no
    text keeps the chain's text unchanged and counts as a failure.
    `on_generation(g)` is called after generation g of every chain is answered (a progress display:
    a calibration's 10 generations can take minutes); it sees nothing and changes nothing.
    """
    history = [list(initial_texts)]
    failures = [0]
    for generation in range(1, generations + 1):
        requests = [
            Request(
                messages=build_messages(prompt.role, [text], max_chars=prompt.max_chars),
                seed=request_seed(seed, chain, generation, 0, 0),
                sampling=sampling,
            )
            for chain, text in enumerate(history[-1])
        ]
        cleaned = _generate(backend, requests, max_chars=prompt.max_chars, retries=prompt.retries)
        history.append([new or old for new, old in zip(cleaned, history[-1], strict=True)])
        failures.append(sum(not new for new in cleaned))
        if on_generation is not None:
            on_generation(generation)
    return history, failures


def _generate(backend: Backend, requests: list[Request], *, max_chars: int, retries: int) -> list[str]:
    """The adopted text of each request ("" where nothing usable came back): one batched call for
    all requests (plus, with retries, new-seed rounds for unusable answers), through the same
    completion source, retry rounds and adoption as a study (engine only, no log)."""
    identity = EngineIdentity("chains", getattr(backend, "model_id", "unknown"), "", 0)
    source = CompletionSource(engine=identity, start_engine=lambda: backend)
    origins = [Origin("chains", 0, chain) for chain in range(len(requests))]
    _, completions, adoptions, _ = answer_with_retries(
        source, requests, origins, max_chars=[max_chars] * len(requests), retries=[retries] * len(requests)
    )
    if len(completions) != len(requests):
        raise RuntimeError(f"backend returned {len(completions)} completions for {len(requests)} requests")
    return [adoption.text for adoption in adoptions]
