"""One small zoo for the report tests: 3 CNNs + a byte-identical copy + a model with a hostile name, two datasets
with task vectors, recorded results and a kept selection benchmark (built once per session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "zoo"))
from zoo_helpers import KW, SPEC, checkpoints, make_zoo

# names are data: this one must show as text, never run or become markup ('/' is not allowed in a name)
HOSTILE = "<img src=x onerror=alert(1)>&\"'$x$ <b>bold"


@pytest.fixture(scope="session")
def report_zoo(tmp_path_factory):
    from zooscope.bench.selection import evaluate_selection

    root = tmp_path_factory.mktemp("report") / "zoo"
    zoo = make_zoo(root, n=3, embed=False)
    zoo.add_model(HOSTILE, SPEC, checkpoints(3)[1], kwargs=KW, trained_on="digits")
    zoo.add_dataset("digits-0to4", "builtin:digits?classes=0,1,2,3,4")
    zoo.embed(kinds=("cka", "task2vec"))
    for name, acc in (("cnn0", 0.91), ("cnn1", 0.82), (HOSTILE, 0.7)):
        zoo.record_result(name, "digits-0to4", acc)
    truth = pd.DataFrame({"model": ["cnn0", "cnn1", "cnn2"], "dataset": "digits-0to4", "metric": "accuracy",
                          "value": [0.91, 0.82, 0.86]})
    evaluate_selection(zoo, truth, ["logme"], default=False)
    return zoo


@pytest.fixture(scope="session")
def report_file(report_zoo, tmp_path_factory):
    return report_zoo.report(tmp_path_factory.mktemp("page") / "zoo.html")
