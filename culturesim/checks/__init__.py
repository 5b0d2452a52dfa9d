"""Checks: the simulator against theory (validate, validate_conventions), LLM chains and the attractor
calibration, on-task checks.
"""
