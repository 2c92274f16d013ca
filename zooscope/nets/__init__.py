"""zooscope.nets: the networks and data every layer uses, below `zooscope.embed` (imports nothing above it).

- `spec`: `ModelSpec` (arch string + kwargs + checkpoint) and the arch-string grammar; torch-free on import.
- `models`: `build_model`, safe checkpoint loading and saving, the built-in factories (`small_cnn`, `mlp`).
- `datasets` (with `_sources`): dataset sources -> ``(x, y)`` tensors, probe subsets, content hashes.
- `training`: the one small training loop (demo zoos, tests, ``select``'s opt-in fine-tuning).
"""
