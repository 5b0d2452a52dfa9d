"""Power by simulation from a pilot: writes power.json, never touches the study or its lock."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.schema.config import load_config
from culturesim.study.prereg import lock_path, write_lock
from tests.helpers import PLAN


def test_power_from_a_pilot(tmp_path: Path) -> None:
    study = tmp_path / "locked.toml"
    study.write_text(PLAN)
    write_lock(load_config(study), study)
    before = (study.read_bytes(), lock_path(study).read_bytes())
    result = CliRunner().invoke(
        app,
        [
            "power",
            str(study),
            "--pilot",
            "3",
            "--out",
            str(tmp_path / "out"),
            "--simulations",
            "200",
            "--max-replicates",
            "12",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "H1" in result.output
    [folder] = list((tmp_path / "out" / "locked-pilot").iterdir())
    power = json.loads((folder / "power.json").read_text())
    [h1] = power["hypotheses"]
    curve = {row["n"]: row["power"] for row in h1["curve"]}
    assert sorted(curve) == list(range(2, 13))
    assert all(0.0 <= p <= 1.0 for p in curve.values())
    assert curve[12] >= curve[2]  # more replicates, more power (200 simulations each)
    needed = h1["runs_per_arm_for_80"]
    if needed is None:  # both outcomes are checked: the smallest n reaching 80 %, or none up to 12
        assert max(curve.values()) < 0.8 and h1["replicates_for_80"] is None
    else:
        assert curve[needed] >= 0.8 and all(curve[n] < 0.8 for n in curve if n < needed)
        # one condition per arm (the network kind is the only factor): a replicate adds one run per arm
        assert h1["conditions_per_arm"] == 1 and h1["replicates_for_80"] == needed
    assert (study.read_bytes(), lock_path(study).read_bytes()) == before
