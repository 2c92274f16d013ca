"""Compact CKA vectors (issue 22 item 6): ``configure(cka_dtype="float16")`` halves the stored signatures and moves
CKA by at most 2⁻¹⁰ (measured against the exact linear CKA of the activations)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner
from zoo_helpers import make_zoo

from zooscope._validation import ZooscopeInputError
from zooscope.cli import app
from zooscope.embed.signature import gram_signature
from zooscope.measures import linear_cka


@pytest.mark.parametrize("seed", range(5))
def test_float16_signatures_give_cka_within_2_to_the_minus_10(seed):
    rng = np.random.default_rng(seed)
    n = 128
    X = rng.normal(size=(n, 40))
    Y = X @ rng.normal(size=(40, 30)) + rng.normal(scale=1.0 + seed, size=(n, 30))  # related, CKA in (0, 1)
    exact = linear_cka(X, Y)
    sx, sy = gram_signature(X), gram_signature(Y)
    half = float(np.dot(sx.astype(np.float16).astype(np.float64), sy.astype(np.float16).astype(np.float64)))
    single = float(np.dot(sx.astype(np.float32).astype(np.float64), sy.astype(np.float32).astype(np.float64)))
    assert abs(single - exact) < 1e-6
    assert abs(half - exact) <= 2.0 ** -10
    assert abs(half - exact) > 0 or abs(single - exact) == 0  # float16 really rounds


def test_a_float16_zoo_stores_half_and_answers_like_a_float32_zoo(tmp_path):
    exact = make_zoo(tmp_path / "f32", n=3, copy=False, embed=True)
    compact = make_zoo(tmp_path / "f16", n=3, copy=False, embed=False)
    assert compact.settings()["storage"] == {"cka_dtype": "float32"}
    compact.configure(cka_dtype="float16")
    compact.embed(kinds=("cka",))
    sizes = {}
    for name, zoo in (("f32", exact), ("f16", compact)):
        rows = zoo.catalog.embeddings(kind="cka")
        arrays = [np.load(zoo.store.path(r.vector_key)) for r in rows]
        assert {a.dtype for a in arrays} == {np.dtype(name.replace("f", "float"))}
        sizes[name] = sum(zoo.store.path(r.vector_key).stat().st_size for r in rows)
    assert sizes["f16"] < 0.55 * sizes["f32"]
    listed = {}
    for name in ("f32", "f16"):  # `ls` shows the storage per model
        result = CliRunner().invoke(app, ["ls", "--zoo", str(tmp_path / name), "--format", "csv"])
        assert result.exit_code == 0, result.output
        listed[name] = pd.read_csv(io.StringIO(result.stdout)).set_index("name")["vectors_mb"]
    assert listed["f32"].sum() * 2**20 == pytest.approx(sizes["f32"], rel=1e-3)
    assert (listed["f16"] < 0.55 * listed["f32"]).all()
    a = exact.similar("cnn0", k=2, by="cka").set_index("model")["score"]
    b = compact.similar("cnn0", k=2, by="cka").set_index("model")["score"]
    assert list(a.index) == list(b.index)
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), atol=2.0 ** -10)


def test_configure_refuses_other_dtypes(tmp_path):
    zoo = make_zoo(tmp_path / "z", n=1, copy=False, embed=False)
    with pytest.raises(ZooscopeInputError, match="cka_dtype"):
        zoo.configure(cka_dtype="int8")
