"""Shared helpers for the benchmark scripts: the options every script has, timing, and writing result
tables.

Every script takes `--smoke` (tiny sizes: seconds, still the whole benchmark, baseline and candidate;
its numbers measure nothing) and `--out` (where the tables go: benchmarks/results/ unless
$CULTURESIM_BENCH_RESULTS names another folder), and writes `<name>.json`:

    {"benchmark", "smoke", "settings" (the parsed options), "machine" (CPU model, logical cores),
     "columns" (each column's meaning and unit), "rows" (one object per table row, in column order),
     and, where a script measures something once for the whole table, "summary"}

Numbers that could not be measured (a baseline skipped at a size) are null, never NaN, so the file
is strict JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
RESULTS_ENV = "CULTURESIM_BENCH_RESULTS"  # a folder: where results go when --out is not given


def parser(doc: str) -> argparse.ArgumentParser:
    """A script's command line with `--smoke` and `--out`; the description is the docstring's first line."""
    options = argparse.ArgumentParser(description=doc.splitlines()[0])
    options.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: runs every part once; its numbers mean nothing"
    )
    options.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get(RESULTS_ENV) or RESULTS),
        help=f"folder for the CSV and JSON tables (default ${RESULTS_ENV}, else benchmarks/results)",
    )
    return options


def parse(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, smoke: Mapping[str, object]
) -> argparse.Namespace:
    """The options of `argv` (the command line when None); with --smoke the options default to
    `smoke` (the tiny sizes), while options given explicitly still win."""
    if parser.parse_known_args(argv)[0].smoke:
        parser.set_defaults(**smoke)
    return parser.parse_args(argv)


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict[str, object]:
    """The CPU the numbers were measured on: model name and logical cores."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
    ]
    return {"cpu": models[0] if models else platform.processor(), "logical_cores": os.cpu_count()}


def _strict(value: object) -> object:
    """NaN and infinities (a number not measured) as null, so the file is strict JSON."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _cell(value: object) -> str:
    """A table cell: 4 significant digits, and a dash for a number not measured."""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "-"
    return str(value)


def report(
    name: str,
    rows: list[dict[str, object]],
    *,
    title: str,
    columns: Mapping[str, str],
    args: argparse.Namespace,
    summary: Mapping[str, object] | None = None,
) -> Path:
    """Print a table and write it as `<name>.csv` and `<name>.json` under `args.out`; returns the
    JSON's path. Every row must hold exactly `columns` (name -> meaning and unit), in that order:
    the JSON promises them to whoever reads it. `summary`: numbers measured once for the whole
    table (written under "summary")."""
    for row in rows:
        if list(row) != list(columns):
            raise ValueError(f"{name}: a row has columns {list(row)}, the benchmark promises {list(columns)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(rows)
    frame.write_csv(out / f"{name}.csv")
    document = {
        "benchmark": name,
        "smoke": args.smoke,
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "machine": machine(),
        "columns": dict(columns),
        "rows": [{key: _strict(value) for key, value in row.items()} for row in rows],
    }
    if summary is not None:
        document["summary"] = dict(summary)
    path = out / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    table = Table(title=title + (" [smoke sizes: not a measurement]" if args.smoke else ""))
    for column in frame.columns:
        table.add_column(column)
    for row in frame.iter_rows():
        table.add_row(*(_cell(value) for value in row))
    console = Console()
    natural = console.measure(table, options=console.options.update_width(1000)).maximum
    console.width = max(console.width, natural)  # every digit, even in a log or a narrow terminal
    console.print(table)
    return path
