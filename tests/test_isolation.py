"""The test session never touches the user's caches: conftest points them at a fresh folder,
and the processes the tests start inherit it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from culturesim.core.settings import CACHE_ENV, cache_root
from tests.helpers import ENV


def test_the_user_caches_are_a_fresh_temporary_folder() -> None:
    root = cache_root()
    assert root.is_relative_to(tempfile.gettempdir()) and not root.is_relative_to(Path.home() / ".cache")
    assert Path(os.environ["XDG_CACHE_HOME"]).parent == root.parent
    # helpers.ENV (the subprocesses' environment) was copied after the folder was set
    assert ENV[CACHE_ENV] == os.environ[CACHE_ENV] and ENV["XDG_CACHE_HOME"] == os.environ["XDG_CACHE_HOME"]
