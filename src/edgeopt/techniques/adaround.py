"""AdaRound: adaptive rounding of int8 weights, layer by layer, on calibration data.

Source: M. Nagel, R. A. Amjad, M. van Baalen, C. Louizos, T. Blankevoort, "Up or Down? Adaptive
Rounding for Post-Training Quantization", ICML 2020 (arXiv:2004.10568). Each weight is rounded down
or up (never further) by a learned soft variable ``h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)``
(rectified sigmoid, zeta 1.1, gamma -0.1), minimizing the layer's output reconstruction error
``||W x - W~ x^||^2`` (``x`` the float model's input to the layer, ``x^`` the input the already-rounded
model gives it: the paper's asymmetric reconstruction, eq. 25) plus ``lambda * sum(1 - |2h - 1|^beta)``,
which drives every ``h`` to 0 or 1 as ``beta`` anneals from 20 to 2 after a 20% warm-up.

The grid is the TFLite converter's own (symmetric int8 per output channel, scale = max|w| / 127):
the largest weight of each channel sits exactly on +-127 and is never moved, so the converter
recomputes the same scale and stores exactly the rounded integers (tests/test_int8_fixes.py checks
the .tflite). Optimized with TensorFlow (Adam).
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UserError
from edgeopt.techniques.bias_correction import QMAX, quantize_weights, unit_kernels, weight_scale
from edgeopt.techniques.equalize import Unit, copy_model, model_graph, weight_units

ZETA, GAMMA = 1.1, -0.1


def adaround(model, x: np.ndarray, iterations: int = 300, batch: int = 32, reg: float = 0.01,
             lr: float = 1e-2, samples: int = 256, seed: int = 0, log=None) -> list[dict]:
    """Round every Conv/DepthwiseConv/SeparableConv/Dense kernel of ``model`` onto the converter's
    int8 grid by AdaRound (in place: the float kernels are replaced by their rounded values).

    ``x``: calibration inputs (the first ``samples`` are used), ``iterations`` Adam steps per
    layer on mini-batches of ``batch`` samples. Returns one record per layer: ``{"layer",
    "mse_nearest", "mse_adaround", "flipped", "kept"}`` (layer output MSE on the used samples against
    the float layer, with nearest rounding and with the kept rounding; fraction of weights rounded
    away from nearest; "adaround", or "nearest" when AdaRound's result measured worse on the
    samples, e.g. with very few iterations)."""
    if iterations < 1:
        raise UserError(f"adaround iterations must be >= 1, got {iterations}")
    x = np.asarray(x, np.float32)[:samples]
    ref = copy_model(model)  # the float model: targets come from it
    g_ref, g = model_graph(ref), model_graph(model)
    units_ref, units = weight_units(g_ref), weight_units(g)
    out = []
    rng = np.random.default_rng(seed)
    for name, u in units.items():
        x_float = _layer_input(ref, g_ref, units_ref[name], x)
        x_quant = _layer_input(model, g, u, x)
        rec = _round_layer(u, x_float, x_quant, iterations, batch, reg, lr, rng)
        out.append({"layer": name, **rec})
        if log:
            log(f"adaround {name}: output MSE {rec['mse_nearest']:.3g} -> {rec['mse_adaround']:.3g}")
    return out


def _layer_input(model, g, u: Unit, x: np.ndarray, batch: int = 128) -> np.ndarray:
    import keras

    inputs = g.model.inputs if g.model is not None else model.inputs
    inputs = inputs[0] if len(inputs) == 1 else inputs
    if u.node.in_tensor is None or any(u.node.in_tensor is t for t in (inputs if isinstance(inputs, list) else [inputs])):
        return x
    sub = keras.Model(inputs, u.node.in_tensor)
    return np.concatenate([np.asarray(sub(x[i:i + batch], training=False)) for i in range(0, len(x), batch)])


def layer_linear(u: Unit, kernels, x):
    """The layer's output without bias or activation for given kernels (TensorFlow tensors)."""
    from keras import ops

    layer, cls = u.layer, type(u.layer).__name__
    if cls == "Dense":
        return ops.matmul(x, kernels[0])
    kw = dict(strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate)
    if cls.startswith("Separable"):
        return ops.separable_conv(x, kernels[0], kernels[1], **kw)
    if cls.startswith("Depthwise"):
        return ops.depthwise_conv(x, kernels[0], **kw)
    return ops.conv(x, kernels[0], **kw)


def _round_layer(u: Unit, x_float, x_quant, iterations, batch, reg, lr, rng) -> dict:
    import tensorflow as tf

    specs = []  # (variable, scale, floor, V)
    for var, dw in unit_kernels(u):
        w = np.asarray(var, np.float32)
        s = weight_scale(w, dw)
        s = np.where(s > 0, s, 1.0).astype(np.float32)
        r = w / s
        fl = np.floor(r)
        rest = np.clip(r - fl, 1e-4, 1 - 1e-4)
        v0 = -np.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0)
        specs.append((var, s, fl.astype(np.float32), tf.Variable(v0.astype(np.float32))))
    w_float = [tf.constant(np.asarray(v, np.float32)) for v, *_ in specs]
    nearest = [np.clip(np.round(np.asarray(v) / s), -QMAX, QMAX) * s for v, s, _, _ in specs]

    def soft(V):
        return tf.clip_by_value(tf.sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    def kernels(hard: bool):
        ks = []
        for (_, s, fl, V) in specs:
            h = tf.cast(V >= 0.0, tf.float32) if hard else soft(V)
            ks.append(tf.clip_by_value(fl + h, -QMAX, QMAX) * s)
        return ks

    import keras

    opt = keras.optimizers.Adam(lr)
    variables = [V for *_, V in specs]
    warm = int(0.2 * iterations)

    @tf.function
    def step(xf, xq, beta, use_reg):
        with tf.GradientTape() as tape:
            target = layer_linear(u, w_float, xf)
            pred = layer_linear(u, kernels(False), xq)
            rec = tf.reduce_mean(tf.reduce_sum(tf.square(pred - target), axis=-1))
            round_loss = tf.add_n([tf.reduce_sum(1.0 - tf.pow(tf.abs(2.0 * soft(V) - 1.0), beta))
                                   for V in variables])
            loss = rec + use_reg * reg * round_loss
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return rec

    n = len(x_float)
    for it in range(iterations):
        idx = rng.choice(n, size=min(batch, n), replace=False)
        if it < warm:
            beta, use = 20.0, 0.0
        else:
            frac = (it - warm) / max(1, iterations - warm)
            beta, use = 2.0 + 0.5 * (20.0 - 2.0) * (1 + np.cos(np.pi * frac)), 1.0
        step(tf.constant(x_float[idx]), tf.constant(x_quant[idx]), tf.constant(beta, tf.float32),
             tf.constant(use, tf.float32))
    final = [k.numpy() for k in kernels(True)]
    for (var, s, fl, V), k, w in zip(specs, final, w_float):
        # Keep each channel's largest weight on +-127 so the converter finds the same scale.
        w = w.numpy()
        at_max = np.abs(w / s) >= QMAX - 1e-3
        k = np.where(at_max, np.sign(w) * QMAX * s, k).astype(np.float32)
        var.assign(k)
    flipped = sum(int(np.sum(np.abs(np.asarray(v) - q) > 1e-3 * s)) for (v, s, _, _), q in zip(specs, nearest))
    total = sum(int(np.asarray(v).size) for v, *_ in specs)
    target = np.asarray(layer_linear(u, w_float, x_float))
    mse_new = float(np.mean((np.asarray(layer_linear(u, [tf.constant(np.asarray(v)) for v, *_ in specs], x_quant))
                             - target) ** 2))
    mse_near = float(np.mean((np.asarray(layer_linear(u, [tf.constant(q.astype(np.float32)) for q in nearest],
                                                      x_quant)) - target) ** 2))
    kept = "adaround"
    if mse_new > mse_near:  # too few iterations for this layer: nearest rounding measured better
        for (var, *_), q in zip(specs, nearest):
            var.assign(q.astype(np.float32))
        kept, flipped, mse_new = "nearest", 0, mse_near
    return {"mse_nearest": mse_near, "mse_adaround": mse_new, "flipped": flipped / max(1, total), "kept": kept}


def on_grid(model) -> dict[str, float]:
    """Per layer, the largest distance (in grid steps) of a kernel value from the converter's int8
    grid (0 when every weight is representable exactly)."""
    out = {}
    for name, u in weight_units(model_graph(model)).items():
        worst = 0.0
        for var, dw in unit_kernels(u):
            w = np.asarray(var, np.float32)
            s = np.where(weight_scale(w, dw) > 0, weight_scale(w, dw), 1.0)
            r = w / s
            worst = max(worst, float(np.abs(r - np.round(r)).max()))
        out[name] = worst
    return out


__all__ = ["adaround", "layer_linear", "on_grid", "quantize_weights"]
