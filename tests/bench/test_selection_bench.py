"""`zooscope bench selection` end to end on a tiny zoo, checked against scipy.stats.weightedtau."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import weightedtau

from zooscope.bench.selection import LOTO, evaluate_selection, ranking_metrics
from zooscope.zoo import Zoo

SPEC = "zooscope.zoo.models:small_cnn"
KW = {"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 8}
MODELS = ("m-all", "m-low", "m-noisy")
TARGETS = ("t-high", "t-parity")
# hand-made truth: different orders on the two targets
TRUTH = {("m-all", "t-high"): 0.91, ("m-low", "t-high"): 0.74, ("m-noisy", "t-high"): 0.80,
         ("m-all", "t-parity"): 0.88, ("m-low", "t-parity"): 0.90, ("m-noisy", "t-parity"): 0.70}


def _train(seed: int, classes: list[int], noise: float, path) -> None:
    from zooscope.nets.datasets import load_dataset
    from zooscope.nets.models import save_checkpoint, small_cnn

    ds = load_dataset("builtin:digits?classes=" + ",".join(map(str, classes)))
    y = ds.y.clone()
    g = torch.Generator().manual_seed(seed)
    flip = torch.rand(len(y), generator=g) < noise
    y[flip] = torch.randint(0, len(classes), (int(flip.sum()),), generator=g)
    model = small_cnn(**(KW | {"num_classes": len(classes)}), seed=seed)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(2):
        for i in range(0, len(y), 128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(ds.x[i:i + 128]), y[i:i + 128]).backward()
            opt.step()
    save_checkpoint(model, path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("benchzoo")
    zoo = Zoo.create(root / "zoo")
    zoo.configure(probe_n=128)
    zoo.add_dataset("src-all", "builtin:digits")
    zoo.add_dataset("src-low", "builtin:digits?classes=0,1,2,3,4")
    zoo.add_dataset("t-high", "builtin:digits?classes=5,6,7,8,9&n=200")
    zoo.add_dataset("t-parity", "builtin:digits?task=parity&n=200")
    for i, (name, classes, noise, src) in enumerate([("m-all", list(range(10)), 0.0, "src-all"),
                                                     ("m-low", [0, 1, 2, 3, 4], 0.0, "src-low"),
                                                     ("m-noisy", list(range(10)), 0.8, "src-all")]):
        path = root / f"{name}.safetensors"
        _train(i, classes, noise, path)
        kw = KW | {"num_classes": len(classes)}
        zoo.add_model(name, SPEC, path, kwargs=kw, trained_on=src)
    truth = pd.DataFrame([{"model": m, "dataset": d, "metric": "accuracy", "value": v, "seed": 0, "lr": 1e-3}
                          for (m, d), v in TRUTH.items()])
    truth_path = root / "truth.csv"
    truth.to_csv(truth_path, index=False)
    return zoo, truth_path


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "zooscope.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)


def _expected_tau(zoo: Zoo, target: str, column: str, methods: list[str] | None) -> float:
    kw = {} if methods is None else {"methods": methods}
    table = zoo.select(target, k=3, **kw).set_index("model")
    score = [float(table.loc[m, column]) for m in sorted(MODELS)]
    acc = [TRUTH[(m, target)] for m in sorted(MODELS)]
    return float(weightedtau(score, acc)[0])


def test_bench_selection_cli_matches_weightedtau(tiny, tmp_path):
    zoo, truth_path = tiny
    png = tmp_path / "bench.png"
    seeds = tmp_path / "truth_seeds.csv"
    pd.DataFrame([{"model": m, "dataset": d, "metric": "accuracy", "value": v + dv, "seed": s}
                  for (m, d), v in TRUTH.items() for s, dv in ((0, 0.01), (1, -0.01 if m == "m-low" else 0.0))]
                 ).to_csv(seeds, index=False)
    r = _cli("bench", "selection", "--zoo", str(zoo.root), "--truth", str(truth_path), "--methods", "logme,hscore",
             "--history", "loto", "--format", "json", "--plot", str(png), "--truth-seeds", str(seeds))
    assert r.returncode == 0, r.stderr
    rows = pd.DataFrame(json.loads(r.stdout))
    per = rows[rows["dataset"] != "(mean)"].set_index(["method", "dataset"])
    assert set(per.index.get_level_values(0)) >= {"logme", "hscore", "default"}
    for target in TARGETS:
        for method in ("logme", "hscore"):
            assert per.loc[(method, target), "tau_w"] == pytest.approx(_expected_tau(zoo, target, method, [method]),
                                                                       abs=1e-9)  # JSON keeps 10 digits
        assert per.loc[("default", target), "tau_w"] == pytest.approx(_expected_tau(zoo, target, "score", None),
                                                                      abs=1e-9)  # JSON keeps 10 digits
    mean = rows[rows["dataset"] == "(mean)"].set_index("method")
    assert mean.loc["logme", "tau_w"] == pytest.approx(per.xs("logme")["tau_w"].mean())
    selected = per[~per.index.get_level_values(0).str.startswith(("static:", "ceiling:"))]
    assert (selected["seconds"] > 0).all() and (selected["regret@1"] >= 0).all()  # source-acc: NaN, none recorded
    assert {"static:family-oracle", "static:source-acc", "static:params"} <= set(per.index.get_level_values(0))
    assert mean.loc["default", "delta_tau_w"] == 0.0
    for target in TARGETS:  # noise ceiling: mean over the 2 seeds of tau_w(seed mean, seed)
        vals = {s: [TRUTH[(m, target)] + (0.01 if s == 0 else (-0.01 if m == "m-low" else 0.0)) for m in MODELS]
                for s in (0, 1)}
        mean_v = np.mean([vals[0], vals[1]], axis=0)
        want = np.mean([weightedtau(mean_v, vals[s])[0] for s in (0, 1)])
        assert per.loc[("ceiling:seed-vs-mean", target), "tau_w"] == pytest.approx(want, abs=1e-9)
    assert mean.loc["logme", "delta_tau_w"] == pytest.approx(
        (per.xs("logme")["tau_w"] - per.xs("default")["tau_w"]).mean())
    assert mean.loc["logme", "ci_low"] <= mean.loc["logme", "delta_tau_w"] <= mean.loc["logme", "ci_high"]
    assert png.is_file() and png.stat().st_size > 1000
    if not hasattr(zoo, "record_result"):
        assert "loto skipped" in r.stderr


def test_bench_selection_table_and_errors(tiny, tmp_path):
    zoo, truth_path = tiny
    r = _cli("bench", "selection", "--zoo", str(zoo.root), "--truth", str(truth_path), "--methods", "logme")
    assert r.returncode == 0, r.stderr
    assert "tau_w" in r.stdout and "t-parity" in r.stdout and "mean over targets" in r.stdout
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"model": ["nope"], "dataset": ["t-high"], "metric": ["accuracy"], "value": [0.5]}).to_csv(bad)
    r = _cli("bench", "selection", "--zoo", str(zoo.root), "--truth", str(bad))
    assert r.returncode == 2 and "does not have" in r.stderr


def test_ranking_metrics_regret_and_nan():
    acc = [0.9, 0.7, 0.8, 0.6]
    m = ranking_metrics([0.1, 0.9, 0.5, 0.2], acc, names=list("abcd"))
    assert m["regret@1"] == pytest.approx(0.2) and m["regret@3"] == pytest.approx(0.1)
    assert m["tau_w"] == pytest.approx(weightedtau([0.1, 0.9, 0.5, 0.2], acc)[0])
    m = ranking_metrics([0.1, 0.9, 0.5, 0.95], acc, names=list("abcd"), ks=(1, 4))
    assert m["regret@1"] == pytest.approx(0.3) and m["regret@4"] == 0.0
    m = ranking_metrics([np.nan, -5.0, -6.0, -7.0], acc, names=list("abcd"))  # NaN = worst, not 0
    assert m["regret@1"] == pytest.approx(0.2) and m["regret@3"] == pytest.approx(0.1)


class _HistoryZoo(Zoo):
    """A zoo with an in-memory result history that logs what each select call could see."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._res: dict[tuple[str, str, str], float] = {}
        self.seen: list[tuple[str, set]] = []

    def record_result(self, model, dataset, value, metric="accuracy"):
        self._res[(model, dataset, metric)] = float(value)

    def remove_result(self, model, dataset, metric="accuracy"):
        del self._res[(model, dataset, metric)]

    def results(self):
        return pd.DataFrame([{"model": m, "dataset": d, "metric": k, "value": v} for (m, d, k), v in self._res.items()],
                            columns=["model", "dataset", "metric", "value"])

    def select(self, dataset, k=10, **options):
        self.seen.append((dataset, set(self._res)))
        return super().select(dataset, k, **options)


def test_loto_records_other_targets_only_and_cleans_up(tiny):
    zoo, truth_path = tiny
    hz = _HistoryZoo.open(zoo.root)
    hz.record_result("m-all", "src-all", 0.99)  # pre-existing history stays untouched
    bench = evaluate_selection(hz, truth_path, ["logme"], history="loto")
    assert LOTO in set(bench.summary["method"])
    truth_keys = {(m, d, "accuracy") for (m, d) in TRUTH}
    loto_calls = [(t, keys) for t, keys in hz.seen if keys & truth_keys]
    assert len(hz.seen) == 3 * len(TARGETS) and len(loto_calls) == len(TARGETS)  # logme, default, loto per target
    for target, keys in loto_calls:
        others = {(m, d, "accuracy") for (m, d) in TRUTH if d != target}
        assert others <= keys
        assert not any(d == target for (_m, d, _k) in keys)
    assert {t for t, _ in loto_calls} == set(TARGETS)
    assert set(hz._res) == {("m-all", "src-all", "accuracy")}


# ---------------------------------------------------------------------------------------------- 3-target toy
class _ToyZoo:
    """A duck-typed zoo whose select returns fixed scores: the statistics of bench selection, checked by hand."""

    SCORES: ClassVar[dict] = {  # method -> target -> model -> score
        None: {"t1": {"a": 3, "b": 2, "c": 1, "d": 0}, "t2": {"a": 0, "b": 1, "c": 2, "d": 3},
               "t3": {"a": 1, "b": 0, "c": 3, "d": 2}},
        "logme": {"t1": {"a": 3, "b": 1, "c": 2, "d": 0}, "t2": {"a": 3, "b": 2, "c": 1, "d": 0},
                  "t3": {"a": 0, "b": 3, "c": 1, "d": 2}},
    }

    def models(self):
        mlp = "zooscope.zoo.models:mlp"
        return pd.DataFrame([
            {"name": "a", "spec": mlp, "kwargs": {"in_features": 4, "hidden": [8]}, "tags": {"family": "f1"},
             "metrics": {"source_train_acc": 0.9}},
            {"name": "b", "spec": mlp, "kwargs": {"in_features": 4, "hidden": [16]}, "tags": {"family": "f1"},
             "metrics": {"source_train_acc": 0.7}},
            {"name": "c", "spec": mlp, "kwargs": {"in_features": 4, "hidden": [32]}, "tags": {"family": "f2"},
             "metrics": {}},
            {"name": "d", "spec": mlp, "kwargs": {"in_features": 4, "hidden": [64]}, "tags": {"family": "f2"},
             "metrics": {"source_train_acc": 0.8}}])

    def datasets(self):
        return pd.DataFrame({"name": ["t1", "t2", "t3"]})

    def select(self, dataset, k=10, method=None, candidates=None):
        s = self.SCORES[method][dataset]
        return pd.DataFrame({"model": list(s), "score": [float(v) for v in s.values()]})


TOY_TRUTH = {"t1": {"a": 0.90, "b": 0.80, "c": 0.85, "d": 0.70}, "t2": {"a": 0.60, "b": 0.75, "c": 0.70, "d": 0.65},
             "t3": {"a": 0.50, "b": 0.95, "c": 0.55, "d": 0.60}}
TOY_SEEDS = {0: {"a": 0.01, "b": -0.02, "c": 0.0, "d": 0.01}, 1: {"a": -0.01, "b": 0.02, "c": -0.01, "d": 0.0},
             2: {"a": 0.0, "b": 0.0, "c": 0.01, "d": -0.01}}


def _toy_truth():
    return pd.DataFrame([{"model": m, "dataset": t, "metric": "accuracy", "value": v}
                         for t, d in TOY_TRUTH.items() for m, v in d.items()])


def test_bootstrap_interval_equals_one_computed_by_hand_on_a_3_target_toy():
    bench = evaluate_selection(_ToyZoo(), _toy_truth(), ["logme"], n_resamples=2000, seed=7)
    # by hand: per-target tau_w of logme and of the default, the paired differences, 2000 seeded resamples
    diffs = []
    for t in ("t1", "t2", "t3"):
        acc = [TOY_TRUTH[t][m] for m in "abcd"]
        lm = weightedtau([_ToyZoo.SCORES["logme"][t][m] for m in "abcd"], acc)[0]
        de = weightedtau([_ToyZoo.SCORES[None][t][m] for m in "abcd"], acc)[0]
        diffs.append(lm - de)
    diffs = np.array(diffs)
    rng = np.random.default_rng(7)
    means = np.array([diffs[rng.integers(0, 3, 3)].mean() for _ in range(2000)])
    lo, hi = np.percentile(means, [2.5, 97.5])
    row = bench.summary.set_index("method").loc["logme"]
    assert row["delta_tau_w"] == pytest.approx(diffs.mean(), abs=1e-12)
    assert row["ci_low"] == pytest.approx(lo, abs=1e-12) and row["ci_high"] == pytest.approx(hi, abs=1e-12)
    assert row["paired"] == 3 and lo <= diffs.mean() <= hi
    default = bench.summary.set_index("method").loc["default"]
    assert default["delta_tau_w"] == 0.0 and np.isnan(default["ci_low"])


def test_regrets_family_tau_statics_and_noise_ceiling_on_the_toy():
    seeds = pd.DataFrame([{"model": m, "dataset": t, "metric": "accuracy", "value": TOY_TRUTH[t][m] + dv, "seed": s}
                          for t in TOY_TRUTH for s, d in TOY_SEEDS.items() for m, dv in d.items()])
    bench = evaluate_selection(_ToyZoo(), _toy_truth(), ["logme"], static=True, truth_seeds=seeds)
    pt = bench.per_target.set_index(["method", "dataset"])
    # t3: logme picks b (0.95, the best): no regret; the default picks c (0.55): regret 0.40, relative 0.40/0.05
    assert pt.loc[("logme", "t3"), "regret@1"] == pytest.approx(0.0)
    assert pt.loc[("default", "t3"), "regret@1"] == pytest.approx(0.40)
    assert pt.loc[("default", "t3"), "relerr@1"] == pytest.approx(0.40 / 0.05)
    assert pt.loc[("default", "t3"), "regret@3"] == pytest.approx(0.35)  # top 3 = c, d, a: best 0.60
    # within-family tau_w needs >= 3 models per family: the toy's two families have 2 each
    assert pt["tau_w_family"].isna().all()
    # family oracle: f1 = {a, b}, f2 = {c, d}; on t1 f1 mean 0.85 > f2 0.775
    oracle = bench.scores[(bench.scores["method"] == "static:family-oracle") & (bench.scores["dataset"] == "t1")]
    assert oracle.set_index("model")["score"].to_dict() == pytest.approx({"a": 0.85, "b": 0.85, "c": 0.775,
                                                                          "d": 0.775})
    src = bench.scores[(bench.scores["method"] == "static:source-acc") & (bench.scores["dataset"] == "t1")]
    assert np.isnan(src.set_index("model").loc["c", "score"])  # no recorded source accuracy: ranked last
    params = bench.scores[(bench.scores["method"] == "static:params") & (bench.scores["dataset"] == "t2")]
    p = params.set_index("model")["score"]
    assert p["a"] < p["b"] < p["c"] < p["d"]
    assert pt.loc[("static:params", "t2"), "tau_w"] == pytest.approx(
        weightedtau([p[m] for m in "abcd"], [TOY_TRUTH["t2"][m] for m in "abcd"])[0])
    # noise ceiling: mean over seeds of tau_w(seed mean, seed)
    for t in TOY_TRUTH:
        vals = np.array([[TOY_TRUTH[t][m] + TOY_SEEDS[s][m] for m in "abcd"] for s in TOY_SEEDS])
        want = np.mean([weightedtau(vals.mean(0), v)[0] for v in vals])
        assert pt.loc[("ceiling:seed-vs-mean", t), "tau_w"] == pytest.approx(want)
