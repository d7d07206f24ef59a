"""Runtimes behind one interface: each loads its artifact and agrees with Keras; int8 settings
follow the CPU; int8 stays within 1 point of float in ONNX Runtime and OpenVINO."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import accuracy
from edgeopt.errors import UserError
from edgeopt.runtimes.registry import RUNTIMES, available_runtimes, get_runtime, parse_runtimes


@pytest.fixture(scope="module")
def keras_ref(digits, digits_cnn_path):
    from edgeopt.model_io import load_keras

    model = load_keras(digits_cnn_path)
    return model, model.predict(digits.x_eval, verbose=0)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, digits, keras_ref):
    """The digits CNN as ONNX fp32/fp16/int8/dynamic and OpenVINO IR fp32/fp16/int8."""
    from edgeopt.export import onnx as ox
    from edgeopt.export import openvino as ovx

    d = tmp_path_factory.mktemp("rt")
    calib = digits.calibration(300)
    out = {"onnx_fp32": ox.keras_to_onnx(keras_ref[0], d / "m.onnx")}
    ox.onnx_to_fp16(out["onnx_fp32"], d / "m16.onnx")
    ox.quantize_onnx_static(out["onnx_fp32"], d / "m8.onnx", calib)
    ox.quantize_onnx_dynamic(out["onnx_fp32"], d / "md.onnx")
    ovx.onnx_to_openvino(out["onnx_fp32"], d / "m.xml")
    ovx.onnx_to_openvino(out["onnx_fp32"], d / "m16.xml", fp16=True)
    ovx.quantize_openvino(d / "m.xml", d / "m8.xml", calib)
    out.update(onnx_fp16=d / "m16.onnx", onnx_int8=d / "m8.onnx", onnx_dyn=d / "md.onnx",
               ir_fp32=d / "m.xml", ir_fp16=d / "m16.xml", ir_int8=d / "m8.xml", dir=d)
    return out


def test_registry_lists_every_runtime_and_rejects_unknown_names():
    assert set(RUNTIMES) == {"litert", "onnxruntime", "openvino", "tflm"}
    assert set(available_runtimes()) == set(RUNTIMES)  # all four are installed in this venv
    assert parse_runtimes("ort, ov,litert") == ["onnxruntime", "openvino", "litert"]
    with pytest.raises(UserError, match="unknown runtime 'tensorrt'"):
        get_runtime("tensorrt")
    for name in RUNTIMES:
        rt = get_runtime(name)
        info = rt.info()
        assert rt.name == name and info.available and info.version, info


@pytest.mark.parametrize("runtime,key", [("onnxruntime", "onnx_fp32"), ("openvino", "ir_fp32"),
                                         ("openvino", "onnx_fp32"), ("litert", None), ("tflm", None)])
def test_each_runtime_runs_its_fp32_artifact_like_keras(runtime, key, artifacts, digits, keras_ref,
                                                         digits_cnn_tflite):
    path = artifacts[key] if key else digits_cnn_tflite
    session = get_runtime(runtime).load(path, threads=1)
    x = digits.x_eval[:64]
    pred = session.predict(x)
    assert pred.shape == (64, 10) and pred.dtype == np.float32
    np.testing.assert_allclose(pred, keras_ref[1][:64], atol=1e-4)
    assert session.load_seconds > 0
    # the latency path (invoke_prepared) runs the same graph
    session.invoke_prepared(x[:1])()


def test_fp16_artifacts_are_smaller_and_close(artifacts, digits, keras_ref):
    for fp32, fp16, rt in (("onnx_fp32", "onnx_fp16", "onnxruntime"), ("ir_fp32", "ir_fp16", "openvino")):
        from edgeopt.compare import artifact_size

        assert artifact_size(artifacts[fp16]) < artifact_size(artifacts[fp32])
        pred = get_runtime(rt).load(artifacts[fp16]).predict(digits.x_eval)
        assert np.abs(pred - keras_ref[1]).max() < 0.02
        assert (pred.argmax(1) == keras_ref[1].argmax(1)).mean() >= 0.99


@pytest.mark.parametrize("runtime,key", [("onnxruntime", "onnx_int8"), ("onnxruntime", "onnx_dyn"),
                                         ("openvino", "ir_int8")])
def test_int8_within_one_point_of_float(runtime, key, artifacts, digits, keras_ref):
    pred = get_runtime(runtime).load(artifacts[key]).predict(digits.x_eval)
    float_acc = accuracy(keras_ref[1], digits.y_eval)
    assert accuracy(pred, digits.y_eval) >= float_acc - 0.01
    assert not np.allclose(pred, keras_ref[1], atol=1e-5)  # it really is a different (quantized) model


def test_int8_artifacts_really_are_quantized(artifacts):
    import onnx

    ops = {n.op_type for n in onnx.load(str(artifacts["onnx_int8"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    dyn_ops = {n.op_type for n in onnx.load(str(artifacts["onnx_dyn"])).graph.node}
    assert dyn_ops & {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul"}
    assert "FakeQuantize" in artifacts["ir_int8"].read_text()
    # atomic writes leave no temp files behind
    assert not [p for p in artifacts["dir"].iterdir() if p.name.startswith(".")]


def test_ort_int8_options_follow_cpu_flags():
    from onnxruntime.quantization import QuantType

    from edgeopt.export.onnx import ort_int8_options

    zen3 = ort_int8_options(["sse4_2", "avx2", "fma", "f16c"])
    assert zen3["reduce_range"] is True and zen3["activation_type"] == QuantType.QUInt8
    assert zen3["per_channel"] is True and "overflow" in zen3["why"]
    for vnni_flag in ("avx512_vnni", "avx_vnni", "amx_int8"):
        opts = ort_int8_options(["avx2", vnni_flag])
        assert opts["reduce_range"] is False and opts["weight_type"] == QuantType.QInt8


def test_nncf_overflow_fix_follows_cpu_flags():
    from edgeopt.export.openvino import nncf_int8_options

    assert nncf_int8_options(["avx2", "fma"])["overflow_fix"] == "enable"
    assert nncf_int8_options(["avx2", "avx512_vnni"])["overflow_fix"] == "first_layer_only"


def test_reduce_range_options_reach_the_quantized_model(artifacts, digits, tmp_path):
    """The no-VNNI settings give 7-bit weights (|q| <= 63); the VNNI settings use the full range."""
    import onnx
    from onnx import numpy_helper

    from edgeopt.export.onnx import quantize_onnx_static

    def max_weight(path):
        model = onnx.load(str(path))
        return max(int(np.abs(numpy_helper.to_array(t).astype(np.int32)).max())
                   for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and t.dims)

    calib = digits.calibration(200)
    no_vnni = quantize_onnx_static(artifacts["onnx_fp32"], tmp_path / "a.onnx", calib, ["avx2"])
    vnni = quantize_onnx_static(artifacts["onnx_fp32"], tmp_path / "b.onnx", calib, ["avx2", "avx512_vnni"])
    assert no_vnni["reduce_range"] and not vnni["reduce_range"]
    assert max_weight(tmp_path / "a.onnx") <= 64 < max_weight(tmp_path / "b.onnx")
    pred = get_runtime("onnxruntime").load(tmp_path / "a.onnx").predict(digits.x_eval)
    assert accuracy(pred, digits.y_eval) > 0.9


def test_unloadable_artifact_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="ONNX Runtime cannot load bad.onnx"):
        get_runtime("onnxruntime").load(bad)
    bad_ir = tmp_path / "bad.xml"
    bad_ir.write_text("<net>")
    with pytest.raises(UserError, match="OpenVINO cannot load bad.xml"):
        get_runtime("openvino").load(bad_ir)


@pytest.fixture(scope="module")
def mobilenet_digits(tmp_path_factory, digits):
    """A MobileNetV2-style net (depthwise convs, residual Adds: the shape that overflows AVX2
    u8s8 kernels) trained briefly on digits upsampled to 16x16."""
    import keras

    from edgeopt.data import Dataset
    from edgeopt.export.onnx import keras_to_onnx
    from edgeopt.techniques.finetune import recalibrate_batchnorm
    from edgeopt.zoo import compile_classifier, mobilenet_v2_style

    def up(x):
        return np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)

    ds = Dataset("digits16", up(digits.x_train), digits.y_train, up(digits.x_val), digits.y_val,
                 up(digits.x_eval), digits.y_eval, "classification", 10)
    keras.utils.set_random_seed(0)
    model = compile_classifier(mobilenet_v2_style((16, 16, 1), 10, 0.35), lr=3e-3)
    model.fit(ds.x_train, ds.y_train, epochs=12, batch_size=32, verbose=0)
    recalibrate_batchnorm(model, ds.x_train)  # moving statistics lag after 12 epochs (MEASURED.md)
    ref = model.predict(ds.x_eval, verbose=0)
    assert accuracy(ref, ds.y_eval) > 0.85, "the float model must be worth quantizing"
    path = keras_to_onnx(model, tmp_path_factory.mktemp("mbv2") / "mbv2.onnx")
    return ds, ref, path


@pytest.mark.slow
@pytest.mark.parametrize("flags", [None, ["avx2", "fma"]], ids=["this-cpu", "no-vnni-settings"])
def test_int8_within_one_point_on_mobilenet_style(flags, mobilenet_digits, tmp_path):
    from edgeopt.export.onnx import quantize_onnx_static
    from edgeopt.export.openvino import onnx_to_openvino, quantize_openvino

    ds, ref, onnx_fp32 = mobilenet_digits
    float_acc = accuracy(ref, ds.y_eval)
    calib = ds.calibration(300)
    quantize_onnx_static(onnx_fp32, tmp_path / "q.onnx", calib, flags)
    onnx_to_openvino(onnx_fp32, tmp_path / "f.xml")
    quantize_openvino(tmp_path / "f.xml", tmp_path / "q.xml", calib, flags)
    for runtime, path in (("onnxruntime", tmp_path / "q.onnx"), ("openvino", tmp_path / "q.xml")):
        pred = get_runtime(runtime).load(path).predict(ds.x_eval)
        assert accuracy(pred, ds.y_eval) >= float_acc - 0.01, runtime
        # the overflow bug shows as large output errors, not only as lost accuracy
        assert np.abs(pred - ref).mean() < 0.02, runtime
