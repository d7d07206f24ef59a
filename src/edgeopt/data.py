"""Datasets: .npz/.npy files, image folders, CSV and built-ins, with splits and checks.

Everything here is numpy and scikit-learn; no TensorFlow import.
"""
from __future__ import annotations

import csv
import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from edgeopt.errors import UserError, one_line

BUILTINS = ("digits", "fashion-mnist", "blobs2d")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass
class Dataset:
    """Arrays for one task, already split. ``x_*`` are float32, ``y_*`` int64 class ids
    (classification) or float32 targets (regression)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    task: Literal["classification", "regression"] = "classification"
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_eval.shape[1:])

    def calibration(self, n: int = 500, seed: int = 0) -> np.ndarray:
        """A stratified sample of the training split for quantization calibration."""
        y = self.y_train if self.task == "classification" else None
        if y is None:
            return self.x_train[: min(n, len(self.x_train))]
        return self.x_train[stratified_indices(y, n, seed)]

    def summary(self) -> dict:
        return {
            "name": self.name,
            "task": self.task,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "train": len(self.x_train),
            "val": len(self.x_val),
            "eval": len(self.x_eval),
        }


def stratified_indices(y: np.ndarray | None, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most n rows, each class drawn in proportion (scikit-learn's stratified
    shuffle split); a plain random sample when n is smaller than the number of classes."""
    if y is None or len(y) <= n:
        return np.arange(len(y) if y is not None else n)
    picked, _ = split_indices(np.arange(len(y)), y, len(y) - n, seed)
    return np.sort(picked)


def split_indices(idx: np.ndarray, y: np.ndarray | None, n_test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (rest, test) with exactly ``n_test`` test rows, stratified by ``y[idx]``
    (scikit-learn ``train_test_split``) when ``y`` holds class ids. Where stratification is
    impossible (a class with one member, or fewer test rows than classes) the split is random."""
    from sklearn.model_selection import train_test_split

    if y is not None:
        try:
            return tuple(train_test_split(idx, test_size=n_test, stratify=y[idx], random_state=seed))
        except ValueError:  # a class too small to be on both sides: fall back to a random split
            pass
    return tuple(train_test_split(idx, test_size=n_test, random_state=seed))


# ---------------------------------------------------------------- loading

def load_data(
    source: str | Path,
    *,
    x_key: str = "x",
    y_key: str = "y",
    label_column: str | int = -1,
    image_size: tuple[int, int] | None = None,
    grayscale: bool | None = None,
    task: str | None = None,
    val_fraction: float = 0.1,
    eval_fraction: float = 0.2,
    limit: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load a dataset from a built-in name or a path and split it.

    Built-ins: ``digits``, ``fashion-mnist``, ``blobs2d``. Files: ``.npz`` (keys ``x``/``y``,
    configurable), ``X.npy`` with a ``Y.npy`` beside it (or ``path_x.npy``/``path_y.npy``),
    ``.csv`` (label column configurable), or a folder of images with one subfolder per class.
    """
    name = str(source)
    if name in BUILTINS:
        return _builtin(name, val_fraction, limit, seed)
    path = Path(source)
    if not path.exists():
        raise UserError(f"data not found: {path} (give a .npz, .npy, .csv, an image folder, "
                        f"or a built-in: {', '.join(BUILTINS)})")
    if path.is_dir():
        x, y, classes = _image_folder(path, image_size, grayscale)
    elif path.suffix == ".npz":
        x, y = _npz(path, x_key, y_key)
        classes = []
    elif path.suffix == ".npy":
        x, y = _npy_pair(path)
        classes = []
    elif path.suffix == ".csv":
        x, y = _csv(path, label_column)
        classes = []
    else:
        raise UserError(f"unsupported data file {path.name}: use .npz, .npy, .csv or an image folder")
    return make_dataset(path.name, x, y, task=task, class_names=classes, val_fraction=val_fraction,
                        eval_fraction=eval_fraction, limit=limit, seed=seed)


def make_dataset(name: str, x: np.ndarray, y: np.ndarray, *, task: str | None = None,
                 class_names: list[str] | None = None, val_fraction: float = 0.1,
                 eval_fraction: float = 0.2, limit: int | None = None, seed: int = 0) -> Dataset:
    """Check arrays and split them into train / validation / eval (stratified by class for
    classification; ``limit`` keeps a stratified subset first)."""
    x, y = _check_arrays(name, x, y)
    task = task or _infer_task(y)
    if task == "classification":
        y = y.astype(np.int64)
    else:
        y = y.astype(np.float32)
    labels = y if task == "classification" else None
    order = np.arange(len(x))
    if limit and limit < len(x):
        order = np.sort(stratified_indices(labels, limit, seed)) if labels is not None else \
            np.random.default_rng(seed).permutation(len(x))[:limit]
    n = len(order)
    n_eval = max(1, int(round(n * eval_fraction)))
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_eval - n_val < 1:
        raise UserError(f"{name}: {n} samples are too few to split into train, validation and eval "
                        f"(need at least 3)")
    rest, ev = split_indices(order, labels, n_eval, seed)
    tr, va = split_indices(rest, labels, n_val, seed)
    num_classes = int(y.max()) + 1 if task == "classification" else 0
    return Dataset(name, x[tr], y[tr], x[va], y[va], x[ev], y[ev], task, num_classes,
                   list(class_names or []))


def _check_arrays(name: str, x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.size == 0 or len(x) == 0:
        raise UserError(f"{name}: the data is empty (0 samples)")
    if len(x) != len(y):
        raise UserError(f"{name}: {len(x)} inputs but {len(y)} labels; they must have the same length")
    if x.dtype.kind not in "biuf":
        raise UserError(f"{name}: inputs have dtype {x.dtype}; expected numbers")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
        raise UserError(f"{name}: {bad} samples contain NaN or infinite values; clean or drop them")
    if y.ndim == 2 and y.shape[1] > 1 and set(np.unique(y)) <= {0, 1}:
        y = y.argmax(axis=1)  # one-hot labels
    y = y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.dtype.kind not in "biuf":
        raise UserError(f"{name}: labels have dtype {y.dtype}; expected integer class ids or numbers")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise UserError(f"{name}: labels contain NaN or infinite values")
    return x, y


def _infer_task(y: np.ndarray) -> str:
    if y.dtype.kind in "biu" and y.ndim == 1:
        if y.min() < 0:
            raise UserError(f"class labels must be 0..N-1, found {int(y.min())}")
        return "classification"
    if y.ndim == 1 and np.all(np.equal(np.mod(y, 1), 0)) and y.min() >= 0 and len(np.unique(y)) <= 1000:
        return "classification"
    return "regression"


def _npz(path: Path, x_key: str, y_key: str):
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            missing = [k for k in (x_key, y_key) if k not in keys]
            if missing:
                raise UserError(f"{path.name} has keys {keys} but not {missing}: "
                                f"name them with --x-key/--y-key")
            return f[x_key], f[y_key]
    except UserError:
        raise
    except Exception as e:  # zip errors, pickled arrays, truncation
        raise UserError(f"cannot read {path.name} as .npz: {one_line(e)}") from None


def _npy_pair(path: Path):
    stem = path.stem
    candidates = []
    if stem.endswith("_x"):
        candidates.append(path.with_name(stem[:-2] + "_y.npy"))
    if stem in ("x", "X"):
        candidates += [path.with_name("y.npy"), path.with_name("Y.npy")]
    ypath = next((c for c in candidates if c.exists()), None)
    if ypath is None:
        raise UserError(f"{path.name}: no labels file beside it; name inputs x.npy with y.npy, "
                        f"or NAME_x.npy with NAME_y.npy")
    try:
        return np.load(path, allow_pickle=False), np.load(ypath, allow_pickle=False)
    except Exception as e:
        raise UserError(f"cannot read {path.name}/{ypath.name} as .npy: {one_line(e)}") from None


def _csv(path: Path, label_column: str | int):
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path.name} as CSV: {one_line(e)}") from None
    rows = [r for r in rows if r]
    if not rows:
        raise UserError(f"{path.name}: the CSV is empty")
    header = None
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        header, rows = rows[0], rows[1:]
    if not rows:
        raise UserError(f"{path.name}: the CSV has a header but no rows")
    width = len(rows[0])
    col = _label_index(label_column, header, width, path.name)
    try:
        table = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError as e:
        raise UserError(f"{path.name}: non-numeric value ({one_line(e)}); the CSV must be numbers") from None
    except Exception:
        raise UserError(f"{path.name}: rows have different numbers of columns") from None
    if table.ndim != 2 or table.shape[1] != width:
        raise UserError(f"{path.name}: rows have different numbers of columns")
    y = table[:, col]
    x = np.delete(table, col, axis=1)
    if np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)
    return x.astype(np.float32), y


def _label_index(label_column, header, width, fname) -> int:
    if isinstance(label_column, str) and not label_column.lstrip("-").isdigit():
        if header is None or label_column not in header:
            raise UserError(f"{fname}: no column named {label_column!r}; columns: {header or 'no header'}")
        return header.index(label_column)
    idx = int(label_column)
    if not -width <= idx < width:
        raise UserError(f"{fname}: label column {idx} is out of range for {width} columns")
    return idx % width


def _image_folder(path: Path, image_size, grayscale):
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d.name for d in path.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise UserError(f"{path}: an image folder needs one subfolder per class (found {len(classes)})")
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((path / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UserError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class subfolders")
    xs, ys = [], []
    for f, label in files:
        try:
            with Image.open(f) as im:
                im = im.convert("L" if grayscale else "RGB")
                if image_size is None:
                    image_size = im.size[::-1]
                im = im.resize((image_size[1], image_size[0]))
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"cannot read image {f}: {one_line(e)}") from None
        xs.append(arr[..., None] if arr.ndim == 2 else arr)
        ys.append(label)
    return np.stack(xs), np.array(ys, dtype=np.int64), classes


# ---------------------------------------------------------------- built-ins

def _builtin(name: str, val_fraction: float, limit: int | None, seed: int) -> Dataset:
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images / 16.0).astype(np.float32)[..., None]  # 8x8x1 in [0, 1]
        return make_dataset("digits", x, d.target, val_fraction=val_fraction, limit=limit, seed=seed,
                            class_names=[str(i) for i in range(10)])
    if name == "blobs2d":
        return make_dataset("blobs2d", *blobs2d(seed=seed), val_fraction=val_fraction, limit=limit,
                            seed=seed, class_names=["a", "b", "c"])
    return fashion_mnist(val_fraction=val_fraction, limit=limit, seed=seed)


def blobs2d(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping Gaussian blobs in 2-D: the toy set for the slide MLP."""
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=n, centers=[(-2, 0), (2, 0), (0, 2.5)], cluster_std=1.1,
                      random_state=seed)
    return x.astype(np.float32), y.astype(np.int64)


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


def fashion_mnist_available() -> bool:
    return _fashion_file("train-images-idx3-ubyte") is not None


def _fashion_file(stem: str) -> Path | None:
    for p in (FASHION_DIR / stem, FASHION_DIR / (stem + ".gz")):
        if p.exists():
            return p
    return None


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise UserError(f"{path} is not an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(val_fraction: float = 0.1, limit: int | None = None, seed: int = 0) -> Dataset:
    """Fashion-MNIST from Debian's dataset-fashion-mnist: the official 60k train / 10k test split;
    validation comes out of train. Images are 28x28x1 floats in [0, 1]."""
    files = {k: _fashion_file(k) for k in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    if any(v is None for v in files.values()):
        raise UserError(f"Fashion-MNIST is not installed (looked in {FASHION_DIR}); install it with "
                        f"'sudo apt-get install dataset-fashion-mnist', or use --data digits")
    xtr = _read_idx(files["train-images-idx3-ubyte"]).astype(np.float32)[..., None] / 255.0
    ytr = _read_idx(files["train-labels-idx1-ubyte"]).astype(np.int64)
    xte = _read_idx(files["t10k-images-idx3-ubyte"]).astype(np.float32)[..., None] / 255.0
    yte = _read_idx(files["t10k-labels-idx1-ubyte"]).astype(np.int64)
    order = np.arange(len(xtr))
    if limit:
        order = stratified_indices(ytr, limit, seed)
        xte, yte = xte[: max(1, limit // 6)], yte[: max(1, limit // 6)]
    n_val = max(1, int(round(len(order) * val_fraction)))
    tr, va = split_indices(order, ytr, n_val, seed)
    return Dataset("fashion-mnist", xtr[tr], ytr[tr], xtr[va], ytr[va], xte, yte,
                   "classification", 10, FASHION_CLASSES)


# ---------------------------------------------------------------- checks against a model

def check_against_model(ds: Dataset, input_shape: tuple, output_units: int | None,
                        input_range: tuple[float, float] | None = None) -> list[str]:
    """Raise UserError for hard mismatches; return warnings for soft ones.

    ``input_shape`` excludes the batch dimension (None for free dims)."""
    got = ds.input_shape
    want = tuple(input_shape)
    if len(got) != len(want) or any(w not in (None, -1, g) for w, g in zip(want, got)):
        raise UserError(f"data {ds.name} has input shape {_fmt(got)} but the model expects "
                        f"{_fmt(want)}; reshape or resize the data")
    warnings = []
    if ds.task == "classification" and output_units:
        if output_units == 1 and ds.num_classes <= 2:
            pass
        elif ds.num_classes > output_units:
            raise UserError(f"data {ds.name} has labels up to {ds.num_classes - 1} "
                            f"({ds.num_classes} classes) but the model outputs {output_units} classes")
        elif ds.num_classes < output_units:
            warnings.append(f"data has {ds.num_classes} classes, model outputs {output_units}")
    if input_range is not None:
        lo, hi = float(ds.x_eval.min()), float(ds.x_eval.max())
        span = input_range[1] - input_range[0]
        if lo < input_range[0] - 0.1 * span or hi > input_range[1] + 0.1 * span:
            warnings.append(f"data ranges {lo:.4g}..{hi:.4g} but the model's quantized input covers "
                            f"{input_range[0]:.4g}..{input_range[1]:.4g}: values outside are clipped; "
                            f"scale the data the way the model was trained")
    return warnings


def quantized_input_range(scale: float | None, zero_point: int | None, dtype: str) -> tuple | None:
    """The float range an integer input tensor can represent, or None for float inputs."""
    if scale is None or not dtype.startswith(("int", "uint")):
        return None
    limits = np.iinfo(dtype)
    return ((limits.min - zero_point) * scale, (limits.max - zero_point) * scale)


def _fmt(shape) -> str:
    return "(" + ", ".join("?" if s in (None, -1) else str(s) for s in shape) + ")"
