"""The LLM's attractor: where pure-LLM chains end up, as a point in embedding space.

Left to itself, an LLM retelling texts drifts toward what it likes to write (Perez et al.
2024). `attractor_distance` measures how close a culture has come to that point, so the point
must be known for the model, corpus, role and sampling settings a study uses. A calibration
runs `[attractor] chains` pure-LLM chains (default 20) from corpus texts for `generations`
retellings (default 10); the attractor is the mean unit embedding of their final texts.

A calibration is cached under the sha256 of everything that decides it (`CalibrationSpec.key`)
in `$CULTURESIM_CACHE/attractors/`, and copied into every results folder that uses it, with
its chains' texts: a replay reads it from there and needs no engine. Its engine is the study's
(`engine_identity.StudyEngines`), so a replay finds it wherever it runs; a folder written before
engine keys were resolved holds it under its legacy key (`CalibrationSpec.legacy_key`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from culturesim.calibration.chains import run_chains
from culturesim.core.settings import cache_root
from culturesim.parts.engine_identity import EngineIdentity, StudyEngines, legacy_key
from culturesim.parts.llm.base import Backend
from culturesim.schema.config import StudyConfig
from culturesim.schema.llm_section import PromptSection
from culturesim.schema.sampling import Sampling

if TYPE_CHECKING:
    from culturesim.simulation.generation import VectorSource

CALIBRATION_SEED = 0  # the attractor belongs to the model and its settings, not to a study's seed
ATTRACTOR_FOLDER = "attractors"


class MissingCalibration(RuntimeError):
    """A replay met a study whose results folder holds no calibration for one of its conditions."""


@dataclass(frozen=True)
class CalibrationSpec:
    """Everything that decides a calibration's texts and vectors (`legacy_engine` does not: it is the
    engine key calibrations had before keys named the backend that ran, to find them in old folders)."""

    engine: str  # EngineIdentity key: backend/model/dtype/device#settings
    role: str
    sampling: Sampling
    max_chars: int
    retries: int
    corpus: str  # corpus source ('builtin' or a path)
    corpus_digest: str  # sha256 of the corpus texts, first 16 hex digits
    embedder: str
    chains: int
    generations: int
    seed: int = CALIBRATION_SEED
    legacy_engine: str | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The spec as one flat JSON object, the sampling settings among the other fields (the layout
        calibration records and cached keys have always had)."""
        fields = {f.name: getattr(self, f.name) for f in dataclass_fields(self) if f.compare}
        sampling = fields.pop("sampling")
        return {**fields, **sampling.model_dump()}

    def key(self) -> str:
        """16 hex digits of the sha256 of the canonical JSON of the spec."""
        payload = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def legacy_key(self) -> str | None:
        """The key this calibration had before engine keys were resolved (None: no legacy engine)."""
        return None if self.legacy_engine is None else replace(self, engine=self.legacy_engine).key()


def calibration_role(condition: StudyConfig) -> str:
    """The role most of a condition's LLM text is written in: the LLM agents' role; else "advise"
    for consulting humans; else "rewrite", the role of an LLM that retells a copy."""
    if condition.population.llm_share > 0:
        return condition.llm.prompt.role
    return "advise" if condition.humans.llm_consultation > 0 else "rewrite"


def calibration_spec(
    condition: StudyConfig, corpus_texts: list[str], engine: EngineIdentity | None = None
) -> CalibrationSpec:
    """The calibration `condition` is measured against; `engine` defaults to the one this machine resolves."""
    llm = condition.llm
    digest = hashlib.sha256("\n".join(corpus_texts).encode()).hexdigest()[:16]
    return CalibrationSpec(
        engine=(engine or EngineIdentity.of(llm.engine)).key(),
        role=calibration_role(condition),
        sampling=llm.sampling,
        max_chars=llm.prompt.max_chars,
        retries=llm.prompt.retries,
        corpus=condition.corpus.source,
        corpus_digest=digest,
        embedder=condition.embedding.model,
        chains=condition.attractor.chains,
        generations=condition.attractor.generations,
        legacy_engine=legacy_key(llm.engine),
    )


def study_specs(
    config: StudyConfig, corpora: dict[int, list[str]], engines: StudyEngines | None = None
) -> dict[int, CalibrationSpec]:
    """The calibration each condition is measured against (condition index -> spec), or {} for a
    human-only study. A condition without LLMs takes the first LLM condition's calibration, so
    that a control and its treatment are measured against the same point. `engines`: the study's
    recorded engine identities (None: a study not run yet, resolved on this machine)."""
    grid = config.condition_grid()
    llm_conditions = [i for i, (_, condition) in enumerate(grid) if condition.uses_llm()]
    if not llm_conditions or config.study.interaction == "coordination":  # names have no attractor
        return {}
    engines = engines or StudyEngines()
    specs = {i: calibration_spec(grid[i][1], corpora[i], engines.identity(grid[i][1].llm.engine))
             for i in llm_conditions}  # fmt: skip
    reference = specs[llm_conditions[0]]
    return {i: specs.get(i, reference) for i in range(len(grid))}


def calibrate(
    spec: CalibrationSpec,
    backend: Backend,
    vectors: VectorSource,
    corpus_texts: list[str],
    *,
    on_generation: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the reference chains and return the calibration record (see `attractor_vector`).

    `on_generation(g)` is told when chain generation g of `spec.generations` is done (progress only)."""
    started = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    picks = rng.choice(len(corpus_texts), size=min(spec.chains, len(corpus_texts)), replace=False)
    initial = [corpus_texts[i] for i in picks]
    history, failures = run_chains(
        backend, initial, generations=spec.generations, sampling=spec.sampling, seed=spec.seed,
        prompt=PromptSection(role=spec.role, max_chars=spec.max_chars, retries=spec.retries),
        on_generation=on_generation,
    )  # fmt: skip
    return {
        "key": spec.key(),
        "spec": spec.as_dict(),
        **chain_geometry(history, vectors),
        "texts": history,
        "failures": failures,
        "requests": len(initial) * spec.generations,
        "seconds": round(time.perf_counter() - started, 3),
        "created": datetime.now(UTC).isoformat(),
    }


def chain_geometry(history: list[list[str]], vectors: VectorSource) -> dict[str, list[float]]:
    """The attractor (the mean unit embedding of the chains' final texts) and each generation's
    centroid distance to it (1 - cosine), from the chains' texts per generation."""
    flat = [text for texts in history for text in texts]
    emb = np.asarray(vectors.embed(flat), dtype=np.float64).reshape(len(history), len(history[0]), -1)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    centroids = emb.mean(axis=1)
    attractor = centroids[-1]
    direction = attractor / np.linalg.norm(attractor)
    return {"attractor": attractor.tolist(), "centroid_distance": (1.0 - centroids @ direction).tolist()}


def attractor_vector(record: dict[str, Any]) -> np.ndarray:
    """The attractor of a calibration record, (d,) float64 (not unit length: a mean of unit vectors)."""
    return np.asarray(record["attractor"], dtype=np.float64)


def folder_path(folder: Path, key: str) -> Path:
    return folder / ATTRACTOR_FOLDER / f"{key}.json"


def cache_path(key: str) -> Path:
    return cache_root() / ATTRACTOR_FOLDER / f"{key}.json"


def read_record(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def find_record(folder: Path, spec: CalibrationSpec) -> Path | None:
    """The file of `spec`'s calibration in a results folder, under its key or, in a folder written
    before engine keys were resolved, under its legacy key; None where the folder holds neither."""
    for key in (spec.key(), spec.legacy_key()):
        if key is not None and folder_path(folder, key).exists():
            return folder_path(folder, key)
    return None


def load_attractors(folder: Path, specs: dict[int, CalibrationSpec]) -> dict[int, np.ndarray]:
    """Condition index -> attractor, for the calibrations `specs` (condition index -> spec, from the
    study's plan) as a results folder holds them (the runner writes them before the batches that need them)."""
    attractors = {}
    for index, spec in specs.items():
        path = find_record(folder, spec)
        if path is None:
            raise MissingCalibration(
                f"{folder_path(folder, spec.key())} is missing: condition {index} is measured against calibration "
                f"{spec.key()}, which this results folder does not hold; run `culturesim calibrate` or the study again"
            )
        attractors[index] = attractor_vector(read_record(path))
    return attractors
