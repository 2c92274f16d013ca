"""zooscope.nets: the networks and data every layer uses, below `zooscope.embed` (imports nothing above it).

- `models`: `ModelSpec` (arch string + kwargs + checkpoint, ``.build()``), `build_model`, safe checkpoint loading
  and saving, the built-in factories (`small_cnn`, `mlp`), `penultimate_layer`.
- `arch`: the arch-string grammar (`parse_spec`) and the moved factory modules old arch strings resolve through.
- `datasets` (with `_sources`): dataset sources -> ``(x, y)`` tensors, probe subsets, content hashes.
- `cost`: FLOPs per example (torch's FLOP counter) and measured seconds per batch (``select``'s budget).
- `training`: the one small training loop (demo zoos, tests, ``select``'s opt-in fine-tuning).
"""
