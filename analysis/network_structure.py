# %% [markdown]
# # Network structure
#
# Do clustered networks protect diversity from LLM homogenization?
#
# Set `CULTURESIM_RESULTS` to a results folder of `studies/network_structure.toml` (default: the latest
# under `results/network_structure/`). Open as a notebook with `jupytext --to notebook analysis/network_structure.py`.

# %%
import os

import polars as pl

from culturesim.api import latest_results, load_results, trajectories, verdicts

results = load_results(os.environ.get("CULTURESIM_RESULTS") or latest_results("network_structure"))
print(results.manifest["study"], "-", len(results.manifest["runs"]), "runs,", results.final_generation, "generations")

# %% [markdown]
# ## Preregistered hypotheses

# %%
with pl.Config(tbl_cols=-1, tbl_width_chars=160):
    print(verdicts(results).select("id", "outcome", "direction", "estimate", "ci_low", "ci_high", "p_value", "verdict"))

# %% [markdown]
# ## Final diversity by network kind and LLM share

# %%
final = results.metrics.filter(
    pl.col("generation") == results.final_generation, pl.col("metric") == "semantic_diversity"
)
cells = final.join(results.runs.select("run_id", "network.kind", "population.llm_share"), on="run_id")
print(cells.group_by("network.kind", "population.llm_share").agg(pl.col("value").mean(), pl.len()).sort("network.kind"))
trajectories(results.metrics, "community_divergence").savefig(results.folder / "nb_community_divergence.png", dpi=150)
