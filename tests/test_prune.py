"""Magnitude pruning (schedule math, masks, the recipe step) and the shared fine-tuning helper."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import UserError
from edgeopt.steps import StepContext, get_step
from edgeopt.techniques.finetune import history_report
from edgeopt.techniques.prune import (SparsitySchedule, global_masks, magnitude_mask, model_masks,
                                      prunable_layers)


# ---------------------------------------------------------------- schedule math (pure)

def test_polynomial_schedule_follows_the_cubic_curve():
    s = SparsitySchedule("polynomial", initial=0.0, final=0.8, begin=10, end=110, frequency=10)
    assert s.sparsity(0) == 0.0
    assert s.sparsity(10) == pytest.approx(0.0)
    assert s.sparsity(60) == pytest.approx(0.8 - 0.8 * 0.5 ** 3)  # half way: 0.7
    assert s.sparsity(110) == pytest.approx(0.8)
    assert s.sparsity(10_000) == pytest.approx(0.8)
    assert s.sparsity(60, final=0.4) == pytest.approx(0.35)  # per-layer final sparsity
    assert [t for t in range(0, 130) if s.update_due(t)] == list(range(10, 111, 10))


def test_constant_schedule_and_end_step():
    s = SparsitySchedule("constant", final=0.5, begin=5, end=-1, frequency=4)
    assert s.sparsity(4) == 0.0 and s.sparsity(5) == 0.5 and s.sparsity(999) == 0.5
    assert s.update_due(5) and s.update_due(9) and not s.update_due(10) and s.update_due(1001)
    s2 = SparsitySchedule("polynomial", final=0.5, begin=0, end=7, frequency=5)
    assert s2.update_due(7) and not s2.update_due(8)  # the last update lands on end_step


@pytest.mark.parametrize("kwargs", [dict(kind="cubic"), dict(final=1.0), dict(frequency=0),
                                    dict(begin=50, end=10)])
def test_bad_schedules_are_user_errors(kwargs):
    with pytest.raises(UserError):
        SparsitySchedule(**kwargs)


def test_magnitude_mask_drops_exactly_the_smallest():
    w = np.array([[0.1, -5.0], [0.01, 2.0], [-0.3, 0.0]])
    m = magnitude_mask(w, 0.5)
    assert m.sum() == 3
    assert m[0, 1] and m[1, 1] and m[2, 0] and not m[2, 1] and not m[1, 0]


def test_global_masks_use_one_threshold():
    big, small = np.full((10,), 10.0) + np.arange(10), np.arange(1, 11) / 100.0
    masks = global_masks({"big": big, "small": small}, 0.5)
    assert masks["big"].all() and not masks["small"].any()


# ---------------------------------------------------------------- history diagnosis (pure)

def test_history_report_names_overfitting_with_numbers():
    hist = {"loss": [1.0, 0.6, 0.4, 0.3], "val_loss": [0.9, 0.7, 0.8, 0.95],
            "accuracy": [0.7, 0.8, 0.9, 0.95], "val_accuracy": [0.7, 0.78, 0.77, 0.76]}
    rep = history_report(hist, epochs=10, monitor="val_accuracy", mode="max", baseline_accuracy=0.8)
    kinds = {d["kind"]: d["detail"] for d in rep["diagnosis"]}
    assert "over-fitting" in kinds and "0.7000 -> 0.9500" in kinds["over-fitting"]
    assert rep["best_epoch"] == 2 and rep["stopped_early"]


def test_history_report_names_underfitting_and_slow_convergence():
    hist = {"loss": [2.0, 1.8, 1.6], "val_loss": [2.1, 1.9, 1.7],
            "accuracy": [0.3, 0.35, 0.41], "val_accuracy": [0.3, 0.36, 0.42]}
    rep = history_report(hist, epochs=3, monitor="val_accuracy", mode="max", baseline_accuracy=0.9)
    kinds = [d["kind"] for d in rep["diagnosis"]]
    assert kinds == ["under-fitting", "slow convergence"]
    healthy = {"loss": [0.5, 0.3, 0.29], "val_loss": [0.5, 0.35, 0.35],
               "accuracy": [0.85, 0.9, 0.9], "val_accuracy": [0.84, 0.88, 0.881]}
    assert history_report(healthy, epochs=3, monitor="val_accuracy", mode="max",
                          baseline_accuracy=0.9)["diagnosis"] == []


# ---------------------------------------------------------------- the step on a real model

def _ctx(ds, tmp_path, **options):
    return StepContext(dataset=ds, work_dir=Path(tmp_path), options=options, seed=0, log=lambda m: None)


def _acc(model, ds):
    return float((np.asarray(model.predict(ds.x_eval, verbose=0)).argmax(1) == ds.y_eval).mean())


@pytest.fixture(scope="module")
def pruned(digits, digits_cnn_path, tmp_path_factory):
    from edgeopt.model_io import load_keras

    model = load_keras(digits_cnn_path)
    before = [w.copy() for w in model.get_weights()]
    res = get_step("prune").run(_ctx(digits, tmp_path_factory.mktemp("p"), sparsity=0.7, epochs=5, lr=2e-3),
                                model)
    return model, before, res


def test_prune_reaches_target_sparsity_per_layer(pruned):
    _, _, res = pruned
    sp = res.details["layer_sparsity"]
    assert set(sp) == {"conv0", "conv1", "conv2", "fc", "logits"}
    for name, layer in prunable_layers(res.model).items():
        k = np.asarray(layer.kernel.numpy())
        assert (k == 0).sum() == round(0.7 * k.size), name
    assert res.details["overall_sparsity"] == pytest.approx(0.7, abs=0.005)
    assert res.details["fine_tune"]["epochs_run"] >= 1
    assert set(res.model._edgeopt_masks) == set(sp)


def test_prune_keeps_accuracy_and_leaves_input_model_alone(pruned, digits):
    model, before, res = pruned
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert _acc(res.model, digits) >= _acc(model, digits) - 0.1


def test_prune_reports_gzip_and_sparse_encoding(pruned):
    _, _, res = pruned
    size = res.details["size"]
    assert size["float_tflite_gzip_bytes"] < size["float_tflite_bytes"]
    # LiteRT's sparse encoding stores 70%-zero weights in fewer bytes than dense float32
    assert size["sparse_tflite_bytes"] < size["float_tflite_bytes"]
    assert res.details["sparse_encoding"]["helps"] is True


def test_masks_are_recovered_from_zeros_after_save_and_load(pruned, tmp_path):
    import keras

    _, _, res = pruned
    path = tmp_path / "pruned.keras"
    res.model.save(path)
    masks = model_masks(keras.models.load_model(path))
    for name, mask in res.model._edgeopt_masks.items():
        assert np.array_equal(masks[name], mask), name


def test_skip_layers_and_global_scope(digits, digits_cnn_path, tmp_path):
    from edgeopt.model_io import load_keras

    model = load_keras(digits_cnn_path)
    res = get_step("prune").run(_ctx(digits, tmp_path, sparsity=0.6, scope="global", epochs=0,
                                     skip_layers=["logits"], report_size=False), model)
    assert res.details["layer_sparsity"]["logits"] == 0.0
    ws = [np.asarray(l.kernel.numpy()) for n, l in prunable_layers(res.model).items() if n != "logits"]
    assert sum(int((w == 0).sum()) for w in ws) == round(0.6 * sum(w.size for w in ws))
    with pytest.raises(UserError, match="nope"):
        get_step("prune").run(_ctx(digits, tmp_path, skip_layers=["nope"], epochs=0), model)
    with pytest.raises(UserError, match="sparsity"):
        get_step("prune").run(_ctx(digits, tmp_path, sparsity=1.5, epochs=0), model)


def test_mask_callback_keeps_zeros_through_other_fine_tuning(pruned, digits, tmp_path):
    """What cluster and qat use: zeros stay zero while a later step fine-tunes."""
    from edgeopt.techniques.finetune import fine_tune
    from edgeopt.techniques.prune import MaskCallback, copy_model

    model = copy_model(pruned[2].model)
    masks = model_masks(model)
    model, report = fine_tune(model, _ctx(digits, tmp_path), epochs=1,
                              callbacks=[MaskCallback.create(model, masks)])
    assert report["epochs_run"] == 1
    for name, layer in prunable_layers(model).items():
        assert np.array_equal(np.asarray(layer.kernel.numpy()) != 0, masks[name]), name
