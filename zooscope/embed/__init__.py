"""zooscope.embed."""
