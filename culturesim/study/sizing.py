"""Size a study before it runs: runs, agent-generations, LLM requests and bytes on disk.

A study file can ask for 10,000 replicates x 100,000 generations x 10,000,000 agents,
which would fill any disk long before it finished. Everything here is arithmetic on
the configuration, O(conditions), on Python ints (no floats lose rows, nothing is
allocated per agent), so a study of any size is sized in milliseconds.

Counts follow `culturesim.simulation.model.CultureModel` exactly where it is deterministic (LLM
agents, learners, recorded rows); where it draws at random (learning outcomes) they
are expected values, rounded once per condition. Isolated learners, who always copy,
are ignored: the estimate is then a slight upper bound on a sparse random network.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from culturesim.core.vocabulary import recorded_keys
from culturesim.parts.metrics import metric_names
from culturesim.schema.config import ConfigError, StudyConfig

# Bytes per row, per table, as written by polars (Parquet, zstd). Measured on synthetic tables
# of realistic shape (1M population rows, 50,000 traits from the built-in corpus, 20,000 requests).
METRICS_ROW_BYTES = 8  # the float64 value is incompressible; ids, generation and metric run-length encode (7.6)
POPULATION_ROW_BYTES = 3  # int64 trait ids barely change between generations; the rest encodes to ~0 (1.8-2.8)
# Distinct built-in corpus texts (mean 101 B of UTF-8) compress to 47 B; ids, lineage, generation and
# ancestry add ~15 B. A pool of copying errors (near-duplicates) measured 28 B, so this errs high.
TRAITS_ROW_BYTES = 64
# Prompt (200-400 characters, built from pool texts) + completion (~100) + a 64-hex request key +
# seed, tokens, model and engine; measured 128 B with corpus completions, fresh LLM text adds ~60.
GENERATIONS_ROW_BYTES = 192
# A JSON log entry, uncompressed: system prompt (~100 B) + user prompt (200-400) + completion (up to
# ~200 at 48 tokens) + metadata (key, seed, model, engine, timing, ~300).
LOG_ENTRY_BYTES = 1024
MEAN_TEXT_BYTES = 101  # mean UTF-8 length of the built-in corpus texts
PARQUET_FILE_BYTES = 1024  # footer and schema of one Parquet file (an empty one is 0.7-1.1 kB)
DEFAULT_EMBEDDING_DIM = 384  # the built-in all-MiniLM-L6-v2; other models are not loaded to ask
FLOAT32_BYTES = 4
RUN_TABLES = ("metrics", "traits", "population", "generations")  # kept per run and combined: stored twice
_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB")


@dataclass(frozen=True)
class TableSize:
    """One output table: `rows` (count), `bytes` (one copy, estimated) and how many `copies` are kept."""

    name: str
    rows: int
    bytes: int
    copies: int = 1

    @property
    def disk_bytes(self) -> int:
        """Bytes of all copies together."""
        return self.bytes * self.copies


@dataclass(frozen=True)
class StudySize:
    """What a study will produce: counts (ints) and tables, for a plan and a disk check."""

    study: str
    runs: int
    generations: int  # per run
    agent_generations: int  # sum over runs of agents x generations
    llm_requests: int  # expected first attempts over the whole study
    llm_requests_max: int  # first attempts plus every allowed retry
    tables: tuple[TableSize, ...]
    calibration_requests: int = 0  # first attempts of the attractor calibrations, on first use (then cached)
    condition_requests: tuple[int, ...] = ()  # expected first attempts per condition (grid order), for timing
    retrainings: int = 0  # LoRA trainings over the whole study (`[llm.retraining]`): one per run and retraining
    training_texts: int = (
        0  # texts trained on over the whole study, each epoch counted (what training time scales with)
    )

    @property
    def total_bytes(self) -> int:
        """Estimated bytes on disk of every table, counting copies."""
        return sum(t.disk_bytes for t in self.tables)

    def table(self, name: str) -> TableSize:
        """The table called `name` (KeyError naming the tables if there is none)."""
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"no table {name!r}; tables: {[t.name for t in self.tables]}")


def size_study(
    config: StudyConfig,
    *,
    corpora: Mapping[int, tuple[str, ...]],
    calibration_requests: int = 0,
    embedding_dim: int = DEFAULT_EMBEDDING_DIM,
) -> StudySize:
    """Counts and bytes of a whole study, summed over its conditions; `corpora`: each condition's corpus
    texts (grid order); `calibration_requests`: first attempts of the calibrations it will compute (the
    planner's, `culturesim.study.planner`); `embedding_dim` in floats."""
    replicates, generations = config.study.replicates, config.study.generations
    runs = agent_generations = metrics_rows = population_rows = retrainings = training_texts = adapter_bytes = 0
    traits_rows = requests = requests_max = run_vector_rows = new_texts = probe_total = Fraction(0)
    corpus_texts = 0
    by_condition: list[int] = []
    study_uses_llm = any(condition.uses_llm() for _, condition in config.condition_grid())
    study_retrains = config.retrains()
    for index, (_, condition) in enumerate(config.condition_grid()):
        population, humans = condition.population, condition.humans
        n = population.size
        n_llm = round(population.llm_share * n)  # as CultureModel.setup, banker's rounding included
        learners = round(population.turnover * (n - n_llm))  # as CultureModel.plan
        consult = Fraction(humans.llm_consultation)
        innovate = (1 - consult) * Fraction(humans.innovation)
        copies = (1 - consult) * (1 - Fraction(humans.innovation))
        err = copies * Fraction(humans.copy_error)
        mutate = copies * Fraction(humans.llm_mutation)
        run_generations = replicates * generations
        per_generation = n_llm + learners * (consult + mutate)
        names = metric_names(condition.metrics.names, attractor=study_uses_llm)
        retrains = study_retrains and condition.uses_llm()  # such a run records its model's values
        keys = len(recorded_keys(names, tuple(condition.metrics.norm_axes), retrains=retrains))
        if condition.study.interaction == "coordination":
            # One request per uncommitted LLM agent in a pair (all of them on a complete graph with an
            # even population; an upper bound elsewhere); the names are the only traits and texts.
            committed = round(condition.coordination.committed_fraction * n)
            per_generation = Fraction(min(n_llm, n - committed))
            keys = len(condition.recorded_keys())

        trainings, texts = retraining_work(condition)
        adapter_bytes += replicates * trainings * condition.llm.retraining.rank * ADAPTER_BYTES_PER_RANK
        retrainings += replicates * trainings
        training_texts += replicates * texts
        runs += replicates
        agent_generations += replicates * n * generations
        metrics_rows += replicates * (generations + 1) * keys
        if condition.study.save_population:
            population_rows += replicates * (generations + 1) * n
        probes = replicates * probe_requests(condition) if retrains else 0
        probe_total += probes
        requests += run_generations * per_generation + probes
        by_condition.append(round(run_generations * per_generation + probes))
        requests_max += (run_generations * per_generation + probes) * (1 + condition.llm.prompt.retries)
        # Every copying error, innovation and usable completion is a new variant; completions are
        # counted as all usable (an unusable one keeps the old trait), an upper bound.
        seeds = condition.corpus.initial_variants or n
        if condition.study.interaction == "coordination":
            names_count = len(condition.coordination.names)
            traits_rows += replicates * names_count
            run_vector_rows += replicates * names_count
            new_texts = max(new_texts, Fraction(names_count))  # the same names in every run
            continue
        traits_rows += replicates * seeds + run_generations * (learners * (err + innovate) + per_generation)
        # Distinct texts (one vector each): seeds and innovations are corpus draws, so at most the
        # corpus; copying errors and completions are new texts; plus the axes' pole sentences.
        corpus = len(corpora[index])
        poles = 2 * (len(condition.metrics.norm_axes) + (condition.humans.content_axis is not None))
        drawn = min(Fraction(corpus), seeds + generations * learners * innovate)
        new = generations * (learners * err + per_generation)
        run_vector_rows += replicates * (drawn + new + poles)
        new_texts += replicates * new + poles
        corpus_texts = max(corpus_texts, corpus)

    traits, first, most = round(traits_rows), round(requests), round(requests_max)
    vector_bytes = FLOAT32_BYTES * embedding_dim + MEAN_TEXT_BYTES
    combined_vectors = min(traits, round(corpus_texts + new_texts))
    vectors_on_disk = (min(traits, round(run_vector_rows)) + combined_vectors) * vector_bytes
    tables = (
        _run_table("metrics", metrics_rows, METRICS_ROW_BYTES, runs),
        _run_table("traits", traits, TRAITS_ROW_BYTES, runs),
        _run_table("population", population_rows, POPULATION_ROW_BYTES, runs),
        _run_table("generations", first - round(probe_total), GENERATIONS_ROW_BYTES, runs),  # agents' requests
        TableSize("log", most, most * LOG_ENTRY_BYTES),
        # Rows: distinct texts of the study (the combined table); bytes: each run's table plus that one.
        TableSize("vectors", combined_vectors, vectors_on_disk),
    )
    if retrainings:
        tables += (TableSize("adapters", retrainings, adapter_bytes),)
    return StudySize(
        config.study.name,
        runs,
        generations,
        agent_generations,
        first,
        most,
        tables,
        calibration_requests,
        tuple(by_condition),
        retrainings,
        training_texts,
    )


# Bytes of a LoRA adapter of the built-in model per unit of rank: float32 A and B matrices of the seven
# projections of its 30 layers, rank x (in + out) numbers each (10,176 per layer and unit of rank).
ADAPTER_BYTES_PER_RANK = 30 * 10_176 * 4


def retraining_work(condition: StudyConfig) -> tuple[int, int]:
    """One run's retrainings under `condition` and the texts they train on, each epoch counted: one
    retraining after every `every`-th generation but the last; under accumulate the k-th sees k draws."""
    settings = condition.llm.retraining
    if not settings.enabled or not condition.uses_llm():
        return 0, 0
    count = len(range(settings.every, condition.study.generations, settings.every))
    draws = sum(range(1, count + 1)) if settings.regime == "accumulate" else count
    return count, draws * settings.texts * settings.epochs


def probe_requests(condition: StudyConfig) -> int:
    """First attempts of one run's model probes (`culturesim.study.model_probe`): the base model's
    at generation 0 and one after each retraining, `probe_texts` chains of `probe_steps` requests."""
    settings = condition.llm.retraining
    return (1 + retraining_work(condition)[0]) * settings.probe_texts * settings.probe_steps


def _run_table(name: str, rows: int, row_bytes: int, runs: int) -> TableSize:
    """A table kept per run (one Parquet file each) and again combined: two copies."""
    return TableSize(name, rows, rows * row_bytes + runs * PARQUET_FILE_BYTES, copies=2)


def human_bytes(n: int) -> str:
    """`n` bytes in decimal units with one decimal, e.g. 1_234_000_000 -> '1.2 GB'."""
    value, unit = float(n), _UNITS[0]
    for unit in _UNITS:
        if value < 1000 or unit == _UNITS[-1]:
            break
        value /= 1000
    return f"{n:,} B" if unit == "B" else f"{value:,.1f} {unit}"


def plan_table(size: StudySize, *, wall_time: str | None = None) -> RenderableType:
    """A readable plan: runs, agent-generations, LLM requests, then rows and bytes per table, and
    under it `wall_time`, the estimated wall time (`culturesim.study.planner.StudyPlan.estimate`)."""
    table = Table(title=f"study {size.study}: {size.runs:,} runs x {size.generations:,} generations")
    table.add_column("")
    table.add_column("rows", justify="right")
    table.add_column("copies", justify="right")
    table.add_column("on disk", justify="right")
    table.add_row("runs", f"{size.runs:,}", "", "")
    table.add_row("agent-generations", f"{size.agent_generations:,}", "", "")
    table.add_row("LLM requests (first attempts)", f"{size.llm_requests:,}", "", "")
    table.add_row("LLM requests (with all retries)", f"{size.llm_requests_max:,}", "", "")
    table.add_row(
        "attractor calibration requests", f"{size.calibration_requests:,}", "", "", end_section=not size.retrainings
    )
    if size.retrainings:
        table.add_row("LoRA retrainings", f"{size.retrainings:,}", "", "")
        table.add_row("texts trained on (each epoch)", f"{size.training_texts:,}", "", "", end_section=True)
    for t in size.tables:
        table.add_row(t.name, f"{t.rows:,}", f"x{t.copies}", human_bytes(t.disk_bytes))
    table.add_section()
    table.add_row("total", "", "", human_bytes(size.total_bytes), style="bold")
    if wall_time is None:
        return table
    return Group(table, Text(f"estimated wall time on this machine: {wall_time}"))


def check_disk(size: StudySize, out_root: Path) -> None:
    """Refuse (ConfigError) a study whose tables would not fit in the free space under `out_root`.

    `out_root` need not exist yet: the free space is that of its nearest existing parent.
    """
    folder = Path(out_root).absolute()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if size.total_bytes <= free:
        return
    biggest = max(size.tables, key=lambda t: t.disk_bytes)
    fixes = "lower study.replicates, study.generations or population.size"
    if size.table("population").rows:
        fixes += ", set study.save_population = false"
    raise ConfigError(
        f"study {size.study!r} needs about {human_bytes(size.total_bytes)} for its tables "
        f"({biggest.name} {human_bytes(biggest.disk_bytes)}) but {folder} has {human_bytes(free)} free; "
        f"{fixes} or choose another --out"
    )
