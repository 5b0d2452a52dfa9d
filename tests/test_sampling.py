"""One sampling-settings object: the study's [llm.sampling], every Request and every calibration carry it,
and the keys that completion logs and calibration caches store did not change when it became one object."""

from __future__ import annotations

import pydantic
import pytest

from culturesim.calibration.attractor import CalibrationSpec
from culturesim.parts.llm.base import Request
from culturesim.schema.config import StudyConfig
from culturesim.schema.llm_section import LLMSection
from culturesim.schema.sampling import Sampling

MESSAGES = (("system", "Retell the text."), ("user", "A fox crossed the river."))


def test_a_request_key_is_the_one_logs_store():
    """sha256 values computed with the code before `Sampling` existed (Request(..., max_tokens=32,
    temperature=0.7, top_p=0.9) and Request(..., seed=7) with the defaults): replay matches old logs."""
    request = Request(messages=MESSAGES, seed=7, sampling=Sampling(max_tokens=32, temperature=0.7, top_p=0.9))
    assert request.key() == "5652069066f8d7c6221e353c9afacb852839f1fcbe055c08b9218ed77cfa7ab3"
    default = Request(messages=(("user", "A fox crossed the river."),), seed=7)
    assert default.key() == "e910ead39c9d0be473fdd0226af4c8555478fe3c2e6e4f400b5062f28e3ebf6c"


def test_a_calibration_key_is_the_one_caches_store():
    """Computed with the flat CalibrationSpec of before; its records keep the flat layout too."""
    spec = CalibrationSpec(
        engine="vllm/builtin:smollm2-135m/float32#0a1b2c3d", role="rewrite",
        sampling=Sampling(temperature=0.7, top_p=0.9, max_tokens=32), max_chars=280, retries=2, corpus="builtin",
        corpus_digest="0123456789abcdef", embedder="builtin:all-minilm-l6-v2", chains=20, generations=10,
    )  # fmt: skip
    assert spec.key() == "443fa682bf38ea04"
    assert {k: spec.as_dict()[k] for k in ("temperature", "top_p", "max_tokens")} == {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 32,
    }


def test_the_prompt_is_the_last_message():
    assert Request(messages=MESSAGES, seed=0).prompt == "A fox crossed the river."


def test_one_object_and_one_set_of_defaults():
    config = StudyConfig.model_validate({"study": {"name": "t"}, "llm": {"sampling": {"temperature": 0.3}}})
    assert Request(messages=MESSAGES, seed=0).sampling == Sampling() == LLMSection().sampling
    assert config.llm.sampling == Sampling(temperature=0.3)
    assert (Sampling().temperature, Sampling().top_p, Sampling().max_tokens) == (0.8, 0.95, 48)


def test_sampling_settings_are_validated_wherever_they_are_made():
    with pytest.raises(pydantic.ValidationError, match="top_p"):
        Sampling(top_p=0.0)
    with pytest.raises(pydantic.ValidationError, match="llm.temperature moved to llm.sampling.temperature"):
        LLMSection(temperature=0.5)
