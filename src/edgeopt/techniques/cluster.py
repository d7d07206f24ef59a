"""Weight clustering on Keras 3 (no tfmot): each kernel keeps only ``clusters`` distinct values.

1. k-means per layer on the non-zero kernel weights (1-D, Lloyd iterations; centroids start
   evenly spaced between the smallest and largest weight, tfmot's "linear" default, or at
   quantiles with ``init="density"``). Exact zeros (pruned weights) are not clustered: zero
   stays its own value, so sparsity survives and a layer has at most ``clusters + 1`` values.
2. Fine-tuning with weights tied to their centroids. The kernels stay ordinary trainable
   variables; after every batch a callback replaces each cluster's weights by their mean and
   re-zeroes pruned weights. One optimizer step moves every member by its own update, so the
   mean moves the centroid by the average of its members' updates: the gradient of the loss
   with respect to the shared value, averaged over the cluster (tfmot sums it; with Adam the
   scale hardly matters). Assignments stay fixed during fine-tuning.
3. The result is a plain Keras model (no wrapper layers): nothing to strip.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgeopt.errors import UserError
from edgeopt.steps import StepResult, register
from edgeopt.techniques import configs
from edgeopt.techniques.prune import (copy_model, float_tflite_sizes, layer_sparsity, model_masks,
                                      prunable_layers, require_keras_model, configured_ctx)

DEFAULT_ITERATIONS = configs.Cluster.model_fields["iterations"].default


def kmeans_1d(values: np.ndarray, k: int, init: str = "linear", iterations: int = DEFAULT_ITERATIONS
              ) -> tuple[np.ndarray, np.ndarray]:
    """Cluster 1-D ``values`` into at most ``k`` centroids; return (centroids, index per value).

    Assignment uses the midpoints between sorted centroids (exact nearest centroid in 1-D).
    Empty clusters are dropped, so fewer than k centroids may come back."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    if init == "linear":
        centroids = np.linspace(values.min(), values.max(), k)
    elif init == "density":
        centroids = np.quantile(values, (np.arange(k) + 0.5) / k)
    else:
        raise UserError(f"unknown cluster init {init!r}; use 'linear' or 'density'")
    centroids = np.unique(centroids)
    for _ in range(iterations):
        idx = _assign(values, centroids)
        counts = np.bincount(idx, minlength=len(centroids))
        sums = np.bincount(idx, weights=values, minlength=len(centroids))
        used = counts > 0
        new = sums[used] / counts[used]
        if len(new) == len(centroids) and np.allclose(new, centroids, rtol=0, atol=1e-12):
            break
        centroids = np.sort(new)
    idx = _assign(values, centroids)
    return centroids.astype(np.float32), idx


def _assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    mids = (centroids[1:] + centroids[:-1]) / 2
    return np.searchsorted(mids, values)


class _Tie:
    """One layer's clustering: which weights are clustered and into which centroid."""

    def __init__(self, layer, k: int, init: str, iterations: int, mask: np.ndarray | None):
        self.layer = layer
        w = np.asarray(layer.kernel.numpy())
        self.keep = np.ones(w.shape, bool) if mask is None else np.asarray(mask, bool)
        centroids, idx = kmeans_1d(w[self.keep], k, init, iterations)
        self.k = len(centroids)
        self.idx = idx
        self.counts = np.bincount(idx, minlength=self.k)
        self._write(centroids)

    def snap(self) -> None:
        """Each cluster's weights -> their mean; weights outside the mask -> 0."""
        w = np.asarray(self.layer.kernel.numpy())
        sums = np.bincount(self.idx, weights=w[self.keep].astype(np.float64), minlength=self.k)
        self._write((sums / np.maximum(self.counts, 1)).astype(np.float32))

    def _write(self, centroids: np.ndarray) -> None:
        w = np.zeros(self.keep.shape, np.float32)
        w[self.keep] = centroids[self.idx]
        self.layer.kernel.assign(w)


def snap_callback(ties: list[_Tie]):
    """After every batch: each cluster's weights -> their mean, pruned weights -> 0, done for all
    layers in one compiled TF function (a numpy round trip per layer per batch is far slower)."""
    import keras
    import tensorflow as tf

    plans = []
    for tie in ties:
        pos = np.flatnonzero(tie.keep.ravel()).astype(np.int64)
        plans.append((tie.layer.kernel, tf.constant(pos[:, None]), tf.constant(tie.idx.astype(np.int32)),
                      tf.constant(np.maximum(tie.counts, 1).astype(np.float32)), tie.k, int(tie.keep.size)))

    @tf.function
    def snap_all():
        for var, pos, idx, counts, k, n in plans:
            flat = tf.reshape(var, [-1])
            members = tf.gather_nd(flat, pos)
            centroids = tf.math.unsorted_segment_sum(members, idx, k) / counts
            new = tf.scatter_nd(pos, tf.gather(centroids, idx), [n])
            var.assign(tf.reshape(new, var.shape))

    class _Snap(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snap_all()

    return _Snap()


def unique_values(model) -> dict[str, int]:
    return {n: int(np.unique(np.asarray(l.kernel.numpy())).size) for n, l in prunable_layers(model).items()}


@register("cluster")
class WeightClustering:
    """Weight clustering: k-means per kernel, fine-tuned with weights tied to centroids.

    Options: clusters (16), init ('linear' | 'density'), iterations (k-means iterations, 30),
    skip_layers (names), min_weights (layers with fewer weights are left alone, 0), epochs (2;
    0 = cluster without fine-tuning), lr, batch_size, patience, train_samples. Pruned zeros
    (stored masks or exact zeros) stay zero and are not counted among the clusters.
    """

    name = "cluster"
    kind = "keras"
    config = configs.Cluster

    def run(self, ctx, model) -> StepResult:
        ctx = configured_ctx(ctx, self.config)
        cfg = ctx.config
        require_keras_model(model, self.name)
        k, init, iterations, skip = cfg.clusters, cfg.init, cfg.iterations, set(cfg.skip_layers)
        model = copy_model(model)
        masks = model_masks(model)
        all_layers = prunable_layers(model)
        unknown = sorted(skip - set(all_layers) - {l.name for l in all_layers.values()})
        if unknown:
            raise UserError(f"skip_layers names {', '.join(unknown)}, which are not clusterable "
                            f"layers of {model.name}; clusterable: {', '.join(all_layers)}")
        min_weights = cfg.min_weights
        layers = {n: l for n, l in prunable_layers(model, skip).items()
                  if int(np.prod(l.kernel.shape)) >= max(min_weights, k)}
        ties = [_Tie(l, k, init, iterations, masks.get(n)) for n, l in layers.items()]
        if not ties:
            raise UserError(f"{model.name} has no layer with at least {k} weights to cluster")
        epochs = cfg.epochs
        history = None
        if epochs > 0:
            from edgeopt.techniques.finetune import fine_tune

            model, history = fine_tune(model, ctx, epochs=epochs, callbacks=[snap_callback(ties)])
            for tie in ties:  # early stopping may restore weights from before the last snap
                tie.snap()
        from edgeopt.techniques.finetune import recalibrate_batchnorm

        recalibrate_batchnorm(model, ctx.dataset.x_train, seed=ctx.seed)
        if masks:
            model._edgeopt_masks = masks
        details: dict[str, Any] = {
            "clusters": k,
            "init": init,
            "clustered_layers": list(layers),
            "unique_values": unique_values(model),
            "layer_sparsity": layer_sparsity(model),
            "sparsity_preserved": bool(masks),
            "fine_tune": history,
        }
        if cfg.report_size:
            details["size"] = float_tflite_sizes(model, sparse_hint=bool(masks))
        ctx.log(f"cluster: {k} clusters in {len(ties)} layers")
        return StepResult(model=model, details=details)
