"""Retraining's parts without an engine: the data mix, the study-file rules, and LoRA training that
is deterministic to the adapter's bytes and really changes the model."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as load_tensors

from culturesim.parts.corpus import load_corpus
from culturesim.parts.llm.base import AdapterRef, Request
from culturesim.parts.llm.models import resolve_model
from culturesim.parts.llm.training import ADAPTER_CONFIG, ADAPTER_WEIGHTS, LoraSettings, mean_token_nll, train_adapter
from culturesim.parts.training_data import TrainingHistory, draw, draw_mix
from culturesim.schema.config import ConfigError, CorpusSection, StudyConfig, load_config
from culturesim.schema.llm_section import BUILTIN_MODEL


def loads_config(text: str) -> StudyConfig:
    """A study file's text, validated as `culturesim run` reads it."""
    path = Path(tempfile.mkdtemp()) / "study.toml"
    path.write_text(text)
    return load_config(path)


TEXT_STUDY = """
[study]
name = "retrain"
seed = 1
generations = 4
[population]
size = 12
llm_share = 0.25
"""


def test_a_mix_holds_its_human_share_and_each_draw_is_without_replacement() -> None:
    human, machine = [f"h{i}" for i in range(30)], [f"m{i}" for i in range(30)]
    mix, share = draw_mix(human, machine, size=20, human_share=0.25, rng=np.random.default_rng(0))
    assert share == 0.25
    assert sum(t.startswith("h") for t in mix) == 5 and len(set(mix)) == 20
    found, found_share = draw_mix(human[:2], machine, size=20, human_share=None, rng=np.random.default_rng(1))
    assert found_share == sum(t.startswith("h") for t in found) / 20
    assert draw_mix([], machine, size=4, human_share=0.5, rng=np.random.default_rng(2))[1] == 0.0  # no human text
    short = draw(["a", "b"], 5, np.random.default_rng(3))
    assert sorted(short[:2]) == ["a", "b"] and len(short) == 5  # each once, then again with replacement
    with pytest.raises(ValueError, match="candidates"):
        draw_mix([], [], size=3, human_share=None, rng=np.random.default_rng(0))


def test_replace_sees_the_newest_mix_and_accumulate_every_mix() -> None:
    history = TrainingHistory().add(["a", "b"]).add(["c"])
    assert history.data("replace") == ["c"]
    assert history.data("accumulate") == ["a", "b", "c"]


def test_a_frozen_study_keeps_its_canonical_config_and_a_factor_reaches_the_table() -> None:
    frozen = loads_config(TEXT_STUDY)
    assert "retraining" not in frozen.model_dump()["llm"]  # locked studies keep their hash
    varied = loads_config(TEXT_STUDY + '[conditions]\n"llm.retraining.every" = [0, 2]\n')
    assert [c.llm.retraining.every for _, c in varied.condition_grid()] == [0, 2]
    assert varied.retrains() and not frozen.retrains()
    assert "model_heldout_nll" in varied.recorded_keys() and "model_heldout_nll" not in frozen.recorded_keys()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[llm.engine]\nbackend = "transformers"\n[llm.retraining]\nevery = 2\n', "needs the vLLM engine"),
        ("[llm.retraining]\nevery = 2\nhuman_share = 1.5\n", "human_share"),
        ("[llm.retraining]\nevery = 2\nrank = 12\n", "rank"),
    ],
)
def test_a_retraining_the_tool_cannot_do_gets_one_clear_error(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        loads_config(TEXT_STUDY + extra)


def test_a_coordination_study_cannot_retrain() -> None:
    study = TEXT_STUDY.replace('name = "retrain"', 'name = "retrain"\ninteraction = "coordination"')
    with pytest.raises(ConfigError, match="applies to text studies"):
        loads_config(study + "[llm.retraining]\nevery = 1\n")


def test_an_adapter_is_part_of_a_request_s_identity_and_its_path_is_not() -> None:
    plain = Request(messages=(("user", "hi"),), seed=1)
    one, moved = AdapterRef("a" * 64, "/x"), AdapterRef("a" * 64, "/elsewhere")
    assert Request(plain.messages, 1, adapter=one).key() == Request(plain.messages, 1, adapter=moved).key()
    assert Request(plain.messages, 1, adapter=one).key() != plain.key()
    assert plain.key() == Request(messages=(("user", "hi"),), seed=1).key()  # old requests keep their keys


TRAIN_ELSEWHERE = """
import json, sys
import torch
from culturesim.parts.llm.training import LoraSettings, train_adapter
model, texts, settings = sys.argv[1], json.loads(sys.argv[2]), LoraSettings(**json.loads(sys.argv[3]))
print(torch.get_num_threads(), train_adapter(model, "builtin:smollm2-135m", texts, settings).digest)
"""


def _train_elsewhere(model: str, texts: list[str], settings: LoraSettings) -> tuple[int, str]:
    """The torch threads and the digest of the same training in a fresh process with another
    PYTHONHASHSEED and another thread count than this process's (1, or 2 where this one has 1)."""
    import torch

    threads = 1 if torch.get_num_threads() > 1 else 2
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": str(threads)}
    arguments = [model, json.dumps(texts), json.dumps(dataclasses.asdict(settings))]
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_ELSEWHERE, *arguments], capture_output=True, text=True, env=env, check=True
    )
    count, digest = result.stdout.split()[-2:]
    return int(count), digest


@pytest.fixture(scope="module")
def texts() -> list[str]:
    corpus = load_corpus(CorpusSection())["text"].to_list()
    return corpus[:24]


def test_training_is_deterministic_to_the_bytes_and_changes_the_model(texts: list[str], tmp_path) -> None:
    """Same texts, settings and seed: the same adapter bytes, in another process at another thread
    count too; another seed: other bytes. The adapter's
    B matrices (zero at initialisation) are trained, and the model it makes scores its training texts
    better than the base model does."""
    model = resolve_model(BUILTIN_MODEL)
    settings = LoraSettings(rank=8, epochs=2, learning_rate=1e-3, batch_size=8, seed=3)
    import torch

    first = train_adapter(model, BUILTIN_MODEL, texts, settings)
    threads, second = _train_elsewhere(model, texts, settings)
    assert threads != torch.get_num_threads()
    assert first.digest == second  # another process, string-hash seed and thread count
    assert len(first.losses) == 6  # 2 epochs x 3 batches
    other = train_adapter(model, BUILTIN_MODEL, texts, LoraSettings(rank=8, epochs=2, learning_rate=1e-3, seed=4))
    assert other.digest != first.digest
    tensors = load_tensors(first.files[ADAPTER_WEIGHTS])
    trained_b = [name for name, value in tensors.items() if "lora_B" in name and np.abs(value).max() > 0]
    assert len(trained_b) == 7 * 30  # every projection of every layer moved off its zero start
    assert model not in first.files[ADAPTER_CONFIG].decode()  # no machine's path in the bytes
    assert BUILTIN_MODEL in first.files[ADAPTER_CONFIG].decode()  # named by the study file, not a path
    for name, data in first.files.items():
        (tmp_path / name).write_bytes(data)
    base, tuned = mean_token_nll(model, texts), mean_token_nll(model, texts, adapter=tmp_path)
    assert tuned < base - 0.2, (base, tuned)


def test_the_plan_sizes_the_retrainings_and_times_them_from_this_machine_s_rate() -> None:
    """Retrainings after generations 2, 4 and 6 of 7: replace trains on 3 draws in all, accumulate on
    1 + 2 + 3; the estimate adds their texts at the measured seconds per text, or says it lacks the rate."""
    from culturesim.study.planner import plan_study

    study = TEXT_STUDY.replace("generations = 4", "generations = 7\nreplicates = 1")
    config = loads_config(
        study + '[llm.retraining]\nevery = 2\ntexts = 10\nepochs = 2\n[conditions]\n"llm.retraining.regime" = '
        '["replace", "accumulate"]\n'
    )
    size = plan_study(config, rates={}).size
    assert size.retrainings == 2 * 3
    assert size.training_texts == (3 + 6) * 10 * 2
    assert size.table("adapters").rows == 6
    engine = plan_study(config, rates={}).groups[0].engine.key()
    rates = {
        "engine_start": {engine: {"seconds_per_start": 10.0}},
        "llm": {f"{engine} text": {"requests_per_second": 1.0, "requests_per_call": 12.0}},
        "embedding": {config.embedding.model: {"texts_per_second": 100.0}},
        "simulation": {"all": {"seconds_per_agent_generation": 0.0}},
    }
    assert "retraining of builtin:smollm2-135m" in plan_study(config, rates=rates).estimate.missing
    rates["retraining"] = {BUILTIN_MODEL: {"seconds_per_text": 0.5}}
    parts = dict(plan_study(config, rates=rates).estimate.parts)
    assert parts["retraining"] == 180 * 0.5


def test_a_draw_takes_the_held_texts_or_the_new_variants_and_never_a_held_out_text() -> None:
    """'population': one text per agent (a widespread text weighs more), by its author kind; 'new':
    the variants born after the last retraining; a held-out text is in neither."""
    from types import SimpleNamespace

    from culturesim.parts.traits import TraitPool
    from culturesim.study.retraining import _candidates

    pool = TraitPool(dim=2)
    seeds = pool.add(["seed a", "held out"], author_kind="seed", parents=[(), ()], generation=0)
    llm = pool.add(["machine b"], author_kind="llm", parents=[(0,)], generation=1)
    error = pool.add(["seed a!"], author_kind="human_error", parents=[(0,)], generation=2)
    model = SimpleNamespace(pool=pool, traits=np.array([seeds[0], seeds[0], seeds[1], llm[0], error[0]]))
    human, machine = _candidates(model, "population", 0, {"held out"})
    assert human == ["seed a", "seed a", "seed a!"] and machine == ["machine b"]
    human, machine = _candidates(model, "new", 1, {"held out"})
    assert human == ["seed a!"] and machine == []


def test_a_retraining_shows_as_a_timed_phase_of_its_own_then_the_generations_resume() -> None:
    import io

    from culturesim.core.progress import RUN_GENERATIONS, PlainReporter
    from culturesim.study.executors import _training_display

    now, out = [0.0], io.StringIO()
    progress = PlainReporter(out, clock=lambda: now[0], heartbeat=False)
    progress.phase(RUN_GENERATIONS, total=10, done=4)
    show = _training_display(progress)
    for step in range(5):
        show("retraining c0-r0 after generation 2", step, 4)
        now[0] += 3.0
    assert out.getvalue().splitlines()[1:] == [
        "[culturesim 00:00] retraining c0-r0 after generation 2: step 0/4",
        "[culturesim 00:12] retraining c0-r0 after generation 2: step 4/4, done in 12 s",
        "[culturesim 00:12] run-generations 4/10 (40 %)",
    ]


def test_the_probe_s_measures_are_the_cosine_quantities_they_name() -> None:
    """Own diversity is the mean cosine distance over distinct pairs (brute force here); the attractor
    distance is 1 − cos of the two centroids, and exactly 0 for the same centroid, where 1 − c·c rounds."""
    from culturesim.study.model_probe import _mean_pairwise, _unit, attractor_distance

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(6, 384))
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = [1 - units[i] @ units[j] for i in range(6) for j in range(6) if i != j]
    assert _mean_pairwise(vectors) == pytest.approx(np.mean(pairs), abs=1e-12)
    assert _mean_pairwise(vectors[:1]) == 0.0
    rounding = next(c for c in (_unit(v) for v in rng.normal(size=(50, 384))) if 1.0 - c @ c != 0.0)
    assert attractor_distance(rounding, rounding) == 0.0
    a, b = _unit(vectors[0]), _unit(vectors[1])
    assert attractor_distance(a, b) == pytest.approx(1 - a @ b, abs=1e-12)
