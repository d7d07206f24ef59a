"""Typed configs of the recipe steps: one pydantic class per step, unknown keys rejected.

Every field has a documented default, a checked range and, where it is worth tuning, a search
range (``search``: ``{"low", "high", "log"}`` or ``{"choices"}``) for the search issue to read.
This module imports only pydantic, so recipes and options are validated before any model or
data is loaded. ``"int8"`` in a recipe is shorthand for ``Int8()``; in Python
``Int8(calibration="percentile")`` is the same step with one field changed.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

__all__ = ["StepConfig", "Float32", "Dynamic", "Float16", "Int8", "Int16x8", "Int4Weights", "Mixed",
           "Prune", "PruneStructured", "Cluster", "QAT", "Distill", "CONFIGS", "config_class"]


def _search(**kw) -> dict:
    return {"search": kw}


class StepConfig(BaseModel):
    """Base of every step config: extra keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)
    step: ClassVar[str] = ""

    @classmethod
    def search_space(cls) -> dict[str, dict]:
        """Field name -> search range, for every tunable field."""
        out = {}
        for name, f in cls.model_fields.items():
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            if "search" in extra:
                out[name] = dict(extra["search"])
        return out

    def to_record(self) -> dict:
        """``{"step": name, "config": {...}}``: every field with its value (defaults included)."""
        return {"step": self.step, "config": self.model_dump(mode="json")}


# ---------------------------------------------------------------- shared field groups

class _FineTune(StepConfig):
    """Fields of the shared fine-tuning loop (``techniques.finetune``)."""

    epochs: int = Field(3, ge=0, le=1000, description="fine-tuning epochs (0 = none)",
                        json_schema_extra=_search(low=0, high=10))
    lr: float = Field(5e-4, gt=0, le=1.0, description="peak learning rate (cosine decay)",
                      json_schema_extra=_search(low=1e-5, high=1e-2, log=True))
    batch_size: int = Field(64, ge=1, le=65536, description="training batch size")
    patience: int = Field(3, ge=0, le=1000, description="epochs without improvement before stopping")
    train_samples: int | None = Field(None, ge=1, description="fine-tune on a stratified subset of this "
                                                               "many training rows (None = all)")


class _Calibrated(StepConfig):
    """Fields of static quantization with a representative dataset."""

    calibration: Literal["minmax", "percentile"] = Field(
        "minmax", description="activation ranges: global min/max or percentiles",
        json_schema_extra=_search(choices=["minmax", "percentile"]))
    percentile: float = Field(99.99, gt=50, le=100, description="percentile for calibration=percentile",
                              json_schema_extra=_search(low=99.0, high=100.0))
    calibration_samples: int = Field(500, ge=1, le=1_000_000,
                                     description="representative samples (rows of calibration_data or the train split)",
                                     json_schema_extra=_search(low=50, high=2000, log=True))
    calibration_data: Any = Field(None, description="a .npy path or an array of inputs "
                                                    "(default: a stratified sample of the train split)")
    per_channel: bool = Field(True, description="per-channel weight scales (else per-tensor)",
                              json_schema_extra=_search(choices=[True, False]))
    int8_io: bool = Field(False, description="integer model inputs/outputs (else float32 I/O)")

    @field_serializer("calibration_data")
    def _data_for_json(self, value):
        if value is None or isinstance(value, str):
            return value
        shape = getattr(value, "shape", None)
        return f"array{tuple(shape)}" if shape is not None else str(value)[:80]


# ---------------------------------------------------------------- conversion steps

class Float32(StepConfig):
    """Float32 LiteRT conversion (the baseline)."""

    step: ClassVar[str] = "float32"


class Dynamic(StepConfig):
    """Dynamic range: int8 weights, float activations."""

    step: ClassVar[str] = "dynamic"
    per_channel: bool = Field(True, description="per-channel weight scales (else per-tensor)",
                              json_schema_extra=_search(choices=[True, False]))


class Float16(StepConfig):
    """float16 weights, float32 compute."""

    step: ClassVar[str] = "float16"


FixName = Literal["cle", "cle_relu", "bias_correction", "adaround", "act_range"]


class _Int8Fixes(StepConfig):
    """Fields of the int8 accuracy fixes (``techniques.int8_fixes``)."""

    fixes: Literal["auto", "none"] | list[FixName] = Field(
        "auto", description="int8 accuracy fixes: 'auto' (try cle, cle_relu, bias_correction, act_range; "
                            "keep those whose int8 file agrees with float on more validation inputs "
                            "beyond noise, else the converter default), 'none' (the TFLite converter's "
                            "default) or a list applied as given",
        json_schema_extra=_search(choices=["auto", "none"]))
    fix_validation_samples: int = Field(2000, ge=16, le=1_000_000,
                                        description="validation rows the fixes are measured on")
    adaround_iterations: int = Field(200, ge=1, le=100_000, description="AdaRound steps per layer")

    @field_validator("fixes", mode="before")
    @classmethod
    def _comma_list(cls, value):
        """``-o int8.fixes=cle,bias_correction`` (or one name) as a list; names are then checked."""
        if isinstance(value, str) and value not in ("auto", "none"):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class Int8(_Calibrated, _Int8Fixes):
    """Full integer int8 with a representative dataset, with measured accuracy fixes."""

    step: ClassVar[str] = "int8"


class Int16x8(_Calibrated):
    """int16 activations, int8 weights."""

    step: ClassVar[str] = "int16x8"


class Int4Weights(StepConfig):
    """int4 weights (per channel), float compute."""

    step: ClassVar[str] = "int4-weights"


class Mixed(_Calibrated, _Int8Fixes):
    """int8 with the fewest ops kept float that meet an accuracy budget."""

    step: ClassVar[str] = "mixed"
    max_accuracy_drop: float = Field(0.5, ge=-100, le=100, description="accuracy budget in points vs float32",
                                     json_schema_extra=_search(low=0.1, high=2.0))
    latency_candidates: int = Field(6, ge=0, le=1000, description="compute ops tried float for speed "
                                                                  "(0 = no latency pass)",
                                    json_schema_extra=_search(low=0, high=12))
    sensitivity_candidates: int = Field(8, ge=0, le=10000,
                                        description="ops ranked most sensitive by one instrumented pass "
                                                    "that are measured float one at a time (0 = the "
                                                    "step-by-step greedy search only)")


# ---------------------------------------------------------------- training steps

class Prune(_FineTune):
    """Magnitude pruning with a sparsity schedule and kept masks."""

    step: ClassVar[str] = "prune"
    sparsity: float = Field(0.75, ge=0, lt=1, description="share of weights set to zero",
                            json_schema_extra=_search(low=0.3, high=0.95))
    layer_sparsity: dict[str, float] | None = Field(None, description="layer name -> sparsity overrides")
    scope: Literal["layer", "global"] = Field("layer", description="one threshold per layer or for all",
                                              json_schema_extra=_search(choices=["layer", "global"]))
    schedule: Literal["polynomial", "constant"] = Field("polynomial", description="sparsity schedule")
    initial_sparsity: float = Field(0.0, ge=0, le=1, description="sparsity at begin_step (polynomial)")
    begin_step: int = Field(0, ge=0, description="training step where pruning starts")
    end_step: int | None = Field(None, ge=-1, description="training step where the schedule ends "
                                                          "(None = half the fine-tuning; -1 = never)")
    frequency: int | None = Field(None, ge=1, description="steps between mask updates (None = a quarter epoch)")
    power: float = Field(3.0, gt=0, le=10, description="exponent of the polynomial schedule")
    skip_layers: list[str] = Field(default_factory=list, description="layer names left dense")
    report_size: bool = Field(True, description="record float/sparse .tflite sizes in the details")
    epochs: int = Field(4, ge=0, le=1000, description="fine-tuning epochs (0 = one-shot)",
                        json_schema_extra=_search(low=0, high=10))

    @model_validator(mode="before")
    @classmethod
    def _dict_sparsity(cls, data):
        if isinstance(data, dict) and isinstance(data.get("sparsity"), dict):  # sparsity={layer: s}
            data = dict(data)
            data["layer_sparsity"] = {**data.pop("sparsity"), **(data.get("layer_sparsity") or {})}
        return data


class PruneStructured(_FineTune):
    """Structured pruning: remove whole filters/units and rebuild a smaller model."""

    step: ClassVar[str] = "prune-structured"
    ratio: float | None = Field(None, ge=0, lt=1, description="share of channels removed per group "
                                                             "(None = 0.5 unless per_layer is given)",
                                json_schema_extra=_search(low=0.1, high=0.8))
    per_layer: dict[str, float] | None = Field(None, description="layer name -> ratio")
    target_macs: float | None = Field(None, gt=0, description="MAC target (<= 1: a fraction of the model's MACs)")
    target_latency_ms: float | None = Field(None, gt=0, description="float32 LiteRT p50 latency target")
    criterion: Literal["l1", "l2", "bn"] = Field("l1", description="channel ranking",
                                                 json_schema_extra=_search(choices=["l1", "l2", "bn"]))
    min_channels: int = Field(4, ge=1, description="channels every group keeps at least")
    round_to: int = Field(1, ge=1, le=256, description="kept channels rounded to a multiple of this")
    iterations: int = Field(1, ge=1, le=100, description="prune in steps with fine-tuning between")
    max_accuracy_drop: float | None = Field(
        None, ge=0, le=100, description="accuracy budget in points vs the unpruned model on the validation "
                                        "split: the largest globally ranked ratio whose fine-tuned model "
                                        "meets it is chosen (bisection; overrides ratio)")
    budget_trials: int = Field(3, ge=1, le=20, description="fine-tuned ratios measured by the budget search")
    sensitivity_scan: list[float] = Field([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
                                          description="global ratios pruned one-shot and scored on validation "
                                                      "to bound the budget search (recorded)")
    scope: Literal["group", "global"] = Field("group", description="ratio per group, or channels ranked "
                                                                  "across all groups (budget search: global)",
                                              json_schema_extra=_search(choices=["group", "global"]))
    distill: bool = Field(True, description="fine-tune with knowledge distillation from the unpruned model "
                                            "(Hinton et al. 2015; distill.py's loss)")
    temperature: float = Field(2.0, gt=0, description="distillation temperature T")


class Cluster(_FineTune):
    """Weight clustering: k-means per kernel, fine-tuned with tied weights."""

    step: ClassVar[str] = "cluster"
    clusters: int = Field(16, ge=2, le=65536, description="centroids per kernel",
                          json_schema_extra=_search(low=4, high=64, log=True))
    init: Literal["linear", "density"] = Field("linear", description="centroid initialisation",
                                               json_schema_extra=_search(choices=["linear", "density"]))
    iterations: int = Field(30, ge=1, le=10000, description="k-means iterations")
    skip_layers: list[str] = Field(default_factory=list, description="layer names left unclustered")
    min_weights: int = Field(0, ge=0, description="layers with fewer weights are left alone")
    report_size: bool = Field(True, description="record float .tflite sizes in the details")
    epochs: int = Field(2, ge=0, le=1000, description="fine-tuning epochs (0 = none)",
                        json_schema_extra=_search(low=0, high=10))


class QAT(_FineTune):
    """Quantization-aware training with learned ranges; closes with int8."""

    step: ClassVar[str] = "qat"
    lr: float = Field(2e-4, gt=0, le=1.0, description="peak learning rate (cosine decay)",
                      json_schema_extra=_search(low=1e-5, high=1e-3, log=True))
    calibration_samples: int = Field(500, ge=1, le=1_000_000, description="rows that initialise activation ranges")


class Distill(_FineTune):
    """Knowledge distillation into a smaller student (Hinton et al. 2015)."""

    step: ClassVar[str] = "distill"
    student: Any = Field(None, description="a .keras path or a keras.Model (None = derived at width)")
    width: float = Field(0.5, gt=0, description="width multiplier of the derived student",
                         json_schema_extra=_search(low=0.25, high=1.0))
    temperature: float = Field(2.0, gt=0, description="softening temperature T",
                               json_schema_extra=_search(low=1.0, high=8.0))
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the hard-label loss",
                         json_schema_extra=_search(low=0.0, high=1.0))
    epochs: int = Field(10, ge=1, le=1000, description="training epochs (early stopping on validation)",
                        json_schema_extra=_search(low=3, high=30))
    lr: float = Field(1e-3, gt=0, le=1.0, description="learning rate (the student trains from scratch)",
                      json_schema_extra=_search(low=1e-4, high=1e-2, log=True))
    compare_baseline: bool = Field(True, description="also train the student without the teacher")

    @field_serializer("student")
    def _student_for_json(self, value):
        if value is None or isinstance(value, str):
            return value
        return f"model {getattr(value, 'name', type(value).__name__)}"


CONFIGS: dict[str, type[StepConfig]] = {c.step: c for c in (
    Float32, Dynamic, Float16, Int8, Int16x8, Int4Weights, Mixed, Prune, PruneStructured, Cluster, QAT,
    Distill)}


def config_class(step: str) -> type[StepConfig] | None:
    return CONFIGS.get(step)


# ---------------------------------------------------------------- steps for models that arrive as files
# (``edgeopt.techniques.file_ptq``): an .onnx or a float .tflite, no Keras model needed.

class _FileCalibrated(StepConfig):
    """Calibration of a step that quantizes a model file."""

    calibration_samples: int = Field(500, ge=1, le=1_000_000,
                                     description="representative samples (--calib-data when given, else "
                                                 "a stratified sample of the train split)",
                                     json_schema_extra=_search(low=50, high=2000, log=True))


class OrtInt8(_FileCalibrated):
    """ONNX Runtime static int8 (QDQ, MinMax) of an .onnx model."""

    step: ClassVar[str] = "ort-int8"
    settings: Literal["rule", "measured"] = Field(
        "rule", description="rule: the CPU-flag rule (no VNNI: 7-bit weights); measured: every candidate "
                            "setting built and the best by measured agreement and speed kept")
    per_channel: bool = Field(True, description="per-channel weight scales (opset < 13 is upgraded)",
                              json_schema_extra=_search(choices=[True, False]))
    reduce_range: bool | None = Field(None, description="7-bit weights (None = the CPU-flag rule)")
    activation_type: Literal["QUInt8", "QInt8"] | None = Field(None, description="activation type "
                                                                                 "(None = the CPU-flag rule)")
    opset_fix: Literal["upgrade", "per-tensor"] = Field("upgrade", description="per-channel on opset < 13: "
                                                                               "upgrade the opset or go per-tensor")


class OrtDynamic(StepConfig):
    """ONNX Runtime dynamic int8 of an .onnx model (int8 weights, activations at run time)."""

    step: ClassVar[str] = "ort-dynamic"
    per_channel: bool = Field(False, description="per-channel weight scales")
    opset_fix: Literal["upgrade", "per-tensor"] = Field("upgrade", description="per-channel on opset < 13")


class OnnxFloat16(StepConfig):
    """float16 weights and compute of an .onnx model, float32 inputs/outputs."""

    step: ClassVar[str] = "onnx-float16"


class NncfInt8(_FileCalibrated):
    """int8 OpenVINO IR of an .onnx model quantized with NNCF."""

    step: ClassVar[str] = "nncf-int8"
    settings: Literal["rule", "measured"] = Field("rule", description="rule: the CPU-flag overflow-fix rule; "
                                                                      "measured: candidates measured")
    overflow_fix: Literal["enable", "first_layer_only", "disable"] | None = Field(
        None, description="NNCF overflow fix (None = the CPU-flag rule)")


class TfliteDynamic(StepConfig):
    """Dynamic range of a float .tflite (ai-edge-quantizer): int8 weights, float activations."""

    step: ClassVar[str] = "tflite-dynamic"


class TfliteFloat16(StepConfig):
    """float16 weights of a float .tflite (ai-edge-quantizer)."""

    step: ClassVar[str] = "tflite-float16"


class TfliteInt8(_FileCalibrated):
    """Full integer int8 of a float .tflite (ai-edge-quantizer, global min/max ranges)."""

    step: ClassVar[str] = "tflite-int8"
    per_channel: bool = Field(True, description="per-channel weight scales",
                              json_schema_extra=_search(choices=[True, False]))
    int8_io: bool = Field(False, description="integer model inputs/outputs (else float32 I/O)")


class TfliteInt16x8(_FileCalibrated):
    """int16 activations, int8 weights of a float .tflite (ai-edge-quantizer)."""

    step: ClassVar[str] = "tflite-int16x8"
    per_channel: bool = Field(True, description="per-channel weight scales")


class TfliteInt4(StepConfig):
    """int4 weights, float compute of a float .tflite (ai-edge-quantizer)."""

    step: ClassVar[str] = "tflite-int4"


class TfliteMixed(_FileCalibrated):
    """int8 of a float .tflite with the fewest ops kept float that meet an accuracy budget."""

    step: ClassVar[str] = "tflite-mixed"
    max_accuracy_drop: float = Field(0.5, ge=0, le=100, description="accuracy budget in points vs float32",
                                     json_schema_extra=_search(low=0.1, high=2.0))
    candidates: int = Field(6, ge=1, le=1000, description="most sensitive ops measured one at a time")
    per_channel: bool = Field(True, description="per-channel weight scales")


CONFIGS.update({c.step: c for c in (OrtInt8, OrtDynamic, OnnxFloat16, NncfInt8, TfliteDynamic, TfliteFloat16,
                                    TfliteInt8, TfliteInt16x8, TfliteInt4, TfliteMixed)})
__all__ += ["OrtInt8", "OrtDynamic", "OnnxFloat16", "NncfInt8", "TfliteDynamic", "TfliteFloat16", "TfliteInt8",
            "TfliteInt16x8", "TfliteInt4", "TfliteMixed"]
