# %% [markdown]
# # Homogenization
#
# Does the share of LLM agents reduce the semantic diversity of the culture?
#
# Set `CULTURESIM_RESULTS` to a results folder of `studies/homogenization.toml` (default: the latest
# under `results/homogenization/`). Open as a notebook with `jupytext --to notebook analysis/homogenization.py`.

# %%
import os

import polars as pl

from culturesim.api import latest_results, load_results, trajectories, verdicts

results = load_results(os.environ.get("CULTURESIM_RESULTS") or latest_results("homogenization"))
print(results.manifest["study"], "-", len(results.manifest["runs"]), "runs,", results.final_generation, "generations")

# %% [markdown]
# ## Preregistered hypotheses

# %%
with pl.Config(tbl_cols=-1, tbl_width_chars=160):
    print(verdicts(results).select("id", "outcome", "direction", "estimate", "ci_low", "ci_high", "p_value", "verdict"))

# %% [markdown]
# ## Dose-response: final diversity by LLM-agent share

# %%
final = results.metrics.filter(
    pl.col("generation") == results.final_generation, pl.col("metric").is_in(["semantic_diversity", "vendi"])
)
dose = final.join(results.runs.select("run_id", "population.llm_share"), on="run_id")
print(
    dose.group_by("metric", "population.llm_share")
    .agg(pl.col("value").mean(), pl.len())
    .sort("metric", "population.llm_share")
)
for metric in ("semantic_diversity", "vendi"):
    trajectories(results.metrics, metric).savefig(results.folder / f"nb_{metric}.png", dpi=150)
