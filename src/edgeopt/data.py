"""Datasets: .npz/.npy files, image folders, CSV and built-ins, with splits, roles and checks.

A model with several inputs gets one array per input (``NamedArrays``, keyed by input name); a
model with several outputs one label array per output. ``load_roles`` combines ``--data`` (split
as usual) with role files: ``--train-data``, ``--calib-data`` and ``--eval-data`` each replace
their split. Everything here is numpy and scikit-learn; no TensorFlow import.
"""
from __future__ import annotations

import csv
import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgeopt.core.arrays import Arrays, NamedArrays, first_array
from edgeopt.errors import UserError, one_line

BUILTINS = ("digits", "fashion-mnist", "blobs2d")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass
class Dataset:
    """Arrays for one task, already split.

    ``x_*``: float32 arrays (samples first), or ``NamedArrays`` keyed by input name for a model with
    several inputs. ``y_*``: int64 class ids (classification, binary), 0/1 int64 vectors
    (multilabel) or float32 targets (regression); ``NamedArrays`` in model-output order for several
    outputs (``label_outputs`` says which output each belongs to). ``task`` is the task of the
    first (or only) label; ``tasks`` one per label; ``task_reason`` says why (printed, recorded).
    ``sources`` says which file each split came from (data roles)."""

    name: str
    x_train: Arrays
    y_train: Arrays
    x_val: Arrays
    y_val: Arrays
    x_eval: Arrays
    y_eval: Arrays
    task: str = "classification"
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)
    task_reason: str = ""
    task_reasons: list[str] = field(default_factory=list)  # one per label, like ``tasks``
    output_reading: str = "auto"  # "probabilities" | "logits" | "auto": how to threshold one unit
    tasks: list[str] = field(default_factory=list)
    label_outputs: list[str] = field(default_factory=list)
    x_calib: Arrays | None = None  # a calibration file's samples (--calib-data), used whole
    output_names: list[str] = field(default_factory=list)  # every model output, in order (fit_to_model)
    sources: dict[str, str] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)  # role -> the flag its file came from (--calib-data)

    @property
    def input_names(self) -> list[str]:
        return self.x_eval.names if isinstance(self.x_eval, NamedArrays) else []

    @property
    def input_shape(self) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
        """One sample's shape; ``{input name: shape}`` for several inputs."""
        if isinstance(self.x_eval, NamedArrays):
            return self.x_eval.shapes
        return tuple(self.x_eval.shape[1:])

    def calibration(self, n: int = 500, seed: int = 0) -> Arrays:
        """Calibration samples: the ``--calib-data`` file when given (at most ``n`` rows, taken
        evenly), else a stratified sample of the training split."""
        if self.x_calib is not None:
            idx = np.linspace(0, len(self.x_calib) - 1, min(n, len(self.x_calib))).round().astype(int)
            return self.x_calib[np.unique(idx)]
        if len(self.x_train) == 0:
            raise UserError(f"{self.name}: no training or calibration samples; give --calib-data (or "
                            f"--train-data / --data) to calibrate")
        y = self.y_train if self.task in ("classification", "binary") and isinstance(self.y_train, np.ndarray) \
            else None
        if y is None:
            return self.x_train[: min(n, len(self.x_train))]
        return self.x_train[stratified_indices(y, n, seed)]

    def scored_task(self, output: str | int | None = None) -> tuple[str, str, str | None]:
        """(task, why, output name) of the label that is scored: with several labels the one
        belonging to ``output`` (``--output``: name or index; None = the first), else the only
        label. The output name is None for a one-output model. Raises UserError for an unknown
        output."""
        if len(self.tasks) > 1 and self.label_outputs:
            from edgeopt.core.metrics import resolve_output

            k = resolve_output(self.label_outputs, output)
            reasons = self.task_reasons or [self.task_reason] * len(self.tasks)
            return self.tasks[k], reasons[k], self.label_outputs[k]
        name = self.label_outputs[0] if len(self.output_names) > 1 and self.label_outputs else None
        return self.task, self.task_reason, name

    def fingerprint(self) -> str:
        """16 hex digits identifying the eval data, the first training rows and the split sizes
        (several inputs/outputs included), to tell whether two runs used the same data."""
        import hashlib

        h = hashlib.sha256()
        for part in (self.x_eval, self.y_eval, self.x_train[:256]):
            for arr in (part.as_list() if isinstance(part, NamedArrays) else [part]):
                h.update(np.ascontiguousarray(arr).tobytes())
        if self.x_calib is not None:  # a --calib-data file changes every calibrated variant
            for arr in (self.x_calib.as_list() if isinstance(self.x_calib, NamedArrays) else [self.x_calib]):
                h.update(np.ascontiguousarray(arr).tobytes())
        h.update(str((len(self.x_train), len(self.x_val))).encode())
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        out = {
            "name": self.name,
            "task": self.task,
            "input_shape": _jsonable_shape(self.input_shape),
            "num_classes": self.num_classes,
            "train": len(self.x_train),
            "val": len(self.x_val),
            "eval": len(self.x_eval),
        }
        if self.task_reason:
            out["task_reason"] = self.task_reason
        if self.input_names:
            out["inputs"] = self.input_names
        if self.label_outputs:
            out["label_outputs"], out["tasks"] = self.label_outputs, self.tasks
        if self.x_calib is not None:
            out["calib"] = len(self.x_calib)
        if self.sources:
            out["sources"] = dict(self.sources)
        return out


def _jsonable_shape(shape):
    if isinstance(shape, dict):
        return {k: list(v) for k, v in shape.items()}
    return list(shape)


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
    x_key: str | Sequence[str] = "x",
    y_key: str | Sequence[str] = "y",
    label_column: str | int = -1,
    image_size: tuple[int, int] | None = None,
    grayscale: bool | None = None,
    task: str | None = None,
    reshape: Sequence[int] | dict[str, Sequence[int]] | None = None,
    model=None,
    output: str | int | None = None,
    val_fraction: float = 0.1,
    eval_fraction: float = 0.2,
    limit: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load a dataset from a built-in name or a path and split it.

    Built-ins: ``digits``, ``fashion-mnist``, ``blobs2d`` (docs/datasets.md). Files: ``.npz`` (keys
    ``x``/``y``, configurable), ``X.npy`` with a ``Y.npy`` beside it (or ``path_x.npy``/``path_y.npy``),
    ``.csv`` (label column configurable), or a folder of images with one subfolder per class.

    Several inputs/outputs (``.npz`` only): ``x_key``/``y_key`` may list one key per input/output
    (a sequence or ``"a,b"``, in model order); with ``model`` (a ``LoadedModel``) keys named like
    the model's inputs/outputs are found by themselves. ``output``: the output a single label
    array belongs to (name or index; default the first). ``reshape``: one sample's shape for flat
    rows (e.g. a CSV feeding an 8x8x1 image model: ``(8, 8, 1)``). ``task``: ``--task`` (else
    inferred: ``fit_to_model`` with ``model``, the labels alone without). Raises UserError.
    """
    name = str(source)
    in_names, out_names = _model_names(model)
    x_keys, y_keys = _key_list(x_key), _key_list(y_key)
    if name in BUILTINS:
        _only_one_input(in_names, name)
        ds = _builtin(name, val_fraction, limit, seed)
        for split in ("x_train", "x_val", "x_eval"):  # --reshape applies to built-ins too
            setattr(ds, split, reshape_inputs(getattr(ds, split), reshape, name))
        return fit_to_model(ds, model, task, output) if model is not None else ds
    label_free = task == "fidelity" and Path(source).suffix == ".npz"  # scored against the float model
    x, y, classes = read_arrays(source, x_keys=x_keys, y_keys=None if label_free else y_keys,
                                label_column=label_column, image_size=image_size, grayscale=grayscale,
                                input_names=in_names, output_names=out_names,
                                input_shapes=[tuple(i.shape) for i in getattr(model, "inputs", [])])
    if y is None:
        y = np.zeros((len(x), 0), np.float32)  # no labels: zero label columns
    x = reshape_inputs(x, reshape, Path(name).name)
    ds = make_dataset(Path(source).name, x, y, task=task if task != "fidelity" else None,
                      class_names=classes, val_fraction=val_fraction, eval_fraction=eval_fraction,
                      limit=limit, seed=seed)
    return fit_to_model(ds, model, task, output) if model is not None or task else ds


def _key_list(key) -> list[str]:
    if isinstance(key, str):
        return [k.strip() for k in key.split(",") if k.strip()]
    return [str(k) for k in key]


def _model_names(model) -> tuple[list[str], list[str]]:
    if model is None:
        return [], []
    return [i.name for i in getattr(model, "inputs", [])], [o.name for o in getattr(model, "outputs", [])]


def _only_one_input(in_names: list[str], what: str) -> None:
    if len(in_names) > 1:
        raise UserError(f"{what} gives one input array but the model has {len(in_names)} inputs "
                        f"({', '.join(in_names)}); give a .npz with one key per input")


def read_arrays(source: str | Path, *, x_keys: Sequence[str] = ("x",), y_keys: Sequence[str] | None = ("y",),
                label_column: str | int = -1, image_size=None, grayscale=None,
                input_names: Sequence[str] = (), output_names: Sequence[str] = (),
                input_shapes: Sequence[tuple] = ()):
    """Inputs, labels and class names of one data file, unsplit: ``(x, y, class_names)``.
    ``input_shapes``: one sample's shape per model input (None for open axes), for the key hint
    when a .npz's keys do not name the inputs.

    ``x`` is an array, or ``NamedArrays`` keyed by the model's input names for several inputs;
    ``y`` likewise per output (or None when ``y_keys`` is None and the file has no labels)."""
    path = Path(source)
    if not path.exists():
        raise UserError(f"data not found: {path} (give a .npz, .npy, .csv, an image folder, "
                        f"or a built-in: {', '.join(BUILTINS)})")
    if path.suffix != ".npz":
        _only_one_input(list(input_names), path.name)
    if path.is_dir():
        return _image_folder(path, image_size, grayscale)
    if path.suffix == ".npz":
        x, y = _npz(path, list(x_keys), y_keys, list(input_names), list(output_names), list(input_shapes))
        return x, y, []
    if path.suffix == ".npy":
        return (*_npy_pair(path), [])
    if path.suffix == ".csv":
        return (*_csv(path, label_column), [])
    raise UserError(f"unsupported data file {path.name}: use .npz, .npy, .csv or an image folder")


def reshape_inputs(x, reshape, name: str):
    """Give flat rows a sample shape (``--reshape 8,8,1``); a dict reshapes named inputs."""
    if reshape is None:
        return x
    if isinstance(x, NamedArrays):
        if not isinstance(reshape, dict):
            raise UserError(f"{name}: several inputs ({', '.join(x.names)}); give --reshape per input as "
                            f"name:sizes;name:sizes, e.g. {x.names[0]}:8,8,1")
        unknown = sorted(set(reshape) - set(x.names))
        if unknown:
            raise UserError(f"--reshape names {', '.join(unknown)}, but the inputs of {name} are "
                            f"{', '.join(x.names)}")
        return NamedArrays({k: _reshape_one(v, reshape.get(k), f"{name}[{k}]") for k, v in x.items()})
    if isinstance(reshape, dict):
        raise UserError(f"--reshape {';'.join(f'{k}:' + ','.join(map(str, v)) for k, v in reshape.items())} "
                        f"names inputs, but {name} gives one input array; give the sizes alone, e.g. --reshape "
                        f"{','.join(map(str, next(iter(reshape.values()))))}")
    return _reshape_one(x, reshape, name)


def _reshape_one(x: np.ndarray, shape, name: str) -> np.ndarray:
    if shape is None:
        return x
    shape = tuple(int(d) for d in shape)
    per = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    if int(np.prod(shape)) != per:
        raise UserError(f"--reshape {','.join(map(str, shape))} on {name}: cannot reshape samples of {per} "
                        f"values to {'x'.join(map(str, shape))} ({int(np.prod(shape))} values); give a shape "
                        f"whose product is {per}")
    return x.reshape((len(x),) + shape)


def make_dataset(name: str, x, y, *, task: str | None = None,
                 class_names: list[str] | None = None, val_fraction: float = 0.1,
                 eval_fraction: float = 0.2, limit: int | None = None, seed: int = 0) -> Dataset:
    """Check arrays and split them into train / validation / eval (stratified by class for
    classification; ``limit`` keeps a stratified subset first). ``eval_fraction=0`` makes no eval
    split (an ``--eval-data`` file supplies it); ``val_fraction=0`` and ``eval_fraction=0`` keep
    every row in train. ``x``/``y`` may be ``NamedArrays`` (several inputs / outputs)."""
    x, y = _check_arrays(name, x, y)
    ys = y.as_list() if isinstance(y, NamedArrays) else [y]
    tasks = [task or _infer_task(v) for v in ys]
    ys = [_cast_labels(v, t, name) for v, t in zip(ys, tasks)]
    y = NamedArrays(dict(zip(y.names, ys))) if isinstance(y, NamedArrays) else ys[0]
    labels = ys[0] if tasks[0] in ("classification", "binary") and ys[0].ndim == 1 else None
    order = np.arange(len(x))
    if limit and limit < len(x):
        order = np.sort(stratified_indices(labels, limit, seed)) if labels is not None else \
            np.random.default_rng(seed).permutation(len(x))[:limit]
    n = len(order)
    n_eval = max(1, int(round(n * eval_fraction))) if eval_fraction > 0 else 0
    n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 else 0
    if n - n_eval - n_val < 1:
        raise UserError(f"{name}: {n} samples are too few to split into train, validation and eval "
                        f"(need at least {1 + (n_eval > 0) + (n_val > 0)})")
    rest, ev = split_indices(order, labels, n_eval, seed) if n_eval else (order, order[:0])
    tr, va = split_indices(rest, labels, n_val, seed) if n_val else (rest, rest[:0])
    num_classes = int(ys[0].max()) + 1 if tasks[0] in ("classification", "binary") and ys[0].ndim == 1 else 0
    if n_eval:
        _check_limit_leaves_eval(name, limit, n_eval, len(np.unique(labels)) if labels is not None else 0,
                                 1 / eval_fraction)
    return Dataset(name, x[tr], y[tr], x[va], y[va], x[ev], y[ev], tasks[0], num_classes,
                   list(class_names or []), tasks=tasks,
                   label_outputs=list(y.names) if isinstance(y, NamedArrays) else [])


def _check_limit_leaves_eval(name: str, limit: int | None, n_eval: int, classes: int, per_eval: float) -> None:
    """UserError when ``--limit`` leaves fewer eval samples than classes (accuracy on 1 sample of a
    10-class task means nothing); ``per_eval``: samples of the limit per eval sample (5 for 20%)."""
    if not limit or classes < 2 or n_eval >= classes:
        return
    need = int(np.ceil(classes * per_eval))
    raise UserError(f"--limit {limit} leaves {n_eval} eval sample(s) of {name} for {classes} classes; give "
                    f"--limit {max(need, 10 * classes)} or more (at least {need} for one eval sample per class), "
                    f"or drop --limit")


def _cast_labels(y: np.ndarray, task: str, name: str) -> np.ndarray:
    if task in ("classification", "binary"):
        if y.dtype.kind == "f" and not np.all(np.equal(np.mod(y, 1), 0)):
            raise UserError(f"{name}: --task {task} needs integer class labels, but the labels are real "
                            f"numbers; give class ids, or use --task regression")
        return y.astype(np.int64)
    if task == "multilabel":
        return y.astype(np.int64)
    return y.astype(np.float32)


def _check_arrays(name: str, x, y):
    if isinstance(x, NamedArrays):
        x = NamedArrays({k: _check_inputs(f"{name}[{k}]", v) for k, v in x.items()})
    else:
        x = _check_inputs(name, x)
    if isinstance(y, NamedArrays):
        y = NamedArrays({k: _check_labels(f"{name}[{k}]", v, len(x)) for k, v in y.items()})
    else:
        y = _check_labels(name, y, len(x))
    return x, y


def _check_inputs(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.size == 0 or len(x) == 0:
        raise UserError(f"{name}: the data is empty (0 samples)")
    if x.dtype.kind not in "biuf":
        raise UserError(f"{name}: inputs have dtype {x.dtype}; expected numbers")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
        raise UserError(f"{name}: {bad} samples contain NaN or infinite values; clean or drop them")
    return x


def _check_labels(name: str, y, n: int) -> np.ndarray:
    y = np.asarray(y)
    if n != len(y):
        raise UserError(f"{name}: {n} inputs but {len(y)} labels; they must have the same length")
    if y.dtype.kind not in "biuf":
        raise UserError(f"{name}: labels have dtype {y.dtype}; expected integer class ids or numbers")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise UserError(f"{name}: labels contain NaN or infinite values")
    if y.ndim == 2 and y.shape[1] > 1 and set(np.unique(y).tolist()) <= {0, 1} and (y.sum(axis=1) == 1).all():
        y = y.argmax(axis=1)  # one-hot labels
    return y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y


def _infer_task(y: np.ndarray) -> str:
    """The task the labels alone suggest (the model's output layer refines it: ``fit_to_model``)."""
    if y.ndim == 2 and y.shape[1] > 1 and set(np.unique(y).tolist()) <= {0, 1}:
        return "multilabel"
    if y.dtype.kind in "biu" and y.ndim == 1:
        if y.min() < 0:
            raise UserError(f"class labels must be 0..N-1, found {int(y.min())}")
        return "classification"
    if y.ndim == 1 and np.all(np.equal(np.mod(y, 1), 0)) and y.min() >= 0 and len(np.unique(y)) <= 1000:
        return "classification"
    return "regression"


def fit_to_model(ds: Dataset, model=None, task: str | None = None, output: str | int | None = None) -> Dataset:
    """Settle the task of each label from the model's output layer and the labels
    (``core.metrics.infer_task``): sets ``task``/``tasks``/``task_reason``/``output_reading``,
    casts labels to match, and records which output each label belongs to.

    ``model``: a ``LoadedModel`` (``outputs`` with shape and activation) or None (labels alone).
    ``task``: ``--task`` (checked against the labels). ``output``: the output a single label
    belongs to (``--output``: name or index). Returns the same Dataset, updated. Raises UserError
    (e.g. float labels for a 10-class classifier)."""
    from edgeopt.core.metrics import infer_task, resolve_output

    outs = list(getattr(model, "outputs", []) or [])
    names = [o.name for o in outs]
    ys = ds.y_eval.as_list() if isinstance(ds.y_eval, NamedArrays) else [ds.y_eval]
    label_free = len(ys) == 1 and ys[0].ndim == 2 and ys[0].shape[1] == 0  # --task fidelity: no label columns
    if len(ys) == 1 and outs and (output is not None or label_free):
        targets = [resolve_output(names, output)]  # a wrong --output is refused for one output too
    elif outs and len(ys) != len(outs):
        raise UserError(f"the model has {len(outs)} outputs but the data has {len(ys)} label arrays; give "
                        f"one label key per output (--y-key a,b) or one label and --output")
    else:
        targets = list(range(len(ys)))
    infos = []
    for y, k in zip(ys, targets):
        spec = outs[k] if outs else None
        units = int(spec.shape[-1]) if spec is not None and spec.shape and spec.shape[-1] else None
        infos.append(infer_task(y, units=units, activation=getattr(spec, "activation", None), declared=task))
    ds.tasks, ds.task_reasons = [i.task for i in infos], [i.reason for i in infos]
    ds.task, ds.task_reason, ds.output_reading = infos[0].task, infos[0].reason, infos[0].output
    if outs:
        ds.label_outputs, ds.output_names = [names[k] for k in targets], names
    for split in ("y_train", "y_val", "y_eval"):
        value = getattr(ds, split)
        if isinstance(value, NamedArrays):
            setattr(ds, split, NamedArrays({n: _cast_labels(v, t, ds.name)
                                            for (n, v), t in zip(value.items(), ds.tasks)}))
        else:
            setattr(ds, split, _cast_labels(value, ds.task, ds.name))
    if ds.task in ("classification", "binary") and ys[0].ndim == 1 and len(ys[0]):
        ds.num_classes = max(ds.num_classes, int(np.max(ys[0])) + 1)
    return ds


def _npz(path: Path, x_keys: list[str], y_keys: list[str] | None, input_names: list[str],
         output_names: list[str], input_shapes: list[tuple] | None = None):
    """(x, y) from a .npz: one key per input (by the model's input names, or the given keys in
    input order) and one per output; y is None when ``y_keys`` is None."""
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            shapes = {k: tuple(f[k].shape[1:]) for k in keys} if len(input_names) > 1 else {}
            hint = suggest_keys(shapes, input_names, input_shapes or [], exclude=set(y_keys or []))
            xk = _pick_keys(keys, x_keys, input_names, "x", "inputs", "--x-key", path.name, hint=hint)
            yk = None if y_keys is None else _pick_keys(keys, y_keys, output_names, "y", "outputs", "--y-key",
                                                        path.name, allow_one=True)
            x = _named(f, xk, input_names)
            y = None if yk is None else _named(f, yk, output_names if len(yk) == len(output_names) else yk)
            return x, y
    except UserError:
        raise
    except Exception as e:  # zip errors, pickled arrays, truncation
        raise UserError(f"cannot read {path.name} as .npz: {one_line(e)}") from None


def _named(f, keys: list[str], names: list[str]):
    if len(keys) == 1:
        return f[keys[0]]
    return NamedArrays({(names[i] if i < len(names) else k): f[k] for i, k in enumerate(keys)})


def suggest_keys(shapes: dict[str, tuple], names: list[str], input_shapes: list[tuple],
                 exclude: set[str] = frozenset()) -> list[str] | None:
    """The .npz keys that fit a model's inputs, in input order, or None when there is no such
    choice. ``shapes``: key -> one sample's shape; ``input_shapes``: one per input name (None
    for open axes). Each input takes the key whose sample shape fits it; among several, the key
    most like the input's name (``difflib`` ratio), so ``image``/``features`` get ``x_img``/``x_vec``
    from keys x, x_img, x_vec, y. ``exclude``: label keys, never inputs."""
    import difflib

    if not names or len(input_shapes) != len(names):
        return None
    taken: list[str] = []
    for name, want in zip(names, input_shapes):
        fits = [k for k, got in shapes.items() if k not in exclude and k not in taken and _fits_shape(got, want)]
        if not fits:
            return None
        taken.append(max(fits, key=lambda k: (difflib.SequenceMatcher(None, k.lower(), name.lower()).ratio(),
                                              -list(shapes).index(k))))
    return taken


def _fits_shape(got: tuple, want: tuple) -> bool:
    return len(got) == len(want) and all(w in (None, -1) or w == g for g, w in zip(got, want))


def _pick_keys(keys, given, names, default, what, flag, fname, allow_one=False, hint=None) -> list[str]:
    """The .npz keys to read, in model order. ``given``: --x-key/--y-key (default ["x"]/["y"])."""
    explicit = list(given) != [default]
    want = len(names) or 1
    if explicit:
        missing = [k for k in given if k not in keys]
        if missing:
            raise UserError(f"{fname} has keys {keys} but not {missing}: name them with {flag}")
        if names and len(given) != want and not (allow_one and len(given) == 1):
            raise UserError(f"{len(given)} keys given with {flag} but the model has {want} {what} "
                            f"({', '.join(names)}); give one key per {what[:-1]}, in order")
        return list(given)
    if want > 1 and all(n in keys for n in names):
        return list(names)
    if default in keys and (want == 1 or allow_one):
        return [default]
    if want == 1 and len(names) == 1 and names[0] in keys:
        return [names[0]]
    if want > 1:
        fix = (f"{flag} {','.join(hint)} (the keys whose arrays fit the {what}, in {what[:-1]} order)" if hint
               else f"one key per {what[:-1]} with {flag} a,b (in {what[:-1]} order)")
        raise UserError(f"{fname} has keys {keys} but the model's {what} are {', '.join(names)}: name {fix}, "
                        f"or save the arrays under the {what[:-1]} names")
    if default == "y":
        raise UserError(f"{fname} has keys {keys} but no labels 'y': name the labels with --y-key, or score "
                        f"without labels against the float model with --task fidelity")
    raise UserError(f"{fname} has keys {keys} but no inputs {default!r}: name them with {flag}")


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


# ---------------------------------------------------------------- data roles

def load_data_roles(data: str | Path | None = None, *, train: str | Path | None = None,
                    calib: str | Path | None = None, eval: str | Path | None = None,
                    val_fraction: float = 0.1, eval_fraction: float = 0.2, limit: int | None = None,
                    seed: int = 0, task: str | None = None, model=None, output: str | int | None = None,
                    **read_kwargs) -> Dataset:
    """One Dataset from ``--data`` and the role files ``--train-data``, ``--calib-data``, ``--eval-data``.

    - ``eval``: the numbers in the table; used whole (eval count = its length), never split.
    - ``train``: fine-tuning data; the validation split (``val_fraction``) is carved from it.
    - ``calib``: calibration samples only (labels optional); ``Dataset.calibration`` then reads
      this file and nothing else.
    - ``data``: split as usual into the roles no file supplies: everything (train / val / eval)
      when alone; train + val when ``eval`` is given; used whole as eval when ``train`` is given;
      unused (an error) when both are.

    ``read_kwargs`` go to ``read_arrays`` (``x_key``, ``y_key``, ``label_column``, ``image_size``,
    ``grayscale``) plus ``reshape``; ``model``, ``task``, ``output``: see ``load_data``. Raises
    UserError when no role supplies eval data, or for any unreadable file.
    """
    if data is None and train is None and eval is None:
        raise UserError("no data: give --data, or --eval-data (with --train-data or --calib-data to optimize)")
    if data is not None and train is not None and eval is not None:
        raise UserError("--data is not used when both --train-data and --eval-data are given; drop one of them")
    from edgeopt.validate import data_roles

    data_roles(train, calib, eval, data)
    kw = dict(read_kwargs)
    reshape = kw.pop("reshape", None)
    common = dict(model=model, output=output, task=task, reshape=reshape, seed=seed, **kw)
    if data is not None and train is None and eval is None:
        ds = load_data(data, val_fraction=val_fraction, eval_fraction=eval_fraction, limit=limit, **common)
        ds.sources = {"train": str(data), "val": str(data), "eval": str(data)}
    else:
        train_src = train if train is not None else (data if eval is not None else None)
        eval_src = eval if eval is not None else data
        ev = _whole(eval_src, common)
        if train_src is not None:
            tr = load_data(train_src, val_fraction=val_fraction, eval_fraction=0.0, limit=limit, **common)
        else:  # eval only: measuring needs no training data
            tr = _empty_like(ev)
        ds = Dataset(Path(str(eval_src)).name, tr.x_train, tr.y_train, tr.x_val, tr.y_val, ev.x_train,
                     ev.y_train, ev.task, max(ev.num_classes, tr.num_classes), ev.class_names or tr.class_names,
                     ev.task_reason, ev.output_reading, ev.tasks, ev.label_outputs,
                     output_names=ev.output_names)
        ds.sources = {"eval": str(eval_src), **({"train": str(train_src), "val": str(train_src)}
                                                if train_src is not None else {})}
        train_flag = "--train-data" if train is not None else "--data"
        ds.flags = {"eval": "--eval-data" if eval is not None else "--data", "train": train_flag, "val": train_flag}
    if calib is not None:
        names = [i.name for i in getattr(model, "inputs", [])] if model is not None else []
        x, _, _ = read_arrays(calib, x_keys=_key_list(kw.get("x_key", "x")), y_keys=None,
                              label_column=kw.get("label_column", -1), image_size=kw.get("image_size"),
                              grayscale=kw.get("grayscale"), input_names=names)
        x = reshape_inputs(x, reshape, Path(str(calib)).name)
        ds.x_calib = _check_inputs(Path(str(calib)).name, x) if not isinstance(x, NamedArrays) else \
            NamedArrays({k: _check_inputs(f"{calib}[{k}]", v) for k, v in x.items()})
        ds.sources["calib"] = str(calib)
    return ds


def _whole(source, common: dict) -> Dataset:
    """A file used whole (every row in ``x_train``/``y_train`` of the returned Dataset)."""
    if str(source) in BUILTINS:
        raise UserError(f"the built-in {source} comes with its own splits: give it as --data, and files "
                        f"as --train-data/--eval-data")
    return load_data(source, val_fraction=0.0, eval_fraction=0.0, **common)


def _empty_like(ds: Dataset) -> Dataset:
    none = np.arange(0)
    return Dataset(ds.name, ds.x_train[none], ds.y_train[none], ds.x_train[none], ds.y_train[none],
                   ds.x_train[none], ds.y_train[none], ds.task)


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
        _check_limit_leaves_eval("fashion-mnist", limit, len(yte), 10, 6)
    n_val = max(1, int(round(len(order) * val_fraction)))
    tr, va = split_indices(order, ytr, n_val, seed)
    return Dataset("fashion-mnist", xtr[tr], ytr[tr], xtr[va], ytr[va], xte, yte,
                   "classification", 10, FASHION_CLASSES)


# ---------------------------------------------------------------- checks against a model

def check_against_model(ds: Dataset, input_shape: tuple | dict | list, output_units: int | None,
                        input_range: tuple[float, float] | None = None) -> list[str]:
    """Raise UserError for hard mismatches; return warnings for soft ones.

    ``input_shape`` excludes the batch dimension (None for free dims): one tuple, or one per
    input (a list in model order, or a dict by input name) for a model with several inputs; a
    single tuple against several-input data checks the first input (data keys are in model order).
    Every split is checked (eval, train, validation and the ``--calib-data`` samples), each
    error naming the flag and file the split came from, the shapes and the fix.
    """
    for role, x in _splits(ds):
        _check_shapes(ds, role, x, input_shape)
    warnings = []
    y = ds.y_eval
    if ds.task == "regression" and output_units and output_units > 1 and isinstance(y, np.ndarray) and y.ndim == 1:
        if ds.task_reason.startswith("given with --task"):  # the user asked for regression: another fix
            raise UserError(f"--task regression needs one target per output value, but the model outputs "
                            f"{output_units} values per sample and data {ds.name} has one label per sample "
                            f"(e.g. {float(y[0]):g}), class ids for a {output_units}-class classifier; drop "
                            f"--task regression to score it as classification, or give {output_units} target "
                            f"columns per sample")
        raise UserError(f"data {ds.name} has real-valued labels (e.g. {float(y[0]):g}) but the model outputs "
                        f"{output_units} classes; give integer class ids 0..{output_units - 1}, or pass "
                        f"--task regression if the outputs really are targets")
    if ds.task in ("classification", "binary") and output_units:
        if output_units == 1 and ds.num_classes <= 2:
            pass
        elif ds.num_classes > output_units:
            raise UserError(f"data {ds.name} has labels up to {ds.num_classes - 1} "
                            f"({ds.num_classes} classes) but the model outputs {output_units} classes; give "
                            f"class ids 0..{output_units - 1} in the model's output order (or pick the "
                            f"right label array with --y-key)")
        elif ds.num_classes < output_units:
            warnings.append(f"data has {ds.num_classes} classes, model outputs {output_units}")
        n_eval, classes = len(first_array(ds.x_eval)), max(ds.num_classes, output_units, 2)
        if 0 < n_eval < classes:
            warnings.append(f"the eval split has {n_eval} sample(s) for {classes} classes: its accuracy cannot "
                            f"tell variants apart; give more data or a larger --eval-data file")
    if input_range is not None:
        first = first_array(ds.x_eval)
        lo, hi = float(first.min()), float(first.max())
        span = input_range[1] - input_range[0]
        if lo < input_range[0] - 0.1 * span or hi > input_range[1] + 0.1 * span:
            warnings.append(f"data ranges {lo:.4g}..{hi:.4g} but the model's quantized input covers "
                            f"{input_range[0]:.4g}..{input_range[1]:.4g}: values outside are clipped; "
                            f"scale the data the way the model was trained")
    return warnings


def _splits(ds: Dataset):
    """(role, inputs) of every split that holds samples: eval, train, val and the calibration file."""
    for role, x in (("eval", ds.x_eval), ("train", ds.x_train), ("val", ds.x_val), ("calib", ds.x_calib)):
        if x is not None and len(x):
            yield role, x


def _check_shapes(ds: Dataset, role: str, x, input_shape) -> None:
    """UserError naming the flag, the file, the shape found and expected and the fix when the
    samples of one split do not fit the model's inputs."""
    got_all = x.shapes if isinstance(x, NamedArrays) else {"": tuple(x.shape[1:])}
    if isinstance(input_shape, dict):
        want_all = input_shape
    elif input_shape and not isinstance(input_shape[0], (int, type(None))) and not hasattr(input_shape[0], "__index__"):
        want_all = dict(zip(got_all, input_shape))  # a list of shapes, in model order
    else:
        want_all = {next(iter(got_all)): input_shape}
    where = _role_source(ds, role)
    if len(want_all) > 1 and len(want_all) != len(got_all):
        raise UserError(f"{where} has {len(got_all)} input array(s) but the model has {len(want_all)} "
                        f"inputs; give one .npz key per input (--x-key a,b)")
    for (gname, got), want in zip(got_all.items(), want_all.values()):
        got, want = tuple(got), tuple(want)
        if len(got) != len(want) or any(w not in (None, -1, g) for w, g in zip(want, got)):
            which = f" for input {gname!r}" if gname else ""
            raise UserError(f"{where}: input shape {_fmt(got)}{which} but the model expects {_fmt(want)}; "
                            f"{_shape_fix(got, want)}")


def _role_source(ds: Dataset, role: str) -> str:
    """'--calib-data calib.npz': the flag and the file a split came from."""
    flag = ds.flags.get(role) or ("--calib-data" if role == "calib" else "--data")
    return f"{flag} {Path(str(ds.sources.get(role) or ds.name)).name}"


def _shape_fix(got: tuple, want: tuple) -> str:
    """How to make samples of shape ``got`` fit ``want``: --reshape when the sizes match, else the
    right array (--x-key) or open axes (--input-shape)."""
    fixed = [d for d in want if d not in (None, -1)]
    if len(fixed) == len(want) and int(np.prod(got)) == int(np.prod(want)):
        return f"give --reshape {','.join(map(str, want))} to reshape each sample"
    return ("give samples of that shape (pick the right .npz array with --x-key, reshape flat rows with "
            "--reshape, or set open axes with --input-shape)")


def quantized_input_range(scale: float | None, zero_point: int | None, dtype: str) -> tuple | None:
    """The float range an integer input tensor can represent, or None for float inputs."""
    if scale is None or not dtype.startswith(("int", "uint")):
        return None
    limits = np.iinfo(dtype)
    return ((limits.min - zero_point) * scale, (limits.max - zero_point) * scale)


def _fmt(shape) -> str:
    return "(" + ", ".join("?" if s in (None, -1) else str(s) for s in shape) + ")"
