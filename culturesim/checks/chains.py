"""Pure-LLM transmission chains (Perez et al. 2024, "When LLMs play the telephone game").

A chain hands one text to the LLM, its answer to the LLM again, and so on for some generations;
many chains from different starts run in lockstep (one engine call per generation). `chains`
reports one role's chains against the published qualitative findings; `compare_roles` runs the
roles side by side, mapped to Perez et al.'s three tasks (rephrase = rewrite, take inspiration =
create, continue = continue). The chains themselves are the attractor calibration's
(`culturesim.calibration.chains.run_chains`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from culturesim.calibration.chains import ONE_CALL_PROMPT, run_chains
from culturesim.parts.corpus import load_corpus
from culturesim.parts.llm.base import Backend
from culturesim.schema.config import CorpusSection
from culturesim.schema.llm_section import PromptSection
from culturesim.schema.sampling import Sampling
from culturesim.stats import AttractorFit, attractor_fit

if TYPE_CHECKING:  # torch is imported only where a real embedder is used
    from culturesim.parts.embed import Embedder

# Perez et al.'s tasks and the culturesim role that asks each of them.
PEREZ_TASKS = {"rewrite": "rephrase", "create": "take inspiration", "continue": "continue"}
FAITHFUL_WITHIN = 0.03  # a faithful retelling keeps between-chain diversity within this of its start (cosine)


@dataclass(frozen=True)
class ChainReport:
    """Outcome of `chains`.

    per_generation: generation, between_similarity (mean cosine over pairs of distinct chains),
        similarity_to_initial (mean cosine of each chain to its own start), mean_words, sd_words,
        changed (share of chains whose text differs from the previous generation), failures
        (unusable completions: the chain kept its text); changed is null at generation 0.
    texts: chain, generation, text, words.
    fits: one row per axis ('length_words', 'semantic_pc1', extra axes): `stats.attractor_fit` of
        final on initial position (b, fixed point, strength 1−|b|, one-sided p for |b| < 1).
    findings: finding, estimate, ci_low, ci_high, p_value, reproduces, evidence (with numbers).
    """

    per_generation: pl.DataFrame
    texts: pl.DataFrame
    fits: pl.DataFrame
    findings: pl.DataFrame


def corpus_sample(per_domain: int = 4, *, rng_seed: int = 0) -> list[str]:
    """`per_domain` built-in corpus texts from every domain (story, norm, advice, opinion), seeded."""
    frame = load_corpus(CorpusSection())
    rng = np.random.default_rng(rng_seed)
    texts = []
    for domain in sorted(frame["domain"].unique().to_list()):
        pool = frame.filter(pl.col("domain") == domain)["text"].to_list()
        texts.extend(pool[i] for i in rng.choice(len(pool), size=min(per_domain, len(pool)), replace=False))
    return texts


def _pair_mean(similarity: np.ndarray) -> float:
    """Mean of an (n, n) similarity matrix over pairs i ≠ j."""
    n = similarity.shape[0]
    return float((similarity.sum() - np.trace(similarity)) / (n * (n - 1)))


def _similarity_rise(first: np.ndarray, last: np.ndarray, *, rng: np.random.Generator, draws: int) -> dict[str, float]:
    """Rise of between-chain similarity (last − first), with a bootstrap over chains.

    Chains are resampled with replacement and the mean taken over pairs of *different* original
    chains, so the CI reflects which chains were drawn (pairs share chains and are not independent).
    p is the one-sided bootstrap share of resamples with a rise ≤ 0.
    """
    rise = last - first
    n = rise.shape[0]
    idx = rng.integers(0, n, size=(draws, n))
    block = rise[idx[:, :, None], idx[:, None, :]]
    distinct = idx[:, :, None] != idx[:, None, :]
    counts = distinct.sum(axis=(1, 2))
    boot = np.where(counts > 0, (block * distinct).sum(axis=(1, 2)) / np.maximum(counts, 1), np.nan)
    boot = boot[np.isfinite(boot)]
    low, high = np.quantile(boot, [0.025, 0.975])
    return {"estimate": _pair_mean(rise), "ci_low": float(low), "ci_high": float(high),
            "p_value": float(np.mean(boot <= 0))}  # fmt: skip


def _fit_row(axis: str, initial: np.ndarray, final: np.ndarray) -> dict[str, object]:
    """`attractor_fit` as a table row; a fit that cannot be made gives nulls and the reason."""
    row: dict[str, object] = {"axis": axis, "initial_mean": float(np.mean(initial))}
    row["final_mean"] = float(np.mean(final))
    try:
        fit: AttractorFit | None = attractor_fit(initial, final)
    except ValueError as error:
        return {**row, "n": len(initial), "error": str(error)}
    fields = asdict(fit)
    fields["fixed_point_ci_low"], fields["fixed_point_ci_high"] = fields.pop("fixed_point_ci")
    fields["strength_ci_low"], fields["strength_ci_high"] = fields.pop("strength_ci")
    return {**row, **fields, "error": None}


def chains(
    backend: Backend,
    embedder: Embedder,
    *,
    initial_texts: Sequence[str],
    generations: int,
    prompt: PromptSection = ONE_CALL_PROMPT,
    sampling: Sampling = Sampling(),
    seed: int = 0,
    semantic_axes: Mapping[str, np.ndarray] | None = None,
    bootstrap: int = 2000,
) -> ChainReport:
    """Pure-LLM transmission chains (Perez et al. 2024): does iterated rewriting converge?

    Published qualitative findings checked: (1) between-chain similarity rises over generations
    (texts from different starts drift toward each other); (2) the final position is a contracting
    map of the initial one, final = a + b·initial with |b| < 1 (an attractor at a/(1−b)), on length in
    words and on a semantic axis: the first principal direction of the initial embeddings (centred on
    their mean), plus any `semantic_axes` (name -> (d,) vector, e.g. e(pos) − e(neg)).
    Findings are reported as observed, whichever way they come out. Caveat: b near 0 with
    `similarity_to_initial` near the generation-0 between-chain similarity means the chains forgot
    their start; |b| < 1 then holds trivially and only the fixed point is informative.
    `prompt` as in `run_chains` (by default no retries: exactly one engine call per generation).
    """
    if len(initial_texts) < 3:
        raise ValueError(f"chains needs at least 3 initial texts, got {len(initial_texts)}")
    history, failures = run_chains(
        backend, initial_texts, generations=generations, prompt=prompt, sampling=sampling, seed=seed
    )
    n_chains = len(initial_texts)
    flat = [text for texts in history for text in texts]
    emb = np.asarray(embedder.embed(flat), dtype=np.float64).reshape(generations + 1, n_chains, -1)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    words = np.array([[len(t.split()) for t in texts] for texts in history], dtype=float)
    similarity = np.einsum("gid,gjd->gij", emb, emb)

    per_generation = pl.DataFrame(
        {
            "generation": np.arange(generations + 1),
            "between_similarity": [_pair_mean(s) for s in similarity],
            "similarity_to_initial": np.einsum("gid,id->g", emb, emb[0]) / n_chains,
            "mean_words": words.mean(axis=1),
            "sd_words": words.std(axis=1, ddof=1),
            "changed": [None] + [float(np.mean([a != b for a, b in zip(history[g - 1], history[g], strict=True)]))
                                 for g in range(1, generations + 1)],
            "failures": failures,
        }
    )  # fmt: skip
    texts = pl.DataFrame(
        {
            "chain": np.tile(np.arange(n_chains), generations + 1),
            "generation": np.repeat(np.arange(generations + 1), n_chains),
            "text": flat,
            "words": words.ravel().astype(np.int64),
        }
    )

    centre = emb[0].mean(axis=0)
    pc1 = np.linalg.svd(emb[0] - centre, full_matrices=False)[2][0]
    axes = {"semantic_pc1": pc1, **{name: np.asarray(v, dtype=float) for name, v in (semantic_axes or {}).items()}}
    fit_rows = [_fit_row("length_words", words[0], words[-1])]
    for name, axis in axes.items():
        unit = axis / np.linalg.norm(axis)
        fit_rows.append(_fit_row(name, (emb[0] - centre) @ unit, (emb[-1] - centre) @ unit))
    fits = pl.DataFrame(fit_rows)

    rise = _similarity_rise(similarity[0], similarity[-1], rng=np.random.default_rng(seed), draws=bootstrap)
    findings = pl.DataFrame([_rise_finding(rise, generations), *(_contraction_finding(r) for r in fit_rows)])
    return ChainReport(per_generation=per_generation, texts=texts, fits=fits, findings=findings)


def _rise_finding(rise: dict[str, float], generations: int) -> dict[str, object]:
    reproduces = rise["estimate"] > 0 and rise["p_value"] < 0.05
    evidence = (
        f"between-chain cosine changed by {rise['estimate']:+.3f} from generation 0 to {generations} "
        f"(95% chain-bootstrap CI {rise['ci_low']:+.3f} to {rise['ci_high']:+.3f}, one-sided p = {rise['p_value']:.3f})"
    )
    return {"finding": "between-chain similarity rises", **rise, "reproduces": reproduces, "evidence": evidence}


def _contraction_finding(row: Mapping[str, object]) -> dict[str, object]:
    axis = row["axis"]
    if row.get("error"):
        return {"finding": f"{axis}: attractor |b| < 1", "estimate": float("nan"), "ci_low": float("nan"),
                "ci_high": float("nan"), "p_value": float("nan"), "reproduces": False,
                "evidence": f"no fit: {row['error']}"}  # fmt: skip
    b, se, p = float(row["b"]), float(row["b_se"]), float(row["p_value"])
    reproduces = abs(b) < 1 and p < 0.05
    evidence = (
        f"final = {row['a']:.3f} + {b:.3f}·initial over {row['n']} chains (b SE {se:.3f}); strength 1−|b| = "
        f"{row['strength']:.3f} [{row['strength_ci_low']:.3f}, {row['strength_ci_high']:.3f}]; fixed point "
        f"{row['fixed_point']:.3f}; one-sided p(|b| < 1) = {p:.3g}"
    )
    return {"finding": f"{axis}: attractor |b| < 1", "estimate": b, "ci_low": b - 1.96 * se, "ci_high": b + 1.96 * se,
            "p_value": p, "reproduces": reproduces, "evidence": evidence}  # fmt: skip


def story_sample(count: int = 20, *, rng_seed: int = 0) -> list[str]:
    """`count` stories of the built-in corpus, drawn without replacement, seeded."""
    frame = load_corpus(CorpusSection())
    stories = frame.filter(pl.col("domain") == "story")["text"].to_list()
    rng = np.random.default_rng(rng_seed)
    return [stories[i] for i in rng.choice(len(stories), size=min(count, len(stories)), replace=False)]


@dataclass(frozen=True)
class RoleComparison:
    """Outcome of `compare_roles`.

    per_generation: role, task (Perez et al.'s name), generation, diversity (1 − mean cosine over
        pairs of distinct chains), similarity_to_initial (mean cosine of each chain to its start),
        mean_words, changed, failures.
    findings: finding, estimate, reproduces, evidence; the faithfulness bar (rewrite keeps diversity
        within FAITHFUL_WITHIN of its start) and the ordering (create loses more diversity than rewrite).
    reports: the full `ChainReport` of each role.
    """

    per_generation: pl.DataFrame
    findings: pl.DataFrame
    reports: dict[str, ChainReport]


def compare_roles(
    backend: Backend,
    embedder: Embedder,
    *,
    initial_texts: Sequence[str],
    generations: int,
    roles: Sequence[str] = tuple(PEREZ_TASKS),
    prompt: PromptSection = ONE_CALL_PROMPT,
    **settings,
) -> RoleComparison:
    """The same chains (same starts, same seeds) under each role, side by side: `prompt` with its role
    replaced by each of `roles`; `settings` as in `chains`."""
    reports = {
        role: chains(backend, embedder, initial_texts=initial_texts, generations=generations,
                     prompt=prompt.model_copy(update={"role": role}), **settings)
        for role in roles
    }  # fmt: skip
    frames = [
        report.per_generation.select(
            pl.lit(role).alias("role"),
            pl.lit(PEREZ_TASKS.get(role, role)).alias("task"),
            "generation",
            (1 - pl.col("between_similarity")).alias("diversity"),
            "similarity_to_initial",
            "mean_words",
            "changed",
            "failures",
        )
        for role, report in reports.items()
    ]
    per_generation = pl.concat(frames)
    change = {role: float(f["diversity"][-1] - f["diversity"][0]) for role, f in zip(roles, frames, strict=True)}
    findings = []
    if "rewrite" in change:
        findings.append({
            "finding": f"rewrite keeps between-chain diversity within {FAITHFUL_WITHIN} of its start",
            "estimate": change["rewrite"], "reproduces": abs(change["rewrite"]) <= FAITHFUL_WITHIN,
            "evidence": f"diversity changed by {change['rewrite']:+.3f} over {generations} generations",
        })  # fmt: skip
    if "rewrite" in change and "create" in change:
        findings.append({
            "finding": "create chains lose more between-chain diversity than rewrite chains",
            "estimate": change["rewrite"] - change["create"], "reproduces": change["create"] < change["rewrite"],
            "evidence": f"diversity change create {change['create']:+.3f}, rewrite {change['rewrite']:+.3f}",
        })  # fmt: skip
    return RoleComparison(per_generation=per_generation, findings=pl.DataFrame(findings), reports=reports)
