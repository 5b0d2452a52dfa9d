# %% [markdown]
# # Model collapse in a mixed culture
#
# The LLM agents' model is retrained every two generations on texts its culture holds: frozen vs
# replace vs accumulate vs replace with half human-written texts. Does the model lose the original
# distribution (held-out negative log-likelihood rises, Shumailov et al. 2024), do accumulation or
# human data limit that (Gerstgrasser et al. 2024), and what happens to the culture meanwhile?
#
# Set `CULTURESIM_RESULTS` to a results folder of `studies/model_collapse.toml` (default: the latest
# under `results/model_collapse/`). Open as a notebook with `jupytext --to notebook analysis/model_collapse.py`.

# %%
import os

import polars as pl

from culturesim.api import AdapterStore, draw_figure, latest_results, load_results, verdicts

results = load_results(os.environ.get("CULTURESIM_RESULTS") or latest_results("model_collapse"))
print(results.manifest["study"], "-", len(results.manifest["runs"]), "runs,", results.final_generation, "generations")
print("retrainings:", len(results.manifest.get("adapters", [])))

# %% [markdown]
# ## Preregistered hypotheses

# %%
with pl.Config(tbl_cols=-1, tbl_width_chars=160):
    print(verdicts(results).select("id", "outcome", "direction", "estimate", "ci_low", "ci_high", "p_value", "verdict"))

# %% [markdown]
# ## The model beside the culture
#
# The model that answered each generation (the base model until the first adapter answers): its
# held-out score, the diversity of its own retellings of held-out texts, and how far the mean of those
# retellings (its attractor) has moved from the base model's. Last panel: the culture's semantic
# diversity.

# %%
draw_figure(results.folder, "model_and_culture").savefig(results.folder / "nb_model_and_culture.png", dpi=150)

# %% [markdown]
# ## Every retraining: what it trained on and how it went

# %%
retrainings = (
    AdapterStore(results.folder).table().join(results.runs.select("run_id", "condition"), on="run_id", how="left")
)
with pl.Config(tbl_cols=-1, tbl_width_chars=160, tbl_rows=40):
    print(
        retrainings.filter(pl.col("generation") > 0)
        .group_by("condition", "generation")
        .agg(
            pl.col("texts").mean(),
            pl.col("human_share").mean(),
            pl.col("first_loss").mean(),
            pl.col("last_loss").mean(),
            pl.col("heldout_nll").mean(),
            pl.col("seconds").mean(),
        )
        .sort("condition", "generation")
    )
