"""Shipped attractor calibrations: one per role, current, used instead of calibrating, and
reproducible: byte-identical on the CPU kind they were made on, within their own sampling
error on another."""

from __future__ import annotations

import json

import numpy as np
import pytest

from culturesim.calibration import attractor
from culturesim.calibration.shipped import (
    SHIPPED_ROLES,
    attractor_sampling_error,
    cpu_kind,
    default_condition,
    default_spec,
    prompt_digest,
    same_results,
    shipped_folder,
    shipped_record,
)
from culturesim.parts.corpus import load_corpus
from tests.helpers import NEEDS_VLLM

SAMPLING_ERROR_QUANTILE = 0.99  # of the bootstrap distances; two calibrations differ by up to ~sqrt(2) of it


@NEEDS_VLLM
@pytest.mark.parametrize("role", SHIPPED_ROLES)
def test_every_role_ships_a_current_calibration(role: str) -> None:
    """Where the default engine is vLLM on the CPU, each role's default spec has a shipped record made
    with the package's own prompt wording (a changed prompt or default must regenerate them:
    `python -m culturesim.calibration.shipped`)."""
    spec = default_spec(role)
    path = shipped_folder() / f"{spec.key()}.json"
    assert path.exists(), f"no shipped calibration for {role}: run python -m culturesim.calibration.shipped"
    record = json.loads(path.read_text())
    assert record["prompt_digest"] == prompt_digest(role), f"{role}'s prompt changed since its calibration"
    assert record["spec"] == spec.as_dict()
    assert record["made_on"]["cpu"] and record["made_on"]["flags"]
    assert len(record["texts"]) == spec.generations + 1 and len(record["texts"][0]) == spec.chains


def test_a_changed_prompt_is_not_answered_by_a_shipped_calibration(monkeypatch) -> None:
    spec = default_spec("rewrite")
    if shipped_record(spec) is None:
        pytest.skip("no calibration ships for this machine's default engine")
    monkeypatch.setattr("culturesim.calibration.shipped.prompt_digest", lambda role: "changed")
    assert shipped_record(spec) is None


@NEEDS_VLLM
def test_a_default_study_takes_its_attractor_from_the_package(tmp_path) -> None:
    """The runner's lookup (user cache, then package) finds the shipped record and says so."""
    from culturesim.study.runner import StudyRunner

    condition = default_condition("advise")
    spec = default_spec("advise")
    runner = StudyRunner()
    plan = runner.plan(condition)
    assert [(c.spec, c.source, c.requests) for c in plan.calibrations] == [(spec, "shipped", 0)]
    assert plan.size.calibration_requests == 0
    [(record, origin)] = runner.calibrate(plan)
    assert origin == "shipped"
    assert record == shipped_record(spec)
    assert not attractor.cache_path(spec.key()).exists()
    assert runner.engines.started == [], "a shipped calibration must not start an engine"


@NEEDS_VLLM
@pytest.mark.slow
def test_a_recomputed_calibration_matches_the_shipped_one(vllm_backend, embedder) -> None:
    """Recompute the rewrite calibration on this machine: the same bytes where the CPU kind is the one
    it was made on; elsewhere an attractor within the calibration's own sampling error."""
    spec = default_spec("rewrite")
    shipped = shipped_record(spec)
    assert shipped is not None
    texts = load_corpus(default_condition("rewrite").corpus)["text"].to_list()
    fresh = attractor.calibrate(spec, vllm_backend, embedder, texts)
    if cpu_kind() == shipped["made_on"]:
        assert same_results(fresh, shipped)
        return
    distances = attractor_sampling_error(shipped, embedder)
    a, b = np.asarray(fresh["attractor"]), np.asarray(shipped["attractor"])
    apart = 1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert apart <= np.sqrt(2) * np.quantile(distances, SAMPLING_ERROR_QUANTILE), (apart, np.quantile(distances, 0.99))
