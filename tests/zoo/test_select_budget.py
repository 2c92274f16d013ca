"""select's time budget (issue 16): the cost model, the halving plan, nested subsets, and the 8-model acceptance."""

import numpy as np
import pytest
from zoo_helpers import KW, SPEC, checkpoints

from zooscope import Zoo
from zooscope.nets.cost import COST_KEY, seconds_per_example
from zooscope.zoo.select.budget import ladder, nested_order, plan_rounds


def test_ladder_halves_down_to_the_smallest_round():
    assert ladder(1000, 32) == [62, 125, 250, 500, 1000]
    assert ladder(20, 32) == [20]


def test_nested_order_prefixes_are_stratified_and_nested():
    y = np.repeat(np.arange(5), [40, 30, 20, 6, 4])
    sizes = ladder(len(y), 12)
    order = nested_order(y, sizes, seed=3)
    assert sorted(order.tolist()) == list(range(len(y)))  # a permutation
    for n in sizes:
        counts = np.bincount(y[order[:n]], minlength=5)
        expected = np.bincount(y, minlength=5) * n / len(y)
        assert np.all(np.abs(counts - expected) <= 1.0 + 1e-9), (n, counts, expected)


def test_plan_rounds_closed_form():
    sizes = [125, 250, 500, 1000]
    assert plan_rounds(8, 1e-3, sizes, k=10, budget_s=None).sizes == (1000,)
    assert plan_rounds(8, 1e-3, sizes, k=10, budget_s=8.0).keep == (8,)  # everything fits: one round
    # budget for 4 models at full size: F=2 survivors, 8 on 250, 4 on 500, 2 on 1000 -> 2 + 1 + 1 = 4 s exactly
    p = plan_rounds(8, 1e-3, sizes, k=10, budget_s=4.0)
    assert (p.sizes, p.keep) == ((250, 500, 1000), (8, 4, 2)) and p.seconds == pytest.approx(4.0)
    assert plan_rounds(8, 1e-3, sizes, k=1, budget_s=100.0).keep == (8,)  # no halving when everything fits
    assert plan_rounds(8, 1e-3, sizes, k=1, budget_s=7.0).keep[-1] == 1
    tiny = plan_rounds(8, 1e-3, sizes, k=3, budget_s=0.5)  # not even one model at full size: budget spent
    assert tiny.spent and tiny.sizes[0] == 125 and tiny.keep[0] == 8 and tiny.sizes[-1] < 1000


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """8 small CNNs that take digits: one trained on digits (the planted best), seven untrained."""
    zoo = Zoo.create(tmp_path_factory.mktemp("budget"))
    zoo.add_dataset("digits", "builtin:digits")
    zoo.add_dataset("low", "builtin:digits?classes=0,1,2,3,4")
    zoo.add_model("trained", SPEC, checkpoints(1)[0], kwargs=KW, trained_on="digits")
    for i in range(7):
        zoo.add_model(f"random{i}", SPEC, kwargs={**KW, "seed": 100 + i})
    return zoo


def test_add_model_records_flops_and_seconds(toy):
    m = toy.catalog.get_model("trained")
    cost = m.metrics[COST_KEY]
    assert cost["flops_per_example"] > 0 and cost["s_per_batch"] > 0 and cost["batch"] > 0
    # the same architecture and input shape: the same FLOP count, whatever the weights
    assert toy.catalog.get_model("random0").metrics[COST_KEY]["flops_per_example"] == cost["flops_per_example"]


def test_budget_for_four_ranks_all_eight_by_halving(toy):
    before = [(m.name, m.metrics) for m in toy.catalog.models()]
    models = toy.catalog.models()
    s = float(np.mean([seconds_per_example(m.metrics[COST_KEY]) for m in models]))
    n_full = min(1000, toy.catalog.get_dataset("low").size)
    budget = 4 * s * n_full * (1 + 1e-6)  # deterministic: the plan reads the recorded costs, no timing
    table = toy.select("low", k=8, budget_s=budget)
    assert len(table) == 8 and set(table["model"]) == {m.name for m in models}
    assert table["rank"].tolist() == list(range(1, 9))
    assert table.iloc[0]["model"] == "trained"
    assert {"examples", "round"} <= set(table.columns)
    ex = table["examples"].tolist()
    assert ex == sorted(ex, reverse=True) and len(set(ex)) == 3 and ex[0] == n_full
    assert table["round"].tolist() == ["3/3"] * 2 + ["2/3"] * 2 + ["1/3"] * 4
    assert "every round" in table.iloc[0]["why"]
    assert "stopped at round 1/3" in table.iloc[-1]["why"]
    assert [(m.name, m.metrics) for m in toy.catalog.models()] == before  # a query writes nothing to the zoo
    # a repeat reads the cached chunk features and gives the same table
    again = toy.select("low", k=8, budget_s=budget)
    assert again["model"].tolist() == table["model"].tolist()


def test_no_budget_and_an_ample_one_score_everything_on_every_example(toy):
    plain = toy.select("low", k=8, budget_s=None)
    ample = toy.select("low", k=8, budget_s=1e9)
    assert "examples" not in plain.columns and plain["model"].tolist() == ample["model"].tolist()
    assert plain.iloc[0]["model"] == "trained"


def test_bad_budget(toy):
    from zooscope._validation import ZooscopeInputError

    with pytest.raises(ZooscopeInputError, match="budget_s"):
        toy.select("low", budget_s=0)
    with pytest.raises(ZooscopeInputError, match="backend"):
        toy.select("low", budget_s=1e-9, backend="spark")


def test_a_model_without_recorded_cost_is_measured_into_the_cache(tmp_path):
    zoo = Zoo.create(tmp_path / "old")
    zoo.add_dataset("low", "builtin:digits?classes=0,1,2,3,4")
    for i in range(3):
        zoo.add_model(f"m{i}", SPEC, kwargs={**KW, "seed": i})
    zoo.catalog.update_model("m0", metrics={})  # as added before the cost model
    before = [(m.name, m.metrics) for m in zoo.catalog.models()]
    table = zoo.select("low", k=3, budget_s=1e-9)
    assert len(table) == 3 and "examples" in table
    assert len(list((tmp_path / "old" / "cache" / "select_cost").glob("*.npy"))) == 1
    assert [(m.name, m.metrics) for m in zoo.catalog.models()] == before


def test_cli_budget_parsing():
    from zooscope._validation import ZooscopeInputError
    from zooscope.cli.select import parse_budget

    assert parse_budget("120s") == 120.0 and parse_budget("2m") == 120.0 and parse_budget("90") == 90.0
    assert parse_budget("none") is None
    for bad in ("0s", "-3", "soon", "1e999s", "nan"):
        with pytest.raises(ZooscopeInputError, match="--budget"):
            parse_budget(bad)


def test_cli_select_with_budget_shows_rounds(toy):
    from typer.testing import CliRunner

    from zooscope.cli import app

    res = CliRunner().invoke(app, ["select", "low", "--zoo", str(toy.root), "--k", "8", "--budget", "0.000001s",
                                   "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert "examples" in res.output.splitlines()[0] and "round" in res.output.splitlines()[0]
