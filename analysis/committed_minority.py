# %% [markdown]
# # Committed minority
#
# Can a committed minority overturn a convention, and does it take fewer committed agents when half
# the population are LLM agents? The tipping point per arm, the preregistered contrasts, the name
# shares over rounds, and how the LLM agents actually played (Centola et al. 2018; Ashery, Aiello &
# Baronchelli 2025).
#
# Set `CULTURESIM_RESULTS` to a results folder of `studies/committed_minority.toml` (default: the latest
# under `results/committed_minority/`). Open as a notebook with
# `jupytext --to notebook analysis/committed_minority.py`.

# %%
import os

import polars as pl

from culturesim.api import (
    compare_tipping,
    latest_results,
    load_results,
    name_share_figure,
    run_table,
    stored_config,
    tipping_figure,
    verdicts,
)

results = load_results(os.environ.get("CULTURESIM_RESULTS") or latest_results("committed_minority"))
game = stored_config(results.manifest["config"]).coordination
print(results.manifest["study"], "-", len(results.manifest["runs"]), "runs,", results.final_generation, "rounds")
print(f"committed name {game.committed_name!r}, convention {game.established_name!r}, win share {game.win_share}")

# %% [markdown]
# ## Preregistered hypotheses

# %%
with pl.Config(tbl_cols=-1, tbl_width_chars=160):
    print(verdicts(results).select("id", "outcome", "direction", "estimate", "ci_low", "ci_high", "p_value", "verdict"))

# %% [markdown]
# ## Tipping points: one logistic curve per LLM share
#
# A run is won when the committed name is held by at least `win_share` of the agents after the last
# round. Where the runs of an arm are separated, no finite p50 exists and `bracket` says where it lies;
# `lr_p` (the curves coincide) is still a test.

# %%
runs = results.runs
outcomes = run_table(results.metrics, runs, horizon=results.final_generation, threshold=game.win_share)
fraction, group = "coordination.committed_fraction", "population.llm_share"
comparison = compare_tipping(outcomes, fraction=fraction, group=group)
with pl.Config(tbl_cols=-1, tbl_width_chars=200):
    print(comparison)
tipping_figure(outcomes, fraction=fraction, group=group, threshold=game.win_share).savefig(
    results.folder / "nb_tipping.png", dpi=150
)

# %% [markdown]
# ## The committed name and its strongest rival over rounds

# %%
name_share_figure(results.metrics, runs, fraction=fraction, panel=group, threshold=game.win_share).savefig(
    results.folder / "nb_name_shares.png", dpi=150
)

# %% [markdown]
# ## How the LLM agents played
#
# Valid answers; the share that took the first name listed (1/K without a position bias); the share
# that repeated the partner's last name; the share that best-responded to their memory.

# %%
diagnostics = ("llm_valid_share", "llm_first_option_share", "llm_matches_partner_last", "llm_best_response_share")
played = results.metrics.filter(
    pl.col("metric").is_in(diagnostics), pl.col("generation") > 0, pl.col("value").is_not_nan()
)
print(f"chance of picking the first-listed name: 1/{len(game.names)} = {1 / len(game.names):.2f}")
print(played.group_by("metric").agg(mean=pl.col("value").mean(), runs=pl.col("run_id").n_unique()).sort("metric"))
