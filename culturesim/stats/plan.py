"""A preregistered plan tested: one `HypothesisResult` per hypothesis, Holm over the
confirmatory family, and a verdict with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import polars as pl

from culturesim.schema.analysis_plan import Hypothesis, Preregistration
from culturesim.stats.inference import (
    InconclusiveError,
    RunLevelTest,
    arm_mean,
    hedges_g,
    holm,
    mixed_model,
    run_level_test,
    supports,
)
from culturesim.stats.outcomes import finite, outcome_long, run_summaries, select_contrast_runs


@dataclass(frozen=True)
class HypothesisResult:
    """Everything reported for one preregistered hypothesis (differences are treatment - reference)."""

    id: str
    statement: str
    confirmatory: bool
    outcome: str
    summary: str
    direction: str
    alpha: float
    sesoi: float
    n_treatment: int
    n_reference: int
    n_dropped: int
    mean_treatment: float
    mean_reference: float
    mcse_treatment: float
    mcse_reference: float
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    tost_ci: tuple[float, float] | None
    hedges_g: float
    g_ci_low: float
    g_ci_high: float
    mixed: dict[str, Any]
    verdict: str
    reason: str
    warnings: list[str]


# --- analysis -------------------------------------------------------------------


def _analyze_one(
    metrics: pl.DataFrame, runs: pl.DataFrame, hypothesis: Hypothesis, *, final_generation: int
) -> HypothesisResult:
    """Everything but the multiplicity adjustment and verdict (left for `analyze`)."""
    contrast_runs = select_contrast_runs(runs, hypothesis.contrast)
    long = outcome_long(metrics, contrast_runs, hypothesis.outcome)
    summaries = run_summaries(contrast_runs, long, hypothesis, final_generation=final_generation)
    outcomes = finite(summaries)
    n_dropped = summaries.height - outcomes.height
    notes = [f"{n_dropped} run(s) dropped: no finite {hypothesis.summary} of {hypothesis.outcome}"] if n_dropped else []
    treated = outcomes.filter(pl.col("treatment") == 1)["value"].to_numpy()
    reference = outcomes.filter(pl.col("treatment") == 0)["value"].to_numpy()
    (mean_t, mcse_t), (mean_r, mcse_r) = arm_mean(treated), arm_mean(reference)
    g, g_low, g_high = hedges_g(treated, reference)
    nan = float("nan")
    test, reason = RunLevelTest(nan, nan, nan, nan, nan, nan, None, []), ""
    try:
        test = run_level_test(outcomes, hypothesis)
    except InconclusiveError as exc:
        reason = str(exc)
    return HypothesisResult(
        id=hypothesis.id,
        statement=hypothesis.statement,
        confirmatory=hypothesis.confirmatory,
        outcome=hypothesis.outcome,
        summary=hypothesis.summary,
        direction=hypothesis.direction,
        alpha=hypothesis.alpha,
        sesoi=hypothesis.sesoi,
        n_treatment=treated.size,
        n_reference=reference.size,
        n_dropped=n_dropped,
        mean_treatment=mean_t,
        mean_reference=mean_r,
        mcse_treatment=mcse_t,
        mcse_reference=mcse_r,
        estimate=test.estimate,
        se=test.se,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        p_value=test.p_value,
        p_adjusted=nan,
        tost_ci=test.tost_ci,
        hedges_g=g,
        g_ci_low=g_low,
        g_ci_high=g_high,
        mixed=mixed_model(long, hypothesis),
        verdict="inconclusive" if reason else "",
        reason=reason,
        warnings=notes + test.warnings,
    )


def _with_holm(results: list[HypothesisResult]) -> list[HypothesisResult]:
    """Holm over the confirmatory family; an inconclusive member counts with p = 1 (family size
    stays as registered) and keeps a NaN adjusted p. Exploratory results are not adjusted."""
    family = [i for i, r in enumerate(results) if r.confirmatory]
    if not family:
        return results
    adjusted = holm([results[i].p_value if np.isfinite(results[i].p_value) else 1.0 for i in family])
    updated = list(results)
    for i, p in zip(family, adjusted, strict=True):
        updated[i] = replace(results[i], p_adjusted=float(p) if np.isfinite(results[i].p_value) else float("nan"))
    return updated


def _with_verdict(result: HypothesisResult) -> HypothesisResult:
    if result.verdict == "inconclusive":
        return result
    p = result.p_adjusted if result.confirmatory else result.p_value
    label = ("Holm-adjusted " if result.confirmatory else "") + ("TOST p" if result.direction == "equivalent" else "p")
    supported = bool(supports(result.estimate, p, alpha=result.alpha, direction=result.direction))
    comparison = "<" if p < result.alpha else ">="
    side = "" if supported or p >= result.alpha else " but the estimate lies on the other side"
    verdict = "supported" if supported else "not supported"
    return replace(result, verdict=verdict, reason=f"{label} = {p:.4g} {comparison} alpha {result.alpha:g}{side}")


def analyze(
    metrics: pl.DataFrame, runs: pl.DataFrame, plan: Preregistration, *, final_generation: int
) -> list[HypothesisResult]:
    """Test every registered hypothesis; Holm across the confirmatory ones; one verdict each."""
    results = [_analyze_one(metrics, runs, h, final_generation=final_generation) for h in plan.hypotheses]
    return [_with_verdict(r) for r in _with_holm(results)]


def results_table(results: Sequence[HypothesisResult]) -> pl.DataFrame:
    """One row per hypothesis; the mixed model flattened to mixed_* columns, warnings joined by '; '."""
    rows = []
    for result in results:
        row = asdict(result)
        tost = row.pop("tost_ci") or (float("nan"), float("nan"))
        mixed = row.pop("mixed")
        row.update(
            tost_ci_low=tost[0],
            tost_ci_high=tost[1],
            family="confirmatory" if result.confirmatory else "exploratory",
            warnings="; ".join(result.warnings + [f"mixed: {w}" for w in mixed["warnings"]]),
            mixed_converged=mixed["converged"],
            mixed_error=mixed["error"] or "",
            **{f"mixed_{k}": mixed[k] for k in ("treatment", "treatment_se", "treatment_p")},
            **{f"mixed_{k}": mixed[k] for k in ("interaction", "interaction_se", "interaction_p")},
        )
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)
