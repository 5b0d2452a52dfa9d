"""Seed corpora: the built-in collection of human-style texts, or a user's own file.

The corpus is the starting culture and the pool human innovations are drawn from,
so an unusable one (no `text` column, empty texts, wrong encoding) is refused with
a message that says how to fix it.
"""

from __future__ import annotations

import io
from importlib.resources import files
from pathlib import Path

import polars as pl

from culturesim.schema.config import BUILTIN_CORPUS, ConfigError, CorpusSection

BUILTIN_FILE = "seed_corpus.jsonl"
SUFFIXES = {".csv": pl.read_csv, ".jsonl": pl.read_ndjson, ".ndjson": pl.read_ndjson, ".parquet": pl.read_parquet}


def read_corpus_file(path: Path) -> pl.DataFrame:
    """A corpus table from CSV, JSONL or Parquet, with a non-empty String `text` column."""
    reader = SUFFIXES.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(f"corpus.source {path}: unsupported file type; use one of {sorted(SUFFIXES)}")
    if not path.exists():
        raise ConfigError(f"corpus.source {path} does not exist; give a path relative to where you run, or 'builtin'")
    try:
        frame = reader(io.BytesIO(path.read_bytes()))
    except (pl.exceptions.PolarsError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"corpus.source {path} cannot be read ({type(exc).__name__}: {exc}); is it UTF-8?") from None
    if "text" not in frame.columns:
        raise ConfigError(f"corpus.source {path} has no 'text' column (columns: {frame.columns}); add one")
    if frame.schema["text"] != pl.String:
        raise ConfigError(f"corpus.source {path}: column 'text' must hold strings, not {frame.schema['text']}")
    return frame


def load_corpus(spec: CorpusSection) -> pl.DataFrame:
    """Texts (and domains, where given) after filtering; stripped, non-empty, deduplicated."""
    if spec.source == BUILTIN_CORPUS:
        frame = pl.read_ndjson(files("culturesim").joinpath("data", BUILTIN_FILE).read_bytes())
    else:
        frame = read_corpus_file(Path(spec.source).expanduser())
    if "domain" not in frame.columns:
        frame = frame.with_columns(domain=pl.lit("any"))
    try:
        frame = frame.with_columns(pl.col("domain").cast(pl.String))
    except pl.exceptions.PolarsError:
        raise ConfigError(
            f"corpus.source {spec.source}: column 'domain' must hold strings, not {frame.schema['domain']}"
        ) from None
    if spec.domains:
        known = set(frame["domain"].unique().to_list())
        unknown = sorted(set(spec.domains) - known)
        if unknown:
            raise ConfigError(f"corpus.domains {unknown} not in corpus {spec.source}; available: {sorted(known)}")
        frame = frame.filter(pl.col("domain").is_in(list(spec.domains)))
    frame = (
        frame.select(pl.col("text").str.strip_chars(), pl.col("domain").cast(pl.String))
        .filter(pl.col("text").is_not_null() & (pl.col("text").str.len_chars() > 0))
        .unique(subset="text", keep="first", maintain_order=True)
    )
    if frame.height == 0:
        raise ConfigError(f"corpus.source {spec.source} holds no non-empty texts; give at least one text")
    return frame
