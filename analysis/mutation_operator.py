# %% [markdown]
# # Mutation operator
#
# Random lexical mutation vs an LLM that retells the copied text, at equal rates: novelty (the
# open-endedness signal), semantic diversity and distance to the LLM's attractor (Nisioti et al. 2024).
#
# Set `CULTURESIM_RESULTS` to a results folder of `studies/mutation_operator.toml` (default: the latest
# under `results/mutation_operator/`). Open as a notebook with `jupytext --to notebook analysis/mutation_operator.py`.

# %%
import os

import polars as pl

from culturesim.api import latest_results, load_results, trajectories, verdicts

results = load_results(os.environ.get("CULTURESIM_RESULTS") or latest_results("mutation_operator"))
print(results.manifest["study"], "-", len(results.manifest["runs"]), "runs,", results.final_generation, "generations")
print("attractor calibrations:", {key: entry["from"] for key, entry in results.manifest.get("attractors", {}).items()})

# %% [markdown]
# ## Preregistered hypotheses

# %%
with pl.Config(tbl_cols=-1, tbl_width_chars=160):
    print(verdicts(results).select("id", "outcome", "direction", "estimate", "ci_low", "ci_high", "p_value", "verdict"))

# %% [markdown]
# ## Novelty, diversity and the attractor over generations

# %%
for metric in ("novelty", "semantic_diversity", "attractor_distance"):
    trajectories(results.metrics, metric).savefig(results.folder / f"nb_{metric}.png", dpi=150)

# %% [markdown]
# ## What the two operators write: a few mutated texts per arm

# %%
mutated = results.traits.filter(pl.col("author_kind").is_in(["human_error", "human_llm_mutated"]))
print(mutated.group_by("condition", "author_kind").len().sort("condition"))
with pl.Config(fmt_str_lengths=120, tbl_rows=10):
    print(mutated.group_by("author_kind").head(3).select("author_kind", "text"))
