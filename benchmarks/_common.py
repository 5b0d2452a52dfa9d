"""Shared helpers for the benchmark scripts: timing and writing result tables."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report(name: str, rows: list[dict[str, object]], *, title: str) -> None:
    """Print a table and write it as CSV and JSON under benchmarks/results/."""
    RESULTS.mkdir(exist_ok=True)
    frame = pl.DataFrame(rows)
    frame.write_csv(RESULTS / f"{name}.csv")
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(column)
    for row in frame.iter_rows():
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    Console().print(table)
