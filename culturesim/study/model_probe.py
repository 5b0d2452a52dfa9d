"""The model's side of the loop: what a run's current model writes when left to itself.

At generation 0 (the base model) and after each retraining, every retraining run's model retells
a fixed set of texts in short pure-LLM chains (the attractor calibration's protocol,
`culturesim.calibration.chains`, at a cheap size): `[llm.retraining] probe_texts` of the run's
held-out corpus texts (never trained on), `probe_steps` retellings each, with the study's role,
sampling and retries. One engine call per step answers every run's chains, each run with its own
adapter. From the final texts:

- `model_own_diversity`: their mean pairwise cosine distance (0 = the model writes one text
  whatever it is given), the diversity of the model's own free generations (Shumailov et al.
  2024: a collapsing model loses its tails);
- `model_attractor_distance`: the cosine distance (0..2) between the mean unit vector of these
  texts and that of the base model's on the same starts and seeds, i.e. how far the model's
  attractor has moved from the base model's (0 at generation 0 by definition).

The chains' seeds depend on (study seed, replicate, chain, step) only, so the base and every
later model retell the same texts with the same seeds: a difference is the model's, not the
sampling's. Every request goes through the run's completion source: it is logged (with `probe`,
the chain, in place of an agent), a resume asks the log first and a replay needs no engine; the
texts' vectors are stored with the run's (`probe_texts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from culturesim.parts.llm.base import AdapterRef, Request
from culturesim.parts.llm.prompts import build_messages
from culturesim.schema.config import StudyConfig
from culturesim.simulation.completions import CompletionSource, Origin, answer_with_retries
from culturesim.simulation.generation import VectorSource
from culturesim.simulation.model import request_seed

PROBE_PURPOSE = 104  # seed purpose (`request_seed`) of the probe chains


@dataclass(frozen=True)
class ProbeTask:
    """One run's probe at one generation: its model (`adapter`, None for the base model), its starts."""

    run_id: str
    replicate: int
    condition: StudyConfig
    starts: tuple[str, ...]
    adapter: AdapterRef | None


@dataclass(frozen=True)
class ProbeResult:
    """A probe's final texts and what they say about the model."""

    texts: tuple[str, ...]
    centroid: np.ndarray  # unit mean vector of the final texts
    own_diversity: float  # mean pairwise cosine distance of the final texts


class ModelProbe:
    """Runs probe chains for many runs at once through a batch's completion source and vectors."""

    def __init__(self, source: CompletionSource, vectors: VectorSource) -> None:
        self.source = source
        self.vectors = vectors
        self.texts: dict[str, list[str]] = {}  # every probe text per run (their vectors go with the run's)

    def measure(
        self, generation: int, tasks: Sequence[ProbeTask], *, on_step: Callable[[int, int], None] | None = None
    ) -> dict[str, ProbeResult]:
        """Every task's chains in lockstep: one engine call per step (and retry round) for all runs;
        `on_step(done, steps)` is told at the start and after each step."""
        if not tasks:
            return {}
        current = [list(task.starts) for task in tasks]
        steps = max(task.condition.llm.retraining.probe_steps for task in tasks)
        for step in range(1, steps + 1):
            if on_step is not None:
                on_step(step - 1, steps)
            active = [i for i, task in enumerate(tasks) if step <= task.condition.llm.retraining.probe_steps]
            requests, origins, limits, retries, places = [], [], [], [], []
            for i in active:
                task = tasks[i]
                prompt = task.condition.llm.prompt
                for chain, text in enumerate(current[i]):
                    seed = request_seed(task.condition.study.seed, task.replicate, step, chain, PROBE_PURPOSE)
                    requests.append(
                        Request(
                            messages=build_messages(prompt.role, [text], max_chars=prompt.max_chars),
                            seed=seed,
                            sampling=task.condition.llm.sampling,
                            adapter=task.adapter,
                        )
                    )
                    origins.append(Origin(task.run_id, generation, -1, probe=chain))
                    limits.append(prompt.max_chars)
                    retries.append(prompt.retries)
                    places.append((i, chain))
            _, _, adoptions, _ = answer_with_retries(self.source, requests, origins, max_chars=limits, retries=retries)
            for (i, chain), adoption in zip(places, adoptions, strict=True):
                if adoption.text:  # an unusable final answer keeps the chain's text, as a calibration does
                    current[i][chain] = adoption.text
        if on_step is not None:
            on_step(steps, steps)
        results = {}
        for task, texts in zip(tasks, current, strict=True):
            vectors = np.asarray(self.vectors.embed(texts), dtype=np.float64)
            self.texts.setdefault(task.run_id, []).extend(texts)
            results[task.run_id] = ProbeResult(tuple(texts), _unit(vectors.sum(axis=0)), _mean_pairwise(vectors))
        return results


def probe_starts(held_out: Sequence[str], count: int) -> tuple[str, ...]:
    """The texts a run's probe retells: the first `count` of its held-out texts (never trained on)."""
    return tuple(held_out[:count])


def attractor_distance(centroid: np.ndarray, base: np.ndarray) -> float:
    """Cosine distance between two unit centroids (0 = the same direction), as |c − b|² / 2, which
    equals 1 − c·b for unit vectors and is exactly 0 for the same vector (1 − c·c is not: it rounds)."""
    difference = centroid - base
    return float(0.5 * (difference @ difference))


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _mean_pairwise(vectors: np.ndarray) -> float:
    """Mean cosine distance over the distinct pairs of rows (unit vectors); 0 for fewer than two."""
    n = len(vectors)
    if n < 2:
        return 0.0
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    total = units.sum(axis=0)
    same = (float(total @ total) - n) / (n * (n - 1))
    return float(1.0 - same)
