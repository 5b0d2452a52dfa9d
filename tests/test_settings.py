"""The environment culturesim sets for an engine start is scoped: the user's values win, nothing stays."""

from __future__ import annotations

import os

import pytest

from culturesim.core.settings import CACHE_ENV, cache_root, environment_defaults, vllm_cpu_defaults
from culturesim.parts.engine_identity import StudyEngines
from culturesim.study.provenance import session_devices


def test_defaults_apply_inside_the_block_only_and_never_override_the_user(monkeypatch) -> None:
    monkeypatch.setenv("CULTURESIM_TEST_USER_SET", "mine")
    monkeypatch.delenv("CULTURESIM_TEST_UNSET", raising=False)
    with environment_defaults({"CULTURESIM_TEST_USER_SET": "default", "CULTURESIM_TEST_UNSET": "default"}):
        assert os.environ["CULTURESIM_TEST_USER_SET"] == "mine"
        assert os.environ["CULTURESIM_TEST_UNSET"] == "default"
    assert os.environ["CULTURESIM_TEST_USER_SET"] == "mine"
    assert "CULTURESIM_TEST_UNSET" not in os.environ


def test_defaults_are_removed_when_the_engine_start_fails(monkeypatch) -> None:
    monkeypatch.delenv("CULTURESIM_TEST_UNSET", raising=False)
    with pytest.raises(RuntimeError), environment_defaults({"CULTURESIM_TEST_UNSET": "1"}):
        raise RuntimeError("engine did not start")
    assert "CULTURESIM_TEST_UNSET" not in os.environ


def test_vllm_threads_cover_the_cpus_this_process_may_use() -> None:
    threads = len(os.sched_getaffinity(0))
    defaults = vllm_cpu_defaults()
    assert defaults["OMP_NUM_THREADS"] == str(threads)
    assert defaults["VLLM_CPU_OMP_THREADS_BIND"] == f"0-{threads - 1}"


def test_cache_root_is_read_when_called(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert cache_root() == tmp_path


def test_devices_resolve_to_the_cpu_here_and_cuda_without_a_gpu_is_a_clear_error(monkeypatch) -> None:
    from culturesim.parts import devices
    from culturesim.schema.config import ConfigError, StudyConfig

    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    assert devices.resolve_device("auto", field="embedding.device") == "cpu"
    with pytest.raises(ConfigError, match=r"embedding.device = 'cuda' but torch sees no CUDA GPU"):
        devices.resolve_device("cuda", field="embedding.device")
    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    assert devices.resolve_device("auto", field="llm.engine.device") == "cuda"
    study = StudyConfig.model_validate(
        {"study": {"name": "d"}, "population": {"llm_share": 0.2}, "llm": {"engine": {"backend": "transformers"}}}
    )
    assert session_devices(study, StudyEngines()) == {"embedding": "cuda", "llm": "transformers on cuda"}
    assert "device" not in study.model_dump(mode="json")["embedding"]  # left out at 'auto': hashes unchanged


def test_a_session_names_the_backend_that_auto_resolves_to(monkeypatch) -> None:
    """The manifest says what ran, never 'auto': vLLM where it is installed, else transformers; two
    conditions on one backend and device name it once; an HTTP server is remote."""
    import culturesim.parts.llm as llm
    from culturesim.parts import devices
    from culturesim.schema.config import StudyConfig

    study = StudyConfig.model_validate(
        {"study": {"name": "d"}, "population": {"llm_share": 0.2},
         "conditions": {"llm.engine.dtype": ["float32", "bfloat16"]}}
    )  # fmt: skip
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    monkeypatch.setattr(llm, "cuda_available", lambda: False)
    monkeypatch.setattr(llm, "vllm_available", lambda: True)
    assert session_devices(study, StudyEngines()) == {"embedding": "cpu", "llm": "vllm on cpu"}
    monkeypatch.setattr(llm, "vllm_available", lambda: False)
    assert session_devices(study, StudyEngines())["llm"] == "transformers on cpu"
    openai = StudyConfig.model_validate(
        {"study": {"name": "o"}, "population": {"llm_share": 0.2},
         "llm": {"engine": {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:8000/v1"}}}
    )  # fmt: skip
    assert session_devices(openai, StudyEngines())["llm"] == "openai on remote"
    human = StudyConfig.model_validate({"study": {"name": "h"}})
    assert session_devices(human, StudyEngines()) == {"embedding": "cpu"}


def test_only_the_settings_module_reads_the_environment() -> None:
    """Every `os.environ` / `os.getenv` / `os.putenv` in the package is in culturesim/core/settings.py."""
    import ast
    from pathlib import Path

    import culturesim

    package = Path(culturesim.__file__).parent
    readers = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "putenv", "environb"}:
                readers.append(f"{path.relative_to(package)}:{node.lineno}")
    assert readers, "the walk found no reader at all (settings.py reads os.environ)"
    assert all(reader.startswith("core/settings.py:") for reader in readers), readers
