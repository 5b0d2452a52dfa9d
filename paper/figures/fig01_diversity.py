"""Figure 1: semantic diversity over generations per LLM-agent share (homogenization study)."""

from _paper import make_figure

if __name__ == "__main__":
    make_figure("trajectory_semantic_diversity", "fig01_diversity")
