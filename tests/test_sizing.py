"""Sizing a study before it runs: counts against a real run and hand-computed formulas, speed, disk check."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from culturesim.schema.config import ConfigError, StudyConfig, load_config
from culturesim.study.planner import plan_study
from culturesim.study.runner import StudyRunner
from culturesim.study.sizing import MEAN_TEXT_BYTES, StudySize, check_disk, human_bytes, plan_table


def sized(config: StudyConfig) -> StudySize:
    """The sizes of `config`'s plan (the planner is the one caller of `size_study`)."""
    return plan_study(config).size


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
    size = sized(human_only())
    assert size.runs == 2 and size.generations == 8 and size.agent_generations == 2 * 60 * 8
    for name in ("metrics", "population", "generations"):
        assert size.table(name).rows == pl.read_parquet(real_run / f"{name}.parquet").height, name
    real_traits = pl.read_parquet(real_run / "traits.parquet").height
    assert abs(size.table("traits").rows - real_traits) <= 0.25 * real_traits
    assert size.llm_requests == size.llm_requests_max == 0


def test_bytes_are_near_a_real_run(real_run: Path) -> None:
    """Each run table's estimate (one copy, per-run files) within a factor 2 of the real files."""
    size = sized(human_only())
    for name in ("metrics", "traits", "population", "generations"):
        real = sum(p.stat().st_size for p in (real_run / "runs").glob(f"*/{name}.parquet"))
        assert real / 2 <= size.table(name).bytes <= 2 * real, (name, size.table(name).bytes, real)


def test_rows_follow_the_formulas() -> None:
    size = sized(human_only())
    keys = 14  # 9 single-key default metrics + lexical_diversity's 3 keys + llm_failures, pool_size
    assert size.table("metrics").rows == 2 * 9 * keys
    assert size.table("population").rows == 2 * 9 * 60
    # 120 seeds + 2 runs x 8 generations x 30 learners x (0.05 + 0.95 x 0.2) = 120 + 115.2
    assert size.table("traits").rows == 235
    assert size.table("vectors").rows == 235
    # 10 shared seed texts per run; default rates: 16 x 30 x (0.02 + 0.98 x 0.05) = 33.12 new variants.
    shared = sized(study(population={"size": 60}, corpus={"initial_variants": 10}))
    assert shared.table("traits").rows == 20 + 33
    unsaved = sized(study(population={"size": 60}, study={"save_population": False}))
    assert unsaved.table("population").rows == 0


def test_llm_requests_follow_the_formula() -> None:
    config = study(
        study={"replicates": 3, "generations": 10},
        population={"size": 60, "llm_share": 0.25},
        humans={"llm_consultation": 0.1},
        llm={"prompt": {"retries": 2}},
    )
    size = sized(config)
    # 15 LLM agents; 45 humans x turnover 0.5 = 22.5 learners, rounded half to even as the model does
    # (22), 10 % of whom consult: (15 + 2.2) requests x 10 generations x 3 runs.
    assert size.llm_requests == 516
    assert size.llm_requests_max == 516 * 3
    assert size.table("generations").rows == 516 and size.table("log").rows == 1548
    assert size.table("log").bytes == 1548 * 1024
    # The same with a condition without LLM agents: 30 learners, 3 consult per generation.
    grid = config.model_copy(update={"conditions": {"population.llm_share": [0.0, 0.25]}})
    assert sized(grid).llm_requests == 3 * 10 * 3 + 516
    assert sized(grid).runs == 6


def test_calibration_requests_count_each_distinct_calibration_once(monkeypatch, tmp_path: Path) -> None:
    """20 chains x 10 generations by default; a control shares its treatment's calibration; a
    condition over the temperature needs a second one; a human-only study needs none, and neither
    does one whose calibration ships with the package or is in the cache."""
    from culturesim.calibration import attractor
    from culturesim.calibration.shipped import default_spec, shipped_record
    from culturesim.core.settings import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))  # an empty cache: nothing calibrated before

    shares = study(population={"size": 20}, llm={"sampling": {"max_tokens": 40}},
                   conditions={"population.llm_share": [0.0, 0.25]})  # fmt: skip
    assert sized(shares).calibration_requests == 200
    defaults = study(population={"size": 20}, conditions={"population.llm_share": [0.0, 0.25]})
    shipped = shipped_record(default_spec("rewrite")) is not None
    assert sized(defaults).calibration_requests == (0 if shipped else 200)
    temperatures = study(population={"size": 20, "llm_share": 0.25},
                         conditions={"llm.sampling.temperature": [0.5, 0.8]},
                         attractor={"chains": 4, "generations": 3})  # fmt: skip
    assert sized(temperatures).calibration_requests == 2 * 12
    assert sized(study(population={"size": 20})).calibration_requests == 0
    first = plan_study(temperatures).calibrations[0]
    assert [c.source for c in plan_study(temperatures).calibrations] == ["calibrated", "calibrated"]
    attractor.cache_path(first.spec.key()).parent.mkdir(parents=True)
    attractor.cache_path(first.spec.key()).write_text("{}")
    assert [c.source for c in plan_study(temperatures).calibrations] == ["cache", "calibrated"]
    assert sized(temperatures).calibration_requests == 12


def test_conditions_sum_agent_generations() -> None:
    config = study(conditions={"population.size": [40, 60]})
    assert sized(config).agent_generations == 2 * 8 * (40 + 60)
    assert sized(config).table("population").rows == 2 * 9 * (40 + 60)


def test_a_huge_study_sizes_at_once_and_is_refused(tmp_path: Path) -> None:
    config = study(study={"replicates": 10_000, "generations": 100_000}, population={"size": 10_000_000})
    start = time.perf_counter()
    size = sized(config)
    assert time.perf_counter() - start < 0.2
    assert size.table("population").rows == 10_000 * 100_001 * 10_000_000
    assert size.agent_generations == 10_000 * 100_000 * 10_000_000
    with pytest.raises(ConfigError) as refused:
        check_disk(size, tmp_path / "not" / "yet")
    message = str(refused.value)
    assert human_bytes(size.total_bytes) in message and "save_population" in message
    assert f"but {tmp_path} has" in message and "--out" in message
    unsaved = sized(config.model_copy(update={"study": config.study.model_copy(update={"save_population": False})}))
    with pytest.raises(ConfigError, match="population.size or choose another --out") as refused:
        check_disk(unsaved, tmp_path)
    assert "save_population" not in str(refused.value)


def test_a_small_study_fits(tmp_path: Path) -> None:
    size = sized(human_only())
    assert 10_000 < size.total_bytes < 1_000_000
    check_disk(size, tmp_path / "results" / "not-yet")


def test_plan_table_shows_counts_with_separators() -> None:
    size = sized(study(study={"replicates": 1000}, population={"size": 60, "llm_share": 0.5}))
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
    from culturesim.calibration import attractor
    from culturesim.core.settings import CACHE_ENV
    from culturesim.parts.engine_identity import EngineIdentity
    from culturesim.study.rates import RateSample, batch_speedup, llm_key, machine_rates, record_rates

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    config = _llm_study()
    first = plan_study(config)
    size = first.size
    assert first.estimate.seconds is None and first.estimate.describe().startswith(
        "unknown (no rates measured here yet"
    )
    console = Console(record=True, width=200)
    console.print(plan_table(size, wall_time=first.estimate.describe()))
    assert "estimated wall time on this machine: unknown" in console.export_text()

    engine = EngineIdentity.of(config.llm.engine).key()
    sample = RateSample()
    per_call = size.llm_requests / config.study.generations  # lockstep: one engine call per generation
    sample.add("llm", llm_key(engine, "text"), tokens=300, requests=per_call, seconds=per_call * 2, calls=1)
    sample.add("engine_start", engine, starts=1, seconds=40)
    sample.add("calibration", engine, requests=8, seconds=16, calls=2)  # 2 s/request at 4 requests per call
    sample.add("embedding", config.embedding.model, texts=100, seconds=2)  # 50 texts/s
    sample.add("simulation", "all", agent_generations=1000, seconds=1)
    record_rates(sample)
    known_plan = plan_study(config)
    known, [calibration_plan] = known_plan.estimate, known_plan.calibrations
    expected = {
        "engine start": 40,
        "calibration": 4 * 3 * 2,  # measured at the calibration's own 4 chains per call
        "LLM": size.llm_requests / 0.5,  # measured at this study's own call size
        "uncached embedding": size.table("vectors").rows / 50,
        "simulation": size.agent_generations / 1000,
    }
    assert dict(known.parts) == pytest.approx(expected)
    assert known.seconds == pytest.approx(sum(expected.values()))
    assert known.describe().startswith("~") and "rates of 1 run here" in known.describe()
    console = Console(record=True, width=200)
    console.print(plan_table(size, wall_time=known.describe()))
    assert f"estimated wall time on this machine: {known.describe()}" in console.export_text()

    # Without calibration rates, a calibration's chains are estimated from the engine's text rate, said so.
    no_calibrations = {k: v for k, v in machine_rates().items() if k != "calibration"}
    borrowed = plan_study(config, rates=no_calibrations).estimate
    chains = calibration_plan.spec.chains
    assert dict(borrowed.parts)["calibration"] == pytest.approx(4 * 3 / (0.5 * batch_speedup(per_call, chains)))
    assert "calibration not measured here yet" in borrowed.describe()
    # A cached calibration costs nothing.
    [calibration] = plan_study(config).calibrations
    attractor.cache_path(calibration.spec.key()).parent.mkdir(parents=True)
    attractor.cache_path(calibration.spec.key()).write_text("{}")
    assert "calibration" not in dict(plan_study(config).estimate.parts)
    # LLM rates measured on smaller engine calls are carried to this study's call size by the batch model.
    small = RateSample()
    small.add("llm", llm_key(engine, "text"), tokens=0, requests=0, seconds=0, calls=5 * per_call - 1)
    record_rates(small)
    measured_per_call = per_call / (5 * per_call)  # the totals now hold 5 x more calls for the same requests
    faster = dict(plan_study(config).estimate.parts)["LLM"]
    assert faster == pytest.approx(size.llm_requests / (0.5 * batch_speedup(measured_per_call, per_call)))
    assert faster < size.llm_requests / 0.5
    # An engine never measured here makes the estimate unknown.
    other = config.model_copy(update={"llm": config.llm.model_copy(update={"engine": config.llm.engine.model_copy(
        update={"max_num_seqs": 7})})})  # fmt: skip
    unknown = plan_study(other).estimate
    assert unknown.seconds is None and "not measured on this machine yet: engine start of" in unknown.describe()


def test_the_batch_model_fits_the_measured_vllm_batch_scan() -> None:
    """r(b) = R b / (b + K) with the shipped K against the float32 vLLM batch scan on a 2-core CPU
    (shared design notes: 21, 137, 199, 224, 235 tokens/s at 1, 16, 64, 128, 256 requests per call):
    the speed-up from 16 to b is predicted within 10 % at every measured size above 1 request."""
    from culturesim.study.rates import batch_speedup

    scan = {1: 21, 16: 137, 64: 199, 128: 224, 256: 235}
    for b, tokens_per_second in scan.items():
        if b > 1:
            assert batch_speedup(16, b) == pytest.approx(tokens_per_second / scan[16], rel=0.10), b
    assert batch_speedup(64, 64) == 1 and batch_speedup(0, 64) == 1  # unknown measured size: no correction
    assert batch_speedup(8, 1000) < 1 + 12.8 / 8  # saturation: never more than (b_m + K) / b_m


def test_coordination_requests_borrow_the_text_rate_until_measured(monkeypatch, tmp_path: Path) -> None:
    """A coordination study on a machine that measured only text requests (the quickstart) gets an
    estimate from the text rate, and says so."""
    from culturesim.core.settings import CACHE_ENV
    from culturesim.parts.engine_identity import EngineIdentity
    from culturesim.study.rates import RateSample, llm_key, record_rates

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    config = load_config(Path(__file__).parent.parent / "studies" / "committed_minority.toml").toy()
    engine = EngineIdentity.of(config.llm.engine).key()
    sample = RateSample()
    sample.add("llm", llm_key(engine, "text"), tokens=300, requests=10, seconds=20, calls=1)
    sample.add("engine_start", engine, starts=1, seconds=40)
    sample.add("embedding", config.embedding.model, texts=100, seconds=2)
    sample.add("simulation", "all", agent_generations=1000, seconds=1)
    record_rates(sample)
    estimate = plan_study(config).estimate
    assert estimate.seconds is not None and "coordination requests not measured here yet" in estimate.describe()
    measured = RateSample()
    measured.add("llm", llm_key(engine, "coordination"), tokens=10, requests=10, seconds=5, calls=1)
    record_rates(measured)
    assert "not measured" not in plan_study(config).estimate.describe()


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
    plan = replace(plan_study(config), done=frozenset({"c0-r0"}))
    sample = session_sample(before, after, plan=plan, starts=starts, calibrations=calibrations)
    llm = sample.totals["llm"]["vllm/m#1 text"]
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
    from culturesim.study.rates import machine_rates

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    config = study(study={"seed": 99}, population={"size": 40}, humans={"copy_error": 0.3})
    assert plan_study(config).estimate.seconds is None
    StudyRunner(embedder=embedder).run(config, out_root=tmp_path / "results")
    rates = machine_rates()
    assert rates["sessions"] == 1 and rates["simulation"]["all"]["agent_generations"] == 2 * 40 * 8
    assert rates["embedding"][config.embedding.model]["texts_per_second"] > 0
    estimate = plan_study(config).estimate
    assert estimate.seconds is not None and estimate.seconds > 0, estimate
