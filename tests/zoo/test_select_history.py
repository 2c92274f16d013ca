"""zoo.select's default ranker, methods by name, the recorded-results history and the budgeted refinement."""

import numpy as np
import pytest
from zoo_helpers import KW, SPEC, checkpoints

from zooscope import Zoo
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.select import DEFAULT_COLUMNS, METHODS


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    zoo = Zoo.create(tmp_path_factory.mktemp("histzoo"))
    zoo.configure(probe_n=128)
    zoo.add_dataset("low", "builtin:digits?classes=0,1,2,3,4")
    zoo.add_dataset("high", "builtin:digits?classes=5,6,7,8,9")
    zoo.add_dataset("parity", "builtin:digits")
    paths = checkpoints()
    for i, name in enumerate(("a", "b", "c")):
        zoo.add_model(name, SPEC, paths[i], kwargs=KW, trained_on="parity" if i == 0 else None)
    return zoo


def _scores(table):
    return table.set_index("model")["score"]


def test_default_uses_prelogits_scores_and_writes_only_cache(zoo):
    before = zoo.results()
    t = zoo.select("low", k=3, max_examples=300)
    assert list(t.columns[:3]) == ["rank", "model", "score"]
    assert set(DEFAULT_COLUMNS) <= set(t.columns) and {"history", "result_on_target", "why"} <= set(t.columns)
    assert np.isfinite(t[list(DEFAULT_COLUMNS)].to_numpy(float)).all()
    # the default score is the rank-normalised robust z-mean (median/MAD) of the members (3 models: {0, .5, 1})
    from zooscope.zoo.select.fusion import robust_zmean

    fused, _ = robust_zmean(t, list(DEFAULT_COLUMNS))
    np.testing.assert_allclose(t["score"], (fused.rank() - 1) / 2)
    assert (t["history"] == "").all() and t["result_on_target"].isna().all()
    assert any((zoo.path / "cache" / "select_features").glob("*.npz"))
    assert len(zoo.results()) == len(before) == 0


def test_a_saturated_member_is_dropped_and_named_in_why(zoo, monkeypatch):
    import zooscope.zoo.select as sel

    real = sel.score_table

    def saturated_leep(*args, **kwargs):  # a member that ties every candidate, as on an easy target
        table, ds = real(*args, **kwargs)
        if "leep" in table:
            table["leep"] = 1.0
        return table, ds

    monkeypatch.setattr(sel, "score_table", saturated_leep)
    t = zoo.select("low", k=3, max_examples=300)
    assert all("dropped on this target: LEEP (constant: 3 of 3 models tie at 1)" in w for w in t["why"])
    from zooscope.zoo.select.fusion import robust_zmean

    rest = [c for c in DEFAULT_COLUMNS if c != "leep"]
    fused, _ = robust_zmean(t, rest)
    np.testing.assert_allclose(t["score"], (fused.rank() - 1) / 2)  # LEEP contributes nothing


def test_logme_column_is_logme_on_prelogits_features(zoo):
    from zooscope.embed.prelogits import prelogits_features
    from zooscope.measures.transfer import logme
    from zooscope.nets.datasets import load_dataset, probe_subset
    from zooscope.nets.models import build_model

    t = zoo.select("low", k=3, method="logme", max_examples=300).set_index("model")
    m = zoo.catalog.get_model("b")
    sub = probe_subset(load_dataset("builtin:digits?classes=0,1,2,3,4"), 300, seed=0)
    f, _ = prelogits_features(build_model(m.spec, m.kwargs, m.checkpoint), sub.x)
    assert t.loc["b", "logme"] == pytest.approx(logme(f, sub.y.numpy()), rel=1e-9)


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("task2vec", "fisher", "history")])
def test_every_method_by_name(zoo, method):
    t = zoo.select("low", k=3, method=method, max_examples=300)
    assert method in t.columns and len(t) == 3
    col = t.set_index("model")[method]
    if col.notna().sum() > 1:  # score = that column, rank-normalised
        assert t["model"].iloc[0] == col.idxmax()


def test_bad_method_name(zoo):
    with pytest.raises(ZooscopeInputError, match="Did you mean 'logme'"):
        zoo.select("low", method="logm")
    with pytest.raises(ZooscopeInputError, match="not both"):
        zoo.select("low", method="logme", methods=("leep",))


def test_results_round_trip(zoo):
    zoo.record_result("a", "high", 0.5)
    zoo.record_result("a", "high", 0.6)  # overwrites
    zoo.record_result("a", "high", 10.0, metric="loss_rank")
    res = zoo.results()
    assert res[["model", "dataset", "metric", "value"]].values.tolist() == [["a", "high", "accuracy", 0.6],
                                                                            ["a", "high", "loss_rank", 10.0]]
    zoo.remove_result("a", "high", metric="loss_rank")
    zoo.remove_result("a", "high")
    assert zoo.results().empty
    with pytest.raises(ZooscopeInputError, match="No 'accuracy' result"):
        zoo.remove_result("a", "high")
    with pytest.raises(ZooscopeInputError, match="Did you mean"):
        zoo.record_result("aa", "high", 0.5)
    with pytest.raises(ZooscopeInputError, match="finite"):
        zoo.record_result("a", "high", float("nan"))


def test_recorded_results_move_the_ranking_their_way(zoo):
    base = _scores(zoo.select("low", k=3, max_examples=300))
    worst = base.idxmin()
    others = [m for m in base.index if m != worst]
    try:
        for ds in ("high", "parity"):
            zoo.record_result(worst, ds, 0.95)
            zoo.record_result(others[0], ds, 0.40)
            zoo.record_result(others[1], ds, 0.30)
        t = zoo.select("low", k=3, max_examples=300)
        up = _scores(t)
        assert up[worst] - up[others].mean() > base[worst] - base[others].mean()
        row = t.set_index("model").loc[worst]
        assert row["history"].endswith("(2 past)") and float(row["history"].split()[0]) > 0
        assert "history: above average" in row["why"] and ("high" in row["why"] or "parity" in row["why"])
        for ds in ("high", "parity"):  # the opposite outcome moves it the other way
            zoo.record_result(worst, ds, 0.10)
            zoo.record_result(others[0], ds, 0.90)
        down = _scores(zoo.select("low", k=3, max_examples=300))
        assert down[worst] - down[others].mean() < up[worst] - up[others].mean()
        off = _scores(zoo.select("low", k=3, max_examples=300, history=False))
        np.testing.assert_allclose(off[base.index], base)
    finally:
        for r in zoo.results().itertuples():
            zoo.remove_result(r.model, r.dataset, r.metric)


def test_a_result_on_the_target_is_shown_never_used(zoo):
    base = zoo.select("low", k=3, max_examples=300)
    worst = _scores(base).idxmin()
    try:
        zoo.record_result(worst, "low", 0.99)
        for m in base["model"]:
            if m != worst:
                zoo.record_result(m, "low", 0.01)
        t = zoo.select("low", k=3, max_examples=300)
        assert t["model"].tolist() == base["model"].tolist()
        np.testing.assert_allclose(t["score"], base["score"])
        row = t.set_index("model").loc[worst]
        assert row["result_on_target"] == pytest.approx(0.99) and row["history"] == ""
        assert "not used to rank" in row["why"]
        h = zoo.select("low", k=3, max_examples=300, method="history")
        assert np.isnan(h["score"]).all()  # only target results: no prior at all
    finally:
        for r in zoo.results().itertuples():
            zoo.remove_result(r.model, r.dataset, r.metric)


def test_finetune_top_reorders_the_top_by_validation_accuracy(zoo):
    t = zoo.select("low", k=3, max_examples=300, finetune_top=2, epochs=1)
    acc = t["finetune_val_acc"]
    assert acc.iloc[:2].notna().all() and acc.iloc[2:].isna().all()
    # re-ordered only beyond the seed noise
    from zooscope.zoo.select.refine import SEED_NOISE

    assert acc.iloc[1] - acc.iloc[0] <= SEED_NOISE and ((acc.iloc[:2] >= 0) & (acc.iloc[:2] <= 1)).all()
    base = zoo.select("low", k=3, max_examples=300)
    assert set(t["model"].iloc[:2]) == set(base["model"].iloc[:2])


def test_fisher_method_compares_each_models_own_fisher_on_source_and_target(zoo):
    from zooscope.embed.task2vec import task_distance
    from zooscope.zoo.select.distances import pair_fisher as _pair_fisher

    t = zoo.select("low", k=3, method="fisher").set_index("model")
    assert np.isnan(t.loc["b", "fisher_distance"]) and np.isnan(t.loc["c", "fisher_distance"])  # source unknown
    ctx = zoo.select_context()
    a = ctx.catalog.get_model("a")
    want = task_distance(_pair_fisher(ctx, a, ctx.catalog.get_dataset("parity"), 0),
                         _pair_fisher(ctx, a, ctx.catalog.get_dataset("low"), 0), kind="sym")
    assert t.loc["a", "fisher_distance"] == pytest.approx(want) and 0 <= want <= 1
    assert t.index[0] == "a" and "own Fisher" in t.loc["a", "why"]
    # the target's own Fisher is itself: distance 0
    assert task_distance(_pair_fisher(ctx, a, ctx.catalog.get_dataset("parity"), 0),
                         _pair_fisher(ctx, a, ctx.catalog.get_dataset("parity"), 0), kind="sym") == pytest.approx(0)
