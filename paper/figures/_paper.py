"""Shared by the figure scripts: which results folder to read and where the figure goes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from culturesim.api import NotApplicable, draw_figure, save_figure

BUILD = Path(__file__).resolve().parent.parent / "build"
FORMATS = ("pdf", "png")  # pdf for LaTeX, png to look at


def results_folder() -> Path:
    """The results folder: the first argument, else $CULTURESIM_RESULTS."""
    given = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CULTURESIM_RESULTS")
    if not given:
        sys.exit(f"usage: python {Path(sys.argv[0]).name} RESULTS_DIR (or set CULTURESIM_RESULTS)")
    return Path(given)


def make_figure(name: str, stem: str) -> None:
    """Draw figure `name` of the results folder into build/<stem>.pdf and .png.

    A figure the study does not allow (a forest plot of a toy run, which has no hypotheses) is
    skipped with the reason and its old files removed, so the paper never shows stale results.
    """
    folder = results_folder()
    try:
        fig = draw_figure(folder, name)
    except NotApplicable as exc:
        for fmt in FORMATS:
            (BUILD / f"{stem}.{fmt}").unlink(missing_ok=True)
        print(f"{stem}: skipped ({exc})")
        return
    for fmt in FORMATS:
        save_figure(fig, BUILD / f"{stem}.{fmt}")
    print(f"{stem}: {BUILD / stem}.{{{','.join(FORMATS)}}} from {folder}")
