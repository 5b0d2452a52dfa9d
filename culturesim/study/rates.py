"""Wall-time estimates from what this machine has measured, kept in the user cache.

How long a study takes depends on the machine far more than on anything in its file: the
same 200 LLM requests take 10 s on a GPU and 20 minutes on two busy CPU cores. A guess from
constants would be wrong everywhere, so the plan `culturesim run` prints gives a time only
from rates this machine measured on studies it finished, and says "unknown" before the first.

Rates live in `culturesim.core.settings.cache_root() / "rates.json"`, under a fingerprint of the
machine (CPU model, cores, architecture, GPU: `machine`), as running totals, so that every
finished session adds its work and its seconds and bigger studies weigh more:

    llm          per engine key: generated tokens, first-attempt requests, engine seconds
    embedding    per embedding model: texts embedded, seconds
    calibration  per engine key: attractor-calibration requests, seconds (chains and their embedding)
    engine_start per engine key: starts, seconds from asking for the engine to its being ready
    simulation   agent-generations, the session's remaining wall seconds (planning, learning, metrics, writing)

Each entry also carries its rate (tokens/s, requests/s, texts/s, s/request, s/start,
s/agent-generation) for a reader of the file. The estimate assumes `--workers 1`, a fresh run
and no text in the embedding cache (a rerun of a study embeds almost nothing). LLM requests per
second depend on how many requests one engine call batches, so rates measured on `--toy` runs (a
handful per call) make a large study's estimate high: where a study batches more than twice the
requests per engine call that were measured, the plan says "at most".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from culturesim.checks import attractor
from culturesim.checks.shipped_attractors import shipped_record
from culturesim.core.fingerprint import hardware
from culturesim.core.progress import duration
from culturesim.core.settings import cache_root
from culturesim.parts.engine_identity import EngineIdentity
from culturesim.schema.config import ConfigError, StudyConfig
from culturesim.study.grid import condition_corpora, plan_runs
from culturesim.study.sizing import StudySize
from culturesim.study.store import write_json

RATES_FILE = "rates.json"
RATES_VERSION = 1
# Category -> (rate name, numerator total, denominator total): the rates kept next to the totals.
DERIVED = {
    "llm": (
        ("tokens_per_second", "tokens", "seconds"),
        ("requests_per_second", "requests", "seconds"),
        ("requests_per_call", "requests", "calls"),
    ),
    "embedding": (("texts_per_second", "texts", "seconds"),),
    "calibration": (("seconds_per_request", "seconds", "requests"), ("requests_per_call", "requests", "calls")),
    "engine_start": (("seconds_per_start", "seconds", "starts"),),
    "simulation": (("seconds_per_agent_generation", "seconds", "agent_generations"),),
}
SIMULATION = "all"  # the simulation category has one entry
BATCH_MARGIN = 2  # a study batching more than this times the measured requests per call gets "at most"


def rates_path() -> Path:
    return cache_root() / RATES_FILE


def machine() -> tuple[str, dict[str, Any]]:
    """This machine's fingerprint (16 hex digits) and what it is made of: rates measured on another
    CPU or GPU say nothing here. The OS version is left out: an update does not change speed."""
    described = {name: hardware().get(name) for name in ("cpu", "cores", "machine", "gpu")}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
    return digest, described


def machine_rates(path: Path | None = None) -> dict[str, Any]:
    """This machine's entry of the rates file ({} when nothing was measured here, or the file is unreadable)."""
    path = path or rates_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if data.get("version") != RATES_VERSION:
        return {}
    return data.get("machines", {}).get(machine()[0], {})


@dataclass
class RateSample:
    """Work and seconds of one session, by category and key (see the module docstring)."""

    totals: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def add(self, category: str, key: str, **amounts: float) -> None:
        entry = self.totals.setdefault(category, {}).setdefault(key, {})
        for name, amount in amounts.items():
            entry[name] = entry.get(name, 0) + amount

    def __bool__(self) -> bool:
        return bool(self.totals)


def record_rates(sample: RateSample, path: Path | None = None) -> None:
    """Add `sample` to this machine's totals in the rates file (written atomically; a file another
    version wrote is replaced)."""
    if not sample:
        return
    path = path or rates_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if data.get("version") != RATES_VERSION:
        data = {"version": RATES_VERSION, "machines": {}}
    key, described = machine()
    entry = data["machines"].setdefault(key, {"hardware": described, "sessions": 0})
    for category, items in sample.totals.items():
        for name, amounts in items.items():
            totals = entry.setdefault(category, {}).setdefault(name, {})
            for total, amount in amounts.items():
                totals[total] = totals.get(total, 0) + amount
            for rate, numerator, denominator in DERIVED.get(category, ()):
                if totals.get(denominator):
                    totals[rate] = totals.get(numerator, 0) / totals[denominator]
    entry["sessions"] = entry.get("sessions", 0) + 1
    entry["updated"] = datetime.now(UTC).isoformat()
    write_json(data, path)


def session_sample(
    before: dict[str, float],
    after: dict[str, float],
    *,
    config: StudyConfig,
    done: frozenset[str] | set[str],
    starts: list[dict[str, str]],
    calibrations: list[dict[str, Any]],
) -> RateSample:
    """What one session of `run` measured: `before` and `after` are the manifest's throughput at its
    start and end (it accumulates over sessions), `done` the runs finished before it, `starts` the
    engines it started (manifest "engines" entries with "started" and "ready"), `calibrations` the
    calibrations it computed (records, or manifest "attractors" entries: "spec", "requests", "seconds").
    LLM rates are kept only for a session that started one engine: its requests are that engine's."""
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    sample = RateSample()
    other = _starts_and_calibrations(sample, starts, calibrations)
    engines = {start["engine"] for start in starts}
    attempts, from_log = delta.get("llm_attempts", 0), delta.get("llm_from_log", 0)
    asked = delta.get("llm_requests", 0) * (attempts - from_log) / attempts if attempts else 0  # by the engine
    if len(engines) == 1 and delta.get("llm_seconds", 0) > 0 and asked > 0:
        tokens, calls = delta.get("llm_tokens", 0), delta.get("llm_calls", 0)
        sample.add("llm", engines.pop(), tokens=tokens, requests=asked, seconds=delta["llm_seconds"], calls=calls)
    models = {condition.embedding.model for _, condition in config.condition_grid()}
    if len(models) == 1 and delta.get("embed_seconds", 0) > 0 and delta.get("embedded_texts", 0) > 0:
        sample.add("embedding", models.pop(), texts=delta["embedded_texts"], seconds=delta["embed_seconds"])
    grid = config.condition_grid()
    agent_generations = config.study.generations * sum(
        grid[plan.condition_index][1].population.size for plan in plan_runs(config) if plan.run_id not in done
    )
    wall = delta.get("wall_seconds", 0)
    if agent_generations and wall > 0:
        rest = wall - delta.get("llm_seconds", 0) - delta.get("embed_seconds", 0) - other
        sample.add("simulation", SIMULATION, agent_generations=agent_generations, seconds=max(rest, 0.0))
    return sample


def _starts_and_calibrations(
    sample: RateSample, starts: list[dict[str, str]], calibrations: list[dict[str, Any]]
) -> float:
    """Add engine starts and calibrations to `sample`; returns their seconds together."""
    seconds = 0.0
    for start in starts:
        if "ready" in start:
            took = (datetime.fromisoformat(start["ready"]) - datetime.fromisoformat(start["started"])).total_seconds()
            sample.add("engine_start", start["engine"], starts=1, seconds=took)
            seconds += took
    for record in calibrations:
        spec = record["spec"]  # one engine call per chain generation (and retry round)
        sample.add("calibration", spec["engine"], requests=record["requests"], seconds=record["seconds"],
                   calls=spec["generations"])  # fmt: skip
        seconds += record["seconds"]
    return seconds


def record_run_rates(
    config: StudyConfig,
    manifest: dict[str, Any],
    throughput_before: dict[str, float],
    engines_before: int,
    *,
    done: frozenset[str] = frozenset(),
) -> None:
    """Add what a finished session of `run` measured (its manifest, whose throughput was
    `throughput_before` and which listed `engines_before` engines when it began) to this machine's
    rates. Call it only for a session whose times are one engine's and one process's (no injected
    backend, `--workers 1`, local executor). A cache that cannot be written costs the estimate only."""
    calibrations = [entry for entry in manifest.get("attractors", {}).values() if entry.get("from") == "calibrated"]
    sample = session_sample(
        throughput_before,
        manifest.get("throughput", {}),
        config=config,
        done=done,
        starts=manifest.get("engines", [])[engines_before:],
        calibrations=calibrations,
    )
    with contextlib.suppress(OSError):
        record_rates(sample)


def record_calibration_rates(starts: list[dict[str, str]], calibrations: list[dict[str, Any]]) -> None:
    """Add the engine starts and calibrations of `culturesim calibrate` to this machine's rates."""
    sample = RateSample()
    _starts_and_calibrations(sample, starts, calibrations)
    with contextlib.suppress(OSError):
        record_rates(sample)


@dataclass(frozen=True)
class WallEstimate:
    """The expected wall time of a fresh run here, in seconds (None: unknown), its parts, what was
    missing for it, and what it leaves out: embedding, when every text of the runs measured so far
    came from the embedding cache (small next to the LLM; no reason to call the whole time unknown)."""

    seconds: float | None
    parts: tuple[tuple[str, float], ...] = ()
    missing: tuple[str, ...] = ()
    sessions: int = 0
    left_out: tuple[str, ...] = ()
    upper_bound: bool = False  # the study batches more requests per engine call than were measured

    def describe(self) -> str:
        """One line for the plan, e.g. '~12 min (LLM 8 min, ...; rates of 3 runs here)' or 'unknown (...)'."""
        if self.seconds is None:
            if not self.sessions:
                return "unknown (no rates measured here yet: a first run measures them)"
            return f"unknown (not measured on this machine yet: {', '.join(self.missing)})"
        parts = ", ".join(f"{name} {duration(seconds)}" for name, seconds in self.parts if seconds >= 0.5)
        runs = f"rates of {self.sessions} run{'s' if self.sessions != 1 else ''} here"
        if self.left_out:
            runs += f"; without {', '.join(self.left_out)}: not measured here yet"
        if self.upper_bound:
            runs += "; measured on smaller engine batches than this study's, which answer slower per request"
        total = f"{'at most ' if self.upper_bound else ''}~{duration(self.seconds)}"
        return f"{total} ({parts}; {runs})" if parts else f"{total} ({runs})"


def estimate_wall(config: StudyConfig, size: StudySize, rates: dict[str, Any] | None = None) -> WallEstimate:
    """The wall time of `config` (sized as `size`) from this machine's rates (`machine_rates()` by
    default): engine starts, the calibrations not in the cache, LLM requests, embedding the study's
    distinct texts, and the simulation itself."""
    rates = machine_rates() if rates is None else rates
    if not rates:
        return WallEstimate(None)
    grid = config.condition_grid()
    needs: dict[str, dict[str, float]] = {"llm": {}, "calibration": {}, "engine_start": {}}
    labels: dict[str, str] = {}
    for (_, condition), requests in zip(grid, size.condition_requests, strict=False):
        if requests:
            key, labels[key] = _engine(condition)
            needs["llm"][key] = needs["llm"].get(key, 0) + requests
    if size.calibration_requests:
        specs = {spec.key(): spec for spec in attractor.study_specs(config, condition_corpora(config)).values()}
        for key, spec in specs.items():
            if not attractor.cache_path(key).exists() and shipped_record(spec) is None:
                requests = needs["calibration"].get(spec.engine, 0) + spec.chains * spec.generations
                needs["calibration"][spec.engine] = requests
                labels.setdefault(spec.engine, spec.engine.split("#")[0])
    for key in {*needs["llm"], *needs["calibration"]}:
        needs["engine_start"][key] = 1
    parts: dict[str, float] = {}
    missing: list[str] = []
    per_call = {  # requests the study sends an engine per call: a generation's, or a calibration's chains
        "llm": {key: requests / config.study.generations for key, requests in needs["llm"].items()},
        "calibration": {spec.engine: spec.chains for spec in specs.values()} if size.calibration_requests else {},
    }
    upper = any(
        per_call[category][key] > BATCH_MARGIN * rates.get(category, {}).get(key, {}).get("requests_per_call", 1e9)
        for category in per_call
        for key in needs[category]
    )

    def rate(category: str, key: str, name: str, what: str) -> float | None:
        value = rates.get(category, {}).get(key, {}).get(name)
        if value is None:
            missing.append(what)
        return value

    for key, starts in needs["engine_start"].items():
        if (per := rate("engine_start", key, "seconds_per_start", f"engine start of {labels[key]}")) is not None:
            parts["engine start"] = parts.get("engine start", 0) + starts * per
    for key, requests in needs["calibration"].items():
        if (per := rate("calibration", key, "seconds_per_request", f"calibration with {labels[key]}")) is not None:
            parts["calibration"] = parts.get("calibration", 0) + requests * per
    for key, requests in needs["llm"].items():
        if (per_s := rate("llm", key, "requests_per_second", f"LLM {labels[key]}")) is not None:
            parts["LLM"] = parts.get("LLM", 0) + requests / per_s
    texts = size.table("vectors").rows
    models = sorted({condition.embedding.model for _, condition in grid})
    speeds = [rates.get("embedding", {}).get(model, {}).get("texts_per_second") for model in models]
    left_out = () if all(speed is not None for speed in speeds) else ("embedding",)
    if texts and not left_out:
        parts["uncached embedding"] = texts / min(speeds)  # over embedders: the slowest for all (an upper bound)
    if (per := rate("simulation", SIMULATION, "seconds_per_agent_generation", "simulation")) is not None:
        parts["simulation"] = size.agent_generations * per
    sessions = int(rates.get("sessions", 0))
    if missing:
        return WallEstimate(None, missing=tuple(missing), sessions=sessions)
    total = sum(parts.values())
    return WallEstimate(total, tuple(parts.items()), sessions=sessions, left_out=left_out, upper_bound=upper)


def _engine(condition: StudyConfig) -> tuple[str, str]:
    """The engine key a condition's requests go to on this machine, and a short label for it."""
    try:
        identity = EngineIdentity.of(condition.llm.engine)
    except ConfigError:
        label = f"{condition.llm.engine.backend}/{condition.llm.engine.model}"
        return f"unresolved:{label}", label
    return identity.key(), f"{identity.backend}/{identity.model}"


def describe_wall(config: StudyConfig, size: StudySize) -> str:
    """The plan's wall-time line for `config`: `estimate_wall` described, or why there is none
    (a setting this machine cannot resolve is reported where the study would start its engine)."""
    try:
        return estimate_wall(config, size).describe()
    except ConfigError as exc:
        return f"unknown ({exc})"
