"""Both LLM backends really generate, and seeds decide the text."""

from __future__ import annotations

import pytest

from culturesim.parts.llm import Request, deduplicated_generate
from culturesim.parts.llm.convention_prompts import game_messages
from culturesim.parts.llm.prompts import build_messages
from culturesim.schema.sampling import Sampling

TEXTS = [
    "My neighbour waters her plants at midnight because she says they sleep better wet.",
    "Always carry a spare pencil to an exam; pens betray you at the worst moment.",
]


def _requests(seeds: list[int]) -> list[Request]:
    messages = build_messages("rewrite", TEXTS, max_chars=280)
    return [Request(messages=messages, seed=s, sampling=Sampling(max_tokens=24, temperature=1.0)) for s in seeds]


@pytest.mark.parametrize("name", ["vllm_backend", "hf_backend"])
def test_backend_seeds_decide_text(name: str, request: pytest.FixtureRequest) -> None:
    backend = request.getfixturevalue(name)
    first = backend.generate(_requests([1, 2, 3, 1]))
    again = backend.generate(_requests([3, 1]))
    texts = [c.text for c in first]
    assert all(t.strip() for t in texts), texts
    assert all(c.tokens > 0 for c in first)
    assert texts[0] == texts[3], "same seed in one batch must give the same text"
    assert len({texts[0], texts[1], texts[2]}) == 3, "different seeds should give different texts"
    assert [c.text for c in again] == [texts[2], texts[0]], "same seed must give the same text in another batch"


@pytest.mark.parametrize("name", ["vllm_backend", "hf_backend"])
def test_a_move_is_exactly_one_of_its_choices(name: str, request: pytest.FixtureRequest) -> None:
    """Both engines constrain a coordination move to its options (vLLM: structured outputs; transformers:
    a token mask): at temperature 1, over 24 seeds and two lists (one-token letters, multi-token words),
    every answer is exactly one option, more than one option is chosen, and a seed repeats its answer."""
    backend = request.getfixturevalue(name)
    for names in (("F", "J", "K", "M"), ("quartz", "mellow", "brindle")):
        messages = game_messages([(names[0], names[1], -50.0)], names, payoffs=(100.0, -50.0))
        sampling = Sampling(max_tokens=8, temperature=1.0)
        requests = [Request(messages, seed=seed, sampling=sampling, choices=names) for seed in range(24)]
        answers = [c.text for c in backend.generate(requests)]
        assert set(answers) <= set(names), answers
        assert len(set(answers)) > 1, answers
        assert [c.text for c in backend.generate(requests[:3])] == answers[:3]


def test_deduplicated_generate_answers_identical_requests_once() -> None:
    class Counting:
        model_id = "counting"
        calls: list[int] = []

        def generate(self, requests):
            self.calls.append(len(requests))
            from culturesim.parts.llm.base import Completion

            return [Completion(text=f"answer {r.seed}", tokens=2) for r in requests]

        def close(self) -> None:
            pass

    backend = Counting()
    answers = deduplicated_generate(backend, _requests([5, 6, 5, 5]))
    assert backend.calls == [2]
    assert [a.text for a in answers] == ["answer 5", "answer 6", "answer 5", "answer 5"]


@pytest.mark.gpu
def test_vllm_on_cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    pytest.importorskip("vllm", reason="vLLM (pip install culturesim[gpu]) is not installed")
    from culturesim.parts.llm import create_backend
    from culturesim.schema.llm_section import EngineSection

    backend = create_backend(EngineSection(backend="vllm", dtype="float32"), seed=0)
    try:
        first, second = backend.generate(_requests([7])), backend.generate(_requests([7]))
    finally:
        backend.close()
    assert first[0].text.strip()
    assert first[0].text == second[0].text
