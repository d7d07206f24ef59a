"""The one task-metric function: how good a model's outputs are for its task.

Used by bench, compare, the techniques' accuracy checks and the benchmarks, so every accuracy in
edgeopt is computed the same way. Tasks (``TASKS``):

- classification, several output units: top-1 (argmax) accuracy;
- binary, one output unit: a sigmoid probability (thresholded at 0.5) or a logit (thresholded at 0);
  ``output="auto"`` takes probabilities when every value lies in [0, 1], logits otherwise;
- multilabel, several independent units: each label thresholded (0.5 / 0, or per-label thresholds
  chosen on validation data with ``choose_thresholds``); label-wise accuracy, exact-match accuracy
  and micro-F1;
- regression: mean absolute error and root-mean-square error (lower is better);
- fidelity: label-free agreement with the float model's outputs (``fidelity``), recorded for every
  variant beside the task metric.

A custom metric (``load_metric("path/file.py:function")``) replaces the built-in one:
``metric(y_true, y_pred) -> dict[str, float]`` whose first key is the headline.

Accuracies carry a 95% Wilson score interval (``wilson_interval``) and a flag when the eval set
is too small to tell variants apart (``eval_resolution``).

A sample whose outputs are NaN or infinite is never silently read as class 0: it counts as wrong
(classification) and makes the error infinite (regression), and ``nonfinite_outputs`` says how
many there were.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from edgeopt.errors import UserError, one_line

Output = Literal["auto", "probabilities", "logits"]
TASKS = ("classification", "binary", "multilabel", "regression", "fidelity")
INVALID_LABEL = -1  # the label of a sample whose outputs are not finite (never a real class)
LOWER_IS_BETTER = ("mae", "rmse")
Z95 = 1.959963984540054  # two-sided 95% normal quantile


# ------------------------------------------------------------------ task inference

@dataclass
class TaskInference:
    """The task a model output is scored with, why, and how to read the output."""

    task: str  # one of TASKS
    reason: str  # one line, printed and recorded
    output: Output = "auto"  # "probabilities" | "logits" | "auto" (binary / multilabel thresholds)

    def to_dict(self) -> dict:
        return {"task": self.task, "reason": self.reason, "output": self.output}


def output_kind(activation: str | None = None, sample: np.ndarray | None = None) -> str | None:
    """How an output layer reads: "softmax", "sigmoid" or "linear".

    ``activation`` is the Keras activation name of the output layer; without it, ``sample`` (float
    outputs of the model, samples first) decides: rows in [0, 1] summing to 1 -> softmax, values in
    [0, 1] -> sigmoid, anything else -> linear. None when neither is known.
    """
    act = (activation or "").lower()
    if act in ("softmax", "log_softmax"):
        return "softmax"
    if act in ("sigmoid", "hard_sigmoid"):
        return "sigmoid"
    if act:
        return "linear"
    if sample is None:
        return None
    flat = np.asarray(sample, np.float64).reshape(len(sample), -1)
    flat = flat[np.isfinite(flat).all(axis=1)]
    if flat.size == 0:
        return None
    if flat.min() >= 0 and flat.max() <= 1:
        if flat.shape[1] > 1 and np.allclose(flat.sum(axis=1), 1.0, atol=1e-3):
            return "softmax"
        return "sigmoid"
    return "linear"


def _integer_valued(y: np.ndarray) -> bool:
    return y.dtype.kind in "biu" or bool(np.all(np.equal(np.mod(y, 1), 0)))


def _binary_matrix(y: np.ndarray) -> bool:
    return y.ndim == 2 and y.shape[1] > 1 and set(np.unique(y).tolist()) <= {0, 1}


def infer_task(y: np.ndarray | None, *, units: int | None = None, activation: str | None = None,
               sample: np.ndarray | None = None, declared: str | None = None) -> TaskInference:
    """The task for one model output from its layer and its labels.

    ``y``: labels (n,) or (n, k), or None (label-free: fidelity). ``units``: size of the output's last
    axis. ``activation``/``sample``: see ``output_kind``. ``declared``: ``--task`` when given (checked
    against the labels). Raises UserError for labels that cannot belong to the output, e.g. float
    labels for a 10-class classifier, naming the fix.
    """
    kind = output_kind(activation, sample)
    if declared:
        return _check_declared(declared, y, units, kind)
    if y is None:
        return TaskInference("fidelity", "no labels: scored by agreement with the float model")
    y = np.asarray(y)
    how = {"softmax": "softmax", "sigmoid": "sigmoid", "linear": "linear", None: "unknown"}[kind]
    read = "probabilities" if kind in ("softmax", "sigmoid") else "logits" if kind == "linear" else "auto"
    if units == 1:
        if y.ndim == 1 and _integer_valued(y) and set(np.unique(y).tolist()) <= {0, 1}:
            thr = {"probabilities": "0.5", "logits": "0"}.get(read, "0.5 for probabilities, 0 for logits")
            return TaskInference("binary", f"one {how} output unit and 0/1 labels: binary, threshold {thr}", read)
        return TaskInference("regression", f"one {how} output unit and labels that are not 0/1 classes: "
                                           "regression (MAE, RMSE)")
    if _binary_matrix(y) and (units is None or y.shape[1] == units):
        if (y.sum(axis=1) == 1).all() and kind != "sigmoid":
            return TaskInference("classification", f"{how} output with one-hot labels: classification (top-1)", read)
        if kind == "softmax":
            raise UserError(f"labels mark several classes per sample but the output is a softmax over {units}; "
                            f"a multilabel model needs sigmoid outputs (or pass --task multilabel)")
        return TaskInference("multilabel", f"{y.shape[1]} {how} output units and 0/1 label vectors: "
                                           "multilabel (one threshold per label)", read)
    if y.ndim == 1 and _integer_valued(y):
        if y.size and y.min() < 0:
            raise UserError(f"class labels must be 0..N-1, found {int(y.min())}")
        return TaskInference("classification", f"{units or 'several'} {how} output units and integer labels: "
                                               "classification (top-1)", read)
    if y.ndim == 1 and units and units > 1:
        raise UserError(f"float labels (e.g. {float(y[~np.equal(np.mod(y, 1), 0)][0]):g}) given to a "
                        f"{units}-class classifier; give integer class ids 0..{units - 1}, or pass "
                        f"--task regression if the outputs really are targets")
    return TaskInference("regression", f"{how} output and real-valued labels: regression (MAE, RMSE)")


def _check_declared(task: str, y, units, kind) -> TaskInference:
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    read = "probabilities" if kind in ("softmax", "sigmoid") else "logits" if kind == "linear" else "auto"
    if task == "fidelity" or y is None:
        if task != "fidelity":
            raise UserError(f"--task {task} needs labels; the data has none (use --task fidelity)")
        return TaskInference("fidelity", "given with --task: scored by agreement with the float model")
    y = np.asarray(y)
    if task == "classification" and y.ndim == 1 and not _integer_valued(y):
        raise UserError(f"--task classification needs integer class labels, but the labels are real "
                        f"numbers (e.g. {float(y[0]):g}); give class ids or use --task regression")
    if task == "binary" and not set(np.unique(y).tolist()) <= {0, 1}:
        raise UserError("--task binary needs 0/1 labels")
    if task == "multilabel" and not _binary_matrix(y):
        raise UserError("--task multilabel needs 0/1 label vectors shaped (samples, labels)")
    return TaskInference(task, "given with --task", read)


# ------------------------------------------------------------------ labels from outputs

def predicted_labels(pred: np.ndarray, output: Output = "auto", threshold: float | None = None) -> np.ndarray:
    """Class labels, shape (n,) int64, from model outputs of shape (n,), (n, 1) or (n, classes).

    One unit is thresholded (``threshold``, else 0.5 for probabilities, 0 for logits); several
    units are argmaxed. Samples with any non-finite output get ``INVALID_LABEL``.
    """
    pred = np.asarray(pred)
    flat = pred.reshape(len(pred), -1).astype(np.float64, copy=False)
    finite = np.isfinite(flat).all(axis=1)
    if flat.shape[1] == 1:
        col = flat[:, 0]
        thr = threshold if threshold is not None else default_threshold(col[finite], output)
        labels = (col > thr).astype(np.int64)
    else:
        labels = np.where(np.isfinite(flat), flat, -np.inf).argmax(axis=1).astype(np.int64)
    labels[~finite] = INVALID_LABEL
    return labels


def default_threshold(values: np.ndarray, output: Output = "auto") -> float:
    """0.5 for probabilities, 0 for logits; "auto" reads values all in [0, 1] as probabilities."""
    if output == "auto":
        v = np.asarray(values, np.float64)
        v = v[np.isfinite(v)]
        output = "probabilities" if v.size == 0 or (v.min() >= 0.0 and v.max() <= 1.0) else "logits"
    return 0.5 if output == "probabilities" else 0.0


def _true_labels(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        return y.argmax(axis=1).astype(np.int64)
    if y.size != n:
        raise UserError(f"{n} predictions but {y.size} labels; give one integer label per sample")
    return y.reshape(n).astype(np.int64)


def choose_thresholds(pred_val: np.ndarray, y_val: np.ndarray, output: Output = "auto") -> np.ndarray:
    """Per-label decision thresholds for a multilabel model, each the one maximising that label's F1
    on validation data (candidates: the label's own output values; ties keep the default threshold).

    ``pred_val``, ``y_val``: (n, labels). Returns float64 (labels,). Record them with the variant.
    """
    p = np.asarray(pred_val, np.float64).reshape(len(pred_val), -1)
    y = np.asarray(y_val).reshape(len(y_val), -1).astype(bool)
    if p.shape != y.shape:
        raise UserError(f"{p.shape[1]} output labels but {y.shape[1]} label columns")
    base = default_threshold(p, output)
    out = np.full(p.shape[1], base)
    for j in range(p.shape[1]):
        col = p[:, j][np.isfinite(p[:, j])]
        best = _f1(p[:, j] > base, y[:, j])
        for cand in np.unique(col):
            f1 = _f1(p[:, j] >= cand, y[:, j])
            if f1 > best + 1e-12:
                # midway to the next lower value, so the threshold generalises (``>`` decisions)
                lower = col[col < cand]
                best, out[j] = f1, float((cand + lower.max()) / 2) if lower.size else float(cand - 1e-6)
    return out


def _f1(hit: np.ndarray, truth: np.ndarray) -> float:
    tp = float((hit & truth).sum())
    denom = float(hit.sum() + truth.sum())
    return 2 * tp / denom if denom else 1.0


# ------------------------------------------------------------------ the metric function

def task_metrics(pred: Any, y: Any, task: str | list[str], output: Output = "auto", *,
                 output_name: str | int | None = None, thresholds: np.ndarray | None = None,
                 metric: "CustomMetric | None" = None) -> dict:
    """Quality of outputs ``pred`` (n samples first) against targets ``y`` for ``task``.

    Returns for "classification" and "binary" ``{"accuracy": fraction in [0, 1], "metric",
    "correct", "samples"}`` (binary adds ``threshold``); "multilabel" ``{"accuracy" (label-wise),
    "subset_accuracy", "f1_micro", "thresholds"}``; "regression" ``{"mae", "rmse", "metric": "mae"}``
    (target units, lower is better); "fidelity" gives ``{"metric": "fidelity"}`` only (see
    ``fidelity``). Every result adds ``"nonfinite_outputs": k`` when k > 0 samples had NaN/inf.
    With ``metric`` (a ``CustomMetric``), its dict is returned with ``"metric"`` naming its headline.

    Several outputs: ``pred`` and ``y`` are ``NamedArrays`` (or lists) in model-output order and
    ``task`` a list (one per label); every labelled output is scored under ``"per_output"`` and the
    headline keys come from ``output_name`` (name or index; default the first labelled output).
    Raises UserError for an unknown task or output, or mismatched lengths.
    """
    preds, ys = _as_list(pred), _as_list(y)
    if len(preds) > 1 or len(ys) > 1:
        return _multi_output(pred, preds, ys, task, output, output_name, thresholds, metric)
    pred, y = preds[0], ys[0]
    task = task[0] if isinstance(task, (list, tuple)) else task
    if metric is not None:
        return metric(y, pred)
    pred = np.asarray(pred)
    n = len(pred)
    if n == 0:
        raise UserError("no samples to score; the evaluation split is empty")
    flat = pred.reshape(n, -1)
    bad = int((~np.isfinite(flat)).any(axis=1).sum()) if flat.dtype.kind == "f" else 0
    extra = {"nonfinite_outputs": bad} if bad else {}
    if task in ("classification", "binary"):
        thr = None
        if flat.shape[1] == 1:
            col = flat[:, 0][np.isfinite(flat[:, 0])] if flat.dtype.kind == "f" else flat[:, 0]
            thr = float(thresholds[0]) if thresholds is not None else default_threshold(col, output)
        correct = int((predicted_labels(flat, output, thr) == _true_labels(y, n)).sum())
        out = {"accuracy": correct / n, "metric": "top-1 accuracy" if thr is None else "accuracy",
               "correct": correct, "samples": n}
        return {**out, "threshold": thr, **extra} if thr is not None else {**out, **extra}
    if task == "multilabel":
        return {**_multilabel(flat, y, output, thresholds), **extra}
    if task == "fidelity":
        return {"metric": "fidelity", "samples": n, **extra}
    if task != "regression":
        raise UserError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    target = np.asarray(y, np.float64).reshape(len(y), -1)
    if len(target) != n:
        raise UserError(f"{n} predictions but {len(target)} targets; give one target per sample")
    got = flat.astype(np.float64)
    if got.shape[1] != target.shape[1]:  # e.g. one target, several outputs: score the first
        got = got[:, :target.shape[1]]
    if bad:
        return {"mae": float("inf"), "rmse": float("inf"), "metric": "mae", "samples": n, **extra}
    err = got - target
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())), "metric": "mae",
            "samples": n}


def _multilabel(flat: np.ndarray, y, output: Output, thresholds) -> dict:
    truth = np.asarray(y).reshape(len(y), -1).astype(bool)
    if truth.shape != flat.shape:
        raise UserError(f"{flat.shape[1]} output labels but label vectors of {truth.shape[1]}")
    p = flat.astype(np.float64)
    thr = np.asarray(thresholds, np.float64) if thresholds is not None else \
        np.full(p.shape[1], default_threshold(p, output))
    hit = np.where(np.isfinite(p), p > thr, ~truth)  # a non-finite output is wrong
    correct = int((hit == truth).all(axis=1).sum())
    return {"accuracy": float((hit == truth).mean()), "metric": "label accuracy",
            "subset_accuracy": correct / len(p), "f1_micro": _f1(hit.ravel(), truth.ravel()),
            "thresholds": [round(float(t), 6) for t in thr], "correct": int((hit == truth).sum()),
            "samples": int(truth.size)}


def _as_list(v) -> list:
    if v is None:
        return [None]
    if hasattr(v, "as_list") and hasattr(v, "names"):  # NamedArrays
        return v.as_list()
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, dict):
        return list(v.values())
    return [v]


def _names(v, count: int) -> list[str]:
    if hasattr(v, "names"):
        return list(v.names)
    if isinstance(v, dict):
        return list(v)
    return [f"output_{i}" for i in range(count)]


def resolve_output(names: list[str], output_name: str | int | None) -> int:
    """Index of the chosen output (``--output``: a name or a 0-based index; None -> 0)."""
    if output_name is None:
        return 0
    if isinstance(output_name, int) or str(output_name).isdigit():
        k = int(output_name)
        if not 0 <= k < len(names):
            raise UserError(f"--output {k} is out of range: the model has {len(names)} outputs ({', '.join(names)})")
        return k
    if output_name in names:
        return names.index(output_name)
    raise UserError(f"no output named {output_name!r}; the outputs are {', '.join(names)} (or give an index)")


def _multi_output(pred, preds, ys, task, output, output_name, thresholds, metric) -> dict:
    names = _names(pred, len(preds))
    tasks = list(task) if isinstance(task, (list, tuple)) else [task] * len(ys)
    chosen = resolve_output(names, output_name)
    if len(ys) == 1:  # one label: it belongs to the chosen output
        res = task_metrics(preds[chosen], ys[0], tasks[0], output, thresholds=thresholds, metric=metric)
        return {**res, "output": names[chosen]}
    if len(ys) != len(preds):
        raise UserError(f"the model has {len(preds)} outputs but the data has {len(ys)} label arrays; give one "
                        f"label key per output (--y-key a,b) or one label and --output")
    per = {names[k]: task_metrics(preds[k], ys[k], tasks[k], output,
                                  thresholds=thresholds if k == chosen else None,
                                  metric=metric if k == chosen else None) for k in range(len(preds))}
    return {**per[names[chosen]], "output": names[chosen], "per_output": per}


# ------------------------------------------------------------------ fidelity

def fidelity(pred: Any, ref: Any, output: Output = "auto") -> dict:
    """Label-free agreement of a variant's outputs with the float model's (the reference).

    ``pred``, ``ref``: outputs of the same samples (n first; NamedArrays/lists for several outputs,
    scored on the first). Returns ``{"top1_agreement": fraction (argmax, or the thresholded unit
    for one output unit), "snr_db": 10 log10(sum ref^2 / sum (pred - ref)^2), "cosine": mean per-sample
    cosine similarity, "samples": n}``; SNR is inf for identical outputs. Non-finite outputs never
    agree and make SNR -inf.
    """
    p = np.asarray(_as_list(pred)[0], np.float64)
    r = np.asarray(_as_list(ref)[0], np.float64)
    if p.shape != r.shape:
        raise UserError(f"outputs of shape {p.shape} cannot be compared with reference outputs {r.shape}")
    n = len(p)
    p, r = p.reshape(n, -1), r.reshape(n, -1)
    finite = np.isfinite(p).all(axis=1) & np.isfinite(r).all(axis=1)
    noise = float(((p - r) ** 2)[finite].sum()) if finite.all() else float("inf")
    signal = float((r[finite] ** 2).sum())
    snr = float("inf") if noise == 0 else -float("inf") if not math.isfinite(noise) or signal == 0 \
        else 10 * math.log10(signal / noise)
    dot = (p * r).sum(axis=1)
    norms = np.linalg.norm(p, axis=1) * np.linalg.norm(r, axis=1)
    cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1), np.where((p == r).all(axis=1), 1.0, 0.0))
    cos = np.where(finite, cos, 0.0)
    return {"top1_agreement": top1_agreement(p, r, output), "snr_db": round(snr, 4) if math.isfinite(snr) else snr,
            "cosine": float(cos.mean()) if n else float("nan"), "samples": n}


def top1_agreement(pred: np.ndarray, reference: np.ndarray, output: Output = "auto") -> float:
    """Fraction of samples whose predicted class equals the reference outputs' class (fidelity of a
    compressed model to its float original); non-finite outputs never agree. One output unit is
    thresholded at the reference's threshold for both."""
    reference = np.asarray(reference)
    thr = None
    if reference.reshape(len(reference), -1).shape[1] == 1:
        thr = default_threshold(reference.reshape(-1), output)
    a, b = predicted_labels(pred, output, thr), predicted_labels(reference, output, thr)
    return float(((a == b) & (a != INVALID_LABEL)).mean())


# ------------------------------------------------------------------ confidence and resolution

def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``correct / n`` (95% with the default z).

    E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
    J. Am. Stat. Assoc. 22 (1927) 209-212. Unlike the normal (Wald) interval it stays inside
    [0, 1] and is sensible at 0% or 100% and for small n. Returns (low, high) fractions.
    """
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


# An eval set is "too small to tell variants apart" when one sample moves the accuracy by more than
# the accuracy budget (the allowed drop), or when the 95% interval's half-width exceeds 1 point.
MAX_CI_HALF_WIDTH = 0.01


def eval_resolution(correct: int, n: int, budget: float | None = None) -> dict:
    """How finely an eval set of ``n`` samples can tell variants apart.

    Returns ``{"ci95": [low, high], "ci_half_width": fraction, "one_sample": 1/n, "too_small": bool,
    "why": str}``. ``too_small`` is True when 1/n exceeds ``budget`` (the accuracy budget as a
    fraction, e.g. 0.01 for one point) or the Wilson 95% half-width exceeds MAX_CI_HALF_WIDTH.
    """
    lo, hi = wilson_interval(correct, n)
    half = (hi - lo) / 2
    one = 1.0 / n if n else 1.0
    why = []
    if budget is not None and one > budget:
        why.append(f"one sample is {one * 100:.3g} points, more than the {budget * 100:.3g}-point budget")
    if half > MAX_CI_HALF_WIDTH:
        why.append(f"the 95% interval is +/-{half * 100:.2g} points (wider than +/-{MAX_CI_HALF_WIDTH * 100:g})")
    return {"ci95": [round(lo, 5), round(hi, 5)], "ci_half_width": round(half, 5), "one_sample": round(one, 6),
            "too_small": bool(why), "why": f"{n} eval samples: " + "; ".join(why) if why else ""}


def with_confidence(metrics: dict, budget: float | None = None) -> dict:
    """``metrics`` plus ``accuracy_ci95`` and ``eval_resolution`` when it holds a counted accuracy."""
    if "accuracy" in metrics and "correct" in metrics and "samples" in metrics:
        res = eval_resolution(int(metrics["correct"]), int(metrics["samples"]), budget)
        return {**metrics, "accuracy_ci95": res["ci95"], "eval_resolution": res}
    return metrics


# ------------------------------------------------------------------ change against the baseline

def _lower_is_better(key: str) -> bool:
    return any(w in key.lower() for w in ("mae", "mse", "loss", "error")) or key in LOWER_IS_BETTER


def headline(metrics: dict) -> tuple[str, float, bool] | None:
    """(key, value, higher_is_better) of a metrics dict's headline figure, or None."""
    key = metrics.get("metric")
    if key in metrics and isinstance(metrics[key], (int, float)):
        return key, float(metrics[key]), bool(metrics.get("higher_is_better", not _lower_is_better(key)))
    for k in ("accuracy", "mae"):
        if k in metrics:
            return k, float(metrics[k]), k not in LOWER_IS_BETTER
    return None


def metric_change(metrics: dict, base: dict) -> dict:
    """Change of the headline metric against the baseline's: ``accuracy_delta_points`` for
    accuracies (points, positive = better), ``<key>_delta`` for other metrics (their own units) with
    ``better`` saying which direction is better (MAE/RMSE: lower), plus ``rmse_delta`` for regression."""
    h, b = headline(metrics), headline(base)
    if not h or not b or h[0] != b[0]:
        return {}
    key, value, higher = h
    if key == "accuracy" or "accuracy" in key:
        out = {"accuracy_delta_points": round((value - b[1]) * 100, 3)}
    else:
        out = {f"{key}_delta": round(value - b[1], 6)}
    if "rmse" in metrics and "rmse" in base and key != "rmse":
        out["rmse_delta"] = round(metrics["rmse"] - base["rmse"], 6)
    out["better"] = "higher" if higher else "lower"
    return out


# ------------------------------------------------------------------ custom metrics

@dataclass
class CustomMetric:
    """A user metric ``fn(y_true, y_pred) -> dict[str, float]``; ``headline`` is its first key
    unless named (``module:function:key``). Calling it checks what the function returns."""

    spec: str
    fn: Callable[[Any, Any], dict]
    headline: str | None = None

    def __call__(self, y_true, y_pred) -> dict:
        try:
            res = self.fn(y_true, y_pred)
        except Exception as e:
            raise UserError(f"custom metric {self.spec} failed: {one_line(e)}") from None
        if not isinstance(res, dict) or not res:
            raise UserError(f"custom metric {self.spec} must return a non-empty dict of numbers, "
                            f"got {type(res).__name__}")
        key = self.headline or next(iter(res))
        if key not in res:
            raise UserError(f"custom metric {self.spec} returned {sorted(res)} but not the headline {key!r}")
        try:
            out = {k: float(v) for k, v in res.items()}
        except (TypeError, ValueError):
            raise UserError(f"custom metric {self.spec} must return numbers; got {res!r:.120}") from None
        return {**out, "metric": key, "higher_is_better": not _lower_is_better(key)}


def load_metric(spec: str) -> CustomMetric:
    """Load ``module:function`` or ``path/to/file.py:function``, optionally ``...:function:key`` to
    name the headline key (default: the first key the function returns).

    The function must accept two positional arguments ``(y_true, y_pred)`` (arrays, samples first;
    for several outputs, those of the chosen output) and return a dict of floats. Headlines named
    like an error (mae, rmse, mse, loss, error) are lower-is-better, others higher-is-better. A
    file's folder is put on ``sys.path`` so it can import its neighbours, as when run from there.
    Check it before loading anything heavy. Raises UserError when the module, file or function is
    missing, or the function cannot take two arguments.
    """
    parts = str(spec).split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise UserError(f"--metric {spec!r}: give module:function or path/to/file.py:function")
    target, fname = parts[0], parts[1]
    key = parts[2] if len(parts) == 3 else None
    module = _import_target(target, spec)
    fn = getattr(module, fname, None)
    if not callable(fn):
        raise UserError(f"--metric {spec}: {target} has no function {fname!r}")
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        raise UserError(f"--metric {spec}: {fname} must accept (y_true, y_pred); its signature is "
                        f"{fname}{inspect.signature(fn)}") from None
    except ValueError:  # builtins without a signature: accept
        pass
    return CustomMetric(str(spec), fn, key)


def _import_target(target: str, spec: str):
    path = Path(target)
    if target.endswith(".py") or path.exists():
        if not path.is_file():
            raise UserError(f"--metric {spec}: file {target} not found")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = f"edgeopt_user_metric_{path.stem}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        try:
            mod_spec.loader.exec_module(module)
        except Exception as e:
            raise UserError(f"--metric {spec}: cannot import {target}: {one_line(e)}") from None
        sys.modules[name] = module
        return module
    try:
        return importlib.import_module(target)
    except Exception as e:
        raise UserError(f"--metric {spec}: cannot import module {target!r}: {one_line(e)}") from None
