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
    treatment: Any
    reference: Any


class Hypothesis(Section):
    id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    statement: str = Field(min_length=1)
    outcome: str = Field(min_length=1, description="a recorded value, e.g. 'semantic_diversity'")
    summary: Literal["value", "change", "slope"] = Field(
        default="value",
        description="per run: value at `generation`, change from generation 0, or OLS slope over `window`",
    )
    generation: int | Literal["final"] = "final"
    window: tuple[int, int] | None = None
    contrast: Contrast
    direction: Literal["greater", "less", "two-sided", "equivalent"]
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    sesoi: float = Field(default=0.0, ge=0.0, description="smallest effect size of interest, in outcome units")
    model: str = Field(default="value ~ treatment", description="statsmodels formula for the run-level OLS")
    mixed_model: str = Field(
        default="value ~ generation * treatment", description="statsmodels formula, random intercept per run"
    )
    random_slope: bool = False
    confirmatory: bool = True

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

    aims: str = Field(min_length=1)
    data_generating_mechanism: str = Field(min_length=1)
    estimands: str = Field(min_length=1)
    methods: str = Field(min_length=1)
    performance_measures: str = Field(min_length=1)
    stopping_rule: str = Field(min_length=1)
    replicates_justification: str = Field(min_length=1)
    hypotheses: list[Hypothesis] = Field(min_length=1)

    @field_validator("hypotheses")
    @classmethod
    def _unique_ids(cls, hypotheses: list[Hypothesis]) -> list[Hypothesis]:
        ids = [h.id for h in hypotheses]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"hypothesis ids must be unique; repeated: {duplicated}")
        return hypotheses
