"""Population-level culture metrics, computed from one run at one generation.

Every metric costs O(N) over agents plus O(distinct traits · d) or O(d²) over
embeddings: agents holding the same trait are handled as one weighted row, so
no N×d or N×N matrix is built (N can reach 1,000,000).
"""

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from culturesim.core.off_task import is_off_task
from culturesim.core.vocabulary import METRIC_NAMES, MULTI_KEY_METRICS

# Distinct-trait rows gathered per block for sums and covariances; memory ~ ROW_CHUNK·d floats.
ROW_CHUNK = 16_384
# Rows per block in the nearest-neighbour search of novelty; memory ~ chunk² floats.
NOVELTY_CHUNK = 1024

# Orders of `vendi_q`, in the order of its value names in vocabulary.MULTI_KEY_METRICS.
VENDI_ORDERS = (0.5, 2.0, float("inf"))

_PUNCTUATION = str.maketrans("", "", ".,;:!?\"'()")


@dataclass(frozen=True)
class MetricInput:
    """Everything a metric may read about one run at one generation."""

    # (N,) int64: trait id held by each agent
    traits: np.ndarray
    # (T, d) float32: unit-norm embedding per trait id (row = trait id)
    embeddings: np.ndarray
    # (T,) text per trait id
    texts: Sequence[str]
    # (T,) float64 in [0, 1]: machine share of each trait's lineage
    machine_ancestry: np.ndarray
    # (T,) bool: trait written by an LLM (an author kind in traits.MACHINE_KINDS)
    machine_authored: np.ndarray
    # (T,) int64: generation in which each trait was created (seed traits: 0)
    born: np.ndarray
    # current generation (0 = initial population)
    generation: int
    # (d,) float: mean embedding of the agents' traits at generation 0
    initial_centroid: np.ndarray
    # (d,) centroid the LLM pulls toward, or None if not calibrated
    attractor: np.ndarray | None = None
    # (N,) int community label per agent, or None
    communities: np.ndarray | None = None
    # name -> (d,) axis vector (e_pos - e_neg, not necessarily unit)
    norm_axes: Mapping[str, np.ndarray] = field(default_factory=dict)
    # trait id -> (words, word bigrams) of its text; a run passes one dict for all its generations,
    # so each text is tokenised once (texts never change), not once per generation
    word_cache: dict[int, tuple[list[str], list[tuple[str, str]]]] = field(default_factory=dict)

    @cached_property
    def held(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct trait ids held and how many agents hold each, computed once per generation
        however many metrics read them."""
        return held_traits(self.traits, len(self.embeddings))

    @cached_property
    def similarity_spectrum(self) -> np.ndarray:
        """Positive eigenvalues of K/N, K the agents' cosine-similarity matrix (they sum to 1):
        from the m×m Gram matrix of the m distinct traits held, or the d×d covariance when
        m > d (same nonzero spectrum); computed once per generation for every Vendi order."""
        ids, counts = self.held
        weights = counts / counts.sum()
        if len(ids) <= self.embeddings.shape[1]:
            scaled = _unit_rows(self.embeddings[ids]) * np.sqrt(weights)[:, None]
            return _positive_eigenvalues(scaled @ scaled.T)
        return _positive_eigenvalues(_weighted_covariance(self.embeddings, ids, weights))

    @cached_property
    def mean_embedding(self) -> np.ndarray:
        """(d,) mean of the agents' unit embeddings, computed once per generation."""
        return mean_embedding(self.traits, self.embeddings)


MetricFn = Callable[[MetricInput], dict[str, float]]
METRICS: dict[str, MetricFn] = {}


def register(name: str) -> Callable[[MetricFn], MetricFn]:
    """Add a metric to METRICS so runs can select it by name; the name must be in
    `culturesim.core.vocabulary.METRIC_NAMES`, the list study files are validated against."""

    def add(fn: MetricFn) -> MetricFn:
        if name not in METRIC_NAMES:
            raise ValueError(f"metric {name!r} is not in culturesim.core.vocabulary.METRIC_NAMES; add it there")
        if name in METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        METRICS[name] = fn
        return fn

    return add


def available_metrics() -> list[str]:
    """Registered metric names, sorted."""
    return sorted(METRICS)


ATTRACTOR_METRIC = "attractor_distance"


def metric_names(names: Sequence[str], *, attractor: bool) -> tuple[str, ...]:
    """The metrics a run records: the study's, plus `attractor_distance` in every study with an LLM
    (where an attractor is calibrated), so no LLM study goes without it."""
    names = tuple(names)
    return names + (ATTRACTOR_METRIC,) if attractor and ATTRACTOR_METRIC not in names else names


def compute_metrics(names: Sequence[str], inp: MetricInput) -> dict[str, float]:
    """Run the named metrics and merge their values into one dict.

    An unknown name raises ValueError naming it and listing the available ones.
    """
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(
            f"unknown metric(s) {', '.join(map(repr, unknown))}; available: {', '.join(available_metrics())}"
        )
    values: dict[str, float] = {}
    for name in names:
        values.update(METRICS[name](inp))
    return values


# --- helpers -----------------------------------------------------------------


def held_traits(traits: np.ndarray, n_traits: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct trait ids held (sorted) and how many agents hold each; `n_traits` is the pool size.

    Working per distinct trait keeps embedding costs independent of N.
    """
    counts = np.bincount(traits, minlength=n_traits)
    ids = np.flatnonzero(counts > 0)  # a boolean scan: 3x faster than one over the integer counts
    return ids, counts[ids]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows rescaled to unit length in float64, so dot products are exact cosines."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _unit(v: np.ndarray) -> np.ndarray:
    """v rescaled to unit length; all-nan for a zero vector (no direction)."""
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else np.full_like(v, np.nan)


def _weighted_sum(embeddings: np.ndarray, ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ_i weights_i · unit(embeddings[ids_i]), (d,), gathered ROW_CHUNK rows at a time so that a
    million distinct traits never materialise as one float64 copy (3 GB at d = 384)."""
    total = np.zeros(embeddings.shape[1])
    for start in range(0, len(ids), ROW_CHUNK):
        total += weights[start : start + ROW_CHUNK] @ _unit_rows(embeddings[ids[start : start + ROW_CHUNK]])
    return total


def _weighted_covariance(embeddings: np.ndarray, ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ_i weights_i · x_i x_iᵀ over unit rows x_i, (d, d), in ROW_CHUNK-row blocks."""
    matrix = np.zeros((embeddings.shape[1], embeddings.shape[1]))
    for start in range(0, len(ids), ROW_CHUNK):
        rows = _unit_rows(embeddings[ids[start : start + ROW_CHUNK]])
        matrix += (rows * weights[start : start + ROW_CHUNK, None]).T @ rows
    return matrix


def mean_embedding(traits: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """(d,) float64 mean of the unit embeddings of the traits agents hold (`traits`: (N,) ids)."""
    ids, counts = held_traits(traits, len(embeddings))
    return _weighted_sum(embeddings, ids, counts.astype(np.float64)) / counts.sum()


def _mean_pairwise_distance(total: np.ndarray, n: int) -> float:
    """Mean cosine distance over pairs i≠j of n unit vectors summing to total.

    Σ_{i≠j} e_i·e_j = ‖Σ e_i‖² − n, which avoids the n×n similarity matrix.
    """
    if n < 2:
        return 0.0
    return float(1.0 - (total @ total - n) / (n * (n - 1)))


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, or 0.0 when there is nothing to divide by."""
    return float(numerator / denominator) if denominator else 0.0


def _words(text: str) -> list[str]:
    """Lowercased whitespace tokens with . , ; : ! ? " ' ( ) removed."""
    return text.translate(_PUNCTUATION).lower().split()


def vendi_score(rows: np.ndarray, weights: np.ndarray) -> float:
    """Vendi score of order 1: effective number of distinct directions, in [1, rank], from the
    m×m weighted Gram matrix.

    rows: (m, d) unit embeddings; weights: (m,) population shares summing to 1.
    A population with duplicates has the same nonzero spectrum of K/N as the
    weighted distinct rows; the d×d covariance (`_weighted_covariance`, used by the
    metric when m > d) shares it too.
    """
    scaled = rows * np.sqrt(weights)[:, None]
    return hill_number(_positive_eigenvalues(scaled @ scaled.T), 1.0)


def hill_number(shares: np.ndarray, q: float) -> float:
    """Effective number of order q of positive shares summing to 1 (Hill 1973):
    (Σ p^q)^(1/(1-q)); q = 1 is exp(Shannon entropy), q = inf is 1 / max p.
    Non-increasing in q; equal to k for every q when k shares are equal."""
    if q == 1.0:
        return float(np.exp(-np.sum(shares * np.log(shares))))
    if np.isinf(q):
        return float(1.0 / shares.max())
    return float(np.sum(shares**q) ** (1.0 / (1.0 - q)))


def _positive_eigenvalues(matrix: np.ndarray) -> np.ndarray:
    """The positive eigenvalues of a symmetric PSD matrix (round-off negatives dropped)."""
    eigenvalues = np.linalg.eigvalsh(matrix)
    return eigenvalues[eigenvalues > 0]


def nearest_distance(embeddings: np.ndarray, queries: np.ndarray, pool: np.ndarray, *, chunk: int) -> np.ndarray:
    """Cosine distance from each query trait id to its nearest pool trait id.

    Returns (len(queries),). Similarities are formed chunk×chunk at a time, so
    memory stays bounded however large the pool.
    """
    best = np.full(len(queries), -np.inf)
    for start in range(0, len(queries), chunk):
        block = _unit_rows(embeddings[queries[start : start + chunk]])
        for pool_start in range(0, len(pool), chunk):
            candidates = _unit_rows(embeddings[pool[pool_start : pool_start + chunk]])
            sims = (block @ candidates.T).max(axis=1)
            best[start : start + chunk] = np.maximum(best[start : start + chunk], sims)
    return 1.0 - best


# --- metrics -----------------------------------------------------------------


@register("semantic_diversity")
def semantic_diversity(inp: MetricInput) -> dict[str, float]:
    """Mean cosine distance between two different agents' texts (0 = all agree)."""
    ids, counts = inp.held
    total = _weighted_sum(inp.embeddings, ids, counts.astype(np.float64))
    return {"semantic_diversity": _mean_pairwise_distance(total, len(inp.traits))}


@register("vendi")
def vendi(inp: MetricInput) -> dict[str, float]:
    """Effective number of semantically distinct texts (1 = all identical)."""
    return {"vendi": hill_number(inp.similarity_spectrum, 1.0)}


@register("vendi_q")
def vendi_q(inp: MetricInput) -> dict[str, float]:
    """Vendi scores of orders 0.5, 2 and inf (Pasarkar & Dieng 2023): effective numbers of
    distinct texts that weigh rare directions more (q < 1) or only the dominant ones (q > 1).
    Each is in [1, rank] and they never increase with q; `vendi` is order 1."""
    spectrum = inp.similarity_spectrum
    return {key: hill_number(spectrum, q) for key, q in zip(MULTI_KEY_METRICS["vendi_q"], VENDI_ORDERS, strict=True)}


@register("distinct_traits")
def distinct_traits(inp: MetricInput) -> dict[str, float]:
    """Number of different trait ids held by at least one agent."""
    return {"distinct_traits": float(len(inp.held[0]))}


@register("trait_entropy")
def trait_entropy(inp: MetricInput) -> dict[str, float]:
    """Shannon entropy (nats) of trait-id frequencies among agents."""
    _, counts = inp.held
    p = counts / counts.sum()
    return {"trait_entropy": float(-np.sum(p * np.log(p)))}


@register("homozygosity")
def homozygosity(inp: MetricInput) -> dict[str, float]:
    """Probability that two agents drawn with replacement hold the same trait id."""
    _, counts = inp.held
    p = counts / counts.sum()
    return {"homozygosity": float(p @ p)}


@register("lexical_diversity")
def lexical_diversity(inp: MetricInput) -> dict[str, float]:
    """Distinct word uni-/bigrams per uni-/bigram, and mean words per agent text."""
    ids, counts = inp.held
    unigrams: set[str] = set()
    bigrams: set[tuple[str, str]] = set()
    n_unigrams = n_bigrams = 0
    cache = inp.word_cache
    for trait, count in zip(ids.tolist(), counts.tolist(), strict=True):
        if trait not in cache:
            words = _words(inp.texts[trait])
            cache[trait] = (words, list(itertools.pairwise(words)))
        words, pairs = cache[trait]
        unigrams.update(words)
        bigrams.update(pairs)
        n_unigrams += count * len(words)
        n_bigrams += count * len(pairs)
    return {
        "distinct_1": _ratio(len(unigrams), n_unigrams),
        "distinct_2": _ratio(len(bigrams), n_bigrams),
        "mean_length": _ratio(n_unigrams, len(inp.traits)),
    }


@register("centroid_drift")
def centroid_drift(inp: MetricInput) -> dict[str, float]:
    """Cosine distance of the mean agent embedding from its generation-0 position."""
    drift = 1.0 - _unit(inp.mean_embedding) @ _unit(inp.initial_centroid)
    return {"centroid_drift": float(drift)}


@register("attractor_distance")
def attractor_distance(inp: MetricInput) -> dict[str, float]:
    """Mean cosine distance of agents' texts to the (unit) LLM attractor, or nan."""
    if inp.attractor is None:
        return {"attractor_distance": float("nan")}
    distance = 1.0 - inp.mean_embedding @ _unit(inp.attractor)
    return {"attractor_distance": float(distance)}


@register("machine_ancestry")
def machine_ancestry(inp: MetricInput) -> dict[str, float]:
    """Mean machine share of the lineage of the traits agents hold, in [0, 1]."""
    return {"machine_ancestry": float(np.mean(inp.machine_ancestry[inp.traits]))}


@register("llm_trait_share")
def llm_trait_share(inp: MetricInput) -> dict[str, float]:
    """Share of agents holding a trait an LLM wrote, in [0, 1]."""
    return {"llm_trait_share": float(np.mean(inp.machine_authored[inp.traits]))}


@register("off_task")
def off_task(inp: MetricInput) -> dict[str, float]:
    """Share of agents holding a trait that is talk about the task, not a text (culturesim.core.off_task)."""
    ids, counts = inp.held
    flags = np.fromiter((is_off_task(inp.texts[i]) for i in ids), dtype=bool, count=len(ids))
    return {"off_task": float(counts[flags].sum() / counts.sum())}


@register("novelty")
def novelty(inp: MetricInput) -> dict[str, float]:
    """Mean cosine distance from traits born now to their nearest older trait."""
    new = np.flatnonzero(inp.born == inp.generation)
    old = np.flatnonzero(inp.born < inp.generation)
    if len(new) == 0 or len(old) == 0:
        return {"novelty": float("nan")}
    distances = nearest_distance(inp.embeddings, new, old, chunk=NOVELTY_CHUNK)
    return {"novelty": float(np.mean(distances))}


@register("norm_position")
def norm_position(inp: MetricInput) -> dict[str, float]:
    """Mean agent projection on each unit norm axis, in cosine units (> 0: positive)."""
    mean = inp.mean_embedding
    return {f"norm_position:{name}": float(mean @ _unit(axis)) for name, axis in inp.norm_axes.items()}


@register("community_divergence")
def community_divergence(inp: MetricInput) -> dict[str, float]:
    """Between-community centroid distance / mean within-community diversity.

    Dimensionless; larger means communities hold more distinct cultures.
    """
    undefined = {"community_divergence": float("nan")}
    if inp.communities is None:
        return undefined
    labels, community = np.unique(inp.communities, return_inverse=True)
    n_communities = len(labels)
    if n_communities < 2:
        return undefined
    # Distinct (community, trait) pairs, sorted by community: each community's
    # embedding sum is a count-weighted product over its distinct traits, so no
    # row per agent is ever built.
    n_traits = len(inp.embeddings)
    pairs, pair_counts = np.unique(community * n_traits + inp.traits, return_counts=True)
    pair_community, pair_trait = np.divmod(pairs, n_traits)
    bounds = np.searchsorted(pair_community, np.arange(n_communities + 1))
    sums = np.stack(
        [pair_counts[lo:hi] @ _unit_rows(inp.embeddings[pair_trait[lo:hi]]) for lo, hi in itertools.pairwise(bounds)]
    )
    sizes = np.bincount(community, minlength=n_communities)

    within = np.mean([_mean_pairwise_distance(total, n) for total, n in zip(sums, sizes, strict=True)])
    between = _mean_pairwise_distance(_unit_rows(sums).sum(axis=0), n_communities)
    if within == 0:
        return undefined
    return {"community_divergence": float(between / within)}
