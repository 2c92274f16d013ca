"""One piece of advice per problem, in CLI words (issue 22 item 8): `check` and a query agree on a changed
checkpoint, and no advice names a Python function."""

from __future__ import annotations

import re

import pandas as pd
from zoo_helpers import KW, SPEC, checkpoints, make_zoo

from zooscope.zoo.integrity import model_problem
from zooscope.zoo.select.explain import why

PYTHON_WORDS = re.compile(r"remove_model|add_model|check\(fix|fix=True|zoo\.embed\(\)")


def test_check_and_queries_give_the_same_cli_advice_for_a_changed_checkpoint(tmp_path):
    zoo = make_zoo(tmp_path / "zoo", n=3, copy=False, embed=False)
    ck, gone = tmp_path / "mutable.safetensors", tmp_path / "gone.safetensors"
    ck.write_bytes(checkpoints()[1].read_bytes())
    gone.write_bytes(checkpoints()[1].read_bytes())
    zoo.add_model("mutable", SPEC, ck, kwargs=KW)
    zoo.add_model("gone", SPEC, gone, kwargs=KW)
    ck.write_bytes(checkpoints()[2].read_bytes())
    gone.unlink()
    problems = zoo.check().set_index("problem")
    for text in problems.astype(str).to_numpy().ravel():
        assert not PYTHON_WORDS.search(text), text
    changed = problems.loc["checkpoint changed"]
    advice = next(v for v in changed.astype(str) if "check --fix" in v)
    assert "`zooscope check --fix`" in advice and "`zooscope embed`" in advice
    query = model_problem(zoo.catalog.get_model("mutable"))
    assert "`zooscope check --fix`, then `zooscope embed`" in query and "--replace" not in query
    missing = " ".join(problems.loc["missing checkpoint"].astype(str))
    assert "zooscope remove model" in missing and "zooscope add-model" in missing


def test_why_names_the_most_similar_past_task_only_among_several():
    table = pd.DataFrame({"trained_on": ["digits"], "score": [1.0]}, index=pd.Index(["m"], name="model"))
    prior = pd.DataFrame({"prior": [0.5], "n_past": [1]}, index=["m"])
    one = why(table, "m", [], prior, {"mnist": 1.0}, default=False, registered={"digits"})
    assert "1 past task(s)" in one and "most similar" not in one
    two = why(table, "m", [], prior.assign(n_past=2), {"mnist": 0.7, "svhn": 0.3}, default=False,
              registered={"digits"})
    assert "most similar: mnist (sim 0.70), svhn (sim 0.30)" in two
