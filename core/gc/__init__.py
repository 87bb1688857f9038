"""Garbage collection: clean-up that could not be done when it was due (see core.gc.job)."""
