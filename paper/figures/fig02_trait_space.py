"""Figure 2: the culture of one run in meaning space at three generations, by author (homogenization study)."""

from _paper import make_figure

if __name__ == "__main__":
    make_figure("trait_space", "fig02_trait_space")
