"""taplo (the TOML toolkit behind editors' TOML support) checks study files with the committed schema:
every shipped study passes, and a file `load_config` refuses fails in taplo on the same key.

Nothing is fetched: the schema is a local file (`--schema file://...`, or the study's `#:schema` line,
a path relative to the study file), no schema catalog is asked for, no taplo config is read, and any
HTTP request would go to a closed local port."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from culturesim.schema.config import ConfigError, load_config
from culturesim.schema.json_schema import SCHEMA_FILE

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "studies" / SCHEMA_FILE
STUDIES = sorted((REPO / "studies").glob("*.toml")) + sorted((REPO / "studies").glob("*/*.toml"))
TAPLO = shutil.which("taplo", path=str(Path(sys.executable).parent)) or shutil.which("taplo")
OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9"}
LOCATION = re.compile(r"┌─ .+:(\d+):\d+$", re.MULTILINE)

pytestmark = pytest.mark.skipif(TAPLO is None, reason="taplo is not installed (pip install -e '.[dev]')")


def taplo(path: Path, *, schema: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`taplo lint` on one file, with `schema` or else the file's own `#:schema` line."""
    command = [TAPLO, "lint", "--colors", "never", "--no-auto-config", str(path)]
    if schema is not None:
        command[2:2] = ["--schema", schema.as_uri()]
    env = {**os.environ, **OFFLINE, "RUST_LOG": "warn"}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, cwd=path.parent)


def keys_at(text: str, lines: list[int]) -> set[str]:
    """The dotted keys (or table names, on a header line) at these 1-based lines of a TOML text."""
    table, found = "", {}
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[\[?\s*([^\]]+?)\s*\]", line)
        key = re.match(r"\s*([A-Za-z0-9_-]+|\"[^\"]+\")\s*=", line)
        if header:
            table = header.group(1)
            found[number] = table
        elif key:
            found[number] = f"{table}.{key.group(1).strip(chr(34))}".lstrip(".")
    return {found[n] for n in lines if n in found}


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: str(p.relative_to(REPO / "studies")))
def test_every_shipped_study_passes_taplo(study: Path) -> None:
    result = taplo(study, schema=SCHEMA)
    assert result.returncode == 0, result.stdout + result.stderr
    by_line = taplo(study)  # its `#:schema` line alone
    assert by_line.returncode == 0, by_line.stdout + by_line.stderr


# (what the broken copy of the quickstart changes, the key load_config's error and taplo's output name)
BROKEN = {
    "unknown key": (("turnover = 0.5", "turnover = 0.5\nturnovr = 0.5"), "population.turnovr"),
    "out of range": (("size = 60", "size = 1"), "population.size"),
    "wrong type": (("degree = 6", 'degree = "six"'), "network.degree"),
    "not an allowed value": (('kind = "small_world"', 'kind = "smallworld"'), "network.kind"),
    "wrong type inside a pair": (
        ("innovation = 0.02", 'innovation = 0.02\ncontent_axis = ["good", 1]'),
        "humans.content_axis",
    ),  # fmt: skip
    "nested table": (("max_tokens = 48", "max_tokens = 4096"), "llm.sampling.max_tokens"),
    "array of tables": (('direction = "less"', 'direction = "lower"'), "preregistration.hypotheses.direction"),
}


@pytest.mark.parametrize("case", BROKEN, ids=str)
def test_a_file_load_config_refuses_fails_taplo_on_the_same_key(case: str, tmp_path: Path) -> None:
    (old, new), key = BROKEN[case]
    text = (REPO / "studies" / "quickstart.toml").read_text(encoding="utf-8")
    assert text.startswith("#:schema ./study.schema.json\n") and old in text
    path = tmp_path / "broken.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    shutil.copy(SCHEMA, tmp_path / SCHEMA_FILE)  # where its #:schema line points

    with pytest.raises(ConfigError) as refused:
        load_config(path)
    named = re.sub(r"\.\d+(?=\.|:| )", "", str(refused.value))  # hypotheses.0.direction -> hypotheses.direction
    assert f" {key}" in named, named

    result = taplo(path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert key in keys_at(path.read_text(encoding="utf-8"), [int(n) for n in LOCATION.findall(output)]), output
    assert key.rsplit(".", 1)[1] in output
