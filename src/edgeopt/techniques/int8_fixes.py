"""Apply the int8 accuracy fixes to a Keras model and keep those that measurably help.

The fixes (each in its own module, with its paper):
- ``cle``: BatchNorm folding, cross-layer equalization and high-bias absorption (``equalize``),
  pairs through ReLU6 left alone (float outputs unchanged);
- ``cle_relu``: the same with those ReLU6 replaced by ReLU first, as Nagel et al. do (the float
  model changes where an activation exceeded 6; agreement is still measured against the original);
- ``bias_correction``: empirical correction of the weight-rounding output shift (``bias_correction``);
- ``adaround``: adaptive rounding of weights onto the converter's int8 grid (``adaround``);
- ``act_range``: per-tensor activation range among min/max, percentile and MSE (``act_range``);
  the int8 file is then made by ai-edge-quantizer with those ranges instead of the converter.

``choose_fixes`` converts each candidate to a full-int8 .tflite and measures it against the float
model on validation inputs: top-1 agreement with the float model first (what users of a classifier
see), output MSE vs float as the tie-break within sampling noise (McNemar's test on the inputs one
file gets right and the other wrong), and the only measure for a regressor. A fix is kept only when
its converted file beats the converter default on validation, never on faith; otherwise the
converter default is kept. The weight fixes change the Keras weights, so an ONNX or OpenVINO export
of ``ChosenFixes.model`` gains from them too.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeopt.errors import UserError

FIXES = ("cle", "cle_relu", "bias_correction", "adaround", "act_range")
ORDER = {f: i for i, f in enumerate(FIXES)}  # the order fixes are applied in
EXCLUSIVE = {"cle", "cle_relu"}  # two variants of one fix
# A candidate beats another on agreement when its net gain of validation inputs agreeing with float
# exceeds this many standard deviations of the discordant count: McNemar's test (Q. McNemar, 1947,
# "Note on the sampling error of the difference between correlated proportions", Psychometrika 12)
# in its normal approximation, one-sided 5%. Smaller gains are noise: on a MobileNetV2 of
# BENCHMARKS.md ("Peers") single fixes gained up to 24 of 6000 validation inputs (z = 1.6) and then
# gained or lost a similar share of the eval split; within the noise the output MSE decides.
SIGNIFICANCE_Z = 1.645
# The int8 step's fixes="auto" tries these. cle_relu changes the float model (ReLU6 -> ReLU), but
# its int8 file is measured against the original float model like every candidate, so it is kept
# only when it agrees better. adaround is not in auto: it costs ~200 Adam steps per layer on every
# int8 variant (minutes on MobileNetV2) and won on none of the peers benchmark's models
# (BENCHMARKS.md, "Peers"); ask for it by name.
AUTO = ("cle", "cle_relu", "bias_correction", "act_range")


@dataclass
class Trial:
    fixes: list[str]
    agreement: float | None   # top-1 agreement with the float model on validation inputs
    output_mse: float         # mean squared difference of the outputs
    seconds: float
    tflite: bytes = field(repr=False, default=b"")
    model: Any = field(repr=False, default=None)
    records: dict = field(repr=False, default_factory=dict)
    snr_db: float | None = None  # output signal-to-noise ratio vs float (dB)
    agrees: np.ndarray | None = field(repr=False, default=None)  # per validation input: top-1 == float's

    def score(self) -> tuple:
        """Sort key, best last: top-1 agreement with float, then the lower output MSE."""
        return (self.agreement if self.agreement is not None else 0.0, -self.output_mse)

    def beats(self, other: "Trial", mse_gain: float, z: float = SIGNIFICANCE_Z) -> bool:
        """More validation inputs with the float model's top-1 class than ``other`` by more than
        noise (net gain >= ``z`` x sqrt(discordant inputs): McNemar), or, within that noise, at
        least as many and an output MSE vs float at least ``mse_gain`` (relative) lower (the finer
        measure breaks the tie). A regressor (no agreement) by the MSE alone. Without the per-input
        record the agreements are compared as they are."""
        gain, lost = self.discordant(other)
        if gain is not None:
            if gain - lost >= z * np.sqrt(gain + lost) and gain > lost:
                return True
            if gain < lost:
                return False
        elif self.agreement is not None and other.agreement is not None \
                and abs(self.agreement - other.agreement) > 1e-9:
            return self.agreement > other.agreement
        return self.output_mse < (1.0 - mse_gain) * other.output_mse

    def discordant(self, other: "Trial") -> tuple[int | None, int | None]:
        """(inputs this trial agrees on and ``other`` not, the reverse); (None, None) without the
        per-input record of both."""
        if self.agrees is None or other.agrees is None:
            return None, None
        return int((self.agrees & ~other.agrees).sum()), int((other.agrees & ~self.agrees).sum())

    def why(self, other: "Trial") -> str:
        """One line comparing this trial with ``other`` (the measures ``beats`` uses)."""
        me, them = "+".join(self.fixes) or "converter default", "+".join(other.fixes) or "converter default"
        if self.agreement is None or other.agreement is None:
            return f"{me}: output MSE {self.output_mse:.3g} vs {them} {other.output_mse:.3g}"
        gain, lost = self.discordant(other)
        net = f" ({gain} inputs gained, {lost} lost)" if gain is not None else ""
        return (f"{me}: agreement {self.agreement:.2%} vs {them} {other.agreement:.2%}{net}, "
                f"output MSE {self.output_mse:.3g} vs {other.output_mse:.3g}")

    def summary(self) -> dict:
        return {"fixes": self.fixes, "agreement": self.agreement, "output_mse": self.output_mse,
                "output_snr_db": None if self.snr_db is None else round(self.snr_db, 2),
                "seconds": round(self.seconds, 2)}


@dataclass
class ChosenFixes:
    """What ``choose_fixes`` returns: the chosen fixes, the fixed Keras model, the int8 .tflite it
    gives (converter default, or ai-edge-quantizer when ``act_range`` is chosen), the activation
    ranges (or None), per-fix records of what changed, every trial measured, the fixes
    skipped because they cannot apply to the graph (with the reason), and why the choice was made."""
    fixes: list[str]
    model: Any
    tflite: bytes
    ranges: dict | None
    records: dict
    trials: list[Trial]
    skipped: dict[str, str] = field(default_factory=dict)  # fix -> why it cannot apply to this graph
    reason: str = ""  # why these fixes (or none) were kept, in the measures of the choice rule

    def details(self) -> dict:
        """JSON-ready summary for a step's ``details`` (run.json)."""
        out = {"fixes": self.fixes, "reason": self.reason, "trials": [t.summary() for t in self.trials],
               "changed": _json_records(self.records)}
        if self.skipped:
            out["not_applicable"] = dict(self.skipped)
        return out


def apply_fixes(model, fixes: Sequence[str], calib: np.ndarray, *, relu6: str = "keep",
                adaround_iterations: int = 200, log: Callable[[str], None] | None = None):
    """A fixed copy of ``model`` (the original is untouched), the activation ranges when
    ``act_range`` is among ``fixes`` (else None), and per-fix records.

    Returns ``(model, ranges, records)``. Raises UserError for an unknown fix name."""
    from edgeopt.techniques.adaround import adaround
    from edgeopt.techniques.bias_correction import bias_correction
    from edgeopt.techniques.equalize import copy_model, equalize

    fixes = _check(fixes)
    m = copy_model(model)
    records: dict = {}
    if "cle" in fixes or "cle_relu" in fixes:
        records["cle"] = equalize(m, relu6="relu" if "cle_relu" in fixes else relu6)
    ref = copy_model(m) if "adaround" in fixes and "bias_correction" in fixes else None
    if "adaround" in fixes:
        records["adaround"] = adaround(m, calib, iterations=adaround_iterations, log=log)
    if "bias_correction" in fixes:
        # After AdaRound the weights are on the grid: correct them against the float reference.
        records["bias_correction"] = (bias_correction(ref, calib, quantized=m) if ref is not None
                                      else bias_correction(m, calib))
    ranges = None
    if "act_range" in fixes:
        from edgeopt.techniques.act_range import choose_activation_ranges, method_counts

        ranges, choices = choose_activation_ranges(float_tflite(m, _sample_shape(calib)), calib)
        records["act_range"] = {"methods": method_counts(choices), "tensors": len(choices)}
    return m, ranges, records


def not_applicable(model, fix: str, relu6: str = "keep") -> str:
    """Why ``fix`` cannot change this model's int8 file ("" when it can), found from the Keras
    graph without converting: no weight layer (Conv/Depthwise/Separable/Dense) for the weight
    fixes, nothing to fold or equalize for ``cle``, no ReLU6 on an equalizable path for
    ``cle_relu`` (it would repeat ``cle``). Recurrent layers (LSTM, GRU) are not weight layers
    here: their cells are left to the converter. ``act_range`` does not apply to recurrent models:
    ai-edge-quantizer gives the SPLIT ops of an unrolled LSTM cell per-output ranges, and LiteRT's
    XNNPACK delegate then refuses the file ("failed to delegate SPLIT node"; measured with
    ai-edge-quantizer 0.10.0, ai-edge-litert 2.3.0)."""
    import keras

    from edgeopt.convert import _all_layers
    from edgeopt.techniques.equalize import (copy_model, equalization_pairs, fold_batchnorm, model_graph,
                                             weight_units)

    if fix == "act_range":
        rnn = next((la.name for la in _all_layers(model) if isinstance(la, keras.layers.RNN)), None)
        return f"recurrent layer {rnn!r}: its unrolled SPLIT ops get ranges LiteRT refuses" if rnn else ""
    g = model_graph(model)
    units = weight_units(g)
    if not units:
        return "no Conv, DepthwiseConv, SeparableConv or Dense layer to fix"
    if fix not in EXCLUSIVE:
        return ""
    kinds = {type(n.layer).__name__ for n in g.nodes}
    if fix == "cle":
        if "BatchNormalization" in kinds or any(k.startswith("Separable") for k in kinds) \
                or equalization_pairs(model, "keep"):
            return ""
        return "no BatchNorm to fold, no equalizable layer pair and no separable convolution"
    folded = copy_model(model)  # pairs are found after BatchNorm folding, as equalize() does
    fold_batchnorm(folded)
    if len(equalization_pairs(folded, "relu")) == len(equalization_pairs(folded, "keep")):
        return "no ReLU6 between equalizable layers: the same as cle"
    return ""


def _sample_shape(x) -> tuple | None:
    """One sample's shape: open axes (a None time axis) are converted at the data's length."""
    return tuple(int(d) for d in np.shape(x)[1:]) if isinstance(x, np.ndarray) and x.ndim > 1 else None


def float_tflite(model, input_shape: tuple | None = None) -> bytes:
    from edgeopt.convert import keras_to_tflite

    return keras_to_tflite(model, input_shape=input_shape)


def int8_tflite(model, calib: np.ndarray, ranges: dict | None = None) -> bytes:
    """Full-int8 .tflite with float32 I/O: the TFLite converter's default (ops without an int8
    kernel stay float) or, with ``ranges``, ai-edge-quantizer with those activation ranges;
    rewritten smaller by ``tflite_ptq.compact_tflite`` (the same values), as the int8 step ships it."""
    import tensorflow as tf

    from edgeopt.convert import keras_to_tflite

    from edgeopt.techniques.tflite_ptq import compact_tflite

    if ranges is not None:
        from edgeopt.techniques.ptq import aeq_static, float_io

        return compact_tflite(float_io(aeq_static(float_tflite(model, _sample_shape(calib)), ranges, 8, True)))

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return compact_tflite(keras_to_tflite(model, input_shape=_sample_shape(calib),
                                          optimizations=[tf.lite.Optimize.DEFAULT],
                                          representative_dataset=representative, target_spec={"supported_ops": ops}))


Predict = Callable[[Path, np.ndarray], np.ndarray]  # StepContext.predict: (artifact path, x) -> outputs


def tflite_predict(predict: Predict, model: bytes, x: np.ndarray):
    """Outputs of a .tflite given as bytes on ``x``, through the ``predict`` oracle (an array, or
    NamedArrays for several outputs)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.tflite"
        path.write_bytes(model)
        return predict(path, x)


def output_list(y) -> list[np.ndarray]:
    """Model outputs (an array, a list as Keras returns for several outputs, or NamedArrays in
    model-output order) as a list of (n, units) float64 arrays."""
    from edgeopt.core.arrays import as_arrays

    return [np.asarray(a, np.float64).reshape(len(a), -1) for a in as_arrays(y)[1]]


def _decision_mask(pred: np.ndarray, ref: np.ndarray, decisions: bool) -> np.ndarray | None:
    if ref.shape[1] > 1:
        return pred.argmax(1) == ref.argmax(1)
    if not decisions:
        return None
    threshold = 0.5 if ref.min() >= 0.0 and ref.max() <= 1.0 else 0.0
    return (pred > threshold) == (ref > threshold)


def agreement_mask(pred, ref, decisions: bool = False) -> np.ndarray | None:
    """Per input: the prediction's decisions equal the float model's; None for a regressor.
    Several units: top-1 class. One unit: with ``decisions`` (a binary classifier) the thresholded
    decision -- at 0.5 when the float outputs are probabilities in [0, 1], at 0 for logits.
    Several outputs: an input agrees when every classifying output (several units) agrees; their
    one-unit outputs count as regressors (``decisions`` applies to a one-output model only)."""
    preds, refs = output_list(pred), output_list(ref)
    decisions = decisions and len(refs) == 1
    masks = [m for m in (_decision_mask(p, r, decisions) for p, r in zip(preds, refs)) if m is not None]
    return np.logical_and.reduce(masks) if masks else None


def compare(pred, ref, decisions: bool = False) -> tuple[float | None, float]:
    """(agreement with the float model's decisions (see ``agreement_mask``), output MSE: the mean
    over outputs of each output's mean squared error)."""
    mask = agreement_mask(pred, ref, decisions)
    mse = float(np.mean([np.mean((p - r) ** 2) for p, r in zip(output_list(pred), output_list(ref))]))
    return (None if mask is None else float(mask.mean())), mse


def run_trial(model, fixes: Sequence[str], calib, val, ref_pred, predict: Predict, decisions: bool = False,
              **kw) -> Trial:
    t0 = time.perf_counter()
    m, ranges, records = apply_fixes(model, fixes, calib, **kw)
    q = int8_tflite(m, calib, ranges)
    pred = tflite_predict(predict, q, val)
    agree, mse = compare(pred, ref_pred, decisions)
    records["_ranges"] = ranges
    power = float(np.mean([np.mean(r ** 2) for r in output_list(ref_pred)]))
    snr = float(10 * np.log10(power / mse)) if mse > 0 and power > 0 else None
    return Trial(sorted(fixes, key=ORDER.get), agree, mse, time.perf_counter() - t0, q, m, records, snr,
                 agreement_mask(pred, ref_pred, decisions))


def choose_fixes(model, calib: np.ndarray, val: np.ndarray, fixes: str | Sequence[str] = "auto", *,
                 predict: Predict | None = None, candidates: Sequence[str] = FIXES, relu6: str = "keep",
                 adaround_iterations: int = 200, mse_gain: float = 0.05, decisions: bool = False,
                 log: Callable[[str], None] = lambda m: None) -> ChosenFixes:
    """Choose int8 fixes for a Keras model by measuring the converted int8 .tflite.

    ``calib``: calibration inputs (used by the fixes and the converter); ``val``: validation inputs
    the choice is measured on, both shaped like the model input. The rule (``Trial.beats``): more
    validation inputs with the float model's top-1 class by more than noise (McNemar's test,
    ``SIGNIFICANCE_Z``), or within the noise no fewer and an output MSE vs float at least
    ``mse_gain`` (relative) lower; a model without an agreement (regressor) by MSE alone.
    ``predict``: the ``StepContext.predict`` oracle (artifact path, inputs) -> outputs, which runs
    the candidate files (None: ``steps.default_oracles``, the engine's ``oracles.predict``, LiteRT
    for .tflite).
    ``fixes``: "none" (converter default), "auto" (each applicable fix of ``candidates`` alone;
    then, from the best one that beats the converter default, each other fix added in turn, best
    alone first, kept when the combination beats the best so far; when no fix beats the default,
    the default is kept), or an explicit list (applied as given, still measured).
    ``decisions``: a one-unit output is a binary classifier, so its thresholded decisions are the
    agreement (see ``compare``). ``ChosenFixes.reason`` says which trial won and by what.
    Cost: one conversion per trial (at most 2 x len(candidates) - 1). Raises UserError for an
    unknown fix name or mode."""
    calib, val = np.asarray(calib, np.float32), np.asarray(val, np.float32)
    if not isinstance(fixes, str):
        fixes = _check(fixes)  # bad names fail before any conversion
    elif fixes not in ("auto", "none"):
        raise UserError(f"fixes must be 'auto', 'none' or a list of {', '.join(FIXES)}; got {fixes!r}")
    if predict is None:
        from edgeopt.steps import default_oracles

        predict = default_oracles()["predict"]
    ref = model.predict(val, verbose=0, batch_size=256)
    kw = dict(relu6=relu6, adaround_iterations=adaround_iterations, predict=predict, decisions=decisions)
    base = run_trial(model, [], calib, val, ref, **kw)
    trials = [base]
    log(f"int8 fixes: converter default agreement {base.agreement}, output MSE {base.output_mse:.3g}")
    skipped: dict[str, str] = {}
    if fixes == "none":
        return _result(base, trials, skipped, "fixes=none: the converter default")
    wanted = fixes if not isinstance(fixes, str) else _check_names(candidates)
    for f in wanted:
        reason = not_applicable(model, f, relu6)
        if reason:
            skipped[f] = reason
            log(f"int8 fixes: {f} skipped: {reason}")
    wanted = [f for f in wanted if f not in skipped]
    if not isinstance(fixes, str):
        if not wanted:
            return _result(base, trials, skipped, "none of the given fixes applies to this graph")
        t = run_trial(model, wanted, calib, val, ref, **kw)
        return _result(t, trials + [t], skipped, f"given; measured {t.why(base)}")
    singles = []
    for f in wanted:
        t = run_trial(model, [f], calib, val, ref, **kw)
        trials.append(t)
        log(f"int8 fixes: {f} alone -> agreement {t.agreement}, output MSE {t.output_mse:.3g} ({t.seconds:.1f} s)")
        singles.append(t)
    singles.sort(key=Trial.score, reverse=True)
    winners = [t for t in singles if t.beats(base, mse_gain)]
    if not winners:
        best_alone = f" (best alone: {singles[0].why(base)})" if singles else ""
        return _result(base, trials, skipped, "no fix beat the converter default on validation" + best_alone)
    best = winners[0]
    for t in [t for t in singles if t is not best]:
        if EXCLUSIVE <= set(best.fixes + t.fixes):
            continue
        cand = run_trial(model, best.fixes + t.fixes, calib, val, ref, **kw)
        trials.append(cand)
        log(f"int8 fixes: {'+'.join(cand.fixes)} -> agreement {cand.agreement}, output MSE {cand.output_mse:.3g}")
        if cand.beats(best, mse_gain):
            best = cand
    return _result(best, trials, skipped, f"beat the converter default on validation: {best.why(base)}")


def _result(t: Trial, trials: list[Trial], skipped: dict[str, str], reason: str) -> ChosenFixes:
    ranges = t.records.pop("_ranges", None)
    for other in trials:
        other.records.pop("_ranges", None)
    return ChosenFixes(t.fixes, t.model, t.tflite, ranges, t.records, trials, skipped, reason)


def _check_names(fixes: Sequence[str]) -> list[str]:
    if isinstance(fixes, str):
        fixes = [fixes]
    bad = [f for f in fixes if f not in FIXES]
    if bad:
        raise UserError(f"unknown int8 fix {bad[0]!r}; use any of: {', '.join(FIXES)}")
    return sorted(set(fixes), key=ORDER.get)


def _check(fixes: Sequence[str]) -> list[str]:
    """Fix names to apply together, in application order (cle and cle_relu exclude each other)."""
    fixes = _check_names(fixes)
    if EXCLUSIVE <= set(fixes):
        raise UserError("use either cle or cle_relu, not both (two variants of the same fix)")
    return fixes


def _json_records(records: dict) -> dict:
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if not k.startswith("_")}
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (np.floating, np.integer)):
            return v.item()
        return v
    return clean(records)


__all__ = ["AUTO", "FIXES", "SIGNIFICANCE_Z", "ChosenFixes", "Trial", "agreement_mask", "apply_fixes",
           "choose_fixes", "compare", "int8_tflite", "not_applicable", "run_trial", "tflite_predict"]
