"""zooscope.zoo."""
