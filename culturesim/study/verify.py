"""Verify a results folder: config hash, preregistration lock, and every result file's hash.

A study's folder is named after its config hash; a replay's (`culturesim replay`) is wherever it
was written, so a replay is checked against the config hash its manifest records for the study it
replays (`replay_of`) instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from culturesim.core.fingerprint import file_sha256
from culturesim.schema.config import stored_config, stored_hash
from culturesim.study.adapter_store import AdapterStore
from culturesim.study.prereg import CURRENT_LAYOUT, config_hashes
from culturesim.study.store import finished_runs, load_run_marker, read_manifest, run_folder


def verify_results(folder: Path) -> tuple[list[str], list[str]]:
    """(problems, checks passed) for a results folder; no problems means the folder is intact."""
    manifest = read_manifest(folder)
    problems: list[str] = []
    checked: list[str] = []

    def check(ok: bool, passed: str, failed: str) -> None:
        (checked if ok else problems).append(passed if ok else failed)

    config = stored_config(manifest["config"])  # readable by this version (old layouts migrated)
    recomputed = stored_hash(manifest["config"])
    # The stored text's hash, and the config's in each layout a lock or a replayed folder may hash.
    hashes = {h: layout for layout, h in config_hashes(config).items()}
    hashes.setdefault(recomputed, "as stored")
    check(
        recomputed == manifest["config_hash"],
        f"config hash {recomputed[:12]} matches the manifest",
        f"config in manifest hashes to {recomputed[:12]}, manifest says {manifest['config_hash'][:12]}",
    )
    replay = manifest.get("replay_of")
    if replay is None:
        check(
            folder.name == recomputed[:12],
            "folder name matches the config hash",
            f"folder {folder.name} is not named after its config hash {recomputed[:12]}",
        )
    else:
        checked.append(_replay_line(replay, hashes, recomputed))
    lock = manifest.get("lock")
    if lock is None:
        checked.append("no preregistration lock (exploratory or toy run)")
    elif lock["sha256"] in hashes:
        layout = hashes[lock["sha256"]]
        written = f" (locked in {layout})" if layout not in ("as stored", CURRENT_LAYOUT) else ""
        checked.append(f"config matches the preregistration lock of {lock['locked_at']}{written}")
    else:
        reasons = "; ".join(d["reason"] for d in manifest.get("deviations", []))
        check(
            bool(reasons),
            f"config differs from its lock, with recorded deviation(s): {reasons}",
            "config differs from its preregistration lock and no deviation is recorded",
        )
    done = finished_runs(folder)
    for run in manifest["runs"]:
        run_id = run["run_id"]
        if run_id not in done:
            problems.append(f"run {run_id} has not finished")
            continue
        marker = load_run_marker(folder, run_id)
        for name, digest in marker["files"].items():
            path = run_folder(folder, run_id) / name
            check(
                path.exists() and file_sha256(path) == digest,
                f"run {run_id} {name}",
                f"run {run_id} {name} is missing or its hash differs from done.json",
            )
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        check(path.exists() and file_sha256(path) == digest, name, f"{name} is missing or its hash differs")
    adapters = manifest.get("adapters", [])
    if adapters:
        missing = AdapterStore(folder).problems()
        problems.extend(missing)
        stored = {a["adapter"] for a in AdapterStore(folder).summary()}
        listed = {a["adapter"] for a in adapters}
        check(
            stored == listed,
            "the adapters' records list the manifest's adapters",
            "the adapters' records differ from the manifest's list of adapters",
        )
        if not missing:
            trainings = sum(1 for a in adapters if a["adapter"] is not None)  # the rest: base-model scores
            checked.append(
                f"{len(listed - {None})} distinct adapter(s) of {trainings} retraining(s) match their digests"
            )
    if manifest.get("status") != "complete":
        problems.append(f"study status is {manifest.get('status')!r}, not 'complete'")
    return problems, checked


def _replay_line(replay: dict[str, Any], hashes: dict[str, str], recomputed: str) -> str:
    """What a replay's manifest says it replays, and whether it replayed that study's own config
    (the replayed folder's hash may be of the flat [llm] layout, when it was run before the split);
    a replay of another study file (`culturesim replay --study`) is allowed, and said."""
    source, source_hash = replay["folder"], replay["config_hash"]
    if source_hash in hashes:
        return f"a replay of {source}, whose config hash {source_hash[:12]} is this config's"
    return f"a replay of {source} (config hash {source_hash[:12]}) with another config, {recomputed[:12]}"
