"""Behavioural tests for culturesim.parts.learning: demonstrator sampling, biases, outcomes, copying errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from culturesim.core.vocabulary import BIASES
from culturesim.parts.learning import (
    CONSULT_LLM,
    COPY,
    COPY_ERROR,
    INNOVATE,
    LLM_MUTATION,
    choose_models,
    copy_with_error,
    corpus_vocabulary,
    demonstrator_weights,
    learning_outcomes,
    sample_demonstrators,
    weighted_choice,
)

N_LEARNERS = 20_000


def fan(n_learners: int, neighbour_traits: list[int], learner_trait: int = 0):
    """Learners 0..n_learners-1 all linked to the same neighbours (agents n_learners.., no links of their own).

    Returns indptr, indices, traits and the neighbour agent ids.
    """
    m = len(neighbour_traits)
    neighbours = np.arange(n_learners, n_learners + m)
    indptr = np.concatenate([np.arange(n_learners + 1) * m, np.full(m, n_learners * m)]).astype(np.int64)
    indices = np.tile(neighbours, n_learners).astype(np.int64)
    traits = np.concatenate([np.full(n_learners, learner_trait), neighbour_traits]).astype(np.int64)
    return indptr, indices, traits, neighbours


def one_hot(t: int, d: int) -> np.ndarray:
    return np.eye(t, d, dtype=np.float32)


def enumerate_rate(neighbour_values: list, k: int, weight_of, hit) -> float:
    """Exact P(chosen demonstrator is a hit) when k demonstrators are drawn uniformly with replacement."""
    total = 0.0
    for sample in itertools.product(neighbour_values, repeat=k):
        w = np.asarray(weight_of(sample), dtype=float)
        total += sum(w[j] for j, v in enumerate(sample) if hit(v)) / w.sum()
    return total / len(neighbour_values) ** k


def assert_rate(observed: float, p: float, n: int, n_se: float = 4.0) -> None:
    se = math.sqrt(p * (1 - p) / n)
    assert abs(observed - p) < n_se * se, (observed, p, se)


# --------------------------------------------------------------------------- sampling


def small_graph():
    """0-{1,2,3}, 3-{4}, agent 5 isolated; CSR, symmetric."""
    neighbours = {0: [1, 2, 3], 1: [0], 2: [0], 3: [0, 4], 4: [3], 5: []}
    indptr = np.cumsum([0] + [len(neighbours[i]) for i in range(6)]).astype(np.int64)
    indices = np.array([j for i in range(6) for j in neighbours[i]], dtype=np.int64)
    return indptr, indices, neighbours


def test_sample_demonstrators_returns_only_neighbours_and_minus_one_when_isolated():
    indptr, indices, neighbours = small_graph()
    learners = np.tile(np.arange(6), 50)
    demos = sample_demonstrators(learners, indptr=indptr, indices=indices, k=4, rng=np.random.default_rng(1))
    assert demos.shape == (learners.size, 4)
    for learner, row in zip(learners, demos):
        if neighbours[learner]:
            assert set(row.tolist()) <= set(neighbours[learner])
        else:
            assert (row == -1).all()


def test_sample_demonstrators_is_uniform_over_neighbours():
    indptr, indices, _, _ = fan(1, [0, 0, 0, 0])  # learner 0, neighbours 1..4
    demos = sample_demonstrators(
        np.zeros(10_000, dtype=np.int64), indptr=indptr, indices=indices, k=4, rng=np.random.default_rng(2)
    )
    counts = np.bincount(demos.ravel(), minlength=5)[1:]
    expected = demos.size / 4
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert counts.sum() == demos.size
    assert chi2 < 16.27  # chi-square, 3 dof, p = 0.001


def test_sample_demonstrators_with_no_edges_at_all():
    demos = sample_demonstrators(
        np.array([0, 1]),
        indptr=np.zeros(3, dtype=np.int64),
        indices=np.array([], dtype=np.int64),
        k=2,
        rng=np.random.default_rng(0),
    )
    assert (demos == -1).all()


# --------------------------------------------------------------------------- weighted draw


def test_weighted_choice_follows_weights_and_never_picks_zero_weight():
    weights = np.tile([0.0, 1.0, 3.0, 0.0], (N_LEARNERS, 1))
    chosen = weighted_choice(weights, rng=np.random.default_rng(3))
    assert set(np.unique(chosen).tolist()) == {1, 2}
    assert_rate((chosen == 2).mean(), 0.75, N_LEARNERS)


# --------------------------------------------------------------------------- conformity

A, B, C = 0, 1, 2
SAMPLE_TRAITS = [A, A, A, B, C]


@pytest.mark.parametrize("conformity, exact", [(1.0, 3 / 5), (3.0, 27 / 29), (0.0, 1 / 3)])
def test_conformity_on_a_fixed_sample_matches_exact_rate(conformity, exact):
    traits = np.array([0] + SAMPLE_TRAITS, dtype=np.int64)  # agent 0 learns from agents 1..5
    demonstrators = np.tile(np.arange(1, 6), (N_LEARNERS, 1))
    w = demonstrator_weights(
        np.zeros(N_LEARNERS, dtype=np.int64),
        demonstrators,
        traits=traits,
        embeddings=one_hot(3, 3),
        prestige=np.ones(6),
        bias="conformist",
        conformity=conformity,
    )
    chosen = demonstrators[np.arange(N_LEARNERS), weighted_choice(w, rng=np.random.default_rng(4))]
    assert_rate((traits[chosen] == A).mean(), exact, N_LEARNERS)


def majority_rate(bias: str, conformity: float = 1.0, seed: int = 5) -> float:
    indptr, indices, traits, _ = fan(N_LEARNERS, SAMPLE_TRAITS, learner_trait=B)
    models = choose_models(
        np.arange(N_LEARNERS),
        indptr=indptr,
        indices=indices,
        traits=traits,
        embeddings=one_hot(3, 3),
        prestige=np.ones(traits.size),
        bias=bias,
        k=5,
        conformity=conformity,
        rng=np.random.default_rng(seed),
    )
    return (traits[models] == A).mean()


def exact_majority_rate(conformity: float) -> float:
    def weight_of(sample):
        return [sample.count(t) ** (conformity - 1) for t in sample]

    return enumerate_rate(SAMPLE_TRAITS, 5, weight_of, lambda t: t == A)


def test_unbiased_copies_majority_in_proportion_to_its_frequency():
    assert_rate(majority_rate("unbiased"), 0.6, N_LEARNERS)


def test_conformist_copies_majority_more_than_unbiased():
    rate = majority_rate("conformist", conformity=3.0)
    assert rate > majority_rate("unbiased") + 0.1
    assert_rate(rate, exact_majority_rate(3.0), N_LEARNERS)


def test_anti_conformist_copies_majority_less_than_unbiased():
    rate = majority_rate("conformist", conformity=0.0)
    assert rate < majority_rate("unbiased") - 0.1
    assert_rate(rate, exact_majority_rate(0.0), N_LEARNERS)


def test_conformity_one_is_unbiased():
    assert_rate(majority_rate("conformist", conformity=1.0), 0.6, N_LEARNERS)


# --------------------------------------------------------------------------- prestige, content, similarity


def two_neighbour_rate(bias: str, *, embeddings, neighbour_traits, learner_trait=0, prestige=None, **knobs) -> float:
    """Rate at which learners copy the first of two neighbours, with k = 2."""
    indptr, indices, traits, neighbours = fan(N_LEARNERS, neighbour_traits, learner_trait)
    prestige = np.ones(traits.size) if prestige is None else prestige
    models = choose_models(
        np.arange(N_LEARNERS),
        indptr=indptr,
        indices=indices,
        traits=traits,
        embeddings=embeddings,
        prestige=prestige,
        bias=bias,
        k=2,
        rng=np.random.default_rng(6),
        **knobs,
    )
    assert set(np.unique(models).tolist()) <= set(neighbours.tolist())
    return (models == neighbours[0]).mean()


def exact_first_rate(w_first: float, w_second: float) -> float:
    """P(copy first neighbour) with k = 2: both sampled (1/4), or one of each (1/2) then weighted."""
    return 0.25 + 0.5 * w_first / (w_first + w_second)


def test_prestige_bias_chooses_high_prestige_neighbour_at_expected_rate():
    prestige = np.ones(N_LEARNERS + 2)
    prestige[N_LEARNERS] = 9.0
    rate = two_neighbour_rate("prestige", embeddings=one_hot(2, 2), neighbour_traits=[0, 1], prestige=prestige)
    assert_rate(rate, exact_first_rate(9, 1), N_LEARNERS)  # 0.7


def test_prestige_bias_on_a_fixed_sample():
    prestige = np.array([1.0, 9.0, 1.0, 1.0])
    demonstrators = np.tile([1, 2, 3], (N_LEARNERS, 1))
    w = demonstrator_weights(
        np.zeros(N_LEARNERS, dtype=np.int64),
        demonstrators,
        traits=np.zeros(4, dtype=np.int64),
        embeddings=one_hot(1, 2),
        prestige=prestige,
        bias="prestige",
    )
    chosen = demonstrators[np.arange(N_LEARNERS), weighted_choice(w, rng=np.random.default_rng(7))]
    assert_rate((chosen == 1).mean(), 9 / 11, N_LEARNERS)


@pytest.mark.parametrize("strength", [2.0, -2.0])
def test_content_bias_follows_sign_of_strength(strength):
    # Trait 0 projects 1 on the axis, trait 1 projects 0; the axis is deliberately not unit length.
    rate = two_neighbour_rate(
        "content",
        embeddings=one_hot(2, 3),
        neighbour_traits=[0, 1],
        content_axis=np.array([3.0, 0.0, 0.0]),
        content_strength=strength,
    )
    assert (rate > 0.5) == (strength > 0)
    assert_rate(rate, exact_first_rate(math.exp(strength), 1.0), N_LEARNERS)


def test_content_bias_is_numerically_safe_for_huge_strength():
    rate = two_neighbour_rate(
        "content",
        embeddings=one_hot(2, 3),
        neighbour_traits=[0, 1],
        content_axis=np.array([1.0, 0.0, 0.0]),
        content_strength=1e4,
    )
    assert_rate(rate, 0.75, N_LEARNERS)  # picks trait 0 whenever it is sampled


@pytest.mark.parametrize("strength", [3.0, -3.0])
def test_similarity_bias_favours_trait_close_to_learners_own(strength):
    embeddings = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0]], dtype=np.float32)  # learner, near, far
    rate = two_neighbour_rate(
        "similarity", embeddings=embeddings, neighbour_traits=[1, 2], learner_trait=0, similarity_strength=strength
    )
    assert (rate > 0.5) == (strength > 0)
    assert_rate(rate, exact_first_rate(math.exp(strength * 0.8), 1.0), N_LEARNERS)


def test_zero_strengths_are_unbiased():
    for bias, knobs in [("content", {"content_axis": np.ones(2)}), ("similarity", {})]:
        rate = two_neighbour_rate(bias, embeddings=one_hot(2, 2), neighbour_traits=[0, 1], **knobs)
        assert_rate(rate, 0.5, N_LEARNERS)


# --------------------------------------------------------------------------- choose_models plumbing


def choose(bias: str, seed: int, learners=None, **overrides):
    indptr, indices, neighbours = small_graph()
    kwargs = dict(
        indptr=indptr,
        indices=indices,
        traits=np.array([0, 1, 1, 2, 0, 1]),
        embeddings=one_hot(3, 3),
        prestige=np.arange(1.0, 7.0),
        bias=bias,
        k=3,
        content_axis=np.array([1.0, 0.0, 0.0]),
        content_strength=1.0,
        similarity_strength=1.0,
        conformity=2.0,
        rng=np.random.default_rng(seed),
    )
    kwargs.update(overrides)
    learners = np.tile(np.arange(6), 200) if learners is None else learners
    return learners, choose_models(learners, **kwargs), neighbours


@pytest.mark.parametrize("bias", BIASES)
def test_choose_models_copies_a_neighbour_and_isolated_get_minus_one(bias):
    learners, models, neighbours = choose(bias, seed=8)
    assert models.shape == learners.shape
    for learner, model in zip(learners, models):
        assert model in neighbours[learner] if neighbours[learner] else model == -1


@pytest.mark.parametrize("bias", BIASES)
def test_choose_models_is_reproducible_by_seed(bias):
    assert np.array_equal(choose(bias, seed=9)[1], choose(bias, seed=9)[1])
    assert not np.array_equal(choose(bias, seed=9)[1], choose(bias, seed=10)[1])


def test_choose_models_with_only_isolated_learners():
    _, models, _ = choose("conformist", seed=0, learners=np.array([5, 5]))
    assert models.tolist() == [-1, -1]


@pytest.mark.parametrize(
    "overrides, name",
    [
        ({"bias": "popular"}, "unbiased, conformist, prestige, content, similarity"),
        ({"k": 0}, "k"),
        ({"k": 2.5}, "k"),
        ({"bias": "conformist", "conformity": -1.0}, "conformity"),
        ({"bias": "content", "content_axis": None}, "content_axis"),
        ({"bias": "content", "content_axis": np.zeros(3)}, "content_axis"),
        ({"bias": "content", "content_axis": np.ones(4)}, "content_axis"),
        ({"content_strength": np.nan}, "content_strength"),
        ({"prestige": np.ones(5)}, "prestige"),
        ({"prestige": np.array([1.0, 0, 1, 1, 1, 1])}, "prestige"),
        ({"traits": np.array([0, 1, 1])}, "traits"),
        ({"traits": np.array([0, 1, 1, 7, 0, 1])}, "traits"),
        ({"embeddings": np.ones(3, dtype=np.float32)}, "embeddings"),
        ({"indptr": np.array([0, 3, 4, 5, 7, 8, 9])}, "indptr"),
        ({"indptr": np.array([0, 3, 4, 5, 7, 8, 7])}, "indptr"),
        ({"indices": np.array([1, 2, 3, 0, 0, 0, 4, 9])}, "indices"),
        ({"learners": np.array([0, 6])}, "learners"),
        ({"learners": np.array([[0, 1]])}, "learners"),
    ],
)
def test_choose_models_rejects_bad_inputs_naming_the_argument(overrides, name):
    overrides = dict(overrides)
    learners = overrides.pop("learners", None)
    with pytest.raises(ValueError, match=name):
        choose(overrides.pop("bias", "unbiased"), seed=0, learners=learners, **overrides)


# --------------------------------------------------------------------------- learning outcomes


def test_learning_outcome_frequencies_match_probabilities():
    rho, mu, eps, n = 0.1, 0.2, 0.3, 100_000
    outcomes = learning_outcomes(n, copy_error=eps, innovation=mu, llm_consultation=rho, rng=np.random.default_rng(11))
    assert outcomes.dtype == np.int8 and outcomes.shape == (n,)
    expected = {
        CONSULT_LLM: rho,
        INNOVATE: (1 - rho) * mu,
        COPY_ERROR: (1 - rho) * (1 - mu) * eps,
        COPY: (1 - rho) * (1 - mu) * (1 - eps),
    }
    assert sorted(expected) == [0, 1, 2, 3]
    for outcome, p in expected.items():
        assert_rate((outcomes == outcome).mean(), p, n)


@pytest.mark.parametrize(
    "rates, only",
    [
        ((0.0, 0.0, 0.0), COPY),
        ((1.0, 0.0, 0.0), COPY_ERROR),
        ((0.5, 1.0, 0.0), INNOVATE),
        ((0.5, 0.5, 1.0), CONSULT_LLM),
    ],
)
def test_learning_outcomes_at_extreme_rates(rates, only):
    eps, mu, rho = rates
    outcomes = learning_outcomes(
        1000, copy_error=eps, innovation=mu, llm_consultation=rho, rng=np.random.default_rng(0)
    )
    assert (outcomes == only).all()


def test_llm_mutation_takes_its_share_of_copies_beside_copy_error():
    n, eps, mu, rho, nu = 200_000, 0.1, 0.05, 0.2, 0.3
    rng_seed = 12
    outcomes = learning_outcomes(
        n, copy_error=eps, innovation=mu, llm_consultation=rho, llm_mutation=nu, rng=np.random.default_rng(rng_seed)
    )
    copies = (1 - rho) * (1 - mu)
    expected = {CONSULT_LLM: rho, INNOVATE: (1 - rho) * mu, COPY_ERROR: copies * eps, LLM_MUTATION: copies * nu,
                COPY: copies * (1 - eps - nu)}  # fmt: skip
    for outcome, p in expected.items():
        assert_rate((outcomes == outcome).mean(), p, n)


def test_llm_mutation_zero_draws_the_outcomes_drawn_before_it_existed():
    """Same uniform draws, same thresholds: a study without LLM mutation is unchanged by the option."""
    draws = np.random.default_rng(4).random(5000)
    rho, mu, eps = 0.1, 0.05, 0.2
    old = np.array([CONSULT_LLM, INNOVATE, COPY_ERROR, COPY])[
        np.searchsorted(np.cumsum([rho, (1 - rho) * mu, (1 - rho) * (1 - mu) * eps]), draws, side="right")
    ]
    new = learning_outcomes(5000, copy_error=eps, innovation=mu, llm_consultation=rho, rng=np.random.default_rng(4))
    assert (new == old).all()


def test_copy_error_and_llm_mutation_cannot_exceed_all_copies():
    with pytest.raises(ValueError, match="copy_error \\+ llm_mutation"):
        learning_outcomes(10, copy_error=0.6, innovation=0.0, llm_consultation=0.0, llm_mutation=0.5,
                          rng=np.random.default_rng(0))  # fmt: skip


@pytest.mark.parametrize("name", ["copy_error", "innovation", "llm_consultation", "llm_mutation"])
@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan")])
def test_learning_outcomes_rejects_rates_outside_unit_interval(name, bad):
    rates = dict(copy_error=0.1, innovation=0.1, llm_consultation=0.1, llm_mutation=0.1)
    rates[name] = bad
    with pytest.raises(ValueError, match=name):
        learning_outcomes(10, rng=np.random.default_rng(0), **rates)


def test_learning_outcomes_rejects_negative_n():
    with pytest.raises(ValueError, match="n must"):
        learning_outcomes(-1, copy_error=0.1, innovation=0.1, llm_consultation=0.1, rng=np.random.default_rng(0))


# --------------------------------------------------------------------------- copying errors

TEXTS = [
    "the quick brown fox jumps",
    "hello",
    "Rain falls softly.",
    "a a a",
    "two words",
    "Don't stop believing, friend!",
] * 50
VOCAB = ["ember", "lantern", "river", "stone"]


def test_copy_with_error_changes_every_text():
    copies = copy_with_error(TEXTS, rng=np.random.default_rng(12), vocabulary=VOCAB)
    assert len(copies) == len(TEXTS)
    assert all(copy != text for copy, text in zip(copies, TEXTS))


def test_copy_with_error_substitutes_only_vocabulary_words():
    copies = copy_with_error(TEXTS, rng=np.random.default_rng(13), vocabulary=VOCAB)
    for text, copy in zip(TEXTS, copies):
        new = set(copy.lower().replace(",", " ").replace(".", " ").replace("!", " ").split())
        old = set(text.lower().replace(",", " ").replace(".", " ").replace("!", " ").split())
        assert new - old <= set(VOCAB), (text, copy)
    assert all(copy in VOCAB for text, copy in zip(TEXTS, copies) if text == "hello")


def test_copy_with_error_uses_all_three_operations():
    copies = copy_with_error(TEXTS, rng=np.random.default_rng(14), vocabulary=VOCAB)
    long = [(t.split(), c.split()) for t, c in zip(TEXTS, copies) if t.startswith("the quick")]
    dropped = sum(len(c) == len(t) - 1 for t, c in long)
    swapped = sum(sorted(c) == sorted(t) for t, c in long)
    substituted = sum(len(set(c) & set(VOCAB)) == 1 for t, c in long)
    assert dropped + swapped + substituted == len(long)
    assert min(dropped, swapped, substituted) >= 5


def test_copy_with_error_keeps_punctuation_and_capital_on_substitution():
    copies = copy_with_error(["Rain."], rng=np.random.default_rng(0), vocabulary=["snow"])
    assert copies == ["Snow."]


def test_copy_with_error_is_reproducible_by_seed():
    first = copy_with_error(TEXTS, rng=np.random.default_rng(15), vocabulary=VOCAB)
    assert first == copy_with_error(TEXTS, rng=np.random.default_rng(15), vocabulary=VOCAB)
    assert first != copy_with_error(TEXTS, rng=np.random.default_rng(16), vocabulary=VOCAB)


def test_copy_with_error_avoids_no_op_substitution_and_leaves_unchangeable_texts():
    rng = np.random.default_rng(17)
    texts = ["stone"] * 10 + ["river"] * 10
    assert copy_with_error(texts, rng=rng, vocabulary=["stone", "river"]) == ["river"] * 10 + ["stone"] * 10
    assert copy_with_error(["stone", ""], rng=rng, vocabulary=["stone"]) == ["stone", ""]
    assert copy_with_error(["a a"], rng=rng, vocabulary=[]) == ["a"]


def test_corpus_vocabulary_counts_lowercase_words():
    texts = ["The cat's hat.", "the dog", "Cat's 3 dogs, the end", "x2 x2"]
    assert corpus_vocabulary(texts) == ["cat's", "the", "x"]
    assert corpus_vocabulary(texts, min_count=3) == ["the"]
    with pytest.raises(ValueError, match="min_count"):
        corpus_vocabulary(texts, min_count=0)


@pytest.mark.parametrize("largest", [2, 3, 7, 300, 2**20, 2**31, 2**33])
def test_uniform_below_draws_what_numpy_draws_and_leaves_the_same_state(largest):
    """Bit for bit against numpy's own bounded integers, bounds of 1 and huge bounds included,
    after an odd number of 32-bit draws (the generator keeps half a 64-bit word) or none."""
    from culturesim.parts.learning import uniform_below

    setup = np.random.default_rng(largest)
    for trial in range(40):
        rows, k = int(setup.integers(1, 2000)), int(setup.integers(1, 6))
        bounds = setup.integers(1 if trial % 2 else 2, largest + 1, size=rows)
        numpy_rng, ours = np.random.default_rng(trial), np.random.default_rng(trial)
        if trial % 3 == 0:
            numpy_rng.integers(0, 2**32, dtype=np.uint32), ours.integers(0, 2**32, dtype=np.uint32)
        expected = numpy_rng.integers(0, bounds[:, None], size=(rows, k))
        np.testing.assert_array_equal(uniform_below(ours, bounds, k), expected)
        assert ours.bit_generator.state == numpy_rng.bit_generator.state
