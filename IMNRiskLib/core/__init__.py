"""Errors, files and the one safe-output helper, progress, workers, json."""
