"""Verify a results folder: config hash, preregistration lock, and every result file's hash."""

from __future__ import annotations

from pathlib import Path

from culturesim.config import stored_config, stored_hash
from culturesim.fingerprint import file_sha256
from culturesim.study.store import finished_runs, load_run_marker, read_manifest, run_folder


def verify_results(folder: Path) -> tuple[list[str], list[str]]:
    """(problems, checks passed) for a results folder; no problems means the folder is intact."""
    manifest = read_manifest(folder)
    problems: list[str] = []
    checked: list[str] = []

    def check(ok: bool, passed: str, failed: str) -> None:
        (checked if ok else problems).append(passed if ok else failed)

    stored_config(manifest["config"])  # readable by this version (old layouts migrated)
    recomputed = stored_hash(manifest["config"])
    check(
        recomputed == manifest["config_hash"],
        f"config hash {recomputed[:12]} matches the manifest",
        f"config in manifest hashes to {recomputed[:12]}, manifest says {manifest['config_hash'][:12]}",
    )
    check(
        folder.name == recomputed[:12],
        "folder name matches the config hash",
        f"folder {folder.name} is not named after its config hash {recomputed[:12]}",
    )
    lock = manifest.get("lock")
    if lock is None:
        checked.append("no preregistration lock (exploratory or toy run)")
    elif lock["sha256"] == recomputed:
        checked.append(f"config matches the preregistration lock of {lock['locked_at']}")
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
    if manifest.get("status") != "complete":
        problems.append(f"study status is {manifest.get('status')!r}, not 'complete'")
    return problems, checked
