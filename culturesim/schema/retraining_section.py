"""`[llm.retraining]`: how often the LLM agents' model learns from the culture, and from what.

Every `every` generations each run fine-tunes its own LoRA adapter of the engine's model on
`texts` texts of its own population (`culturesim.study.retraining`); its LLM agents answer with
that adapter until the next retraining. The default, `every = 0`, is a frozen model, and a
study file that leaves the table out keeps its canonical config (and its lock) unchanged.

The defaults are what a LoRA fine-tune of a 135M model on a few thousand tokens would use: rank 8
on every projection, a learning rate of 2e-4 (the usual LoRA rate, about 10x a full fine-tune's),
one epoch per retraining, as Shumailov et al. 2024 fine-tuned each generation once on the last
generation's data.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from culturesim.schema.sections import Section

TrainingSource = Literal["population", "new"]


class RetrainingSection(Section):
    """`[llm.retraining]`; conditions may vary any of it (`"llm.retraining.regime" = [...]`)."""

    every: int = Field(default=0, ge=0, le=10_000, description="generations between retrainings; 0: frozen model")
    texts: int = Field(default=64, ge=1, le=100_000, description="training texts drawn at each retraining")
    source: TrainingSource = Field(
        default="population",
        description="'population': the texts the agents hold now; 'new': the variants born since the last retraining",
    )
    regime: Literal["replace", "accumulate"] = Field(
        default="replace",
        description="'replace': train on the newest draw only; 'accumulate': on every draw so far",
    )
    human_share: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="share of human-written texts in each draw (the rest machine-written); unset: as found",
    )
    epochs: int = Field(default=1, ge=1, le=100, description="passes over the training data per retraining")
    rank: Literal[8, 16, 32, 64] = Field(default=8, description="LoRA rank (vLLM serves these ranks)")
    learning_rate: float = Field(default=2e-4, gt=0.0, le=1.0, description="AdamW learning rate")
    batch_size: int = Field(default=16, ge=1, le=1024, description="training texts per optimizer step")
    held_out: int = Field(
        default=32, ge=1, le=10_000, description="corpus texts never trained on, for the model's held-out perplexity"
    )
    probe_texts: int = Field(
        default=16,
        ge=0,
        le=10_000,
        description="held-out texts the model retells at generation 0 and after each retraining, for its own "
        "diversity and its attractor's distance from the base model's (0: no probe; above held_out: all held_out)",
    )
    probe_steps: int = Field(
        default=2, ge=1, le=100, description="retellings in each probe chain (LLM requests per probe text)"
    )

    @property
    def enabled(self) -> bool:
        return self.every > 0
