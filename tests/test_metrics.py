import math

import numpy as np
import pytest

from culturesim.core.vocabulary import METRIC_NAMES
from culturesim.parts import metrics
from culturesim.parts.metrics import MetricInput, compute_metrics


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_input(embeddings, traits, **overrides) -> MetricInput:
    """A MetricInput with neutral defaults for everything the test does not set."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    traits = np.asarray(traits, dtype=np.int64)
    n_traits = len(embeddings)
    defaults = {
        "traits": traits,
        "embeddings": embeddings,
        "texts": [f"text {k}" for k in range(n_traits)],
        "machine_ancestry": np.zeros(n_traits),
        "machine_authored": np.zeros(n_traits, dtype=bool),
        "born": np.zeros(n_traits, dtype=np.int64),
        "generation": 0,
        "initial_centroid": embeddings[traits].mean(axis=0),
    }
    return MetricInput(**{**defaults, **overrides})


def value(name: str, inp: MetricInput) -> float:
    return metrics.METRICS[name](inp)[name]


# --- semantic diversity ------------------------------------------------------


def test_semantic_diversity_matches_brute_force_over_distinct_agents():
    rng = np.random.default_rng(0)
    emb = unit_rows(rng.normal(size=(5, 5)))
    traits = np.array([0, 1, 1, 2, 3, 3, 3])
    e = emb[traits].astype(np.float64)
    n = len(traits)
    brute = np.mean([1 - e[i] @ e[j] for i in range(n) for j in range(n) if i != j])
    assert value("semantic_diversity", make_input(emb, traits)) == pytest.approx(brute, abs=1e-6)


def test_semantic_diversity_extremes():
    emb = np.eye(3)
    assert value("semantic_diversity", make_input(emb, [1, 1, 1, 1])) == pytest.approx(0.0, abs=1e-12)
    assert value("semantic_diversity", make_input(emb, [0, 1])) == pytest.approx(1.0)
    assert value("semantic_diversity", make_input(emb, [2])) == 0.0


# --- vendi -------------------------------------------------------------------


def test_vendi_identical_is_one_and_orthogonal_counts_directions():
    emb = np.eye(5)
    assert value("vendi", make_input(emb, [2] * 10)) == pytest.approx(1.0)
    assert value("vendi", make_input(emb, [0, 1, 2])) == pytest.approx(3.0)
    # 10 agents over 5 orthogonal directions also goes through the d×d path.
    assert value("vendi", make_input(emb, [0, 1, 2, 3, 4] * 2)) == pytest.approx(5.0)


def test_vendi_covariance_path_equals_gram_path():
    """More distinct traits (20) than dimensions (4): the metric takes the d×d covariance path."""
    rng = np.random.default_rng(1)
    emb = unit_rows(rng.normal(size=(20, 4)))
    traits = np.repeat(np.arange(20), rng.integers(1, 5, size=20))
    counts = np.bincount(traits)
    via_gram = metrics.vendi_score(emb.astype(np.float64), counts / counts.sum())
    via_metric = value("vendi", make_input(emb, traits))
    assert via_metric == pytest.approx(via_gram, rel=1e-6)
    assert 1.0 < via_metric <= 4.0


def test_vendi_with_repeated_traits_equals_full_agent_gram():
    rng = np.random.default_rng(2)
    emb = unit_rows(rng.normal(size=(6, 3)))
    traits = np.array([0, 0, 0, 1, 2, 2, 3, 4, 5, 5, 5, 5])
    x = emb[traits].astype(np.float64)
    eig = np.clip(np.linalg.eigvalsh(x @ x.T / len(x)), 0, None)
    eig = eig[eig > 0]
    expected = math.exp(-np.sum(eig * np.log(eig)))
    assert value("vendi", make_input(emb, traits)) == pytest.approx(expected, rel=1e-5)


def vendi_q(inp: MetricInput) -> dict[str, float]:
    return metrics.METRICS["vendi_q"](inp)


def test_vendi_q_counts_equal_orthogonal_directions_at_every_order():
    emb = np.eye(4)
    for expected, traits in ((1.0, [2] * 6), (3.0, [0, 1, 2]), (4.0, [0, 1, 2, 3] * 3)):
        assert vendi_q(make_input(emb, traits)) == pytest.approx(
            dict.fromkeys(vendi_q(make_input(emb, traits)), expected)
        )


def test_vendi_q_of_two_orthogonal_texts_matches_hill_numbers():
    """Shares 1/4 and 3/4 of two orthogonal texts: the eigenvalues of K/N are the shares."""
    values = vendi_q(make_input(np.eye(2), [0, 1, 1, 1]))
    assert values["vendi_q0.5"] == pytest.approx((math.sqrt(0.25) + math.sqrt(0.75)) ** 2)
    assert values["vendi_q2"] == pytest.approx(1 / (0.25**2 + 0.75**2))
    assert values["vendi_qinf"] == pytest.approx(1 / 0.75)


def test_vendi_q_matches_the_full_agent_gram_and_never_rises_with_order():
    rng = np.random.default_rng(3)
    emb = unit_rows(rng.normal(size=(8, 5)))
    traits = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 6, 6, 7, 7, 7, 7])
    x = emb[traits].astype(np.float64)
    eig = np.linalg.eigvalsh(x @ x.T / len(x))
    eig = eig[eig > 1e-12]
    inp = make_input(emb, traits)
    values = vendi_q(inp)
    assert values["vendi_q0.5"] == pytest.approx(np.sum(np.sqrt(eig)) ** 2, rel=1e-5)
    assert values["vendi_q2"] == pytest.approx(1 / np.sum(eig**2), rel=1e-5)
    assert values["vendi_qinf"] == pytest.approx(1 / eig.max(), rel=1e-5)
    assert values["vendi_q0.5"] > value("vendi", inp) > values["vendi_q2"] > values["vendi_qinf"] >= 1.0


# --- trait frequencies -------------------------------------------------------


def test_trait_frequency_metrics_on_hand_example():
    inp = make_input(np.eye(4), [0, 0, 1, 2])
    assert value("homozygosity", inp) == pytest.approx(0.375)
    expected_entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert value("trait_entropy", inp) == pytest.approx(expected_entropy)
    assert value("distinct_traits", inp) == 3.0


# --- lexical diversity -------------------------------------------------------


def test_lexical_diversity_counts_each_agent_text():
    texts = ["The (cat) sat.", "the cat, ran!", "zebra unicorn never held"]
    inp = make_input(np.eye(3), [0, 0, 1], texts=texts)
    # agent words: [the cat sat] x2, [the cat ran]
    # -> 9 unigrams (4 distinct), 6 bigrams (3 distinct)
    result = metrics.METRICS["lexical_diversity"](inp)
    assert result == pytest.approx({"distinct_1": 4 / 9, "distinct_2": 3 / 6, "mean_length": 3.0})


def test_lexical_diversity_guards_empty_texts():
    inp = make_input(np.eye(2), [0, 1], texts=["?!", "..."])
    assert metrics.METRICS["lexical_diversity"](inp) == {
        "distinct_1": 0.0,
        "distinct_2": 0.0,
        "mean_length": 0.0,
    }


# --- drift and attractor -----------------------------------------------------


def test_centroid_drift():
    emb = np.eye(3)
    assert value("centroid_drift", make_input(emb, [0, 0])) == pytest.approx(0.0, abs=1e-12)
    moved = make_input(emb, [1, 1], initial_centroid=np.array([1.0, 0.0, 0.0]))
    assert value("centroid_drift", moved) == pytest.approx(1.0)
    zero = make_input(emb, [1], initial_centroid=np.zeros(3))
    assert math.isnan(value("centroid_drift", zero))


def test_attractor_distance():
    emb = np.eye(3)
    assert math.isnan(value("attractor_distance", make_input(emb, [0, 1])))
    # attractor is not unit-length: it must be normalised, giving distances 0 and 1
    inp = make_input(emb, [0, 1], attractor=np.array([2.0, 0.0, 0.0]))
    assert value("attractor_distance", inp) == pytest.approx(0.5)


# --- machine share -----------------------------------------------------------


def test_machine_ancestry_and_llm_trait_share():
    inp = make_input(
        np.eye(3),
        [1, 1, 1, 2],
        machine_ancestry=np.array([0.0, 0.5, 1.0]),
        machine_authored=np.array([False, True, False]),
    )
    assert value("machine_ancestry", inp) == pytest.approx((3 * 0.5 + 1.0) / 4)
    assert value("llm_trait_share", inp) == pytest.approx(0.75)


# --- novelty -----------------------------------------------------------------


def test_novelty_on_toy_pool():
    emb = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]]) / np.array([1, 1, math.sqrt(2), 1])[:, None]
    # newborns 2 and 3 are not held by any agent but still count
    inp = make_input(emb, [0, 1], born=np.array([0, 0, 1, 1]), generation=1)
    assert value("novelty", inp) == pytest.approx((1 - 1 / math.sqrt(2) + 1.0) / 2, abs=1e-6)


def test_novelty_nan_without_newborns_or_ancestors():
    emb = np.eye(3)
    assert math.isnan(value("novelty", make_input(emb, [0], born=np.array([0, 0, 0]), generation=1)))
    assert math.isnan(value("novelty", make_input(emb, [0], born=np.array([0, 0, 0]), generation=0)))


def test_nearest_distance_chunking_matches_single_block():
    rng = np.random.default_rng(3)
    emb = unit_rows(rng.normal(size=(50, 8)))
    queries, pool = np.arange(0, 17), np.arange(17, 50)
    sims = emb[queries].astype(np.float64) @ emb[pool].astype(np.float64).T
    brute = 1 - sims.max(axis=1)
    single = metrics.nearest_distance(emb, queries, pool, chunk=1000)
    chunked = metrics.nearest_distance(emb, queries, pool, chunk=3)
    np.testing.assert_allclose(chunked, single, atol=1e-12)
    np.testing.assert_allclose(single, brute, atol=1e-6)


def test_novelty_uses_chunk_constant(monkeypatch):
    rng = np.random.default_rng(4)
    emb = unit_rows(rng.normal(size=(40, 6)))
    inp = make_input(emb, [0], born=rng.integers(0, 3, size=40), generation=2)
    whole = value("novelty", inp)
    monkeypatch.setattr(metrics, "NOVELTY_CHUNK", 2)
    assert value("novelty", inp) == pytest.approx(whole, abs=1e-12)


# --- norms and communities ---------------------------------------------------


def test_norm_position_sign_and_scale():
    # trait 0 is the positive pole, trait 1 the negative pole
    emb = np.array([[1.0, 0.0], [0.0, 1.0]])
    axes = {"polite": emb[0] - emb[1]}
    positive = metrics.METRICS["norm_position"](make_input(emb, [0, 0, 0, 1], norm_axes=axes))
    assert positive == pytest.approx({"norm_position:polite": (3 - 1) / 4 / math.sqrt(2)})
    negative = metrics.METRICS["norm_position"](make_input(emb, [1, 1], norm_axes=axes))
    assert negative["norm_position:polite"] < 0
    assert metrics.METRICS["norm_position"](make_input(emb, [0])) == {}


def test_community_divergence_hand_value_with_arbitrary_labels():
    emb = np.eye(3)
    # community 7: e0, e1 (within 1, centroid along e0+e1)
    # community -3: e2, e2 (within 0, centroid e2) -> between 1, within mean 0.5
    inp = make_input(emb, [0, 1, 2, 2], communities=np.array([7, 7, -3, -3]))
    assert value("community_divergence", inp) == pytest.approx(1.0 / 0.5)


def test_community_divergence_separated_beats_mixed():
    rng = np.random.default_rng(5)
    emb = unit_rows(
        np.vstack(
            [
                [1, 0, 0] + 0.1 * rng.normal(size=(10, 3)),
                [0, 1, 0] + 0.1 * rng.normal(size=(10, 3)),
            ]
        )
    )
    traits = np.arange(20)
    separated = np.repeat([0, 1], 10)
    mixed = np.tile([0, 1], 10)
    d_sep = value("community_divergence", make_input(emb, traits, communities=separated))
    d_mix = value("community_divergence", make_input(emb, traits, communities=mixed))
    assert d_sep > 5 * d_mix


def test_community_divergence_nan_cases():
    emb = np.eye(2)
    assert math.isnan(value("community_divergence", make_input(emb, [0, 1])))
    one = make_input(emb, [0, 1], communities=np.array([4, 4]))
    assert math.isnan(value("community_divergence", one))


# --- registry ----------------------------------------------------------------


def test_compute_metrics_merges_keys():
    inp = make_input(np.eye(3), [0, 0, 1], texts=["a b", "c", "d"])
    result = compute_metrics(["distinct_traits", "lexical_diversity"], inp)
    assert set(result) == {"distinct_traits", "distinct_1", "distinct_2", "mean_length"}
    assert result["distinct_traits"] == 2.0


def test_compute_metrics_rejects_unknown_name():
    with pytest.raises(ValueError, match="bogus_metric") as err:
        compute_metrics(["vendi", "bogus_metric"], make_input(np.eye(2), [0]))
    assert "semantic_diversity" in str(err.value)


def test_available_metrics_is_sorted_registry():
    names = metrics.available_metrics()
    assert names == sorted(names)
    assert set(names) == {
        "semantic_diversity",
        "vendi",
        "vendi_q",
        "distinct_traits",
        "trait_entropy",
        "homozygosity",
        "lexical_diversity",
        "centroid_drift",
        "attractor_distance",
        "machine_ancestry",
        "llm_trait_share",
        "novelty",
        "off_task",
        "norm_position",
        "community_divergence",
    }


def test_study_vocabulary_is_the_registry():
    """Study files are validated against vocabulary.METRIC_NAMES (config sits below metrics): it is the registry."""
    assert metrics.available_metrics() == list(METRIC_NAMES)
    with pytest.raises(ValueError, match="METRIC_NAMES"):
        metrics.register("not_in_the_vocabulary")(lambda inp: {})


def test_chunked_sums_match_one_block(monkeypatch):
    """Sums and covariances gathered in blocks (bounded memory at 1M traits) equal one-block results."""
    import culturesim.parts.metrics as metrics

    rng = np.random.default_rng(5)
    emb = rng.normal(size=(900, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    traits = rng.integers(0, 900, size=3000)
    inp = make_input(emb, traits)
    whole = compute_metrics(["semantic_diversity", "vendi", "centroid_drift"], inp)
    monkeypatch.setattr(metrics, "ROW_CHUNK", 7)
    chunked = compute_metrics(["semantic_diversity", "vendi", "centroid_drift"], inp)
    for key, value in whole.items():
        assert chunked[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
