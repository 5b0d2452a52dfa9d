# %% [markdown]
# # Norm shift
#
# Do the culture's norms drift along a norm axis when LLM agents join?
#
# Set `CULTURESIM_RESULTS` to a results folder of `studies/norm_shift.toml` (default: the latest
# under `results/norm_shift/`). Open as a notebook with `jupytext --to notebook analysis/norm_shift.py`.

# %%
import os

import polars as pl

from culturesim.api import latest_results, load_results, trajectories, verdicts

results = load_results(os.environ.get("CULTURESIM_RESULTS") or latest_results("norm_shift"))
print(results.manifest["study"], "-", len(results.manifest["runs"]), "runs,", results.final_generation, "generations")

# %% [markdown]
# ## Preregistered hypotheses

# %%
with pl.Config(tbl_cols=-1, tbl_width_chars=160):
    print(verdicts(results).select("id", "outcome", "direction", "estimate", "ci_low", "ci_high", "p_value", "verdict"))

# %% [markdown]
# ## Position on the norm axes over generations

# %%
axes = sorted(m for m in results.metrics["metric"].unique() if m.startswith("norm_position:"))
for metric in axes:
    trajectories(results.metrics, metric).savefig(results.folder / f"nb_{metric.replace(':', '_')}.png", dpi=150)
print(axes)
