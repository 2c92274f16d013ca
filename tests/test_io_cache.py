"""`zooscope._io.cached_array` / `write_cache`: the one "load the cache or compute, write atomically, warn when the
cache cannot be written" of zooscope."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from zooscope._io import cached_array, write_cache


def _counter(value):
    calls = []

    def compute():
        calls.append(1)
        return value

    return compute, calls


def test_computes_once_then_reads_the_cache(tmp_path):
    compute, calls = _counter(np.arange(4.0))
    path = tmp_path / "sub" / "a.npy"
    first = cached_array(path, compute)
    second = cached_array(path, compute)
    assert len(calls) == 1 and path.is_file()
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float64


def test_npz_holds_a_dict_of_arrays_and_needs_its_keys(tmp_path, caplog):
    path = tmp_path / "f.npz"
    compute, calls = _counter({"features": np.ones((2, 3)), "probs": np.zeros(0)})
    out = cached_array(path, compute, keys=("features", "probs"))
    again = cached_array(path, compute, keys=("features", "probs"))
    assert len(calls) == 1 and set(again) == {"features", "probs"} and again["probs"].size == 0
    np.testing.assert_array_equal(out["features"], again["features"])
    with caplog.at_level(logging.WARNING, logger="zooscope._io"):
        cached_array(path, compute, keys=("features", "other"))  # a file without the keys asked for: recomputed
    assert len(calls) == 2 and "unreadable cache" in caplog.text


def test_a_damaged_cache_is_recomputed_and_rewritten(tmp_path, caplog):
    path = tmp_path / "a.npy"
    path.write_bytes(b"not an npy file")
    compute, calls = _counter(np.array([1, 2, 3]))
    with caplog.at_level(logging.WARNING, logger="zooscope._io"):
        np.testing.assert_array_equal(cached_array(path, compute), [1, 2, 3])
    assert len(calls) == 1 and "unreadable cache" in caplog.text
    np.testing.assert_array_equal(np.load(path), [1, 2, 3])


def test_a_pickled_cache_is_never_unpickled(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    compute, calls = _counter(np.array([7]))
    np.testing.assert_array_equal(cached_array(path, compute), [7])
    assert len(calls) == 1


def test_an_unwritable_cache_only_warns(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the cache folder should be: mkdir fails with an OSError
    compute, calls = _counter(np.arange(3))
    with caplog.at_level(logging.WARNING, logger="zooscope._io"):
        np.testing.assert_array_equal(cached_array(blocker / "a.npy", compute), np.arange(3))
        assert write_cache(blocker / "b.json", b"{}") is False
    assert "could not cache" in caplog.text and len(calls) == 1
    assert write_cache(tmp_path / "ok.json", b"{}") is True and (tmp_path / "ok.json").read_bytes() == b"{}"


def test_compute_errors_propagate(tmp_path):
    def boom():
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        cached_array(tmp_path / "a.npy", boom)
    assert not (tmp_path / "a.npy").exists()
