"""The analysis report's HTML renders every Markdown table as a table: no raw `|---|` text is left,
checked on the HTML itself and, where Chromium is installed, on the page a browser draws."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest

from culturesim.reports.analysis_report import write_analysis
from culturesim.schema.config import StudyConfig
from culturesim.study.runner import StudyRunner
from tests.helpers import PLAN


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    """A human-only preregistered study with 3 runs per condition, so the report has a verdict table
    and an attractor table, analysed into analysis/report.html."""
    import tomllib

    data = tomllib.loads(PLAN)
    data["study"]["replicates"] = 3
    folder = StudyRunner().run(StudyConfig.model_validate(data), out_root=tmp_path_factory.mktemp("results"))
    write_analysis(folder)
    return folder / "analysis" / "report.html"


def test_every_table_of_the_report_is_an_html_table(report_html: Path) -> None:
    html = report_html.read_text(encoding="utf-8")
    markdown_tables = (report_html.parent / "report.md").read_text(encoding="utf-8").count("\n|---")
    assert markdown_tables >= 2  # the verdicts and the attractor fits
    assert html.count("<table>") == markdown_tables
    assert "|---" not in html
    assert "<th>strength 1−|b|</th>" in html  # the escaped pipes of the attractor header read as |b|


def _chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


@pytest.mark.skipif(
    _chromium() is None and not os.environ.get("CI"), reason="no Chromium installed (Debian: apt install chromium)"
)
def test_chromium_draws_the_report_with_no_raw_table_text(report_html: Path, tmp_path: Path) -> None:
    """In CI (`CI` set; `.ci/run` installs chromium) a missing browser fails the test instead of skipping it."""
    assert _chromium() is not None, "CI must run the browser test: .ci/run installs Debian's chromium"
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600"]
    url = report_html.resolve().as_uri()
    screenshot = tmp_path / "report.png"
    subprocess.run([*browser, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=120)
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.std() > 0.01, "the screenshot is blank"
    dom = subprocess.run([*browser, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120)
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    assert "|---" not in text and dom.stdout.count("<table>") >= 2
