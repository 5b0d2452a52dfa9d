"""Figure 6: attractor analysis of semantic diversity, final vs initial value per run (homogenization study)."""

from _paper import make_figure

if __name__ == "__main__":
    make_figure("attractor_semantic_diversity", "fig06_attractor")
