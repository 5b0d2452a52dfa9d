"""Social learning: whom each learner copies, and what happens to the copy.

One generation of learning is: sample ``k`` demonstrators among a learner's
network neighbours, pick one of them under a transmission bias, then decide
whether the learner copies faithfully, copies with a lexical error, innovates,
or consults an LLM instead. Everything is vectorised over learners; loops run
only over the ``k`` demonstrators or over the texts that get a copying error.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from culturesim.core.vocabulary import BIASES

# Learning outcomes, as stored in the int8 array returned by `learning_outcomes`.
COPY, COPY_ERROR, INNOVATE, CONSULT_LLM, LLM_MUTATION = 0, 1, 2, 3, 4

# A word: letters, optionally joined by apostrophes ("don't", "o'clock").
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def sample_demonstrators(
    learners: np.ndarray,
    *,
    indptr: np.ndarray,
    indices: np.ndarray,
    k: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(L, k) agent indices drawn uniformly with replacement among each learner's
    neighbours; rows of learners with no neighbour are -1."""
    indptr, indices = _csr(indptr, indices)
    _check_k(k)
    learners = _index_array(learners, "learners", indptr.size - 1)
    return _sample_demonstrators(learners, indptr, indices, k, rng)


def choose_models(
    learners: np.ndarray,
    *,
    indptr: np.ndarray,
    indices: np.ndarray,
    traits: np.ndarray,
    embeddings: np.ndarray,
    prestige: np.ndarray,
    bias: str,
    k: int,
    rng: np.random.Generator,
    conformity: float = 1.0,
    content_axis: np.ndarray | None = None,
    content_strength: float = 0.0,
    similarity_strength: float = 0.0,
) -> np.ndarray:
    """(L,) agent index each learner copies (or -1 if isolated).

    Samples ``k`` demonstrators per learner, weights them under ``bias`` (see
    `demonstrator_weights`) and draws one per learner in proportion to weight.
    Every input is validated; a run validates once through `SocialLearner` instead.
    """
    learner = SocialLearner.checked(
        indptr=indptr,
        indices=indices,
        prestige=prestige,
        bias=bias,
        k=k,
        conformity=conformity,
        content_axis=content_axis,
        content_strength=content_strength,
        similarity_strength=similarity_strength,
        dim=np.shape(embeddings)[-1],
    )
    n_agents = len(learner.indptr) - 1
    if np.shape(traits) != (n_agents,):
        raise ValueError(f"traits must have shape ({n_agents},) to match indptr, got {np.shape(traits)}")
    embeddings = _check_embeddings(embeddings)
    traits = _index_array(traits, "traits", embeddings.shape[0])
    learners = _index_array(learners, "learners", n_agents)
    return learner.choose(learners, traits=traits, embeddings=embeddings, rng=rng)


@dataclass(frozen=True)
class SocialLearner:
    """One run's copying rule, validated once by `checked`.

    The network, prestige and bias settings are fixed for a run, so a generation checks
    nothing again: the model's own learners and traits are valid by construction (checking
    them cost more than the learning itself at 1,000 agents). The free functions of this
    module validate every input and run the same code, so both draw identical numbers.
    """

    indptr: np.ndarray  # (N + 1,) int64 CSR row pointers of the network
    indices: np.ndarray  # (E,) int64 neighbour agent indices
    prestige: np.ndarray  # (N,) float64 > 0
    bias: str
    k: int  # demonstrators sampled per learner
    conformity: float = 1.0
    content_axis: np.ndarray | None = None  # (d,) unit axis of the content bias
    content_strength: float = 0.0
    similarity_strength: float = 0.0

    @classmethod
    def checked(
        cls,
        *,
        indptr: np.ndarray,
        indices: np.ndarray,
        prestige: np.ndarray,
        bias: str,
        k: int,
        dim: int,
        conformity: float = 1.0,
        content_axis: np.ndarray | None = None,
        content_strength: float = 0.0,
        similarity_strength: float = 0.0,
    ) -> SocialLearner:
        """A learner whose every setting has been checked; `dim` is the embedding size."""
        indptr, indices = _csr(indptr, indices)
        _check_k(k)
        _check_bias(bias, conformity, content_strength, similarity_strength)
        prestige = np.asarray(prestige, dtype=np.float64)
        n_agents = indptr.size - 1
        if prestige.shape != (n_agents,) or not np.all(np.isfinite(prestige) & (prestige > 0)):
            raise ValueError(f"prestige must be finite, > 0 and have shape ({n_agents},), got shape {prestige.shape}")
        axis = _unit_axis(content_axis, dim) if bias == "content" else None
        return cls(indptr, indices, prestige, bias, k, conformity, axis, content_strength, similarity_strength)

    def sample(self, learners: np.ndarray, *, rng: np.random.Generator, k: int | None = None) -> np.ndarray:
        """(L, k) demonstrators per learner (`k` defaults to the rule's), -1 rows for isolated ones."""
        return _sample_demonstrators(learners, self.indptr, self.indices, self.k if k is None else k, rng)

    def choose(
        self, learners: np.ndarray, *, traits: np.ndarray, embeddings: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """(L,) agent index each learner copies (or -1 if isolated); `traits`: (N,) trait id per
        agent, `embeddings`: (T, d) unit rows per trait id."""
        demonstrators = self.sample(learners, rng=rng)
        connected = demonstrators[:, 0] >= 0
        if connected.all():  # the usual case; boolean indexing would copy every row
            weights = self.weights(learners, demonstrators, traits=traits, embeddings=embeddings)
            return demonstrators[np.arange(learners.size), _weighted_choice(weights, rng)]
        weights = self.weights(learners[connected], demonstrators[connected], traits=traits, embeddings=embeddings)
        models = np.full(learners.size, -1, dtype=np.int64)
        chosen = _weighted_choice(weights, rng)
        models[connected] = demonstrators[connected][np.arange(chosen.size), chosen]
        return models

    def weights(
        self, learners: np.ndarray, demonstrators: np.ndarray, *, traits: np.ndarray, embeddings: np.ndarray
    ) -> np.ndarray:
        """(L, k) float64 unnormalised choice weights (see `demonstrator_weights`)."""
        return _demonstrator_weights(self, learners, demonstrators, traits, embeddings)


def demonstrator_weights(
    learners: np.ndarray,
    demonstrators: np.ndarray,
    *,
    traits: np.ndarray,
    embeddings: np.ndarray,
    prestige: np.ndarray,
    bias: str,
    conformity: float = 1.0,
    content_axis: np.ndarray | None = None,
    content_strength: float = 0.0,
    similarity_strength: float = 0.0,
) -> np.ndarray:
    """(L, k) unnormalised choice weights of each learner's demonstrators.

    - unbiased: 1.
    - conformist: n_j ** (conformity - 1), n_j = how many of the k demonstrators
      share demonstrator j's trait, so a trait held by n of k is chosen with
      probability proportional to n ** conformity (1: unbiased, >1: conformist,
      [0, 1): anti-conformist).
    - prestige: the demonstrator's prestige.
    - content: exp(content_strength * projection of the trait embedding on the
      unit ``content_axis``).
    - similarity: exp(similarity_strength * cosine between the demonstrator's
      and the learner's trait embeddings; embeddings are unit-norm so cosine is
      the dot product).
    Exponential weights are max-subtracted per row, so they never overflow.
    """
    _check_bias(bias, conformity, content_strength, similarity_strength)
    embeddings = _check_embeddings(embeddings)
    traits = _index_array(traits, "traits", embeddings.shape[0])
    prestige = np.asarray(prestige, dtype=np.float64)
    if prestige.shape != traits.shape or not np.all(np.isfinite(prestige) & (prestige > 0)):
        raise ValueError(f"prestige must be finite, > 0 and have shape {traits.shape}, got shape {prestige.shape}")
    learners = _index_array(learners, "learners", traits.size)
    demonstrators = np.asarray(demonstrators)
    if demonstrators.ndim != 2 or demonstrators.shape[0] != learners.size or demonstrators.shape[1] < 1:
        raise ValueError(f"demonstrators must have shape ({learners.size}, k >= 1), got {demonstrators.shape}")
    _index_array(demonstrators.ravel(), "demonstrators", traits.size)
    axis = _unit_axis(content_axis, embeddings.shape[1]) if bias == "content" else None
    rule = _BiasSettings(prestige, bias, conformity, axis, content_strength, similarity_strength)
    return _demonstrator_weights(rule, learners, demonstrators, traits, embeddings)


def weighted_choice(weights: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """(L,) column index drawn per row of (L, k) ``weights`` with probability
    proportional to weight: one uniform per row against the row's cumulative sum."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] < 1:
        raise ValueError(f"weights must have shape (L, k >= 1), got {weights.shape}")
    if not np.all(np.isfinite(weights) & (weights >= 0)):
        raise ValueError("weights must be finite and >= 0")
    if np.any(weights.sum(axis=1) <= 0):
        raise ValueError("weights must have a positive sum in every row")
    return _weighted_choice(weights, rng)


def _sample_demonstrators(
    learners: np.ndarray, indptr: np.ndarray, indices: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    start = indptr[learners]
    degree = indptr[learners + 1] - start
    if learners.size == 0 or degree.min() > 0:  # the usual case; boolean indexing would copy every row
        return indices[start[:, None] + uniform_below(rng, degree, k)]
    connected = degree > 0
    offset = rng.integers(0, degree[connected][:, None], size=(int(connected.sum()), k))
    demonstrators = np.full((learners.size, k), -1, dtype=np.int64)
    demonstrators[connected] = indices[start[connected][:, None] + offset]
    return demonstrators


def _demonstrator_weights(
    rule: SocialLearner | _BiasSettings,
    learners: np.ndarray,
    demonstrators: np.ndarray,
    traits: np.ndarray,
    embeddings: np.ndarray,
) -> np.ndarray:
    demo_traits = traits[demonstrators]
    if rule.bias == "unbiased":
        return np.ones(demo_traits.shape)
    if rule.bias == "conformist":
        # Column j: n ** (conformity - 1), n = how many of the learner's k demonstrators share
        # demonstrator j's trait. Loops run over the k columns, whole columns at a time (an
        # operation along a row of k = 3 costs a Python-level step per row); n ** x comes from a
        # table of the k possible counts, computed by the same power function.
        k = demo_traits.shape[1]
        power = np.arange(1, k + 1, dtype=np.float64) ** (rule.conformity - 1.0)  # n = 1..k
        columns = [demo_traits[:, j] for j in range(k)]
        others = np.zeros((k, demo_traits.shape[0]), dtype=np.int64)  # n - 1: the others that agree with j
        for i, j in itertools.combinations(range(k), 2):
            agree = columns[i] == columns[j]
            others[i] += agree
            others[j] += agree
        weights = np.empty(demo_traits.shape)
        for j in range(k):
            weights[:, j] = power[others[j]]
        return weights
    if rule.bias == "prestige":
        return rule.prestige[demonstrators]
    if rule.bias == "content":
        unique, inverse = np.unique(demo_traits.ravel(), return_inverse=True)
        score = rule.content_strength * (embeddings[unique] @ rule.content_axis)[inverse].reshape(demo_traits.shape)
    else:  # similarity
        own = embeddings[traits[learners]]
        cosine = [np.einsum("ld,ld->l", own, embeddings[demo_traits[:, j]]) for j in range(demo_traits.shape[1])]
        score = rule.similarity_strength * np.stack(cosine, axis=1).astype(np.float64)
    return np.exp(score - score.max(axis=1, keepdims=True))


@dataclass(frozen=True)
class _BiasSettings:
    """The bias part of a `SocialLearner`, for `demonstrator_weights` (which has no network)."""

    prestige: np.ndarray
    bias: str
    conformity: float
    content_axis: np.ndarray | None
    content_strength: float
    similarity_strength: float


def uniform_below(rng: np.random.Generator, bounds: np.ndarray, k: int) -> np.ndarray:
    """(L, k) integers, row l uniform on [0, bounds[l]): `rng.integers(0, bounds[:, None], size=(L, k))`
    bit for bit, with `rng` left in the same state, in about half its time.

    numpy draws each element with Lemire's method on one 32-bit draw (bounds below 2**32),
    redrawing when the low word falls under (2**32 - bound) % bound, which at bounds of a few
    hundred happens about once in ten million draws. Here all 32-bit draws are taken at once and
    the same arithmetic is done on whole arrays; if any element would have been redrawn, the
    generator is put back and numpy's own per-element loop runs instead. Bounds of 1 (numpy draws
    nothing for them) and bounds of 2**32 or more also take numpy's loop.
    """
    if bounds.size == 0 or bounds.min() < 2 or bounds.max() >= 2**32:
        return rng.integers(0, bounds[:, None], size=(bounds.size, k))
    saved = rng.bit_generator.state
    bound = bounds.astype(np.uint64)[:, None]
    product = rng.integers(0, 2**32, size=(bounds.size, k), dtype=np.uint32).astype(np.uint64) * bound
    low_word = product & np.uint64(0xFFFFFFFF)
    maybe = low_word < bound  # the threshold is below the bound, so only these can be redrawn
    if maybe.any():
        at = np.broadcast_to(bound, maybe.shape)[maybe]
        if np.any(low_word[maybe] < (np.uint64(2**32) - at) % at):
            rng.bit_generator.state = saved
            return rng.integers(0, bounds[:, None], size=(bounds.size, k))
    return (product >> np.uint64(32)).astype(np.int64)


def _weighted_choice(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # The running sums over columns are np.cumsum(weights, axis=1) bit for bit (one addition
    # after another, left to right), without a Python-level step per row.
    cumulative = [weights[:, 0]]
    for j in range(1, weights.shape[1]):
        cumulative.append(cumulative[-1] + weights[:, j])
    u = rng.random(weights.shape[0]) * cumulative[-1]
    # Count the cumulative sums at or below u; min() guards u rounding up to the total.
    below = np.zeros(weights.shape[0], dtype=np.int64)
    for column in cumulative:
        below += column <= u
    return np.minimum(below, weights.shape[1] - 1)


def _check_bias(bias: str, conformity: float, content_strength: float, similarity_strength: float) -> None:
    if bias not in BIASES:
        raise ValueError(f"bias must be one of {', '.join(BIASES)}; got {bias!r}")
    if not (np.isfinite(conformity) and conformity >= 0):
        raise ValueError(f"conformity must be a finite number >= 0, got {conformity}")
    for name, value in (("content_strength", content_strength), ("similarity_strength", similarity_strength)):
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")


def _check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape (T, d), got {embeddings.shape}")
    return embeddings


def learning_outcomes(
    n: int,
    *,
    copy_error: float,
    innovation: float,
    llm_consultation: float,
    rng: np.random.Generator,
    llm_mutation: float = 0.0,
) -> np.ndarray:
    """(n,) int8 outcome per learner: COPY=0, COPY_ERROR=1, INNOVATE=2, CONSULT_LLM=3, LLM_MUTATION=4.

    With probability ``llm_consultation`` a learner consults an LLM; otherwise
    with probability ``innovation`` it innovates; otherwise it copies, and the
    copy gets a lexical error with probability ``copy_error`` or is retold by an
    LLM (the LLM as mutation operator) with probability ``llm_mutation``. One
    uniform draw per learner either way, so a study with llm_mutation = 0 draws
    exactly the outcomes it drew before the option existed.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rates = {"copy_error": copy_error, "innovation": innovation, "llm_consultation": llm_consultation,
             "llm_mutation": llm_mutation}  # fmt: skip
    for name, rate in rates.items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {rate}")
    if copy_error + llm_mutation > 1:
        raise ValueError(f"copy_error + llm_mutation must be at most 1, got {copy_error} + {llm_mutation}")
    p_consult = llm_consultation
    p_innovate = (1 - llm_consultation) * innovation
    p_copy = (1 - llm_consultation) * (1 - innovation)
    thresholds = np.cumsum([p_consult, p_innovate, p_copy * copy_error, p_copy * llm_mutation])
    outcome_by_interval = np.array([CONSULT_LLM, INNOVATE, COPY_ERROR, LLM_MUTATION, COPY], dtype=np.int8)
    # The interval of each draw: how many thresholds lie at or below it (np.searchsorted with
    # side="right" on the sorted thresholds, counted with one comparison per threshold).
    u = rng.random(n)
    interval = np.zeros(n, dtype=np.intp)
    for threshold in thresholds:
        interval += u >= threshold
    return outcome_by_interval[interval]


def copy_with_error(texts: Sequence[str], *, rng: np.random.Generator, vocabulary: Sequence[str]) -> list[str]:
    """A lexical copying error per text: one of drop a word / swap two adjacent words /
    substitute a word by one from `vocabulary`, chosen uniformly; the result always
    differs from the input when possible (texts of one word: substitute).

    Only operations that can change the text are candidates. Words are split on
    whitespace and rejoined with single spaces; a substitution keeps the word's
    surrounding punctuation and initial capital.
    """
    if not texts:
        return []
    pool = sorted(set(vocabulary))
    return [_mutate(text, rng, pool) for text in texts]


def corpus_vocabulary(texts: Sequence[str], *, min_count: int = 2) -> list[str]:
    """Sorted list of lowercase words (letters and apostrophes only) occurring at
    least min_count times; the pool for substitutions."""
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    counts = Counter(word for text in texts for word in _WORD.findall(text.lower()))
    return sorted(word for word, count in counts.items() if count >= min_count)


def _mutate(text: str, rng: np.random.Generator, pool: list[str]) -> str:
    """One copying error on ``text``; ``pool`` is the sorted, deduplicated vocabulary."""
    words = text.split()
    swappable = [i for i in range(len(words) - 1) if words[i] != words[i + 1]]
    # A word can be substituted when the pool holds some word other than its own.
    substitutable = [i for i, w in enumerate(words) if len(pool) > _in_sorted(pool, _core(w))]
    operations = (["drop"] if len(words) > 1 else []) + (["swap"] if swappable else [])
    operations += ["substitute"] if substitutable else []
    if not operations:
        return text
    operation = operations[rng.integers(len(operations))]
    if operation == "drop":
        del words[rng.integers(len(words))]
    elif operation == "swap":
        i = swappable[rng.integers(len(swappable))]
        words[i], words[i + 1] = words[i + 1], words[i]
    else:
        i = substitutable[rng.integers(len(substitutable))]
        core = _core(words[i])
        # Draw uniformly among pool words other than `core` by skipping its slot.
        j = rng.integers(len(pool) - _in_sorted(pool, core))
        if _in_sorted(pool, core) and j >= bisect_left(pool, core):
            j += 1
        words[i] = _replace_core(words[i], pool[j])
    return " ".join(words)


def _core(token: str) -> str:
    """The lowercase word inside a whitespace token ('' if it holds no letters)."""
    match = _WORD.search(token)
    return match.group().lower() if match else ""


def _replace_core(token: str, word: str) -> str:
    """``token`` with its word replaced by ``word``, keeping punctuation and an initial capital."""
    match = _WORD.search(token)
    if match is None:
        return word
    if match.group()[0].isupper():
        word = word[:1].upper() + word[1:]
    return token[: match.start()] + word + token[match.end() :]


def _in_sorted(pool: list[str], word: str) -> bool:
    i = bisect_left(pool, word)
    return i < len(pool) and pool[i] == word


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _index_array(values: np.ndarray, name: str, size: int) -> np.ndarray:
    """``values`` as a 1-D int64 array of indices into a range of length ``size``."""
    array = np.asarray(values)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {array.shape} dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= size):
        raise ValueError(f"{name} must lie in [0, {size}), got values in [{array.min()}, {array.max()}]")
    return array.astype(np.int64, copy=False)


def _csr(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated CSR neighbour arrays as int64."""
    indptr = np.asarray(indptr)
    if indptr.ndim != 1 or indptr.size < 1 or not np.issubdtype(indptr.dtype, np.integer):
        raise ValueError(f"indptr must be a 1-D integer array of length N + 1, got shape {indptr.shape}")
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError("indptr must start at 0 and be non-decreasing")
    indices = _index_array(indices, "indices", indptr.size - 1)
    if indptr[-1] != indices.size:
        raise ValueError(f"indptr[-1] must equal len(indices) = {indices.size}, got {indptr[-1]}")
    return indptr.astype(np.int64, copy=False), indices


def _unit_axis(content_axis: np.ndarray | None, dim: int) -> np.ndarray:
    """``content_axis`` scaled to unit length; required for the content bias."""
    if content_axis is None:
        raise ValueError("content_axis is required for the content bias")
    axis = np.asarray(content_axis, dtype=np.float64)
    norm = np.linalg.norm(axis) if axis.shape == (dim,) else 0.0
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(f"content_axis must be a finite non-zero vector of shape ({dim},), got shape {axis.shape}")
    return axis / norm
