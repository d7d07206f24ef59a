"""Numerics checks: a float model that overflows, and outliers that collapse int8 calibration.

``check_finite`` runs the float Keras model on the data and refuses (UserError, exit 2) when
any output is NaN/inf, naming how many samples and the first layer where it appears: int8
calibration on such a model yields meaningless scales, and a NaN output would otherwise be
scored as class 0.

``explain_outliers`` explains an int8 collapse caused by a few outlier samples: min/max
calibration stretches a tensor's range to cover them, so the int8 step is too coarse for the
bulk of the values. For each activation tensor it compares the min/max range with the central
``percentile`` range (99.9 by default) and counts the samples outside it; optionally it
measures, on the calibration data, how close an int8 model calibrated each way stays to the
float model (percentile calibration clips the outliers: Wu et al., "Integer Quantization for
Deep Learning Inference", arXiv:2004.09602, section 4).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgeopt.errors import UserError

PREDICT_BATCH = 256
CANDIDATE_PERCENTILES = (99.9, 99.99)  # percentile calibrations tried when verifying a fix


# ---------------------------------------------------------------- NaN / inf in the float model

def check_finite(keras_model, x: Any, *, batch_size: int = PREDICT_BATCH, source: str = ""):
    """Run ``keras_model`` on ``x`` and return its outputs if they are all finite.

    ``x``: an array (batch, ...) or, for several inputs, a list/dict of arrays. Returns the
    model's outputs (an array, or a list for several outputs) so callers can reuse them.

    Raises UserError "the float model gives NaN/inf on N of M samples (first at layer L)" when
    some outputs are NaN/inf, and a UserError naming the samples when ``x`` itself is not finite;
    ``source`` says what ``x`` is ("--data d.npz: train, validation and eval splits"), after "samples of".
    """
    of = f" of {source}" if source else ""
    arrays = _as_list(x)
    n = len(arrays[0])
    bad_in = np.zeros(n, bool)
    for a in arrays:
        bad_in |= ~np.isfinite(np.asarray(a, np.float64).reshape(n, -1)).all(axis=1)
    if bad_in.any():
        raise UserError(f"the data contains NaN/inf in {int(bad_in.sum())} of {n} samples{of} "
                        f"(first: sample {int(np.argmax(bad_in))}); clean or drop them")
    out = keras_model.predict(x, batch_size=batch_size, verbose=0)
    bad = np.zeros(n, bool)
    for o in _as_list(out):
        bad |= ~np.isfinite(np.asarray(o).reshape(n, -1)).all(axis=1)
    if not bad.any():
        return out
    idx = np.flatnonzero(bad)
    layer = first_nonfinite_layer(keras_model, [np.asarray(a)[idx[:32]] for a in arrays])
    where = f" (first at layer {layer})" if layer else ""
    raise UserError(f"the float model gives NaN/inf on {len(idx)} of {n} samples{of}{where}; its float32 "
                    f"activations overflow on those inputs, so accuracy and int8 ranges would be "
                    f"meaningless: check the weights and scale the inputs")


def first_nonfinite_layer(keras_model, arrays: list[np.ndarray]) -> str | None:
    """Name of the first layer (in execution order) whose output has a NaN/inf on ``arrays``
    (one array per model input); nested models are looked into (``keras_graph.flatten``).
    None for subclassed models, whose layer graph is not known."""
    import keras

    from edgeopt.keras_graph import flatten, graph_of

    try:
        model = flatten(keras_model)
    except UserError:
        model = keras_model
    func = graph_of(model)
    if func is None:
        return None
    nodes = [node for depth in sorted(func._nodes_by_depth, reverse=True)
             for node in func._nodes_by_depth[depth] if not node.is_input and node.operation]
    tensors = [t for node in nodes for t in node.outputs]
    owners = [node.operation.name for node in nodes for _ in node.outputs]
    probe = keras.Model(func.inputs, tensors)
    values = probe(arrays if len(arrays) > 1 else arrays[0], training=False)  # a few samples: eager
    for name, v in zip(owners, values if isinstance(values, (list, tuple)) else [values]):
        if not np.isfinite(np.asarray(v)).all():
            return name
    return None


def _as_list(x) -> list:
    if isinstance(x, dict):
        return list(x.values())
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


# ---------------------------------------------------------------- outliers and int8 calibration

@dataclass
class WideRange:
    """One activation tensor whose min/max range is much wider than its central range."""

    tensor: str
    minmax: tuple[float, float]  # global min/max over the calibration data
    central: tuple[float, float]  # the (100 - p)-th and p-th percentiles
    widening: float  # minmax width / central width
    outlier_samples: int  # calibration samples with a value outside the central range


@dataclass
class OutlierReport:
    """What ``explain_outliers`` found; ``ranges`` is sorted by widening, widest first."""

    samples: int
    percentile: float
    ranges: list[WideRange] = field(default_factory=list)
    recommended: dict[str, Any] | None = None  # e.g. {"calibration": "percentile", "percentile": 99.9}
    # Output SNR (dB) against the float model per calibration method on the non-outlier samples.
    measured_snr_db: dict[str, float] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.ranges)

    def summary(self) -> str:
        """One line for the terminal table or a log."""
        if not self.ranges:
            return (f"no activation range is more than the threshold wider than its "
                    f"{self.percentile:g}th percentile range")
        w = self.ranges[0]
        line = (f"tensor {w.tensor}: min/max range {w.widening:.0f}x wider than its {self.percentile:g}th "
                f"percentile range because of {w.outlier_samples} of {self.samples} calibration samples")
        if self.recommended:
            line += (f"; calibration={self.recommended['calibration']} "
                     f"(percentile {self.recommended['percentile']:g}) fixes it")
            if self.measured_snr_db:
                snr = self.measured_snr_db
                best = snr[f"percentile {self.recommended['percentile']:g}"]
                line += f" (output SNR on the other samples {snr['minmax']:.1f} dB -> {best:.1f} dB)"
        return line

    def to_dict(self) -> dict:
        return asdict(self)


def explain_outliers(float_tflite: bytes, x: np.ndarray, *, percentile: float = 99.9,
                     min_widening: float = 10.0, verify: bool = True) -> OutlierReport:
    """Find activation tensors whose min/max calibration range is stretched by outliers.

    ``float_tflite``: the float32 model (bytes); ``x``: calibration inputs (batch, ...).
    A tensor is reported when (max - min) / (p-th - (100-p)-th percentile) >= ``min_widening``.
    With ``verify``, both calibrations are quantized (ai-edge-quantizer, int8) and the output
    SNR against the float model is measured on the bulk of ``x`` (the samples inside every
    reported central range: what the outliers cost everyone else); percentile is recommended
    only if it is better there. Raises UserError for an unknown percentile (outside (50, 100]).
    """
    from edgeopt.techniques.calibration import activation_ranges

    if not 50.0 < float(percentile) <= 100.0:
        raise UserError(f"percentile must be in (50, 100], got {percentile} (99.9 is typical)")
    x = np.asarray(x, np.float32)
    wide = activation_ranges(float_tflite, x, "minmax")
    central = activation_ranges(float_tflite, x, "percentile", percentile)
    per_sample = _per_sample_extremes(float_tflite, x)
    report = OutlierReport(samples=len(x), percentile=float(percentile))
    outlier_mask = np.zeros(len(x), bool)
    for name, r in wide.items():
        lo, hi = float(r["min"].ravel()[0]), float(r["max"].ravel()[0])
        clo, chi = (float(central[name][k].ravel()[0]) for k in ("min", "max"))
        width = max(chi - clo, 1e-12)
        widening = (hi - lo) / width
        if widening < min_widening:
            continue
        smin, smax = per_sample[name]
        outside = (smin < clo) | (smax > chi)
        outlier_mask |= outside
        outliers = int(outside.sum())
        report.ranges.append(WideRange(name, (lo, hi), (clo, chi), round(widening, 2), outliers))
    report.ranges.sort(key=lambda w: -w.widening)
    if report.ranges:
        rec = {"calibration": "percentile", "percentile": float(percentile)}
        if verify:
            bulk = ~outlier_mask if (~outlier_mask).any() else np.ones(len(x), bool)
            candidates = {"minmax": wide, f"percentile {percentile:g}": central}
            for p in CANDIDATE_PERCENTILES:
                if p != percentile:
                    candidates[f"percentile {p:g}"] = activation_ranges(float_tflite, x, "percentile", p)
            snr = _compare_calibrations(float_tflite, x[bulk], candidates)
            report.measured_snr_db = snr
            best = max(snr, key=snr.get)
            report.recommended = (None if best == "minmax" else
                                  {"calibration": "percentile", "percentile": float(best.split()[1])})
        else:
            report.recommended = rec
    return report


def _per_sample_extremes(float_tflite: bytes, x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per tensor: (min over each sample, max over each sample), arrays of length len(x)."""
    from edgeopt.techniques.calibration import _activations

    lo: dict[str, list] = {}
    hi: dict[str, list] = {}
    for name, v in _activations(float_tflite, x, 64):
        v = np.asarray(v, np.float32).reshape(len(v), -1) if np.ndim(v) else np.asarray(v).reshape(1, 1)
        lo.setdefault(name, []).append(v.min(axis=1))
        hi.setdefault(name, []).append(v.max(axis=1))
    return {k: (np.concatenate(lo[k]), np.concatenate(hi[k])) for k in lo}


def _compare_calibrations(float_tflite: bytes, x: np.ndarray, candidates: dict) -> dict[str, float]:
    from ai_edge_litert.interpreter import Interpreter

    from edgeopt.techniques.ptq import aeq_static, float_io

    def run(model: bytes) -> np.ndarray:  # one sample per invoke: the model's batch is fixed at 1
        interp = Interpreter(model_content=model)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
        rows = []
        for i in range(len(x)):
            interp.set_tensor(inp, x[i:i + 1])
            interp.invoke()
            rows.append(np.asarray(interp.get_tensor(out), np.float64))
        return np.concatenate(rows)

    ref = run(float_tflite)
    out = {}
    for method, ranges in candidates.items():
        got = run(float_io(aeq_static(float_tflite, ranges)))
        noise = float(np.mean((got - ref) ** 2))
        out[method] = round(10 * float(np.log10(max(float(np.mean(ref ** 2)), 1e-30) / max(noise, 1e-30))), 2)
    return out


__all__ = ["check_finite", "first_nonfinite_layer", "explain_outliers", "OutlierReport", "WideRange"]
