# %% [markdown]
# # Explore a results folder
#
# Start here with any finished study. Set `CULTURESIM_RESULTS` to a results folder
# (`results/<study>/<hash12>`), or edit `FOLDER` below. Open this file as a notebook with
# `jupytext --to notebook analysis/explore_results.py`, or run it as a script.

# %%
import os

import polars as pl

from culturesim.api import latest_results, load_results, trajectories

FOLDER = os.environ.get("CULTURESIM_RESULTS") or latest_results("quickstart")
results = load_results(FOLDER)
print(results.manifest["study"], "-", len(results.manifest["runs"]), "runs,", results.final_generation, "generations")

# %% [markdown]
# ## Final values per condition

# %%
final = (
    results.metrics.filter(pl.col("generation") == results.final_generation)
    .group_by("condition", "metric")
    .agg(mean=pl.col("value").mean(), sd=pl.col("value").std(), runs=pl.len())
    .sort("metric", "condition")
)
print(final)

# %% [markdown]
# ## Trajectories

# %%
for metric in ("semantic_diversity", "vendi", "machine_ancestry"):
    trajectories(results.metrics, metric).savefig(results.folder / f"explore_{metric}.png", dpi=150)

# %% [markdown]
# ## Who wrote the culture? Author kinds of the traits held at the end are in the trait pool.

# %%
print(results.traits.group_by("condition", "author_kind").len().sort("condition", "author_kind"))

# %% [markdown]
# ## Texts: a sample of the LLM-written traits

# %%
for text in results.traits.filter(pl.col("author_kind") == "llm")["text"].head(5):
    print("-", text)
