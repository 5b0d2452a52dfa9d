"""Scientific validation: culturesim against closed-form results of cultural-evolution theory.

Three checks against theory, each a plain function returning polars DataFrames (`format` prints
them, and the LLM chain reports of `culturesim.checks.chains` too):

1. `neutral`         unbiased copying with innovation (Wright–Fisher, infinite alleles) against the
                     equilibrium homozygosity and the Ewens sampling formula, run through the real
                     `CultureModel`.
2. `conformity`      culturesim's conformist exponent against the exact one-generation expectation
                     and Boyd & Richerson's D; `conformity_ordering` checks that anti-conformity keeps
                     more variants than neutral copying, which keeps more than conformity.
3. `network_effect`  a ring lattice keeps more diversity than a complete graph.

Human-only checks depend on trait ids only, never on what a text means, so they attach a constant
placeholder embedding (as the runner attaches real ones) unless an `Embedder` is passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from scipy import stats as sps

from culturesim.checks.chains import PEREZ_TASKS, ChainReport, RoleComparison
from culturesim.core.theory import (
    boyd_richerson_d,
    conformity_expected_next,
    ewens_expected_k,
    ewens_homozygosity,
    mean_mcse,
    wf_expected_k,
    wf_homozygosity,
)
from culturesim.parts.corpus import load_corpus
from culturesim.parts.learning import choose_models
from culturesim.schema.config import CorpusSection, StudyConfig
from culturesim.simulation import generation as gen
from culturesim.simulation.generation import Throughput
from culturesim.simulation.model import CultureModel, RunSpec, build_run

ROLE_NAMES = ", ".join(f"{task} = {role}" for role, task in PEREZ_TASKS.items())

if TYPE_CHECKING:  # torch is imported only where a real embedder is used
    from culturesim.parts.embed import Embedder

# ---------------------------------------------------------------------------------------------
# Driving the real model (human-only)
# ---------------------------------------------------------------------------------------------

METRICS = ("homozygosity", "distinct_traits")


def human_config(
    n_pop: int,
    mu: float,
    *,
    generations: int,
    network: str = "complete",
    degree: int = 4,
    bias: str = "unbiased",
    demonstrators: int = 1,
    conformity: float = 1.0,
    seed: int = 0,
) -> StudyConfig:
    """A human-only Wright–Fisher study (turnover 1, no copying error, llm_share 0)."""
    return StudyConfig.model_validate(
        {
            "study": {"name": "validate", "seed": seed, "replicates": 1, "generations": generations,
                      "save_population": False},
            "population": {"size": n_pop, "llm_share": 0.0, "turnover": 1.0},
            "network": {"kind": network, "degree": degree},
            "humans": {"bias": bias, "demonstrators": demonstrators, "conformity": conformity,
                       "copy_error": 0.0, "innovation": mu, "llm_consultation": 0.0},
            "metrics": {"names": list(METRICS)},
        }
    )  # fmt: skip


@cache
def _builtin_corpus() -> tuple[str, ...]:
    return tuple(load_corpus(CorpusSection())["text"].to_list())


class _PlaceholderVectors:
    """A constant unit vector for every text: the theory checks count identical traits, never meaning."""

    dim = 1
    encoded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.ones((len(texts), 1), dtype=np.float32)

    def save(self) -> None:
        """Nothing is computed, so nothing is saved."""


@dataclass
class ValidationRun:
    """One human-only run advanced through `culturesim.simulation.generation`, as a study runs it."""

    model: CultureModel
    vectors: object
    generation: int = 0
    stats: Throughput = field(default_factory=Throughput)

    @property
    def traits(self) -> np.ndarray:
        return self.model.traits

    def advance(self) -> dict[str, float]:
        """One generation; returns its metrics. Human-only: no completion source, so an LLM request fails."""
        self.generation += 1
        gen.advance([self.model], self.generation, source=None, vectors=self.vectors, stats=self.stats)
        return _last_values(self.model, self.generation)


def _last_values(model: CultureModel, at: int) -> dict[str, float]:
    return {r["metric"]: r["value"] for r in model.records if r["generation"] == at}


def build_model(
    config: StudyConfig, *, replicate: int, study_seed: int, embedder: Embedder | None = None
) -> ValidationRun:
    """A run set up and recorded at generation 0, as a study's batch builds it."""
    vectors = embedder if embedder is not None else _PlaceholderVectors()
    model = build_run(
        config,
        RunSpec(f"validate-r{replicate}", "validate", replicate, study_seed),
        corpus=list(_builtin_corpus()),
        dim=vectors.dim,
    )
    run = ValidationRun(model, vectors)
    gen.start([model], vectors, run.stats)
    return run


def time_averages(
    config: StudyConfig,
    *,
    replicate: int,
    study_seed: int,
    burn_in: int,
    generations: int,
    sample_n: int | None = None,
    rng: np.random.Generator | None = None,
    embedder: Embedder | None = None,
) -> dict[str, float]:
    """Per-run time averages over `generations` generations after `burn_in`.

    homozygosity: pair homozygosity of two *distinct* agents, (N·Σp² − 1)/(N − 1), from the metric
    Σp² (which draws with replacement); distinct_traits: variants in the whole population;
    k_sample: distinct variants among `sample_n` agents drawn without replacement (needs `rng`).
    """
    if sample_n is not None and rng is None:
        raise ValueError("sample_n needs rng: the sample of agents is drawn from it")
    model = build_model(config, replicate=replicate, study_seed=study_seed, embedder=embedder)
    n_pop = config.population.size
    for _ in range(burn_in):
        model.advance()
    homozygosity = np.empty(generations)
    distinct = np.empty(generations)
    k_sample = np.full(generations, np.nan)
    for g in range(generations):
        values = model.advance()
        homozygosity[g] = (n_pop * values["homozygosity"] - 1.0) / (n_pop - 1.0)
        distinct[g] = values["distinct_traits"]
        if sample_n is not None:
            k_sample[g] = np.unique(model.traits[rng.choice(n_pop, size=sample_n, replace=False)]).size
    return {
        "homozygosity": float(homozygosity.mean()),
        "distinct_traits": float(distinct.mean()),
        "k_sample": float(k_sample.mean()),
    }


def _replicate_values(config: StudyConfig, *, replicates: int, study_seed: int, **kwargs) -> pl.DataFrame:
    """One row of time averages per independent replicate (each its own `run_streams`)."""
    rows = [time_averages(config, replicate=r, study_seed=study_seed, **kwargs) for r in range(replicates)]
    return pl.DataFrame(rows).with_row_index("replicate")


# ---------------------------------------------------------------------------------------------
# 1. Neutral model
# ---------------------------------------------------------------------------------------------


def neutral(
    grid: Sequence[tuple[int, float]],
    *,
    replicates: int = 20,
    generations: int = 600,
    burn_in: int | None = None,
    rng_seed: int = 0,
    sample_n: int = 10,
    embedder: Embedder | None = None,
) -> pl.DataFrame:
    """Unbiased copying + innovation on the real `CultureModel` against Wright–Fisher theory.

    Convention: a haploid population of N agents, every agent replaced each generation (turnover 1);
    each learner innovates with probability μ (a new trait id: infinite alleles, even when the corpus
    text repeats) or copies one of k = 1 demonstrator drawn uniformly from the other N−1 agents
    (complete network, copy_error 0, llm_share 0).

    Derivation. Two distinct learners are identical by descent iff neither innovates, (1−μ)², and
    either they copied the same model (probability c = 1/N; (N−2)/(N−1)² without self-copying) or two
    distinct models that were identical (probability F). Stationarity of F' = (1−μ)²[c + (1−c)F]
    gives F = (1−μ)²c/(1 − (1−μ)²(1−c)) ≈ c/(c + 2μ) = 1/(1 + θ), θ = 2Nμ, dropping O(μ², μ/N).
    In the same limit the genealogy of a sample of n is Kingman's coalescent (pairs merge at rate 1
    per N generations, lineages end at rate μ), whose infinite-alleles partition is Ewens's:
    E[K_n] = Σ_{i=0}^{n−1} θ/(θ+i). Self-exclusion only changes N to N_e = N + 1/(N−2), far below
    Monte Carlo error, so θ uses N; the exact discrete-generation values (`wf_homozygosity` with
    self-exclusion, `wf_expected_k`) are reported too, since at μ = 0.02 the O(μ) terms are not small.

    Per (N, μ): time-averaged pair homozygosity, distinct variants in a random sample of `sample_n`
    and in the whole population, after `burn_in` generations (default 6N: pair identity relaxes at
    rate ≈ 2μ + 1/N per generation, so a few N suffice). The Monte Carlo SE is across `replicates`
    independent runs (one time average each), never across correlated generations.
    Returns one row per (N, mu, quantity) with sim, mcse, theory (Ewens), z, theory_exact, z_exact.
    """
    rows = []
    for n_pop, mu in grid:
        burn = 6 * n_pop if burn_in is None else burn_in
        config = human_config(n_pop, mu, generations=burn + generations, seed=rng_seed)
        sample_rng = np.random.default_rng([rng_seed, n_pop, int(round(mu * 1e9))])
        values = _replicate_values(
            config, replicates=replicates, study_seed=rng_seed, burn_in=burn, generations=generations,
            sample_n=sample_n, rng=sample_rng, embedder=embedder,
        )  # fmt: skip
        theta = 2.0 * n_pop * mu
        theories = {
            "homozygosity": (1, ewens_homozygosity(theta), wf_homozygosity(n_pop, mu)),
            "k_sample": (sample_n, ewens_expected_k(sample_n, theta), wf_expected_k(sample_n, n_pop, mu)),
            "distinct_traits": (n_pop, ewens_expected_k(n_pop, theta), wf_expected_k(n_pop, n_pop, mu)),
        }
        for quantity, (n, theory, exact) in theories.items():
            sim, mcse = mean_mcse(values[quantity].to_numpy())
            rows.append(
                {"N": n_pop, "mu": mu, "theta": theta, "quantity": quantity, "n": n, "replicates": replicates,
                 "sim": sim, "mcse": mcse, "theory": theory, "z": (sim - theory) / mcse,
                 "theory_exact": exact, "z_exact": (sim - exact) / mcse}
            )  # fmt: skip
    return pl.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# 2. Conformity
# ---------------------------------------------------------------------------------------------


def conformity(
    strengths: Sequence[float],
    p_grid: Sequence[float],
    *,
    n: int = 20_000,
    k: int = 3,
    pool: int = 100,
    rng_seed: int = 0,
) -> pl.DataFrame:
    """One generation of conformist learning via `learning.choose_models` against its exact expectation.

    n learners each sample k demonstrators with replacement from a pool of `pool` agents of which
    round(p·pool) hold variant A (so demonstrators are i.i.d. Bernoulli(p): complete mixing with an
    exactly known frequency, without an n×n network) and choose one with weight n_j^(a−1). The
    simulated next frequency p' (share of learners choosing A) is compared with
    `conformity_expected_next`; mcse = sd(choice indicator)/√n. `D` is `boyd_richerson_d(a, k)`;
    `delta_br` = D·p(1−p)(2p−1), the Boyd–Richerson change (equal to delta_exact when k = 3).
    Returns one row per (a, p).
    """
    rng = np.random.default_rng(rng_seed)
    learners = np.arange(pool, pool + n)
    indptr = np.concatenate([np.zeros(pool, dtype=np.int64), np.arange(n + 1, dtype=np.int64) * pool])
    indices = np.tile(np.arange(pool, dtype=np.int64), n)
    embeddings = np.ones((2, 1), dtype=np.float32)
    prestige = np.ones(pool + n)
    rows = []
    for a in strengths:
        d = boyd_richerson_d(a, k)
        for p_target in p_grid:
            holders = int(round(p_target * pool))
            p = holders / pool
            traits = np.ones(pool + n, dtype=np.int64)  # 1 = variant B (learners' own trait is unused)
            traits[:holders] = 0  # 0 = variant A
            models = choose_models(
                learners, indptr=indptr, indices=indices, traits=traits, embeddings=embeddings, prestige=prestige,
                bias="conformist", k=k, rng=rng, conformity=a,
            )  # fmt: skip
            chose_a = traits[models] == 0
            sim, mcse = float(chose_a.mean()), float(chose_a.std(ddof=1) / np.sqrt(n))
            expected = float(conformity_expected_next(p, a, k))
            rows.append(
                {"a": a, "D": d, "p": p, "n": n, "sim": sim, "mcse": mcse, "expected": expected,
                 "z": (sim - expected) / mcse if mcse > 0 else float("nan"),
                 "delta_sim": sim - p, "delta_exact": expected - p, "delta_br": d * p * (1 - p) * (2 * p - 1)}
            )  # fmt: skip
    return pl.DataFrame(rows)


def one_sided(greater: np.ndarray, lesser: np.ndarray) -> dict[str, float]:
    """One-sided tests of H1 'first sample larger': Welch t (t, df, p) and Mann–Whitney U (U, p)."""
    greater, lesser = np.asarray(greater, dtype=float), np.asarray(lesser, dtype=float)
    welch = sps.ttest_ind(greater, lesser, equal_var=False, alternative="greater")
    mwu = sps.mannwhitneyu(greater, lesser, alternative="greater")
    return {
        "welch_t": float(welch.statistic),
        "welch_df": float(welch.df),
        "welch_p": float(welch.pvalue),
        "mwu_u": float(mwu.statistic),
        "mwu_p": float(mwu.pvalue),
    }


def _contrast_rows(label: str, arms: Mapping[str, np.ndarray], order: Sequence[str]) -> list[dict[str, object]]:
    """Rows 'order[i] > order[i+1]' for a metric, with arm means, MC SEs and one-sided tests."""
    rows = []
    for high, low in zip(order[:-1], order[1:], strict=True):
        mean_high, se_high = mean_mcse(arms[high])
        mean_low, se_low = mean_mcse(arms[low])
        rows.append(
            {"metric": label, "hypothesis": f"{high} > {low}", "mean_high": mean_high, "mcse_high": se_high,
             "mean_low": mean_low, "mcse_low": se_low, **one_sided(arms[high], arms[low])}
        )  # fmt: skip
    return rows


def _arm_seed(rng_seed: int, arm: int) -> int:
    """A distinct study seed per arm, so arms are independent samples (valid Welch / Mann–Whitney)."""
    return int(np.random.SeedSequence([rng_seed, arm]).generate_state(1)[0])


def conformity_ordering(
    strengths: Sequence[float] = (0.5, 1.0, 2.0),
    *,
    n: int = 100,
    mu: float = 0.02,
    k: int = 3,
    replicates: int = 8,
    generations: int = 200,
    burn_in: int = 200,
    rng_seed: int = 0,
) -> pl.DataFrame:
    """Anti-conformity (a < 1) keeps more variants than neutral (a = 1), which keeps more than conformity.

    Real `CultureModel` runs (complete network, conformist bias with k demonstrators, innovation μ,
    turnover 1), each reduced to its time-averaged number of distinct variants and 1 − homozygosity
    after burn-in; arms use independent seeds. One row per metric and adjacent pair of strengths
    (sorted ascending, so the hypothesis is always 'smaller a > larger a'), one-sided tests.
    """
    order = sorted(strengths)
    per_arm = {}
    for arm, a in enumerate(order):
        config = human_config(
            n, mu, generations=burn_in + generations, bias="conformist", demonstrators=k, conformity=a
        )
        per_arm[f"a={a:g}"] = _replicate_values(
            config, replicates=replicates, study_seed=_arm_seed(rng_seed, arm), burn_in=burn_in, generations=generations
        )
    labels = list(per_arm)
    rows = _contrast_rows("distinct_traits", {a: v["distinct_traits"].to_numpy() for a, v in per_arm.items()}, labels)
    rows += _contrast_rows(
        "1-homozygosity", {a: 1.0 - v["homozygosity"].to_numpy() for a, v in per_arm.items()}, labels
    )
    return pl.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# 3. Network structure
# ---------------------------------------------------------------------------------------------


def network_effect(
    *,
    n: int = 100,
    mu: float = 0.01,
    replicates: int = 8,
    generations: int = 300,
    burn_in: int = 300,
    degree: int = 4,
    rng_seed: int = 0,
) -> pl.DataFrame:
    """A ring lattice keeps more diversity than a complete graph with the same N and μ.

    Unbiased copying of one neighbour with innovation μ, turnover 1. On a ring a lineage moves
    ±1 or ±2 sites per generation (variance σ² = 2.5 sites² for degree 4), so two distant agents'
    lineages need ~N²/σ² generations to meet and are usually cut by innovation (rate 2μ) first:
    variants persist locally, while on the complete graph any two lineages meet at rate ~1/N.
    Degree 4 (±1, ±2) rather than 2, because with synchronous updating on a degree-2 ring two lineages at odd distance
    can never meet (parity), which would inflate the effect for a trivial reason.
    One row per metric ('distinct_traits', '1-homozygosity'): lattice vs complete, one-sided tests.
    """
    arms = {}
    for arm, kind in enumerate(("lattice", "complete")):
        config = human_config(n, mu, generations=burn_in + generations, network=kind, degree=degree)
        arms[kind] = _replicate_values(
            config, replicates=replicates, study_seed=_arm_seed(rng_seed, arm), burn_in=burn_in, generations=generations
        )
    order = ["lattice", "complete"]
    rows = _contrast_rows("distinct_traits", {a: v["distinct_traits"].to_numpy() for a, v in arms.items()}, order)
    rows += _contrast_rows("1-homozygosity", {a: 1.0 - v["homozygosity"].to_numpy() for a, v in arms.items()}, order)
    return pl.DataFrame(rows).with_columns(N=pl.lit(n), mu=pl.lit(mu), degree=pl.lit(degree))


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------


def format(result: pl.DataFrame | ChainReport | RoleComparison | object, *, float_precision: int = 4) -> str:  # noqa: A001
    """A validation result as text: tables in full (all rows and columns), a chain report section by section."""
    if isinstance(result, RoleComparison):
        wide = result.per_generation.pivot(
            on="task", index="generation", values=["diversity", "similarity_to_initial"], separator=": "
        )
        verdicts = "\n".join(
            f"- {'MET' if ok else 'NOT MET'}: {name}: {ev}"
            for name, ok, ev in result.findings.select("finding", "reproduces", "evidence").iter_rows()
        )
        table = format(wide, float_precision=float_precision)
        return f"per generation ({ROLE_NAMES})\n{table}\n\n{verdicts}"
    if isinstance(result, ChainReport):
        parts = [
            ("per generation", result.per_generation),
            ("attractor fits", result.fits),
            ("findings", result.findings.drop("evidence")),
        ]
        text = "\n\n".join(f"{title}\n{format(frame, float_precision=float_precision)}" for title, frame in parts)
        evidence = "\n".join(
            f"- {'REPRODUCES' if ok else 'does not reproduce'}: {name}: {ev}"
            for name, ok, ev in result.findings.select("finding", "reproduces", "evidence").iter_rows()
        )
        return f"{text}\n\n{evidence}"
    if isinstance(result, pl.DataFrame):
        with pl.Config(
            tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, fmt_str_lengths=120, float_precision=float_precision,
            tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
        ):  # fmt: skip
            return str(result)
    if is_dataclass(result):
        return "\n".join(f"{key}: {value}" for key, value in asdict(result).items())
    return str(result)
