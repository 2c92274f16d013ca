"""benchmarks/transfergraph_records.py on a synthetic records file (the real one is never committed)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "transfergraph_records.py"


@pytest.fixture(scope="module")
def T():
    spec = importlib.util.spec_from_file_location("transfergraph_records", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def _records(n_models: int = 10, n_data: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    A, B = rng.normal(size=(n_models, 2)), rng.normal(size=(n_data, 2))
    acc = 0.7 + 0.05 * A @ B.T
    rows = [{"": i, "model": f"org/m{m}", "finetuned_dataset": f"d{d}", "test_accuracy": acc[m, d]}
            for i, (m, d) in enumerate((m, d) for m in range(n_models) for d in range(n_data))]
    return pd.DataFrame(rows)


def test_checkout_and_git_dir_read_the_same_matrix_with_duplicates_averaged(T, tmp_path):
    df = _records()
    dup = df.iloc[[0]].assign(test_accuracy=df["test_accuracy"].iloc[0] + 0.1)  # a repeated run of (m0, d0)
    drop = (df["model"] == "org/m9") & (df["finetuned_dataset"].isin(["d0", "d1", "d2"]))  # m9: 3/6 filled
    df = pd.concat([df[~drop], dup], ignore_index=True)
    repo = tmp_path / "checkout"
    (repo / "doc").mkdir(parents=True)
    df.to_csv(repo / "doc" / "records.csv", index=False)
    a = T.accuracy_matrix(T.read_records(repo))
    assert a.shape == (9, 6)  # m9 (50 % filled) dropped at min_fill 0.8
    assert a.loc["org/m0", "d0"] == pytest.approx(df["test_accuracy"].iloc[0] + 0.05)
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the checkout path was tested, the git-dir path needs git")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for cmd in (["init", "-q"], ["add", "doc/records.csv"], ["commit", "-qm", "r"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, env=env)
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True, env=env)
    b = T.accuracy_matrix(T.read_records(bare))
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(FileNotFoundError):
        T.read_records(tmp_path / "nowhere")


def test_leave_one_dataset_out_is_exact_on_a_planted_rank2_matrix(T):
    df = _records()
    mat = T.accuracy_matrix(pd.DataFrame({"model": df["model"], "dataset": df["finetuned_dataset"],
                                          "accuracy": df["test_accuracy"]}))
    per = T.leave_one_dataset_out(mat, ks=(3,), ranks=(2,), alpha=1e-9)
    exact = per[per["method"] == "rank2-k3"]
    assert len(exact) == 6 and (exact["tau_w"] > 0.999).all() and (exact["regret@1"] < 1e-9).all()
    s = T.summarize(per, n_resamples=200)
    assert set(s["method"]) == {"prior", "rank2-k3", "rank2-k3-toward-prior"}
    assert (s["ci_low"] <= s["tau_w"] + 1e-12).all() and (s["tau_w"] <= s["ci_high"] + 1e-12).all()
