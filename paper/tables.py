"""LaTeX (booktabs) table of the preregistered hypotheses of one results folder.

    python tables.py RESULTS_DIR        (or set CULTURESIM_RESULTS)  ->  build/table_<study>.tex

One row per hypothesis, confirmatory first: contrast, direction, runs per arm, the
registered test's difference with its 95 % CI, Hedges' g with its 95 % CI, p, Holm-adjusted
p (confirmatory only) and the verdict. A study without a preregistration gets no
table, and an old one is removed. The table needs the graphicx and booktabs packages.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import polars as pl

from culturesim.api import Hypothesis, StudyConfig, load_results, verdicts

BUILD = Path(__file__).resolve().parent / "build"
_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}
HEADER = (
    r"ID & outcome & contrast & direction & $n$ (T/R) & difference [95\,\% CI] & $g$ [95\,\% CI] "
    r"& $p$ & $p_\mathrm{Holm}$ & verdict \\"
)


def escape(text: object) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def number(value: float | None, digits: int = 3) -> str:
    """Math-mode number (a real minus sign); '--' for a missing value."""
    if value is None or math.isnan(value):
        return "--"
    return f"${value:.{digits}f}$"


def p_value(value: float | None) -> str:
    if value is not None and not math.isnan(value) and value < 0.001:
        return "$<0.001$"
    return number(value)


def interval(value: float, low: float, high: float, digits: int) -> str:
    return f"{number(value, digits)} [{number(low, digits)}, {number(high, digits)}]"


def row(result: dict, hypothesis: Hypothesis) -> str:
    contrast = f"{escape(hypothesis.contrast.treatment)} vs {escape(hypothesis.contrast.reference)}"
    cells = [
        escape(result["id"]),
        r"\texttt{" + escape(result["outcome"]) + "}",
        contrast,
        escape(result["direction"]),
        f"{result['n_treatment']}/{result['n_reference']}",
        interval(result["estimate"], result["ci_low"], result["ci_high"], 4),
        interval(result["hedges_g"], result["g_ci_low"], result["g_ci_high"], 2),
        p_value(result["p_value"]),
        p_value(result["p_adjusted"]) if result["confirmatory"] else "n/a",
        escape(result["verdict"]),
    ]
    return " & ".join(cells) + r" \\"


def latex_table(study: str, table: pl.DataFrame, plan: dict[str, Hypothesis]) -> str:
    factors = sorted({h.contrast.factor for h in plan.values()})
    body = []
    for family, confirmatory in (("Confirmatory (Holm-adjusted)", True), ("Exploratory", False)):
        rows = [r for r in table.iter_rows(named=True) if r["confirmatory"] == confirmatory]
        if rows:
            body.append(r"\multicolumn{10}{l}{\emph{" + family + r"}} \\")
            body.extend(row(r, plan[r["id"]]) for r in rows)
            body.append(r"\midrule")
    body[-1] = r"\bottomrule"
    caption = (
        f"Preregistered hypotheses of the \\texttt{{{escape(study)}}} study. Contrasts compare levels of "
        + ", ".join(r"\texttt{" + escape(f) + "}" for f in factors)
        + " (treatment vs reference); differences are treatment $-$ reference in outcome units from the "
        "registered run-level test, $g$ is Hedges' $g$."
    )
    return "\n".join(
        [
            r"\begin{table}[tbp]",
            r"\centering",
            r"\footnotesize",
            r"\setlength{\tabcolsep}{3pt}",
            f"\\caption{{{caption}}}",
            f"\\label{{tab:{study.replace('_', '-')}}}",
            r"\resizebox{\linewidth}{!}{%",
            r"\begin{tabular}{llllrllrrl}",
            r"\toprule",
            HEADER,
            r"\midrule",
            *body,
            r"\end{tabular}}",
            r"\end{table}",
            "",
        ]
    )


def main() -> None:
    given = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CULTURESIM_RESULTS")
    if not given:
        sys.exit("usage: python tables.py RESULTS_DIR (or set CULTURESIM_RESULTS)")
    results = load_results(given)
    study = results.manifest["study"]
    target = BUILD / f"table_{study}.tex"
    config = StudyConfig.model_validate(results.manifest["config"])
    if config.preregistration is None:
        target.unlink(missing_ok=True)
        print(f"{target.name}: skipped ({given} has no [preregistration])")
        return
    plan = {h.id: h for h in config.preregistration.hypotheses}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(latex_table(study, verdicts(results), plan), encoding="utf-8")
    print(f"{target.name}: {len(plan)} hypotheses from {given}")


if __name__ == "__main__":
    main()
