"""select above `STAGE1_ALL` models (issue 16): a zoo of 210 tiny untrained CNNs (vectors only, no training), built
through the public API; candidates come from the task2vec index, the history prior and the CKA duplicate groups."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "zoo"))
from zoo_helpers import KW, SPEC

from zooscope import Zoo
from zooscope.zoo.select import STAGE1_ALL

N = 210


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    zoo = Zoo.create(tmp_path_factory.mktemp("big"))
    zoo.configure(probe_n=64)
    zoo.add_dataset("low", "builtin:digits?classes=0,1,2,3,4")
    zoo.add_dataset("high", "builtin:digits?classes=5,6,7,8,9")
    zoo.add_dataset("digits", "builtin:digits")
    sources = ("low", "high", "digits")
    for i in range(N - 3):
        zoo.add_model(f"m{i:03d}", SPEC, kwargs={**KW, "width": 4, "seed": i}, trained_on=sources[i % 3],
                      input_shape=(1, 8, 8))
    for j in range(3):  # exact copies of m000 (CKA 1): one group, scored once
        zoo.add_model(f"m000-copy{j}", SPEC, kwargs={**KW, "width": 4, "seed": 0}, trained_on="low",
                      input_shape=(1, 8, 8))
    zoo.embed(kinds=("cka", "task2vec"))
    # history: m100 (trained on 'low', far from nothing) did best on a past task
    for i, v in ((100, 0.99), (101, 0.5), (102, 0.4), (103, 0.3)):
        zoo.record_result(f"m{i:03d}", "high", v)
    return zoo


def test_large_zoo_returns_candidates_from_the_indices(big):
    assert len(big.catalog.models()) == N > STAGE1_ALL
    before = len(big.catalog.embeddings())
    table = big.select("low", k=10, pool=12, budget_s=None)
    assert 1 <= len(table) <= 10 and table["rank"].tolist() == list(range(1, len(table) + 1))
    full = big.select("low", k=N, pool=12, budget_s=None)
    names = set(full["model"])
    assert 12 <= len(names) < N  # a candidate set, not the whole zoo
    # task2vec neighbours: the nearest source tasks' models (trained on 'low', the target itself)
    assert (full["trained_on"] == "low").sum() >= 12 - 1
    assert "m100" in names  # from the history prior
    # the copies of m000 form one group scored once: equal scores, the group named, said in why
    g = full[full["model"].str.startswith("m000")]
    assert len(g) == 4 and g["group"].nunique() == 1 and g["group"].iloc[0] in set(g["model"])
    assert g["score"].nunique() == 1 and g["rank"].max() - g["rank"].min() == 3  # ranked together
    assert sum("near-duplicate of" in w for w in g["why"]) == 3 and sum("scored once" in w for w in g["why"]) == 1
    assert len(big.catalog.embeddings()) == before  # a query writes nothing to the catalog
