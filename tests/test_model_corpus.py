"""Every corpus model converts with static shapes to float32 and int8 .tflite made of builtin ops;
the float32 .tflite matches Keras; RNN and Conv1D int8 models run in TensorFlow Lite Micro; a
model that cannot convert gets one UserError naming the blocking op and layer."""
from __future__ import annotations

import numpy as np
import pytest

import model_corpus as mc
from edgeopt.errors import UserError

pytestmark = pytest.mark.slow

CONVERTIBLE = [n for n in mc.CORPUS if "blocker" not in mc.CORPUS[n].tags]


def _arrays(model, x) -> list[np.ndarray]:
    if isinstance(x, dict):
        return [x[t._keras_history.operation.name] for t in model.inputs]
    return [x]


def _sample_shape(model, x):
    return [a.shape[1:] for a in _arrays(model, x)]


def _litert(data: bytes, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs of a .tflite, one sample per invoke (batch fixed at 1); inputs and outputs matched
    to the Keras ones by shape (corpus models have distinct shapes per input and per output)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    ins, outs = interp.get_input_details(), interp.get_output_details()
    order = [next(d for d in ins if tuple(d["shape"][1:]) == a.shape[1:]) for a in arrays]
    rows: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(arrays[0])):
        for d, a in zip(order, arrays):
            interp.set_tensor(d["index"], a[i:i + 1].astype(d["dtype"]))
        interp.invoke()
        for k, d in enumerate(outs):
            rows[k].append(interp.get_tensor(d["index"]).astype(np.float64))
    return [np.concatenate(r) for r in rows]


def _keras(model, x) -> list[np.ndarray]:
    arrays = _arrays(model, x)
    out = model(arrays if len(arrays) > 1 else arrays[0], training=False)
    return [np.asarray(o, np.float64) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _match(expected: list[np.ndarray], got: list[np.ndarray]) -> list[np.ndarray]:
    return [next(g for g in got if g.shape == e.shape) for e in expected]


def _int8(model, x, shape):
    import tensorflow as tf

    from edgeopt.convert import keras_to_tflite

    arrays = _arrays(model, x)

    def representative():
        for i in range(len(arrays[0])):
            yield [a[i:i + 1] for a in arrays]

    return keras_to_tflite(model, input_shape=shape, optimizations=[tf.lite.Optimize.DEFAULT],
                           representative_dataset=representative)


@pytest.mark.parametrize("name", CONVERTIBLE)
def test_converts_static_builtin_and_matches_keras(name, tmp_path):
    from edgeopt.convert import SHAPE_OPS, keras_to_tflite, non_builtin_ops, static_input_shapes, tflite_op_types

    model, x, _ = mc.build(name)
    shapes = _sample_shape(model, x)
    shape = shapes[0] if len(shapes) == 1 else shapes
    fixed = static_input_shapes(model, shape)
    assert [s for s in fixed.values()] == [(1,) + tuple(s) for s in shapes]

    f32 = keras_to_tflite(model, input_shape=shape)
    ops = tflite_op_types(f32)
    assert non_builtin_ops(f32) == [], ops
    assert not set(ops) & set(SHAPE_OPS), f"dynamic-shape ops left: {ops}"
    assert "WHILE" not in ops  # RNNs are unrolled
    want = _keras(model, x)
    got = _match(want, _litert(f32, _arrays(model, x)))
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, atol=2e-4, rtol=1e-3)

    q = _int8(model, x, shape)
    assert non_builtin_ops(q) == [], tflite_op_types(q)
    assert all(np.isfinite(o).all() for o in _litert(q, _arrays(model, x)))
    if "tflm" in mc.CORPUS[name].tags:
        _check_tflm(q, _litert(q, _arrays(model, x)[:1])[0][:4], _arrays(model, x)[0][:4], tmp_path)


def _check_tflm(q: bytes, litert_out: np.ndarray, x: np.ndarray, tmp_path) -> None:
    """The int8 model runs in TFLite Micro and agrees with LiteRT."""
    path = tmp_path / "int8.tflite"
    path.write_bytes(q)
    out = mc.tflm_outputs(path, x, tmp_path)
    spread = float(litert_out.max() - litert_out.min()) or 1.0
    np.testing.assert_allclose(out, litert_out, atol=0.05 * spread + 1e-3)


@pytest.mark.parametrize("name", [n for n in mc.CORPUS if "blocker" in mc.CORPUS[n].tags])
def test_unconvertible_model_names_the_op_and_layer(name):
    from edgeopt.convert import keras_to_tflite

    model, x, _ = mc.build(name)
    with pytest.raises(UserError) as err:
        keras_to_tflite(model)
    text = str(err.value)
    assert mc.CORPUS[name].blocker in text and "probit" in text and "\n" not in text
    assert "neither a custom op nor a flex op" in err.value.full_text  # the converter's own words kept


@pytest.mark.parametrize("name", mc.names("varlen"))
def test_open_axis_needs_a_length(name):
    from edgeopt.convert import keras_to_tflite

    model, x, _ = mc.build(name)
    with pytest.raises(UserError, match="open axis"):
        keras_to_tflite(model)


def test_corpus_covers_the_kinds():
    assert len(mc.CORPUS) >= 40
    for tag in ("tflm", "varlen", "nested", "multi_input", "multi_output", "blocker"):
        assert mc.names(tag), tag
    kinds = set()
    for name in mc.names(exclude=("nested",)):
        kind = mc.build(name)[2].kind
        kinds.update([kind] if isinstance(kind, str) else kind)
    assert {"classification", "regression", "binary", "binary_logit", "multilabel"} <= kinds
