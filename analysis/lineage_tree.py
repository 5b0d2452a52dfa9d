# %% [markdown]
# # Lineage of the most widespread trait
#
# Which texts does the culture's most widespread trait at the final generation descend from, and who
# wrote them? One dot per variant in its lineage, at the generation it was born, coloured by author:
# human, LLM, or LLM-assisted (a human's copy an LLM retold or advised).
#
# Set `CULTURESIM_RESULTS` to a results folder whose study saves the population (the default:
# the latest `results/quickstart/`). Open as a notebook with `jupytext --to notebook analysis/lineage_tree.py`.

# %%
import os

import matplotlib.pyplot as plt
import polars as pl

from culturesim.api import ancestry, latest_results, lineage_tree, load_results, most_widespread

results = load_results(os.environ.get("CULTURESIM_RESULTS") or latest_results("quickstart"))
final = results.final_generation
population = pl.read_parquet(results.folder / "population.parquet")
run_id, trait_id, holders = most_widespread(population, generation=final)
lineage = ancestry(results.traits, run_id, trait_id)
machine = sum(data["machine"] for _, data in lineage.nodes(data=True))
print(f"run {run_id}: trait {trait_id} is held by {holders} agents at generation {final}")
print(f"its lineage has {lineage.number_of_nodes()} variants, {machine} of them written by an LLM")
print("the trait:", lineage.nodes[trait_id]["text"])

# %%
fig = lineage_tree(lineage, title=f"lineage of trait {trait_id} ({run_id}, {holders} holders)")
plt.show()
