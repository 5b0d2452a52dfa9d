"""The bottom layer: word lists, settings, progress, and closed-form theory; imports nothing of
culturesim above it.
"""
