"""Retraining between generations: each run's LLM agents' model learns from its own culture.

After every `llm.retraining.every` generations, each run whose condition retrains draws a training
mix from its population (`culturesim.parts.training_data`: its size, its human share, the
replace/accumulate regime), fine-tunes a LoRA adapter of the engine's model on it
(`culturesim.parts.llm.training`) and answers its next generations with that adapter. Each run
has its own lineage, since each run's culture differs.

Everything a retraining uses is a function of the study and of the run's completions, so a
resume re-derives the same inputs and finds the stored adapter (`AdapterStore`) instead of
training, and a replay (`train=False`) reads adapters and records without torch or a model.
Seeds: the draw and the training each derive from (study seed, replicate, generation) only.

Model-side metrics, per run at every retraining (the culture keeps its own):
- `heldout_nll`: mean token negative log-likelihood (nats) of corpus texts the run never trained
  on (no draw includes them), Shumailov et al.'s measure; `base_heldout_nll`
  is the base model's on the same texts;
- the training loss curve (nats per token, one value per optimizer step);
- `own_diversity` and `attractor_distance` of the model's own retellings
  (`culturesim.study.model_probe`), at generation 0 and after each retraining.

A generation's metrics name the model that answered it: generation 0 and every generation before
the first retraining show the base model, generation g + 1 the model retrained after generation g.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from culturesim.parts.llm.base import AdapterRef
from culturesim.parts.llm.models import resolve_model
from culturesim.parts.llm.training import LoraSettings, mean_token_nll, train_adapter
from culturesim.parts.training_data import TrainingHistory, draw_mix
from culturesim.schema.retraining_section import RetrainingSection
from culturesim.simulation.model import CultureModel, RunSpec, request_seed
from culturesim.study.adapter_store import AdapterStore
from culturesim.study.model_probe import ModelProbe, ProbeResult, ProbeTask, attractor_distance, probe_starts
from culturesim.study.planner import StudyPlan

DRAW_PURPOSE = 101  # seed purposes (`request_seed`): the training mix, the trainer, the held-out texts
TRAIN_PURPOSE = 102
HELD_OUT_PURPOSE = 103

NAN = float("nan")

# What the model's side of a generation is doing, for a progress display: (phase, steps done, steps in
# all), told at step 0 (a phase starts) and after each step. Phases: a run's retraining (optimizer
# steps), the base model's held-out scoring before generation 0 (one step per held-out set), the
# probe of the models just made (one step per retelling).
TrainingProgress = Callable[[str, int, int], None]
SCORING = "scoring the base model on held-out texts"


class MissingAdapter(RuntimeError):
    """A replay met a retraining its results folder holds no record of."""


@dataclass
class RunLineage:
    """One run's model: its current adapter, what it was trained on, its held-out texts."""

    settings: RetrainingSection
    model: str  # the study file's model name
    held_out: tuple[str, ...]
    adapter: AdapterRef | None = None
    history: TrainingHistory[str] = field(default_factory=TrainingHistory)
    last: int = 0  # generation of the last retraining (0: none yet)
    base_nll: float | None = None
    base_centroid: np.ndarray | None = None  # unit mean vector of the base model's probe texts


class Retrainer:
    """The `ModelUpdates` of one lockstep batch (see `culturesim.simulation.generation`)."""

    def __init__(
        self,
        plan: StudyPlan,
        runs: Sequence[RunSpec],
        store: AdapterStore,
        *,
        train: bool = True,
        on_progress: TrainingProgress | None = None,
        probe: ModelProbe | None = None,
    ) -> None:
        self.store = store
        self.train = train
        self.on_progress = on_progress
        self.probe = probe
        self.plan = plan
        self.runs = {run.run_id: run for run in runs}
        self.lineages: dict[str, RunLineage] = {}
        self.seconds = 0.0  # spent training, scoring and probing here (a stored retraining costs nothing)
        self.texts = 0  # texts trained on here, each epoch counted
        self._base_nll: dict[tuple[str, tuple[str, ...]], float] = {}
        if not plan.config.retrains():
            return
        for run in runs:
            condition = plan.condition(run.condition_index)
            settings = condition.llm.retraining
            if condition.uses_llm():  # a frozen condition too: its model's metrics are the control
                corpus = plan.corpora[run.condition_index]
                held_out = _held_out(run, corpus, settings.held_out)
                self.lineages[run.run_id] = RunLineage(settings, condition.llm.engine.model, held_out)

    def __bool__(self) -> bool:
        return bool(self.lineages)

    def adapter(self, run_id: str) -> AdapterRef | None:
        lineage = self.lineages.get(run_id)
        return None if lineage is None else lineage.adapter

    def prepare(self, models: list) -> None:
        """Before generation 0: each run's model is the base model; record its held-out score and
        probe it (the reference of every later probe of the run)."""
        started = time.perf_counter()
        scores = {}
        lineages = [(m.spec.run_id, self.lineages[m.spec.run_id]) for m in models if m.spec.run_id in self.lineages]
        if not lineages:
            return
        sets = len({(lineage.model, lineage.held_out) for _, lineage in lineages})
        self._show(SCORING, 0, sets)
        for run_id, lineage in lineages:
            lineage.base_nll = scores[run_id] = self._base_score(run_id, lineage)
            if 0 < len(self._base_nll) < sets:
                self._show(SCORING, len(self._base_nll), sets)
        self._show(SCORING, sets, sets)
        probes = self._probe(0, [m.spec.run_id for m in models if m.spec.run_id in self.lineages])
        for model in models:
            run_id = model.spec.run_id
            if run_id in self.lineages:
                if run_id in probes:
                    self.lineages[run_id].base_centroid = probes[run_id].centroid
                model.model_metrics = self._metrics(run_id, scores[run_id], probes.get(run_id))
        self.seconds += time.perf_counter() - started

    def after(self, generation: int, models: list) -> None:
        """Retrain every run whose model learns after `generation`, then probe the new models together."""
        started = time.perf_counter()
        scores = {}
        for model in models:
            lineage = self.lineages.get(model.spec.run_id)
            if lineage is not None and lineage.settings.enabled and generation % lineage.settings.every == 0:
                scores[model.spec.run_id] = self._retrain(model, lineage, generation)["heldout_nll"]
        probes = self._probe(generation, list(scores))
        for model in models:
            if model.spec.run_id in scores:
                run_id = model.spec.run_id
                model.model_metrics = self._metrics(run_id, scores[run_id], probes.get(run_id))
        self.seconds += time.perf_counter() - started

    def probe_texts(self, run_id: str) -> list[str]:
        """Every text a run's model probes wrote (their vectors are stored with the run's)."""
        return [] if self.probe is None else self.probe.texts.get(run_id, [])

    def _probe(self, generation: int, run_ids: list[str]) -> dict[str, ProbeResult]:
        """Probe the current model of each of `run_ids` whose study asks for it, in one lockstep set of calls."""
        tasks = []
        for run_id in run_ids:
            lineage = self.lineages[run_id]
            if self.probe is not None and lineage.settings.probe_texts > 0:
                run = self.runs[run_id]
                starts = probe_starts(lineage.held_out, lineage.settings.probe_texts)
                condition = self.plan.condition(run.condition_index)
                tasks.append(ProbeTask(run_id, run.replicate, condition, starts, lineage.adapter))
        if not tasks:
            return {}
        when = "before generation 1" if generation == 0 else f"after generation {generation}"
        label = f"probing {len(tasks)} model(s) {when}"
        return self.probe.measure(generation, tasks, on_step=lambda done, total: self._show(label, done, total))

    def _show(self, phase: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(phase, done, total)

    def _metrics(self, run_id: str, heldout_nll: float, probe: ProbeResult | None) -> dict[str, float]:
        """The model's values a generation records (NaN for a probe the study leaves out)."""
        base = self.lineages[run_id].base_centroid
        if probe is None or base is None:
            return {"model_heldout_nll": heldout_nll, "model_own_diversity": NAN, "model_attractor_distance": NAN}
        return {
            "model_heldout_nll": heldout_nll,
            "model_own_diversity": probe.own_diversity,
            "model_attractor_distance": attractor_distance(probe.centroid, base),
        }

    def _base_score(self, run_id: str, lineage: RunLineage) -> float:
        """The base model's held-out score of a run: its generation-0 record, else computed (once per
        model and held-out set) and recorded."""
        record = self.store.record(run_id, 0)
        if record is not None and record["held_out_texts"] == content_digest(lineage.held_out):
            return record["heldout_nll"]
        if not self.train:
            raise MissingAdapter(f"the results folder holds no base-model record of run {run_id} (generation 0)")
        key = (lineage.model, lineage.held_out)
        if key not in self._base_nll:
            self._base_nll[key] = mean_token_nll(resolve_model(lineage.model), lineage.held_out)
        record = {
            "run_id": run_id,
            "generation": 0,
            "adapter": None,
            "held_out": len(lineage.held_out),
            "held_out_texts": content_digest(lineage.held_out),
            "heldout_nll": self._base_nll[key],
        }
        self.store.put_record(record)
        return record["heldout_nll"]

    def _retrain(self, model: CultureModel, lineage: RunLineage, generation: int) -> dict[str, Any]:
        spec, settings = model.spec, lineage.settings
        seeds = [model.spec.study_seed, spec.replicate, generation]
        human, machine = _candidates(model, settings.source, lineage.last, set(lineage.held_out))
        mix, share = draw_mix(
            human,
            machine,
            size=settings.texts,
            human_share=settings.human_share,
            rng=np.random.default_rng([*seeds, DRAW_PURPOSE]),
        )
        lineage.history = lineage.history.add(mix)
        data = lineage.history.data(settings.regime)
        lora = LoraSettings(
            rank=settings.rank,
            epochs=settings.epochs,
            learning_rate=settings.learning_rate,
            batch_size=settings.batch_size,
            seed=request_seed(spec.study_seed, spec.replicate, generation, 0, TRAIN_PURPOSE),
        )
        inputs = content_digest({"model": lineage.model, "settings": asdict(lora), "texts": data})
        record = self.store.record(spec.run_id, generation)
        if record is None or record["inputs"] != inputs:
            if not self.train:
                raise MissingAdapter(
                    f"the results folder holds no adapter for run {spec.run_id}'s retraining at generation "
                    f"{generation} (inputs {inputs[:12]}): replay with the study's own config and results folder"
                )
            record = self._train(spec, lineage, generation, data, lora, inputs, share)
        lineage.adapter = self.store.adapter(record["adapter"])
        lineage.last = generation
        return record

    def _train(self, spec: RunSpec, lineage, generation, data, lora: LoraSettings, inputs: str, share: float):
        path = resolve_model(lineage.model)

        def step(done: int, total: int) -> None:
            self._show(f"retraining {spec.run_id} after generation {generation}", done, total)

        trained = train_adapter(path, lineage.model, data, lora, on_step=step)
        adapter = self.store.put_adapter(trained.files)
        record = {
            "run_id": spec.run_id,
            "generation": generation,
            "adapter": adapter.name,
            "inputs": inputs,
            "parent": None if lineage.adapter is None else lineage.adapter.name,
            "training_set": content_digest(data),
            "texts": len(data),
            "drawn": lineage.settings.texts,
            "human_share": share,
            "regime": lineage.settings.regime,
            "source": lineage.settings.source,
            "settings": asdict(lora),
            "tokens": trained.tokens,
            "seconds": trained.seconds,
            "losses": list(trained.losses),
            "held_out": len(lineage.held_out),
            "held_out_texts": content_digest(lineage.held_out),
            "heldout_nll": mean_token_nll(path, lineage.held_out, adapter=Path(adapter.path)),
            "base_heldout_nll": lineage.base_nll,
        }
        self.store.put_record(record)
        self.texts += len(data) * lora.epochs
        return record


def _candidates(model: CultureModel, source: str, last: int, excluded: set[str]) -> tuple[list[str], list[str]]:
    """Human- and machine-written texts a run may train on: the traits its agents hold now (one per
    agent, so a widespread text weighs more), or the variants born since the last retraining;
    never a held-out text."""
    pool = model.pool
    if source == "population":
        ids = [int(t) for t in model.traits]
    else:
        ids = [int(t) for t in np.flatnonzero(pool.born > last)]
    human, machine = [], []
    for trait in ids:
        text = pool.texts[trait]
        if text not in excluded:
            (machine if pool.machine_authored[trait] else human).append(text)
    return human, machine


def _held_out(run: RunSpec, corpus: Sequence[str], count: int) -> tuple[str, ...]:
    """The corpus texts a run's model is scored on: a seeded sample of `count` corpus texts, the same
    for every condition of a replicate (so conditions compare on the same texts). No draw of the
    run ever includes one, even where an agent holds it as its seed."""
    rng = np.random.default_rng([run.study_seed, run.replicate, HELD_OUT_PURPOSE])
    return tuple(corpus[i] for i in sorted(rng.permutation(len(corpus))[: min(count, len(corpus))]))


def content_digest(value: Any) -> str:
    """SHA-256 of `value` as canonical JSON (sorted keys): the identity of a training set or held-out set."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
