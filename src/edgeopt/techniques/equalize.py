"""BatchNorm folding, cross-layer equalization and high-bias absorption of a Keras 3 model.

Source: M. Nagel, M. van Baalen, T. Blankevoort, M. Welling, "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV 2019 (arXiv:1906.04721), sections 4.1 (equalization) and
4.2 (absorbing high biases).

Everything here edits the weights of the given model in place (no graph rebuild), so the model keeps
its layers and names, and every exporter (TFLite, ONNX, OpenVINO) sees the changed weights:

- **Folding**: a BatchNormalization that directly follows a Conv/DepthwiseConv/SeparableConv/Dense
  (no activation in between) is folded into that layer's kernel; the BN is left as a pure per-channel
  bias add (gamma 1, mean 0, variance 1 - epsilon, beta = the folded bias) when the layer itself has
  no bias. The TFLite converter merges such a BN into the conv's bias as it always does.
- **Equalization**: for two consecutive weight layers joined only by ReLU, pooling, padding or
  dropout (every tensor in between used once), output channel ``c`` of the first is scaled by
  ``1/s_c`` and input channel ``c`` of the second by ``s_c`` with ``s_c = sqrt(r1_c / r2_c)``
  (``r`` the channel's weight range), which gives both the same range ``sqrt(r1_c r2_c)``. ReLU is
  positively homogeneous, so float outputs are unchanged. ReLU6 is not (its cap would have to become
  ``6/s_c``): with ``relu6="keep"`` (default) pairs through a ReLU6 are left alone; ``relu6="relu"``
  replaces those ReLU6 by ReLU first, as the paper does (this changes outputs wherever an activation
  exceeded 6, which the caller must measure). A SeparableConv's depthwise and pointwise kernels are
  equalized with each other too (no activation between them).
- **High-bias absorption** (optional): after equalization, for a pair through a plain ReLU whose
  second layer has no spatial padding (1x1 conv, valid padding, Dense), ``c = max(0, beta - 3 gamma)``
  from the folded BN's statistics is moved from the first layer's bias to the second's. Exact as long
  as pre-activations stay above ``c - bias`` (the paper's 3-sigma rule).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeopt.errors import UserError

WEIGHT_LAYERS = ("Conv1D", "Conv2D", "Dense", "DepthwiseConv1D", "DepthwiseConv2D",
                 "SeparableConv1D", "SeparableConv2D")
# Layers a positive per-channel scale passes through unchanged (ReLU handled separately).
PASS_THROUGH = ("Dropout", "ZeroPadding1D", "ZeroPadding2D", "MaxPooling1D", "MaxPooling2D",
                "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D",
                "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "SpatialDropout2D")
NO_PADDING_EFFECT = ("Dropout", "SpatialDropout2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                     "GlobalMaxPooling1D", "GlobalMaxPooling2D", "MaxPooling1D", "MaxPooling2D",
                     "AveragePooling1D", "AveragePooling2D")


# ---------------------------------------------------------------- the graph

@dataclass
class Node:
    layer: Any
    inputs: list[int]   # tensor ids
    output: int
    tensor: Any = None  # the Keras output tensor (for sub-models)
    in_tensor: Any = None  # the Keras input tensor (first input)


@dataclass
class Graph:
    nodes: list[Node]
    producer: dict[int, Node]
    consumers: dict[int, list[Node]]
    outputs: set[int]
    model: Any = None


def model_graph(model) -> Graph:
    """Nodes of a Sequential or Functional Keras model (each layer called once, one output)."""
    import keras
    from keras.src.models.functional import Functional
    from keras.src.ops.function import make_node_key

    if isinstance(model, keras.Sequential) and getattr(model, "_functional", None) is not None:
        g = model_graph(model._functional)
        g.model = model
        return g
    if isinstance(model, keras.Sequential):
        if not model.inputs:
            raise UserError(f"Sequential model {model.name} has no input shape; build it with keras.Input")
        nodes, prev, prev_t = [], id(model.inputs[0]), model.inputs[0]
        for layer in model.layers:
            nodes.append(Node(layer, [prev], id(layer.output), layer.output, prev_t))
            prev, prev_t = id(layer.output), layer.output
        outs = {prev}
    elif isinstance(model, Functional):
        nodes = []
        for op in model.operations:
            mine = [n for i, n in enumerate(op._inbound_nodes) if make_node_key(op, i) in model._nodes]
            if len(mine) != 1 or len(mine[0].output_tensors) != 1:
                if type(op).__name__ == "InputLayer":
                    continue
                raise UserError(f"layer {op.name!r} is shared or has several outputs; the int8 fixes need "
                                f"each layer called once with one output")
            node = mine[0]
            if type(op).__name__ == "InputLayer":
                continue
            nodes.append(Node(op, [id(t) for t in node.input_tensors], id(node.output_tensors[0]),
                              node.output_tensors[0], node.input_tensors[0] if node.input_tensors else None))
        outs = {id(t) for t in model.outputs}
    else:
        raise UserError(f"the int8 fixes need a Functional or Sequential Keras model; {model.name!r} "
                        f"is a subclassed model ({type(model).__name__})")
    producer = {n.output: n for n in nodes}
    consumers: dict[int, list[Node]] = {}
    for n in nodes:
        for t in n.inputs:
            consumers.setdefault(t, []).append(n)
    return Graph(nodes, producer, consumers, outs, model)


def _cls(layer) -> str:
    return type(layer).__name__


def _sole_consumer(g: Graph, tensor: int) -> Node | None:
    users = g.consumers.get(tensor, [])
    return users[0] if len(users) == 1 and tensor not in g.outputs else None


def _act_name(fn) -> str:
    return getattr(fn, "__name__", str(fn))


# ---------------------------------------------------------------- weight units

@dataclass
class Unit:
    """A weight layer plus the folded BatchNorm that holds its bias (if any)."""
    node: Node
    bn: Any = None

    @property
    def layer(self):
        return self.node.layer

    @property
    def out_tensor(self) -> int:
        return self.bn_node.output if self.bn is not None else self.node.output

    bn_node: Node | None = None

    # kernels and their channel layout
    def out_kernel(self):
        return self.layer.pointwise_kernel if "Separable" in _cls(self.layer) else self.layer.kernel

    def in_kernel(self):
        return self.layer.depthwise_kernel if "Separable" in _cls(self.layer) else self.layer.kernel

    def is_depthwise(self) -> bool:
        return _cls(self.layer).startswith("Depthwise")

    def out_range(self) -> np.ndarray:
        k = np.abs(np.asarray(self.out_kernel()))
        if self.is_depthwise():  # (..., cin, mult): output channel c*mult + m
            return k.reshape(-1, k.shape[-2] * k.shape[-1]).max(axis=0)
        return k.reshape(-1, k.shape[-1]).max(axis=0)

    def in_range(self) -> np.ndarray:
        k = np.abs(np.asarray(self.in_kernel()))
        return np.moveaxis(k, -2, 0).reshape(k.shape[-2], -1).max(axis=1)

    def scale_out(self, s: np.ndarray) -> None:
        k = np.asarray(self.out_kernel())
        shaped = s.reshape(k.shape[-2], k.shape[-1]) if self.is_depthwise() else s
        self.out_kernel().assign(k * shaped)
        self.set_bias(self.bias() * s)

    def scale_in(self, s: np.ndarray) -> None:
        k = np.asarray(self.in_kernel())
        self.in_kernel().assign(k * s[:, None])

    def n_out(self) -> int:
        return int(self.out_range().shape[0])

    def bias(self) -> np.ndarray:
        b = np.zeros(self.n_out(), np.float32)
        if getattr(self.layer, "use_bias", False):
            b = b + np.asarray(self.layer.bias)
        if self.bn is not None and self.bn.center:
            b = b + np.asarray(self.bn.beta)
        return b

    def can_set_bias(self) -> bool:
        return bool(getattr(self.layer, "use_bias", False) or (self.bn is not None and self.bn.center))

    def set_bias(self, b: np.ndarray) -> None:
        b = np.asarray(b, np.float32)
        if getattr(self.layer, "use_bias", False):
            self.layer.bias.assign(b)
            if self.bn is not None and self.bn.center:
                self.bn.beta.assign(np.zeros_like(b))
        elif self.bn is not None and self.bn.center:
            self.bn.beta.assign(b)
        elif np.any(b != 0):
            raise ValueError(f"layer {self.layer.name} has no bias to hold {b[:3]}...")


def _fusable(layer) -> bool:
    if _cls(layer) not in WEIGHT_LAYERS:
        return False
    if getattr(layer, "groups", 1) != 1 or getattr(layer, "data_format", "channels_last") != "channels_last":
        return False
    return True


def weight_units(g: Graph) -> dict[str, Unit]:
    """Every supported weight layer of the graph (name -> Unit), BN holders attached if already
    folded (a BN right after it with identity statistics)."""
    units = {}
    for n in g.nodes:
        if not _fusable(n.layer):
            continue
        u = Unit(n)
        nxt = _sole_consumer(g, n.output)
        if (nxt is not None and _cls(nxt.layer) == "BatchNormalization" and _act_name(n.layer.activation) == "linear"
                and _is_identity_bn(nxt.layer)):
            u.bn, u.bn_node = nxt.layer, nxt
        units[n.layer.name] = u
    return units


def _is_identity_bn(bn) -> bool:
    mean, var = np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)
    gamma = np.asarray(bn.gamma) if bn.scale else np.ones_like(mean)
    return bool(np.all(mean == 0) and np.allclose(var + bn.epsilon, 1.0, rtol=0, atol=1e-7)
                and np.all(gamma == 1))


# ---------------------------------------------------------------- folding

def fold_batchnorm(model) -> list[dict]:
    """Fold every BatchNormalization that directly follows a weight layer into it (in place).

    Returns one record per folded BN: ``{"layer", "batchnorm", "bias_in": "layer"|"batchnorm",
    "beta", "gamma"}`` (beta and |gamma| of the effective affine map, kept for high-bias absorption).
    Float outputs are unchanged up to float32 rounding."""
    g = model_graph(model)
    done = []
    for n in g.nodes:
        if not _fusable(n.layer) or _act_name(n.layer.activation) != "linear":
            continue
        nxt = _sole_consumer(g, n.output)
        if nxt is None or _cls(nxt.layer) != "BatchNormalization":
            continue
        bn = nxt.layer
        if int(bn.axis if isinstance(bn.axis, int) else bn.axis[0]) not in (-1, len(n.tensor.shape) - 1):
            continue
        if _is_identity_bn(bn) or not (bn.center or getattr(n.layer, "use_bias", False)):
            continue
        done.append(_fold_one(Unit(n), bn))
    return done


def _fold_one(u: Unit, bn) -> dict:
    mean, var = np.asarray(bn.moving_mean, np.float64), np.asarray(bn.moving_variance, np.float64)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta, np.float64) if bn.center else np.zeros_like(mean)
    s = gamma / np.sqrt(var + bn.epsilon)
    bias = u.bias().astype(np.float64)  # the layer's own bias (BN not attached yet)
    new_bias = (bias - mean) * s + beta
    k = np.asarray(u.out_kernel(), np.float64)
    shaped = s.reshape(k.shape[-2], k.shape[-1]) if u.is_depthwise() else s
    u.out_kernel().assign((k * shaped).astype(np.float32))
    bn.moving_mean.assign(np.zeros_like(mean, dtype=np.float32))
    bn.moving_variance.assign(np.full(mean.shape, 1.0 - bn.epsilon, np.float32))
    if bn.scale:
        bn.gamma.assign(np.ones(mean.shape, np.float32))
    u.bn = bn
    u.set_bias(new_bias.astype(np.float32))
    return {"layer": u.layer.name, "batchnorm": bn.name,
            "bias_in": "layer" if getattr(u.layer, "use_bias", False) else "batchnorm",
            "beta": beta.astype(np.float32), "gamma": np.abs(gamma).astype(np.float32),
            "bias": new_bias.astype(np.float32)}


# ---------------------------------------------------------------- equalization

@dataclass
class Pair:
    first: Unit
    second: Unit
    between: list[Node] = field(default_factory=list)
    relu6: list[Node] = field(default_factory=list)      # ReLU6 layers/activations on the path
    relu: bool = False                                     # a (capless) ReLU on the path
    padding_free: bool = True                              # absorption is exact w.r.t. padding


def equalization_pairs(model, relu6: str = "keep") -> list[Pair]:
    """Consecutive weight-layer pairs that can be equalized (see the module docstring)."""
    g = model_graph(model)
    units = weight_units(g)
    pairs = []
    for u in units.values():
        pair = _follow(g, u, units)
        if pair is not None and (not pair.relu6 or relu6 == "relu"):
            pairs.append(pair)
    return pairs


def _follow(g: Graph, u: Unit, units: dict[str, Unit]) -> Pair | None:
    act = _act_name(u.layer.activation)
    if act not in ("linear", "relu", "relu6"):
        return None
    pair = Pair(u, u, relu=act == "relu")
    if act == "relu6":
        pair.relu6.append(u.node)
    t = u.out_tensor
    while True:
        nxt = _sole_consumer(g, t)
        if nxt is None:
            return None
        cls = _cls(nxt.layer)
        if nxt.layer.name in units:
            second = units[nxt.layer.name]
            if second.is_depthwise() and getattr(second.layer, "depth_multiplier", 1) < 1:
                return None
            if not (_cls(second.layer) in ("Dense",) or _no_pad(second.layer)):
                pair.padding_free = False
            pair.second = second
            return pair if second.in_range().shape[0] == u.n_out() else None
        if cls == "ReLU":
            if nxt.layer.negative_slope or nxt.layer.threshold:
                return None
            if nxt.layer.max_value is None:
                pair.relu = True
            elif float(nxt.layer.max_value) == 6.0:
                pair.relu6.append(nxt)
            else:
                return None
        elif cls == "Activation":
            name = _act_name(nxt.layer.activation)
            if name == "relu":
                pair.relu = True
            elif name == "relu6":
                pair.relu6.append(nxt)
            elif name != "linear":
                return None
        elif cls in PASS_THROUGH:
            if cls not in NO_PADDING_EFFECT:
                pair.padding_free = False
        else:
            return None
        pair.between.append(nxt)
        t = nxt.output


def _no_pad(layer) -> bool:
    k = np.asarray(layer.kernel.shape if hasattr(layer, "kernel") else layer.depthwise_kernel.shape)
    return getattr(layer, "padding", "valid") == "valid" or bool(np.all(k[:-2] == 1))


def _relu6_to_relu(node: Node) -> None:
    import keras

    layer = node.layer
    if _cls(layer) == "ReLU":
        layer.max_value = None
    else:
        layer.activation = keras.activations.relu


def cross_layer_equalize(model, relu6: str = "keep", iterations: int = 20, tol: float = 1e-4,
                         separable: bool = True) -> dict:
    """Equalize the weight ranges of consecutive layers (in place), after ``fold_batchnorm``.

    ``relu6``: "keep" (skip pairs through ReLU6: exact) or "relu" (replace them by ReLU: the
    paper's choice; changes outputs where an activation exceeded 6). Pairs are swept ``iterations``
    times or until no scale moves by more than ``tol`` (chains like conv -> depthwise -> conv need
    several sweeps). Returns ``{"pairs": [{"first", "second", "range_ratio_before",
    "range_ratio_after"}], "relu6_replaced": [...], "separable": [...]}`` where the range ratio is
    the median over channels of max(r1, r2) / min(r1, r2) (1 = perfectly balanced)."""
    if relu6 not in ("keep", "relu"):
        raise UserError(f"relu6 must be 'keep' or 'relu', got {relu6!r}")
    pairs = equalization_pairs(model, relu6)
    replaced = []
    for p in pairs:
        for node in p.relu6:
            _relu6_to_relu(node)
            replaced.append(node.layer.name)
            p.relu = True
        p.relu6 = []
    before = [_imbalance(p.first.out_range(), p.second.in_range()) for p in pairs]
    for _ in range(max(1, iterations)):
        moved = 0.0
        for p in pairs:
            moved = max(moved, _equalize_pair(p.first, p.second))
        if moved < tol:
            break
    sep = _equalize_separable(model) if separable else []
    return {"pairs": [{"first": p.first.layer.name, "second": p.second.layer.name,
                       "range_ratio_before": round(b, 3),
                       "range_ratio_after": round(_imbalance(p.first.out_range(), p.second.in_range()), 3)}
                      for p, b in zip(pairs, before)],
            "relu6_replaced": sorted(set(replaced)), "separable": sep}


def _imbalance(r1: np.ndarray, r2: np.ndarray) -> float:
    lo, hi = np.minimum(r1, r2), np.maximum(r1, r2)
    ok = lo > 0
    return float(np.median(hi[ok] / lo[ok])) if ok.any() else 1.0


def _equalize_pair(a: Unit, b: Unit) -> float:
    r1, r2 = a.out_range().astype(np.float64), b.in_range().astype(np.float64)
    s = np.ones_like(r1)
    ok = (r1 > 0) & (r2 > 0)
    s[ok] = np.sqrt(r1[ok] / r2[ok])
    if not np.isfinite(s).all():
        return 0.0
    a.scale_out((1.0 / s).astype(np.float32))
    b.scale_in(s.astype(np.float32))
    return float(np.max(np.abs(np.log(s)))) if s.size else 0.0


def _equalize_separable(model) -> list[dict]:
    out = []
    for n in model_graph(model).nodes:
        layer = n.layer
        if not _cls(layer).startswith("Separable"):
            continue
        dw, pw = np.asarray(layer.depthwise_kernel), np.asarray(layer.pointwise_kernel)
        r1 = np.abs(dw).reshape(-1, dw.shape[-2] * dw.shape[-1]).max(axis=0).astype(np.float64)
        r2 = np.abs(pw).reshape(-1, pw.shape[-2], pw.shape[-1]).max(axis=(0, 2)).astype(np.float64)
        before = _imbalance(r1, r2)
        s = np.ones_like(r1)
        ok = (r1 > 0) & (r2 > 0)
        s[ok] = np.sqrt(r1[ok] / r2[ok])
        layer.depthwise_kernel.assign((dw / s.reshape(dw.shape[-2], dw.shape[-1])).astype(np.float32))
        layer.pointwise_kernel.assign((pw * s[:, None]).astype(np.float32))
        out.append({"layer": layer.name, "range_ratio_before": round(before, 3), "range_ratio_after": 1.0})
    return out


# ---------------------------------------------------------------- high-bias absorption

def absorb_high_bias(model, folded: list[dict], sigmas: float = 3.0) -> list[dict]:
    """Move ``c = max(0, beta - sigmas * gamma)`` of each ReLU pair's first bias into the second
    layer's bias (in place), with beta/gamma the folded BN statistics (``fold_batchnorm``'s
    records, scaled by any equalization since). Only pairs through a plain ReLU (no ReLU6) whose
    second layer sees no zero padding. Returns ``[{"first", "second", "channels", "mean_absorbed"}]``."""
    stats = {f["layer"]: f for f in folded}
    out = []
    for p in equalization_pairs(model, relu6="keep"):
        f = stats.get(p.first.layer.name)
        if f is None or p.relu6 or not p.relu or not p.padding_free or not p.second.can_set_bias():
            continue
        if not p.first.can_set_bias():
            continue
        # The pre-activation has mean beta and std |gamma| (the BN's output distribution), divided
        # since by the equalization scale: recovered as the ratio of the bias now to the bias
        # right after folding.
        bias = p.first.bias()
        ratio = np.divide(bias, f["bias"], out=np.full_like(bias, np.nan), where=np.abs(f["bias"]) > 1e-12)
        c = np.maximum(0.0, (f["beta"] - sigmas * f["gamma"]) * ratio)
        c = np.where(np.isfinite(c), c, 0.0).astype(np.float32)
        if not np.any(c > 0):
            continue
        p.first.set_bias(bias - c)
        p.second.set_bias(p.second.bias() + _through(p.second, c))
        out.append({"first": p.first.layer.name, "second": p.second.layer.name,
                    "channels": int((c > 0).sum()), "mean_absorbed": float(c.mean())})
    return out


def _through(u: Unit, c: np.ndarray) -> np.ndarray:
    """The second layer's output for a constant input ``c`` per channel (no padding, no bias)."""
    layer = u.layer
    if "Separable" in _cls(layer):
        dw = np.asarray(layer.depthwise_kernel)  # (..., cin, m)
        d = (dw.reshape(-1, dw.shape[-2], dw.shape[-1]).sum(axis=0) * c[:, None]).reshape(-1)
        pw = np.asarray(layer.pointwise_kernel)
        return d @ pw.reshape(-1, pw.shape[-1])
    k = np.asarray(layer.kernel)
    if u.is_depthwise():
        return (k.reshape(-1, k.shape[-2], k.shape[-1]).sum(axis=0) * c[:, None]).reshape(-1)
    return c @ k.reshape(-1, k.shape[-2], k.shape[-1]).sum(axis=0)


# ---------------------------------------------------------------- one call

def equalize(model, relu6: str = "keep", absorb: bool = True, iterations: int = 20) -> dict:
    """Fold BatchNorm, equalize consecutive layers and absorb high biases, in place (Nagel et al.,
    2019). Returns ``{"folded": [{"layer", "batchnorm"}], "equalized": {...}, "absorbed": [...]}``
    (see ``fold_batchnorm``, ``cross_layer_equalize``, ``absorb_high_bias``)."""
    folded = fold_batchnorm(model)
    eq = cross_layer_equalize(model, relu6=relu6, iterations=iterations)
    absorbed = absorb_high_bias(model, folded) if absorb else []
    return {"folded": [{"layer": f["layer"], "batchnorm": f["batchnorm"]} for f in folded],
            "equalized": eq, "absorbed": absorbed}


def copy_model(model):
    """An independent copy of a Functional/Sequential Keras model with the same weights."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


__all__ = ["absorb_high_bias", "copy_model", "cross_layer_equalize", "equalization_pairs", "equalize",
           "fold_batchnorm", "model_graph", "weight_units"]
