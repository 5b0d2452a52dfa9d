"""Figure 3: share of agents holding human-written, LLM-written and LLM-assisted texts (llm_consultation study)."""

from _paper import make_figure

if __name__ == "__main__":
    make_figure("machine_ancestry", "fig03_machine_ancestry")
