"""Calibration for post-training quantization: checked sample data and activation ranges.

Ranges are measured by running the float .tflite in LiteRT with every intermediate tensor kept,
and are returned in ai-edge-quantizer's QSV format (``{tensor_name: {"min": arr, "max": arr}}``)
so they can be passed straight to ``Quantizer.quantize(calibration_result=...)``.

Two methods:
- ``minmax``: the global min/max over all calibration samples (ai-edge-quantizer's own
  calibrator averages per-sample ranges, which narrows them and cost 1.5 points on
  Fashion-MNIST: see MEASURED.md).
- ``percentile``: the (100 - p)-th and p-th percentiles of each tensor's values, which clips
  rare outliers so the int8 grid is finer for the bulk of the values.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgeopt.errors import UserError, one_line

METHODS = ("minmax", "percentile")
MIN_SAMPLES_WITHOUT_WARNING = 10
# Percentiles are estimated from at most this many values per tensor (a random subsample when a
# tensor holds more): exact enough for 99.99 and bounded in memory for large activations.
MAX_VALUES_PER_TENSOR = 2_000_000


def calibration_data(ctx, model, n: int | None = None) -> np.ndarray:
    """The calibration sample for a step: ``ctx.options["calibration_data"]`` (an array or a .npy
    path) when given, else a stratified sample of the training split. Checked against the model."""
    n = int(n if n is not None else ctx.options.get("calibration_samples", 500))
    given = ctx.options.get("calibration_data")
    if given is not None:
        x = _load_array(given)[:n] if n > 0 else _load_array(given)
    else:
        if n < 1:
            raise UserError(f"calibration_samples is {n}; int8 calibration needs at least 1 sample "
                            f"(500 is a good default)")
        x = ctx.dataset.calibration(n, seed=getattr(ctx, "seed", 0))
    if len(getattr(model, "inputs", []) or []) > 1:
        return check_multi_calibration(x, model, log=ctx.log)
    return check_calibration_data(x, _model_input_shape(model), log=ctx.log)


def check_multi_calibration(x: Any, model, log=print):
    """Calibration samples for a model with several inputs: ``x`` a NamedArrays (or dict) with one
    array per input, matched by input name (else in input order). Returns a ``NamedArrays`` keyed
    by the model's input names, in input order, each array checked like ``check_calibration_data``.
    Raises UserError when the number of arrays differs from the number of inputs."""
    from edgeopt.convert import _input_name
    from edgeopt.data import NamedArrays

    arrays = dict(x.items()) if hasattr(x, "items") else None
    names = [_input_name(t) for t in model.inputs]
    if arrays is None or len(arrays) != len(names):
        got = len(arrays) if arrays is not None else 1
        raise UserError(f"the model has {len(names)} inputs ({', '.join(names)}) but the calibration data "
                        f"has {got} array(s); give one array per input (.npz keys or --x-key a,b)")
    ordered = [arrays[k] for k in names] if set(names) == set(arrays) else list(arrays.values())
    return NamedArrays({k: check_calibration_data(a, tuple(None if d is None else int(d) for d in t.shape[1:]),
                                                  log=log)
                        for k, a, t in zip(names, ordered, model.inputs)})


def calibration_batch(calib_x: Any, need: bool, missing: str) -> np.ndarray | None:
    """``calib_x`` as a float32 batch (n, *input) for the file-format quantizers, or None when it is
    not given and not needed. Raises UserError(``missing``) when it is needed and absent, and for an
    empty, wrongly ranked or non-finite batch."""
    if calib_x is None:
        if need:
            raise UserError(missing)
        return None
    calib = np.asarray(calib_x, np.float32)
    if calib.ndim < 2 or len(calib) < 1 or not np.isfinite(calib).all():
        raise UserError(f"calibration data must be a non-empty finite batch shaped (n, *input), "
                        f"got shape {calib.shape}")
    return calib


def check_calibration_data(x: Any, input_shape: tuple, log=print) -> np.ndarray:
    """Return ``x`` as float32 if it fits a model input of ``input_shape`` (no batch dimension);
    raise UserError naming both shapes otherwise. Warns when there are fewer than 10 samples."""
    x = np.asarray(x)
    want = tuple(input_shape)
    if x.dtype.kind not in "biuf":
        raise UserError(f"calibration data has dtype {x.dtype}; expected numbers (float32 inputs "
                        f"shaped like the model input {_fmt(want)})")
    if x.ndim != len(want) + 1 or any(w not in (None, -1, g) for w, g in zip(want, x.shape[1:])):
        raise UserError(f"calibration data has shape {_fmt(x.shape)} but the model expects batches of "
                        f"{_fmt(want)}, i.e. {_fmt((None,) + want)}; reshape the data")
    if len(x) < 1:
        raise UserError("calibration data is empty (0 samples); give at least 1, ideally 100-500")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise UserError("calibration data contains NaN or infinite values; clean it first")
    if len(x) < MIN_SAMPLES_WITHOUT_WARNING:
        log(f"warning: only {len(x)} calibration samples; activation ranges may not be "
            f"representative (use 100-500)")
    return x


def activation_ranges(float_tflite: bytes, x: np.ndarray, method: str = "minmax",
                      percentile: float = 99.99, batch: int = 64,
                      seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Per-tensor activation ranges of a float .tflite over calibration inputs ``x``."""
    if method not in METHODS:
        raise UserError(f"unknown calibration {method!r}; use one of: {', '.join(METHODS)}")
    if method == "percentile" and not 50.0 < float(percentile) <= 100.0:
        raise UserError(f"percentile must be in (50, 100], got {percentile} (99.99 is typical)")
    rng = np.random.default_rng(seed)
    chunks = max(1, -(-len(x) // batch))
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    samples: dict[str, list[np.ndarray]] = {}
    ndim: dict[str, int] = {}
    for name, values in _activations(float_tflite, x, batch):
        ndim[name] = values.ndim
        flat = values.ravel().astype(np.float32)
        flat = flat[np.isfinite(flat)]
        if not flat.size:
            continue
        lo[name] = min(lo.get(name, np.inf), float(flat.min()))
        hi[name] = max(hi.get(name, -np.inf), float(flat.max()))
        if method == "percentile":
            keep = MAX_VALUES_PER_TENSOR // chunks
            if flat.size > keep:
                flat = rng.choice(flat, size=keep, replace=False)
            samples.setdefault(name, []).append(flat)
    ranges = {}
    for name in lo:
        mn, mx = lo[name], hi[name]
        if method == "percentile":
            vals = np.concatenate(samples[name])
            mn, mx = (float(v) for v in np.percentile(vals, [100.0 - percentile, percentile]))
        shape = (1,) * max(1, ndim[name])  # keepdims over every axis, as ai-edge-quantizer does
        ranges[name] = {"min": np.full(shape, mn, np.float32), "max": np.full(shape, mx, np.float32)}
    return ranges


def _activations(float_tflite: bytes, x: np.ndarray, batch: int):
    """Yield (tensor name, values) for every non-constant float tensor, one chunk at a time."""
    interp = preserving_interpreter(float_tflite)
    inp = interp.get_input_details()[0]
    batch = batch_size(inp, batch)
    names = activation_tensors(interp, float_tflite)
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        run_batch(interp, inp, chunk)
        for name, index in names.items():
            yield name, interp.get_tensor(index)


def preserving_interpreter(model: bytes):
    """A LiteRT interpreter that keeps every intermediate tensor (no delegate, so XNNPACK
    does not swallow them)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging" is expected here
        interp = Interpreter(model_content=bytes(model), experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    return interp


def activation_tensors(interp, model: bytes) -> dict[str, int]:
    """Name -> index of the graph input and every op output (the tensors that carry activations)."""
    from edgeopt.core.tflite import tflite_op_details

    out = {d["name"]: d["index"] for d in interp.get_input_details()}
    details = {d["index"]: d for d in interp.get_tensor_details()}
    for op in tflite_op_details(model):  # the ops, from the one .tflite reader
        for index in op["outputs"]:
            if index >= 0 and index in details:
                out[details[index]["name"]] = index
    return out


def batch_size(inp: dict, wanted: int) -> int:
    """``wanted``, or the model's own batch when its batch axis is static (edgeopt converts
    deployables with batch 1, and a fixed-shape Reshape cannot take a resized batch)."""
    return int(inp["shape"][0]) if inp["shape_signature"][0] != -1 else wanted


def run_batch(interp, inp: dict, chunk: np.ndarray) -> None:
    """Run ``chunk`` (one input's samples) through ``interp``, resized to its batch and to its
    sizes on the input's open (``shape_signature`` -1) axes, e.g. a sequence length."""
    sig = inp.get("shape_signature", inp["shape"])
    shape = (len(chunk),) + tuple(int(c) if int(g) == -1 else int(s)
                                  for s, g, c in zip(inp["shape"][1:], sig[1:], chunk.shape[1:]))
    if tuple(interp.get_input_details()[0]["shape"]) != shape:
        interp.resize_tensor_input(inp["index"], shape)
        interp.allocate_tensors()
    from edgeopt.core.arrays import TensorInfo, quantize_input

    scale, zp = inp.get("quantization", (0.0, 0))
    info = TensorInfo(inp["name"], shape, np.dtype(inp["dtype"]).name,
                      float(scale) if scale else None, int(zp) if scale else None)
    interp.set_tensor(inp["index"], quantize_input(chunk, info))
    interp.invoke()


def _model_input_shape(model) -> tuple:
    shape = tuple(model.inputs[0].shape[1:])
    return tuple(None if s is None else int(s) for s in shape)


def _load_array(given) -> np.ndarray:
    if isinstance(given, (str, bytes)) or hasattr(given, "__fspath__"):
        try:
            return np.load(given, allow_pickle=False)
        except (OSError, ValueError) as e:
            reason = one_line(e, 160)
            raise UserError(f"cannot read calibration data {given}: {reason}") from None
    return np.asarray(given)


def _fmt(shape) -> str:
    return "(" + ", ".join("?" if s in (None, -1) else str(s) for s in shape) + ")"
