"""Attractor calibrations that ship inside the package, so a default study never pays for one.

A calibration depends only on its settings (`attractor.CalibrationSpec`) and on the machine's
float32 arithmetic. The built-in model, corpus and embedder at default sampling are what most
studies use, and calibrating them costs 200 LLM requests per role (10 minutes per role on a slow
2-core CPU). culturesim therefore ships one calibration per role for the vLLM engine on a CPU,
made once on a named CPU (`made_on` in each file), in `culturesim/data/attractors/<key>.json`.

The key is the spec's own, so a shipped file is only ever used where a study would have
computed the very same spec; a study records that its attractor came from the package
(`from: shipped` in the manifest). Two CPU kinds may write slightly different seeded texts
(one AVX2 and one AVX-512 machine gave centroid distances of 0.783 -> 0.637 and 0.780 -> 0.636
over 10 generations); `tests/test_shipped_attractors.py` recomputes one calibration and checks
it is byte-identical on the CPU kind it was made on, and within the calibration's own sampling
error (a bootstrap over its chains) elsewhere.

Maintainers regenerate them with `python -m culturesim.calibration.shipped` (about 20 minutes on 2 cores),
or only their embedding floats with `--reembed` after a change of the embedder's arithmetic.
"""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from culturesim.calibration.attractor import CalibrationSpec, calibrate, calibration_spec, chain_geometry
from culturesim.core.fingerprint import hardware
from culturesim.parts.corpus import load_corpus
from culturesim.schema.config import StudyConfig

SHIPPED_ROLES = ("rewrite", "combine", "create", "advise", "continue")
BOOTSTRAP_DRAWS = 2000  # resamples of a calibration's chains for its sampling error


def shipped_folder() -> Path:
    return Path(str(files("culturesim").joinpath("data", "attractors")))


def default_condition(role: str) -> StudyConfig:
    """A condition with every default setting whose LLM agents write in `role` (the built-in
    model, corpus and embedder, default sampling, prompt and calibration size)."""
    return StudyConfig.model_validate(
        {
            "study": {"name": "shipped-attractor", "seed": 0, "replicates": 1, "generations": 1},
            "population": {"llm_share": 0.5},
            "llm": {"prompt": {"role": role}},
        }
    )


def default_spec(role: str) -> CalibrationSpec:
    """The calibration a default study with LLM agents in `role` asks for on this machine."""
    condition = default_condition(role)
    return calibration_spec(condition, load_corpus(condition.corpus)["text"].to_list())


def cpu_kind() -> dict[str, Any]:
    """What decides a CPU's float32 results here: its model name and its vector extensions."""
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx", "fma")))
                break
    except OSError:
        pass
    return {"cpu": hardware()["cpu"], "flags": flags}


def prompt_digest(role: str) -> str:
    """16 hex digits of the sha256 of everything a role's requests say besides the text: the system
    prompt, the role's instruction and its worked examples. A calibration's key does not cover
    the wording, so a shipped one is used only while its wording is the package's."""
    from culturesim.parts.llm.prompts import FEW_SHOT, ROLE_INSTRUCTIONS, SYSTEM_PROMPT

    payload = json.dumps([SYSTEM_PROMPT, ROLE_INSTRUCTIONS[role], FEW_SHOT[role]])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def shipped_record(spec: CalibrationSpec) -> dict[str, Any] | None:
    """The shipped calibration of `spec`, or None (none shipped, or made with other prompt wording)."""
    path = shipped_folder() / f"{spec.key()}.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return record if record.get("prompt_digest") == prompt_digest(spec.role) else None


def same_results(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two records of one spec hold the same texts, failures and floats (not the same
    timing or creation date)."""
    fields = ("key", "spec", "attractor", "centroid_distance", "texts", "failures", "requests")
    return all(a[f] == b[f] for f in fields)


def attractor_sampling_error(record: dict[str, Any], vectors, *, seed: int = 0) -> np.ndarray:
    """Cosine distances (1 - cos) between a calibration's attractor and the attractors of
    BOOTSTRAP_DRAWS resamples of its chains (with replacement): the attractor's own sampling error."""
    final = np.asarray(vectors.embed(record["texts"][-1]), dtype=np.float64)
    final /= np.linalg.norm(final, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    draws = final[rng.integers(0, len(final), size=(BOOTSTRAP_DRAWS, len(final)))].mean(axis=1)
    attractor = np.asarray(record["attractor"], dtype=np.float64)
    cosine = draws @ attractor / (np.linalg.norm(draws, axis=1) * np.linalg.norm(attractor))
    return 1.0 - cosine


def write_shipped(backend, vectors, *, roles: tuple[str, ...] = SHIPPED_ROLES, on_role=None) -> list[Path]:
    """Calibrate each role with `backend` and `vectors` and write it into the package's data folder."""
    folder = shipped_folder()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for role in roles:
        spec = default_spec(role)
        texts = load_corpus(default_condition(role).corpus)["text"].to_list()
        record = {
            **calibrate(spec, backend, vectors, texts),
            "made_on": cpu_kind(),
            "prompt_digest": prompt_digest(role),
        }
        path = folder / f"{spec.key()}.json"
        path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
        if on_role is not None:
            on_role(role, record)
    return written


def reembed_shipped(vectors) -> list[Path]:
    """Recompute the embedding floats (attractor, centroid distances) of every shipped calibration
    from its stored texts, which come from the LLM alone: after a change of the embedder's arithmetic."""
    written = []
    for path in sorted(shipped_folder().glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        record.update(chain_geometry(record["texts"], vectors))
        path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    """Regenerate every shipped calibration with the default engine and embedder of this machine
    (`--reembed`: only their embedding floats, from the stored texts)."""
    import sys

    from culturesim.parts.embed import Embedder
    from culturesim.parts.llm import create_backend
    from culturesim.schema.config import EmbeddingSection
    from culturesim.schema.llm_section import EngineSection

    if "--reembed" in sys.argv[1:]:
        reembed_shipped(Embedder(EmbeddingSection()))
        return
    backend = create_backend(EngineSection(), seed=0)
    try:
        write_shipped(
            backend,
            Embedder(EmbeddingSection()),
            on_role=lambda role, record: print(f"{role}: {record['requests']} requests in {record['seconds']:.0f} s"),
        )
    finally:
        backend.close()


if __name__ == "__main__":
    main()
