"""The engine identity is what really ran: resolved backend and device in every log and calibration
key, recorded in the manifest for replays elsewhere, and logs of the old 'auto/...' form still read.

A seeded stand-in for vLLM answers the studies here, so no test needs vLLM; which backend and
device a machine would choose is patched (`machine`), never probed by starting an engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from culturesim.calibration import attractor
from culturesim.parts import devices, llm
from culturesim.parts.engine_identity import EngineIdentity, StudyEngines, legacy_key, migrate_entry
from culturesim.parts.llm.base import Completion, Request
from culturesim.reports.report import write_report
from culturesim.schema.config import ConfigError, StudyConfig
from culturesim.schema.llm_section import BUILTIN_MODEL, EngineSection
from culturesim.study.runner import StudyRunner

TABLES = ("metrics", "traits", "population", "generations", "vectors")
CONFIG = StudyConfig.model_validate(
    {
        "study": {"name": "identity", "seed": 4, "replicates": 2, "generations": 2},
        "population": {"size": 12, "llm_share": 0.25},
        "llm": {"sampling": {"max_tokens": 16}},  # backend 'auto', as most study files leave it
        "attractor": {"chains": 3, "generations": 1},
    }
)
AUTO = CONFIG.llm.engine
VLLM_ON_CPU = EngineIdentity("vllm", BUILTIN_MODEL, "float32", 64, None, "cpu")


@contextmanager
def machine(*, vllm: bool, cuda: bool) -> Iterator[None]:
    """Resolve as a machine with or without vLLM installed and a GPU would (nothing is started)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(llm, "vllm_available", lambda: vllm)
        patch.setattr(llm, "cuda_available", lambda: cuda)
        patch.setattr(devices, "cuda_available", lambda: cuda)
        yield


class SeededEngine:
    """Stands in for vLLM 0.32.0: each answer depends on its request alone; counts the requests."""

    model_id, engine_version = BUILTIN_MODEL, "vllm 0.32.0"

    def __init__(self) -> None:
        self.requests = 0

    def generate(self, requests: list[Request]) -> list[Completion]:
        self.requests += len(requests)
        return [Completion(f"A quiet river carried story {r.seed % 1000} to the sea.", 9) for r in requests]

    def close(self) -> None:
        pass


# -- resolution ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vllm", "cuda", "spec", "expected"),
    [
        (True, False, AUTO, ("vllm", "cpu")),
        (True, True, AUTO, ("vllm", "cuda")),
        (False, True, AUTO, ("transformers", "cuda")),
        (False, True, EngineSection(backend="transformers", device="cpu"), ("transformers", "cpu")),
        (False, False, EngineSection(backend="vllm"), ("vllm", "cpu")),
        (True, True, EngineSection(backend="openai", base_url="http://h:8000/v1", model="m"), ("openai", "remote")),
    ],
)
def test_the_identity_names_the_backend_and_device_that_run(vllm, cuda, spec, expected) -> None:
    with machine(vllm=vllm, cuda=cuda):
        identity = EngineIdentity.of(spec)
        assert llm.resolve_backend(spec) == identity.backend != "auto"
    assert (identity.backend, identity.device) == expected
    assert identity.key().startswith(f"{expected[0]}/{spec.model}/{spec.dtype}/{expected[1]}#")


def test_devices_and_backends_never_share_a_key() -> None:
    keys = {EngineIdentity("vllm", BUILTIN_MODEL, "float32", 64, None, d).key() for d in ("cpu", "cuda")}
    keys.add(EngineIdentity("transformers", BUILTIN_MODEL, "float32", 64, None, "cpu").key())
    assert len(keys) == 3


def test_create_backend_starts_the_backend_the_identity_names(monkeypatch) -> None:
    """Both read `resolve_backend`: made to say 'openai', an 'auto' study asks for a server URL."""
    monkeypatch.setattr(llm, "resolve_backend", lambda spec: "openai")
    with pytest.raises(ConfigError, match="needs llm.engine.base_url"):
        llm.create_backend(AUTO)


def test_resolution_imports_no_vllm() -> None:
    code = (
        "import sys\nfrom culturesim.parts.engine_identity import EngineIdentity\n"
        "from culturesim.schema.llm_section import EngineSection\n"
        "print(EngineIdentity.of(EngineSection()).key())\nassert 'vllm' not in sys.modules, 'vllm was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not done.stdout.startswith("auto/")


# -- the migration rule ----------------------------------------------------------------------------


def old_entry(spec: EngineSection, engine_version: str = "vllm 0.32.0") -> dict:
    """A log entry as culturesim wrote it before identities were resolved (no device)."""
    return {"engine_key": legacy_key(spec), "request_key": "r" * 64, "backend": spec.backend, "model": spec.model,
            "dtype": spec.dtype, "engine_version": engine_version, "completion": "A text.", "tokens": 3}  # fmt: skip


def test_the_legacy_key_is_the_old_key() -> None:
    """Recomputed as culturesim computed it: the study file's backend, no device."""
    payload = json.dumps(["auto", BUILTIN_MODEL, "float32", 64, None]).encode()
    assert legacy_key(AUTO) == f"auto/{BUILTIN_MODEL}/float32#{hashlib.sha256(payload).hexdigest()[:8]}"


def test_old_entries_get_the_backend_that_answered_and_the_recorded_device() -> None:
    migrated = migrate_entry(old_entry(AUTO), AUTO, "cuda")
    expected = EngineIdentity("vllm", BUILTIN_MODEL, "float32", 64, None, "cuda")
    assert migrated["engine_key"] == expected.key() and (migrated["backend"], migrated["device"]) == ("vllm", "cuda")
    hf = migrate_entry(old_entry(AUTO, "transformers 5.19.0"), AUTO, "cpu")
    assert hf["engine_key"] == EngineIdentity("transformers", BUILTIN_MODEL, "float32", 64, None, "cpu").key()
    server = EngineSection(backend="openai", base_url="http://h:8000/v1", model="m")
    assert migrate_entry(old_entry(server, "openai-compatible http://h:8000/v1"), server, "cpu")["device"] == "remote"
    # only the settings whose old key it is: another max_num_seqs, or an entry of the new form, is left alone
    assert migrate_entry(old_entry(AUTO), EngineSection(max_num_seqs=8), "cpu") is None
    assert migrate_entry({**old_entry(AUTO), "device": "cpu"}, AUTO, "cpu") is None


def test_an_old_calibration_is_found_under_its_legacy_key(tmp_path: Path) -> None:
    spec = attractor.calibration_spec(CONFIG, ["A first text.", "A second text."], VLLM_ON_CPU)
    assert spec.engine == VLLM_ON_CPU.key() and spec.legacy_key() != spec.key()
    assert attractor.find_record(tmp_path, spec) is None
    old = attractor.folder_path(tmp_path, spec.legacy_key())
    old.parent.mkdir()
    old.write_text("{}")
    assert attractor.find_record(tmp_path, spec) == old
    new = attractor.folder_path(tmp_path, spec.key())
    new.write_text("{}")
    assert attractor.find_record(tmp_path, spec) == new


def test_study_engines_read_back_what_they_recorded() -> None:
    engines = StudyEngines().with_identity(AUTO, VLLM_ON_CPU)
    on_gpu = EngineIdentity("vllm", BUILTIN_MODEL, "float32", 64, None, "cuda")
    engines = engines.with_identity(AUTO, on_gpu).with_identity(AUTO, VLLM_ON_CPU)
    again = StudyEngines.from_manifest(json.loads(json.dumps({"engine_identities": engines.to_manifest()})))
    assert again.identities(AUTO) == (VLLM_ON_CPU, on_gpu) and again.identity(AUTO) == VLLM_ON_CPU
    assert again.identities(EngineSection(dtype="bfloat16")) == ()


# -- studies ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ran(tmp_path_factory, embedder) -> Path:
    """CONFIG run on a machine with vLLM and no GPU."""
    with machine(vllm=True, cuda=False):
        runner = StudyRunner(embedder=embedder, backend=SeededEngine())
        return runner.run(CONFIG, out_root=tmp_path_factory.mktemp("ran"))


def entries(folder: Path) -> list[dict]:
    paths = sorted((folder / "log").glob("*.jsonl"))
    lines = [json.loads(line) for path in paths for line in path.read_text().splitlines()]
    return [line for line in lines if "commit" not in line]


def same_tables(folder: Path, reference: Path) -> bool:
    return all((folder / f"{t}.parquet").read_bytes() == (reference / f"{t}.parquet").read_bytes() for t in TABLES)


def copy_study(folder: Path, root: Path) -> Path:
    """The results folder copied under `root`, where `run` with `root` finds it, its runs not done (so a
    resume runs every batch again)."""
    copy = root / folder.parent.name / folder.name
    shutil.copytree(folder, copy)
    for marker in copy.glob("runs/*/done.json"):
        marker.unlink()
    return copy


def test_the_log_and_the_calibration_name_the_engine_that_ran(ran: Path, tmp_path: Path) -> None:
    logged = entries(ran)
    assert logged and {(e["engine_key"], e["backend"], e["device"]) for e in logged} == {
        (VLLM_ON_CPU.key(), "vllm", "cpu")
    }
    manifest = json.loads((ran / "manifest.json").read_text())
    [recorded] = manifest["engine_identities"]
    assert recorded["settings"]["backend"] == "auto" and recorded["identities"] == [
        {
            "backend": "vllm",
            "model": BUILTIN_MODEL,
            "dtype": "float32",
            "max_num_seqs": 64,
            "base_url": None,
            "device": "cpu",
        }  # fmt: skip
    ]
    [calibration] = manifest["attractors"].values()
    assert calibration["spec"]["engine"] == VLLM_ON_CPU.key()
    # The manifest's own summary says what ran, beside the setting that asked for it.
    assert manifest["llm"] == {"model": BUILTIN_MODEL, "backend": "vllm", "backend_setting": "auto"}
    assert manifest["sessions"][-1]["devices"]["llm"] == "vllm on cpu"
    report = write_report(copy_study(ran, tmp_path))
    assert "(backend auto, ran as vllm on cpu)" in report.read_text(encoding="utf-8")


def test_a_resume_on_the_same_machine_asks_nothing_logged(ran: Path, tmp_path: Path, embedder) -> None:
    copy_study(ran, tmp_path)
    engine = SeededEngine()
    with machine(vllm=True, cuda=False):
        folder = StudyRunner(embedder=embedder, backend=engine).run(CONFIG, out_root=tmp_path, resume=True)
    assert engine.requests == 0 and same_tables(folder, ran)


def test_a_replay_without_vllm_uses_the_recorded_identity(ran: Path, tmp_path: Path) -> None:
    """Here 'auto' would resolve to transformers on CUDA; the replay finds the log's vllm/cpu answers."""
    with machine(vllm=False, cuda=True):
        replayed = StudyRunner().replay(ran, tmp_path / "replay")
    assert same_tables(replayed, ran)
    manifest = json.loads((replayed / "manifest.json").read_text())
    assert manifest["throughput"]["llm_calls"] == 0
    assert manifest["llm"]["backend"] == "vllm" and manifest["sessions"][-1]["devices"]["llm"] == "vllm on cpu"


def make_legacy(folder: Path) -> None:
    """Rewrite a results folder as culturesim wrote it before identities were resolved: 'auto/...'
    log keys without a device, calibrations under their old keys, no recorded identities."""
    old_key = legacy_key(AUTO)
    for path in (folder / "log").glob("*.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        for line in lines:
            if "commit" not in line:
                line.update(engine_key=old_key, backend="auto")
                del line["device"]
        path.write_text("".join(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n" for line in lines))
    for path in (folder / "attractors").glob("*.json"):
        record = json.loads(path.read_text())
        record["spec"]["engine"] = old_key
        record["key"] = hashlib.sha256(json.dumps(record["spec"], sort_keys=True).encode()).hexdigest()[:16]
        path.unlink()
        attractor.folder_path(folder, record["key"]).write_text(json.dumps(record))
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["engine_identities"]
    for session in manifest["sessions"]:
        session["devices"]["llm"] = "vllm on cpu"  # what an 'auto' study recorded on a CPU machine
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_an_old_log_resumes_and_replays_with_no_engine_call(ran: Path, tmp_path: Path, embedder) -> None:
    legacy = copy_study(ran, tmp_path)
    make_legacy(legacy)
    assert all(e["engine_key"].startswith("auto/") for e in entries(legacy))
    logs = {path.name: path.read_bytes() for path in (legacy / "log").glob("*.jsonl")}

    with machine(vllm=False, cuda=False):  # a replay where vLLM is missing
        replayed = StudyRunner().replay(legacy, tmp_path / "replay")
    assert same_tables(replayed, ran)

    engine = SeededEngine()
    with machine(vllm=True, cuda=False):
        resumed = StudyRunner(embedder=embedder, backend=engine).run(CONFIG, out_root=tmp_path, resume=True)
    assert engine.requests == 0, "the old answers and the old calibration answered everything"
    assert same_tables(resumed, ran)
    assert {path.name: path.read_bytes() for path in (legacy / "log").glob("*.jsonl")} == logs, "never rewritten"
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert [e["identities"] for e in manifest["engine_identities"]] == [[dataclasses.asdict(VLLM_ON_CPU)]]
    [calibration] = manifest["attractors"].values()
    assert calibration["from"] == "results folder" and calibration["spec"]["engine"] == legacy_key(AUTO)
