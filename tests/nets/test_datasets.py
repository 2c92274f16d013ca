"""Dataset specs: builtins, files, folders, options, probe subsets, hashes and their errors."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zooscope import ZooscopeInputError
from zooscope._sampling import stratified_sample
from zooscope.nets.datasets import (
    DatasetTensors,
    cache_dir,
    check_labelled,
    load_dataset,
    probe_subset,
    tensors_sha256,
)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# -- builtins -------------------------------------------------------------------------------------------------
def test_digits_shapes_splits_and_range():
    train, test, full = (load_dataset("builtin:digits", split=s) for s in ("train", "test", "all"))
    assert full.input_shape == (1, 8, 8) and len(full) == 1797 and full.num_classes == 10
    assert len(train) + len(test) == 1797 and abs(len(test) - 0.2 * 1797) < 10
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert float(full.x.min()) == 0.0 and float(full.x.max()) == 1.0
    assert torch.bincount(test.y).min() >= 30  # stratified: every class in the test split
    rows = {tuple(r) for r in train.x.reshape(len(train), -1).numpy().round(4).tolist()}
    overlap = sum(tuple(r) in rows for r in test.x.reshape(len(test), -1).numpy().round(4).tolist())
    assert overlap <= 5  # disjoint index sets (digits has a few duplicate images)
    assert torch.equal(load_dataset("builtin:digits", seed=7).x, train.x)  # the split ignores the seed


def test_digits_resized_to_28():
    ds = load_dataset("builtin:digits?size=28&n=30")
    assert ds.input_shape == (1, 28, 28) and len(ds) == 30
    assert 0.0 <= float(ds.x.min()) and float(ds.x.max()) <= 1.0


@pytest.mark.slow
def test_mnist5k_loads_and_is_cached():
    ds = load_dataset("builtin:mnist5k", split="all")
    assert ds.input_shape == (1, 28, 28) and len(ds) == 5000 and ds.num_classes == 10
    assert torch.bincount(ds.y).tolist() == [500] * 10
    assert float(ds.x.max()) == 1.0 and float(ds.x.min()) == 0.0
    assert (cache_dir() / "mnist5k.npz").is_file()
    assert len(load_dataset("builtin:mnist5k")) == 4000


def test_mnist1d_small_seeded_and_isolated(tmp_cache):
    np.random.seed(123)  # noqa: NPY002 -- the caller's legacy global state must survive make_dataset
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    a = load_dataset("builtin:mnist1d?num_samples=200")
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    assert a.input_shape == (1, 40) and len(a) == 160 and a.num_classes == 10
    assert len(load_dataset("builtin:mnist1d?num_samples=200", split="test")) == 40
    assert list(tmp_cache.glob("mnist1d_n200_seed0.npz"))
    again = load_dataset("builtin:mnist1d?num_samples=200")
    assert torch.equal(a.x, again.x) and torch.equal(a.y, again.y)
    other = load_dataset("builtin:mnist1d?num_samples=200&seed=3")
    assert not torch.equal(a.x, other.x)


def test_unknown_builtin_lists_valid_ones():
    with pytest.raises(ZooscopeInputError, match=r"Did you mean 'mnist5k'.*Valid: digits, mnist1d, mnist5k"):
        load_dataset("builtin:mnist5")


@pytest.mark.parametrize(("source", "kwargs", "match"), [
    ("builtin:digits?clases=1,2", {}, "Did you mean 'classes'"),
    ("builtin:digits?n=abc", {}, "integer"),
    ("builtin:digits?task=sum", {}, "'parity'"),
    ("builtin:digits?classes=1,1", {}, "distinct"),
    ("builtin:digits?classes=11", {}, "Unknown class '11'"),
    ("builtin:digits", {"split": "val"}, "'train', 'test', 'all'"),
    ("builtin:digits?n=5000", {}, r"1 <= n <= 1438 \(the dataset size\)"),
    ("no/such/file.npz", {}, "does not exist"),
])
def test_bad_sources_raise_clear_errors(source, kwargs, match):
    with pytest.raises(ZooscopeInputError, match=match):
        load_dataset(source, **kwargs)


# -- options --------------------------------------------------------------------------------------------------
def test_class_filter_keeps_and_relabels_in_given_order():
    full = load_dataset("builtin:digits")
    ds = load_dataset("builtin:digits?classes=5,3")
    assert ds.classes == ["5", "3"] and ds.num_classes == 2
    assert (ds.y == 0).sum() == (full.y == 5).sum() and (ds.y == 1).sum() == (full.y == 3).sum()
    assert torch.equal(ds.x[ds.y == 0], full.x[full.y == 5])


def test_parity_task_uses_the_original_class_id():
    full = load_dataset("builtin:digits")
    par = load_dataset("builtin:digits?task=parity")
    assert par.classes == ["even", "odd"] and torch.equal(par.y, full.y % 2)
    sub = load_dataset("builtin:digits?classes=3,4,7&task=parity")
    assert torch.bincount(sub.y).tolist() == [int((full.y == 4).sum()), int(((full.y == 3) | (full.y == 7)).sum())]


def test_n_option_is_a_seeded_stratified_subset():
    a = load_dataset("builtin:digits?n=100")
    assert len(a) == 100 and torch.bincount(a.y).min() >= 9
    assert torch.equal(a.x, load_dataset("builtin:digits?n=100").x)
    assert not torch.equal(a.x, load_dataset("builtin:digits?n=100&seed=1").x)
    assert torch.equal(load_dataset("builtin:digits?n=100&seed=1").x, load_dataset("builtin:digits?n=100", seed=1).x)


# -- files ----------------------------------------------------------------------------------------------------
def test_npz_train_test_round_trip(tmp_path, rng):
    x_tr, x_te = rng.normal(size=(30, 5)).astype(np.float32), rng.normal(size=(10, 5)).astype(np.float32)
    y_tr, y_te = rng.integers(0, 3, 30), rng.integers(0, 3, 10)
    path = tmp_path / "task.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    tr, te, both = (load_dataset(str(path), split=s) for s in ("train", "test", "all"))
    np.testing.assert_array_equal(tr.x.numpy(), x_tr)
    np.testing.assert_array_equal(te.y.numpy(), y_te)
    assert len(both) == 40 and tr.name == "task" and tr.input_shape == (5,)


def test_npz_labels_are_encoded_and_uint8_images_scaled(tmp_path, rng):
    x = rng.integers(0, 256, size=(12, 6, 6), dtype=np.uint8)
    y = np.array([3, 7] * 6)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_dataset(str(tmp_path / "d.npz"))
    assert ds.input_shape == (1, 6, 6) and ds.classes == ["3", "7"]
    np.testing.assert_allclose(ds.x.numpy()[:, 0], x / 255.0, atol=1e-7)
    assert ds.y.tolist() == [0, 1] * 6
    np.savez(tmp_path / "named.npz", x=x, y=y, classes=np.array(["cat", "dog"]))
    assert load_dataset(str(tmp_path / "named.npz")).classes == ["cat", "dog"]
    with pytest.raises(ZooscopeInputError, match="no test split"):
        load_dataset(str(tmp_path / "d.npz"), split="test")


def test_npz_errors(tmp_path, rng):
    np.savez(tmp_path / "wrong.npz", inputs=rng.normal(size=(3, 2)))
    with pytest.raises(ZooscopeInputError, match="expected x_train/y_train"):
        load_dataset(str(tmp_path / "wrong.npz"))
    np.savez(tmp_path / "mismatch.npz", x=rng.normal(size=(3, 2)), y=np.arange(4))
    with pytest.raises(ZooscopeInputError, match="3 inputs but 4 labels"):
        load_dataset(str(tmp_path / "mismatch.npz"))


def test_npy_has_no_labels(tmp_path, rng):
    x = rng.normal(size=(8, 3, 4, 4)).astype(np.float32)
    np.save(tmp_path / "inputs.npy", x)
    ds = load_dataset(str(tmp_path / "inputs.npy"))
    assert ds.y is None and ds.num_classes is None and ds.input_shape == (3, 4, 4)
    np.testing.assert_array_equal(ds.x.numpy(), x)
    with pytest.raises(ZooscopeInputError, match="no labels"):
        check_labelled(ds)
    with pytest.raises(ZooscopeInputError, match="no labels"):
        load_dataset(str(tmp_path / "inputs.npy") + "?classes=0")
    assert len(probe_subset(ds, 5, seed=1)) == 5


def _write_images(root, sizes, mode, rng):
    from PIL import Image

    arrays = {}
    for cls, n in (("cat", 3), ("dog", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            h, w = sizes[(i + len(cls)) % len(sizes)]
            shape = (h, w) if mode == "L" else (h, w, 3)
            a = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(a, mode=mode).save(root / cls / f"{i}.png")
            arrays[(cls, i)] = a
    (root / "notes.txt").write_text("ignored")
    return arrays


def test_image_folder_grayscale_round_trip(tmp_path, rng):
    arrays = _write_images(tmp_path / "imgs", [(6, 5)], "L", rng)
    ds = load_dataset(str(tmp_path / "imgs"))
    assert ds.classes == ["cat", "dog"] and ds.y.tolist() == [0, 0, 0, 1, 1]
    assert ds.input_shape == (1, 6, 5) and ds.name == "imgs"
    np.testing.assert_allclose(ds.x[4, 0].numpy(), arrays[("dog", 1)] / 255.0, atol=1e-7)
    assert load_dataset(str(tmp_path / "imgs") + "?classes=dog").num_classes == 1


def test_image_folder_rgb_and_resize(tmp_path, rng):
    _write_images(tmp_path / "imgs", [(6, 6)], "RGB", rng)
    ds = load_dataset(str(tmp_path / "imgs") + "?size=4")
    assert ds.input_shape == (3, 4, 4)
    assert load_dataset(str(tmp_path / "imgs") + "?channels=1").input_shape == (1, 6, 6)


def test_image_folder_ragged_sizes_need_a_resize(tmp_path, rng):
    _write_images(tmp_path / "imgs", [(6, 6), (8, 5)], "L", rng)
    with pytest.raises(ZooscopeInputError, match=r"different sizes.*'\?size=32'"):
        load_dataset(str(tmp_path / "imgs"))
    assert load_dataset(str(tmp_path / "imgs") + "?size=7").input_shape == (1, 7, 7)


def test_image_folder_with_train_and_test(tmp_path, rng):
    _write_images(tmp_path / "imgs" / "train", [(4, 4)], "L", rng)
    _write_images(tmp_path / "imgs" / "test", [(4, 4)], "L", rng)
    assert len(load_dataset(str(tmp_path / "imgs"))) == 5
    assert len(load_dataset(str(tmp_path / "imgs"), split="all")) == 10


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ZooscopeInputError, match="no class sub-folders with images"):
        load_dataset(str(tmp_path / "empty"))


def test_hugging_face_folder_round_trip(tmp_path, rng):
    hf = pytest.importorskip("datasets")
    x = rng.normal(size=(6, 4)).astype(np.float32)
    d = hf.Dataset.from_dict({"x": x.tolist(), "label": [0, 1, 2, 0, 1, 2]},
                             features=hf.Features({"x": hf.Sequence(hf.Value("float32")),
                                                   "label": hf.ClassLabel(names=["a", "b", "c"])}))
    d.save_to_disk(str(tmp_path / "hf"))
    ds = load_dataset(str(tmp_path / "hf"))
    assert ds.classes == ["a", "b", "c"] and ds.input_shape == (4,)
    np.testing.assert_allclose(ds.x.numpy(), x)


# -- probe subsets, labels, hashes ----------------------------------------------------------------------------
def _toy(counts, rng):
    y = np.repeat(np.arange(len(counts)), counts)
    return DatasetTensors("toy", torch.from_numpy(rng.normal(size=(len(y), 3)).astype(np.float32)),
                          torch.from_numpy(y), [str(i) for i in range(len(counts))])


def test_probe_subset_is_stratified_deterministic_and_seeded(rng):
    ds = _toy([60, 30, 10], rng)
    a = probe_subset(ds, 20, seed=0)
    assert torch.bincount(a.y).tolist() == [12, 6, 2]
    b = probe_subset(ds, 20, seed=0)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    c = probe_subset(ds, 20, seed=1)
    assert not torch.equal(a.x, c.x) and torch.bincount(c.y).tolist() == [12, 6, 2]
    rows = {tuple(r) for r in ds.x.numpy().tolist()}
    assert all(tuple(r) in rows for r in a.x.numpy().tolist()) and len({tuple(r) for r in a.x.tolist()}) == 20
    assert not torch.equal(a.y, torch.sort(a.y).values)  # shuffled: minibatches mix classes


def test_probe_subset_gives_each_class_its_share(rng):
    ds = _toy([90, 6, 4], rng)
    assert torch.bincount(probe_subset(ds, 50).y).tolist() == [45, 3, 2]
    assert torch.bincount(probe_subset(ds, 100).y).tolist() == [90, 6, 4]


def test_probe_subset_bounds(rng):
    ds = _toy([5, 5], rng)
    for n in (0, 11, 2.5):
        with pytest.raises(ZooscopeInputError, match="1 <= n <= 10"):
            probe_subset(ds, n)
    assert len(probe_subset(ds, 10, stratified=False)) == 10


@settings(max_examples=80, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=8), frac=st.floats(0.0, 1.0),
       seed=st.integers(0, 3))
def test_stratified_sample_properties(counts, frac, seed):
    counts = np.array(counts)
    y = np.repeat(np.arange(len(counts)), counts)
    n = max(1, round(frac * counts.sum()))
    idx = stratified_sample(y, n, seed)
    take = np.bincount(y[idx], minlength=len(counts))
    assert len(np.unique(idx)) == n and (take <= counts).all()
    assert (np.abs(take - n * counts / counts.sum()) < 1 + 1e-9).all()  # proportional, largest remainder
    np.testing.assert_array_equal(idx, stratified_sample(y, n, seed))


def test_check_labelled(rng):
    ds = _toy([4, 4], rng)
    assert check_labelled(ds) is ds
    with pytest.raises(ZooscopeInputError, match=r"1 class present.*at least 2"):
        check_labelled(load_dataset("builtin:digits?classes=4"))
    with pytest.raises(ZooscopeInputError, match="at least 3"):
        check_labelled(ds, min_classes=3)


def test_tensors_sha256_is_a_content_hash(rng):
    x = rng.normal(size=(5, 4)).astype(np.float32)
    y = np.arange(5)
    h = tensors_sha256(x, y)
    assert h == tensors_sha256(torch.from_numpy(x.copy()), torch.from_numpy(y.copy())) and len(h) == 64
    assert h == tensors_sha256(np.asfortranarray(x), y)
    x2 = x.copy()
    x2[2, 1] = np.nextafter(x2[2, 1], np.float32(np.inf))
    assert tensors_sha256(x2, y) != h
    assert tensors_sha256(x, y[::-1].copy()) != h and tensors_sha256(x) != h
    assert tensors_sha256(x.reshape(4, 5), y) != h
    assert tensors_sha256(x.astype(np.float64), y) != h


def test_sha256_of_a_builtin_is_stable():
    ds = load_dataset("builtin:digits?n=64")
    assert tensors_sha256(ds.x, ds.y) == tensors_sha256(*(lambda d: (d.x, d.y))(load_dataset("builtin:digits?n=64")))


def test_sha256_format_is_pinned():
    """The hash covers dtype, shape and bytes, in this exact layout (stored hashes must stay valid)."""
    import hashlib

    x, y = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0, 1], dtype=np.int64)
    want = hashlib.sha256(b"x:<f4:(2, 3);" + x.tobytes() + b"y:<i8:(2,);" + y.tobytes()).hexdigest()
    assert tensors_sha256(x, y) == want
