"""The preregistered analysis plan of a study file: hypotheses and the ADEMP fields.

`culturesim.stats` tests exactly these hypotheses; `culturesim.schema.config` checks that each
names a recorded outcome and a condition factor of its study.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from culturesim.schema.sections import Section

ALLOWED_FORMULA_NAMES = frozenset({"value", "generation", "treatment", "replicate", "C"})
_FORMULA_CHARS = re.compile(r"^[A-Za-z_0-9~+*:\-() .,]+$")


class Contrast(Section):
    """Compare runs whose `factor` is at `treatment` with runs at `reference` (other factors pooled)."""

    factor: str = Field(min_length=1, description="a condition factor, e.g. 'population.llm_share'")
    treatment: Any = Field(
        description="the factor's level whose runs are the treatment arm, written as in [conditions]"
    )
    reference: Any = Field(
        description="the factor's level whose runs are the reference arm (effect: treatment - reference)"
    )


class Hypothesis(Section):
    """One `[[preregistration.hypotheses]]`: a contrast of one outcome between two levels of one factor."""

    id: str = Field(
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="a short unique label, e.g. 'H1' (letters, digits, '_', '.', '-'; up to 40 characters)",
    )
    statement: str = Field(min_length=1, description="the hypothesis in words")
    outcome: str = Field(
        min_length=1,
        description="a value the runs record: a [metrics] name or one of its values, e.g. 'semantic_diversity', "
        "'distinct_1'",
    )
    summary: Literal["value", "change", "slope"] = Field(
        default="value",
        description="per run: value at `generation`, change from generation 0, or OLS slope over `window`",
    )
    generation: int | Literal["final"] = Field(
        default="final",
        description="the generation (0..study.generations, or 'final') summaries 'value' and 'change' are taken at",
    )
    window: tuple[int, int] | None = Field(
        default=None, description="[first, last] generation, inclusive, of summary 'slope'"
    )
    contrast: Contrast = Field(description="which runs are compared: a factor and its two levels")
    direction: Literal["greater", "less", "two-sided", "equivalent"] = Field(
        description="the predicted effect (treatment - reference): 'greater' or 'less' than 0 (one-sided), "
        "'two-sided', or 'equivalent' (within +-sesoi, TOST)"
    )
    alpha: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="significance level 0..1 (confirmatory hypotheses' p-values are Holm-adjusted first)",
    )
    sesoi: float = Field(default=0.0, ge=0.0, description="smallest effect size of interest, in outcome units")
    model: str = Field(
        default="value ~ treatment",
        description="statsmodels formula of the run-level OLS (HC3 errors); names: value, treatment, replicate, C",
    )
    mixed_model: str = Field(
        default="value ~ generation * treatment",
        description="statsmodels formula of the mixed model on every generation (a sensitivity analysis, random "
        "intercept per run); names: value, generation, treatment, replicate, C",
    )
    random_slope: bool = Field(
        default=False, description="the mixed model (a sensitivity analysis) also gets a random slope of generation"
    )
    confirmatory: bool = Field(
        default=True,
        description="true: in the confirmatory family, Holm-adjusted; false: exploratory, reported unadjusted",
    )

    @field_validator("model", "mixed_model")
    @classmethod
    def _safe_formula(cls, formula: str) -> str:
        """Formulas are parsed by patsy, which evaluates Python: allow only known names and operators."""
        names = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", formula))
        if "~" not in formula or not formula.split("~")[0].strip() == "value" or not _FORMULA_CHARS.match(formula):
            raise ValueError(f"formula {formula!r} must look like 'value ~ treatment' (operators + * : - ( ) only)")
        if names - ALLOWED_FORMULA_NAMES:
            raise ValueError(
                f"formula {formula!r} uses {sorted(names - ALLOWED_FORMULA_NAMES)}; "
                f"allowed names: {sorted(ALLOWED_FORMULA_NAMES)}"
            )
        return formula

    @model_validator(mode="after")
    def _consistent(self) -> Hypothesis:
        if self.summary == "slope" and self.window is None:
            raise ValueError("summary 'slope' needs window = [first generation, last generation]")
        if self.window is not None and not 0 <= self.window[0] < self.window[1]:
            raise ValueError(f"window {list(self.window)} must be [start, end] with 0 <= start < end")
        if self.direction == "equivalent" and self.sesoi <= 0:
            raise ValueError("direction 'equivalent' needs a positive sesoi (the equivalence margin)")
        return self


class Preregistration(Section):
    """The analysis plan, fixed before data exist; structured after ADEMP."""

    aims: str = Field(min_length=1, description="ADEMP aims: what the study is for, in words")
    data_generating_mechanism: str = Field(
        min_length=1, description="ADEMP data-generating mechanism: the simulated model and conditions, in words"
    )
    estimands: str = Field(min_length=1, description="ADEMP estimands: the quantities the hypotheses are about")
    methods: str = Field(min_length=1, description="ADEMP methods: how each estimand is estimated and tested")
    performance_measures: str = Field(
        min_length=1, description="ADEMP performance measures: what would count as support, and how it is judged"
    )
    stopping_rule: str = Field(min_length=1, description="when data collection stops (e.g. all planned runs)")
    replicates_justification: str = Field(
        min_length=1, description="why study.replicates runs per condition are enough (e.g. a power analysis)"
    )
    hypotheses: list[Hypothesis] = Field(
        min_length=1, description="the tested hypotheses, one [[preregistration.hypotheses]] table each"
    )

    @field_validator("hypotheses")
    @classmethod
    def _unique_ids(cls, hypotheses: list[Hypothesis]) -> list[Hypothesis]:
        ids = [h.id for h in hypotheses]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"hypothesis ids must be unique; repeated: {duplicated}")
        return hypotheses
