"""Figure 7: the committed minority's tipping curve with and without LLM agents (committed_minority study)."""

from _paper import make_figure

if __name__ == "__main__":
    make_figure("tipping", "fig07_tipping")
