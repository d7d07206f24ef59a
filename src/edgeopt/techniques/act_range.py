"""Activation range per tensor, chosen by measured error among min/max, percentile and MSE.

For every activation tensor of the float .tflite, three candidate int8 ranges are computed on one
half of the calibration samples:

- ``minmax``: the global min and max;
- ``percentile``: the (100 - p)-th and p-th percentiles (clips rare outliers);
- ``mse``: the range ``[a * min, a * max]`` (``a`` on a grid in (0, 1]) that minimizes the
  quantization mean squared error of the tensor's values (the "MSE" calibrator of e.g. NNCF,
  TensorRT and AIMET; R. Krishnamoorthi, "Quantizing deep convolutional networks for efficient
  inference: A whitepaper", 2018, section 3.5).

Each candidate is then scored by the quantization MSE it gives on the OTHER half (held out), and the
tensor gets the candidate with the lowest held-out error; the chosen method's range is recomputed on
all samples. Quantization is simulated as ai-edge-quantizer does it for activations (asymmetric int8,
range widened to contain 0). The result is in ai-edge-quantizer's QSV format, ready for
``ptq.aeq_static(float_tflite, ranges)``.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UserError

METHODS = ("minmax", "percentile", "mse")
MAX_VALUES = 50_000  # values kept per tensor and half (random subsample beyond)
MSE_GRID = np.linspace(0.05, 1.0, 40)


def fake_quant(v: np.ndarray, lo: float, hi: float, bits: int = 8) -> np.ndarray:
    """Asymmetric uniform quantize-dequantize of ``v`` to ``bits`` over [lo, hi] (0 included)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    levels = 2 ** bits - 1
    scale = (hi - lo) / levels if hi > lo else 1.0
    zp = np.round(-lo / scale)
    q = np.clip(np.round(v / scale) + zp, 0, levels)
    return ((q - zp) * scale).astype(np.float32)


def quant_mse(v: np.ndarray, lo: float, hi: float) -> float:
    return float(np.mean((fake_quant(v, lo, hi) - v) ** 2)) if v.size else 0.0


def candidate_range(v: np.ndarray, method: str, percentile: float = 99.99) -> tuple[float, float]:
    """The [lo, hi] range one method gives for the values ``v`` (1-D float array)."""
    if method == "minmax":
        return float(v.min()), float(v.max())
    if method == "percentile":
        lo, hi = np.percentile(v, [100.0 - percentile, percentile])
        return float(lo), float(hi)
    if method == "mse":
        lo, hi = float(v.min()), float(v.max())
        errs = [quant_mse(v, a * lo, a * hi) for a in MSE_GRID]
        a = float(MSE_GRID[int(np.argmin(errs))])
        return a * lo, a * hi
    raise UserError(f"unknown activation range method {method!r}; use one of: {', '.join(METHODS)}")


def choose_range(first: np.ndarray, second: np.ndarray, methods=METHODS,
                 percentile: float = 99.99) -> dict:
    """Pick a method for one tensor: ranges fitted on ``first``, error measured on ``second``.

    Returns ``{"method", "min", "max", "errors": {method: held-out MSE}}`` with min/max recomputed
    by the chosen method on both halves together."""
    errors = {}
    for m in methods:
        lo, hi = candidate_range(first, m, percentile)
        errors[m] = quant_mse(second, lo, hi)
    best = min(methods, key=lambda m: (errors[m], METHODS.index(m)))
    lo, hi = candidate_range(np.concatenate([first, second]), best, percentile)
    return {"method": best, "min": lo, "max": hi, "errors": errors}


def choose_activation_ranges(float_tflite: bytes, x: np.ndarray, methods=METHODS,
                             percentile: float = 99.99, seed: int = 0) -> tuple[dict, list[dict]]:
    """Per-tensor ranges of a float .tflite over calibration inputs ``x`` (>= 2 samples).

    Returns ``(ranges, choices)``: ranges in ai-edge-quantizer's QSV format
    (``{tensor: {"min": array, "max": array}}``) and one record per tensor ``{"tensor", "method",
    "min", "max", "errors"}``. Raises UserError for an unknown method or fewer than 2 samples."""
    methods = tuple(methods)
    for m in methods:
        if m not in METHODS:
            raise UserError(f"unknown activation range method {m!r}; use one of: {', '.join(METHODS)}")
    if len(x) < 2:
        raise UserError(f"choosing activation ranges needs at least 2 calibration samples, got {len(x)}")
    rng = np.random.default_rng(seed)
    half = len(x) // 2
    halves = [_values(float_tflite, part, rng) for part in (x[:half], x[half:])]
    ranges, choices = {}, []
    for name, (first, ndim) in halves[0].items():
        second = halves[1].get(name, (first, ndim))[0]
        if not first.size:
            continue
        c = choose_range(first, second, methods, percentile)
        shape = (1,) * max(1, ndim)
        ranges[name] = {"min": np.full(shape, c["min"], np.float32), "max": np.full(shape, c["max"], np.float32)}
        choices.append({"tensor": name, **c})
    return ranges, choices


def _values(model: bytes, x: np.ndarray, rng, batch: int = 64) -> dict[str, tuple[np.ndarray, int]]:
    """Tensor name -> (subsampled float values, rank) of every activation tensor over ``x``."""
    from edgeopt.techniques.calibration import activation_tensors, batch_size, preserving_interpreter, run_batch

    interp = preserving_interpreter(model)
    inp = interp.get_input_details()[0]
    batch = batch_size(inp, batch)
    names = activation_tensors(interp, model)
    chunks: dict[str, list[np.ndarray]] = {}
    ndim: dict[str, int] = {}
    per_chunk = max(1, MAX_VALUES // max(1, -(-len(x) // batch)))
    for start in range(0, len(x), batch):
        run_batch(interp, inp, x[start:start + batch])
        for name, index in names.items():
            v = interp.get_tensor(index)
            if np.dtype(v.dtype).kind != "f":
                continue
            ndim[name] = v.ndim
            flat = v.ravel().astype(np.float32)
            flat = flat[np.isfinite(flat)]
            if flat.size > per_chunk:
                flat = rng.choice(flat, size=per_chunk, replace=False)
            chunks.setdefault(name, []).append(flat)
    return {n: (np.concatenate(c), ndim[n]) for n, c in chunks.items()}


def method_counts(choices: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in choices:
        out[c["method"]] = out.get(c["method"], 0) + 1
    return out


__all__ = ["METHODS", "candidate_range", "choose_activation_ranges", "choose_range", "fake_quant",
           "method_counts", "quant_mse"]
