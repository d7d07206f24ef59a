"""One answer per fact: the precision vocabulary, the format -> runtime registry, the task metric,
the formatter, and no private LiteRT interpreter APIs anywhere in the package."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgeopt.core.precision import Precision, parse_precisions
from edgeopt.errors import UserError
from edgeopt.core.metrics import INVALID_LABEL, predicted_labels, task_metrics, top1_agreement
from edgeopt.report.format import fmt_bytes, fmt_count, fmt_int, fmt_ms, fmt_time
from edgeopt.runtimes import registry

SRC = Path(__file__).resolve().parents[1] / "src" / "edgeopt"


# ---------------------------------------------------------------------------- precision
@pytest.mark.parametrize("text, want", [
    ("fp32", Precision.FLOAT32), ("float32", Precision.FLOAT32), ("FP16", Precision.FLOAT16),
    ("int8", Precision.INT8), ("int8-dynamic", Precision.DYNAMIC), ("dynamic-int8", Precision.DYNAMIC),
    ("hybrid", Precision.DYNAMIC), ("dynamic", Precision.DYNAMIC), ("int16x8", Precision.INT16X8),
    ("int4-weights", Precision.INT4), ("int4", Precision.INT4), ("mixed", Precision.MIXED),
    ("bf16", Precision.BFLOAT16), (Precision.INT8, Precision.INT8)])
def test_precision_parses_every_spelling_in_use(text, want):
    assert Precision.parse(text) is want


def test_precision_is_a_plain_string_outside():
    import json

    assert Precision.INT8 == "int8" and f"{Precision.DYNAMIC}" == "dynamic"
    assert json.dumps({"p": Precision.FLOAT16}) == '{"p": "float16"}'
    assert parse_precisions("fp32, int8,fp32") == [Precision.FLOAT32, Precision.INT8]
    with pytest.raises(UserError, match=r"unknown precision 'fp8'; choose from float32, float16"):
        Precision.parse("fp8")


# ---------------------------------------------------------------------------- registry
def test_runtime_for_prefers_the_native_runtime():
    assert registry.runtime_for("m.tflite") == "litert"  # TFLM also runs it: registry order decides
    assert registry.runtime_for("dir/m.onnx") == "onnxruntime"  # OpenVINO also runs .onnx, natively .xml
    assert registry.runtime_for("m.XML") == "openvino"
    assert registry.runtimes_for("m.tflite") == ["litert", "tflm"]
    assert registry.runtimes_for("m.onnx") == ["onnxruntime", "openvino"]
    with pytest.raises(UserError, match=r"no runtime runs 'm.pb'; runtimes run \.tflite \(litert, tflm\)"):
        registry.runtime_for("m.pb")


class NativeOnnx:
    """A runtime whose native format is .onnx, registered after ONNX Runtime."""

    name = "native-onnx"
    formats = (".onnx",)


class AlsoOnnx:
    """A runtime that runs .onnx but natively something else, registered first."""

    name = "also-onnx"
    formats = (".engine", ".onnx")


def test_preference_rule_native_first_then_registry_order(monkeypatch):
    runtimes = {"also-onnx": f"{__name__}:AlsoOnnx", **registry.RUNTIMES,
                "native-onnx": f"{__name__}:NativeOnnx"}
    monkeypatch.setattr(registry, "RUNTIMES", runtimes)
    assert registry.runtimes_for("m.onnx") == ["onnxruntime", "native-onnx", "also-onnx", "openvino"]
    assert registry.runtime_for("m.engine") == "also-onnx"


# ---------------------------------------------------------------------------- task metric
def test_metric_multiclass_is_top1():
    pred = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    m = task_metrics(pred, np.array([1, 0, 1, 2]), "classification")
    assert m == {"accuracy": 0.75, "metric": "top-1 accuracy", "correct": 3, "samples": 4}


def test_metric_single_sigmoid_unit_thresholds_at_half():
    pred = np.array([[0.9], [0.2], [0.6], [0.4]], np.float32)  # argmax of one column would be all 0
    assert task_metrics(pred, np.array([1, 0, 1, 0]), "classification")["accuracy"] == 1.0
    assert task_metrics(pred.ravel(), np.array([1, 0, 1, 0]), "classification")["accuracy"] == 1.0


def test_metric_single_logit_thresholds_at_zero():
    logits = np.array([[2.5], [-1.0], [0.3], [-0.2]])
    assert task_metrics(logits, np.array([1, 0, 1, 0]), "classification")["accuracy"] == 1.0
    probs_read_as_logits = task_metrics(np.array([[0.4]]), np.array([1]), "classification", output="logits")
    assert probs_read_as_logits["accuracy"] == 1.0


def test_metric_one_hot_targets_and_regression():
    pred = np.array([[0.1, 0.9], [0.7, 0.3]])
    assert task_metrics(pred, np.array([[0, 1], [0, 1]]), "classification")["accuracy"] == 0.5
    m = task_metrics(np.array([[1.0], [3.0]]), np.array([2.0, 3.0]), "regression")
    assert m == {"mae": 0.5, "rmse": pytest.approx(np.sqrt(0.5)), "metric": "mae", "samples": 2}


def test_metric_nan_outputs_are_reported_never_class_0():
    pred = np.array([[np.nan, np.nan], [0.9, 0.1], [np.inf, 0.0]])
    m = task_metrics(pred, np.array([0, 0, 0]), "classification")
    assert m["accuracy"] == pytest.approx(1 / 3) and m["nonfinite_outputs"] == 2
    assert list(predicted_labels(pred)) == [INVALID_LABEL, 0, INVALID_LABEL]
    sig = task_metrics(np.array([[np.nan], [0.2]]), np.array([0, 0]), "classification")
    assert sig["accuracy"] == 0.5 and sig["nonfinite_outputs"] == 1
    reg = task_metrics(np.array([[np.nan], [1.0]]), np.array([1.0, 1.0]), "regression")
    assert reg["mae"] == float("inf") and reg["nonfinite_outputs"] == 1
    assert top1_agreement(pred, pred) == pytest.approx(1 / 3)  # NaN rows never agree


def test_metric_rejects_bad_input():
    with pytest.raises(UserError, match="3 predictions but 2 labels"):
        task_metrics(np.zeros((3, 2)), np.array([0, 1]), "classification")
    with pytest.raises(UserError, match="unknown task 'ranking'"):
        task_metrics(np.zeros((3, 2)), np.array([0, 1, 1]), "ranking")
    with pytest.raises(UserError, match="empty"):
        task_metrics(np.zeros((0, 2)), np.array([]), "classification")


def test_bench_task_metrics_is_the_same_function():
    from edgeopt.measure import bench

    assert bench.task_metrics is task_metrics


# ---------------------------------------------------------------------------- formatter
def test_formatter():
    assert [fmt_bytes(n) for n in (None, 0, 512, 1536, 3 * 2 ** 20, 5 * 2 ** 30)] == [
        "-", "0 B", "512 B", "1.5 KiB", "3.0 MiB", "5.0 GiB"]
    assert [fmt_count(n) for n in (None, 950, 12_000, 1_234_567, 2.5e9)] == ["-", "950", "12.00k", "1.23M", "2.50G"]
    assert fmt_int(1234567) == "1,234,567" and fmt_int(None) == "-"
    assert [fmt_time(s) for s in (None, 8.5e-5, 0.0123, 2.5, 125)] == [
        "-", "85.0 µs", "12.300 ms", "2.50 s", "2 min 5 s"]
    assert fmt_ms(0.12345) == "0.123" and fmt_ms(float("nan")) == "-"


def test_no_other_byte_formatters_in_owned_views():
    for rel in ("report/terminal.py", "measure/graph.py", "compare.py"):
        text = (SRC / rel).read_text()
        assert not re.search(r"/ 1024\b|def _?fmt_bytes", text), rel


# ---------------------------------------------------------------------------- one .tflite reader
PRIVATE_INTERPRETER_API = re.compile(r"\._get_ops_details|\._interpreter\b|_get_tensor_details_internal"
                                     r"|\._get_op_details")


def test_no_private_interpreter_apis_in_src():
    hits = [f"{p.relative_to(SRC)}:{n}" for p in SRC.rglob("*.py")
            for n, line in enumerate(p.read_text().splitlines(), 1) if PRIVATE_INTERPRETER_API.search(line)]
    assert hits == [], f"private LiteRT interpreter APIs: {hits}; use edgeopt.core.tflite.read_tflite"


def test_flatbuffer_parsed_only_by_the_reader():
    readers = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "GetRootAs(" in p.read_text()]
    assert readers == ["core/tflite.py"]


# ---------------------------------------------------------------------------- per-tensor errors
def test_quant_errors_use_the_quantizers_validation_where_it_applies(digits, digits_cnn_path):
    """ai-edge-quantizer's validation needs a file with one signature (a converter-made file such as
    a user's .tflite); edgeopt's own static-shape files have none and use the name-matching path."""
    import tensorflow as tf

    from edgeopt.model_io import load_keras
    from edgeopt.techniques import quant_error as qe
    from edgeopt.techniques.calibration import activation_ranges
    from edgeopt.techniques.ptq import aeq_static, float_io

    fl = tf.lite.TFLiteConverter.from_keras_model(load_keras(digits_cnn_path)).convert()  # with a signature
    x = digits.calibration(16)
    q = float_io(aeq_static(fl, activation_ranges(fl, digits.calibration(100), "minmax", 99.99)))
    validated = qe._validated_by_quantizer(fl, q, x)  # ai-edge-quantizer's model_validator
    matched = qe._matched_by_name(fl, q, x)  # our own LiteRT run, for converter-made models
    assert validated and qe.quant_error_table(fl, q, x) == validated
    assert {r["op"] for r in validated} >= {"CONV_2D", "FULLY_CONNECTED"}
    by_name = {r["tensor"].removesuffix("_int8"): r for r in matched}
    for r in validated:  # the two paths give the same SNR over the batch
        assert r["snr_db"] == pytest.approx(by_name[r["tensor"]]["snr_db"], abs=0.02) and r["cosine"] > 0.99
    same = qe._validated_by_quantizer(fl, fl, x)
    assert same and all(r["snr_db"] == qe.SNR_CAP_DB for r in same)
