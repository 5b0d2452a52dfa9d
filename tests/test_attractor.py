"""The LLM's attractor (culturesim.calibration.attractor): calibration keys, which conditions share one, that
fresh chains move toward it, and that every LLM study records the distance and its calibration."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from culturesim.calibration import attractor
from culturesim.calibration.chains import run_chains
from culturesim.parts.corpus import load_corpus
from culturesim.parts.llm.models import BUILTIN_MODEL, resolve_model
from culturesim.schema.config import CorpusSection, StudyConfig
from culturesim.schema.llm_section import PromptSection
from culturesim.study.runner import StudyRunner

CORPUS = load_corpus(CorpusSection())["text"].to_list()


def llm_study(**sections) -> StudyConfig:
    data = {
        "study": {"name": "attractor", "seed": 3, "replicates": 1, "generations": 2},
        "population": {"size": 12, "turnover": 0.5},
        "network": {"kind": "small_world", "degree": 4},
        "llm": {"sampling": {"max_tokens": 16}, "engine": {"backend": "vllm"}},
        "attractor": {"chains": 4, "generations": 2},
        "conditions": {"population.llm_share": [0.0, 0.25]},
    }
    data.update(sections)
    return StudyConfig.model_validate(data)


def test_every_setting_that_decides_a_calibration_is_in_its_key():
    spec = attractor.calibration_spec(llm_study().condition_grid()[1][1], CORPUS)
    sampling = [spec.sampling.model_copy(update={name: value})
                for name, value in {"temperature": 0.5, "top_p": 0.5, "max_tokens": 8}.items()]  # fmt: skip
    changed = [("engine", "vllm/other#0"), ("role", "create"), *(("sampling", s) for s in sampling),
               ("max_chars", 100), ("retries", 0), ("corpus", "other.csv"), ("corpus_digest", "0" * 16),
               ("embedder", "other"), ("chains", 5), ("generations", 3), ("seed", 1)]  # fmt: skip
    # legacy_engine only finds calibrations of old folders (compare=False): it decides nothing
    assert {name for name, _ in changed} == {f.name for f in dataclasses.fields(spec) if f.compare}
    keys = {dataclasses.replace(spec, **{name: value}).key() for name, value in changed}
    assert spec.key() not in keys and len(keys) == len(changed)
    assert dataclasses.replace(spec, legacy_engine="vllm/other#0").key() == spec.key()
    other_corpus = attractor.calibration_spec(llm_study().condition_grid()[1][1], CORPUS[:-1])
    assert other_corpus.key() != spec.key()


def test_a_control_is_measured_against_its_treatments_calibration():
    specs = attractor.study_specs(llm_study(), {0: CORPUS, 1: CORPUS})
    assert specs[0] == specs[1] and specs[1].role == "rewrite"
    consulting = llm_study(conditions={"humans.llm_consultation": [0.0, 0.2]})
    assert {s.role for s in attractor.study_specs(consulting, {0: CORPUS, 1: CORPUS}).values()} == {"advise"}
    mutating = llm_study(conditions={"humans.llm_mutation": [0.0, 0.05]})
    assert {s.role for s in attractor.study_specs(mutating, {0: CORPUS, 1: CORPUS}).values()} == {"rewrite"}
    human_only = llm_study(conditions={"humans.copy_error": [0.0, 0.1]})
    assert attractor.study_specs(human_only, {0: CORPUS, 1: CORPUS}) == {}


def test_the_default_attractor_section_leaves_the_config_hash_alone():
    data = llm_study().model_dump(mode="json")
    del data["attractor"]
    default = StudyConfig.model_validate(data)
    assert "attractor" not in default.model_dump(mode="json")
    assert "attractor" in llm_study().model_dump(mode="json")
    assert default.hash() != llm_study().hash()


@pytest.mark.slow
def test_fresh_chains_move_toward_the_calibrated_attractor(llm_backend, embedder):
    """Calibrate on 12 corpus texts, then run 12 other texts with other seeds: the fresh chains come
    closer to the attractor than where they started (role create at the default 48 tokens, where the
    pull is strongest: measured over 20 chains, 0.81 at generation 0 and 0.67-0.74 from generation 2 on)."""
    study = llm_study(
        attractor={"chains": 12, "generations": 4}, llm={"prompt": {"role": "create"}, "engine": {"backend": "vllm"}}
    )
    spec = attractor.calibration_spec(study.condition_grid()[1][1], CORPUS)
    record = attractor.calibrate(spec, llm_backend, embedder, CORPUS)
    assert record["key"] == spec.key() and len(record["centroid_distance"]) == 5
    assert record["requests"] == 48 and record["seconds"] > 0
    direction = attractor.attractor_vector(record)
    direction /= np.linalg.norm(direction)

    used = {text for text in record["texts"][0]}
    fresh = [text for text in CORPUS if text not in used][::25][:12]
    history, _ = run_chains(llm_backend, fresh, generations=4, prompt=PromptSection(role="create", retries=2), seed=99)
    emb = np.asarray(embedder.embed([t for texts in history for t in texts]), dtype=np.float64)
    emb = emb.reshape(len(history), len(fresh), -1)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    distance = 1.0 - emb.mean(axis=1) @ direction
    print("\ncentroid distance to the attractor by generation:", np.round(distance, 3))
    assert distance[-1] < distance[0]
    assert np.mean(distance[1:]) < distance[0] - 0.03


@pytest.mark.slow
def test_an_llm_study_records_the_distance_and_its_calibration(runner, tmp_path):
    config = llm_study()
    folder = runner.run(config, out_root=tmp_path / "a")
    metrics = pl.read_parquet(folder / "metrics.parquet").filter(pl.col("metric") == "attractor_distance")
    assert metrics.height == 2 * 3  # both conditions (the control too), generations 0-2
    assert metrics["value"].is_finite().all() and metrics["value"].is_between(0, 2).all()

    manifest = json.loads((folder / "manifest.json").read_text())
    [(key, entry)] = manifest["attractors"].items()
    assert entry["from"] == "calibrated" and len(entry["conditions"]) == 2
    assert entry["spec"]["role"] == "rewrite" and entry["requests"] == 8
    assert (folder / entry["file"]).exists()
    assert not attractor.cache_path(key).exists()  # an injected test engine never fills the cache

    again = runner.run(config, out_root=tmp_path / "b")
    assert (again / "metrics.parquet").read_bytes() == (folder / "metrics.parquet").read_bytes()
    assert (again / entry["file"]).read_bytes() != b""


@pytest.mark.slow
def test_calibrate_fills_the_cache_that_run_then_uses(tmp_path):
    """The command line in its own process with its own engine: `calibrate` computes and caches, a
    second call and a `run` take the calibration from the cache."""
    # A fresh cache for the calibration, holding the session's converted model (a link to it),
    # so this test does not convert the model again (about 25 s here).
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "models").symlink_to(Path(resolve_model(BUILTIN_MODEL)).parent, target_is_directory=True)
    env = {**os.environ, "CULTURESIM_CACHE": str(tmp_path / "cache")}
    study = tmp_path / "study.toml"
    study.write_text(
        '[study]\nname = "cal"\nseed = 1\nreplicates = 1\ngenerations = 1\n[population]\nsize = 8\n'
        'llm_share = 0.25\n[llm.engine]\nbackend = "vllm"\n[llm.sampling]\nmax_tokens = 12\n'
        "[attractor]\nchains = 3\ngenerations = 2\n",
        encoding="utf-8",
    )

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "culturesim.cli", *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    [(key, origin, requests)] = re.findall(
        r"\b([0-9a-f]{16}) \((\w+)\):.*?: (\d+) requests", cli("calibrate", str(study))
    )
    assert origin == "calibrated" and requests == "6"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CULTURESIM_CACHE", env["CULTURESIM_CACHE"])
        assert attractor.cache_path(key).exists()
    assert f"{key} (cache)" in cli("calibrate", str(study))
    cli("run", str(study), "--out", str(tmp_path / "results"))
    [manifest] = (tmp_path / "results").glob("cal/*/manifest.json")
    assert json.loads(manifest.read_text())["attractors"][key]["from"] == "cache"


@pytest.mark.slow
def test_a_replay_without_the_calibration_names_it(runner, tmp_path: Path):
    folder = runner.run(llm_study(), out_root=tmp_path)
    replayed = StudyRunner().replay(folder, tmp_path / "replay")
    assert (replayed / "metrics.parquet").read_bytes() == (folder / "metrics.parquet").read_bytes()
    for path in (folder / attractor.ATTRACTOR_FOLDER).iterdir():
        path.unlink()
    with pytest.raises(attractor.MissingCalibration, match="holds no calibration"):
        StudyRunner().replay(folder, tmp_path / "replay2")
