import numpy as np
import pandas as pd
import pytest
from zoo_helpers import KW, SPEC, checkpoints

from zooscope import Zoo
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.select import combine_ranks


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    zoo = Zoo.create(tmp_path_factory.mktemp("selzoo"))
    zoo.configure(probe_n=128)
    zoo.add_dataset("digits", "builtin:digits")
    zoo.add_dataset("low", "builtin:digits?classes=0,1,2,3,4")
    zoo.add_dataset("high", "builtin:digits?classes=5,6,7,8,9")
    paths = checkpoints()
    zoo.add_model("on-digits", SPEC, paths[0], kwargs=KW, trained_on="digits")
    zoo.add_model("on-high", SPEC, paths[1], kwargs=KW, trained_on="high")
    zoo.add_model("unknown", SPEC, paths[2], kwargs=KW)
    return zoo


def test_combine_ranks_is_the_mean_of_rank_normalised_columns():
    t = pd.DataFrame({"a": [3.0, 1.0, 2.0], "d": [0.1, 0.3, np.nan]})
    got = combine_ranks(t, ["a", "d"], smaller_is_better=["d"])
    # a: ranks best=1 -> [1, 0, 0.5]; d (smaller better, one missing) -> [1, 0, nan]
    np.testing.assert_allclose(got, [1.0, 0.0, 0.5])


def test_select_by_task_distance_explains_itself(zoo):
    table = zoo.select("low", k=5, methods=("task2vec",))
    assert table.columns.tolist()[:4] == ["rank", "model", "score", "task_distance"]
    assert set(table["model"]) == {"on-digits", "on-high", "unknown"}
    known = table.set_index("model")
    assert np.isnan(known.loc["unknown", "task_distance"])
    assert "unknown" in known.loc["unknown", "why"]
    assert np.isfinite(known.loc["on-digits", "task_distance"])
    assert "task (digits" in known.loc["on-digits", "why"]
    assert table["rank"].tolist() == [1, 2, 3]


def test_select_with_transferability_scores(zoo):
    from zooscope.measures import transfer

    if not hasattr(transfer, "logme"):
        pytest.skip("zooscope.measures.transfer.logme is not written yet")
    table = zoo.select("low", k=2, methods=("task2vec", "logme"))
    assert len(table) == 2 and {"logme", "task_distance", "why"} <= set(table.columns)
    assert np.isfinite(table["logme"]).all()


def test_select_bad_inputs(zoo, tmp_path):
    with pytest.raises(ZooscopeInputError, match="at least 2"):  # a one-class dataset is refused when it is added
        zoo.add_dataset("one", "builtin:digits?classes=3")
    with pytest.raises(ZooscopeInputError, match="Did you mean 'low'"):
        zoo.select("lowe")
    with pytest.raises(ZooscopeInputError, match="Did you mean 'logme'"):
        zoo.select("low", methods=("logmee",))
    with pytest.raises(ZooscopeInputError, match="no models"):
        empty = Zoo.create(tmp_path / "e")
        empty.add_dataset("low", "builtin:digits?classes=0,1")
        empty.select("low", methods=("task2vec",))
    other = Zoo.create(tmp_path / "o")
    other.add_dataset("big", "builtin:digits?size=16")
    other.add_model("cnn", SPEC, checkpoints()[0], kwargs=KW, input_shape=(1, 8, 8))
    with pytest.raises(ZooscopeInputError, match="shape"):
        other.select("big", methods=("task2vec",))
