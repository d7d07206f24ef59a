"""Structured pruning: channel groups, rebuilt models with copied weights, targets, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import UserError
from edgeopt.steps import StepContext, get_step
from edgeopt.techniques.structured import (ChannelGraph, keras_macs, n_keep, param_count,
                                           prune_structured)


def _x(model, n=4, seed=0):
    return np.random.default_rng(seed).random((n,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)


def _out(model, x):
    return np.asarray(model(x, training=False))


def test_n_keep_math():
    assert n_keep(64, 0.5) == 32
    assert n_keep(10, 0.25) == 8  # 7.5 rounds up
    assert n_keep(8, 0.99, min_channels=4) == 4
    assert n_keep(3, 0.9, min_channels=4) == 3  # never more than there are
    assert n_keep(64, 0.6, round_to=8) == 32  # 25.6 -> 26 -> 32
    assert n_keep(1, 0.9) == 1


def test_small_cnn_loses_half_its_filters_and_still_runs():
    from edgeopt.zoo import small_cnn

    model = small_cnn((8, 8, 1), width=8)
    pruned, report = prune_structured(model, ratio=0.5)
    assert pruned.get_layer("conv0").filters == 4 and pruned.get_layer("conv1").filters == 8
    assert pruned.get_layer("fc").units == 32 and pruned.get_layer("logits").units == 10
    assert pruned.get_layer("bn0").gamma.shape == (4,)
    assert param_count(pruned) < param_count(model) / 2
    assert keras_macs(pruned) < keras_macs(model) / 2
    assert _out(pruned, _x(model)).shape == (4, 10)
    assert {"layers": ["logits"], "channels": 10, "kept": 10, "frozen": "feeds a model output"} in report


def test_mobilenet_residual_groups_keep_matching_channels():
    import keras

    from edgeopt.zoo import mobilenet_v2_style

    model = mobilenet_v2_style()
    cg = ChannelGraph(model)
    tied = [cg.groups[r].producers for r in cg.roots() if len(cg.groups[r].producers) > 1]
    assert ["b3_project", "b4_project", "b5_project"] in tied  # three blocks added together
    pruned, _ = prune_structured(model, ratio=0.5)
    adds = [l for l in pruned.layers if isinstance(l, keras.layers.Add)]
    assert adds
    for add in adds:
        widths = {int(t.shape[-1]) for t in add.input}
        assert len(widths) == 1, add.name
    for layer in pruned.layers:  # depthwise convs follow their input channels
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            assert layer.kernel.shape[2] == layer.input.shape[-1]
    assert param_count(pruned) < 0.5 * param_count(model)
    assert pruned.get_layer("b7_expand").filters < model.get_layer("b7_expand").filters
    assert _out(pruned, _x(model)).shape == (4, 10)


def test_ratio_zero_reproduces_the_model_exactly():
    from edgeopt.zoo import mobilenet_v2_style

    model = mobilenet_v2_style()
    same, _ = prune_structured(model, ratio=0.0)
    x = _x(model)
    assert np.array_equal(_out(model, x), _out(same, x))


def _zero_removed_filters(model, pruned):
    """Zero the removed filters (kernel and bias) in the original: with ReLU after each producer
    those channels become exact zeros, so the pruned model must compute the same function."""
    for layer in model.layers:
        if type(layer).__name__ not in ("Conv2D", "Dense") or layer.name == "out":
            continue
        k, b = layer.get_weights()
        kp = pruned.get_layer(layer.name).get_weights()[0]
        norms = np.abs(k.reshape(-1, k.shape[-1])).sum(0)
        keep = np.sort(np.argsort(-norms, kind="stable")[:kp.shape[-1]])
        mask = np.zeros(k.shape[-1], bool)
        mask[keep] = True
        layer.set_weights([k * mask, b * mask])


def test_flatten_and_concatenate_slicing_is_exact():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 2))
    a = layers.Conv2D(8, 3, padding="same", activation="relu", name="a")(inp)
    b = layers.Conv2D(6, 1, activation="relu", name="b")(inp)
    c = layers.Concatenate(name="cat")([a, b])
    d = layers.Conv2D(8, 3, strides=2, activation="relu", name="d")(c)
    f = layers.Flatten(name="flat")(d)
    h = layers.Dense(12, activation="relu", name="h")(f)
    out = layers.Dense(3, name="out")(h)
    model = keras.Model(inp, out)
    for layer in model.layers:  # non-zero biases so that unzeroed removed channels would show
        if layer.weights:
            layer.set_weights([w + 0.05 for w in layer.get_weights()])
    pruned, _ = prune_structured(model, ratio=0.5, min_channels=1)
    assert pruned.get_layer("cat").output.shape[-1] == 4 + 3
    assert pruned.get_layer("h").kernel.shape == (2 * 2 * 4, 6)
    _zero_removed_filters(model, pruned)
    x = _x(model, 8)
    np.testing.assert_allclose(_out(pruned, x), _out(model, x), rtol=1e-5, atol=1e-5)


def test_sequential_dense_chain():
    from edgeopt.zoo import slide_mlp

    model = slide_mlp()
    pruned, _ = prune_structured(model, ratio=0.5, min_channels=1)
    assert [l.units for l in pruned.layers if hasattr(l, "units")] == [8, 4, 3]


def test_subclassed_and_unsupported_layers_are_user_errors():
    import keras
    from keras import layers

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = layers.Dense(4)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises(UserError, match="subclassed.*Net"):
        prune_structured(net, ratio=0.5)
    inp = keras.Input((4, 4, 1))
    x = layers.Conv2D(8, 3, name="c")(inp)
    x = layers.Reshape((32,), name="odd_reshape")(x)
    model = keras.Model(inp, layers.Dense(2, name="o")(x))
    with pytest.raises(UserError, match="odd_reshape"):
        prune_structured(model, ratio=0.5)
    with pytest.raises(UserError, match="criterion"):
        prune_structured(model, ratio=0.5, criterion="random")


def _ctx(ds, tmp_path, **options):
    return StepContext(dataset=ds, work_dir=Path(tmp_path), options=options, seed=0, log=lambda m: None)


def test_step_meets_a_mac_target_and_fine_tunes(digits, digits_cnn_path, tmp_path):
    from edgeopt.model_io import load_keras

    model = load_keras(digits_cnn_path)
    res = get_step("prune-structured").run(_ctx(digits, tmp_path, target_macs=0.6, epochs=3,
                                                criterion="bn"), model)
    d = res.details
    assert d["macs"]["after"] <= 0.6 * d["macs"]["before"]
    assert d["macs"]["after"] > 0.4 * d["macs"]["before"]  # the smallest ratio, not any ratio
    assert d["params"]["after"] < d["params"]["before"]
    acc = float((np.asarray(res.model.predict(digits.x_eval, verbose=0)).argmax(1) == digits.y_eval).mean())
    assert acc > 0.5
    assert d["fine_tune"]["epochs_run"] >= 1


def test_step_iterative_per_layer(digits, digits_cnn_path, tmp_path):
    from edgeopt.model_io import load_keras

    model = load_keras(digits_cnn_path)
    res = get_step("prune-structured").run(
        _ctx(digits, tmp_path, per_layer={"conv1": 0.75}, iterations=2, epochs=1, min_channels=1), model)
    assert res.model.get_layer("conv1").filters == 4  # 16 -> 8 -> 4
    assert res.model.get_layer("conv0").filters == model.get_layer("conv0").filters
    assert len(res.details["fine_tune"]) == 2


@pytest.mark.slow
def test_step_meets_a_litert_latency_target(digits, digits_cnn_path, tmp_path):
    from edgeopt.model_io import load_keras
    from edgeopt.techniques.structured import litert_latency_ms

    model = load_keras(digits_cnn_path)
    base = litert_latency_ms(model, tmp_path)
    res = get_step("prune-structured").run(
        _ctx(digits, tmp_path, target_latency_ms=base * 0.7, epochs=0), model)
    d = res.details
    assert d["goal"]["kind"] == "latency_ms" and d["goal"]["start"] > 0
    assert d["achieved_latency_ms"] > 0 and 0 < d["last_ratio"] <= 0.95
    assert d["macs"]["after"] < d["macs"]["before"]


def test_global_ranking_removes_the_weakest_channels_across_groups():
    from edgeopt.techniques.structured import global_ratios

    scores = {0: np.array([0.1, 0.2, 3.0, 4.0]), 1: np.array([1.0, 1.1, 1.2, 1.3])}
    assert global_ratios(scores, 0.25) == {0: 0.5, 1: 0.0}  # the two weakest are both in group 0
    assert global_ratios(scores, 0.0) == {0: 0.0, 1: 0.0}


def test_budget_rejects_over_budget_ratios(digits, digits_cnn_path, tmp_path):
    from edgeopt.model_io import load_keras

    model = load_keras(digits_cnn_path)
    # A budget no pruned model can meet (the unpruned model itself is 0 points): every fine-tuned
    # ratio is rejected and the model comes back at full width.
    res = get_step("prune-structured").run(_ctx(digits, tmp_path, max_accuracy_drop=0.0, epochs=1,
                                                budget_trials=2, min_channels=1), model)
    d = res.details
    assert d["goal"]["kind"] == "max_accuracy_drop" and len(d["sensitivity_scan"]) == 8
    assert all(t["drop"] > 0 and not t["met"] for t in d["budget_trials"]) or d["met"]
    if not d["met"]:
        assert d["chosen_ratio"] == 0.0 and d["macs"]["after"] == d["macs"]["before"]
        assert "no pruning ratio met" in d["warning"]
    else:  # a ratio with no loss at all: it must be one of the measured trials
        assert any(t["met"] and t["ratio"] == d["chosen_ratio"] for t in d["budget_trials"])
    # A loose budget: a ratio > 0 is chosen, and it is one whose measured drop met the budget.
    loose = get_step("prune-structured").run(_ctx(digits, tmp_path, max_accuracy_drop=30.0, epochs=1,
                                                  budget_trials=2), model)
    d = loose.details
    chosen = [t for t in d["budget_trials"] if t["ratio"] == d["chosen_ratio"]]
    assert d["met"] and d["chosen_ratio"] > 0 and chosen and chosen[0]["drop"] <= 30.0
    assert all(t["drop"] > 30.0 for t in d["budget_trials"] if not t["met"])
    assert d["macs"]["after"] < d["macs"]["before"] and d["fine_tune"]["distilled_from"] == model.name
    assert loose.model.trainable_weights and model.trainable  # the teacher is unfrozen afterwards


@pytest.mark.slow
def test_budget_pruning_runs_on_a_wrapped_keras_applications_model(tmp_path):
    import keras

    from edgeopt.data import make_dataset

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3), include_top=False)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inp))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name="transfer")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    xs = (rng.random((120, 32, 32, 3)) * 0.2 + y[:, None, None, None] * 0.3).astype(np.float32)
    ds = make_dataset("tiny", xs, y, val_fraction=0.25, eval_fraction=0.25)
    res = get_step("prune-structured").run(_ctx(ds, tmp_path, max_accuracy_drop=100.0, epochs=1,
                                                budget_trials=1, batch_size=32, sensitivity_scan=[0.5]),
                                           model)
    d = res.details
    assert d["flattened"] == [base.name] and d["met"] and d["chosen_ratio"] > 0
    assert not any(isinstance(l, keras.Model) for l in res.model.layers)  # flattened
    assert d["macs"]["after"] < d["macs"]["before"]
    assert np.asarray(res.model.predict(xs[:2], verbose=0)).shape == (2, 3)
