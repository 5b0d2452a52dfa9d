"""Where each attractor calibration of a study comes from: its results folder, the folder it
replays, the user cache, the package, or the engine, computed now.

A calibration costs `chains x generations` LLM requests (200 by default, minutes on a CPU), so a
study never computes one that exists: a resume finds it in its own results folder, a replay in the
folder it replays (a replay has no engine), any study in the user cache
(`$CULTURESIM_CACHE/attractors/`, filled by every calibration computed here) or among the
calibrations that ship with the package (`culturesim.calibration.shipped`). The study planner
(`culturesim.study.planner`) decides each calibration's source once, before the study runs, and
the runner obtains it from there; the manifest records the source that really gave it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from culturesim.calibration.attractor import (
    CalibrationSpec,
    MissingCalibration,
    cache_path,
    find_record,
    read_record,
)
from culturesim.calibration.shipped import shipped_record

RESULTS_FOLDER = "results folder"  # the study's own folder holds it (a resume)
REPLAYED = "replayed"  # the folder a replay replays holds it
CACHE = "cache"  # this user's cache holds it
SHIPPED = "shipped"  # the package ships it
CALIBRATED = "calibrated"  # computed now with the study's engine (and cached)
SOURCES = (RESULTS_FOLDER, REPLAYED, CACHE, SHIPPED, CALIBRATED)


def locate(
    spec: CalibrationSpec, *, folder: Path | None, replay_of: Path | None, use_cache: bool, force: bool = False
) -> str:
    """Where `spec`'s calibration will come from (one of `SOURCES`), in the order a study looks:
    `folder` (the results folder, None where there is none yet), `replay_of` (a replay's source,
    which must hold it: a replay has no engine), then, with `use_cache` and without `force`, the
    user cache and the package; else it is computed."""
    if folder is not None and find_record(folder, spec) is not None:
        return RESULTS_FOLDER
    if replay_of is not None:
        if find_record(replay_of, spec) is None:
            raise MissingCalibration(
                f"{replay_of} holds no calibration {spec.key()} ({spec.role}, {spec.engine}): a replay measures "
                "the attractor distance only against the study's own calibrations"
            )
        return REPLAYED
    if use_cache and not force:
        if cache_path(spec.key()).exists():
            return CACHE
        if shipped_record(spec) is not None:
            return SHIPPED
    return CALIBRATED


def read_located(
    spec: CalibrationSpec, source: str, *, folder: Path | None, replay_of: Path | None
) -> dict[str, Any] | None:
    """The record `locate` found at `source`; None for `CALIBRATED` (it must be computed) or where
    the file has gone since (a cache cleared meanwhile: then it is computed too)."""
    if source == RESULTS_FOLDER and folder is not None:
        path = find_record(folder, spec)
    elif source == REPLAYED and replay_of is not None:
        path = find_record(replay_of, spec)
    elif source == CACHE:
        path = cache_path(spec.key())
    elif source == SHIPPED:
        return shipped_record(spec)
    else:
        return None
    return read_record(path) if path is not None and path.exists() else None
