"""zooscope.bench."""
