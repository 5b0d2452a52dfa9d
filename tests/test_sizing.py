"""Sizing a study before it runs: counts against a real run and hand-computed formulas, speed, disk check."""

from __future__ import annotations

import json
import time
from importlib.resources import files
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from culturesim.schema.config import ConfigError, StudyConfig
from culturesim.study.runner import StudyRunner
from culturesim.study.sizing import (
    MEAN_TEXT_BYTES,
    check_disk,
    human_bytes,
    plan_table,
    size_study,
)


def study(**sections: dict) -> StudyConfig:
    data: dict = {"study": {"name": "sized", "seed": 3, "replicates": 2, "generations": 8}}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return StudyConfig.model_validate(data)


def human_only() -> StudyConfig:
    """60 humans, 8 generations, 2 replicates: 30 learners a generation, 7.2 new variants expected."""
    return study(population={"size": 60}, humans={"copy_error": 0.2, "innovation": 0.05})


@pytest.fixture(scope="module")
def real_run(embedder, tmp_path_factory) -> Path:
    """The results folder of `human_only()`, really run."""
    return StudyRunner(embedder=embedder).run(human_only(), out_root=tmp_path_factory.mktemp("results"))


def test_counts_match_a_real_run(real_run: Path) -> None:
    size = size_study(human_only())
    assert size.runs == 2 and size.generations == 8 and size.agent_generations == 2 * 60 * 8
    for name in ("metrics", "population", "generations"):
        assert size.table(name).rows == pl.read_parquet(real_run / f"{name}.parquet").height, name
    real_traits = pl.read_parquet(real_run / "traits.parquet").height
    assert abs(size.table("traits").rows - real_traits) <= 0.25 * real_traits
    assert size.llm_requests == size.llm_requests_max == 0


def test_bytes_are_near_a_real_run(real_run: Path) -> None:
    """Each run table's estimate (one copy, per-run files) within a factor 2 of the real files."""
    size = size_study(human_only())
    for name in ("metrics", "traits", "population", "generations"):
        real = sum(p.stat().st_size for p in (real_run / "runs").glob(f"*/{name}.parquet"))
        assert real / 2 <= size.table(name).bytes <= 2 * real, (name, size.table(name).bytes, real)


def test_rows_follow_the_formulas() -> None:
    size = size_study(human_only())
    keys = 14  # 9 single-key default metrics + lexical_diversity's 3 keys + llm_failures, pool_size
    assert size.table("metrics").rows == 2 * 9 * keys
    assert size.table("population").rows == 2 * 9 * 60
    # 120 seeds + 2 runs x 8 generations x 30 learners x (0.05 + 0.95 x 0.2) = 120 + 115.2
    assert size.table("traits").rows == 235
    assert size.table("vectors").rows == 235
    # 10 shared seed texts per run; default rates: 16 x 30 x (0.02 + 0.98 x 0.05) = 33.12 new variants.
    shared = size_study(study(population={"size": 60}, corpus={"initial_variants": 10}))
    assert shared.table("traits").rows == 20 + 33
    unsaved = size_study(study(population={"size": 60}, study={"save_population": False}))
    assert unsaved.table("population").rows == 0


def test_llm_requests_follow_the_formula() -> None:
    config = study(
        study={"replicates": 3, "generations": 10},
        population={"size": 60, "llm_share": 0.25},
        humans={"llm_consultation": 0.1},
        llm={"prompt": {"retries": 2}},
    )
    size = size_study(config)
    # 15 LLM agents; 45 humans x turnover 0.5 = 22.5 learners, rounded half to even as the model does
    # (22), 10 % of whom consult: (15 + 2.2) requests x 10 generations x 3 runs.
    assert size.llm_requests == 516
    assert size.llm_requests_max == 516 * 3
    assert size.table("generations").rows == 516 and size.table("log").rows == 1548
    assert size.table("log").bytes == 1548 * 1024
    # The same with a condition without LLM agents: 30 learners, 3 consult per generation.
    grid = config.model_copy(update={"conditions": {"population.llm_share": [0.0, 0.25]}})
    assert size_study(grid).llm_requests == 3 * 10 * 3 + 516
    assert size_study(grid).runs == 6


def test_calibration_requests_count_each_distinct_calibration_once() -> None:
    """20 chains x 10 generations by default; a control shares its treatment's calibration; a
    condition over the temperature needs a second one; a human-only study needs none, and neither
    does one whose calibration ships with the package."""
    from culturesim.checks.shipped_attractors import default_spec, shipped_record

    shares = study(population={"size": 20}, llm={"sampling": {"max_tokens": 40}},
                   conditions={"population.llm_share": [0.0, 0.25]})  # fmt: skip
    assert size_study(shares).calibration_requests == 200
    defaults = study(population={"size": 20}, conditions={"population.llm_share": [0.0, 0.25]})
    shipped = shipped_record(default_spec("rewrite")) is not None
    assert size_study(defaults).calibration_requests == (0 if shipped else 200)
    temperatures = study(population={"size": 20, "llm_share": 0.25},
                         conditions={"llm.sampling.temperature": [0.5, 0.8]},
                         attractor={"chains": 4, "generations": 3})  # fmt: skip
    assert size_study(temperatures).calibration_requests == 2 * 12
    assert size_study(study(population={"size": 20})).calibration_requests == 0


def test_conditions_sum_agent_generations() -> None:
    config = study(conditions={"population.size": [40, 60]})
    assert size_study(config).agent_generations == 2 * 8 * (40 + 60)
    assert size_study(config).table("population").rows == 2 * 9 * (40 + 60)


def test_a_huge_study_sizes_at_once_and_is_refused(tmp_path: Path) -> None:
    config = study(study={"replicates": 10_000, "generations": 100_000}, population={"size": 10_000_000})
    start = time.perf_counter()
    size = size_study(config)
    assert time.perf_counter() - start < 0.2
    assert size.table("population").rows == 10_000 * 100_001 * 10_000_000
    assert size.agent_generations == 10_000 * 100_000 * 10_000_000
    with pytest.raises(ConfigError) as refused:
        check_disk(size, tmp_path / "not" / "yet")
    message = str(refused.value)
    assert human_bytes(size.total_bytes) in message and "save_population" in message
    assert f"but {tmp_path} has" in message and "--out" in message
    unsaved = size_study(
        config.model_copy(update={"study": config.study.model_copy(update={"save_population": False})})
    )
    with pytest.raises(ConfigError, match="population.size or choose another --out") as refused:
        check_disk(unsaved, tmp_path)
    assert "save_population" not in str(refused.value)


def test_a_small_study_fits(tmp_path: Path) -> None:
    size = size_study(human_only())
    assert 10_000 < size.total_bytes < 1_000_000
    check_disk(size, tmp_path / "results" / "not-yet")


def test_plan_table_shows_counts_with_separators() -> None:
    size = size_study(study(study={"replicates": 1000}, population={"size": 60, "llm_share": 0.5}))
    console = Console(record=True, width=120)
    console.print(plan_table(size))
    text = console.export_text()
    assert "1,000" in text and f"{size.agent_generations:,}" in text and "480,000" in text
    assert f"{size.llm_requests:,}" in text and f"{size.llm_requests_max:,}" in text
    assert "attractor calibration requests" in text
    assert "population" in text and human_bytes(size.total_bytes) in text and "total" in text


def test_human_bytes() -> None:
    assert human_bytes(999) == "999 B"
    assert human_bytes(1_234_000_000) == "1.2 GB"
    assert human_bytes(3_400_000_000_000_000) == "3.4 PB"


def test_mean_text_bytes_is_the_builtin_corpus_mean() -> None:
    lines = files("culturesim").joinpath("data", "seed_corpus.jsonl").read_text(encoding="utf-8").splitlines()
    lengths = [len(json.loads(line)["text"].encode()) for line in lines if line.strip()]
    assert abs(sum(lengths) / len(lengths) - MEAN_TEXT_BYTES) < 2


# -- wall time from this machine's measured rates (culturesim.study.rates) ------------------------------
def _llm_study() -> StudyConfig:
    return study(population={"size": 20, "llm_share": 0.25}, attractor={"chains": 4, "generations": 3})


def test_wall_time_is_unknown_until_this_machine_has_rates(monkeypatch, tmp_path: Path) -> None:
    from culturesim.checks import attractor
    from culturesim.core.settings import CACHE_ENV
    from culturesim.parts.engine_identity import EngineIdentity
    from culturesim.study.rates import RateSample, estimate_wall, record_rates

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    config = _llm_study()
    size = size_study(config)
    first = estimate_wall(config, size)
    assert first.seconds is None and first.describe().startswith("unknown (no rates measured here yet")
    console = Console(record=True, width=200)
    console.print(plan_table(size, wall_time=first.describe()))
    assert "estimated wall time on this machine: unknown" in console.export_text()

    engine = EngineIdentity.of(config.llm.engine).key()
    sample = RateSample()
    sample.add("llm", engine, tokens=300, requests=10, seconds=20)  # 0.5 requests/s
    sample.add("engine_start", engine, starts=1, seconds=40)
    sample.add("calibration", engine, requests=8, seconds=16)  # 2 s/request
    sample.add("embedding", config.embedding.model, texts=100, seconds=2)  # 50 texts/s
    sample.add("simulation", "all", agent_generations=1000, seconds=1)
    record_rates(sample)
    known = estimate_wall(config, size)
    expected = {
        "engine start": 40,
        "calibration": 4 * 3 * 2,
        "LLM": size.llm_requests / 0.5,
        "uncached embedding": size.table("vectors").rows / 50,
        "simulation": size.agent_generations / 1000,
    }
    assert dict(known.parts) == pytest.approx(expected)
    assert known.seconds == pytest.approx(sum(expected.values()))
    assert known.describe().startswith("~") and "rates of 1 run here" in known.describe()
    console = Console(record=True, width=200)
    console.print(plan_table(size, wall_time=known.describe()))
    assert f"estimated wall time on this machine: {known.describe()}" in console.export_text()

    # A cached calibration costs nothing; an engine never measured here makes the estimate unknown.
    [spec] = {s.key(): s for s in attractor.study_specs(config, {0: load_corpus_texts(config)}).values()}.values()
    attractor.cache_path(spec.key()).parent.mkdir(parents=True)
    attractor.cache_path(spec.key()).write_text("{}")
    assert "calibration" not in dict(estimate_wall(config, size).parts)
    # Rates measured on engine calls of 2 requests: this study's calls batch more, so the time is a bound.
    small = RateSample()
    small.add("llm", engine, tokens=0, requests=0, seconds=0, calls=5)
    record_rates(small)
    assert size.llm_requests / 8 > 2 * 10 / 5  # requests per generation (one call) vs the 2 per call measured
    bound = estimate_wall(config, size)
    assert bound.upper_bound and bound.describe().startswith("at most ~"), bound.describe()
    assert "smaller engine batches" in bound.describe()
    other = config.model_copy(update={"llm": config.llm.model_copy(update={"engine": config.llm.engine.model_copy(
        update={"max_num_seqs": 7})})})  # fmt: skip
    unknown = estimate_wall(other, size_study(other))
    assert unknown.seconds is None and "not measured on this machine yet: engine start of" in unknown.describe()


def load_corpus_texts(config: StudyConfig) -> list[str]:
    from culturesim.parts.corpus import load_corpus

    return load_corpus(config.corpus)["text"].to_list()


def test_a_session_measures_rates_from_its_own_work() -> None:
    """Throughput accumulates over sessions: a session's rates come from what it added; requests the
    log answered are not the engine's; the simulation gets the wall time nothing else took."""
    from culturesim.study.rates import session_sample

    config = _llm_study()
    before = {"llm_tokens": 100, "llm_seconds": 10.0, "llm_requests": 40, "llm_attempts": 40, "llm_from_log": 0,
              "llm_calls": 4, "embedded_texts": 10, "embed_seconds": 1.0, "wall_seconds": 30.0}  # fmt: skip
    after = {"llm_tokens": 400, "llm_seconds": 40.0, "llm_requests": 120, "llm_attempts": 80 + 40, "llm_from_log": 20,
             "llm_calls": 10, "embedded_texts": 60, "embed_seconds": 2.0, "wall_seconds": 130.0}  # fmt: skip
    starts = [{"engine": "vllm/m#1", "started": "2026-01-01T00:00:00+00:00", "ready": "2026-01-01T00:00:25+00:00"}]
    calibrations = [{"spec": {"engine": "vllm/m#1", "generations": 3}, "requests": 12, "seconds": 6.0}]
    sample = session_sample(before, after, config=config, done={"c0-r0"}, starts=starts, calibrations=calibrations)
    llm = sample.totals["llm"]["vllm/m#1"]
    assert llm["tokens"] == 300 and llm["seconds"] == 30.0 and llm["calls"] == 6
    assert llm["requests"] == pytest.approx(80 * 60 / 80)  # 60 of the 80 attempts went to the engine
    assert sample.totals["engine_start"]["vllm/m#1"] == {"starts": 1, "seconds": 25.0}
    assert sample.totals["calibration"]["vllm/m#1"] == {"requests": 12, "seconds": 6.0, "calls": 3}
    assert sample.totals["embedding"][config.embedding.model] == {"texts": 50, "seconds": 1.0}
    simulation = sample.totals["simulation"]["all"]
    assert simulation["agent_generations"] == 1 * 20 * 8  # the run finished before is not this session's
    assert simulation["seconds"] == pytest.approx(100 - 30 - 1 - 25 - 6)


def test_a_finished_run_records_this_machines_rates(embedder, monkeypatch, tmp_path: Path) -> None:
    from culturesim.core.settings import CACHE_ENV
    from culturesim.study.rates import estimate_wall, machine_rates

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    config = study(study={"seed": 99}, population={"size": 40}, humans={"copy_error": 0.3})
    assert estimate_wall(config, size_study(config)).seconds is None
    StudyRunner(embedder=embedder).run(config, out_root=tmp_path / "results")
    rates = machine_rates()
    assert rates["sessions"] == 1 and rates["simulation"]["all"]["agent_generations"] == 2 * 40 * 8
    assert rates["embedding"][config.embedding.model]["texts_per_second"] > 0
    estimate = estimate_wall(config, size_study(config))
    assert estimate.seconds is not None and estimate.seconds > 0, estimate
