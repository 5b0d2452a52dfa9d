"""Figure 4: the network at the last generation, agents coloured by trait cluster (network_structure study)."""

from _paper import make_figure

if __name__ == "__main__":
    make_figure("network_snapshot", "fig04_network_snapshot")
