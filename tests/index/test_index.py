"""FAISS indices and the vector store: exact answers, files, checksums, removal."""

import numpy as np
import pytest

from zooscope import ZooscopeInputError
from zooscope.index import VectorIndex, VectorStore, choose_factory, rerank
from zooscope.index.factory import FLAT_MAX, estimate_memory, ivf_lists

SCORE_TOL = 1e-5  # float32 inner products / squared distances of unit-scale vectors


def brute_force(X, Q, k, metric, normalized):
    """Exact top-k in float64 numpy: (scores, row indices)."""
    X, Q = X.astype(np.float64), Q.astype(np.float64)
    if normalized:
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    if metric == "ip":
        S = Q @ X.T
        order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    else:
        S = ((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1)
        order = np.argsort(S, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(S, order, axis=1), order


def clustered(rng, n, dim, centres=8, noise=0.3):
    C = rng.normal(size=(centres, dim))
    return (C[rng.integers(0, centres, n)] + noise * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("data", ["random", "clustered"])
def test_flat_topk_equals_brute_force(rng, metric, normalized, data):
    X = rng.normal(size=(300, 24)).astype(np.float32) if data == "random" else clustered(rng, 300, 24)
    Q = rng.normal(size=(17, 24)).astype(np.float32)
    ids = rng.permutation(10_000)[:300].astype(np.int64)  # arbitrary catalog ids, not 0..n-1
    index = VectorIndex.build(X, ids, metric=metric, normalized=normalized)
    D, I = index.search(Q, 10)
    want_S, want_rows = brute_force(X, Q, 10, metric, normalized)
    np.testing.assert_allclose(D, want_S, rtol=SCORE_TOL, atol=SCORE_TOL * max(1.0, np.abs(want_S).max()))
    # ids agree except where two scores tie within float32 rounding
    mismatch = I != ids[want_rows]
    assert not mismatch.any() or np.allclose(D[mismatch], want_S[mismatch], atol=1e-4)
    assert (I == ids[want_rows]).mean() > 0.99


def test_hnsw_matches_brute_force_on_clustered_data(rng):
    X = clustered(rng, 800, 16)
    index = VectorIndex.build(X, np.arange(800), factory="IDMap2,HNSW32")
    _, I = index.search(X[:50], 5)
    _, rows = brute_force(X, X[:50], 5, "ip", True)
    recall = np.mean([len(set(I[i]) & set(rows[i])) / 5 for i in range(50)])
    assert recall >= 0.95


def test_ivf_index_trains_and_answers_exactly_with_all_lists_probed(rng):
    X = clustered(rng, 400, 8)
    index = VectorIndex.build(X, np.arange(400), factory="IVF4,Flat")
    assert index.factory == "IDMap2,IVF4,Flat"
    index.nprobe = 4  # visit every list: exact
    _, I = index.search(X[:20], 3)
    _, rows = brute_force(X, X[:20], 3, "ip", True)
    assert (I[:, 0] == rows[:, 0]).all()


def test_ivf_with_too_few_vectors_to_train_raises(rng):
    with pytest.raises(ZooscopeInputError, match="trained on at least 64"):
        VectorIndex.build(rng.normal(size=(20, 8)), np.arange(20), factory="IVF64,Flat")


def test_normalized_ip_is_cosine(rng):
    X = rng.normal(size=(50, 6)) * rng.uniform(0.1, 10, size=(50, 1))
    index = VectorIndex.build(X, np.arange(50))
    D, I = index.search(X[:5] * 7.0, 1)
    assert (I[:, 0] == np.arange(5)).all()
    np.testing.assert_allclose(D[:, 0], 1.0, atol=1e-6)


def test_missing_hits_are_minus_one(rng):
    index = VectorIndex.build(rng.normal(size=(3, 4)), [5, 6, 7])
    D, I = index.search(rng.normal(size=(2, 4)), 5)
    assert (I[:, 3:] == -1).all() and np.isneginf(D[:, 3:]).all()
    assert set(I[0, :3]) == {5, 6, 7}
    l2 = VectorIndex.build(rng.normal(size=(2, 4)), [1, 2], metric="l2", normalized=False)
    D, I = l2.search(rng.normal(size=4), 3)
    assert I[0, 2] == -1 and np.isposinf(D[0, 2])


def test_dimension_mismatch_is_a_clear_error(rng):
    index = VectorIndex.build(rng.normal(size=(10, 8)), np.arange(10))
    with pytest.raises(ZooscopeInputError, match="dimension 9 but the index holds 8"):
        index.search(rng.normal(size=(2, 9)), 3)
    with pytest.raises(ZooscopeInputError, match="dimension 7"):
        index.add(rng.normal(size=(1, 7)), [99])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"ids": [0, 0, 1]}, "unique"),
    ({"ids": [0, 1]}, "3 vectors but 2 ids"),
    ({"ids": [0, -1, 2]}, ">= 0"),
    ({"ids": [0, 1, 2], "metric": "cosine"}, "'ip'"),
    ({"ids": [0, 1, 2], "factory": "NotAFactory"}, "cannot build factory"),
])
def test_bad_build_arguments_raise(rng, kwargs, match):
    with pytest.raises(ZooscopeInputError, match=match):
        VectorIndex.build(rng.normal(size=(3, 4)), **kwargs)


def test_nan_and_zero_vectors_are_refused(rng):
    X = rng.normal(size=(3, 4))
    X[1, 2] = np.nan
    with pytest.raises(ZooscopeInputError, match="NaN"):
        VectorIndex.build(X, np.arange(3))
    with pytest.raises(ZooscopeInputError, match="all-zero"):
        VectorIndex.build(np.zeros((2, 4)), np.arange(2))


def test_add_then_duplicate_id_refused(rng):
    index = VectorIndex.build(rng.normal(size=(4, 3)), np.arange(4))
    index.add(rng.normal(size=(2, 3)), [10, 11])
    assert index.ntotal == 6 and set(index.ids()) == {0, 1, 2, 3, 10, 11}
    with pytest.raises(ZooscopeInputError, match="already in the index"):
        index.add(rng.normal(size=(1, 3)), [11])


@pytest.mark.parametrize("factory", ["IDMap2,Flat", "IDMap2,HNSW32", "IDMap2,IVF4,Flat"])
def test_remove_makes_ids_unfindable(rng, factory):
    X = clustered(rng, 200, 8)
    ids = np.arange(100, 300)
    index = VectorIndex.build(X, ids, factory=factory)
    index.nprobe = 4
    assert index.remove([100, 101, 5]) == 2  # 5 was never there
    assert index.ntotal == 198
    _, I = index.search(X[:2], 10)
    assert not np.isin(I, [100, 101]).any()
    _, top = index.search(X[2:], 1)  # every remaining vector still finds itself under its own id
    assert (top[:, 0] == ids[2:]).mean() >= (0.98 if "HNSW" in factory else 1.0)
    assert index.remove([100]) == 0


def test_save_load_same_answers(tmp_path, rng):
    X = rng.normal(size=(120, 10))
    index = VectorIndex.build(X, np.arange(1000, 1120), metric="l2", normalized=False)
    path = tmp_path / "indices" / "cka__all.faiss"
    sha = index.save(path)
    assert len(sha) == 64 and not list(path.parent.glob(".*tmp*"))
    loaded = VectorIndex.load(path, sha)
    assert (loaded.metric, loaded.normalized, loaded.factory, loaded.dim, loaded.ntotal) == (
        "l2", False, "IDMap2,Flat", 10, 120)
    Q = rng.normal(size=(7, 10))
    for a, b in zip(index.search(Q, 4), loaded.search(Q, 4), strict=True):
        np.testing.assert_array_equal(a, b)


def test_tampered_index_file_is_refused(tmp_path, rng):
    path = tmp_path / "x.faiss"
    sha = VectorIndex.build(rng.normal(size=(20, 4)), np.arange(20)).save(path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ZooscopeInputError, match="does not match its recorded sha256"):
        VectorIndex.load(path, sha)


def test_load_without_checksum_refused_unless_explicit(tmp_path, rng):
    path = tmp_path / "x.faiss"
    VectorIndex.build(rng.normal(size=(5, 4)), np.arange(5)).save(path)
    with pytest.raises(ZooscopeInputError, match="without its sha256"):
        VectorIndex.load(path)
    assert VectorIndex.load(path, allow_unverified=True).ntotal == 5


def test_plain_faiss_file_is_refused_even_with_its_checksum(tmp_path, rng):
    import hashlib

    import faiss

    path = tmp_path / "plain.faiss"
    faiss.write_index(faiss.IndexFlatIP(4), str(path))
    with pytest.raises(ZooscopeInputError, match="not a zooscope index"):
        VectorIndex.load(path, hashlib.sha256(path.read_bytes()).hexdigest())


def test_choose_factory_switches_at_flat_max():
    assert choose_factory(10, 64) == "IDMap2,Flat"
    assert choose_factory(FLAT_MAX - 1, 64) == "IDMap2,Flat"
    assert choose_factory(FLAT_MAX, 64) == f"IDMap2,IVF{ivf_lists(FLAT_MAX)},SQ8"
    assert choose_factory(1_000_000, 256) == "IDMap2,IVF1024,SQ8"  # the 1M benchmark's winner (RESULTS.md)
    with pytest.raises(ZooscopeInputError):
        choose_factory(10, 0)


def test_memory_estimate_orders_the_variants():
    n, d = 1_000_000, 256
    flat = estimate_memory(n, d, "IDMap2,Flat")
    sq8 = estimate_memory(n, d, "IDMap2,IVF1024,SQ8", exact=False)
    sq8_exact = estimate_memory(n, d, "IDMap2,IVF1024,SQ8")  # lossy: exact copy by default
    pq = estimate_memory(n, d, "IDMap2,IVF1024,PQ32", exact=False)
    assert pq < sq8 < flat < sq8_exact
    assert 0.9 * n * d * 4 < flat < 1.2 * n * d * 4
    assert 0.9 * n * d * 5 < sq8_exact < 1.3 * n * d * 5


def _exact_topk_scores(X, Q, k):
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    return -np.sort(-(Qn @ Xn.T), axis=1)[:, :k]


def test_lossy_index_reranks_exactly_from_kept_vectors(rng):
    X = clustered(rng, 3000, 32, centres=20)
    Q = clustered(rng, 40, 32, centres=20)
    sq = VectorIndex.build(X, np.arange(5000, 8000), factory="IVF16,SQ4")
    assert sq.exact is not None and not sq.memory_mapped
    sq.nprobe = 16  # all lists: the candidates hold the true neighbours, so the re-ranked scores are exact
    D, I = sq.search(Q, 5)
    np.testing.assert_allclose(D, _exact_topk_scores(X, Q, 5), atol=1e-5)
    assert ((I >= 5000) & (I < 8000)).all()
    plain = VectorIndex.build(X, np.arange(5000, 8000), factory="IVF16,SQ4", exact=False)
    plain.nprobe = 16
    Dp, _ = plain.search(Q, 5)
    assert np.abs(Dp - _exact_topk_scores(X, Q, 5)).max() > 1e-3  # 4-bit codes alone are visibly off


def test_over_budget_build_memory_maps_exact_vectors(tmp_path, rng, caplog):
    X = clustered(rng, 2000, 16)
    Q = rng.normal(size=(10, 16))
    ram = VectorIndex.build(X, np.arange(2000), factory="IVF8,SQ8")
    with caplog.at_level("WARNING", logger="zooscope.index.vector_index"):
        mm = VectorIndex.build(X, np.arange(2000), factory="IVF8,SQ8", memory_budget=10_000, mmap_dir=tmp_path)
    assert "GB of RAM" in caplog.text and "memory-mapped" in caplog.text
    assert mm.memory_mapped and not ram.memory_mapped
    assert len(list(tmp_path.glob("zooscope-index-*/exact.npy"))) == 1
    for a, b in zip(ram.search(Q, 7), mm.search(Q, 7), strict=True):
        np.testing.assert_array_equal(a, b)
    del mm
    import gc

    gc.collect()
    assert not list(tmp_path.glob("zooscope-index-*"))  # the temporary file goes with the index


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_with_exact_vectors(tmp_path, rng, mmap):
    X = clustered(rng, 1500, 12)
    index = VectorIndex.build(X, np.arange(10, 1510), factory="IVF8,SQ8")
    path = tmp_path / "idx.faiss"
    sha = index.save(path)
    files = VectorIndex.files(path)
    assert files[0] == path and len(files) == 2 and files[1].name.endswith(".exact.npy")
    loaded = VectorIndex.load(path, sha, mmap=mmap)
    assert loaded.memory_mapped is mmap
    Q = rng.normal(size=(9, 12))
    for a, b in zip(index.search(Q, 6), loaded.search(Q, 6), strict=True):
        np.testing.assert_array_equal(a, b)
    loaded.add(rng.normal(size=(2, 12)), [1, 2])  # a memory-mapped copy moves to RAM to grow
    assert loaded.exact.shape == (1502, 12) and not loaded.memory_mapped
    sha2 = loaded.save(path)  # a new exact file; the one it was mapped from is removed
    assert VectorIndex.load(path, sha2).ntotal == 1502
    assert len(VectorIndex.files(path)) == 2 and not files[1].exists()


def test_tampered_exact_vectors_are_refused(tmp_path, rng):
    path = tmp_path / "idx.faiss"
    sha = VectorIndex.build(clustered(rng, 400, 8), np.arange(400), factory="IVF4,SQ8").save(path)
    side = VectorIndex.files(path)[1]
    data = bytearray(side.read_bytes())
    data[-3] ^= 0x01
    side.write_bytes(bytes(data))
    with pytest.raises(ZooscopeInputError, match="does not match the sha256"):
        VectorIndex.load(path, sha)
    side.unlink()
    with pytest.raises(ZooscopeInputError, match="missing"):
        VectorIndex.load(path, sha)


def test_remove_from_lossy_index_rebuilds_from_exact_vectors(rng):
    X = clustered(rng, 600, 8)
    index = VectorIndex.build(X, np.arange(600), factory="IVF4,SQ8")
    index.nprobe = 4
    assert index.remove(np.arange(0, 600, 2)) == 300
    assert index.ntotal == 300 and index.exact.shape == (300, 8)
    _, top = index.search(X[1::2], 1)
    assert (top[:, 0] == np.arange(1, 600, 2)).all()
    with pytest.raises(ZooscopeInputError, match="approximately"):
        VectorIndex.build(X, np.arange(600), factory="IVF4,SQ8", exact=False).remove([3])


def test_build_reads_a_memmap_in_chunks_with_global_row_numbers(tmp_path, rng, monkeypatch):
    from zooscope.index import vector_index

    monkeypatch.setattr(vector_index, "ADD_CHUNK", 100)
    X = clustered(rng, 450, 8)
    X[321, 3] = np.nan
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    with pytest.raises(ZooscopeInputError, match="first in row 321"):
        VectorIndex.build(mm, np.arange(450))
    X[321, 3] = 0.5
    np.save(tmp_path / "x.npy", X)
    index = VectorIndex.build(np.load(tmp_path / "x.npy", mmap_mode="r"), np.arange(450))
    _, top = index.search(X, 1)
    assert (top[:, 0] == np.arange(450)).all()


def test_build_uses_choose_factory_by_default(rng):
    assert VectorIndex.build(rng.normal(size=(5, 3)), np.arange(5)).factory == choose_factory(5, 3)


def test_rerank_orders_by_exact_score_and_drops_missing(rng):
    V = {i: rng.normal(size=6) for i in range(10)}
    q = rng.normal(size=6)
    out = rerank(q, [3, -1, 7, 3, 1, 9], lambda ids: np.stack([V[i] for i in ids]), lambda a, B: B @ a)
    exact = sorted(((i, float(V[i] @ q)) for i in (3, 7, 1, 9)), key=lambda t: -t[1])
    assert [i for i, _ in out] == [i for i, _ in exact]
    np.testing.assert_allclose([s for _, s in out], [s for _, s in exact])
    dist = rerank(q, [1, 2, 3], lambda ids: np.stack([V[i] for i in ids]),
                  lambda a, B: np.linalg.norm(B - a, axis=1), k=2, larger_is_better=False)
    assert len(dist) == 2 and dist[0][1] <= dist[1][1]
    assert rerank(q, [-1, -1], lambda ids: None, lambda a, B: None) == []


# -- vector store ---------------------------------------------------------------------------------------------
def test_store_round_trip_and_listing(tmp_path, rng):
    store = VectorStore(tmp_path / "vectors")
    assert store.keys() == []
    v = rng.normal(size=8).astype(np.float32)
    stack = rng.normal(size=(3, 8))
    k1, k2 = store.put(v, kind="cka"), store.put(stack, kind="task2vec")
    assert len(k1) == 32 and k1 != k2
    np.testing.assert_array_equal(store.get(k1), v)
    assert store.get(k2).dtype == np.float64
    assert store.keys("cka") == [k1] and sorted(store.keys()) == sorted([k1, k2])
    assert store.path(k1) == tmp_path / "vectors" / "cka" / f"{k1}.npy"
    k3 = store.put(v * 2, kind="cka")
    np.testing.assert_array_equal(store.get_many([k3, k1]), np.stack([v * 2, v]))
    with pytest.raises(ZooscopeInputError, match="different shapes"):
        store.get_many([k1, k2])
    assert store.delete([k1, "0" * 32]) == 1
    assert store.keys("cka") == [k3]
    with pytest.raises(KeyError, match="not in the store"):
        store.get(k1)


def test_store_ignores_and_reports_stale_temp_files(tmp_path, rng):
    store = VectorStore(tmp_path)
    key = store.put(rng.normal(size=4), kind="cka")
    (tmp_path / "cka" / ".tmp-deadbeef.npy").write_bytes(b"partial")
    assert store.keys() == [key]
    assert [p.name for p in store.stale_temp_files()] == [".tmp-deadbeef.npy"]


@pytest.mark.parametrize(("v", "kind", "match"), [
    (np.array([1.0, np.nan]), "cka", "NaN"),
    (np.array([]), "cka", "non-empty"),
    (np.ones(3), "../evil", "cannot name a store folder"),
])
def test_store_refuses_bad_input(tmp_path, v, kind, match):
    with pytest.raises(ZooscopeInputError, match=match):
        VectorStore(tmp_path).put(v, kind=kind)


def test_store_refuses_keys_that_are_not_keys(tmp_path):
    with pytest.raises(ZooscopeInputError, match="not a vector key"):
        VectorStore(tmp_path).get("../../etc/passwd")
