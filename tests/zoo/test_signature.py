import json

import numpy as np
import pytest
import torch

import zooscope.measures as zm
from zooscope._validation import ZooscopeInputError
from zooscope.embed._kinds import EMBEDDINGS
from zooscope.embed.signature import (
    cka_signature,
    gram_signature,
    jl_dim,
    jl_epsilon,
    signature_similarity,
)
from zooscope.measures.sketch import jl_project as _jl_project


def jl_project(V, dim, seed=0):
    """The zoo's index projection: zooscope's one JL projection, Rademacher entries."""
    return _jl_project(np.atleast_2d(V), dim, seed, kind="rademacher")

CKA_TOL = 1e-6  # the stored (float32) form against the float64 measure


def _demo(data_dir):
    ref = json.loads((data_dir / "seedB_kornblith_demo.json").read_text())["cases"]["demo_seed1337"]
    X = np.load(data_dir / ref["X_file"])
    Y = np.load(data_dir / ref["Y_file"])
    return X, Y, ref["reference_values"]


def test_stored_signature_inner_product_is_the_demo_linear_cka(data_dir):
    X, Y, ref = _demo(data_dir)
    a, b = gram_signature(X).astype(np.float32), gram_signature(Y).astype(np.float32)
    assert a.shape == (X.shape[0] ** 2,)
    assert float(signature_similarity(a, b)[0, 0]) == pytest.approx(ref["linear_cka"], abs=CKA_TOL)


def test_debiased_signature_inner_product_is_the_demo_debiased_cka(data_dir):
    X, Y, ref = _demo(data_dir)
    a = gram_signature(X, debiased=True).astype(np.float32)
    b = gram_signature(Y, debiased=True).astype(np.float32)
    assert float(signature_similarity(a, b)[0, 0]) == pytest.approx(ref["linear_cka_debiased"], abs=CKA_TOL)


@pytest.mark.parametrize("debiased", [False, True])
def test_signature_matches_the_linear_cka_measure(rng, debiased):
    if not hasattr(zm, "linear_cka"):
        pytest.skip("zooscope.measures.linear_cka is not written yet")
    X = rng.normal(size=(60, 7)) + 100.0  # large offsets: centring must come first
    Y = X @ rng.normal(size=(7, 5)) + rng.normal(size=(60, 5))
    got = float(gram_signature(X, debiased=debiased).astype(np.float32).astype(np.float64)
                @ gram_signature(Y, debiased=debiased).astype(np.float32))
    assert got == pytest.approx(zm.linear_cka(X, Y, debiased=debiased), abs=CKA_TOL)


def test_signature_is_a_unit_vector_invariant_to_shift_scale_rotation(rng):
    X = rng.normal(size=(40, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    s = gram_signature(X)
    assert np.linalg.norm(s) == pytest.approx(1.0, abs=1e-12)
    assert float(s @ gram_signature(3.0 * X @ Q + 5.0)) == pytest.approx(1.0, abs=1e-12)


def test_jl_projection_error_is_within_the_documented_bound(rng):
    n, m, dim = 48, 30, 256
    base = rng.normal(size=(n, 5))
    sigs = np.stack([gram_signature(base @ rng.normal(size=(5, 8)) + s * rng.normal(size=(n, 8)))
                     for s in np.linspace(0.1, 3, m)]).astype(np.float32)
    exact = sigs.astype(np.float64) @ sigs.T.astype(np.float64)
    P = jl_project(sigs, dim, seed=3).astype(np.float64)
    err = np.abs(P @ P.T - exact)[np.triu_indices(m)]
    delta = 0.05
    assert np.mean(err > jl_epsilon(dim, delta)) <= delta  # the bound holds per pair w.p. >= 1 - delta
    # union bound over all pairs: with delta_all / pairs per pair, every pair is within eps w.p. >= 1 - delta_all
    assert err.max() <= jl_epsilon(dim, 1e-3 / err.size)
    assert jl_dim(jl_epsilon(dim, delta), delta) <= dim + 1


def test_jl_projection_is_seeded_and_row_independent(rng):
    V = rng.normal(size=(3, 20_000)).astype(np.float32)
    P = jl_project(V, 64, seed=1)
    np.testing.assert_allclose(P[1], jl_project(V[1], 64, seed=1)[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(P, jl_project(V, 64, seed=1))
    assert not np.allclose(P, jl_project(V, 64, seed=2))


def test_cka_kind_is_registered_and_matches_the_layer_cka(rng):
    from zooscope.embed.capture import capture
    from zooscope.nets.models import small_cnn

    assert EMBEDDINGS.get("cka").meta.subject == "model"
    model = small_cnn(in_chans=1, num_classes=10, width=4, img_size=8, seed=0).eval()
    x = torch.from_numpy(rng.normal(size=(32, 1, 8, 8)).astype(np.float32))
    sig = cka_signature(model, x)
    acts = capture(model, x)
    assert list(sig) == list(acts)
    a = acts["conv2"].double().numpy()
    b = acts["fc"].double().numpy()
    Xa, Xb = a - a.mean(0), b - b.mean(0)
    ref = np.linalg.norm(Xb.T @ Xa) ** 2 / (np.linalg.norm(Xa.T @ Xa) * np.linalg.norm(Xb.T @ Xb))
    assert sig["conv2"].dtype == np.float32 and sig["conv2"].shape == (32 * 32,)
    assert float(signature_similarity(sig["conv2"], sig["fc"])[0, 0]) == pytest.approx(ref, abs=CKA_TOL)


def test_bad_inputs_raise_clear_errors(rng):
    with pytest.raises(ZooscopeInputError, match="constant"):
        gram_signature(np.ones((10, 3)))
    with pytest.raises(ZooscopeInputError, match="at least 4"):
        gram_signature(rng.normal(size=(3, 2)), debiased=True)
    with pytest.raises(ZooscopeInputError, match="same probe set"):
        signature_similarity(np.ones(16), np.ones(25))
    with pytest.raises(ZooscopeInputError, match="dim"):
        jl_project(np.ones(8), 0)
