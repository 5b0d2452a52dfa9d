"""The ODD description (culturesim.study.odd): its seven sections, filled from the config and the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.core.vocabulary import BIASES, NETWORK_KINDS
from culturesim.parts.llm.prompts import ROLE_INSTRUCTIONS
from culturesim.schema.config import StudyConfig, load_config
from culturesim.study import odd
from culturesim.study.planner import plan_study

SECTIONS = (
    "Purpose and patterns",
    "Entities, state variables and scales",
    "Process overview and scheduling",
    "Design concepts",
    "Initialization",
    "Input data",
    "Submodels",
)
STUDIES = sorted(Path("studies").glob("*.toml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_shipped_study_is_described_in_the_seven_odd_sections(path: Path) -> None:
    text = odd.describe(plan_study(load_config(path)))
    headings = [line.removeprefix("## ").split(". ", 1)[1] for line in text.splitlines() if line.startswith("## ")]
    assert headings == list(SECTIONS)
    assert "{" not in text.replace("∈ {", "")  # every placeholder was filled


def test_the_quickstart_description_carries_its_numbers_and_rules() -> None:
    config = load_config("studies/quickstart.toml")
    text = odd.describe(plan_study(config))
    assert "60 per run" in text and "A share 0.5 of the humans" in text and "n^2.0" in text
    assert "`population.llm_share` ∈ {0.0, 0.2}" in text  # the factor the conditions vary
    assert "Retell it in your own words as one or two sentences." in text  # the prompt, verbatim
    assert ROLE_INSTRUCTIONS["rewrite"].splitlines()[0] in text
    assert "temperature 0.8, top-p 0.95, at most 48 new tokens" in text
    assert "`attractor_distance`" in text  # recorded by every LLM study
    for h in config.preregistration.hypotheses:
        assert h.statement in text


@pytest.mark.parametrize("bias", BIASES)
@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_every_bias_and_network_kind_has_a_description(bias: str, kind: str) -> None:
    humans = {"bias": bias, "content_axis": ["Share.", "Hoard."]} if bias == "content" else {"bias": bias}
    config = StudyConfig.model_validate({"study": {"name": "x"}, "humans": humans, "network": {"kind": kind}})
    text = odd.describe(plan_study(config))
    assert odd.BIAS_RULES[bias].split(" ")[0] in text and "{" not in text


def test_describe_prints_or_writes_the_markdown(tmp_path: Path) -> None:
    printed = CliRunner().invoke(app, ["describe", "studies/quickstart.toml"])
    assert printed.exit_code == 0 and printed.output.startswith("# ODD description: quickstart")
    target = tmp_path / "odd.md"
    written = CliRunner().invoke(app, ["describe", "studies/quickstart.toml", "--out", str(target)])
    assert written.exit_code == 0 and target.read_text(encoding="utf-8") == printed.output
