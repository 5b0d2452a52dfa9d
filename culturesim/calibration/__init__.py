"""The attractor calibration: a step of running an LLM study, below the checks and the studies that use it."""
