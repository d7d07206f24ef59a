"""Quantization-aware training: learned ranges reach the .tflite exactly, conversion reproduces
the simulated accuracy, pruned zeros survive, bad models are refused."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import accuracy
from edgeopt.errors import UserError
from edgeopt.core.tflite import tflite_op_details
from edgeopt.steps import StepContext

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _ctx(ds, work_dir, **options):
    return StepContext(dataset=ds, work_dir=work_dir, options={"epochs": 2, **options},
                       log=lambda msg: None)


@pytest.fixture(scope="module")
def qat_run(digits, digits_cnn_path, tmp_path_factory):
    """The digits CNN after QAT (2 epochs) and its full-int8 conversion."""
    from edgeopt.model_io import load_keras
    from edgeopt.techniques.qat import QAT, convert_qat_int8

    work = tmp_path_factory.mktemp("qat")
    ctx = _ctx(digits, work)
    step = QAT().run(ctx, load_keras(digits_cnn_path))
    conv = convert_qat_int8(step.model, ctx)
    return step, conv


def _tensor_roles(path):
    """(weight tensor details by producing-op index, activation tensor details) of a .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    weights, consts = [], set()
    for op in tflite_op_details(path):
        if op["op_name"] in WEIGHT_OPS:
            weights.append((op["op_name"], tensors[op["inputs"][1]], interp.get_tensor(op["inputs"][1])))
            consts.update(i for i in op["inputs"][1:] if i >= 0)
    acts = [t for i, t in tensors.items() if i not in consts and np.dtype(t["dtype"]) == np.int8
            and len(t["quantization_parameters"]["scales"])]
    return weights, acts


def test_step_is_registered_and_marks_model(qat_run):
    from edgeopt.steps import get_step

    step, conv = qat_run
    assert get_step("qat").kind == "keras"
    assert step.model._edgeopt_qat is True
    assert step.details["folded_batchnorm"] == ["bn0", "bn1"]
    assert set(step.details["quantized_layers"]) == {"conv0", "conv1", "conv2", "fc", "logits"}
    assert conv.details["float_ops"] == []  # every compute op is integer


def test_learned_activation_ranges_are_the_tflite_params(qat_run):
    from edgeopt.techniques.qat import learned_ranges, nudged_params

    step, conv = qat_run
    ranges = learned_ranges(step.model)
    assert len(ranges) == 7  # input, relu0, relu1, conv2, gap, fc, logits pre-softmax
    expected = {name: nudged_params(lo, hi) for name, (lo, hi) in ranges.items()}
    _, acts = _tensor_roles(conv.artifact)
    found = [(float(t["quantization_parameters"]["scales"][0]),
              int(t["quantization_parameters"]["zero_points"][0])) for t in acts]
    for name, (scale, zp) in expected.items():
        assert any(np.isclose(s, scale, rtol=1e-5) and z == zp for s, z in found), (name, scale, zp, found)
    # every int8 activation carries a learned range, except softmax's fixed 1/256 output
    allowed = list(expected.values()) + [(1 / 256, -128)]
    for s, z in found:
        assert any(np.isclose(s, es, rtol=1e-5) and z == ez for es, ez in allowed), (s, z)


def test_learned_weight_scales_are_the_tflite_params(qat_run):
    from edgeopt.techniques.qat import nudged_params

    step, conv = qat_run
    weights, _ = _tensor_roles(conv.artifact)
    by_channels = {}
    for op, t, _ in weights:
        by_channels.setdefault(op, []).append(t["quantization_parameters"]["scales"])
    for name in ("conv0", "conv1", "conv2", "fc", "logits"):
        layer = step.model.get_layer(name)
        k = np.asarray(layer.effective_kernel())
        if name.startswith("conv"):
            m = np.abs(k).reshape(-1, k.shape[-1]).max(axis=0)
            op = "CONV_2D"
        else:
            m = np.array([np.abs(k).max()])
            op = "FULLY_CONNECTED"
        want = np.array([nudged_params(-v, v, narrow_range=True)[0] for v in m])
        assert np.allclose(want, m / 127, rtol=1e-6)  # symmetric: scale = max|w| / 127, zp 0
        assert any(len(s) == len(want) and np.allclose(s, want, rtol=1e-5) for s in by_channels[op]), name


def test_converted_accuracy_equals_simulated(qat_run, digits):
    from edgeopt.runtimes.litert import LiteRT

    step, conv = qat_run
    simulated = accuracy(step.model.predict(digits.x_eval, verbose=0), digits.y_eval)
    converted = accuracy(LiteRT().load(conv.artifact).predict(digits.x_eval), digits.y_eval)
    assert conv.details["simulated_accuracy"] == pytest.approx(simulated, abs=1e-5)
    assert simulated > 0.85
    assert abs(converted - simulated) <= 0.002, (converted, simulated)


def test_int8_step_routes_qat_models_and_int8_io(qat_run, digits, tmp_path):
    from edgeopt.runtimes.litert import LiteRT
    from edgeopt.steps import get_step

    step, _ = qat_run
    res = get_step("int8").run(_ctx(digits, tmp_path, int8_io=True), step.model)
    assert res.details["method"] == "qat" and res.details["io"] == "int8"
    sess = LiteRT().load(res.artifact)
    assert sess.inputs[0].dtype == "int8" and sess.outputs[0].dtype == "int8"
    simulated = accuracy(step.model.predict(digits.x_eval, verbose=0), digits.y_eval)
    assert abs(accuracy(sess.predict(digits.x_eval), digits.y_eval) - simulated) <= 0.002


def test_qat_preserves_pruned_zeros(digits, digits_cnn_path, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgeopt.model_io import load_keras
    from edgeopt.techniques.qat import QAT, convert_qat_int8

    model = load_keras(digits_cnn_path)
    masks = {}
    for name in ("conv1", "fc"):
        k = np.asarray(model.get_layer(name).kernel)
        k[np.abs(k) < np.quantile(np.abs(k), 0.6)] = 0.0
        model.get_layer(name).kernel.assign(k)
        masks[name] = k == 0
    ctx = _ctx(digits, tmp_path, epochs=1)
    res = QAT().run(ctx, model)
    for name, mask in masks.items():
        k = np.asarray(res.model.get_layer(name).effective_kernel())
        assert np.array_equal(k == 0, mask), name  # BN folding scales channels; zeros stay zero
        assert res.details["quantized_layers"][name]["masked_zeros"] == int(mask.sum())
    assert res.details["sparsity"]["conv1"] == pytest.approx(mask_frac := masks["conv1"].mean(), abs=1e-4)
    assert mask_frac > 0.55
    # and in the int8 artifact: conv kernels are (out, kh, kw, in), dense kernels (out, in)
    path = convert_qat_int8(res.model, ctx).artifact
    interp = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    stored = {}
    for op in tflite_op_details(path):
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
            w = interp.get_tensor(op["inputs"][1])
            stored[tensors[op["inputs"][1]]["shape"].tobytes()] = w
    conv1 = stored[np.array([16, 3, 3, 8], dtype=np.int32).tobytes()]
    assert np.array_equal(np.transpose(conv1, (1, 2, 3, 0)) == 0, masks["conv1"])
    fc = stored[np.array([64, 16], dtype=np.int32).tobytes()]
    assert np.array_equal(fc.T == 0, masks["fc"])


def test_sequential_dense_model_converts_per_tensor(blobs, slide_mlp_path, tmp_path):
    from edgeopt.model_io import load_keras
    from edgeopt.runtimes.litert import LiteRT
    from edgeopt.techniques.qat import QAT, convert_qat_int8

    ctx = _ctx(blobs, tmp_path, epochs=1)
    res = QAT().run(ctx, load_keras(slide_mlp_path))
    assert {v["weights"] for v in res.details["quantized_layers"].values()} == {"per-tensor"}
    conv = convert_qat_int8(res.model, ctx)
    assert conv.details["float_ops"] == []
    converted = accuracy(LiteRT().load(conv.artifact).predict(blobs.x_eval), blobs.y_eval)
    assert abs(converted - conv.details["simulated_accuracy"]) <= 0.002


def test_qat_model_saves_and_loads(qat_run, digits, tmp_path):
    import keras

    import edgeopt.techniques.qat_layers  # noqa: F401  registers the layers
    from edgeopt.techniques.qat import QAT, is_qat_model

    step, _ = qat_run
    path = tmp_path / "qat.keras"
    step.model.save(path)
    again = keras.saving.load_model(path)
    assert is_qat_model(again) and not hasattr(again, "_edgeopt_qat")
    with pytest.raises(UserError, match="already quantization-aware"):
        QAT().run(_ctx(digits, tmp_path), again)
    np.testing.assert_allclose(again.predict(digits.x_eval[:32], verbose=0),
                               step.model.predict(digits.x_eval[:32], verbose=0), atol=1e-6)


def test_subclassed_model_is_refused(digits, tmp_path):
    import keras

    from edgeopt.techniques.qat import QAT

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat = keras.layers.Flatten()
            self.out = keras.layers.Dense(10, activation="softmax")

        def call(self, x):
            return self.out(self.flat(x))

    net = Net()
    net(digits.x_eval[:2])
    with pytest.raises(UserError, match="subclassed"):
        QAT().run(_ctx(digits, tmp_path), net)
