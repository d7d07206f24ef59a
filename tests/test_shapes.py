"""Static input shapes, nested-model flattening, numerics checks and QAT BatchNorm folding for
Sequential models reloaded from .keras."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.errors import UserError


def _seq(shape, *layers, name="m"):
    import keras

    return keras.Sequential([keras.Input(shape)] + list(layers), name=name)


# ---------------------------------------------------------------- static shapes

def test_static_shapes_fix_batch_and_open_axes():
    import keras

    from edgeopt.convert import conversion_shape, static_input_shapes

    m = _seq((None, 4), keras.layers.Dense(3))
    assert static_input_shapes(m, (16, 4)) == {m.inputs[0]._keras_history.operation.name: (1, 16, 4)}
    assert list(static_input_shapes(_seq((5, 4), keras.layers.Dense(3))).values()) == [(1, 5, 4)]
    assert conversion_shape(m, None, (16, 4)) == (16, 4)
    assert conversion_shape(_seq((5, 4), keras.layers.Dense(3)), None, (16, 4)) is None  # fixed model wins
    with pytest.raises(UserError, match="open axis"):
        static_input_shapes(m)
    with pytest.raises(UserError, match="axis 2 must be 4"):
        static_input_shapes(m, (16, 5))
    with pytest.raises(UserError, match="has 2 axes"):
        static_input_shapes(m, (1, 16, 4))


def test_loaded_model_names_its_open_axes(tmp_path):
    import keras

    from edgeopt.model_io import load_model

    _seq((None, 4), keras.layers.Dense(2)).save(tmp_path / "m.keras")
    assert load_model(tmp_path / "m.keras").open_axes == [1]


def test_parse_input_shape():
    from edgeopt.convert import parse_input_shape

    assert parse_input_shape("16,4") == (16, 4)
    assert parse_input_shape("96x96x3") == (96, 96, 3)
    assert parse_input_shape("image:8,8,1; vector:4") == {"image": (8, 8, 1), "vector": (4,)}
    assert parse_input_shape("5;3") == [(5,), (3,)]
    for bad in ("", "a,b", "0,4", "image:8;4"):
        with pytest.raises(UserError, match="input-shape"):
            parse_input_shape(bad)


def test_static_shapes_for_two_inputs_by_name_or_order():
    import keras

    from edgeopt.convert import static_input_shapes

    a, b = keras.Input((None,), name="a"), keras.Input((3,), name="b")
    m = keras.Model([a, b], keras.layers.Concatenate()([a, b]))
    assert list(static_input_shapes(m, {"a": (5,), "b": (3,)}).values()) == [(1, 5), (1, 3)]
    assert list(static_input_shapes(m, [(7,), (3,)]).values()) == [(1, 7), (1, 3)]
    with pytest.raises(UserError, match="inputs are a, b"):
        static_input_shapes(m, {"c": (5,)})
    with pytest.raises(UserError, match="2 inputs"):
        static_input_shapes(m, (5,))


def test_dense_on_rank3_has_no_shape_ops_and_lstm_converts_without_loop():
    import keras

    from edgeopt.convert import SHAPE_OPS, keras_to_tflite, tflite_op_types

    dense = tflite_op_types(keras_to_tflite(_seq((6, 4), keras.layers.Dense(3))))
    assert dense == ["FULLY_CONNECTED"]
    lstm = _seq((5, 2), keras.layers.LSTM(3))
    ops = tflite_op_types(keras_to_tflite(lstm))
    assert not set(ops) & (set(SHAPE_OPS) | {"WHILE"})
    assert lstm.layers[0].unroll is False  # restored after tracing


# ---------------------------------------------------------------- nested models

@pytest.mark.slow
def test_flatten_mobilenet_base_with_new_head():
    import keras

    from edgeopt.keras_graph import flatten, nested_models

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3), include_top=False)
    inp = keras.Input((96, 96, 3))
    out = keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling2D()(base(inp)))
    model = keras.Model(inp, out, name="transfer")
    flat = flatten(model)
    assert nested_models(model) == [base.name] and nested_models(flat) == []
    assert len(flat.layers) == len(base.layers) + 2  # inner layers + pooling + dense (one input)
    x = np.random.default_rng(0).normal(size=(2, 96, 96, 3)).astype("float32")
    assert np.abs(flat(x, training=False).numpy() - model(x, training=False).numpy()).max() < 1e-5


def test_flatten_keeps_shared_nested_model_shared_and_renames_clashes():
    import keras

    from edgeopt.keras_graph import flatten

    i = keras.Input((4,))
    block = keras.Model(i, keras.layers.Dense(4, name="dense")(i), name="block")
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2, name="dense")(block(block(inp))))
    flat = flatten(model)
    names = [lyr.name for lyr in flat.layers]
    assert len(names) == len(set(names)) == 3  # input, one shared inner dense, the outer dense
    x = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(flat(x).numpy(), model(x).numpy(), atol=1e-6)
    assert flatten(flat) is flat  # nothing nested: unchanged


def test_flatten_refuses_subclassed_models():
    import keras

    from edgeopt.keras_graph import flatten

    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(UserError, match="subclassed"):
        flatten(Net())


# ---------------------------------------------------------------- numerics

def _overflowing_mlp():
    import keras

    rng = np.random.default_rng(10)
    m = _seq((6,), keras.layers.Dense(8, activation="relu", name="d1"),
             keras.layers.Dense(8, activation="relu", name="d2"), keras.layers.Dense(2, name="cls"))
    m.get_layer("d1").set_weights([rng.normal(0, 1, (6, 8)).astype("float32") * 1e17, np.zeros(8, "float32")])
    m.get_layer("d2").set_weights([rng.normal(0, 1, (8, 8)).astype("float32") * 1e17, np.zeros(8, "float32")])
    x = rng.normal(0, 1, (40, 6)).astype("float32")
    x[:10] *= 1e4
    return m, x


def test_check_finite_names_samples_and_first_layer():
    from edgeopt.numerics import check_finite

    m, x = _overflowing_mlp()
    bad = int((~np.isfinite(m.predict(x, verbose=0))).any(axis=1).sum())
    assert 0 < bad < 40
    with pytest.raises(UserError) as err:
        check_finite(m, x)
    assert f"NaN/inf on {bad} of 40 samples (first at layer d2)" in str(err.value)
    out = check_finite(m, x[10:])  # the well-scaled samples pass and the outputs come back
    assert out.shape == (30, 2) and np.isfinite(out).all()
    x[0, 0] = np.nan
    with pytest.raises(UserError, match="data contains NaN/inf in 1 of 40"):
        check_finite(m, x)


def test_explain_outliers_finds_the_stretched_range_and_measures_the_fix():
    import keras

    from edgeopt.convert import keras_to_tflite
    from edgeopt.numerics import explain_outliers

    keras.utils.set_random_seed(0)
    m = _seq((8,), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4), name="mlp")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (300, 8)).astype("float32")
    x[:3, 2] *= 1000  # 1% of the samples with one feature x1000
    report = explain_outliers(keras_to_tflite(m), x)
    assert report.found and report.ranges[0].widening > 10
    assert 1 <= report.ranges[0].outlier_samples <= 6
    snr = report.measured_snr_db
    assert set(snr) == {"minmax", "percentile 99.9", "percentile 99.99"}
    assert report.recommended["calibration"] == "percentile"
    assert snr[f"percentile {report.recommended['percentile']:g}"] == max(snr.values()) > snr["minmax"] + 3
    assert "percentile" in report.summary() and report.to_dict()["samples"] == 300
    clean = explain_outliers(keras_to_tflite(m), x[3:], verify=False)
    assert not clean.found and clean.recommended is None


# ---------------------------------------------------------------- QAT BatchNorm folding

@pytest.mark.slow
def test_qat_folds_batchnorm_in_reloaded_sequential(tmp_path):
    import keras
    import tensorflow as tf

    from edgeopt.convert import keras_to_tflite
    from edgeopt.model_io import load_keras
    from edgeopt.techniques.ptq import float_ops
    from edgeopt.techniques.qat import build_qat_model

    keras.utils.set_random_seed(0)
    seq = _seq((8, 8, 1), keras.layers.Conv2D(4, 3, use_bias=False), keras.layers.BatchNormalization(),
               keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(2), name="seq")
    seq.save(tmp_path / "seq.keras")
    reloaded = load_keras(tmp_path / "seq.keras")
    assert len(reloaded.layers[0]._inbound_nodes) > 1  # why the old check skipped it
    x = np.random.default_rng(0).normal(size=(32, 8, 8, 1)).astype("float32")
    qmodel, info = build_qat_model(reloaded, x)
    assert info["folded_batchnorm"] == [reloaded.layers[1].name]
    assert float_ops(keras_to_tflite(qmodel, optimizations=[tf.lite.Optimize.DEFAULT])) == []


def test_int8_fixes_measure_a_static_batch_model_with_a_flatten_head():
    """Deployables convert with batch 1; a Flatten's fixed-shape Reshape cannot take a resized
    batch, so the fixes' activation pass must run the model's own batch (it used to raise and the
    int8 step silently fell back to the converter default)."""
    import numpy as np

    from edgeopt.techniques.int8_fixes import choose_fixes
    from edgeopt.zoo import small_cnn

    x = np.random.default_rng(0).random((16, 12, 12, 1), dtype=np.float32)
    chosen = choose_fixes(small_cnn((12, 12, 1), 3, width=4, head="flatten"), x[:8], x, ["act_range"])
    assert chosen.fixes == ["act_range"] and chosen.records["act_range"]["tensors"] > 0
