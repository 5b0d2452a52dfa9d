"""culturesim."""
