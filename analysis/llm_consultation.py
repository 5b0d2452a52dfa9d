# %% [markdown]
# # LLM consultation
#
# Humans who consult an LLM vs LLM agents as neighbours: individual outputs vs collective
# diversity (Doshi & Hauser 2024).
#
# Set `CULTURESIM_RESULTS` to a results folder of `studies/llm_consultation.toml` (default: the latest
# under `results/llm_consultation/`). Open as a notebook with `jupytext --to notebook analysis/llm_consultation.py`.

# %%
import os

import polars as pl

from culturesim.api import latest_results, load_results, trajectories, verdicts

results = load_results(os.environ.get("CULTURESIM_RESULTS") or latest_results("llm_consultation"))
print(results.manifest["study"], "-", len(results.manifest["runs"]), "runs,", results.final_generation, "generations")

# %% [markdown]
# ## Preregistered hypotheses

# %%
with pl.Config(tbl_cols=-1, tbl_width_chars=160):
    print(verdicts(results).select("id", "outcome", "direction", "estimate", "ci_low", "ci_high", "p_value", "verdict"))

# %% [markdown]
# ## How much of the culture is machine-written, and is it new?

# %%
for metric in ("llm_trait_share", "semantic_diversity", "novelty"):
    trajectories(results.metrics, metric).savefig(results.folder / f"nb_{metric}.png", dpi=150)
print(results.traits.group_by("condition", "author_kind").len().sort("condition", "author_kind"))
