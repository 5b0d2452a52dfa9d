"""Global sensitivity designs: continuous parameters sampled over ranges, and Sobol indices.

A study's `[design]` samples settings over ranges instead of crossing levels: a Latin hypercube
(`lhs`, N points) or Saltelli's extension of a Sobol sequence (`sobol`, N·(D + 2) points for D
parameters, first-order and total effects). Each point becomes one condition of the study, run
with its replicates, so the runner, the log and the analysis treat a design like any other grid.
Sampling and the indices are SALib's (Herman & Usher 2017); first-order and total indices come
with SALib's bootstrap confidence intervals (resampling the N base points).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from culturesim.schema.sections import Section

BOOTSTRAP_RESAMPLES = 1000  # resamples behind each index's confidence interval
CONFIDENCE = 0.95


class DesignSection(Section):
    """`[design]`: parameters (dotted paths, as condition factors) sampled over [low, high]."""

    method: Literal["sobol", "lhs"] = Field(
        default="sobol",
        description="'sobol' (Saltelli's sample: N x (D + 2) points, Sobol indices reported) or 'lhs' (Latin "
        "hypercube, N points)",
    )
    samples: int = Field(
        default=64,
        ge=2,
        le=65_536,
        description="N, base samples: sobol runs N·(D + 2) points (N a power of 2), lhs N; each point is one condition",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="seed of the sample, apart from the study's")
    parameters: dict[str, tuple[float, float]] = Field(
        min_length=1, description='dotted setting (a condition factor, e.g. "humans.innovation") -> [low, high]'
    )
    outcomes: tuple[str, ...] = Field(
        default=("semantic_diversity",), min_length=1, description="recorded values whose Sobol indices are reported"
    )

    @field_validator("parameters")
    @classmethod
    def _ranges(cls, parameters: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for name, (low, high) in parameters.items():
            if not low < high:
                raise ValueError(f"design parameter {name!r} needs low < high, got [{low}, {high}]")
        return parameters

    @field_validator("samples")
    @classmethod
    def _power_of_two(cls, samples: int, info) -> int:
        if info.data.get("method") == "sobol" and samples & (samples - 1):
            raise ValueError(f"a Sobol design needs samples = a power of 2 (its balance), got {samples}")
        return samples

    def problem(self) -> dict[str, object]:
        """The design as SALib's problem definition."""
        return {
            "num_vars": len(self.parameters),
            "names": list(self.parameters),
            "bounds": list(self.parameters.values()),
        }

    def points(self) -> np.ndarray:
        """(points, D) parameter values, in the order the conditions run."""
        from SALib.sample import latin, sobol

        if self.method == "lhs":
            return latin.sample(self.problem(), self.samples, seed=self.seed)
        return sobol.sample(self.problem(), self.samples, calc_second_order=False, seed=self.seed)


def sobol_indices(design: DesignSection, outputs: np.ndarray, *, seed: int = 0) -> list[dict[str, float | str]]:
    """First-order (S1) and total (ST) Sobol indices of each parameter with their bootstrap
    confidence half-widths, from `outputs`: one value per design point, in `points()` order."""
    from SALib.analyze import sobol

    if design.method != "sobol":
        raise ValueError("Sobol indices need a [design] with method = 'sobol' (Saltelli's sample)")
    outputs = np.asarray(outputs, dtype=float)
    expected = design.samples * (len(design.parameters) + 2)
    if outputs.shape != (expected,):
        raise ValueError(f"need one output per design point ({expected}), got shape {outputs.shape}")
    result = sobol.analyze(
        design.problem(),
        outputs,
        calc_second_order=False,
        num_resamples=BOOTSTRAP_RESAMPLES,
        conf_level=CONFIDENCE,
        seed=seed,
    )
    return [
        {
            "parameter": name,
            "S1": float(result["S1"][i]),
            "S1_conf": float(result["S1_conf"][i]),
            "ST": float(result["ST"][i]),
            "ST_conf": float(result["ST_conf"][i]),
        }
        for i, name in enumerate(design.parameters)
    ]
