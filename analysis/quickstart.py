# %% [markdown]
# # Quickstart
#
# Does a 20 % share of LLM agents change how a small culture's diversity evolves?
#
# Set `CULTURESIM_RESULTS` to a results folder of `studies/quickstart.toml` (default: the latest
# under `results/quickstart/`). Open as a notebook with `jupytext --to notebook analysis/quickstart.py`.

# %%
import os

import polars as pl

from culturesim.api import latest_results, load_results, trajectories, verdicts

results = load_results(os.environ.get("CULTURESIM_RESULTS") or latest_results("quickstart"))
print(results.manifest["study"], "-", len(results.manifest["runs"]), "runs,", results.final_generation, "generations")

# %% [markdown]
# ## Preregistered hypotheses

# %%
with pl.Config(tbl_cols=-1, tbl_width_chars=160):
    print(verdicts(results).select("id", "outcome", "direction", "estimate", "ci_low", "ci_high", "p_value", "verdict"))

# %% [markdown]
# ## Diversity and machine ancestry over generations

# %%
for metric in ("semantic_diversity", "machine_ancestry"):
    trajectories(results.metrics, metric).savefig(results.folder / f"nb_{metric}.png", dpi=150)
