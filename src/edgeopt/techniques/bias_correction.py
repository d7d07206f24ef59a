"""Empirical bias correction of the output shift that int8 weight rounding causes.

Source: M. Nagel, M. van Baalen, T. Blankevoort, M. Welling, "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV 2019 (arXiv:1906.04721), section 4.2 ("bias correction"),
empirical variant: the expected error ``E[W~x] - E[Wx]`` per output channel is measured on
calibration data and subtracted from the layer's bias.

The weight-quantized simulation uses the TFLite converter's grid (``weight_grid``): symmetric int8
per output channel, scale = max|w| / 127, values in [-127, 127]. Layers are corrected in graph
order; the simulation's own biases are corrected as it goes, so each layer sees the inputs the
corrected quantized model would give it.
"""
from __future__ import annotations

import numpy as np

from edgeopt.techniques.equalize import Unit, copy_model, model_graph, weight_units

QMAX = 127


def weight_scale(kernel: np.ndarray, depthwise: bool) -> np.ndarray:
    """Per-output-channel int8 scale of a Keras kernel, broadcastable to it (converter's rule:
    max|w| / 127). Depthwise kernels (..., cin, mult) have cin*mult output channels."""
    k = np.abs(np.asarray(kernel, np.float32))
    if depthwise:
        return k.reshape(-1, k.shape[-2], k.shape[-1]).max(axis=0) / QMAX
    return k.reshape(-1, k.shape[-1]).max(axis=0) / QMAX


def quantize_kernel(kernel: np.ndarray, depthwise: bool) -> np.ndarray:
    """Nearest rounding of a kernel onto the converter's per-channel int8 grid (float values)."""
    s = weight_scale(kernel, depthwise)
    safe = np.where(s > 0, s, 1.0)
    return (np.clip(np.round(kernel / safe), -QMAX, QMAX) * safe).astype(np.float32)


def unit_kernels(u: Unit) -> list[tuple[object, bool]]:
    """(Keras variable, is-depthwise layout) of each kernel the converter quantizes for a layer."""
    layer = u.layer
    if type(layer).__name__.startswith("Separable"):
        return [(layer.depthwise_kernel, True), (layer.pointwise_kernel, False)]
    return [(layer.kernel, u.is_depthwise())]


def quantize_weights(model) -> list[str]:
    """Round every supported kernel of ``model`` to nearest on the int8 grid (in place)."""
    names = []
    for u in weight_units(model_graph(model)).values():
        for var, dw in unit_kernels(u):
            var.assign(quantize_kernel(np.asarray(var), dw))
        names.append(u.layer.name)
    return names


def bias_correction(model, x: np.ndarray, quantized=None, batch: int = 128) -> list[dict]:
    """Correct biases for the mean output shift of int8 weights, layer by layer.

    ``model`` is the float reference. Without ``quantized``, a nearest-rounded copy is simulated
    and ``model``'s own biases are corrected in place (so that its int8 conversion is unbiased).
    With ``quantized`` (a copy whose weights are already on the grid, e.g. AdaRound's result),
    ``quantized``'s biases are corrected and ``model`` is left unchanged.
    ``x``: calibration inputs shaped like the model input (100-500 samples is plenty). Layers
    without a bias to hold the correction (no bias and no BatchNorm after them) are skipped.
    Returns one record per layer: ``{"layer", "mean_abs_shift_before", "corrected": bool}`` (shift
    in the layer's output units, mean over channels of |E[float] - E[int8 weights]|)."""
    ref = copy_model(model)
    if quantized is None:
        q = copy_model(model)
        quantize_weights(q)
        targets = [model, q]
    else:
        q, targets = quantized, [quantized]
    g_ref, g_q = model_graph(ref), model_graph(q)
    units_ref, units_q = weight_units(g_ref), weight_units(g_q)
    target_units = [weight_units(model_graph(t)) if t is not q else units_q for t in targets]
    out = []
    for name, ur in units_ref.items():
        shift = _mean(ref, g_ref, ur, x, batch) - _mean(q, g_q, units_q[name], x, batch)
        fixable = all(u[name].can_set_bias() for u in target_units)
        if fixable:
            for u in target_units:
                u[name].set_bias(u[name].bias() + shift)
        out.append({"layer": name, "mean_abs_shift_before": float(np.abs(shift).mean()), "corrected": fixable})
    return out


def output_mean_shift(model, quantized, x: np.ndarray, batch: int = 128) -> dict[str, float]:
    """Per layer, mean over channels of |E[float output] - E[quantized output]| (pre-activation)."""
    g_f, g_q = model_graph(model), model_graph(quantized)
    uf, uq = weight_units(g_f), weight_units(g_q)
    return {n: float(np.abs(_mean(model, g_f, uf[n], x, batch) - _mean(quantized, g_q, uq[n], x, batch)).mean())
            for n in uf}


def _mean(model, g, u: Unit, x: np.ndarray, batch: int) -> np.ndarray:
    """Per-channel mean of a unit's pre-activation output (after its bias-holding BN) over ``x``."""
    y = pre_activation(model, g, u, x, batch)
    return y.reshape(-1, y.shape[-1]).mean(axis=0)


def pre_activation(model, g, u: Unit, x: np.ndarray, batch: int = 128) -> np.ndarray:
    """A unit's output with its fused activation switched off for the call."""
    import keras

    tensor = u.bn_node.tensor if u.bn is not None else u.node.tensor
    inputs = g.model.inputs if g.model is not None else model.inputs
    inputs = inputs[0] if len(inputs) == 1 else inputs
    saved = u.layer.activation
    u.layer.activation = keras.activations.linear
    try:
        sub = keras.Model(inputs, tensor)
        return np.concatenate([np.asarray(sub(x[i:i + batch], training=False))
                               for i in range(0, len(x), batch)])
    finally:
        u.layer.activation = saved


__all__ = ["bias_correction", "output_mean_shift", "pre_activation", "quantize_kernel", "quantize_weights",
           "unit_kernels", "weight_scale"]
