"""Magnitude pruning on Keras 3 (no tfmot): zero the smallest weights, fine-tune with masks.

Masks live beside the model (``model._edgeopt_masks``: layer name -> bool array, True = kept) and
can always be re-derived from exact zeros (``model_masks``), so later steps (cluster, qat) keep
pruned weights at zero with ``MaskCallback`` even after the model was saved and re-loaded.

Finding on this version (tensorflow 2.21, ai-edge-litert 2.3.0, measured with a 80%-sparse CNN):
``tf.lite.Optimize.EXPERIMENTAL_SPARSITY`` on a float32 conversion stores sparse weights in
LiteRT's block-sparse format: the .tflite shrank 3.8x (926 kB -> 242 kB), its gzip size 6%,
outputs were bit-identical and latency unchanged. Combined with int8 or dynamic-range
quantization the converter still writes sparse tensors but LiteRT's XNNPACK delegate then fails
to prepare the model ("failed to delegate FULLY_CONNECTED"), so the hint is for float
conversions only; it is reported in ``details["sparse_encoding"]`` with the sizes measured for the
model, for the float32 converter to opt into.
"""
from __future__ import annotations

import dataclasses
import gzip
import math
from typing import Any

import numpy as np

from edgeopt.errors import UserError
from edgeopt.steps import StepResult, register, step_config
from edgeopt.techniques import configs

DEFAULT_SPARSITY = configs.Prune.model_fields["sparsity"].default
PRUNABLE_TYPES = ("Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D",
                  "Conv1DTranspose", "Conv2DTranspose", "EinsumDense")
# Converter setting for FLOAT conversions of sparse models (a tf.lite.Optimize member name). It is
# not put into details["converter_hints"]: the run forwards those to every later converter,
# including int8, whose sparse output LiteRT cannot load, and they must be real converter values.
SPARSE_FLOAT_HINTS = {"optimizations": ["EXPERIMENTAL_SPARSITY"], "applies_to": ["float32"]}


# ---------------------------------------------------------------- schedule (pure)

@dataclasses.dataclass(frozen=True)
class SparsitySchedule:
    """When masks are recomputed and at which sparsity (tfmot semantics).

    ``constant``: the final sparsity from ``begin`` on, masks recomputed every ``frequency``
    steps until ``end`` (-1 = never stop). ``polynomial``: sparsity rises from ``initial`` to
    ``final`` between ``begin`` and ``end`` as ``final + (initial - final) * (1 - p) ** power``.
    """

    kind: str = "polynomial"
    initial: float = 0.0
    final: float = DEFAULT_SPARSITY
    begin: int = 0
    end: int = 100
    frequency: int = 10
    power: float = 3.0

    def __post_init__(self):
        if self.kind not in ("constant", "polynomial"):
            raise UserError(f"unknown pruning schedule {self.kind!r}; use 'constant' or 'polynomial'")
        if not (0.0 <= self.initial <= 1.0 and 0.0 <= self.final < 1.0):
            raise UserError(f"sparsity must be in [0, 1); got initial {self.initial}, final {self.final}")
        if self.frequency < 1 or self.begin < 0:
            raise UserError(f"pruning frequency must be >= 1 and begin_step >= 0 "
                            f"(got {self.frequency}, {self.begin})")
        if self.kind == "polynomial" and self.end <= self.begin:
            raise UserError(f"end_step ({self.end}) must be after begin_step ({self.begin})")

    def sparsity(self, step: int, final: float | None = None) -> float:
        """Target sparsity at ``step`` (``final`` overrides the schedule's final sparsity)."""
        final = self.final if final is None else final
        if step < self.begin:
            return 0.0
        if self.kind == "constant":
            return final
        initial = min(self.initial, final)
        p = min(1.0, (step - self.begin) / (self.end - self.begin))
        return final + (initial - final) * (1.0 - p) ** self.power

    def update_due(self, step: int) -> bool:
        if step < self.begin or (self.end >= 0 and step > self.end):
            return False
        return (step - self.begin) % self.frequency == 0 or step == self.end


# ---------------------------------------------------------------- masks

def prunable_layers(model, skip: set[str] = frozenset()) -> dict[str, Any]:
    """Layers with a ``kernel`` (Dense, convolutions), by name, in model order; nested models are
    searched too (names joined with '/')."""
    found: dict[str, Any] = {}

    def walk(container, prefix):
        for layer in container.layers:
            name = prefix + layer.name
            if hasattr(layer, "layers") and layer.layers:
                walk(layer, name + "/")
            elif type(layer).__name__ in PRUNABLE_TYPES and getattr(layer, "kernel", None) is not None:
                if layer.name not in skip and name not in skip:
                    found[name] = layer

    walk(model, "")
    return found


def model_masks(model) -> dict[str, np.ndarray]:
    """Masks to keep (True = weight may be non-zero): stored ones, else derived from exact zeros."""
    stored = getattr(model, "_edgeopt_masks", None)
    layers = prunable_layers(model)
    if stored:
        return {k: v for k, v in stored.items() if k in layers
                and tuple(v.shape) == tuple(layers[k].kernel.shape)}
    masks = {}
    for name, layer in layers.items():
        w = np.asarray(layer.kernel.numpy())
        if (w == 0).any():
            masks[name] = w != 0
    return masks


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep all but the round(sparsity * n) smallest-magnitude weights (exact count, ties by order)."""
    k = int(round(sparsity * w.size))
    mask = np.ones(w.size, dtype=bool)
    if k > 0:
        mask[np.argpartition(np.abs(w).ravel(), k - 1)[:k]] = False
    return mask.reshape(w.shape)


def global_masks(weights: dict[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    """One magnitude threshold across all layers: the smallest weights of the whole model go."""
    flat = np.concatenate([np.abs(w).ravel() for w in weights.values()])
    keep = magnitude_mask(flat, sparsity)
    out, start = {}, 0
    for name, w in weights.items():
        out[name] = keep[start:start + w.size].reshape(w.shape)
        start += w.size
    return out


def apply_masks(layers: dict[str, Any], masks: dict[str, np.ndarray]) -> None:
    for name, mask in masks.items():
        layer = layers[name]
        layer.kernel.assign(np.asarray(layer.kernel.numpy()) * mask)


def _make_callback_base():
    import keras

    return keras.callbacks.Callback


def _mask_applier(layers: dict[str, Any]):
    """(load, apply): ``load(masks)`` sets the masks; ``apply()`` is one compiled TF function that
    multiplies every kernel by its mask (one call per batch instead of a numpy round trip per
    layer, which made fine-tuning several times slower)."""
    import tensorflow as tf

    names = [n for n in layers]
    variables = [layers[n].kernel for n in names]
    mask_vars = [tf.Variable(np.ones(v.shape, np.float32), trainable=False) for v in variables]

    def load(masks):
        for n, mv in zip(names, mask_vars):
            mv.assign(np.asarray(masks.get(n, 1.0), np.float32) * np.ones(mv.shape, np.float32))

    @tf.function
    def apply():
        for v, m in zip(variables, mask_vars):
            v.assign(v * m)

    return load, apply


class MaskCallback:
    """Keras callback factory: re-applies fixed masks after every training batch, so pruned weights
    stay zero while other techniques (clustering, QAT) fine-tune. Use ``MaskCallback.create(model,
    masks)``."""

    @staticmethod
    def create(model, masks: dict[str, np.ndarray]):
        base = _make_callback_base()
        layers = prunable_layers(model)
        masks = {k: m for k, m in masks.items() if k in layers}
        load, apply = _mask_applier({k: layers[k] for k in masks})
        load(masks)

        class _Mask(base):
            def on_train_batch_end(self, batch, logs=None):
                apply()

        apply_masks(layers, masks)
        return _Mask()


def pruning_callback(model, schedule: SparsitySchedule, layer_targets: dict[str, float],
                     scope: str, keep: dict[str, np.ndarray]):
    """A callback that recomputes masks on the schedule and re-applies them after each batch.
    ``keep`` holds masks from earlier steps: weights already zero stay zero."""
    base = _make_callback_base()
    layers = prunable_layers(model)
    load, apply = _mask_applier(layers)

    class _Prune(base):
        def on_train_begin(self, logs=None):
            self.step = 0
            load(keep)

        def on_train_batch_begin(self, batch, logs=None):
            if schedule.update_due(self.step):
                load(compute_masks(layers, layer_targets, scope, keep,
                                   lambda final: schedule.sparsity(self.step, final)))
                apply()

        def on_train_batch_end(self, batch, logs=None):
            apply()
            self.step += 1

    return _Prune()


def compute_masks(layers, layer_targets: dict[str, float], scope: str, keep: dict[str, np.ndarray],
                  sparsity_of=lambda final: final) -> dict[str, np.ndarray]:
    """Masks at ``sparsity_of(final)`` per layer (or one global threshold), and-ed with ``keep``."""
    weights = {n: np.asarray(layers[n].kernel.numpy()) * keep.get(n, 1) for n in layer_targets}
    if scope == "global":
        target = sparsity_of(next(iter(layer_targets.values()), 0.0))
        masks = global_masks(weights, target) if weights else {}
    else:
        masks = {n: magnitude_mask(w, sparsity_of(layer_targets[n])) for n, w in weights.items()}
    for name, mask in keep.items():
        masks[name] = masks[name] & mask if name in masks else mask
    return masks


# ---------------------------------------------------------------- shared step helpers

def configured_ctx(ctx, cls):
    """A copy of ``ctx`` whose ``config`` is the step's validated config and whose ``options``
    are that config's fields (what the shared fine-tuning loop reads)."""
    cfg = step_config(ctx, cls)
    return dataclasses.replace(ctx, config=cfg, options=cfg.model_dump())


def require_keras_model(model, step: str):
    import keras

    if not isinstance(model, keras.Model):
        raise UserError(f"the {step} step needs a Keras model (got {type(model).__name__}); "
                        f"put it before the conversion step and start from a .keras model")


def copy_model(model):
    """A copy with the same weights, so a baseline shared by several recipes is never changed."""
    import keras

    try:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    except Exception:  # subclassed models cannot be cloned; they are changed in place
        return model
    if getattr(model, "_edgeopt_masks", None):
        clone._edgeopt_masks = dict(model._edgeopt_masks)
    return clone


def layer_sparsity(model) -> dict[str, float]:
    return {n: round(float((np.asarray(l.kernel.numpy()) == 0).mean()), 4)
            for n, l in prunable_layers(model).items()}


def overall_sparsity(model) -> float:
    ws = [np.asarray(l.kernel.numpy()) for l in prunable_layers(model).values()]
    total = sum(w.size for w in ws)
    return round(float(sum(int((w == 0).sum()) for w in ws) / max(total, 1)), 4)


def float_tflite_sizes(model, sparse_hint: bool = True) -> dict[str, int]:
    """Bytes and gzip bytes of the float32 .tflite (and of the sparse-encoded one)."""
    import tensorflow as tf

    from edgeopt.convert import keras_to_tflite

    dense = keras_to_tflite(model)
    out = {"float_tflite_bytes": len(dense), "float_tflite_gzip_bytes": len(gzip.compress(dense, 9))}
    if sparse_hint:
        sparse = keras_to_tflite(model, optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY])
        out.update(sparse_tflite_bytes=len(sparse), sparse_tflite_gzip_bytes=len(gzip.compress(sparse, 9)))
    return out


# ---------------------------------------------------------------- the step

def _layer_targets(model, cfg) -> tuple[dict[str, float], dict[str, Any]]:
    skip = set(cfg.skip_layers)
    all_names = {l.name for l in prunable_layers(model).values()} | set(prunable_layers(model))
    unknown = sorted(skip - all_names)
    if unknown:
        raise UserError(f"skip_layers names {', '.join(unknown)}, which are not prunable layers of "
                        f"{model.name}; prunable: {', '.join(sorted(prunable_layers(model)))}")
    layers = prunable_layers(model, skip)
    if not layers:
        raise UserError(f"{model.name} has no prunable layers (Dense or convolutions) left to prune")
    sparsity, per_layer = cfg.sparsity, cfg.layer_sparsity or {}
    bad = sorted(set(per_layer) - set(layers))
    if bad:
        raise UserError(f"layer_sparsity names {', '.join(bad)}, not prunable layers of {model.name}")
    targets = {n: float(per_layer.get(n, sparsity)) for n in layers}
    for n, s in targets.items():
        if not 0.0 <= s < 1.0:
            raise UserError(f"sparsity for {n} must be in [0, 1), got {s}")
    return targets, layers


@register("prune")
class MagnitudePrune:
    """Magnitude pruning: zero the smallest weights of Dense/conv kernels and fine-tune with masks.

    Options: sparsity (0.75, or a dict layer -> sparsity), layer_sparsity (dict overrides),
    scope ('layer' | 'global': one threshold for all layers), schedule ('polynomial' | 'constant'),
    initial_sparsity (0), begin_step (0), end_step (half of the fine-tuning steps), frequency
    (steps between mask updates; a quarter epoch), power (3), skip_layers (names), epochs (4; 0 =
    one-shot), lr, batch_size, patience, train_samples. Zeros from earlier steps stay zero.
    """

    name = "prune"
    kind = "keras"
    config = configs.Prune

    def run(self, ctx, model) -> StepResult:
        ctx = configured_ctx(ctx, self.config)
        cfg = ctx.config
        require_keras_model(model, self.name)
        model = copy_model(model)
        targets, layers = _layer_targets(model, cfg)
        scope = cfg.scope
        if scope == "global" and len(set(targets.values())) > 1:
            raise UserError("prune scope 'global' takes one sparsity, not per-layer sparsities")
        keep = model_masks(model)
        epochs = cfg.epochs
        train_rows = min(len(ctx.dataset.x_train), cfg.train_samples or 10 ** 12)
        per_epoch = max(1, math.ceil(train_rows / cfg.batch_size))
        schedule = SparsitySchedule(
            kind=cfg.schedule, initial=cfg.initial_sparsity, final=max(targets.values()),
            begin=cfg.begin_step,
            end=cfg.end_step if cfg.end_step is not None else max(1, int(0.5 * epochs * per_epoch)),
            frequency=cfg.frequency or max(1, per_epoch // 4), power=cfg.power)
        history = None
        if epochs > 0:
            from edgeopt.techniques.finetune import fine_tune

            cb = pruning_callback(model, schedule, targets, scope, keep)
            settle = math.ceil((schedule.end + 1) / per_epoch) if schedule.end >= 0 else 0
            model, history = fine_tune(model, ctx, epochs=epochs, callbacks=[cb],
                                       early_stop_from=min(settle, epochs))
        # The final masks are taken at the target sparsity whatever epoch early stopping restored.
        all_layers = prunable_layers(model)
        masks = compute_masks(all_layers, targets, scope, keep)
        apply_masks(all_layers, masks)
        model._edgeopt_masks = masks
        from edgeopt.techniques.finetune import recalibrate_batchnorm

        recalibrate_batchnorm(model, ctx.dataset.x_train, seed=ctx.seed)
        details: dict[str, Any] = {
            "scope": scope,
            "target_sparsity": targets,
            "schedule": dataclasses.asdict(schedule),
            "layer_sparsity": layer_sparsity(model),
            "overall_sparsity": overall_sparsity(model),
            "fine_tune": history,
        }
        hints = {}
        if cfg.report_size:
            details["size"] = float_tflite_sizes(model)
            details["sparse_encoding"] = {**SPARSE_FLOAT_HINTS, "helps": details["size"]["sparse_tflite_bytes"]
                                          < details["size"]["float_tflite_bytes"]}
            if details["sparse_encoding"]["helps"]:  # the float32 conversion may store it sparse
                hints["try_sparse_encoding"] = True
        ctx.log(f"prune: overall sparsity {details['overall_sparsity']:.2%}")
        return StepResult(model=model, details=details, hints=hints)
