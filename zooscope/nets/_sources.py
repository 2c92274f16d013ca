"""Dataset sources on disk: .npz, .npy, ImageFolder directories and Hugging Face ``save_to_disk`` folders.

Each loader returns ``(x, y, classes)`` as numpy arrays: x float32 of shape (N, ...), y int64 of shape (N,) with
labels 0..k-1 (or None), classes a list of k names (or None). `zooscope.nets.datasets.load_dataset` is the public
door; these helpers assume a checked path.
"""

from __future__ import annotations

import importlib.util
import math
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zooscope._validation import ZooscopeInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")

Loaded = tuple[np.ndarray, np.ndarray | None, list[str] | None]


def to_float_inputs(x: np.ndarray, what: str) -> np.ndarray:
    """Return inputs as float32: uint8 is scaled to [0, 1]; (N, H, W) gains a channel axis; NHWC becomes NCHW."""
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ZooscopeInputError(f"The inputs in {what} must be numeric; got dtype {x.dtype}.")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ZooscopeInputError(f"The inputs in {what} must have shape (N, ...) with N >= 1; got {x.shape}.")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x = x.astype(np.float32) / np.float32(scale)
    if x.ndim == 3 and scale == 255.0:  # (N, H, W) uint8 images; float 3-D arrays are kept as given
        x = x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):  # NHWC -> NCHW
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if not np.isfinite(x).all():
        raise ZooscopeInputError(f"The inputs in {what} contain NaN or Inf; clean them before loading.")
    return x


def encode_labels(ys: Sequence[np.ndarray], what: str) -> tuple[list[np.ndarray], list[str]]:
    """Map the label values seen in any split to 0..k-1 (sorted), the same map for every split."""
    checked = []
    for y in ys:
        y = np.asarray(y)
        if y.ndim != 1:
            raise ZooscopeInputError(f"Labels in {what} must be 1-D (N,); got shape {y.shape}. Use argmax "
                                     "for one-hot labels.")
        if np.issubdtype(y.dtype, np.floating):
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise ZooscopeInputError(f"Labels in {what} must be integers (class ids); got non-integer floats.")
            y = y.astype(np.int64)
        checked.append(y)
    values = np.unique(np.concatenate(checked)) if checked else np.array([])
    out = [np.searchsorted(values, y).astype(np.int64) for y in checked]
    return out, [str(v) for v in values.tolist()]


def _check_pair(x: np.ndarray, y: np.ndarray | None, what: str) -> None:
    if y is not None and len(y) != len(x):
        raise ZooscopeInputError(f"{what} has {len(x)} inputs but {len(y)} labels; they must match one to one.")


def _check_declared(f: Any, size: int, what: str) -> None:
    """Refuse an ``.npy`` stream whose header declares more bytes than its ``size`` holds (e.g.

    shape (10**12,) in a file of a few bytes: loading it would try to allocate terabytes).
    """
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except ValueError:
        return  # not a plain .npy header: np.load says what is wrong with it
    n = math.prod(int(d) for d in shape)
    if dtype.itemsize and n * dtype.itemsize > size:
        raise ZooscopeInputError(f"{what} declares an array of shape {tuple(shape)} ({n:,} values of {dtype}) but "
                                 f"holds only {size:,} bytes: the file is damaged or crafted; refusing it.")


def check_npy_sizes(path: Path) -> None:
    """`_check_declared` for every array of an ``.npz`` (or one ``.npy``) file, before anything is allocated."""
    if path.suffix == ".npy":
        with open(path, "rb") as f:
            _check_declared(f, path.stat().st_size, str(path))
        return
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.filename.endswith(".npy"):
                    with z.open(info) as f:
                        _check_declared(f, info.file_size, f"{path} (array {info.filename[:-4]!r})")
    except zipfile.BadZipFile:
        return  # np.load reports it


def load_npz(path: Path, split: str) -> Loaded:
    """x_train/y_train + x_test/y_test, or x/y (then the file is one split); an optional ``classes`` array."""
    check_npy_sizes(path)
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    if "x_train" in arrays:
        parts = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
    elif "x" in arrays:
        parts = {"train": ("x", "y")}
    else:
        raise ZooscopeInputError(
            f"{path} holds arrays {sorted(arrays)}; expected x_train/y_train (+ x_test/y_test) or x/y. Save it "
            "with np.savez(path, x=..., y=...)."
        )
    if split == "test" and "x_test" not in arrays:
        raise ZooscopeInputError(f"{path} has no test split (x_test); use split='train' or 'all'.")
    chosen = ["train", "test"] if split == "all" and "x_test" in arrays else ["test" if split == "test" else "train"]
    xs = [to_float_inputs(arrays[parts[s][0]], str(path)) for s in chosen]
    if len({x.shape[1:] for x in xs}) > 1:
        raise ZooscopeInputError(f"The splits of {path} have different input shapes {[x.shape[1:] for x in xs]}.")
    has_y = [parts[s][1] in arrays for s in chosen]
    if not all(has_y):
        return np.concatenate(xs), None, None
    all_splits = [arrays[y] for x, y in parts.values() if y in arrays]  # one label map for every split
    encoded, names = encode_labels(all_splits, str(path))
    index = {s: i for i, s in enumerate(parts)}
    y = np.concatenate([encoded[index[s]] for s in chosen])
    x = np.concatenate(xs)
    _check_pair(x, y, str(path))
    if "classes" in arrays:
        given = [str(c) for c in arrays["classes"].tolist()]
        if len(given) != len(names):
            raise ZooscopeInputError(f"{path} names {len(given)} classes but its labels take {len(names)} values.")
        names = given
    return x, y, names


def load_npy(path: Path, split: str) -> Loaded:
    """Return inputs only (no labels)."""
    if split == "test":
        raise ZooscopeInputError(f"{path} is a single .npy array with no test split; use split='train'.")
    check_npy_sizes(path)
    return to_float_inputs(np.load(path, allow_pickle=False), str(path)), None, None


def _image_mode(modes: Iterable[str], channels: int | None) -> str:
    if channels is not None:
        if channels not in (1, 3):
            raise ZooscopeInputError(f"'channels' must be 1 or 3; got {channels}.")
        return "L" if channels == 1 else "RGB"
    return "L" if all(m in _GRAY_MODES for m in modes) else "RGB"


def stack_images(images: Sequence[Any], *, size: int | None, channels: int | None, what: str) -> np.ndarray:
    """PIL images -> float32 (N, C, H, W) in [0, 1]; grayscale stays 1 channel unless any image is colour."""
    from PIL import Image

    if not images:
        raise ZooscopeInputError(f"{what} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    mode = _image_mode((im.mode for im in images), channels)
    arrays = []
    for im in images:
        im = im.convert(mode)
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(im, dtype=np.uint8))
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) > 1:
        raise ZooscopeInputError(
            f"The images in {what} have different sizes ({shapes[0][:2]}, {shapes[1][:2]}, …). Add a resize "
            "option to the source, e.g. '?size=32'."
        )
    x = np.stack(arrays).astype(np.float32) / np.float32(255.0)
    return x[:, None] if mode == "L" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image_folder(root: Path, classes: list[str]) -> tuple[list[Any], np.ndarray]:
    from PIL import Image

    images, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        for p in _image_files(folder) if folder.is_dir() else []:
            with Image.open(p) as im:
                im.load()
                images.append(im.copy())
            labels.append(label)
    return images, np.asarray(labels, dtype=np.int64)


def load_image_folder(root: Path, split: str, *, size: int | None, channels: int | None) -> Loaded:
    """``root/<class>/<image>`` (torchvision's ImageFolder layout), or ``root/{train,test}/<class>/<image>``."""
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    if split == "test" and not has_splits:
        raise ZooscopeInputError(f"{root} has no train/ and test/ sub-folders, so no test split; "
                                 "use split='train'.")
    folders = [root / s for s in (("train", "test") if split == "all" else (split,))] if has_splits else [root]
    names = sorted({d.name for f in folders for d in f.iterdir() if d.is_dir() and _image_files(d)})
    if not names:
        raise ZooscopeInputError(
            f"{root} has no class sub-folders with images. Lay it out as {root}/<class>/<image>.png "
            f"(suffixes: {', '.join(IMAGE_SUFFIXES)})."
        )
    images: list[Any] = []
    ys = []
    for folder in folders:
        ims, y = _read_image_folder(folder, names)
        images.extend(ims)
        ys.append(y)
    x = stack_images(images, size=size, channels=channels, what=str(root))
    return x, np.concatenate(ys), names


def is_hf_folder(path: Path) -> bool:
    """Return a folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


_HF_INPUTS = ("image", "img", "pixel_values", "x", "inputs")
_HF_LABELS = ("label", "labels", "y", "fine_label", "target")


def load_hf_folder(path: Path, split: str, *, size: int | None, channels: int | None) -> Loaded:
    """Return a Hugging Face ``datasets`` folder: an image/array column and an optional integer label column."""
    if importlib.util.find_spec("datasets") is None:
        raise ZooscopeInputError(
            f"{path} is a Hugging Face datasets folder, which needs the optional 'datasets' package: "
            "pip install 'zooscope[hub]' (or pip install datasets)."
        )
    import datasets as hf

    obj = hf.load_from_disk(str(path))
    if isinstance(obj, hf.DatasetDict):
        if split == "all":
            parts = [obj[s] for s in obj]
        elif split in obj:
            parts = [obj[split]]
        else:
            raise ZooscopeInputError(f"{path} has splits {sorted(obj)}; got split={split!r}.")
    else:
        if split == "test":
            raise ZooscopeInputError(f"{path} is a single Dataset with no test split; use split='train'.")
        parts = [obj]
    cols = parts[0].column_names
    xcol = next((c for c in _HF_INPUTS if c in cols), None)
    if xcol is None:
        raise ZooscopeInputError(f"{path} has columns {cols}; name the input column one of {list(_HF_INPUTS)}.")
    ycol = next((c for c in _HF_LABELS if c in cols), None)
    feature = parts[0].features[xcol]
    if isinstance(feature, hf.Image):
        x = stack_images([im for p in parts for im in p[xcol]], size=size, channels=channels, what=str(path))
    else:
        x = to_float_inputs(np.concatenate([np.asarray(p.with_format("numpy")[xcol]) for p in parts]), str(path))
    if ycol is None:
        return x, None, None
    ys = [np.asarray(p.with_format("numpy")[ycol]) for p in parts]
    label_feature = parts[0].features[ycol]
    if isinstance(label_feature, hf.ClassLabel):
        y = np.concatenate(ys).astype(np.int64)
        names = list(label_feature.names)
    else:
        encoded, names = encode_labels(ys, str(path))
        y = np.concatenate(encoded)
    _check_pair(x, y, str(path))
    return x, y, names
