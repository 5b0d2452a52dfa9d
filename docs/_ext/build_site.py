"""Build the documentation site; `make docs` and tests/test_docs.py both run this, so they build alike.

    python docs/_ext/build_site.py [--out docs/_build]

1. A toy run of studies/quickstart.toml into OUT/results (`culturesim run ... --toy`): the results
   the tutorials analyse, made now by the code being documented.
2. `sphinx-build -W --keep-going -n -E -b html docs OUT/html` with CULTURESIM_RESULTS pointing at
   that run: warnings are errors, every reference must resolve, every page is read afresh (so the
   generated pages and the executed notebooks are of this build), and a notebook that raises fails.

Prints the time of each step. Exit status: that of the first step that fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
STUDY = ROOT / "studies" / "quickstart.toml"


def toy_results(out: Path) -> Path:
    """A fresh toy run of the quickstart study under `out`/results; returns its results folder."""
    root = out / "results"
    shutil.rmtree(root, ignore_errors=True)
    command = [sys.executable, "-m", "culturesim.cli", "run", str(STUDY), "--toy", "--out", str(root)]
    subprocess.run(command, check=True, cwd=ROOT)
    (manifest,) = root.glob("*/*/manifest.json")
    return manifest.parent


def sphinx_command(out: Path) -> list[str]:
    """The strict build of the site into `out`/html."""
    return [
        sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-E", "-b", "html",
        "-d", str(out / "doctrees"), str(DOCS), str(out / "html"),
    ]  # fmt: skip


def build(out: Path) -> Path:
    """The whole site into `out`/html (see the module's docstring); returns that folder."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = toy_results(out)
    ran = time.perf_counter()
    print(f"[docs] toy run of {STUDY.name}: {results} ({ran - start:.0f} s)", flush=True)
    env = {**os.environ, "CULTURESIM_RESULTS": str(results)}
    subprocess.run(sphinx_command(out), check=True, cwd=ROOT, env=env)
    print(f"[docs] site: {out / 'html' / 'index.html'} (sphinx {time.perf_counter() - ran:.0f} s)", flush=True)
    return out / "html"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS / "_build", help="build folder (default docs/_build)")
    args = parser.parse_args()
    try:
        build(args.out)
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode or 1)


if __name__ == "__main__":
    main()
