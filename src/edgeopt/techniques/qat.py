"""Quantization-aware training (QAT) for Keras 3 models, without tfmot.

The model is rebuilt on the TensorFlow backend with TensorFlow's fake-quant ops inserted
(``qat_layers``): weights of Conv2D / DepthwiseConv2D (per output channel) and Dense (per tensor)
are fake-quantized symmetrically from their current values; activations are fake-quantized with
learned ranges (initialised from the global min/max on a calibration sample, then trained).
The TFLite converter honours these ops, so ``convert_qat_int8`` produces a full-int8 .tflite
whose quantization parameters are exactly the learned ones.

Where fake-quant goes mirrors what TFLite executes, so simulation and conversion agree:
- BatchNormalization after a linear Conv/Dense is folded into it first. TFLite folds BN at
  conversion anyway; folding before QAT means the weights quantized during training are the
  very weights quantized in the .tflite (keeping BN would quantize the unfolded kernel and the
  converter would re-quantize the folded one with ranges training never saw).
- One range per op output: after the fused activation (ReLU/ReLU6 folded into the conv);
  none after ops that keep their input's scale (max-pooling, reshape, flatten, dropout,
  padding), nor after softmax/sigmoid/tanh, whose int8 output range TFLite fixes.
- Exact zeros in incoming kernels (from an earlier prune step) become a mask, so sparsity
  survives fine-tuning and quantization (zero is exactly representable).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.core.precision import Precision
from edgeopt.errors import UserError
from edgeopt.steps import StepContext, StepResult, register
from edgeopt.techniques import configs

CALIBRATION_BATCH = 250

FUSABLE = ("linear", "relu", "relu6")  # activations TFLite fuses into Conv/Dense
FIXED_RANGE = ("softmax", "sigmoid", "tanh")  # int8 output range fixed by TFLite
SAME_SCALE = ("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "Flatten", "Reshape", "Dropout",
              "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
              "Identity", "Permute", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D",
              "ActivityRegularization")


@register("qat")
class QAT:
    """Quantization-aware training: fake-quant on weights and activations, fine-tuned.

    Options (``ctx.options``): ``epochs`` (default 3), ``lr`` (default 2e-4),
    ``calibration_samples`` (rows used to initialise activation ranges, default 500), plus the
    fine-tuning options of ``finetune`` (``batch_size``, ``patience``, ``train_samples``).
    A later ``int8`` step converts with exactly the learned ranges (``convert_qat_int8``).
    """

    name = "qat"
    kind = "keras"
    config = configs.QAT
    closing = "int8"  # a chain that ends after qat converts with the learned ranges

    def run(self, ctx: StepContext, model) -> StepResult:
        from edgeopt.techniques.finetune import fine_tune
        from edgeopt.techniques.prune import configured_ctx

        ctx = configured_ctx(ctx, self.config)
        if is_qat_model(model):
            raise UserError(f"{model.name} is already quantization-aware (it went through qat); "
                            f"use qat once per recipe")
        n_cal = ctx.config.calibration_samples
        qmodel, info = build_qat_model(model, ctx.dataset.calibration(n_cal, ctx.seed), seed=ctx.seed)
        ctx.log(f"qat: {len(info['quantized_layers'])} layers fake-quantized, "
                f"{len(info['folded_batchnorm'])} BatchNorm folded, "
                f"{len(info['activation_ranges'])} activation ranges")
        qmodel, report = fine_tune(qmodel, ctx, epochs=ctx.config.epochs, lr=ctx.config.lr)
        qmodel._edgeopt_qat = True
        info["activation_ranges"] = learned_ranges(qmodel)
        info["sparsity"] = kernel_sparsity(qmodel)
        return StepResult(model=qmodel, details={**info, "fine_tune": report})


def is_qat_model(model) -> bool:
    """True for a model from the qat step, also after a .keras save and load (which drops the
    ``_edgeopt_qat`` attribute but keeps the fake-quant layers)."""
    if getattr(model, "_edgeopt_qat", False):
        return True
    return any(type(layer).__module__ == "edgeopt.techniques.qat_layers"
               for layer in getattr(model, "layers", []))


# ---------------------------------------------------------------- building the QAT model

def build_qat_model(model, calibration: np.ndarray, seed: int = 0):
    """Rebuild ``model`` with fake-quant layers and calibrated activation ranges.

    Returns ``(qat_model, info)``; ``info`` lists folded BatchNorm layers, quantized layers
    (with how many kernel zeros are masked) and the initial activation ranges.
    """
    import keras

    _require_tf_backend()
    func = functional_graph(model, "QAT")
    keras.utils.set_random_seed(int(seed))
    builder = _Builder(func)
    qmodel = builder.build()
    calibrate(qmodel, calibration)
    info = {
        "folded_batchnorm": sorted(builder.folds_by_bn),
        "quantized_layers": builder.quantized,
        "activation_ranges": learned_ranges(qmodel),
        "scheme": {"weights": "int8 symmetric; per-channel for Conv2D/DepthwiseConv2D, "
                              "per-tensor for Dense",
                   "activations": "int8 asymmetric per-tensor, learned ranges"},
    }
    return qmodel, info


def _require_tf_backend() -> None:
    import keras

    if keras.backend.backend() != "tensorflow":
        raise UserError(f"QAT needs the TensorFlow Keras backend (KERAS_BACKEND=tensorflow); "
                        f"this process uses {keras.backend.backend()!r}")


def functional_graph(model, what: str):
    """The functional graph of a Sequential or Functional model (subclassed models have none)."""
    import keras

    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None) or model
    if not hasattr(model, "_nodes_by_depth"):
        raise UserError(f"{what} needs a Sequential or functional Keras model; {model.name!r} is a "
                        f"subclassed model ({type(model).__name__}) whose layer graph cannot be rebuilt")
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise UserError(f"{what}: layer {layer.name!r} is a nested model; flatten it into one "
                            f"functional model first")
    return model


def _activation_name(layer) -> str | None:
    """The activation a layer applies, as a name (None when it is not an activation layer)."""
    name = type(layer).__name__
    cfg = layer.get_config()
    if name == "ReLU":
        if cfg.get("negative_slope") or cfg.get("threshold"):
            return "relu_custom"
        return {None: "relu", 6.0: "relu6"}.get(cfg.get("max_value"), "relu_custom")
    if name == "Softmax":
        return "softmax"
    if name == "Activation":
        act = cfg.get("activation")
        return act if isinstance(act, str) else "custom"
    return None


def _producer(tensor):
    return tensor._keras_history.operation


class _Builder:
    """Walks the functional graph in topological order and emits the QAT graph.

    Uses Keras 3's functional internals (``_nodes_by_depth``, ``node.arguments.fill_in``,
    ``_keras_history``), the same ones ``Functional._run_through_graph`` uses; keras is pinned."""

    def __init__(self, func):
        from edgeopt.techniques import qat_layers as ql

        self.func = func
        self.ql = ql
        self.consumers: dict[int, list] = {}
        # Calls of each layer in THIS graph: a Sequential reloaded from .keras has layers with
        # several inbound nodes (one per internal rebuild), so ``layer._inbound_nodes`` overcounts.
        self.calls: dict[int, int] = {}
        self.in_rank: dict[int, int] = {}  # rank of each layer's (first) input in this graph
        for nodes in func._nodes_by_depth.values():
            for node in nodes:
                if node.operation is not None:
                    self.calls[id(node.operation)] = self.calls.get(id(node.operation), 0) + 1
                    if node.input_tensors:
                        self.in_rank[id(node.operation)] = len(node.input_tensors[0].shape)
                for t in node.input_tensors:
                    self.consumers.setdefault(id(_producer(t)), []).append(node.operation)
        self.output_layers = {id(_producer(t)) for t in func.outputs}
        self.folds_by_bn = self._find_folds()
        self.folded_convs = {id(conv): bn for bn, (conv, bn) in self.folds_by_bn.items()}
        self.quantized: dict[str, dict] = {}

    def _only_consumer(self, layer):
        cons = self.consumers.get(id(layer), [])
        if len(cons) != 1 or id(layer) in self.output_layers or self.calls.get(id(layer)) != 1:
            return None
        return cons[0]

    def _find_folds(self) -> dict[str, tuple]:
        folds = {}
        for layer in self.func.layers:
            if type(layer).__name__ not in self.ql.QUANT_CLASSES or layer.get_config()["activation"] != "linear":
                continue
            bn = self._only_consumer(layer)
            if bn is None or type(bn).__name__ != "BatchNormalization" or self.calls.get(id(bn)) != 1:
                continue
            if bn.axis not in (-1, self.in_rank.get(id(bn), 0) - 1):
                continue
            folds[bn.name] = (layer, bn)
        return folds

    def build(self):
        import keras
        from keras import tree

        tensors = {}
        inputs = []
        for t in self.func.inputs:
            inp = keras.Input(shape=t.shape[1:], dtype=t.dtype, name=_producer(t).name)
            inputs.append(inp)
            tensors[id(t)] = self.ql.ActQuant(name=f"{_producer(t).name}_quant")(inp)
        for depth in sorted(self.func._nodes_by_depth, reverse=True):
            for node in self.func._nodes_by_depth[depth]:
                if node.is_input or not node.operation:
                    continue
                args, kwargs = node.arguments.fill_in(tensors)
                out = self._emit(node.operation, args, kwargs)
                for ref, new in zip(node.outputs, tree.flatten(out)):
                    tensors[id(ref)] = new
        outputs = [tensors[id(t)] for t in self.func.outputs]
        return keras.Model(inputs if len(inputs) > 1 else inputs[0],
                           outputs if len(outputs) > 1 else outputs[0],
                           name=f"{self.func.name}_qat")

    def _emit(self, layer, args, kwargs):
        kind = type(layer).__name__
        if layer.name in self.folds_by_bn:
            return args[0]  # folded into the preceding conv/dense
        if not _is_builtin(layer):
            raise UserError(f"QAT: layer {layer.name!r} ({kind}) is a custom layer; QAT handles "
                            f"built-in Keras layers only (their int8 ranges must be known)")
        if kind in self.ql.QUANT_CLASSES:
            return self._emit_weighted(layer, args, kwargs)
        out = _clone(layer, args, kwargs)
        if kind in SAME_SCALE or _activation_name(layer) in FIXED_RANGE:
            return out
        return self._act_quant(layer.name, out)  # a new value range: Add, pooling, BN left unfolded...

    def _act_quant(self, name: str, x):
        return self.ql.ActQuant(name=f"{name}_quant")(x)

    def _emit_weighted(self, layer, args, kwargs):
        from keras import layers as kl

        cfg = dict(layer.get_config())
        act = cfg["activation"] if isinstance(cfg["activation"], str) else "custom"
        kernel, bias = _folded_weights(layer, self.folded_convs.get(id(layer)))
        cfg.update(activation=act if act in FUSABLE else "linear", use_bias=bias is not None,
                   masked=bool((kernel == 0).any()))
        for key in ("kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint"):
            cfg.pop(key, None)  # constraints would undo folding; regularisers alter the QAT loss
        cfg.pop("quantization_config", None)
        cfg.pop("lora_rank", None)
        cfg.pop("lora_alpha", None)
        qlayer = self.ql.QUANT_CLASSES[type(layer).__name__].from_config(cfg)
        qlayer.build(args[0].shape)
        qlayer._kernel_var().assign(kernel)
        if bias is not None:
            qlayer.bias.assign(bias)
        if qlayer.masked:
            qlayer.mask.assign((kernel != 0).astype(np.float32))
        self.quantized[layer.name] = {
            "type": type(layer).__name__,
            "weights": "per-tensor" if type(layer).__name__ == "Dense" else "per-channel",
            "folded_batchnorm": self.folded_convs[id(layer)].name if id(layer) in self.folded_convs else None,
            "masked_zeros": int((kernel == 0).sum()),
        }
        out = qlayer(*args, **kwargs)
        if act not in FUSABLE:
            out = self._act_quant(f"{layer.name}_preact", out)
            out = kl.Activation(layer.activation, name=f"{layer.name}_activation")(out)
            return out if act in FIXED_RANGE else self._act_quant(layer.name, out)
        last = self.folded_convs.get(id(layer), layer)  # the BN, when folded, is the output
        nxt = self._only_consumer(last)
        if act == "linear" and nxt is not None and _activation_name(nxt) in ("relu", "relu6"):
            return out  # the ReLU layer that follows gets the range (TFLite fuses it)
        return self._act_quant(layer.name, out)


def _is_builtin(layer) -> bool:
    return type(layer).__module__.startswith("keras.")


def _clone(layer, args, kwargs):
    new = type(layer).from_config(layer.get_config())
    out = new(*args, **kwargs)
    if layer.weights:
        new.set_weights(layer.get_weights())
    return out


def _folded_weights(layer, bn) -> tuple[np.ndarray, np.ndarray | None]:
    """Kernel and bias of ``layer`` with the BatchNormalization ``bn`` (or None) folded in."""
    kernel = _numpy(layer.kernel)
    bias = _numpy(layer.bias) if layer.use_bias else None
    if bn is None:
        return kernel, bias
    mean, var = _numpy(bn.moving_mean), _numpy(bn.moving_variance)
    gamma = _numpy(bn.gamma) if bn.scale else np.ones_like(mean)
    beta = _numpy(bn.beta) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    if type(layer).__name__ == "DepthwiseConv2D":  # output channel c = in * multiplier + m
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    bias = (bias if bias is not None else np.zeros_like(mean)) - mean
    return kernel.astype(np.float32), (bias * scale + beta).astype(np.float32)


def _numpy(variable) -> np.ndarray:
    return np.array(variable.numpy(), dtype=np.float32)


def calibrate(qmodel, x: np.ndarray) -> None:
    """Initialise every activation range to the global float min/max on ``x``."""
    from edgeopt.techniques.qat_layers import ActQuant

    quants = [lyr for lyr in qmodel.layers if isinstance(lyr, ActQuant)]
    for q in quants:
        q.calibrating, q.seen_min, q.seen_max = True, None, None
    try:
        for start in range(0, len(x), CALIBRATION_BATCH):
            qmodel(x[start:start + CALIBRATION_BATCH], training=False)
    finally:
        for q in quants:
            q.calibrating = False
    for q in quants:
        q.set_range(q.seen_min, q.seen_max)


def learned_ranges(qmodel) -> dict[str, list[float]]:
    from edgeopt.techniques.qat_layers import ActQuant

    return {lyr.name: [float(lyr.qmin.numpy()), float(lyr.qmax.numpy())]
            for lyr in qmodel.layers if isinstance(lyr, ActQuant)}


def kernel_sparsity(qmodel) -> dict[str, float]:
    """Fraction of exact zeros in each effective (masked) kernel, for layers that have any."""
    from edgeopt.techniques.qat_layers import _KernelQuant

    out = {}
    for lyr in qmodel.layers:
        if isinstance(lyr, _KernelQuant):
            k = lyr.effective_kernel().numpy()
            if (k == 0).any():
                out[lyr.name] = round(float((k == 0).mean()), 5)
    return out


# ---------------------------------------------------------------- conversion

def convert_qat_int8(model, ctx: StepContext) -> StepResult:
    """Convert a QAT model to a full-int8 .tflite that uses exactly the learned ranges; the
    ``int8`` step calls this when ``model._edgeopt_qat`` is true. Like PTQ int8, the I/O stays
    float32 (quantize/dequantize at the boundary) unless ``ctx.options["int8_io"]`` is true."""
    import tensorflow as tf

    from edgeopt.convert import keras_to_tflite
    from edgeopt.fsutil import atomic_write_bytes
    from edgeopt.techniques.ptq import float_ops

    int8_io = bool((ctx.options or {}).get("int8_io", False))
    kwargs = {"inference_input_type": tf.int8, "inference_output_type": tf.int8} if int8_io else {}
    with warnings.catch_warnings():  # "statistics for quantized inputs": the input fake-quant has them
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        data = keras_to_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT], **kwargs)
    path = atomic_write_bytes(Path(ctx.work_dir) / "model.tflite", data)
    left = float_ops(data)
    if left:
        ctx.log(f"warning: {len(left)} op(s) stayed float after QAT conversion: {', '.join(left)}")
    details: dict[str, Any] = {"precision": Precision.INT8, "method": "qat", "weights": "int8 per-channel "
                               "(conv), per-tensor (dense)", "activations": "int8 (learned ranges)",
                               "io": "int8" if int8_io else "float32", "float_ops": left}
    ds = ctx.dataset
    if ds is not None and ds.task == "classification":  # what conversion should reproduce
        from edgeopt.core.metrics import task_metrics

        pred = model.predict(ds.x_eval, batch_size=256, verbose=0)
        details["simulated_accuracy"] = round(task_metrics(pred, ds.y_eval, ds.task)["accuracy"], 5)
    return StepResult(artifact=Path(path), details=details)


def nudged_params(lo: float, hi: float, narrow_range: bool = False, num_bits: int = 8) -> tuple[float, int]:
    """(scale, int8 zero point) that TF's fake-quant uses for the range [lo, hi].

    Mirrors TensorFlow's ``Nudge`` (fake_quant_ops_functor.h): quantized range [0, 255] (or
    [1, 255] with narrow range), zero point rounded into it; int8 storage shifts it by -128.
    """
    qmin, qmax = (1 if narrow_range else 0), 2 ** num_bits - 1
    scale = (hi - lo) / (qmax - qmin)
    zp_from_min = qmin - lo / scale
    zp = qmin if zp_from_min < qmin else qmax if zp_from_min > qmax else int(np.floor(zp_from_min + 0.5))
    return float(scale), int(zp) - 2 ** (num_bits - 1)
