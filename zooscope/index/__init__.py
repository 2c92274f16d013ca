"""zooscope.index."""
