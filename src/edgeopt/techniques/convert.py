"""The float32 baseline: a Keras model converted to a plain float32 .tflite."""
from __future__ import annotations

from edgeopt.core.precision import Precision
from edgeopt.fsutil import atomic_write_bytes
from edgeopt.steps import StepContext, StepResult, register
from edgeopt.techniques import configs


@register("float32")
class Float32:
    """Float32 LiteRT conversion (the baseline); after pruning, LiteRT's sparse encoding when smaller."""

    name = "float32"
    kind = "convert"
    config = configs.Float32
    produces = {"precision": "float32", "format": "tflite"}

    def run(self, ctx: StepContext, model) -> StepResult:
        from edgeopt.convert import context_input_shape, keras_to_tflite

        shape = context_input_shape(ctx, model)  # open axes fixed from the data or --input-shape
        data = keras_to_tflite(model, input_shape=shape)
        details = {"precision": Precision.FLOAT32}
        if ctx.hints.get("try_sparse_encoding"):  # set after pruning: keep the sparse file if smaller
            import tensorflow as tf

            sparse = keras_to_tflite(model, input_shape=shape,
                                     optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY])
            details["sparse_encoding"] = len(sparse) < len(data)
            details["dense_bytes"], details["sparse_bytes"] = len(data), len(sparse)
            data = sparse if details["sparse_encoding"] else data
        path = ctx.work_dir / "model.tflite"
        atomic_write_bytes(path, data)
        return StepResult(artifact=path, details=details)
