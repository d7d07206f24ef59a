"""Edge TPU readiness: the rules (8-bit, static shapes, supported ops) and the single-partition cut."""
import numpy as np
import pytest

from edgeopt.errors import UserError
from edgeopt.hardware.edgetpu import edgetpu_readiness

from conftest import MLPERF_DIR


def _int8(model, shape):
    import tensorflow as tf
    from edgeopt.convert import keras_to_tflite

    x = np.random.default_rng(0).normal(0, 0.5, (8, *shape)).astype("float32")
    return keras_to_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT],
                           representative_dataset=lambda: ([x[i:i + 1]] for i in range(8)),
                           target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
                           inference_input_type=tf.int8, inference_output_type=tf.int8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("edgetpu")
    inp = keras.Input((8, 8, 3), batch_size=1)
    h = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    ready = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h)))
    inp = keras.Input((8, 8, 3), batch_size=1)
    h = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    h = keras.layers.Conv2D(8, 3, activation="gelu")(h)  # GELU: outside the Edge TPU op list
    broken = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h)))
    paths = {}
    for name, m in (("ready", ready), ("gelu", broken)):
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(_int8(m, (8, 8, 3)))
    return paths


@pytest.mark.slow  # converts two Keras models
def test_all_int8_static_supported_model_is_ready(models):
    r = edgetpu_readiness(models["ready"])
    assert r.ready and r.all_8bit and r.static_shapes and r.first_break is None
    assert r.tpu_ops == r.total_ops and r.tpu_macs == r.total_macs > 0 and r.tpu_mac_fraction == 1.0


@pytest.mark.slow
def test_first_unsupported_op_cuts_the_partition(models):
    from edgeopt.measure.graph import profile_tflite

    r = edgetpu_readiness(models["gelu"])
    ops = profile_tflite(models["gelu"], measure_arena=False).ops
    cut = [o.op_type for o in ops].index("GELU")
    assert not r.ready and "GELU" in r.unsupported_ops
    assert (r.first_break.index, r.first_break.op_type) == (cut, "GELU")
    assert "not in the Edge TPU's supported ops" in r.first_break.reason
    assert r.tpu_ops == cut and r.tpu_macs == sum(o.macs for o in ops[:cut]) < r.total_macs


@pytest.mark.skipif(not (MLPERF_DIR / "kws_ref_model.tflite").exists(), reason="shared models not present")
def test_dynamic_batch_breaks_at_the_first_op_and_batch_1_would_fix_it():
    r = edgetpu_readiness(MLPERF_DIR / "kws_ref_model.tflite")  # shape signature [-1, 49, 10, 1]
    assert not r.static_shapes and r.all_8bit and r.tpu_ops == 0 and r.first_break.index == 0
    assert "convert with the batch fixed to 1" in r.first_break.reason
    assert r.with_batch_1["first_break"] is None and r.with_batch_1["tpu_macs"] == r.total_macs == 2656768


def test_float_op_is_named(tmp_path):
    import tflite_micro
    from pathlib import Path

    sine = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"
    r = edgetpu_readiness(sine)
    assert not r.all_8bit and r.first_break.index == 0 and "float32" in r.first_break.reason
    with pytest.raises(UserError, match="needs a .tflite"):
        edgetpu_readiness(tmp_path / "m.onnx")


@pytest.mark.slow
def test_estimate_of_an_edge_tpu_device_carries_the_partition(models):
    from edgeopt.hardware.catalogue import load_devices
    from edgeopt.hardware.estimator import estimate
    from edgeopt.measure.graph import profile_tflite

    coral = load_devices(include_host=False)["coral-usb-accelerator"]
    est = estimate(profile_tflite(models["gelu"], measure_arena=False), coral)
    r = edgetpu_readiness(models["gelu"])
    assert est.edgetpu["first_break"]["op_type"] == "GELU" and est.edgetpu["tpu_ops"] == r.tpu_ops
    assert est.edgetpu["tpu_mac_fraction"] == r.tpu_mac_fraction
    assert any(w.startswith("Edge TPU partition ends at op #") and "GELU" in w for w in est.warnings)
    assert not any("not supported" in b for b in est.blockers)  # partial partition: CPU fallback, not a blocker
    assert est.latency_range_ms["high"] is None
    ready = estimate(profile_tflite(models["ready"], measure_arena=False), coral)
    assert ready.edgetpu["ready"] and not ready.blockers


@pytest.mark.skipif(not (MLPERF_DIR / "kws_ref_model.tflite").exists(), reason="shared models not present")
def test_estimate_blocks_when_nothing_reaches_the_edge_tpu():
    from edgeopt.hardware.catalogue import load_devices
    from edgeopt.hardware.estimator import estimate
    from edgeopt.measure.graph import profile_tflite

    coral = load_devices(include_host=False)["coral-usb-accelerator"]
    est = estimate(profile_tflite(MLPERF_DIR / "kws_ref_model.tflite", measure_arena=False), coral)
    assert est.edgetpu["tpu_ops"] == 0
    assert any(b.startswith("nothing would run on the Edge TPU") and "dynamic" in b for b in est.blockers)
