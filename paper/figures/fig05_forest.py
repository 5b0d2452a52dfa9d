"""Figure 5: preregistered effects with 95 % CIs, confirmatory and exploratory (homogenization study)."""

from _paper import make_figure

if __name__ == "__main__":
    make_figure("forest", "fig05_forest")
