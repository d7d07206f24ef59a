"""Graph profiler (.tflite / Keras / ONNX) and the TFLite Micro arena measurement."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import UserError
from edgeopt.measure.graph import (profile_keras, profile_onnx, profile_path,
                                   profile_tflite)
from edgeopt.measure.tflm import TFLMSession, measure_arena

from conftest import MLPERF_DIR as MLPERF  # noqa: E402
STATS = json.loads((MLPERF / "model_stats.json").read_text()) if MLPERF.is_dir() else {}
needs_mlperf = pytest.mark.skipif(not STATS, reason="MLPerf Tiny reference models not available")


def _rel(a: float, b: float) -> float:
    return abs(a - b) / b


@pytest.fixture(scope="module")
def digits_int8_tflite(models_dir, digits_cnn_path, digits):
    """The digits CNN with full-integer int8 quantization (int8 input and output)."""
    import tensorflow as tf

    from edgeopt.convert import keras_to_tflite
    from edgeopt.model_io import load_keras

    calib = digits.calibration(64, seed=0)

    def rep():
        for x in calib[:64]:
            yield [x[None].astype(np.float32)]

    path = models_dir / "digits_cnn_int8.tflite"
    path.write_bytes(keras_to_tflite(
        load_keras(digits_cnn_path), optimizations=[tf.lite.Optimize.DEFAULT], representative_dataset=rep,
        inference_input_type=tf.int8, inference_output_type=tf.int8,
        target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}))
    return path


@pytest.fixture(scope="module")
def digits_variants(models_dir, digits_cnn_path):
    """float16-weight and dynamic-range (hybrid) conversions of the digits CNN."""
    import tensorflow as tf

    from edgeopt.convert import keras_to_tflite
    from edgeopt.model_io import load_keras

    model = load_keras(digits_cnn_path)
    f16 = models_dir / "digits_cnn_f16.tflite"
    f16.write_bytes(keras_to_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT],
                                    target_spec={"supported_types": [tf.float16]}))
    dyn = models_dir / "digits_cnn_dynamic.tflite"
    dyn.write_bytes(keras_to_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT]))
    return {"float16": f16, "hybrid": dyn}


# ---------------------------------------------------------------------------- .tflite
@needs_mlperf
@pytest.mark.parametrize("name", sorted(STATS))
def test_mlperf_tiny_macs_and_params(name):
    p = profile_tflite(MLPERF / name, measure_arena=False)
    assert _rel(p.total_macs, STATS[name]["macs_conv_dw_fc"]) < 0.01
    assert p.total_params == STATS[name]["const_elems"]
    assert sum(p.weight_bytes.values()) == STATS[name]["const_bytes"]
    assert p.precision == "int8" and p.input_dtype == "int8"
    assert "x".join(map(str, p.input_shape)) == STATS[name]["input"].split()[0]
    assert sum(op.macs for op in p.ops) == p.total_macs
    assert sum(op.params for op in p.ops) == p.total_params
    assert len(p.tensors) > len(p.ops) and p.peak_activation_bytes > 0


@needs_mlperf
def test_kws_profile_details_and_arena():
    p = profile_tflite(MLPERF / "kws_ref_model.tflite")
    assert _rel(p.total_macs, 2_656_768) < 0.01
    first = p.ops[0]
    assert first.op_type == "CONV_2D" and first.dtype == "int8"
    assert first.quantization == "per-channel int8"
    assert first.weight_bytes["int8"] > 0 and first.weight_bytes["int32"] > 0  # filter + bias
    assert first.input_bytes == 49 * 10  # the int8 input
    assert [o.op_type for o in p.ops].count("DEPTHWISE_CONV_2D") == 4
    # The arena holds at least the planned activations and is a small multiple of them.
    assert p.arena_bytes is not None and p.peak_activation_bytes <= p.arena_bytes < 4 * p.peak_activation_bytes
    assert "TFLM" in p.arena_note and "24,272 B recorded" in p.arena_note
    weights = [t for t in p.tensors if t.is_constant and t.dtype == "int8"]
    assert weights and all(t.quantization.startswith("per-channel") for t in weights if len(t.shape) == 4)


@needs_mlperf
def test_arena_for_every_int8_reference_model():
    arenas = {name: measure_arena(MLPERF / name)[0] for name in sorted(STATS)}
    assert all(isinstance(a, int) and a > 0 for a in arenas.values()), arenas
    # A larger ResNet needs a larger arena than the small one.
    assert arenas["pretrainedResnet_large_int8.tflite"] > arenas["pretrainedResnet_quant.tflite"]


def test_arena_int8_variant(digits_int8_tflite):
    p = profile_tflite(digits_int8_tflite)
    assert p.precision == "int8"
    assert p.arena_bytes is not None and p.arena_bytes >= p.peak_activation_bytes
    # The smallest arena reported really is the smallest: one byte less fails to allocate.
    code = ("import sys; from tflite_micro import runtime\n"
            "try:\n runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2])); print('ok')\n"
            "except RuntimeError: print('fail')")
    run = lambda n: subprocess.run([sys.executable, "-c", code, str(digits_int8_tflite), str(n)],  # noqa: E731
                                   capture_output=True, text=True).stdout.strip()
    assert run(p.arena_bytes) == "ok" and run(p.arena_bytes - 1) == "fail"


def test_precision_variants_and_tflm_rejects_hybrid(digits_variants, digits_cnn_tflite):
    f32 = profile_tflite(digits_cnn_tflite)
    f16 = profile_tflite(digits_variants["float16"])
    dyn = profile_tflite(digits_variants["hybrid"])
    assert (f32.precision, f16.precision, dyn.precision) == ("float32", "float16", "dynamic")
    assert f16.total_macs == f32.total_macs == dyn.total_macs
    assert f16.total_params == f32.total_params
    assert sum(f16.weight_bytes.values()) < 0.55 * sum(f32.weight_bytes.values())
    conv = next(o for o in f16.ops if o.op_type == "CONV_2D")
    assert "float16" in conv.weight_bytes  # weights traced through DEQUANTIZE to their stored dtype
    assert f32.arena_bytes is not None
    assert dyn.arena_bytes is None and "hybrid" in dyn.arena_note.lower()
    assert "\n" not in dyn.arena_note
    assert any(o.dtype == "dynamic" for o in dyn.ops)


def test_tflm_session_matches_litert(digits_int8_tflite, digits):
    from edgeopt.runtimes.litert import LiteRT

    tflm = TFLMSession(digits_int8_tflite)
    lite = LiteRT().load(digits_int8_tflite)
    x = digits.x_eval[:40]
    a, b = tflm.predict(x), lite.predict(x)
    assert a.shape == b.shape == (40, 10) and a.dtype == np.float32
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.95
    # Reference (TFLM) and optimized (LiteRT) int8 softmax kernels round differently by a few steps.
    assert np.abs(a - b).max() <= 16 * tflm.outputs[0].scale
    assert np.abs(a - b).mean() <= 2 * tflm.outputs[0].scale
    invoke = tflm.invoke_prepared(x[:1])
    invoke()
    assert np.array_equal(tflm.predict(x[:1]), a[:1])  # deterministic, no state between samples


def test_tflm_session_refuses_hybrid(digits_variants):
    from edgeopt.runtimes.tflm import TFLM

    info = TFLM().info()
    assert info.available and info.version, info
    with pytest.raises(UserError, match="TFLite Micro"):
        TFLMSession(digits_variants["hybrid"])


# ---------------------------------------------------------------------------- Keras vs .tflite vs ONNX
def test_keras_macs_match_tflite(digits_cnn_path, digits_cnn_tflite):
    from edgeopt.model_io import load_keras

    k = profile_keras(load_keras(digits_cnn_path))
    t = profile_tflite(digits_cnn_tflite, measure_arena=False)
    assert k.total_macs > 0 and _rel(k.total_macs, t.total_macs) < 0.01
    # BatchNormalization is folded into the conv by the converter: Keras counts more parameters.
    assert k.total_params >= t.total_params
    assert {"CONV_2D", "FULLY_CONNECTED", "BATCH_NORMALIZATION"} <= {o.op_type for o in k.ops}


def test_mobilenet_v2_keras_vs_tflite(models_dir):
    import keras

    from edgeopt.convert import keras_to_tflite
    from edgeopt.zoo import mobilenet_v2_style

    keras.utils.set_random_seed(0)
    model = mobilenet_v2_style()
    path = models_dir / "mbv2.tflite"
    path.write_bytes(keras_to_tflite(model))
    k, t = profile_keras(model), profile_tflite(path, measure_arena=False)
    assert _rel(k.total_macs, t.total_macs) < 0.01
    kinds = {o.op_type for o in t.ops}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "FULLY_CONNECTED"} <= kinds
    dw = next(o for o in k.ops if o.op_type == "DEPTHWISE_CONV_2D")
    assert dw.macs == np.prod(dw.output_shape) * 9


def test_onnx_profile_matches_keras(digits_cnn_path, models_dir):
    from edgeopt.model_io import load_keras

    model = load_keras(digits_cnn_path)
    model(np.zeros((1, 8, 8, 1), np.float32))
    path = models_dir / "digits_cnn.onnx"
    model.export(str(path), format="onnx", verbose=False)
    o, k = profile_onnx(path), profile_keras(model)
    assert o.source == "onnx" and o.file_bytes == path.stat().st_size
    assert _rel(o.total_macs, k.total_macs) < 0.01
    assert {"CONV_2D", "FULLY_CONNECTED"} <= {op.op_type for op in o.ops}
    assert o.input_shape[1:] == [8, 8, 1] and o.precision == "float32"


# ---------------------------------------------------------------------------- peak activation
def _residual_mlp():
    """x(4) -> a=Dense(32) -> b=Dense(2) -> c=Dense(2) -> Concatenate([a, c]) -> Dense(3)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    x = keras.Input((4,))
    a = layers.Dense(32, name="a")(x)
    b = layers.Dense(2, name="b")(a)
    c = layers.Dense(2, name="c")(b)
    d = layers.Concatenate(name="d")([a, c])
    out = layers.Dense(3, name="out")(d)
    return keras.Model(x, out)


def test_peak_activation_by_hand(models_dir):
    from edgeopt.convert import keras_to_tflite

    # float32 bytes per op, tensors live from producer to last consumer:
    #   a:   x(16) + a(128)                    = 144
    #   b:   a(128, used by d later) + b(8)    = 136
    #   c:   a(128) + b(8) + c(8)              = 144
    #   d:   a(128) + c(8) + d(136)            = 272   <- peak
    #   out: d(136) + out(12)                  = 148
    expected = 272
    model = _residual_mlp()
    k = profile_keras(model)
    assert k.peak_activation_bytes == expected
    assert [o.activation_bytes for o in k.ops] == [128, 8, 8, 136, 12]
    assert [o.macs for o in k.ops] == [4 * 32, 32 * 2, 2 * 2, 0, 34 * 3]
    path = models_dir / "residual_mlp.tflite"
    path.write_bytes(keras_to_tflite(model))
    t = profile_tflite(path, measure_arena=False)
    assert t.peak_activation_bytes == expected and t.total_macs == k.total_macs


# ---------------------------------------------------------------------------- dispatch, table, bad input
def test_profile_path_dispatch_and_table(digits_cnn_path, digits_cnn_tflite):
    from rich.console import Console

    from edgeopt.model_io import load_keras
    from edgeopt.report.terminal import format_profile_table

    t = profile_path(digits_cnn_tflite, measure_arena=False)
    k = profile_path(digits_cnn_path, keras_loader=load_keras)
    assert (t.source, k.source) == ("tflite", "keras")
    table = format_profile_table(t)
    assert table.row_count == len(t.ops) + 1
    assert [c.header for c in table.columns] == ["op", "type", "output shape", "params", "MACs",
                                                "weight bytes", "activation bytes", "dtype"]
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert f"{t.total_macs:,}" in text and "CONV_2D" in text
    with pytest.raises(UserError, match="expected a .tflite"):
        profile_path(Path(digits_cnn_tflite).with_suffix(".bin"))


@needs_mlperf
@pytest.mark.parametrize("damage", ["truncated", "random", "text", "empty", "header_only"])
def test_damaged_tflite_is_a_user_error(tmp_path, damage):
    good = (MLPERF / "kws_ref_model.tflite").read_bytes()
    rng = np.random.default_rng(0)
    data = {"truncated": good[:len(good) // 3], "random": rng.bytes(5000), "text": b"hello world\n" * 10,
            "empty": b"", "header_only": good[:64]}[damage]
    path = tmp_path / "bad.tflite"
    path.write_bytes(data)
    with pytest.raises(UserError) as err:
        profile_tflite(path)
    assert "\n" not in str(err.value) and "bad.tflite" in str(err.value)


def test_damaged_onnx_is_a_user_error(tmp_path):
    for i, data in enumerate([b"\x00\xff garbage \x13\x37" * 50, b"", b"not a model at all"]):
        path = tmp_path / f"bad{i}.onnx"
        path.write_bytes(data)
        with pytest.raises(UserError) as err:
            profile_onnx(path)
        assert "\n" not in str(err.value) and path.name in str(err.value)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        profile_path(tmp_path / "nope.tflite")
    assert measure_arena(tmp_path / "nope.tflite")[0] is None


@needs_mlperf
def test_truncated_model_does_not_kill_arena_probe(tmp_path):
    path = tmp_path / "half.tflite"
    path.write_bytes((MLPERF / "kws_ref_model.tflite").read_bytes()[:20000])
    arena, note = measure_arena(path)
    assert arena is None and note and "\n" not in note


# ---------------------------------------------------------------------------- more layer kinds and formats
def test_layer_zoo_keras_matches_tflite(models_dir):
    """Strided, dilated (SPACE_TO_BATCH in .tflite), grouped, separable, transposed and 1-D convs and a
    Dense on 3-D input: Keras and .tflite MACs agree (the batch -1 model needs runtime shapes)."""
    import keras
    from keras import layers

    from edgeopt.convert import keras_to_tflite

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 4))
    y = layers.Conv2D(8, 3, strides=2, padding="same")(x)
    y = layers.Conv2D(8, 3, dilation_rate=2, padding="same", groups=2)(y)
    y = layers.SeparableConv2D(12, 3, padding="same")(y)
    y = layers.Conv2DTranspose(6, 3, strides=2, padding="same")(y)
    y = layers.Reshape((256, 6))(y)
    y = layers.Conv1D(5, 3, padding="same")(y)
    y = layers.Dense(7)(y)
    out = layers.Dense(3)(layers.GlobalAveragePooling1D()(y))
    model = keras.Model(x, out)
    path = models_dir / "layer_zoo.tflite"
    path.write_bytes(keras_to_tflite(model))
    k, t = profile_keras(model), profile_tflite(path, measure_arena=False)
    by_hand = (8 * 8 * 8 * 9 * 4  # strided: output x 3x3 x 4 input channels
               + 8 * 8 * 8 * 9 * 4  # grouped: 8 input channels / 2 groups
               + 8 * 8 * 8 * 9 + 8 * 8 * 12 * 8  # separable: depthwise + pointwise
               + 8 * 8 * 12 * 9 * 6  # transposed: every input element x 3x3 x 6 outputs
               + 256 * 5 * 3 * 6  # conv1d
               + 256 * 5 * 7 + 7 * 3)  # dense on 256 rows, final dense
    assert k.total_macs == by_hand
    assert t.total_macs == by_hand
    assert "TRANSPOSE_CONV" in {o.op_type for o in t.ops}


def test_int4_and_sparse_weights(models_dir, digits_cnn_tflite):
    import keras
    from ai_edge_quantizer import quantizer, recipe
    from keras import layers

    from edgeopt.convert import keras_to_tflite

    qt = quantizer.Quantizer(str(digits_cnn_tflite))
    qt.load_quantization_recipe(recipe.weight_only_wi4_afp32())
    int4 = models_dir / "digits_int4.tflite"
    int4.write_bytes(qt.quantize().quantized_model)
    p4, p32 = profile_tflite(int4), profile_tflite(digits_cnn_tflite, measure_arena=False)
    assert p4.precision == "int4" and p4.total_macs == p32.total_macs
    packed = [t for t in p4.tensors if t.is_constant and t.dtype == "int4"]
    assert packed and all(t.bytes == (int(np.prod(t.shape)) + 1) // 2 for t in packed)  # two per byte
    assert p4.arena_bytes is None and p4.arena_note  # TFLM has no int4 DEQUANTIZE

    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), layers.Dense(256, activation="relu"), layers.Dense(10)])
    for layer in model.layers:
        w, b = layer.get_weights()
        w[np.abs(w) < np.quantile(np.abs(w), 0.8)] = 0
        layer.set_weights([w, b + 0.1])  # a zero bias would be dropped by the converter
    sparse = models_dir / "sparse.tflite"
    sparse.write_bytes(keras_to_tflite(model, optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY]))
    p = profile_tflite(sparse, measure_arena=False)
    assert p.total_macs == 64 * 256 + 256 * 10  # MACs of the dense computation
    stored = [t for t in p.tensors if "sparse" in t.quantization]
    assert stored and all(t.bytes < 0.5 * 4 * np.prod(t.shape) for t in stored)  # only non-zeros stored
    fc = [o for o in p.ops if o.op_type == "FULLY_CONNECTED"]
    assert [o.params for o in fc] == [64 * 256 + 256, 256 * 10 + 10]  # traced through DENSIFY


def test_several_subgraphs_profile_main_and_note_others(tmp_path):
    import tensorflow as tf

    from edgeopt.convert import quiet_fds

    class Loop(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
        def f(self, x):
            w = tf.constant(np.ones((8, 8), np.float32))
            _, y = tf.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, tf.matmul(x, w)), [0, x])
            return tf.matmul(y, w)

    module = Loop()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.f.get_concrete_function()], module)
    with quiet_fds():
        data = converter.convert()
    path = tmp_path / "loop.tflite"
    path.write_bytes(data)
    p = profile_tflite(path, measure_arena=False)
    assert p.total_macs == 64  # the matmul after the loop; the loop body is another subgraph
    loop = next(o for o in p.ops if o.op_type == "WHILE")
    assert "while_body" in loop.name
    assert any("2 more subgraph(s)" in n for n in p.notes)


def test_onnx_quantized_qdq(models_dir, digits_cnn_path, digits):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from edgeopt.model_io import load_keras

    model = load_keras(digits_cnn_path)
    model(np.zeros((1, 8, 8, 1), np.float32))
    src = models_dir / "digits_cnn_q.onnx"
    model.export(str(src), format="onnx", verbose=False)
    reference = profile_onnx(src)
    calib = digits.calibration(16, seed=0)

    class Reader(CalibrationDataReader):
        def __init__(self, input_name):
            self.it = iter([{input_name: x[None]} for x in calib])

        def get_next(self):
            return next(self.it, None)

    import onnx
    input_name = onnx.load(str(src)).graph.input[0].name
    qdq = models_dir / "digits_cnn_qdq.onnx"
    quantize_static(str(src), str(qdq), Reader(input_name), quant_format=QuantFormat.QDQ, per_channel=True)
    q = profile_onnx(qdq)
    assert q.precision == "int8" and q.total_macs == reference.total_macs
    conv = next(o for o in q.ops if o.op_type == "CONV_2D")
    assert conv.dtype == "int8" and conv.quantization == "per-channel int8" and "int8" in conv.weight_bytes


def test_keras_nested_model_einsum_and_unbuilt():
    import keras
    from keras import layers

    from edgeopt.zoo import small_cnn

    inner = small_cnn((8, 8, 1), 10, 8)
    x = keras.Input((8, 8, 1))
    out = layers.EinsumDense("ab,bc->ac", output_shape=5)(inner(x))
    model = keras.Model(x, out)
    p = profile_keras(model)
    assert [o.op_type for o in p.ops] == ["MODEL", "FULLY_CONNECTED"]
    assert p.total_macs == profile_keras(inner).total_macs + 10 * 5
    assert p.total_params == model.count_params()
    with pytest.raises(UserError, match="no graph yet"):
        profile_keras(keras.Sequential([layers.Dense(3)]))
