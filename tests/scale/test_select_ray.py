"""select --backend ray (issue 16): the first halving round's feature passes run as Ray tasks through the job runner
of embed (`zooscope.zoo.parallel.run_jobs`); the ranking equals the local one."""


import pandas as pd

SPEC = "zooscope.zoo.models:small_cnn"
KW = {"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 8}


def _zoo(root):
    import zooscope as zs

    zoo = zs.Zoo.create(root)
    zoo.add_dataset("low", "builtin:digits?classes=0,1,2,3,4")
    for i in range(6):
        zoo.add_model(f"m{i}", SPEC, kwargs={**KW, "seed": i}, input_shape=(1, 8, 8))
    return zoo


def test_select_first_round_on_ray_equals_local(ray_cluster, tmp_path):
    budget = 1e-9  # below one model at full size: rounds until the budget is spent, round 1 on Ray
    local = _zoo(tmp_path / "a").select("low", k=6, budget_s=budget)
    z = _zoo(tmp_path / "b")
    remote = z.select("low", k=6, budget_s=budget, backend="ray")
    cols = ["model", "score", "examples", "round", "logme", "leep", "nce", "hscore"]
    pd.testing.assert_frame_equal(local[cols], remote[cols], rtol=1e-4)
    assert list((tmp_path / "b" / "cache" / "select_inputs").glob("*.safetensors"))  # the round's inputs, in cache/
