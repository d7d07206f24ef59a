"""The float32 baseline: a Keras model converted to a plain float32 .tflite."""
from __future__ import annotations

from edgeopt.fsutil import atomic_write_bytes
from edgeopt.steps import StepContext, StepResult, register


@register("float32")
class Float32:
    """Plain float32 LiteRT conversion (the baseline every variant is compared with)."""

    name = "float32"
    kind = "convert"

    def run(self, ctx: StepContext, model) -> StepResult:
        from edgeopt.convert import keras_to_tflite

        hints = ctx.options.get("converter_hints") or {}
        path = ctx.work_dir / "model.tflite"
        atomic_write_bytes(path, keras_to_tflite(model, **hints))
        return StepResult(artifact=path, details={"precision": "float32"})
