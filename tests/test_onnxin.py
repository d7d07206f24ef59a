"""Models that arrive as .onnx or float .tflite: every PTQ function builds a checked artifact that
runs in its runtime and stays close to the float model (techniques/onnx_ptq.py, tflite_ptq.py)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.engine import int8_settings
from edgeopt.errors import UserError
from edgeopt.techniques import onnx_ptq, tflite_ptq
from edgeopt.techniques.artifact_check import ArtifactCheckFailed, check_artifact

# Every test uses the module's trained model (about 15 s of CPU to train and export).
pytestmark = pytest.mark.slow

NO_VNNI = ["avx2", "fma", "f16c"]  # the AMD EPYC of MEASURED.md
VNNI = ["avx2", "avx512f", "avx512_vnni"]


def _mobilenet_style():
    """Stem conv, two inverted residual blocks (expand 1x1, depthwise 3x3, project 1x1, BN,
    ReLU6; the second with a residual Add), global pooling, softmax: MobileNetV2 in miniature.
    BatchNorm momentum 0.9: with Keras' 0.99 its moving statistics lag a short training run and
    the model scores at chance in inference (MEASURED.md)."""
    import keras
    from keras import layers

    def block(x, out_c, stride, idx):
        y = layers.Conv2D(x.shape[-1] * 4, 1, use_bias=False, name=f"b{idx}_expand")(x)
        y = layers.ReLU(6.0)(layers.BatchNormalization(momentum=0.9)(y))
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"b{idx}_dw")(y)
        y = layers.ReLU(6.0)(layers.BatchNormalization(momentum=0.9)(y))
        y = layers.BatchNormalization(momentum=0.9)(layers.Conv2D(out_c, 1, use_bias=False, name=f"b{idx}_project")(y))
        return layers.Add()([x, y]) if stride == 1 and x.shape[-1] == out_c else y

    inp = keras.Input((8, 8, 1))
    x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=0.9)(layers.Conv2D(16, 3, padding="same", use_bias=False)(inp)))
    x = block(block(x, 16, 2, 0), 16, 1, 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x), name="mobilenet_style")


@pytest.fixture(scope="module")
def models(tmp_path_factory, digits):
    """The trained Keras model as .onnx (exporter's opset), .onnx at opset 11, and float .tflite."""
    import keras

    from edgeopt.convert import keras_to_tflite
    from edgeopt.export.onnx import keras_to_onnx
    from edgeopt.zoo import compile_classifier

    keras.utils.set_random_seed(0)
    model = compile_classifier(_mobilenet_style(), lr=3e-3)
    model.fit(digits.x_train, digits.y_train, epochs=8, batch_size=32, verbose=0)
    d = tmp_path_factory.mktemp("onnxin")
    (d / "float.tflite").write_bytes(keras_to_tflite(model))
    return {"onnx": keras_to_onnx(model, d / "float.onnx"),
            "onnx11": keras_to_onnx(model, d / "float11.onnx", opset=11),
            "tflite": d / "float.tflite"}


def _predict(path, x):
    from edgeopt.runtimes.registry import get_runtime, runtime_for

    return get_runtime(runtime_for(path)).load(path).predict(x)


def _scores(path, float_path, digits):
    from edgeopt.core.metrics import task_metrics, top1_agreement

    pred, ref = _predict(path, digits.x_eval), _predict(float_path, digits.x_eval)
    acc = lambda p: task_metrics(p, digits.y_eval, "classification")["accuracy"]  # noqa: E731
    return top1_agreement(pred, ref), acc(pred), acc(ref)


ONNX_FUNCTIONS = [onnx_ptq.ort_static_int8, onnx_ptq.ort_dynamic_int8, onnx_ptq.onnx_float16, onnx_ptq.nncf_int8]


@pytest.mark.parametrize("which", ["onnx", "onnx11"])
def test_every_onnx_function_gives_a_working_artifact_close_to_float(which, models, digits, tmp_path):
    from edgeopt.export.onnx import onnx_opset

    assert onnx_opset(models["onnx11"]) == 11 and onnx_opset(models["onnx"]) >= 13
    calib = digits.calibration(200)
    for fn in ONNX_FUNCTIONS:
        path, details = fn(models[which], calib, tmp_path)
        assert path.exists() and path.parent == tmp_path and check_artifact(path) is None, fn.__name__
        agree, acc, float_acc = _scores(path, models[which], digits)
        assert agree >= 0.95 and acc >= float_acc - 0.03, (fn.__name__, agree, acc, float_acc)
        assert details["precision"] in ("int8", "dynamic", "float16")
    assert (tmp_path / "nncf_int8.bin").exists()


def test_opset11_per_channel_is_upgraded_and_recorded(models, digits, tmp_path):
    from edgeopt.export.onnx import onnx_opset

    calib = digits.calibration(64)
    path, details = onnx_ptq.ort_static_int8(models["onnx11"], calib, tmp_path, cpu_flags=NO_VNNI)
    assert details["per_channel"] is True and details["reduce_range"] is True
    assert details["opset"]["model"] == 11 and details["opset"]["quantized"] == 13
    assert "version_converter" in details["opset"]["fix"] and onnx_opset(path) >= 13
    path, details = onnx_ptq.ort_static_int8(models["onnx11"], calib, tmp_path, opset_fix="per-tensor")
    assert details["per_channel"] is False and onnx_opset(path) == 11 and "per-tensor" in details["opset"]["fix"]
    assert check_artifact(path) is None


def test_failed_upgrade_falls_back_to_per_tensor(models, digits, tmp_path, monkeypatch):
    from edgeopt.export import onnx as ox  # edgeopt.export is also the API function

    def refuse(src, dst, opset):
        raise UserError(f"cannot upgrade {src} to opset {opset}: no adapter")
    monkeypatch.setattr(ox, "upgrade_opset", refuse)
    path, details = onnx_ptq.ort_static_int8(models["onnx11"], digits.calibration(64), tmp_path)
    assert details["per_channel"] is False and "upgrade failed" in details["opset"]["fix"]
    assert "no adapter" in details["opset"]["fix"] and check_artifact(path) is None


def test_a_graph_ort_cannot_load_fails_with_its_whole_reason(models, digits, tmp_path, monkeypatch):
    """What compare used to do: per-channel QDQ on opset 11 without the fix."""
    monkeypatch.setattr(onnx_ptq, "_per_channel_source", lambda src, pc, fix, calib, tmp: (src, True, {}))
    with pytest.raises(ArtifactCheckFailed) as err:
        onnx_ptq.ort_static_int8(models["onnx11"], digits.calibration(64), tmp_path)
    reason = str(err.value)
    assert "ONNX Runtime cannot run ort_int8.onnx" in reason and "Unrecognized attribute: axis" in reason
    assert "DequantizeLinear" in reason and len(reason) > 200  # not cut to a one-line summary
    assert not (tmp_path / "ort_int8.onnx").exists()  # never left where it could be measured


def test_check_artifact_reports_missing_and_unknown_files(tmp_path):
    assert "was not written" in check_artifact(tmp_path / "none.onnx")
    (tmp_path / "x.bin").write_bytes(b"\0")
    assert "no check for .bin" in check_artifact(tmp_path / "x.bin")
    (tmp_path / "junk.tflite").write_bytes(b"not a model")
    assert check_artifact(tmp_path / "junk.tflite").startswith("LiteRT cannot run junk.tflite")


def test_bad_inputs_are_user_errors(models, digits, tmp_path):
    with pytest.raises(UserError, match="not an .onnx"):
        onnx_ptq.ort_static_int8(models["tflite"], digits.calibration(8), tmp_path)
    with pytest.raises(UserError, match="needs calibration data"):
        onnx_ptq.ort_static_int8(models["onnx"], None, tmp_path)
    with pytest.raises(UserError, match="activation_type"):
        onnx_ptq.ort_static_int8(models["onnx"], digits.calibration(8), tmp_path, activation_type="U8")
    with pytest.raises(UserError, match="not a .tflite"):
        tflite_ptq.tflite_int8(models["onnx"], digits.calibration(8), tmp_path)


@pytest.mark.parametrize("runtime, flags, n", [("onnxruntime", NO_VNNI, 4), ("onnxruntime", VNNI, 3),
                                               ("openvino", NO_VNNI, 3)])
def test_int8_settings_are_chosen_by_measurement(runtime, flags, n, models, digits, tmp_path):
    path, details = int8_settings.choose_int8_settings(models["onnx"], digits.calibration(64), digits.x_val,
                                                  tmp_path, runtime=runtime, cpu_flags=flags, latency_rounds=1)
    rows = details["candidates"]
    assert len(rows) == n and sum(r["chosen"] for r in rows) == 1
    assert all(r["status"] == "ok" and 0 <= r["agreement"] <= 1 and r["p50_ms"] > 0 for r in rows)
    chosen = next(r for r in rows if r["chosen"])
    best = max(r["agreement"] for r in rows)
    tol = max(0.005, 1 / len(digits.x_val))
    assert chosen["agreement"] >= best - tol and details["chosen"] == chosen["name"]
    assert chosen["p50_ms"] <= 1.05 * min(r["p50_ms"] for r in rows if r["agreement"] >= best - tol)
    assert ("VNNI present" in details["why_candidates"]) is (flags == VNNI)
    if runtime == "onnxruntime":
        assert any(r["settings"].get("reduce_range") for r in rows) is (flags == NO_VNNI)
    assert path.exists() and check_artifact(path) is None
    assert not (tmp_path / f"{runtime}-int8-candidates").exists()


TFLITE_MODES = {tflite_ptq.tflite_dynamic: ("int8", 0.03), tflite_ptq.tflite_int8: ("int8", 0.03),
                tflite_ptq.tflite_float16: ("float16", 0.01), tflite_ptq.tflite_int16x8: ("int8", 0.02),
                # 4-bit weights on layers of 16 filters lose more: a sane margin, not int8's
                tflite_ptq.tflite_int4: ("int4", 0.15)}


def test_every_tflite_mode_runs_in_litert_close_to_float(models, digits, tmp_path):
    calib = digits.calibration(200)
    for fn, (dtype, margin) in TFLITE_MODES.items():
        path, details = fn(models["tflite"], calib, tmp_path)
        assert check_artifact(path) is None and details["quantizer"] == "ai-edge-quantizer"
        kinds = set(details["weight_tensors"])
        # ai-edge-quantizer has no int4 depthwise kernel: those weights stay float32
        assert dtype in kinds and kinds <= {dtype} | ({"float32"} if dtype == "int4" else set()), (
            fn.__name__, details["weight_tensors"])
        _, acc, float_acc = _scores(path, models["tflite"], digits)
        assert acc >= float_acc - margin, (fn.__name__, acc, float_acc)
        assert path.stat().st_size < models["tflite"].stat().st_size
    with pytest.raises(UserError, match="already int8"):
        tflite_ptq.tflite_int8(tmp_path / "int8.tflite", calib, tmp_path / "again")


def test_mixed_keeps_the_measured_most_sensitive_ops_float(models, digits, tmp_path):
    from edgeopt.core.metrics import task_metrics

    calls = []

    def evaluate(path):  # validation data, LiteRT: the caller's choice, not the technique's
        calls.append(path)
        pred = _predict(path, digits.x_val)
        return task_metrics(pred, digits.y_val, "classification")["accuracy"]

    calib = digits.calibration(200)
    # A baseline no int8 variant reaches: every candidate is measured, the best is returned.
    path, details = tflite_ptq.tflite_mixed(models["tflite"], calib, tmp_path, evaluate=evaluate,
                                            max_accuracy_drop=0.0, candidates=4, baseline=1.01)
    assert check_artifact(path) is None and details["precision"] == "mixed"
    assert len(details["sensitivity"]) == 4 and len(calls) == len(details["candidates_tried"])
    assert details["met"] is False and "not met" in details["warning"]
    assert details["score"] == max(t["score"] for t in details["candidates_tried"])
    assert details["score"] >= details["all_int8_score"]
    gains = {s["op"]: s["gain_alone"] for s in details["sensitivity"]}
    if details["kept_float"]:  # ops kept float in order of their measured gain
        assert gains[details["kept_float"][0]["op"]] == max(gains.values()) > 0
        assert "float32" in details["weight_tensors"] or not any(
            k["op"].startswith(("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")) for k in details["kept_float"])
    calls.clear()  # a generous budget: all-int8 meets it, measured once (plus the float baseline)
    _, easy = tflite_ptq.tflite_mixed(models["tflite"], calib, tmp_path, evaluate=evaluate, max_accuracy_drop=50)
    assert easy["met"] and easy["kept_float"] == [] and len(calls) == 2


def test_compare_runs_an_opset11_onnx_and_a_float_tflite(models, digits):
    from edgeopt.compare import compare

    fast = dict(runs=5, throughput_seconds=0.05, calibration=100)
    rows = compare(models["onnx11"], digits, runtimes=["onnxruntime", "openvino"],
                   precisions=["float32", "int8", "dynamic"], **fast)
    measured = compare(models["onnx"], digits, runtimes=["onnxruntime"], precisions=["int8"],
                       int8_settings="measured", **fast)[0]
    assert measured.ok and measured.settings["chosen"] in {c["name"] for c in measured.settings["candidates"]}
    assert measured.settings["validation_samples"] == len(digits.x_val)
    by = {(r.runtime, r.precision.value): r for r in rows}
    int8 = by[("onnxruntime", "int8")]
    assert int8.ok and int8.settings["opset"]["quantized"] == 13 and int8.top1_agreement >= 0.95, int8.reason
    assert by[("onnxruntime", "dynamic")].ok and by[("openvino", "int8")].ok
    rows = compare(models["tflite"], digits, runtimes=["litert"], precisions=["float32", "float16", "int8",
                                                                                 "dynamic"], **fast)
    assert all(r.ok and r.top1_agreement >= 0.95 for r in rows), [(r.precision, r.reason) for r in rows]
