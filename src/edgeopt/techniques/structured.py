"""Structured pruning on Keras 3: remove whole filters/units/channels and rebuild a smaller model.

How it works:
1. Walk the functional graph (Sequential models are walked as a chain) and give every tensor a
   channel descriptor: the "channel groups" its last axis is made of. A Conv/Dense layer starts a
   group with its output channels; BatchNorm, activations, pooling, dropout, padding and
   depthwise convolutions (tied to their input channels) pass it through; Add/Multiply/...
   merge the groups of their inputs (they must keep matching channels); Concatenate lays groups
   side by side; Flatten repeats a group once per spatial position.
2. Rank each group's channels by the L1 or L2 norm of its producers' filters (normalised per
   producer and summed over an Add group) or by the |gamma| of the BatchNorms that follow.
3. Keep the best channels: a ratio for every group, a ratio per named layer, or the ratio that
   meets a MAC target or a LiteRT latency target (found by bisection). Groups feeding a model
   output are never pruned.
4. Rebuild: every layer is re-created from ``get_config()`` with the new ``filters``/``units``
   and called on the new tensors in graph order; kernels, biases and BatchNorm statistics are
   copied with the removed channels sliced out on both the producing and consuming side.
5. Fine-tune (``iterations`` > 1: prune a little, fine-tune, repeat).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeopt.errors import UserError
from edgeopt.steps import StepResult, default_oracles, register
from edgeopt.techniques import configs
from edgeopt.techniques.finetune import recalibrate_batchnorm
from edgeopt.techniques.prune import configured_ctx, require_keras_model

PRODUCERS = {"Conv1D": "filters", "Conv2D": "filters", "Conv3D": "filters", "Dense": "units"}
DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
NORMS = {"BatchNormalization", "LayerNormalization"}
MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
PASS_THROUGH = {
    "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "Identity",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D",
    "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D",
    "UpSampling2D", "UpSampling3D",
}
DEFAULT_RATIO = 0.5
CRITERIA = ("l1", "l2", "bn")


# ---------------------------------------------------------------- graph analysis

@dataclass
class Group:
    size: int
    producers: list[str] = field(default_factory=list)  # layers whose output channels these are
    norms: list[str] = field(default_factory=list)  # BatchNorms over these channels
    frozen: str = ""  # why it cannot be pruned ("" = prunable)


@dataclass
class Desc:
    """A tensor's last axis: segments (group id, size) side by side, repeated ``repeat`` times."""
    segments: list[tuple[int, int]]
    repeat: int = 1


@dataclass
class NodeInfo:
    layer: Any
    inputs: list[int]  # tensor ids
    output: int


class ChannelGraph:
    """Channel groups of a Functional or Sequential Keras model (see the module docstring)."""

    def __init__(self, model):
        self.model = model
        self.parent: list[int] = []
        self.groups: list[Group] = []
        self.desc: dict[int, Desc] = {}
        self.nodes, self.inputs, self.outputs = _graph(model)
        self.out_group: dict[str, int] = {}  # producer layer -> its output group
        self.unknown: list[tuple[str, str, list[int]]] = []
        for node in self.nodes:
            self._visit(node)
        for t in self.outputs:
            for g, _ in self.desc[t].segments:
                self._freeze(g, "feeds a model output")
        for name, cls, tensors in self.unknown:
            for t in tensors:
                for g, _ in self.desc[t].segments:
                    if not self.group(g).frozen:
                        raise UserError(
                            f"structured pruning does not support layer {name!r} ({cls}) on pruned "
                            f"channels; supported: {', '.join(sorted(PRODUCERS) + sorted(DEPTHWISE))}, "
                            f"normalization, activations, pooling, Add/Multiply, Concatenate, Flatten")

    # union-find over group ids
    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def group(self, g: int) -> Group:
        return self.groups[self.find(g)]

    def roots(self) -> list[int]:
        return sorted({self.find(g) for g in range(len(self.groups))})

    def _new(self, size: int, frozen: str = "") -> int:
        self.parent.append(len(self.groups))
        self.groups.append(Group(size, frozen=frozen))
        return len(self.groups) - 1

    def _union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        ga, gb = self.groups[ra], self.groups[rb]
        self.parent[rb] = ra
        ga.producers += gb.producers
        ga.norms += gb.norms
        ga.frozen = ga.frozen or gb.frozen

    def _freeze(self, g: int, why: str) -> None:
        grp = self.group(g)
        grp.frozen = grp.frozen or why

    def _visit(self, node: NodeInfo) -> None:
        layer, cls = node.layer, type(node.layer).__name__
        ins = [self.desc[t] for t in node.inputs]
        out_dim = int(_out_shape(layer)[-1]) if cls != "InputLayer" else int(layer.output.shape[-1])
        if cls == "InputLayer":
            self.desc[node.output] = Desc([(self._new(out_dim, "model input"), out_dim)])
        elif cls in PRODUCERS:
            if cls.startswith("Conv") and layer.groups != 1:
                for g, _ in ins[0].segments:
                    self._freeze(g, f"grouped convolution {layer.name}")
                self.desc[node.output] = Desc([(self._new(out_dim, "grouped convolution"), out_dim)])
                return
            g = self._new(out_dim)
            self.groups[g].producers.append(layer.name)
            self.out_group[layer.name] = g
            self.desc[node.output] = Desc([(g, out_dim)])
        elif cls in DEPTHWISE:
            if layer.depth_multiplier != 1:
                for g, _ in ins[0].segments:
                    self._freeze(g, f"depth multiplier of {layer.name}")
                self.desc[node.output] = Desc([(self._new(out_dim, "depth multiplier"), out_dim)])
            else:
                self.desc[node.output] = ins[0]
        elif cls in NORMS:
            axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
            rank = len(_out_shape(layer))
            if axis is None or axis % rank != rank - 1:
                self.unknown.append((layer.name, cls + " over a non-channel axis", node.inputs))
                self.desc[node.output] = Desc([(self._new(out_dim, "normalised"), out_dim)])
                return
            if cls == "BatchNormalization" and len(ins[0].segments) == 1:
                self.group(ins[0].segments[0][0]).norms.append(layer.name)
            self.desc[node.output] = ins[0]
        elif cls in PASS_THROUGH:
            self.desc[node.output] = ins[0]
        elif cls == "Flatten":
            spatial = int(np.prod(_in_shape(layer)[1:-1])) if len(_in_shape(layer)) > 2 else 1
            self.desc[node.output] = Desc(ins[0].segments, ins[0].repeat * spatial)
        elif cls in MERGES:
            self.desc[node.output] = self._merge(ins, layer)
        elif cls == "Concatenate" and layer.axis in (-1, len(_out_shape(layer)) - 1):
            if any(d.repeat != 1 for d in ins):
                self.unknown.append((layer.name, "Concatenate of flattened tensors", node.inputs))
            self.desc[node.output] = Desc([s for d in ins for s in d.segments])
        else:
            self.unknown.append((layer.name, cls, node.inputs))
            self.desc[node.output] = Desc([(self._new(out_dim, f"after unsupported {cls}"), out_dim)])

    def _merge(self, ins: list[Desc], layer) -> Desc:
        first = ins[0]
        for d in ins[1:]:
            if [s for _, s in d.segments] == [s for _, s in first.segments] and d.repeat == first.repeat:
                for (a, _), (b, _) in zip(first.segments, d.segments):
                    self._union(a, b)
            else:  # broadcasting or differently segmented: tie nothing, prune nothing here
                for dd in ins:
                    for g, _ in dd.segments:
                        self._freeze(g, f"{layer.name} merges differently shaped channels")
        return first

    def indices(self, desc: Desc, kept: dict[int, np.ndarray]) -> np.ndarray:
        """Positions along a tensor's last axis that survive, given kept channels per root group."""
        parts, offset = [], 0
        for g, size in desc.segments:
            parts.append(offset + kept.get(self.find(g), np.arange(size)))
            offset += size
        one = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return np.concatenate([p * offset + one for p in range(desc.repeat)])


def _out_shape(layer):
    return tuple(layer.output.shape)


def _in_shape(layer):
    return tuple(layer.input.shape)


def _graph(model) -> tuple[list[NodeInfo], list[int], list[int]]:
    import keras
    from keras.src.models.functional import Functional
    from keras.src.ops.function import make_node_key

    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise UserError(f"Sequential model {model.name} has no input shape; build it with keras.Input")
        nodes = [NodeInfo(model.inputs[0]._keras_history.operation, [], 0)]
        for i, layer in enumerate(model.layers):
            _check_layer(layer)
            nodes.append(NodeInfo(layer, [i], i + 1))
        return nodes, [0], [len(model.layers)]
    if not isinstance(model, Functional):
        raise UserError(f"structured pruning needs a Functional or Sequential Keras model; "
                        f"{model.name!r} is a subclassed model (class {type(model).__name__}) "
                        f"whose graph cannot be rebuilt")
    nodes = []
    for op in model.operations:
        _check_layer(op)
        mine = [n for i, n in enumerate(op._inbound_nodes) if make_node_key(op, i) in model._nodes]
        if len(mine) != 1:
            raise UserError(f"layer {op.name!r} is used {len(mine)} times in {model.name}; structured "
                            f"pruning needs each layer called once (shared layers are not supported)")
        node = mine[0]
        if len(node.output_tensors) != 1:
            raise UserError(f"layer {op.name!r} has {len(node.output_tensors)} outputs; structured "
                            f"pruning supports single-output layers")
        nodes.append(NodeInfo(op, [id(t) for t in node.input_tensors], id(node.output_tensors[0])))
    return nodes, [id(t) for t in model.inputs], [id(t) for t in model.outputs]


def _check_layer(op) -> None:
    import keras

    if isinstance(op, keras.Model):
        raise UserError(f"layer {op.name!r} is a nested model ({type(op).__name__}); structured pruning "
                        f"needs a flat model: rebuild it without nesting")
    if not isinstance(op, keras.layers.Layer):
        raise UserError(f"operation {op.name!r} ({type(op).__name__}) is not a Keras layer; structured "
                        f"pruning supports models built from Keras layers only")


# ---------------------------------------------------------------- ranking and selection

def channel_scores(cg: ChannelGraph, criterion: str) -> dict[int, np.ndarray]:
    """Importance per channel of every prunable root group (higher = keep)."""
    model = cg.model
    scores = {}
    for r in cg.roots():
        grp = cg.groups[r]
        if grp.frozen or not grp.producers:
            continue
        total = np.zeros(grp.size)
        if criterion == "bn" and grp.norms:
            for name in grp.norms:
                bn = model.get_layer(name)
                gamma = np.abs(bn.gamma.numpy()) if bn.gamma is not None else np.ones(grp.size)
                total += gamma / max(gamma.mean(), 1e-12)
        else:
            for name in grp.producers:
                k = np.asarray(model.get_layer(name).kernel.numpy())
                k = k.reshape(-1, k.shape[-1])
                s = np.abs(k).sum(0) if criterion in ("l1", "bn") else np.sqrt((k ** 2).sum(0))
                total += s / max(s.mean(), 1e-12)
        scores[r] = total
    return scores


def global_ratios(scores: dict[int, np.ndarray], ratio: float) -> dict[int, float]:
    """Per-group ratios from one ranking across all groups: the ``ratio`` share of all channels
    with the lowest (per-group normalised) scores is removed, wherever they are; residual (Add)
    groups count once with their summed score, depthwise layers follow their input group."""
    if not scores:
        return {}
    every = np.concatenate(list(scores.values()))
    cut = int(math.floor(len(every) * float(ratio)))
    if cut <= 0:
        return {g: 0.0 for g in scores}
    threshold = np.sort(every, kind="stable")[cut - 1]
    return {g: float(min(0.99, np.mean(s <= threshold))) for g, s in scores.items()}


def select(scores: dict[int, np.ndarray], ratios: dict[int, float], min_channels: int,
           round_to: int) -> dict[int, np.ndarray]:
    """Kept channel indices (sorted) per group: the highest-scoring (1 - ratio) share."""
    kept = {}
    for g, s in scores.items():
        n = len(s)
        keep = n_keep(n, ratios.get(g, 0.0), min_channels, round_to)
        kept[g] = np.sort(np.argsort(-s, kind="stable")[:keep])
    return kept


def n_keep(n: int, ratio: float, min_channels: int = 1, round_to: int = 1) -> int:
    """Channels to keep out of n when removing ``ratio`` of them (pure; rounding up)."""
    keep = max(1, math.ceil(n * (1.0 - ratio) - 1e-9))
    if round_to > 1 and n >= round_to:
        keep = min(n, math.ceil(keep / round_to) * round_to)
    return int(min(n, max(keep, min(min_channels, n))))


# ---------------------------------------------------------------- rebuild

def rebuild(cg: ChannelGraph, kept: dict[int, np.ndarray]):
    """A new Keras model with only the kept channels, weights copied."""
    import keras

    new_t: dict[int, Any] = {}
    for node in cg.nodes:
        layer, cls = node.layer, type(node.layer).__name__
        if cls == "InputLayer":
            shape = tuple(layer.output.shape[1:])
            new_t[node.output] = keras.Input(shape=shape, dtype=layer.output.dtype, name=layer.name)
            continue
        cfg = layer.get_config()
        out_idx = None
        if cls in PRODUCERS and layer.name in cg.out_group:
            g = cg.find(cg.out_group[layer.name])
            if g in kept:
                out_idx = kept[g]
                cfg[PRODUCERS[cls]] = int(len(out_idx))
        new_layer = type(layer).from_config(cfg)
        args = [new_t[t] for t in node.inputs]
        new_t[node.output] = new_layer(args if cls in MERGES or cls == "Concatenate" else args[0])
        in_idx = cg.indices(cg.desc[node.inputs[0]], kept) if node.inputs else None
        new_layer.set_weights(_sliced_weights(layer, cls, in_idx, out_idx))
    ins, outs = [new_t[t] for t in cg.inputs], [new_t[t] for t in cg.outputs]
    return keras.Model(ins if len(ins) > 1 else ins[0], outs if len(outs) > 1 else outs[0],
                       name=cg.model.name)


def _sliced_weights(layer, cls: str, in_idx, out_idx) -> list[np.ndarray]:
    weights = [np.asarray(w) for w in layer.get_weights()]
    if cls in PRODUCERS:
        kernel = np.take(weights[0], in_idx, axis=-2)
        if out_idx is not None:
            kernel = np.take(kernel, out_idx, axis=-1)
        rest = [w[out_idx] if out_idx is not None else w for w in weights[1:]]
        return [kernel, *rest]
    if cls in DEPTHWISE and layer.depth_multiplier == 1:
        return [np.take(weights[0], in_idx, axis=-2), *[w[in_idx] for w in weights[1:]]]
    if cls in NORMS and weights and weights[0].ndim == 1:
        return [w[in_idx] for w in weights]
    return weights


# ---------------------------------------------------------------- MACs

def keras_macs(model) -> int:
    """Multiply-accumulates of one inference (convolutions, depthwise convolutions, Dense)."""
    total = 0
    for layer in model.layers:
        cls = type(layer).__name__
        if cls in PRODUCERS or cls in DEPTHWISE:
            out = tuple(layer.output.shape)
            positions = int(np.prod(out[1:-1])) if len(out) > 2 else 1
            k = layer.kernel.shape
            if cls in DEPTHWISE:
                total += positions * int(np.prod(k[:-2])) * int(k[-2]) * int(k[-1])
            else:
                total += positions * int(np.prod(k))
    return int(total)


def param_count(model) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def group_report(cg: ChannelGraph, kept: dict[int, np.ndarray]) -> list[dict]:
    rows = []
    for r in cg.roots():
        g = cg.groups[r]
        if not g.producers:
            continue
        rows.append({"layers": g.producers, "channels": g.size,
                     "kept": int(len(kept[r])) if r in kept else g.size,
                     **({"frozen": g.frozen} if g.frozen else {})})
    return rows


def prune_structured(model, *, ratio: float | None = None, per_layer: dict[str, float] | None = None,
                     criterion: str = "l1", min_channels: int = 4, round_to: int = 1,
                     base_widths: dict[str, int] | None = None, scope: str = "group"):
    """One-shot structured pruning: returns (smaller model, kept-channel report).

    ``scope="global"``: ``ratio`` of all channels is removed by one ranking across groups
    (``global_ratios``) instead of ``ratio`` in every group.
    ``base_widths`` (producer layer -> its width in the unpruned model) makes ratios relative to
    the original widths, so that iterative pruning reaches the same widths as one-shot pruning."""
    if criterion not in CRITERIA:
        raise UserError(f"unknown structured-pruning criterion {criterion!r}; use {', '.join(CRITERIA)}")
    cg = ChannelGraph(model)
    scores = channel_scores(cg, criterion)
    ratios = group_ratios(cg, scores, ratio, per_layer)
    if scope == "global" and ratio is not None and not per_layer:
        ratios = global_ratios(scores, ratio)
    if base_widths:
        for g, r in ratios.items():
            size, orig = cg.groups[g].size, base_widths.get(cg.groups[g].producers[0], cg.groups[g].size)
            ratios[g] = max(0.0, 1.0 - n_keep(orig, r, min_channels, round_to) / size)
    kept = select(scores, ratios, min_channels, round_to)
    return rebuild(cg, kept), group_report(cg, kept)


def group_ratios(cg: ChannelGraph, scores, ratio, per_layer) -> dict[int, float]:
    per_layer = per_layer or {}
    names = {l.name for l in cg.model.layers}
    unknown = sorted(set(per_layer) - names)
    if unknown:
        raise UserError(f"per_layer names {', '.join(unknown)}, not layers of {cg.model.name}")
    out = {}
    for g in scores:
        named = [per_layer[p] for p in cg.groups[g].producers if p in per_layer]
        r = max(named) if named else (ratio if ratio is not None else (0.0 if per_layer else DEFAULT_RATIO))
        if not 0.0 <= r < 1.0:
            raise UserError(f"pruning ratio must be in [0, 1), got {r}")
        out[g] = float(r)
    return out


def _search_ratio(model, measure, target: float, criterion, min_channels, round_to,
                  steps: int = 10) -> tuple[Any, float, float]:
    """Smallest uniform ratio whose pruned model measures <= target (bisection)."""
    lo, hi = 0.0, 0.95
    best = None
    for _ in range(steps):
        mid = (lo + hi) / 2
        cand, _ = prune_structured(model, ratio=mid, criterion=criterion, min_channels=min_channels,
                                   round_to=round_to)
        value = measure(cand)
        if value <= target:
            best, hi = (cand, mid, value), mid
        else:
            lo = mid
    if best is None:
        cand, _ = prune_structured(model, ratio=hi, criterion=criterion, min_channels=min_channels,
                                   round_to=round_to)
        best = (cand, hi, measure(cand))
    return best


def litert_latency_ms(model, work_dir, latency_ms=None) -> float:
    """Median batch-1 latency (ms) of the model's float32 .tflite, measured by the ``latency_ms``
    oracle of the step context (default: the engine's, LiteRT on 1 thread)."""
    import os
    import tempfile

    from edgeopt.convert import keras_to_tflite

    latency_ms = latency_ms or default_oracles()["latency_ms"]
    fd, path = tempfile.mkstemp(suffix=".tflite", dir=work_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(keras_to_tflite(model))
        x1 = np.zeros((1,) + tuple(model.inputs[0].shape[1:]), np.float32)
        return float(latency_ms(path, x1))
    finally:
        os.unlink(path)


@register("prune-structured")
class StructuredPrune:
    """Structured pruning: remove whole filters/units (and the channels that depend on them),
    rebuild a smaller model, fine-tune.

    Options: ratio (share of channels removed in every prunable group, 0.5), per_layer (dict
    layer -> ratio; others keep everything unless ratio is given), target_macs (int, or a
    fraction <= 1 of the model's MACs), target_latency_ms (float32 LiteRT median, 1 thread),
    criterion ('l1' | 'l2' | 'bn'), min_channels (4), round_to (1; e.g. 4 or 8 for SIMD-friendly
    widths), iterations (1; prune in steps with fine-tuning between), epochs (3 per iteration),
    lr, batch_size, patience, train_samples. Subclassed models, shared layers and unsupported
    layers on pruned channels are rejected with an error naming the layer.
    """

    name = "prune-structured"
    kind = "keras"
    config = configs.PruneStructured

    def run(self, ctx, model) -> StepResult:
        ctx = configured_ctx(ctx, self.config)
        cfg = ctx.config
        require_keras_model(model, self.name)
        from edgeopt.keras_graph import flatten, nested_models

        nested = nested_models(model)
        model = flatten(model)  # a base model wrapped as a layer (transfer learning) is inlined
        if cfg.max_accuracy_drop is not None:
            return budget_prune(ctx, model, nested)
        criterion, min_ch, round_to = cfg.criterion, cfg.min_channels, cfg.round_to
        iterations, epochs = cfg.iterations, cfg.epochs
        ChannelGraph(model)  # fail fast on unsupported models before any work
        base_macs, base_params = keras_macs(model), param_count(model)
        goal = self._goal(ctx, model, base_macs)
        histories, report, achieved = [], [], {}
        current = model
        base_widths = {l.name: int(getattr(l, "filters", None) or l.units) for l in model.layers
                       if type(l).__name__ in PRODUCERS}
        for i in range(1, iterations + 1):
            frac = i / iterations
            current, report, achieved = self._prune_once(ctx, current, goal, frac, criterion, min_ch,
                                                         round_to, base_widths, cfg.scope)
            # downstream BatchNorm statistics no longer match the thinner inputs
            recalibrate_batchnorm(current, ctx.dataset.x_train, seed=ctx.seed)
            if epochs > 0:
                current, hist = fine_tune_from(ctx, current, model, epochs)
                histories.append(hist)
        details = {
            "criterion": criterion,
            "goal": goal,
            "iterations": iterations,
            "groups": report,
            "macs": {"before": base_macs, "after": keras_macs(current)},
            "params": {"before": base_params, "after": param_count(current)},
            **achieved,
            "fine_tune": histories[-1] if len(histories) == 1 else histories,
        }
        ctx.log(f"prune-structured: MACs {base_macs} -> {details['macs']['after']}, "
                f"params {base_params} -> {details['params']['after']}")
        return StepResult(model=current, details=details)

    @staticmethod
    def _goal(ctx, model, base_macs) -> dict:
        cfg = ctx.config
        if cfg.target_latency_ms is not None:
            base = litert_latency_ms(model, ctx.work_dir, ctx.latency_ms)
            return {"kind": "latency_ms", "target": cfg.target_latency_ms, "start": base}
        if cfg.target_macs is not None:
            t = cfg.target_macs
            return {"kind": "macs", "target": t * base_macs if t <= 1.0 else t, "start": float(base_macs)}
        if cfg.per_layer:
            return {"kind": "per_layer", "per_layer": dict(cfg.per_layer), "ratio": cfg.ratio}
        return {"kind": "ratio", "ratio": cfg.ratio if cfg.ratio is not None else DEFAULT_RATIO}

    @staticmethod
    def _prune_once(ctx, model, goal, frac, criterion, min_ch, round_to, base_widths, scope="group"):
        """One iteration: ``frac`` of the way (geometrically) from the start to the goal."""
        kind = goal["kind"]
        if kind in ("macs", "latency_ms"):
            step_target = goal["start"] * (goal["target"] / goal["start"]) ** frac
            measure = keras_macs if kind == "macs" else (
                lambda m: litert_latency_ms(m, ctx.work_dir, ctx.latency_ms))
            if measure(model) <= step_target:
                return model, group_report(ChannelGraph(model), {}), {f"achieved_{kind}": measure(model)}
            steps = 10 if kind == "macs" else 5
            pruned, ratio, value = _search_ratio(model, measure, step_target, criterion, min_ch,
                                                 round_to, steps)
            _, report = prune_structured(model, ratio=ratio, criterion=criterion,
                                         min_channels=min_ch, round_to=round_to)
            return pruned, report, {f"achieved_{kind}": value, "last_ratio": round(ratio, 4)}
        # a ratio r over n iterations: after iteration i, 1 - (1 - r) ** (i / n) of the original
        # channels are gone (geometric steps, widths relative to the unpruned model)
        def cumulative(r):
            return None if r is None else 1.0 - (1.0 - float(r)) ** frac
        per_layer = {k: cumulative(v) for k, v in (goal.get("per_layer") or {}).items()}
        pruned, report = prune_structured(model, ratio=cumulative(goal.get("ratio")), per_layer=per_layer,
                                          criterion=criterion, min_channels=min_ch, round_to=round_to,
                                          base_widths=base_widths, scope=scope)
        return pruned, report, {}


# ---------------------------------------------------------------- budget-aware pruning

MAX_RATIO = 0.9


def fine_tune_from(ctx, student, teacher, epochs: int):
    """Fine-tune ``student`` on the train split (``--train-data`` when given), distilling from
    ``teacher`` when ``distill`` is on (the KD loss of ``distill.Distiller``: Hinton et al. 2015,
    hard-label weight 0.5); returns ``(student, history report)``."""
    from edgeopt.techniques.finetune import fine_tune

    cfg = ctx.config
    if not getattr(cfg, "distill", False) or ctx.dataset.task != "classification":
        return fine_tune(student, ctx, epochs=epochs)
    from edgeopt.techniques.distill import Distiller
    from edgeopt.techniques.finetune import default_loss

    wrapped = Distiller(student, teacher, task=ctx.dataset.task, temperature=cfg.temperature, alpha=0.5,
                        sample=np.asarray(ctx.dataset.x_train[:32], np.float32))
    try:  # the Distiller's compute_loss replaces the compiled loss (given only to compile)
        wrapped, hist = fine_tune(wrapped, ctx, epochs=epochs, loss=default_loss(student, ctx.dataset))
    finally:
        teacher.trainable = True  # the Distiller froze it; later prunes rebuild from its config
    hist["distilled_from"] = teacher.name
    return wrapped.student, hist


def _score(ctx, model) -> float:
    """Validation quality of ``model``'s float32 .tflite (``ctx.select``: the validation split;
    the eval split only when there is none)."""
    import os
    import tempfile

    from edgeopt.convert import keras_to_tflite

    oracle = ctx.select or ctx.evaluate
    fd, path = tempfile.mkstemp(suffix=".tflite", dir=ctx.work_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(keras_to_tflite(model))
        return float(oracle(path))
    finally:
        os.unlink(path)


def budget_prune(ctx, model, nested: list[str]) -> StepResult:
    """Structured pruning that respects ``max_accuracy_drop`` (points, validation split).

    1. Sensitivity scan: each ratio of ``sensitivity_scan`` pruned one-shot (global ranking, BatchNorm
       statistics recalibrated, no training) and scored on validation.
    2. The largest scanned ratio whose one-shot drop is already within budget is the lower
       bound; bisection between it and the smallest ratio the scan shows collapsing (>= 50
       points) or ``MAX_RATIO``, ``budget_trials`` times: prune, fine-tune (distilled),
       measure; within budget raises the lower bound, over budget (rejected) lowers the upper.
    3. The largest ratio whose fine-tuned model met the budget is returned; when none did,
       the unpruned model with ``met: False`` and a warning.
    Raises UserError as ``prune_structured`` does."""
    import keras

    cfg = ctx.config
    limit = float(cfg.max_accuracy_drop)
    kw = dict(criterion=cfg.criterion, min_channels=cfg.min_channels, round_to=cfg.round_to, scope="global")
    base = _score(ctx, model)
    scan = []
    for r in cfg.sensitivity_scan:
        cand, _ = prune_structured(model, ratio=r, **kw)
        recalibrate_batchnorm(cand, ctx.dataset.x_train, seed=ctx.seed)
        scan.append({"ratio": r, "one_shot_drop": round((base - _score(ctx, cand)) * 100.0, 3)})
    lo = max([e["ratio"] for e in scan if e["one_shot_drop"] <= limit] or [0.0])
    hi = min([e["ratio"] for e in scan if e["one_shot_drop"] >= 50.0 and e["ratio"] > lo] or [MAX_RATIO])
    trials, best = [], None
    r = lo if lo > 0 else (lo + hi) / 2
    for _ in range(cfg.budget_trials):
        cand, report = prune_structured(model, ratio=r, **kw)
        recalibrate_batchnorm(cand, ctx.dataset.x_train, seed=ctx.seed)
        cand, hist = fine_tune_from(ctx, cand, model, cfg.epochs) if cfg.epochs > 0 else (cand, {})
        drop = (base - _score(ctx, cand)) * 100.0
        met = drop <= limit
        trials.append({"ratio": round(r, 4), "drop": round(drop, 3), "met": met,
                       "macs": keras_macs(cand), "fine_tune_epochs": hist.get("epochs_run", 0)})
        ctx.log(f"prune-structured: ratio {r:.3f} -> {drop:.2f} points drop on validation "
                f"({'within' if met else 'over'} the {limit} budget)")
        if met and (best is None or r > best[0]):
            best = (r, cand, report, hist)
        lo, hi = (r, hi) if met else (lo, r)
        r = (lo + hi) / 2
    base_macs, base_params = keras_macs(model), param_count(model)
    details = {"criterion": cfg.criterion, "scope": "global", "goal": {"kind": "max_accuracy_drop",
               "max_accuracy_drop": limit, "baseline_val_accuracy": round(base, 5)},
               "flattened": nested, "sensitivity_scan": scan, "budget_trials": trials,
               "met": best is not None}
    if best is None:
        msg = (f"no pruning ratio met max_accuracy_drop={limit} points after fine-tuning "
               f"(tried {', '.join(str(t['ratio']) for t in trials)}); the model is left unpruned")
        ctx.log(f"warning: {msg}")
        kept = keras.models.clone_model(model)
        kept.set_weights(model.get_weights())
        return StepResult(model=kept, details={**details, "warning": msg, "chosen_ratio": 0.0,
                                               "macs": {"before": base_macs, "after": base_macs},
                                               "params": {"before": base_params, "after": base_params}})
    r, pruned, report, hist = best
    details.update(chosen_ratio=round(r, 4), groups=report, fine_tune=hist,
                   macs={"before": base_macs, "after": keras_macs(pruned)},
                   params={"before": base_params, "after": param_count(pruned)})
    ctx.log(f"prune-structured: ratio {r:.3f} chosen (global ranking), MACs {base_macs} -> "
            f"{details['macs']['after']}")
    return StepResult(model=pruned, details=details)
