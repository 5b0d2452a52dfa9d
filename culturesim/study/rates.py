"""Wall-time estimates from what this machine has measured, kept in the user cache.

How long a study takes depends on the machine far more than on anything in its file: the
same 200 LLM requests take 10 s on a GPU and 20 minutes on two busy CPU cores. A guess from
constants would be wrong everywhere, so the plan `culturesim run` prints gives a time only
from rates this machine measured on studies it finished, and says "unknown" before the first.

Rates live in `culturesim.core.settings.cache_root() / "rates.json"`, under a fingerprint of the
machine (CPU model, cores, architecture, GPU: `machine`), as running totals, so that every
finished session adds its work and its seconds and bigger studies weigh more:

    llm          per engine key and request kind (text, coordination): generated tokens, first-attempt
                 requests, engine calls, engine seconds
    embedding    per embedding model: texts embedded, seconds
    calibration  per engine key: attractor-calibration requests, seconds (chains and their embedding)
    engine_start per engine key: starts, seconds from asking for the engine to its being ready
    simulation   agent-generations, the session's remaining wall seconds (planning, learning, metrics, writing)

Each entry also carries its rate (tokens/s, requests/s, texts/s, s/request, s/start,
s/agent-generation) for a reader of the file. The estimate assumes `--workers 1`, a fresh run
and no text in the embedding cache (a rerun of a study embeds almost nothing). LLM requests per
second grow with the requests one engine call batches, then saturate: a rate measured on small
calls (a `--toy` run, the quickstart) is carried to a study's call size by `batch_speedup`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from culturesim.core.fingerprint import hardware
from culturesim.core.progress import duration
from culturesim.core.settings import cache_root
from culturesim.schema.config import StudyConfig
from culturesim.study.sizing import StudySize
from culturesim.study.store import write_json

if TYPE_CHECKING:  # the planner reads this module's estimate; the rates read its plans
    from culturesim.study.planner import StudyPlan

RATES_FILE = "rates.json"
RATES_VERSION = 2  # 2: LLM rates kept per engine and request kind
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
    # LoRA retraining: the whole of it (model loading, the steps, saving, the held-out scores) per text
    # trained on, each epoch counted.
    "retraining": (("seconds_per_text", "seconds", "texts"),),
}
SIMULATION = "all"  # the simulation category has one entry
# Requests per engine call at which a batched engine answers at half its saturated throughput: the fit of
# r(b) = R b / (b + K) to the float32 vLLM batch scan on a 2-core CPU (shared/DESIGN.md: 1, 16, 64, 128,
# 256 requests gave 21, 137, 199, 224, 235 tokens/s; the fit R = 247, K = 12.8 is within 4 % at 16-256).
HALF_SATURATION_REQUESTS = 12.8


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
    plan: StudyPlan,
    starts: list[dict[str, str]],
    calibrations: list[dict[str, Any]],
) -> RateSample:
    """What one session of `run` measured: `before` and `after` are the manifest's throughput at its
    start and end (it accumulates over sessions), `plan` the session's (its `done`: the runs finished
    before it), `starts` the
    engines it started (manifest "engines" entries with "started" and "ready"), `calibrations` the
    calibrations it computed (records, or manifest "attractors" entries: "spec", "requests", "seconds").
    LLM rates are kept only for a session that started one engine: its requests are that engine's."""
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    ran = [run for run in plan.runs if run.run_id not in plan.done]
    sample = RateSample()
    other = _starts_and_calibrations(sample, starts, calibrations)
    engines = {start["engine"] for start in starts}
    attempts, from_log = delta.get("llm_attempts", 0), delta.get("llm_from_log", 0)
    asked = delta.get("llm_requests", 0) * (attempts - from_log) / attempts if attempts else 0  # by the engine
    if len(engines) == 1 and delta.get("llm_seconds", 0) > 0 and asked > 0:
        tokens, calls = delta.get("llm_tokens", 0), delta.get("llm_calls", 0)
        kinds = {request_kind(plan.condition(run.condition_index)) for run in ran}
        key = llm_key(engines.pop(), kinds.pop() if len(kinds) == 1 else "text")
        sample.add("llm", key, tokens=tokens, requests=asked, seconds=delta["llm_seconds"], calls=calls)
    if delta.get("training_seconds", 0) > 0 and delta.get("training_texts", 0) > 0:
        trained = {condition.llm.engine.model for _, condition in plan.conditions if condition.uses_llm()}
        sample.add("retraining", trained.pop() if len(trained) == 1 else "mixed", texts=delta["training_texts"],
                   seconds=delta["training_seconds"])  # fmt: skip
    models = {condition.embedding.model for _, condition in plan.conditions}
    if len(models) == 1 and delta.get("embed_seconds", 0) > 0 and delta.get("embedded_texts", 0) > 0:
        sample.add("embedding", models.pop(), texts=delta["embedded_texts"], seconds=delta["embed_seconds"])
    agent_generations = plan.config.study.generations * sum(
        plan.condition(run.condition_index).population.size for run in ran
    )
    wall = delta.get("wall_seconds", 0)
    if agent_generations and wall > 0:
        rest = wall - delta.get("llm_seconds", 0) - delta.get("embed_seconds", 0) - other
        rest -= delta.get("training_seconds", 0)
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
    plan: StudyPlan, manifest: dict[str, Any], throughput_before: dict[str, float], engines_before: int
) -> None:
    """Add what a finished session of `run` with `plan` measured (its manifest, whose throughput was
    `throughput_before` and which listed `engines_before` engines when it began) to this machine's
    rates. Call it only for a session whose times are one engine's and one process's (no injected
    backend, `--workers 1`, local executor). A cache that cannot be written costs the estimate only."""
    calibrations = [entry for entry in manifest.get("attractors", {}).values() if entry.get("from") == "calibrated"]
    sample = session_sample(
        throughput_before,
        manifest.get("throughput", {}),
        plan=plan,
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
    came from the embedding cache (small next to the LLM; no reason to call the whole time unknown).
    `borrowed`: what this machine has not measured, estimated from another rate of the same engine (a
    request kind from the other kind, a calibration from the text requests)."""

    seconds: float | None
    parts: tuple[tuple[str, float], ...] = ()
    missing: tuple[str, ...] = ()
    sessions: int = 0
    left_out: tuple[str, ...] = ()
    borrowed: tuple[str, ...] = ()

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
        if self.borrowed:
            runs += f"; {', '.join(self.borrowed)} not measured here yet, estimated from another rate of the engine"
        return f"~{duration(self.seconds)} ({parts}; {runs})" if parts else f"~{duration(self.seconds)} ({runs})"


def batch_speedup(measured_per_call: float, per_call: float) -> float:
    """How much faster per request an engine answers calls of `per_call` requests than the calls of
    `measured_per_call` its rate was measured on: the ratio of r(b) = R b / (b + K) at the two sizes,
    with K = `HALF_SATURATION_REQUESTS` (a batched engine's throughput grows with the batch, then
    saturates; see that constant). 1 where either size is unknown."""
    if measured_per_call <= 0 or per_call <= 0:
        return 1.0
    k = HALF_SATURATION_REQUESTS
    return (per_call / (per_call + k)) / (measured_per_call / (measured_per_call + k))


def request_kind(condition: StudyConfig) -> str:
    """What a condition's LLM requests are: 'coordination' moves (one name out of a few, long memory
    prompts) or 'text' (a written trait); the two run at different rates on one engine."""
    return "coordination" if condition.study.interaction == "coordination" else "text"


def estimate_wall(
    config: StudyConfig,
    size: StudySize,
    *,
    engine_keys: dict[int, str],
    calibrations: list[tuple[Any, int]],
    rates: dict[str, Any],
) -> WallEstimate:
    """The wall time of `config` (sized as `size`) from this machine's `rates` (`machine_rates()`):
    engine starts, the calibrations it computes (`calibrations`: (spec, requests), requests 0 where one
    is found, not computed), LLM requests at the batch sizes the study sends (`batch_speedup`),
    embedding the study's distinct texts, and the simulation itself. `engine_keys`: the engine key
    of each LLM condition (grid index). The planner (`culturesim.study.planner`) is its one caller."""
    if not rates:
        return WallEstimate(None)
    grid = config.condition_grid()
    llm: dict[tuple[str, str], float] = {}
    for index, requests in enumerate(size.condition_requests):
        if requests and index in engine_keys:
            key = (engine_keys[index], request_kind(grid[index][1]))
            llm[key] = llm.get(key, 0) + requests
    computed = [(spec, requests) for spec, requests in calibrations if requests]
    starts = {engine for engine, _ in llm} | {spec.engine for spec, _ in computed}
    parts: dict[str, float] = {}
    missing: list[str] = []
    borrowed: list[str] = []

    def rate(category: str, key: str, what: str) -> dict[str, float] | None:
        found = rates.get(category, {}).get(key)
        if found is None:
            missing.append(what)
        return found

    for engine in starts:
        if (found := rate("engine_start", engine, f"engine start of {_label(engine)}")) is not None:
            parts["engine start"] = parts.get("engine start", 0) + found["seconds_per_start"]
    for spec, requests in computed:
        found = rates.get("calibration", {}).get(spec.engine)
        if found is not None:
            speedup = batch_speedup(found.get("requests_per_call", 0), spec.chains)
            parts["calibration"] = parts.get("calibration", 0) + requests * found["seconds_per_request"] / speedup
        elif (text := rates.get("llm", {}).get(llm_key(spec.engine, "text"))) is not None:
            # A calibration's chains are text requests, `chains` per call: the engine's text rate, said so.
            speedup = batch_speedup(text.get("requests_per_call", 0), spec.chains)
            parts["calibration"] = parts.get("calibration", 0) + requests / (text["requests_per_second"] * speedup)
            borrowed.append("calibration")
        else:
            missing.append(f"calibration with {_label(spec.engine)}")
    for (engine, kind), requests in llm.items():
        found = rates.get("llm", {}).get(llm_key(engine, kind))
        if found is None:  # the other kind on the same engine, said so, rather than no estimate
            other = next((k for k in ("text", "coordination") if k != kind), kind)
            found = rates.get("llm", {}).get(llm_key(engine, other))
            if found is not None:
                borrowed.append(f"{kind} requests")
        if found is None:
            missing.append(f"LLM {_label(engine)} ({kind} requests)")
            continue
        per_call = requests / config.study.generations  # lockstep: one call per generation of a group
        speedup = batch_speedup(found.get("requests_per_call", 0), per_call)
        parts["LLM"] = parts.get("LLM", 0) + requests / (found["requests_per_second"] * speedup)
    texts = size.table("vectors").rows
    models = sorted({condition.embedding.model for _, condition in grid})
    speeds = [rates.get("embedding", {}).get(model, {}).get("texts_per_second") for model in models]
    left_out = () if all(speed is not None for speed in speeds) else ("embedding",)
    if texts and not left_out:
        parts["uncached embedding"] = texts / min(speeds)  # over embedders: the slowest for all (an upper bound)
    if (found := rate("simulation", SIMULATION, "simulation")) is not None:
        parts["simulation"] = size.agent_generations * found["seconds_per_agent_generation"]
    if size.training_texts:
        models = {c.llm.engine.model for _, c in grid if c.llm.retraining.enabled and c.uses_llm()}
        key = models.pop() if len(models) == 1 else "mixed"
        if (found := rate("retraining", key, f"retraining of {key}")) is not None:
            parts["retraining"] = size.training_texts * found["seconds_per_text"]
    sessions = int(rates.get("sessions", 0))
    if missing:
        return WallEstimate(None, missing=tuple(missing), sessions=sessions)
    return WallEstimate(
        sum(parts.values()), tuple(parts.items()), sessions=sessions, left_out=left_out, borrowed=tuple(borrowed)
    )


def llm_key(engine: str, kind: str) -> str:
    """The rates file's key of an engine's LLM rate for one request kind (`request_kind`)."""
    return f"{engine} {kind}"


def _label(engine: str) -> str:
    """A short label of an engine key: backend/model."""
    return "/".join(engine.split("#")[0].split("/")[:2])
