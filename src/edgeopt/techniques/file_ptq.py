"""Recipe steps for models that arrive as files: an .onnx or a float .tflite, no Keras model.

Each step wraps one function of ``techniques.onnx_ptq`` (ONNX Runtime static/dynamic int8,
float16, NNCF int8 through OpenVINO) or ``techniques.tflite_ptq`` (ai-edge-quantizer dynamic,
int8, float16, int16x8, int4, mixed). The runner hands these steps the model file's path instead
of a Keras model (``Step.inputs`` says which formats a step takes; ``steps.for_format`` maps
``ptq``/``int8``... to them). Calibration reads ``Dataset.calibration`` (the ``--calib-data``
file when given); steps without calibration use one eval sample for the load check only. Every
function loads its artifact in its runtime before returning (``ArtifactCheckFailed`` otherwise).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from edgeopt.core.arrays import NamedArrays
from edgeopt.steps import StepContext, StepResult, int8_settings_chooser, register, step_config
from edgeopt.techniques import configs


def _calibration(ctx: StepContext, cfg) -> np.ndarray:
    return np.asarray(ctx.dataset.calibration(cfg.calibration_samples, seed=ctx.seed), np.float32)


def _probe(ctx: StepContext) -> np.ndarray | None:
    """One eval sample for the load check; None (zeros of every input) for a several-input model."""
    x = ctx.dataset.x_eval[:1]
    return None if isinstance(x, NamedArrays) else np.asarray(x, np.float32)


def _validation(ctx: StepContext, calib: np.ndarray) -> np.ndarray:
    """Validation inputs for measured settings: the validation split, else the calibration sample."""
    x_val = ctx.dataset.x_val
    return np.asarray(x_val if len(x_val) else calib, np.float32)


class _FileStep:
    """One quantizer function applied to the model file.

    ``function``: "module.name" in ``edgeopt.techniques``, called as
    ``f(src, x, out, name="model", **options)`` where ``x`` is the calibration sample
    (``data = "calibration"``) or one eval sample for the load check (``data = "probe"``) and
    ``options`` maps the listed config fields to keyword arguments."""

    kind = "convert"
    inputs = ("onnx",)
    name = ""
    function = ""
    data = "probe"
    one_input = False  # True: calibrates on one input array (refused for several-input models)
    options: tuple[str, ...] = ()

    def run(self, ctx: StepContext, model) -> StepResult:
        cfg = step_config(ctx, self.config)
        artifact, details = self.quantize(ctx, cfg, Path(model), Path(ctx.work_dir))
        return StepResult(artifact=artifact, details={k: (v.value if hasattr(v, "value") else v)
                                                      for k, v in details.items()})

    def quantize(self, ctx, cfg, src: Path, out: Path) -> tuple[Path, dict]:
        module, func = self.function.split(".")
        quantizer = getattr(importlib.import_module(f"edgeopt.techniques.{module}"), func)
        x = _calibration(ctx, cfg) if self.data == "calibration" else _probe(ctx)
        return quantizer(src, x, out, name="model", **{k: getattr(cfg, k) for k in self.options})


class _MeasuredSettingsStep(_FileStep):
    """A static int8 step whose ``settings="measured"`` picks the settings by measuring them."""

    data = "calibration"
    one_input = True
    runtime = ""

    def quantize(self, ctx, cfg, src, out):
        if cfg.settings != "measured":
            return super().quantize(ctx, cfg, src, out)
        calib = _calibration(ctx, cfg)
        return int8_settings_chooser()(src, calib, _validation(ctx, calib), out, runtime=self.runtime,
                                       name="model")


# ---------------------------------------------------------------- ONNX

@register("ort-int8")
class OrtInt8(_MeasuredSettingsStep):
    """ONNX Runtime static int8, QDQ, per-channel (CPU-flag rule, or settings chosen by measurement)."""

    config = configs.OrtInt8
    produces = {"precision": "int8", "format": "onnx"}
    function = "onnx_ptq.ort_static_int8"
    runtime = "onnxruntime"
    options = ("per_channel", "reduce_range", "activation_type", "opset_fix")


@register("ort-dynamic")
class OrtDynamic(_FileStep):
    """ONNX Runtime dynamic int8 (int8 weights, activations quantized at run time)."""

    config = configs.OrtDynamic
    produces = {"precision": "dynamic", "format": "onnx"}
    function = "onnx_ptq.ort_dynamic_int8"
    options = ("per_channel", "opset_fix")


@register("onnx-float16")
class OnnxFloat16(_FileStep):
    """float16 ONNX (float32 inputs/outputs)."""

    config = configs.OnnxFloat16
    produces = {"precision": "float16", "format": "onnx"}
    function = "onnx_ptq.onnx_float16"


@register("nncf-int8")
class NncfInt8(_MeasuredSettingsStep):
    """int8 OpenVINO IR quantized with NNCF."""

    config = configs.NncfInt8
    produces = {"precision": "int8", "format": "openvino"}
    function = "onnx_ptq.nncf_int8"
    runtime = "openvino"
    options = ("overflow_fix",)


# ---------------------------------------------------------------- float .tflite

class _TfliteStep(_FileStep):
    inputs = ("tflite",)


@register("tflite-dynamic")
class TfliteDynamic(_TfliteStep):
    """Dynamic range (int8 weights, float activations)."""

    config = configs.TfliteDynamic
    produces = {"precision": "dynamic", "format": "tflite"}
    function = "tflite_ptq.tflite_dynamic"


@register("tflite-float16")
class TfliteFloat16(_TfliteStep):
    """float16 weights, float32 compute."""

    config = configs.TfliteFloat16
    produces = {"precision": "float16", "format": "tflite"}
    function = "tflite_ptq.tflite_float16"


@register("tflite-int8")
class TfliteInt8(_TfliteStep):
    """Full integer int8, global min/max calibration."""

    config = configs.TfliteInt8
    produces = {"precision": "int8", "format": "tflite"}
    function = "tflite_ptq.tflite_int8"
    data = "calibration"
    one_input = True
    options = ("per_channel", "int8_io")


@register("tflite-int16x8")
class TfliteInt16x8(_TfliteStep):
    """int16 activations, int8 weights."""

    config = configs.TfliteInt16x8
    produces = {"precision": "int16x8", "format": "tflite"}
    function = "tflite_ptq.tflite_int16x8"
    data = "calibration"
    one_input = True
    options = ("per_channel",)


@register("tflite-int4")
class TfliteInt4(_TfliteStep):
    """int4 weights, float compute."""

    config = configs.TfliteInt4
    produces = {"precision": "int4", "format": "tflite"}
    function = "tflite_ptq.tflite_int4"


@register("tflite-mixed")
class TfliteMixed(_TfliteStep):
    """int8 with the fewest ops kept float that meet the accuracy budget (each candidate measured)."""

    config = configs.TfliteMixed
    produces = {"precision": "mixed", "format": "tflite"}
    one_input = True

    def quantize(self, ctx, cfg, src, out):
        from edgeopt.techniques import tflite_ptq

        return tflite_ptq.tflite_mixed(src, _calibration(ctx, cfg), out, evaluate=ctx.evaluate,
                                       max_accuracy_drop=cfg.max_accuracy_drop, candidates=cfg.candidates,
                                       per_channel=cfg.per_channel, baseline=ctx.baseline_accuracy,
                                       name="model")
