"""Which engine answered: the identity that keys the completion log and the attractor calibrations.

A study file may leave the backend ('auto') and the transformers device ('auto') to the machine,
and vLLM picks its own device. A logged answer belongs to the engine that wrote it (its floats
depend on backend and device), so `EngineIdentity.of` resolves both exactly as
`culturesim.parts.llm.create_backend` starts them (`resolve_backend`, `engine_device`), without starting
an engine or importing vLLM: a key reads `vllm/builtin:smollm2-135m/float32/cpu#1a2b3c4d`, never
`auto/...`.

Resolving again where a study is replayed would name that machine's engine (a replay may run
where vLLM is not installed), so the runner records the identity each engine group first ran
with in the manifest (`StudyEngines`, its `engine_identities`), and a resume or replay reads it
back. A resume on a machine that resolves otherwise logs its new answers under its own identity
and is answered by the recorded identities' logged answers too, so a study asks each request once.

Logs and calibrations written before identities were resolved are read through `legacy_identity`
(the rule is in its docstring) and `CalibrationSpec.legacy_engine`; old files are never rewritten.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from culturesim.parts.llm import engine_device, resolve_backend
from culturesim.schema.llm_section import EngineSection


@dataclass(frozen=True)
class EngineIdentity:
    """The engine settings that decide what a request's answer is (not how fast it comes), as they
    really ran: a resolved backend (never 'auto') and the device it ran on."""

    backend: str
    model: str
    dtype: str
    max_num_seqs: int
    base_url: str | None = None
    device: str = "unknown"

    @classmethod
    def of(cls, spec: EngineSection) -> EngineIdentity:
        """The engine this machine starts for `spec` (found, not started: vLLM is not imported)."""
        backend = resolve_backend(spec)
        device = engine_device(spec, backend)
        return cls(backend, spec.model, spec.dtype, spec.max_num_seqs, spec.base_url, device)

    def key(self) -> str:
        """A short label naming this engine in the log: backend/model/dtype/device, then a settings hash."""
        payload = json.dumps([self.backend, self.model, self.dtype, self.device, self.max_num_seqs, self.base_url])
        digest = hashlib.sha256(payload.encode()).hexdigest()[:8]
        return f"{self.backend}/{self.model}/{self.dtype}/{self.device}#{digest}"


def legacy_key(spec: EngineSection) -> str:
    """The engine key logs and calibrations had before identities were resolved: the study file's
    backend (possibly 'auto'), no device, the hash over [backend, model, dtype, max_num_seqs, base_url]."""
    payload = json.dumps([spec.backend, spec.model, spec.dtype, spec.max_num_seqs, spec.base_url])
    return f"{spec.backend}/{spec.model}/{spec.dtype}#{hashlib.sha256(payload.encode()).hexdigest()[:8]}"


def migrate_entry(entry: dict[str, Any], spec: EngineSection, device: str) -> dict[str, Any] | None:
    """A log entry written before identities were resolved, keyed as its engine is now; None when
    `entry` is not such an entry of an engine with the settings `spec` (see `legacy_identity`)."""
    identity = legacy_identity(entry, spec, device)
    if identity is None:
        return None
    return {**entry, "engine_key": identity.key(), "backend": identity.backend, "device": identity.device}


def legacy_identity(entry: dict[str, Any], spec: EngineSection, device: str) -> EngineIdentity | None:
    """The migration rule: the identity of a log entry written before identities were resolved.

    An old entry has no "device" and its `engine_key` is `legacy_key` of the settings that asked
    (recomputing that key from `spec` proves the entry is theirs; else None). Its identity is
    `EngineIdentity(backend, spec.model, spec.dtype, spec.max_num_seqs, spec.base_url, device)`
    where backend is the entry's or, where it says 'auto', the first word of its `engine_version`
    ('vllm 0.32.0' -> 'vllm'), and device is 'remote' for an HTTP server, else `device`: what the
    study's manifest recorded for its LLM ('cpu' where it recorded none). The rule applies when a
    log is loaded; old files are never rewritten."""
    if "device" in entry or entry.get("engine_key") != legacy_key(spec):
        return None
    backend = entry["backend"] if entry["backend"] != "auto" else entry["engine_version"].split()[0]
    device = "remote" if backend == "openai" else device
    return EngineIdentity(backend, spec.model, spec.dtype, spec.max_num_seqs, spec.base_url, device)


def settings_key(spec: EngineSection) -> str:
    """The settings of `spec` that decide its identity, as the study file gives them (unresolved)."""
    settings = {"backend": spec.backend, "model": spec.model, "dtype": spec.dtype, "device": spec.device,
                "max_num_seqs": spec.max_num_seqs, "base_url": spec.base_url}  # fmt: skip
    return json.dumps(settings, sort_keys=True)


def recorded_llm_device(manifest: dict[str, Any]) -> str:
    """The device the first session of a study recorded for its LLM ('vllm on cuda' -> 'cuda'), else 'cpu'."""
    for session in manifest.get("sessions", []):
        llm = session.get("devices", {}).get("llm")
        if llm:
            return llm.split()[-1]
    return "cpu"


@dataclass(frozen=True)
class StudyEngines:
    """The identities a study's engines ran with, by the settings that asked for them, in order of
    first use (the manifest's `engine_identities`). `legacy_device`: the LLM device the study's first
    session recorded, which `migrate_entry` gives to log entries written before devices were named.

    Empty (a new study), every identity is resolved on this machine."""

    recorded: tuple[tuple[str, tuple[EngineIdentity, ...]], ...] = ()
    legacy_device: str = "cpu"

    def identities(self, spec: EngineSection) -> tuple[EngineIdentity, ...]:
        """Every identity recorded for the settings `spec`, in order of first use."""
        return dict(self.recorded).get(settings_key(spec), ())

    def identity(self, spec: EngineSection) -> EngineIdentity:
        """The study's identity for `spec`, which names its calibrations: the one its group first ran
        with, else the one this machine resolves (a group not run yet)."""
        found = self.identities(spec)
        return found[0] if found else EngineIdentity.of(spec)

    def with_identity(self, spec: EngineSection, identity: EngineIdentity) -> StudyEngines:
        """These identities, with `identity` recorded for `spec` (unchanged where it already is)."""
        recorded = dict(self.recorded)
        known = recorded.get(settings_key(spec), ())
        if identity in known:
            return self
        recorded[settings_key(spec)] = (*known, identity)
        return replace(self, recorded=tuple(recorded.items()))

    def with_legacy(self, entries: Iterable[dict[str, Any]], specs: Iterable[EngineSection]) -> StudyEngines:
        """For each of `specs` with no recorded identity, the identities its legacy log entries get
        from `legacy_identity`: a study from before identities were recorded, read back."""
        # An old entry's identity depends on its key, backend and version alone: one of each will do.
        fields = ("engine_key", "backend", "engine_version")
        distinct = {tuple(e.get(f) for f in fields): e for e in entries if "device" not in e}.values()
        engines = self
        for spec in specs:
            if self.identities(spec):
                continue
            for entry in distinct:
                identity = legacy_identity(entry, spec, self.legacy_device)
                if identity is not None:
                    engines = engines.with_identity(spec, identity)
        return engines

    def to_manifest(self) -> list[dict[str, Any]]:
        """The manifest's `engine_identities`: settings and the identities they ran with."""
        return [
            {"settings": json.loads(settings), "identities": [asdict(identity) for identity in identities]}
            for settings, identities in self.recorded
        ]

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> StudyEngines:
        """What a study's manifest recorded (nothing for a study from before identities were recorded:
        see `with_legacy`)."""
        recorded = tuple(
            (json.dumps(item["settings"], sort_keys=True), tuple(EngineIdentity(**i) for i in item["identities"]))
            for item in manifest.get("engine_identities", [])
        )
        return cls(recorded, recorded_llm_device(manifest))
