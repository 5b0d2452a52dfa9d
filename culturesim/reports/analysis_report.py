"""The verdict report of a preregistered study: plan, deviations, tests, diagnostics, figures.

`culturesim analyze RESULTS_DIR` writes `analysis/report.md` and a self-contained
`analysis/report.html` (figures embedded) into the results folder.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import markdown
import matplotlib.pyplot as plt
import polars as pl

from culturesim.reports.convention_report import convention_section
from culturesim.reports.figures import trajectories
from culturesim.schema.analysis_plan import Hypothesis
from culturesim.schema.config import StudyConfig, stored_config
from culturesim.stats import HypothesisResult, analyze, condition_fits, results_table
from culturesim.stats.sensitivity import sensitivity
from culturesim.study.store import Results, read_manifest, require_files, runs_table, write_text

ADEMP = (
    ("Aims", "aims"),
    ("Data-generating mechanism", "data_generating_mechanism"),
    ("Estimands", "estimands"),
    ("Methods", "methods"),
    ("Performance measures", "performance_measures"),
    ("Stopping rule", "stopping_rule"),
    ("Number of replicates", "replicates_justification"),
)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _contrast(h: Hypothesis) -> str:
    return f"{h.contrast.factor}: {h.contrast.treatment} vs {h.contrast.reference}"


def verdict_table(results: list[HypothesisResult], plan: dict[str, Hypothesis]) -> str:
    header = (
        "| id | outcome | contrast | direction | n (T/R) | difference [95 % CI] | Hedges' g [95 % CI] "
        "| p | p (Holm) | verdict |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        h = plan[r.id]
        rows.append(
            f"| {r.id} | {r.outcome} ({r.summary}) | {_contrast(h)} | {r.direction} | {r.n_treatment}/{r.n_reference} "
            f"| {_num(r.estimate, 4)} [{_num(r.ci_low, 4)}, {_num(r.ci_high, 4)}] "
            f"| {_num(r.hedges_g, 2)} [{_num(r.g_ci_low, 2)}, {_num(r.g_ci_high, 2)}] "
            f"| {_num(r.p_value, 4)} | {_num(r.p_adjusted, 4) if r.confirmatory else 'n/a'} | **{r.verdict}** |"
        )
    return header + "\n".join(rows) + "\n"


def hypothesis_details(r: HypothesisResult, h: Hypothesis) -> str:
    mixed = r.mixed or {}
    lines = [
        f"### {r.id}: {h.statement}",
        "",
        f"- outcome: `{r.outcome}`, summary `{r.summary}` at generation {h.generation}"
        + (f", window {list(h.window)}" if h.window else ""),
        f"- means: treatment {_num(r.mean_treatment, 4)} (MCSE {_num(r.mcse_treatment, 4)}), "
        f"reference {_num(r.mean_reference, 4)} (MCSE {_num(r.mcse_reference, 4)})",
        f"- run-level OLS `{h.model}` with HC3 errors: difference {_num(r.estimate, 4)} (SE {_num(r.se, 4)}), "
        f"alpha {h.alpha}, smallest effect of interest {h.sesoi}",
    ]
    if r.tost_ci is not None:
        lines.append(f"- equivalence (TOST, ±{h.sesoi}): 90 % CI [{_num(r.tost_ci[0], 4)}, {_num(r.tost_ci[1], 4)}]")
    if r.n_dropped:
        lines.append(f"- runs dropped for missing values: {r.n_dropped}")
    if mixed:
        lines.append(f"- mixed model `{h.mixed_model}` (random intercept per run): {_mixed_line(mixed)}")
    if r.reason:
        lines.append(f"- note: {r.reason}")
    for warning in r.warnings:
        lines.append(f"- warning: {warning}")
    return "\n".join(lines) + "\n"


def _mixed_line(mixed: dict[str, Any]) -> str:
    parts = []
    for key, value in mixed.items():
        if isinstance(value, float):
            parts.append(f"{key} {_num(value, 4)}")
        elif isinstance(value, (str, bool, int)):
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def attractor_section(metrics: pl.DataFrame, outcomes: list[str]) -> str:
    """Per condition and outcome: final value regressed on initial value across runs (Perez et al. 2024)."""
    conditions = sorted(metrics["condition"].unique())
    rows = [
        f"| {outcome} | {c.condition} | {c.fit.n} | {_num(c.fit.b, 3)} | {_num(c.fit.fixed_point, 4)} "
        f"[{_num(c.fit.fixed_point_ci[0], 4)}, {_num(c.fit.fixed_point_ci[1], 4)}] | {_num(c.fit.strength, 3)} "
        f"| {_num(c.fit.p_value, 4)} |"
        for outcome in outcomes
        for c in condition_fits(metrics, outcome, conditions)
    ]
    if not rows:
        return "Too few runs with varying initial values for an attractor fit.\n"
    header = (
        # The pipes of |b| are escaped: unescaped, they split the header into more cells than the
        # rule line has, and Markdown then renders the whole table as a paragraph of raw text.
        "| outcome | condition | runs | slope b | fixed point a/(1−b) [95 % CI] "
        "| strength 1−\\|b\\| | p (\\|b\\| < 1) |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    return header + "\n".join(rows) + "\n"


def sensitivity_section(config: StudyConfig, metrics: pl.DataFrame, generation: int) -> str:
    """Sobol indices (first-order S1, total ST, 95 % bootstrap CIs) of each design outcome at `generation`."""
    design = config.design
    names = ", ".join(f"`{name}` ∈ [{low:g}, {high:g}]" for name, (low, high) in design.parameters.items())
    text = f"{design.method} design, {len(metrics['condition'].unique())} points over {names}.\n"
    if design.method != "sobol":
        return text + '\nSobol indices need a Saltelli sample (`method = "sobol"`).\n'
    labels = [label for label, _ in config.condition_grid()]
    for outcome in design.outcomes:
        rows = sensitivity(metrics, design, labels, outcome, generation=generation)
        text += f"\n**{outcome}** at generation {generation}\n\n"
        text += "| parameter | S1 [95 % CI] | ST [95 % CI] |\n|---|---|---|\n"
        text += "".join(f"| {r['parameter']} | {_index(r, 'S1')} | {_index(r, 'ST')} |\n" for r in rows)
    return text


def _index(row: dict[str, float | str], name: str) -> str:
    value, half = float(row[name]), float(row[f"{name}_conf"])
    return f"{_num(value, 3)} [{_num(value - half, 3)}, {_num(value + half, 3)}]"


def build_report(folder: Path) -> tuple[str, dict[str, plt.Figure]]:
    """Markdown text and the figures it refers to (file name -> figure)."""
    require_files(folder, ("manifest.json", "metrics.parquet"))
    manifest = read_manifest(folder)
    config = stored_config(manifest["config"])
    plan = config.preregistration
    metrics = pl.read_parquet(folder / "metrics.parquet")
    final_generation = int(metrics["generation"].max())
    figures: dict[str, plt.Figure] = {}
    parts = [f"# {config.study.name}: analysis\n\n{config.study.description}\n"]
    lock = manifest.get("lock")
    parts.append(
        f"- config hash `{manifest['config_hash'][:12]}`; "
        + (f"preregistered {lock['locked_at']}" if lock else "not preregistered (exploratory)")
        + f"; {len(manifest['runs'])} runs, {final_generation} generations\n"
    )
    if (folder / "explorer.html").exists():  # analysis/report.html sits one folder below it
        parts.append("- look inside the runs: [explorer.html](../explorer.html) (network, texts, lineages)\n")
    deviations = manifest.get("deviations", [])
    parts.append("## Deviations from the preregistration\n")
    parts.append(
        "".join(f"- {d['reason']} (changed: {', '.join(d['changed_fields'])})\n" for d in deviations) or "None.\n"
    )
    if plan is None:
        parts.append("\nThis study has no `[preregistration]`; no hypotheses were tested.\n")
        outcomes = ["committed_share" if config.study.interaction == "coordination" else "semantic_diversity"]
    else:
        parts.append("\n## Preregistered plan\n")
        parts.extend(f"\n**{title}.** {getattr(plan, field)}\n" for title, field in ADEMP)
        results = analyze(metrics, runs_table(manifest), plan, final_generation=final_generation)
        by_id = {h.id: h for h in plan.hypotheses}
        for title, confirmatory in (
            ("Confirmatory hypotheses (Holm-adjusted)", True),
            ("Exploratory hypotheses", False),
        ):
            chosen = [r for r in results if r.confirmatory == confirmatory]
            if chosen:
                parts.append(f"\n## {title}\n\n{verdict_table(chosen, by_id)}")
        parts.append("\n## Details and diagnostics\n")
        parts.extend("\n" + hypothesis_details(r, by_id[r.id]) for r in results)
        outcomes = list(dict.fromkeys(h.outcome for h in plan.hypotheses))
    if config.design is not None:  # hundreds of sampled conditions: indices, not per-condition figures
        parts.append("\n## Global sensitivity\n\n" + sensitivity_section(config, metrics, final_generation))
        return "".join(parts), figures
    if config.study.interaction == "coordination":  # conventions have no text attractor; their own analysis
        section, convention_figures = convention_section(folder)
        parts.append("\n" + section)
        figures.update(convention_figures)
    else:
        parts.append("\n## Attractor analysis (exploratory)\n\n" + attractor_section(metrics, outcomes))
    parts.append("\n## Trajectories\n")
    for outcome in outcomes:
        name = f"trajectory_{outcome.replace(':', '_')}.png"
        figures[name] = trajectories(metrics, outcome)
        parts.append(f"\n![{outcome} over generations]({name})\n")
    return "".join(parts), figures


def _embed_images(html: str, figures: dict[str, plt.Figure]) -> str:
    for name, fig in figures.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=150)
        encoded = base64.b64encode(buffer.getvalue()).decode()
        html = html.replace(f'src="{name}"', f'src="data:image/png;base64,{encoded}"')
    return html


HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}}
table{{border-collapse:collapse;font-size:.9rem}}td,th{{border:1px solid #ccc;padding:.25rem .5rem}}
img{{max-width:100%}}</style></head><body>
{body}
</body></html>
"""


def write_analysis(folder: Path) -> Path:
    """analysis/report.md (figures beside it) and a self-contained analysis/report.html."""
    text, figures = build_report(folder)
    target = folder / "analysis"
    target.mkdir(exist_ok=True)
    for name, fig in figures.items():
        fig.savefig(target / name, dpi=200)
    write_text(text, target / "report.md")
    body = markdown.markdown(text, extensions=["tables"])
    write_text(HTML_PAGE.format(title=folder.name, body=_embed_images(body, figures)), target / "report.html")
    for fig in figures.values():
        plt.close(fig)
    return target / "report.md"


def verdicts(results: Results) -> pl.DataFrame:
    """The preregistered hypotheses of a loaded results folder, tested: one row per hypothesis."""
    config = stored_config(results.manifest["config"])
    if config.preregistration is None:
        raise ValueError(f"{results.folder} comes from a study without [preregistration]; nothing to test")
    found = analyze(results.metrics, results.runs, config.preregistration, final_generation=results.final_generation)
    return results_table(found)
