"""The one task-metric function: how good a model's outputs are for its task.

Used by bench, compare, the techniques' accuracy checks and the benchmarks, so every accuracy in
edgeopt is computed the same way:

- classification, several output units: top-1 (argmax) accuracy;
- classification, one output unit (binary): the unit is a sigmoid probability (thresholded at 0.5)
  or a logit (thresholded at 0); ``output="auto"`` takes probabilities when every value lies in
  [0, 1], logits otherwise;
- regression: mean absolute error and root-mean-square error.

A sample whose outputs are NaN or infinite is never silently read as class 0: it counts as wrong
(classification) and makes the error infinite (regression), and ``nonfinite_outputs`` says how
many there were.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from edgeopt.errors import UserError

Output = Literal["auto", "probabilities", "logits"]
INVALID_LABEL = -1  # the label of a sample whose outputs are not finite (never a real class)


def predicted_labels(pred: np.ndarray, output: Output = "auto") -> np.ndarray:
    """Class labels, shape (n,) int64, from model outputs of shape (n,), (n, 1) or (n, classes).

    One unit is thresholded (0.5 for probabilities, 0 for logits); several units are argmaxed.
    Samples with any non-finite output get ``INVALID_LABEL``.
    """
    pred = np.asarray(pred)
    flat = pred.reshape(len(pred), -1).astype(np.float64, copy=False)
    finite = np.isfinite(flat).all(axis=1)
    if flat.shape[1] == 1:
        col = flat[:, 0]
        if output == "auto":
            vals = col[finite]
            output = "probabilities" if vals.size == 0 or (vals.min() >= 0.0 and vals.max() <= 1.0) else "logits"
        labels = (col > (0.5 if output == "probabilities" else 0.0)).astype(np.int64)
    else:
        labels = np.where(np.isfinite(flat), flat, -np.inf).argmax(axis=1).astype(np.int64)
    labels[~finite] = INVALID_LABEL
    return labels


def _true_labels(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        return y.argmax(axis=1).astype(np.int64)
    if y.size != n:
        raise UserError(f"{n} predictions but {y.size} labels; give one integer label per sample")
    return y.reshape(n).astype(np.int64)


def task_metrics(pred: np.ndarray, y: np.ndarray, task: str, output: Output = "auto") -> dict:
    """Quality of outputs ``pred`` (n samples first) against targets ``y`` for ``task``.

    Returns for "classification" ``{"accuracy": fraction in [0, 1], "metric": "top-1 accuracy"}``
    and for "regression" ``{"mae", "rmse", "metric": "mae"}`` (in target units); both add
    ``"nonfinite_outputs": k`` when k > 0 samples had NaN/inf outputs. Raises UserError for an
    unknown task or mismatched lengths.
    """
    pred = np.asarray(pred)
    n = len(pred)
    if n == 0:
        raise UserError("no samples to score; the evaluation split is empty")
    flat = pred.reshape(n, -1)
    bad = int((~np.isfinite(flat)).any(axis=1).sum()) if flat.dtype.kind == "f" else 0
    extra = {"nonfinite_outputs": bad} if bad else {}
    if task == "classification":
        labels = predicted_labels(flat, output)
        return {"accuracy": float((labels == _true_labels(y, n)).mean()), "metric": "top-1 accuracy", **extra}
    if task != "regression":
        raise UserError(f"unknown task {task!r}; use classification or regression")
    target = np.asarray(y, np.float64).reshape(len(y), -1)
    if len(target) != n:
        raise UserError(f"{n} predictions but {len(target)} targets; give one target per sample")
    got = flat.astype(np.float64)
    if got.shape[1] != target.shape[1]:  # e.g. one target, several outputs: score the first
        got = got[:, :target.shape[1]]
    err = got - target
    if bad:
        return {"mae": float("inf"), "rmse": float("inf"), "metric": "mae", **extra}
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())), "metric": "mae"}


def top1_agreement(pred: np.ndarray, reference: np.ndarray, output: Output = "auto") -> float:
    """Fraction of samples whose predicted class equals the reference outputs' class (fidelity of a
    compressed model to its float original); non-finite outputs never agree."""
    a, b = predicted_labels(pred, output), predicted_labels(reference, output)
    return float(((a == b) & (a != INVALID_LABEL)).mean())
