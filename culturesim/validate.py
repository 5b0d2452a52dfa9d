"""Scientific validation: culturesim against closed-form results of cultural-evolution theory.

Three checks against theory, each a plain function returning polars DataFrames (`format` prints
them, and the LLM chain reports of `culturesim.chains` too):

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

from culturesim import generation as gen
from culturesim.chains import PEREZ_TASKS, ChainReport, RoleComparison
from culturesim.config import CorpusSection, StudyConfig
from culturesim.corpus import load_corpus
from culturesim.generation import Throughput
from culturesim.learning import choose_models
from culturesim.model import CultureModel, RunSpec, build_run

ROLE_NAMES = ", ".join(f"{task} = {role}" for role, task in PEREZ_TASKS.items())

if TYPE_CHECKING:  # torch is imported only where a real embedder is used
    from culturesim.embed import Embedder

# ---------------------------------------------------------------------------------------------
# Theory
# ---------------------------------------------------------------------------------------------


def ewens_homozygosity(theta: float) -> float:
    """Equilibrium probability that two distinct genes are identical, F = 1/(1+θ) (diffusion limit)."""
    if theta < 0:
        raise ValueError(f"theta must be >= 0, got {theta}")
    return 1.0 / (1.0 + theta)


def ewens_expected_k(n: int, theta: float) -> float:
    """Ewens sampling formula: expected number of distinct variants in a sample of n,
    E[K_n] = Σ_{i=0}^{n−1} θ/(θ+i). θ → 0 gives 1, θ → ∞ gives n."""
    if n < 1 or theta < 0:
        raise ValueError(f"need n >= 1 and theta >= 0, got n={n}, theta={theta}")
    if theta == 0:
        return 1.0
    i = np.arange(n)
    return float(np.sum(theta / (theta + i)))


def wf_coalescence_probability(n_pop: int, *, exclude_self: bool = True) -> float:
    """Probability that two distinct learners copy the same model in one Wright–Fisher generation.

    Each learner copies one of the N−1 *others* on a complete network (no self-copying), so two
    learners i ≠ j share a model with probability Σ_{x≠i,j} 1/(N−1)² = (N−2)/(N−1)², i.e. an
    effective size N_e = (N−1)²/(N−2) = N + 1/(N−2): the correction is O(1/N²) relative.
    With self-copying allowed it is the textbook 1/N.
    """
    if n_pop < 2:
        raise ValueError(f"need a population of at least 2, got {n_pop}")
    return (n_pop - 2) / (n_pop - 1) ** 2 if exclude_self else 1.0 / n_pop


def wf_homozygosity(n_pop: int, mu: float, *, exclude_self: bool = True) -> float:
    """Exact stationary pair homozygosity of the discrete haploid Wright–Fisher infinite-alleles model.

    F' = (1−μ)²·[c + (1−c)·F] (both learners must not innovate; they either copy the same model,
    probability c, or two distinct models identical with probability F), so
    F* = (1−μ)²c / (1 − (1−μ)²(1−c)). With c = 1/N and dropping O(μ², μ/N) terms, F* = 1/(1+2Nμ).
    """
    c = wf_coalescence_probability(n_pop, exclude_self=exclude_self)
    keep = (1.0 - mu) ** 2
    return keep * c / (1.0 - keep * (1.0 - c))


def wf_expected_k(n: int, n_pop: int, mu: float) -> float:
    """Exact E[K_n] of the discrete Wright–Fisher infinite-alleles model at stationarity.

    Backward in time, each of m sampled lineages was an innovator with probability μ (its lineage
    ends: one distinct variant), otherwise it copied a model drawn uniformly from N; lineages that
    drew the same model merge (classical occupancy: r balls in N boxes). Every variant in the sample
    is exactly one such lineage end, so f(m) = E[K | m lineages] solves
    f(m) = mμ + Σ_d P(m → d) f(d), f(0) = 0, in increasing m. Self-copying is allowed here; the
    model's self-exclusion changes pair coalescence by a relative 1/(N−1)² (negligible).
    """
    if not 1 <= n <= n_pop:
        raise ValueError(f"need 1 <= n <= N, got n={n}, N={n_pop}")
    occupancy = _occupancy(n, n_pop)
    f = np.zeros(n + 1)
    for m in range(1, n + 1):
        b = np.arange(m + 1)
        transition = sps.binom.pmf(b, m, mu) @ occupancy[m - b]  # (n+1,) over distinct models d
        f[m] = (m * mu + transition[:m] @ f[:m]) / (1.0 - transition[m])
    return float(f[n])


def _occupancy(r_max: int, boxes: int) -> np.ndarray:
    """(r_max+1, r_max+1) P[r, d]: probability that r balls thrown uniformly into `boxes` fill d boxes."""
    p = np.zeros((r_max + 1, r_max + 1))
    p[0, 0] = 1.0
    d = np.arange(1, r_max + 1)
    for r in range(1, r_max + 1):
        p[r, 1:] = p[r - 1, 1:] * d / boxes + p[r - 1, :-1] * (boxes - d + 1) / boxes
    return p


def conformist_adoption(m: np.ndarray | int, k: int, a: float) -> np.ndarray:
    """Probability of adopting a variant held by m of k demonstrators when the rest hold one other:
    m^a / (m^a + (k−m)^a), with 0 for m = 0 and 1 for m = k (also when a = 0)."""
    m = np.asarray(m, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = m**a / (m**a + (k - m) ** a)
    return np.where(m <= 0, 0.0, np.where(m >= k, 1.0, share))


def conformity_expected_next(p: np.ndarray | float, a: float, k: int = 3) -> np.ndarray:
    """Exact expected frequency of a variant after one generation of conformist learning.

    Two variants at frequency p and 1−p, k demonstrators drawn with replacement, so the sample
    holds m ~ Binomial(k, p) of the focal variant: p' = Σ_m C(k,m) p^m (1−p)^{k−m} · g(m) with
    g = `conformist_adoption`. For k = 3, g(1) = 1/(1+2^a) = 1/3 − D/3, g(2) = 1 − g(1), and
    p' = p + D·p(1−p)(2p−1) exactly (Boyd & Richerson 1985), D = `boyd_richerson_d(a)`.
    """
    p = np.asarray(p, dtype=float)
    m = np.arange(k + 1)
    weights = sps.binom.pmf(m, k, p[..., None])
    return weights @ conformist_adoption(m, k, a)


def boyd_richerson_d(a: float, k: int = 3) -> float:
    """D-equivalent of exponent a: D = 2·d(Δp)/dp at p = 1/2 (the slope of the BR cubic there).

    For k = 3 the two rules coincide for every p and D = (2^a − 2)/(2^a + 1): a = 1 gives D = 0,
    a = 0 gives D = −1/2, a = 2 gives D = 1/3 and a → ∞ gives D → 1. For k ≠ 3 it is the local slope.
    """
    g = conformist_adoption(np.arange(k + 1), k, a)
    m = np.arange(k)
    slope = k * np.sum(sps.binom.pmf(m, k - 1, 0.5) * np.diff(g))  # derivative of E[p'] at p = 1/2
    return float(2.0 * (slope - 1.0))


def exponent_for_d(d: float) -> float:
    """Inverse of `boyd_richerson_d` for k = 3: a = log2((2 + D)/(1 − D)), D in (−1/2, 1)."""
    if not -0.5 < d < 1.0:
        raise ValueError(f"D must lie in (-1/2, 1) for k = 3, got {d}")
    return float(np.log2((2.0 + d) / (1.0 - d)))


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
    """One human-only run advanced through `culturesim.generation`, as a study runs it."""

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


def _mean_mcse(values: np.ndarray) -> tuple[float, float]:
    """Mean and Monte Carlo SE (sd of independent replicates / √R)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


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
            sim, mcse = _mean_mcse(values[quantity].to_numpy())
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
        mean_high, se_high = _mean_mcse(arms[high])
        mean_low, se_low = _mean_mcse(arms[low])
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
