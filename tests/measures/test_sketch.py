"""CountSketch / OSNAP operators, the streamed accumulator, JL projections and the gradient-kernel indices."""

import numpy as np
import pytest
from scipy import stats

import zooscope.measures as M
from zooscope import ZooscopeInputError
from zooscope.measures.sketch import (
    CountSketch,
    SketchAccumulator,
    center_kernel,
    grad_kernel_cka,
    grad_kernel_euclidean,
    grad_kernel_nbs,
    gradient_kernel,
    jl_project,
    kernel_euclidean,
    kernel_index_matrix,
    signed_permutation,
    sketched_kernel,
)

EXACT = 1e-12  # algebraically equal quantities in float64
ROUND = 1e-9
NBS_ROUND = 1e-8  # sqrt of round-off-level eigenvalues


def related(rng, n=120):
    """Two layers' (F, G) that share a latent, ReLU features (mean-dominated, as in real networks)."""
    Z = rng.normal(size=(n, 5))
    Fa = np.maximum(Z @ rng.normal(size=(5, 30)) + 0.5 * rng.normal(size=(n, 30)), 0)
    Ga = Z[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(n, 4))
    Fb = np.maximum(Z @ rng.normal(size=(5, 25)) + rng.normal(size=(n, 25)), 0)
    Gb = Z[:, 2:] @ rng.normal(size=(3, 4)) + rng.normal(size=(n, 4))
    return Fa, Ga, Fb, Gb


# ---- the operator ----------------------------------------------------------------------------------------------

def test_sketch_column_depends_only_on_seed_and_index():
    cs = CountSketch(32, T=4, seed=7)
    rows, signs = cs.buckets(np.arange(100))
    rows2, signs2 = cs.buckets(np.arange(40, 60))  # another batching of the same examples
    np.testing.assert_array_equal(rows[:, 40:60], rows2)
    np.testing.assert_array_equal(signs[:, 40:60], signs2)
    np.testing.assert_array_equal(rows, CountSketch(32, T=4, seed=7).buckets(np.arange(100))[0])
    assert not np.array_equal(rows, CountSketch(32, T=4, seed=8).buckets(np.arange(100))[0])
    for t in range(4):  # one non-zero per row chunk [8t, 8t + 8)
        assert rows[t].min() >= 8 * t and rows[t].max() < 8 * (t + 1)
    assert set(np.unique(signs)) == {-1.0, 1.0}


def test_sketch_hash_is_roughly_uniform():
    rows, signs = CountSketch(16, seed=3).buckets(np.arange(16_000))
    counts = np.bincount(rows[0], minlength=16)
    assert stats.chisquare(counts).pvalue > 1e-4
    assert abs(signs.mean()) < 0.05


def test_accumulator_streams_to_the_one_shot_product(rng):
    F, G = rng.normal(size=(50, 7)), rng.normal(size=(50, 3))
    acc = SketchAccumulator(12, T=3, seed=2)
    for i in range(0, 50, 13):
        acc.update(F[i : i + 13], G[i : i + 13])
    S = CountSketch(12, T=3, seed=2).toarray(50).astype(float)
    np.testing.assert_allclose(acc.SF_, S @ F, atol=ROUND)
    np.testing.assert_allclose(acc.SG_, S @ G, atol=ROUND)
    # the xfer formula, not S (FF^T ∘ GG^T) S^T
    expected = (S @ F @ F.T @ S.T / 3) * (S @ G @ G.T @ S.T / 3)
    np.testing.assert_allclose(acc.kernel(), expected, rtol=ROUND)
    assert not np.allclose(acc.kernel(), S @ gradient_kernel(F, G) @ S.T / 9, rtol=1e-3)


def test_explicit_indices_and_float32_accumulator_agree(rng):
    F, G = rng.normal(size=(20, 5)), rng.normal(size=(20, 5))
    a = SketchAccumulator(8, seed=1).update(F, G)
    b = SketchAccumulator(8, seed=1, dtype="float32")
    order = rng.permutation(20)
    b.update(F[order], G[order], index=order)  # any order, as long as each example keeps its index
    np.testing.assert_allclose(b.kernel(), a.kernel(), rtol=1e-5)


def test_signed_permutation_sketch_reproduces_unsketched_indices(rng):
    Fa, Ga, Fb, Gb = related(rng)
    exact = [kernel_index_matrix([gradient_kernel(Fa, Ga)], [gradient_kernel(Fb, Gb)], idx)[0, 0]
             for idx in ("cka", "nbs")]
    S = signed_permutation(len(Fa), seed=5)
    Ka = SketchAccumulator(S=S).update(Fa, Ga).kernel()
    Kb = SketchAccumulator(S=S).update(Fb, Gb).kernel()
    assert kernel_index_matrix([Ka], [Kb], "cka")[0, 0] == pytest.approx(exact[0], abs=EXACT)
    # NBS sums square roots of eigenvalues: the ~1e-16 noise of the null eigenvalues shows up as ~1e-10
    assert kernel_index_matrix([Ka], [Kb], "nbs")[0, 0] == pytest.approx(exact[1], abs=NBS_ROUND)


def test_sketched_cka_converges_towards_exact_as_M_grows(rng):
    # Collisions inflate sketched CKA; the gap shrinks with M (curve in benchmarks/RESULTS.md)
    Fa, Ga, Fb, Gb = related(rng, n=400)
    exact = grad_kernel_cka(Fa, Ga, Fb, Gb)
    err = {m: np.mean([abs(grad_kernel_cka(Fa, Ga, Fb, Gb, sketch_dim=m, seed=s) - exact) for s in range(8)])
           for m in (16, 64, 256)}
    assert err[256] < err[64] < err[16]
    assert err[256] < 0.5 * err[16]


def test_sketch_is_unbiased_for_the_mean_embedding(rng):
    # E[S^T S] = T I, so E[(SF)^T (SG)] / T = F^T G = sum_i f_i ⊗ g_i
    F, G = rng.normal(size=(30, 4)) + 1, rng.normal(size=(30, 3))
    draws = []
    for s in range(2000):
        acc = SketchAccumulator(8, T=2, seed=s).update(F, G)
        draws.append(acc.SF_.T @ acc.SG_ / 2)
    target = F.T @ G
    assert np.abs(np.mean(draws, axis=0) - target).max() < 0.06 * np.abs(target).max()  # MC error ~ 1/sqrt(2000)


def test_sketch_errors_say_the_fix(rng):
    with pytest.raises(ZooscopeInputError, match="must be <= M"):
        CountSketch(2, T=3)
    with pytest.raises(ZooscopeInputError, match="'M' of CountSketch must be an int >= 1"):
        CountSketch(0)
    acc = SketchAccumulator(4)
    with pytest.raises(ZooscopeInputError, match="same examples"):
        acc.update(np.ones((3, 2)), np.ones((2, 2)))
    with pytest.raises(ZooscopeInputError, match="call update"):
        acc.kernel()
    acc.update(rng.normal(size=(3, 2)), rng.normal(size=(3, 2)))
    with pytest.raises(ZooscopeInputError, match="Feature sizes changed"):
        acc.update(rng.normal(size=(3, 5)), rng.normal(size=(3, 2)))
    with pytest.raises(ZooscopeInputError, match="one column per example"):
        SketchAccumulator(S=signed_permutation(3)).update(np.ones((4, 2)), np.ones((4, 2)))
    with pytest.raises(ZooscopeInputError, match="NaN"):
        SketchAccumulator(4).update(np.full((2, 2), np.nan), np.ones((2, 2)))


# ---- kernels and indices ---------------------------------------------------------------------------------------

def test_indices_agree_with_core_cka_and_nbs(rng):
    Fa, Ga, Fb, Gb = related(rng, n=60)
    Ka, Kb = gradient_kernel(Fa, Ga), gradient_kernel(Fb, Gb)
    assert kernel_index_matrix([Ka], [Kb], "cka")[0, 0] == pytest.approx(M.cka(Ka, Kb), abs=ROUND)
    if "nbs" not in M.available():
        pytest.skip("zooscope.measures.nbs is not registered yet (measures core)")
    assert kernel_index_matrix([Ka], [Kb], "nbs")[0, 0] == pytest.approx(M.nbs(Ka, Kb), abs=1e-7)


def test_nbs_equals_the_eigenvalue_formula(rng):
    # xfer: sum sqrt(clip(real(eigvals(Kc1 Kc2)), 0)) / sqrt(tr Kc1 tr Kc2)
    Fa, Ga, Fb, Gb = related(rng, n=40)
    Ka, Kb = gradient_kernel(Fa, Ga), gradient_kernel(Fb, Gb)
    A, B = center_kernel(Ka), center_kernel(Kb)
    lam = np.real(np.linalg.eigvals(A @ B)).clip(0)
    expected = np.sqrt(lam).sum() / np.sqrt(np.trace(A) * np.trace(B))
    assert kernel_index_matrix([Ka], [Kb], "nbs")[0, 0] == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("measure", [grad_kernel_cka, grad_kernel_nbs])
def test_grad_indices_self_one_and_invariances(rng, measure):
    Fa, Ga, Fb, Gb = related(rng, n=50)
    base = measure(Fa, Ga, Fb, Gb)
    assert 0 <= base <= 1
    assert measure(Fa, Ga, Fa, Ga) == pytest.approx(1.0, abs=ROUND)
    Q = stats.ortho_group.rvs(Fb.shape[1], random_state=rng)
    R = stats.ortho_group.rvs(Gb.shape[1], random_state=rng)
    assert measure(Fa, Ga, 3.0 * Fb @ Q, Gb) == pytest.approx(base, abs=ROUND)  # f: rotation, scale
    assert measure(Fa, Ga, Fb, 0.2 * Gb @ R) == pytest.approx(base, abs=ROUND)  # g: separately
    W = rng.normal(size=(Fb.shape[1], Fb.shape[1]))
    assert measure(Fa, Ga, Fb @ W, Gb) != pytest.approx(base, abs=1e-4)  # not invertible-linear invariant
    assert measure(Fa, Ga, Fb + 5.0, Gb) != pytest.approx(base, abs=1e-4)  # f ⊗ g is not translation invariant


def test_euclidean_is_a_raw_kernel_metric(rng):
    Ks = [gradient_kernel(rng.normal(size=(20, 4)), rng.normal(size=(20, 3))) for _ in range(3)]
    d = kernel_index_matrix(Ks, Ks, "euclidean")
    np.testing.assert_allclose(np.diag(d), 0, atol=EXACT)
    assert d[0, 2] <= d[0, 1] + d[1, 2] + ROUND
    assert kernel_euclidean(Ks[0], 2 * Ks[0]) == pytest.approx(np.linalg.norm(Ks[0]), rel=ROUND)
    F, G = rng.normal(size=(20, 4)), rng.normal(size=(20, 3))
    assert grad_kernel_euclidean(F, G, 2 * F, G) == pytest.approx(3 * np.linalg.norm(gradient_kernel(F, G)))


def test_measures_are_registered_with_metadata():
    for name in ("grad_kernel_cka", "grad_kernel_nbs", "grad_kernel_euclidean", "kernel_euclidean"):
        assert name in M.available()
    assert M.get("grad_kernel_cka").inputs == "other" and not M.get("grad_kernel_cka").layerwise
    assert M.get("kernel_euclidean").inputs == "gram" and M.get("kernel_euclidean").is_metric
    assert not M.get("grad_kernel_euclidean").larger_is_more_similar


def test_kernel_checks_say_the_fix(rng):
    K = gradient_kernel(rng.normal(size=(5, 2)), rng.normal(size=(5, 2)))
    with pytest.raises(ZooscopeInputError, match="share one size"):
        kernel_index_matrix([K], [K[:4, :4]])
    with pytest.raises(ZooscopeInputError, match="not symmetric"):
        kernel_euclidean(K + np.triu(np.ones((5, 5)), 1), K)
    with pytest.raises(ZooscopeInputError, match="constant after centring"):
        kernel_index_matrix([K], [np.ones((5, 5))], "cka")
    with pytest.raises(ZooscopeInputError, match="Did you mean 'nbs'"):
        kernel_index_matrix([K], [K], "nbss")
    with pytest.raises(ZooscopeInputError, match="same examples"):
        gradient_kernel(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ZooscopeInputError, match="same M"):
        sketched_kernel(np.ones((3, 2)), np.ones((4, 2)))


# ---- JL --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gaussian", "sparse"])
def test_jl_preserves_norms_and_inner_products_approximately(rng, kind):
    X = rng.normal(size=(6, 5000))
    Z = jl_project(X, 512, seed=3, kind=kind)
    np.testing.assert_allclose(Z @ Z.T / (X @ X.T).diagonal().mean(), X @ X.T / (X @ X.T).diagonal().mean(),
                               atol=0.2)  # JL: relative error ~ sqrt(2 / dim) per entry
    np.testing.assert_array_equal(Z, jl_project(X, 512, seed=3, kind=kind))
    assert not np.allclose(Z, jl_project(X, 512, seed=4, kind=kind))


def test_gaussian_jl_is_prefix_consistent_and_sparse_is_sparse(rng):
    X = rng.normal(size=(2, 5000))
    Xpad = np.hstack([X[:, :4096], np.zeros((2, 904))])
    np.testing.assert_allclose(jl_project(X[:, :4096], 16, seed=1), jl_project(Xpad, 16, seed=1), atol=ROUND)
    R = jl_project(np.eye(400), 64, seed=0, kind="sparse")
    assert 0.02 < (R != 0).mean() < 0.08  # density 1/sqrt(400) = 0.05
    with pytest.raises(ZooscopeInputError, match="'kind' of jl_project"):
        jl_project(X, 4, kind="gauss")
