"""A corpus of small generated Keras 3 models of the kinds people bring to edge conversion.

Each entry builds in about a second: ``build(name)`` returns ``(model, x, task)``: the model
(random weights, fixed seed), a small input sample ``x`` (an array, or a dict keyed by input
name for several inputs) and a ``Task`` describing the outputs with matching labels ``y``.
Tests iterate over ``CORPUS`` (names -> ``Entry``) and select by ``tags``:

- ``single``: one input and one output (the conversion tests compare every output with Keras)
- ``multi_input`` / ``multi_output``
- ``tflm``: the int8 model must run in TensorFlow Lite Micro (RNNs, Conv1D)
- ``varlen``: an open (None) axis, converted with the data's length
- ``nested``: contains a model used as a layer
- ``blocker``: cannot convert to TFLite builtins; ``Entry.blocker`` is the op the error must name
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np

SAMPLES = 16  # rows of input data per model: enough to calibrate and compare, cheap to run


@dataclass
class Task:
    """What the outputs mean: ``kind`` is classification | binary | binary_logit | multilabel |
    regression (one per output for several outputs), with labels ``y`` for ``x``."""

    kind: str | list[str]
    y: Any  # array, or dict output name -> array
    classes: int = 0


@dataclass
class Entry:
    name: str
    builder: Callable[[np.random.Generator], tuple[Any, Any, Task]]
    tags: tuple[str, ...] = ()
    blocker: str | None = None  # for "blocker" models: the op named in the UserError


CORPUS: dict[str, Entry] = {}


def entry(*tags: str, blocker: str | None = None):
    def deco(fn):
        CORPUS[fn.__name__] = Entry(fn.__name__, fn, tuple(tags), blocker)
        return fn
    return deco


def build(name: str):
    """(model, x, task) for corpus entry ``name``, deterministic."""
    import keras

    keras.utils.set_random_seed(0)
    return CORPUS[name].builder(np.random.default_rng(0))


def names(*tags: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Corpus names carrying every tag in ``tags`` and none in ``exclude``."""
    return [n for n, e in CORPUS.items() if set(tags) <= set(e.tags) and not set(exclude) & set(e.tags)]


# ---------------------------------------------------------------- running in TFLite Micro

_TFLM_CHILD = """
import sys, numpy as np
from tflite_micro import runtime
interp = runtime.Interpreter.from_file(sys.argv[1], arena_size=1 << 22)
x = np.load(sys.argv[2])
out = []
for i in range(len(x)):
    interp.reset()
    interp.set_input(x[i:i + 1], 0)
    interp.invoke()
    out.append(np.asarray(interp.get_output(0), np.float32))
np.save(sys.argv[3], np.concatenate(out))
"""


def tflm_outputs(path, x: np.ndarray, tmp_path) -> np.ndarray:
    """Outputs of a float-I/O .tflite in the TFLite Micro host interpreter (a generous 4 MiB arena),
    in a child process so an abort inside TFLM fails the test instead of killing pytest."""
    import subprocess
    import sys

    np.save(tmp_path / "x.npy", np.asarray(x, np.float32))
    proc = subprocess.run([sys.executable, "-c", _TFLM_CHILD, str(path), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"TFLite Micro failed (exit {proc.returncode}): {proc.stderr[-600:]}"
    return np.load(tmp_path / "y.npy")


# ---------------------------------------------------------------- helpers

def _k():
    import keras
    return keras


def _x(rng, *shape) -> np.ndarray:
    return rng.normal(0, 1, (SAMPLES,) + shape).astype("float32")


def _cls(rng, n: int) -> Task:
    return Task("classification", rng.integers(0, n, SAMPLES), n)


def _seq(inp, *layers, name):
    k = _k()
    return k.Sequential([k.Input(inp)] + list(layers), name=name)


def _head(n: int = 3):
    return _k().layers.Dense(n, activation="softmax")


# ---------------------------------------------------------------- dense / tasks

@entry("single")
def mlp_softmax(rng):
    L = _k().layers
    return _seq((10,), L.Dense(16, activation="relu"), _head(4), name="mlp_softmax"), _x(rng, 10), _cls(rng, 4)


@entry("single")
def regression_one(rng):
    L = _k().layers
    m = _seq((6,), L.Dense(8, activation="relu"), L.Dense(1), name="regression_one")
    return m, _x(rng, 6), Task("regression", rng.normal(size=(SAMPLES, 1)).astype("float32"))


@entry("single")
def regression_three(rng):
    L = _k().layers
    m = _seq((6,), L.Dense(8, activation="tanh"), L.Dense(3), name="regression_three")
    return m, _x(rng, 6), Task("regression", rng.normal(size=(SAMPLES, 3)).astype("float32"))


@entry("single")
def binary_sigmoid(rng):
    L = _k().layers
    m = _seq((8,), L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid"), name="binary_sigmoid")
    return m, _x(rng, 8), Task("binary", rng.integers(0, 2, SAMPLES), 2)


@entry("single")
def binary_logit(rng):
    L = _k().layers
    m = _seq((8,), L.Dense(8, activation="relu"), L.Dense(1), name="binary_logit")
    return m, _x(rng, 8), Task("binary_logit", rng.integers(0, 2, SAMPLES), 2)


@entry("single")
def multilabel_sigmoid(rng):
    L = _k().layers
    m = _seq((8,), L.Dense(12, activation="relu"), L.Dense(5, activation="sigmoid"), name="multilabel_sigmoid")
    return m, _x(rng, 8), Task("multilabel", rng.integers(0, 2, (SAMPLES, 5)), 5)


@entry("single")
def dense_rank3(rng):
    L = _k().layers
    m = _seq((6, 5), L.Dense(8, activation="relu"), L.Flatten(), _head(), name="dense_rank3")
    return m, _x(rng, 6, 5), _cls(rng, 3)


@entry("single")
def layernorm_gelu_mlp(rng):
    L = _k().layers
    m = _seq((12,), L.Dense(16), L.LayerNormalization(), L.Activation("gelu"), L.Dropout(0.1), _head(),
             name="layernorm_gelu_mlp")
    return m, _x(rng, 12), _cls(rng, 3)


@entry("single")
def leaky_prelu_hardswish(rng):
    L = _k().layers
    m = _seq((10,), L.Dense(8), L.LeakyReLU(0.1), L.Dense(8), L.PReLU(), L.Dense(8),
             L.Activation("hard_swish"), _head(), name="leaky_prelu_hardswish")
    return m, _x(rng, 10), _cls(rng, 3)


@entry("single")
def normalization_inside(rng):
    L = _k().layers
    x = _x(rng, 6) * 5 + 3
    norm = L.Normalization()
    norm.adapt(x)
    m = _seq((6,), norm, L.Dense(8, activation="relu"), _head(), name="normalization_inside")
    return m, x, _cls(rng, 3)


@entry("single", "tflm")
def timedistributed_dense(rng):
    L = _k().layers
    m = _seq((5, 4), L.TimeDistributed(L.Dense(6, activation="relu")), L.GlobalAveragePooling1D(), _head(),
             name="timedistributed_dense")
    return m, _x(rng, 5, 4), _cls(rng, 3)


# ---------------------------------------------------------------- Conv1D

@entry("single", "tflm")
def conv1d_basic(rng):
    L = _k().layers
    m = _seq((24, 3), L.Conv1D(8, 3, activation="relu"), L.MaxPooling1D(2), L.Conv1D(8, 3, activation="relu"),
             L.GlobalAveragePooling1D(), _head(), name="conv1d_basic")
    return m, _x(rng, 24, 3), _cls(rng, 3)


@entry("single", "tflm")
def conv1d_dilated(rng):
    L = _k().layers
    m = _seq((32, 2), L.Conv1D(6, 3, dilation_rate=2, activation="relu"),
             L.Conv1D(6, 3, dilation_rate=4, activation="relu"), L.GlobalMaxPooling1D(), _head(),
             name="conv1d_dilated")
    return m, _x(rng, 32, 2), _cls(rng, 3)


@entry("single", "tflm")
def tcn_causal(rng):
    k = _k()
    L = k.layers
    inp = k.Input((32, 2))
    h = inp
    for d in (1, 2, 4):
        r = L.Conv1D(8, 3, padding="causal", dilation_rate=d, activation="relu")(h)
        h = L.Add()([r, L.Conv1D(8, 1)(h)]) if d == 1 else L.Add()([r, h])
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling1D()(h))
    return k.Model(inp, out, name="tcn_causal"), _x(rng, 32, 2), _cls(rng, 3)


@entry("single", "tflm")
def conv1d_strided_same(rng):
    L = _k().layers
    m = _seq((40, 1), L.Conv1D(4, 5, strides=2, padding="same", activation="relu"), L.BatchNormalization(),
             L.AveragePooling1D(2), L.Flatten(), _head(), name="conv1d_strided_same")
    return m, _x(rng, 40, 1), _cls(rng, 3)


@entry("single", "tflm")
def separable_conv1d(rng):
    L = _k().layers
    m = _seq((24, 4), L.SeparableConv1D(8, 3, activation="relu"), L.GlobalAveragePooling1D(), _head(),
             name="separable_conv1d")
    return m, _x(rng, 24, 4), _cls(rng, 3)


# ---------------------------------------------------------------- Conv2D

@entry("single")
def conv2d_cnn(rng):
    L = _k().layers
    m = _seq((12, 12, 1), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(2), L.Conv2D(8, 3, activation="relu"),
             L.Flatten(), _head(), name="conv2d_cnn")
    return m, _x(rng, 12, 12, 1), _cls(rng, 3)


@entry("single")
def conv2d_bn_relu(rng):
    L = _k().layers
    m = _seq((10, 10, 3), L.Conv2D(8, 3, use_bias=False), L.BatchNormalization(), L.ReLU(),
             L.GlobalAveragePooling2D(), _head(), name="conv2d_bn_relu")
    return m, _x(rng, 10, 10, 3), _cls(rng, 3)


@entry("single")
def depthwise_conv2d(rng):
    L = _k().layers
    m = _seq((10, 10, 4), L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu6"), L.Conv2D(8, 1),
             L.GlobalAveragePooling2D(), _head(), name="depthwise_conv2d")
    return m, _x(rng, 10, 10, 4), _cls(rng, 3)


@entry("single")
def separable_conv2d(rng):
    L = _k().layers
    m = _seq((10, 10, 3), L.SeparableConv2D(8, 3, activation="relu"), L.GlobalAveragePooling2D(), _head(),
             name="separable_conv2d")
    return m, _x(rng, 10, 10, 3), _cls(rng, 3)


@entry("single")
def grouped_conv2d(rng):
    L = _k().layers
    m = _seq((8, 8, 4), L.Conv2D(8, 3, groups=2, activation="relu"), L.GlobalAveragePooling2D(), _head(),
             name="grouped_conv2d")
    return m, _x(rng, 8, 8, 4), _cls(rng, 3)


@entry("single")
def residual_block(rng):
    k = _k()
    L = k.layers
    inp = k.Input((8, 8, 4))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = L.Conv2D(4, 3, padding="same")(h)
    h = L.ReLU()(L.Add()([h, inp]))
    out = _head()(L.GlobalAveragePooling2D()(h))
    return k.Model(inp, out, name="residual_block"), _x(rng, 8, 8, 4), _cls(rng, 3)


@entry("single")
def inception_concat(rng):
    k = _k()
    L = k.layers
    inp = k.Input((8, 8, 3))
    a = L.Conv2D(4, 1, activation="relu")(inp)
    b = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    c = L.MaxPooling2D(3, strides=1, padding="same")(inp)
    h = L.Concatenate()([a, b, c])
    out = _head()(L.GlobalAveragePooling2D()(h))
    return k.Model(inp, out, name="inception_concat"), _x(rng, 8, 8, 3), _cls(rng, 3)


@entry("single")
def squeeze_excite(rng):
    k = _k()
    L = k.layers
    inp = k.Input((8, 8, 8))
    s = L.GlobalAveragePooling2D(keepdims=True)(inp)
    s = L.Conv2D(2, 1, activation="relu")(s)
    s = L.Conv2D(8, 1, activation="sigmoid")(s)
    h = L.Multiply()([inp, s])
    out = _head()(L.GlobalAveragePooling2D()(h))
    return k.Model(inp, out, name="squeeze_excite"), _x(rng, 8, 8, 8), _cls(rng, 3)


@entry("single")
def padding_cropping(rng):
    L = _k().layers
    m = _seq((8, 8, 2), L.ZeroPadding2D(1), L.Conv2D(4, 3), L.Cropping2D(1), L.Flatten(), _head(),
             name="padding_cropping")
    return m, _x(rng, 8, 8, 2), _cls(rng, 3)


@entry("single")
def conv2d_transpose_segmenter(rng):
    L = _k().layers
    m = _seq((8, 8, 1), L.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
             L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu"), L.Conv2D(2, 1, activation="softmax"),
             name="conv2d_transpose_segmenter")
    return m, _x(rng, 8, 8, 1), Task("classification", rng.integers(0, 2, (SAMPLES, 8, 8)), 2)


@entry("single")
def upsampling2d(rng):
    L = _k().layers
    m = _seq((6, 6, 2), L.Conv2D(4, 3, padding="same"), L.UpSampling2D(2), L.Conv2D(2, 3), L.Flatten(), _head(),
             name="upsampling2d")
    return m, _x(rng, 6, 6, 2), _cls(rng, 3)


@entry("single")
def resizing_rescaling(rng):
    L = _k().layers
    m = _seq((16, 16, 3), L.Resizing(8, 8), L.Rescaling(1 / 127.5, offset=-1), L.Conv2D(4, 3, activation="relu"),
             L.GlobalAveragePooling2D(), _head(), name="resizing_rescaling")
    x = rng.integers(0, 256, (SAMPLES, 16, 16, 3)).astype("float32")
    return m, x, _cls(rng, 3)


# ---------------------------------------------------------------- RNNs

@entry("single", "tflm")
def lstm(rng):
    L = _k().layers
    return _seq((12, 4), L.LSTM(8), _head(), name="lstm"), _x(rng, 12, 4), _cls(rng, 3)


@entry("single", "tflm")
def lstm_stacked(rng):
    L = _k().layers
    m = _seq((10, 3), L.LSTM(6, return_sequences=True), L.LSTM(6), _head(), name="lstm_stacked")
    return m, _x(rng, 10, 3), _cls(rng, 3)


@entry("single", "tflm")
def gru(rng):
    L = _k().layers
    return _seq((12, 4), L.GRU(8), _head(), name="gru"), _x(rng, 12, 4), _cls(rng, 3)


@entry("single", "tflm")
def simple_rnn(rng):
    L = _k().layers
    return _seq((12, 4), L.SimpleRNN(8), _head(), name="simple_rnn"), _x(rng, 12, 4), _cls(rng, 3)


@entry("single", "tflm")
def bidirectional_lstm(rng):
    L = _k().layers
    m = _seq((10, 4), L.Bidirectional(L.LSTM(6)), _head(), name="bidirectional_lstm")
    return m, _x(rng, 10, 4), _cls(rng, 3)


@entry("single", "tflm")
def bidirectional_gru_sequences(rng):
    L = _k().layers
    m = _seq((10, 4), L.Bidirectional(L.GRU(4, return_sequences=True)), L.GlobalAveragePooling1D(), _head(),
             name="bidirectional_gru_sequences")
    return m, _x(rng, 10, 4), _cls(rng, 3)


@entry("single", "tflm")
def crnn_conv1d_gru(rng):
    L = _k().layers
    m = _seq((24, 3), L.Conv1D(8, 3, strides=2, activation="relu"), L.GRU(8), L.Dense(1),
             name="crnn_conv1d_gru")
    return m, _x(rng, 24, 3), Task("regression", rng.normal(size=(SAMPLES, 1)).astype("float32"))


# ---------------------------------------------------------------- attention

@entry("single")
def attention_block(rng):
    k = _k()
    L = k.layers
    inp = k.Input((8, 16))
    a = L.MultiHeadAttention(num_heads=2, key_dim=8)(inp, inp)
    h = L.LayerNormalization()(L.Add()([inp, a]))
    f = L.Dense(16)(L.Dense(32, activation="gelu")(h))
    h = L.LayerNormalization()(L.Add()([h, f]))
    out = _head()(L.GlobalAveragePooling1D()(h))
    return k.Model(inp, out, name="attention_block"), _x(rng, 8, 16), _cls(rng, 3)


@entry("single")
def embedding_text(rng):
    k = _k()
    L = k.layers
    m = k.Sequential([k.Input((12,), dtype="int32"), L.Embedding(50, 8), L.GlobalAveragePooling1D(), _head(2)],
                     name="embedding_text")
    x = rng.integers(0, 50, (SAMPLES, 12)).astype("int32")
    return m, x, _cls(rng, 2)


# ---------------------------------------------------------------- variable length (None axis)

@entry("single", "varlen")
def varlen_dense(rng):
    L = _k().layers
    m = _seq((None, 4), L.Dense(16, activation="relu"), L.GlobalAveragePooling1D(), _head(2), name="varlen_dense")
    return m, _x(rng, 16, 4), _cls(rng, 2)


@entry("single", "varlen", "tflm")
def varlen_conv1d(rng):
    L = _k().layers
    m = _seq((None, 3), L.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu"),
             L.GlobalMaxPooling1D(), _head(2), name="varlen_conv1d")
    return m, _x(rng, 20, 3), _cls(rng, 2)


@entry("single", "varlen", "tflm")
def varlen_lstm(rng):
    L = _k().layers
    m = _seq((None, 3), L.LSTM(6), _head(2), name="varlen_lstm")
    return m, _x(rng, 14, 3), _cls(rng, 2)


@entry("single", "varlen")
def varlen_image(rng):
    L = _k().layers
    m = _seq((None, None, 3), L.Conv2D(4, 3, activation="relu"), L.GlobalAveragePooling2D(), _head(),
             name="varlen_image")
    return m, _x(rng, 12, 12, 3), _cls(rng, 3)


# ---------------------------------------------------------------- nested models

@entry("single", "nested")
def nested_sequential_base(rng):
    k = _k()
    L = k.layers
    base = k.Sequential([k.Input((10, 10, 3)), L.Conv2D(4, 3, activation="relu", name="dense"),
                         L.GlobalAveragePooling2D()], name="base")
    base.trainable = False
    inp = k.Input((10, 10, 3))
    out = L.Dense(3, activation="softmax", name="dense")(base(inp, training=False))  # a name clash on purpose
    return k.Model(inp, out, name="nested_sequential_base"), _x(rng, 10, 10, 3), _cls(rng, 3)


@entry("single", "nested")
def nested_functional_twice(rng):
    k = _k()
    L = k.layers
    i = k.Input((8,))
    block = k.Model(i, L.Dense(8, activation="relu")(L.Dense(8, activation="relu")(i)), name="block")
    inp = k.Input((8,))
    out = _head()(block(block(inp)))  # one nested model called twice: shared weights
    return k.Model(inp, out, name="nested_functional_twice"), _x(rng, 8), _cls(rng, 3)


@entry("single", "nested")
def nested_mobilenet_v2(rng):
    k = _k()
    base = k.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3), include_top=False)
    inp = k.Input((32, 32, 3))
    h = k.layers.GlobalAveragePooling2D()(base(inp, training=False))
    out = k.layers.Dense(4, activation="softmax")(h)
    return k.Model(inp, out, name="nested_mobilenet_v2"), _x(rng, 32, 32, 3), _cls(rng, 4)


# ---------------------------------------------------------------- several inputs / outputs

@entry("multi_input")
def two_inputs_image_vector(rng):
    k = _k()
    L = k.layers
    img = k.Input((8, 8, 1), name="image")
    vec = k.Input((4,), name="vector")
    h = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu")(img))
    h = L.Concatenate()([h, L.Dense(4, activation="relu")(vec)])
    out = _head()(h)
    x = {"image": _x(rng, 8, 8, 1), "vector": _x(rng, 4)}
    return k.Model([img, vec], out, name="two_inputs_image_vector"), x, _cls(rng, 3)


@entry("multi_output")
def two_outputs_class_and_value(rng):
    k = _k()
    L = k.layers
    inp = k.Input((10,))
    h = L.Dense(12, activation="relu")(inp)
    cls = L.Dense(3, activation="softmax", name="label")(h)
    val = L.Dense(1, name="value")(h)
    task = Task(["classification", "regression"], {"label": rng.integers(0, 3, SAMPLES),
                                                    "value": rng.normal(size=(SAMPLES, 1)).astype("float32")}, 3)
    return k.Model(inp, [cls, val], name="two_outputs_class_and_value"), _x(rng, 10), task


@entry("multi_input", "multi_output")
def two_in_two_out(rng):
    k = _k()
    L = k.layers
    a = k.Input((6,), name="a")
    b = k.Input((5, 3), name="b")
    h = L.Concatenate()([L.Dense(6, activation="relu")(a), L.Flatten()(L.Conv1D(2, 2)(b))])
    out1 = L.Dense(1, activation="sigmoid", name="flag")(h)
    out2 = L.Dense(2, name="pos")(h)
    task = Task(["binary", "regression"], {"flag": rng.integers(0, 2, SAMPLES),
                                            "pos": rng.normal(size=(SAMPLES, 2)).astype("float32")}, 2)
    return k.Model([a, b], [out1, out2], name="two_in_two_out"), {"a": _x(rng, 6), "b": _x(rng, 5, 3)}, task


# ---------------------------------------------------------------- cannot convert

@entry("single", "blocker", blocker="Erfinv")
def erfinv_layer(rng):
    k = _k()

    class Probit(k.layers.Layer):  # the probit link: erfinv has no TFLite kernel
        def call(self, x):
            return k.ops.erfinv(k.ops.tanh(x) * 0.99)

    m = _seq((6,), k.layers.Dense(6), Probit(name="probit"), _head(), name="erfinv_layer")
    return m, _x(rng, 6), _cls(rng, 3)
