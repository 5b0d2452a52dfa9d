"""Studies: conditions x replicates, run in lockstep, stored with provenance."""
