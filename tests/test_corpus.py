"""Tests for culturesim.parts.corpus: the built-in seed corpus and user corpus files."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from culturesim.parts.corpus import load_corpus
from culturesim.schema.config import ConfigError, CorpusSection

RAW = {
    "text": ["  The river rose overnight. ", "The river rose overnight.", "", "   ", None, "Bread is better warm.\n"],
    "domain": ["story", "story", "story", "advice", "advice", "advice"],
}
CLEAN = ["The river rose overnight.", "Bread is better warm."]

WRITERS = {
    "csv": pl.DataFrame.write_csv,
    "jsonl": pl.DataFrame.write_ndjson,
    "parquet": pl.DataFrame.write_parquet,
}


def load(source: Path | str, **kwargs) -> pl.DataFrame:
    return load_corpus(CorpusSection(source=str(source), **kwargs))


# -- built-in corpus ------------------------------------------------------------------------------


def test_builtin_corpus_is_large_varied_and_clean():
    corpus = load_corpus(CorpusSection())
    texts = corpus["text"].to_list()
    assert len(texts) >= 300
    assert corpus["domain"].n_unique() >= 4
    assert all(t and t == t.strip() for t in texts)
    assert len(set(texts)) == len(texts)


def test_builtin_domain_filter():
    full = load_corpus(CorpusSection())
    domains = sorted(full["domain"].unique().to_list())
    chosen = load_corpus(CorpusSection(domains=(domains[0],)))
    assert 0 < chosen.height < full.height
    assert set(chosen["domain"].to_list()) == {domains[0]}
    two = load_corpus(CorpusSection(domains=tuple(domains[:2])))
    assert set(two["domain"].to_list()) == set(domains[:2])
    assert two.height == full.filter(pl.col("domain").is_in(domains[:2])).height


def test_unknown_domain_lists_the_available_ones():
    domains = sorted(load_corpus(CorpusSection())["domain"].unique().to_list())
    with pytest.raises(ConfigError, match=r"corpus\.domains.*no_such_domain") as info:
        load_corpus(CorpusSection(domains=("no_such_domain",)))
    for domain in domains:
        assert domain in str(info.value)


# -- user files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_user_file_is_stripped_and_deduplicated(tmp_path, suffix):
    path = tmp_path / f"corpus.{suffix}"
    WRITERS[suffix](pl.DataFrame(RAW), path)
    corpus = load(path)
    assert corpus["text"].to_list() == CLEAN
    assert corpus["domain"].to_list() == ["story", "advice"]


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_user_file_without_domain_column(tmp_path, suffix):
    path = tmp_path / f"corpus.{suffix}"
    WRITERS[suffix](pl.DataFrame({"text": ["one text", "another text"]}), path)
    corpus = load(path)
    assert corpus["text"].to_list() == ["one text", "another text"]
    assert corpus.columns == ["text", "domain"]


def test_user_file_domain_filter(tmp_path):
    path = tmp_path / "corpus.csv"
    pl.DataFrame(RAW).write_csv(path)
    assert load(path, domains=("advice",))["text"].to_list() == ["Bread is better warm."]


def expect_error(source: Path, *fragments: str) -> None:
    with pytest.raises(ConfigError, match=r"corpus\.source") as info:
        load(source)
    message = str(info.value)
    assert str(source) in message
    for fragment in fragments:
        assert fragment in message


def test_file_without_text_column(tmp_path):
    path = tmp_path / "corpus.csv"
    pl.DataFrame({"body": ["a text"], "domain": ["story"]}).write_csv(path)
    expect_error(path, "no 'text' column", "body", "add one")


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_file_with_only_empty_texts(tmp_path, suffix):
    path = tmp_path / f"corpus.{suffix}"
    WRITERS[suffix](pl.DataFrame({"text": ["", "   ", "\t"]}), path)
    with pytest.raises(ConfigError, match=r"corpus\.source .*no non-empty texts.*at least one text"):
        load(path)


def test_non_utf8_csv(tmp_path):
    path = tmp_path / "corpus.csv"
    path.write_bytes(b"text\n\xff\xfe bad\n")
    expect_error(path, "UTF-8")


def test_non_string_text_column(tmp_path):
    path = tmp_path / "corpus.parquet"
    pl.DataFrame({"text": [1, 2]}).write_parquet(path)
    expect_error(path, "must hold strings")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("text\nhello\n", encoding="utf-8")
    expect_error(path, "unsupported file type", ".csv", ".jsonl", ".parquet")


def test_missing_file(tmp_path):
    expect_error(tmp_path / "absent.csv", "does not exist")


def test_file_name_with_brackets(tmp_path):
    path = tmp_path / "corpus [2024].csv"
    pl.DataFrame({"text": ["one text"]}).write_csv(path)
    assert load(path)["text"].to_list() == ["one text"]


def test_numeric_domain_labels_can_be_selected(tmp_path):
    path = tmp_path / "corpus.csv"
    path.write_text("text,domain\nfirst text,1\nsecond text,2\n", encoding="utf-8")
    assert load(path, domains=("1",))["text"].to_list() == ["first text"]
