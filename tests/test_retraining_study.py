"""A study whose LLM agents' model learns from the culture, end to end on the real vLLM engine: each
run answers with its own adapter, the log names it, a SIGKILL during a retraining resumes to the same
bytes (adapters included), and a replay needs neither vLLM nor peft."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from culturesim.api import draw_figure
from culturesim.core.fingerprint import file_sha256
from culturesim.parts.llm.models import resolve_model
from culturesim.parts.llm.training import mean_token_nll
from culturesim.schema.llm_section import BUILTIN_MODEL
from culturesim.study.adapter_store import AdapterStore
from culturesim.study.retraining import content_digest
from tests.helpers import ENV, NEEDS_VLLM, llm_toy_study

# One worker runs the whole module: its uninterrupted study (a session fixture) is made once.
pytestmark = [pytest.mark.slow, NEEDS_VLLM, pytest.mark.xdist_group("retraining_study")]

STUDY = llm_toy_study(
    "retrain",
    seed=11,
    replicates=1,
    generations=3,
    max_tokens=16,
    extra="""[llm.retraining]
every = 1
texts = 12
batch_size = 4
learning_rate = 1e-3
held_out = 8
[conditions]
"llm.retraining.regime" = ["replace", "accumulate"]
""",
)
TABLES = ("metrics", "traits", "population", "generations", "vectors")
# The command line with the trainer patched to SIGKILL the process at the first optimizer step of the
# N-th training: after its draw, before its adapter or record is stored.
KILLER = """
import os, signal, sys
from culturesim.study import retraining
kill_at, trainings = int(sys.argv.pop(1)), [0]
train = retraining.train_adapter
def killing_train(*args, on_step=None, **kwargs):
    trainings[0] += 1
    def step(done, total):
        if trainings[0] == kill_at and done == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        if on_step is not None:
            on_step(done, total)
    return train(*args, on_step=step, **kwargs)
retraining.train_adapter = killing_train
from culturesim.cli import app
app()
"""
# The command line where neither vLLM nor peft can be imported.
NO_ENGINE = "import sys; sys.modules['vllm'] = None; sys.modules['peft'] = None\nfrom culturesim.cli import app\napp()"


def _cli(*args: str, prelude: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", prelude, *args] if prelude else [sys.executable, "-m", "culturesim.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV)


# Session scope: pytest tears a module fixture down whenever the next test on the worker is another
# module's (xdist interleaves them), and this study costs about a minute to make again.
@pytest.fixture(scope="session")
def study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study") / "retrain.toml"
    path.write_text(STUDY)
    return path


@pytest.fixture(scope="session")
def whole(study_file: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole")
    result = _cli("run", str(study_file), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    [folder] = list((out / "retrain").iterdir())
    (out / "printed.txt").write_text(result.stdout + result.stderr)
    return folder


def test_a_run_shows_each_phase_of_the_model_s_side(whole: Path) -> None:
    """What a researcher sees while the model's side works: the base scoring, each retraining's
    optimizer steps and each probe, each a timed phase, then the generations again."""
    printed = (whole.parents[1] / "printed.txt").read_text()
    for phase in (
        "scoring the base model on held-out texts: step 0/1",
        "scoring the base model on held-out texts: step 1/1, done in",
        "probing 2 model(s) before generation 1: step 0/2",
        "probing 2 model(s) before generation 1: step 2/2, done in",
        "retraining c0-r0 after generation 1: step 0/3",
        "retraining c1-r0 after generation 2: step 6/6, done in",
        "probing 2 model(s) after generation 2: step 2/2, done in",
    ):
        assert phase in printed, phase


def _log(folder: Path) -> list[dict]:
    lines = [json.loads(line) for path in sorted((folder / "log").glob("*.jsonl")) for line in path.open()]
    return [line for line in lines if "commit" not in line]


def _records(folder: Path) -> dict[tuple[str, int], dict]:
    return {
        (r["run_id"], r["generation"]): r
        for r in map(json.loads, (p.read_text() for p in (folder / "adapters" / "trainings").glob("*.json")))
    }


def test_each_run_answers_with_its_own_adapter_and_the_log_names_it(whole: Path) -> None:
    records = _records(whole)
    assert sorted(records) == [(run, g) for run in ("c0-r0", "c1-r0") for g in (0, 1, 2)]
    for run in ("c0-r0", "c1-r0"):
        assert records[(run, 0)]["adapter"] is None  # the base model's held-out score
        assert records[(run, 1)]["parent"] is None
        assert records[(run, 2)]["parent"] == records[(run, 1)]["adapter"]
    # Replace trains its second adapter on the newest draw; accumulate on both draws.
    assert records[("c0-r0", 2)]["texts"] == 12 and records[("c1-r0", 2)]["texts"] == 24
    assert records[("c0-r0", 2)]["adapter"] != records[("c1-r0", 2)]["adapter"]
    for entry in _log(whole):
        if "probe" in entry and entry["generation"] >= 1:  # a probe of the model just retrained
            trained = records[(entry["run_id"], entry["generation"])]["adapter"]
            assert entry["adapter"] == trained and entry["engine_key"].endswith(f"+lora:{trained[:16]}")
        elif entry["run_id"].startswith("c") and entry["generation"] >= 2 and "probe" not in entry:
            trained = records[(entry["run_id"], entry["generation"] - 1)]["adapter"]
            assert entry["adapter"] == trained and entry["engine_key"].endswith(f"+lora:{trained[:16]}")
        else:
            assert "adapter" not in entry and "+lora" not in entry["engine_key"]
    manifest = json.loads((whole / "manifest.json").read_text())
    assert {a["adapter"] for a in manifest["adapters"]} == {r["adapter"] for r in records.values()}
    verified = _cli("verify", str(whole))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_model_s_held_out_score_is_its_adapter_s_and_recorded_with_the_culture(whole: Path) -> None:
    """Generation g's row holds the score of the model that answered it: the base model's until the
    first adapter answers (generation 2), then each adapter's. The recorded score is the stored
    adapter's, recomputed here from its bytes on the run's held-out texts."""
    records = _records(whole)
    metrics = pl.read_parquet(whole / "metrics.parquet").filter(pl.col("metric") == "model_heldout_nll")
    values = dict(metrics.filter(pl.col("run_id") == "c0-r0").select("generation", "value").iter_rows())
    base, first, second = (records[("c0-r0", g)]["heldout_nll"] for g in (0, 1, 2))
    assert values == {0: base, 1: base, 2: first, 3: second}
    assert len({base, first, second}) == 3  # each adapter changed the model
    held_out = _held_out_texts(whole, "c0-r0")
    assert len(held_out) == 8 and records[("c0-r0", 2)]["held_out_texts"] == content_digest(held_out)
    adapter = whole / "adapters" / records[("c0-r0", 2)]["adapter"]
    assert mean_token_nll(resolve_model(BUILTIN_MODEL), held_out, adapter=adapter) == second
    figure = draw_figure(whole, "model_and_culture")  # the model's drift beside the culture's
    assert [ax.get_title() for ax in figure.axes] == ["the model"] * 3 + ["the culture"]


def test_the_model_s_own_retellings_are_probed_from_the_log(whole: Path) -> None:
    """Each model (the base one at generation 0, each adapter after its retraining) retells the run's
    8 held-out texts twice with the same seeds; the attractor distance is 0 until an adapter answers,
    then positive. (A replay, which embeds nothing, reads every probe text's stored vector.)"""
    probes = [e for e in _log(whole) if "probe" in e]
    for run in ("c0-r0", "c1-r0"):
        for generation in (0, 1, 2):
            mine = [e for e in probes if e["run_id"] == run and e["generation"] == generation]
            assert sorted(e["probe"] for e in mine if e["attempt"] == 0) == sorted(list(range(8)) * 2)
    first = {e["seed"] for e in probes if e["generation"] == 0 and e["attempt"] == 0}
    assert first == {e["seed"] for e in probes if e["generation"] == 2 and e["attempt"] == 0}
    metrics = pl.read_parquet(whole / "metrics.parquet").filter(pl.col("run_id") == "c0-r0")
    distance = dict(
        metrics.filter(pl.col("metric") == "model_attractor_distance").select("generation", "value").iter_rows()
    )
    diversity = dict(
        metrics.filter(pl.col("metric") == "model_own_diversity").select("generation", "value").iter_rows()
    )
    assert distance[0] == distance[1] == 0.0 and distance[2] > 0 and distance[3] > 0
    assert all(0 < value < 1 for value in diversity.values()) and diversity[0] == diversity[1] != diversity[2]


def _held_out_texts(folder: Path, run_id: str) -> tuple[str, ...]:
    """The run's held-out texts, as the retrainer chose them from the study's corpus."""
    from culturesim.schema.config import stored_config
    from culturesim.study.planner import plan_study
    from culturesim.study.retraining import Retrainer
    from culturesim.study.store import read_manifest

    plan = plan_study(stored_config(read_manifest(folder)["config"]), folder=folder, use_cache=False)
    return Retrainer(plan, plan.runs, AdapterStore(folder)).lineages[run_id].held_out


def test_a_sigkill_during_a_retraining_resumes_to_the_same_bytes(study_file: Path, whole: Path, tmp_path) -> None:
    killed = _cli("3", "run", str(study_file), "--out", str(tmp_path), prelude=KILLER)
    assert killed.returncode == -9, killed.stderr[-3000:]
    [folder] = list((tmp_path / "retrain").iterdir())
    assert len(_records(folder)) == 4  # the base scores and the first retraining of each run
    resumed = _cli("run", str(study_file), "--out", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for table in TABLES:
        assert file_sha256(folder / f"{table}.parquet") == file_sha256(whole / f"{table}.parquet"), table
    assert _records(folder).keys() == _records(whole).keys()
    for key, record in _records(whole).items():
        assert _records(folder)[key]["adapter"] == record["adapter"], key  # the same adapter bytes
    assert _log(folder) == _log(whole)


def test_a_replay_needs_neither_the_engine_nor_training(whole: Path, tmp_path: Path) -> None:
    result = _cli("replay", str(whole), "--out", str(tmp_path / "replay"), prelude=NO_ENGINE)
    assert result.returncode == 0, result.stderr[-3000:]
    for table in TABLES:
        assert file_sha256(tmp_path / "replay" / f"{table}.parquet") == file_sha256(whole / f"{table}.parquet"), table


def test_a_changed_adapter_fails_verify(whole: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / whole.name
    shutil.copytree(whole, copy)
    record = _records(copy)[("c0-r0", 1)]
    weights = copy / "adapters" / record["adapter"] / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    result = _cli("verify", str(copy))
    assert result.returncode == 1 and f"adapter {record['adapter'][:12]}" in result.stdout + result.stderr
    assert os.path.exists(weights)
