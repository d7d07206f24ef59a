"""Weight clustering: k-means math, tied fine-tuning, sparsity preservation after pruning."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import UserError
from edgeopt.steps import StepContext, get_step
from edgeopt.techniques.cluster import kmeans_1d
from edgeopt.techniques.prune import prunable_layers


def test_kmeans_1d_finds_the_clumps():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(c, 0.01, 200) for c in (-1.0, 0.2, 3.0)])
    centroids, idx = kmeans_1d(values, 3)
    assert np.allclose(centroids, [-1.0, 0.2, 3.0], atol=0.01)
    assert np.array_equal(np.bincount(idx), [200, 200, 200])
    assert np.abs(centroids[idx] - values).max() < 0.05


def test_kmeans_1d_inits_and_empty_clusters():
    values = np.array([0.0, 0.0, 1.0, 1.0, 10.0])
    lin, _ = kmeans_1d(values, 8)  # most linear seeds are empty and dropped
    assert len(lin) == 3 and np.allclose(lin, [0.0, 1.0, 10.0])
    dens, idx = kmeans_1d(np.linspace(-1, 1, 1000), 4, init="density")
    assert len(dens) == 4 and np.allclose(np.bincount(idx), 250, atol=5)
    with pytest.raises(UserError):
        kmeans_1d(values, 4, init="random")


def _ctx(ds, tmp_path, **options):
    return StepContext(dataset=ds, work_dir=Path(tmp_path), options=options, seed=0, log=lambda m: None)


def _acc(model, ds):
    return float((np.asarray(model.predict(ds.x_eval, verbose=0)).argmax(1) == ds.y_eval).mean())


def test_cluster_limits_unique_values_and_keeps_accuracy(digits, digits_cnn_path, tmp_path):
    from edgeopt.model_io import load_keras

    model = load_keras(digits_cnn_path)
    res = get_step("cluster").run(_ctx(digits, tmp_path, clusters=8, epochs=2), model)
    uniq = res.details["unique_values"]
    assert set(uniq) == {"conv0", "conv1", "conv2", "fc", "logits"}
    for name, layer in prunable_layers(res.model).items():
        assert np.unique(np.asarray(layer.kernel.numpy())).size <= 8, name
    assert uniq["conv1"] >= 4  # clusters are really used, not collapsed
    assert res.details["size"]["float_tflite_gzip_bytes"] < res.details["size"]["float_tflite_bytes"] / 2
    assert _acc(res.model, digits) >= _acc(model, digits) - 0.1
    assert res.details["fine_tune"]["epochs_run"] >= 1


def test_prune_then_cluster_preserves_sparsity(digits, digits_cnn_path, tmp_path):
    from edgeopt.model_io import load_keras

    pruned = get_step("prune").run(_ctx(digits, tmp_path, sparsity=0.75, epochs=1, report_size=False),
                                   load_keras(digits_cnn_path))
    zeros = {n: np.asarray(l.kernel.numpy()) == 0 for n, l in prunable_layers(pruned.model).items()}
    res = get_step("cluster").run(_ctx(digits, tmp_path, clusters=4, epochs=1, report_size=False),
                                  pruned.model)
    assert res.details["sparsity_preserved"]
    for name, layer in prunable_layers(res.model).items():
        k = np.asarray(layer.kernel.numpy())
        assert np.array_equal(k == 0, zeros[name]), name  # same zeros, no new ones, none revived
        assert np.unique(k).size <= 4 + 1, name  # clusters plus zero
        assert res.details["layer_sparsity"][name] == pytest.approx(pruned.details["layer_sparsity"][name])


def test_cluster_options_are_checked(digits, digits_cnn_path, tmp_path):
    from edgeopt.model_io import load_keras

    model = load_keras(digits_cnn_path)
    with pytest.raises(UserError, match="clusters"):
        get_step("cluster").run(_ctx(digits, tmp_path, clusters=1, epochs=0), model)
    with pytest.raises(UserError, match="missing"):
        get_step("cluster").run(_ctx(digits, tmp_path, skip_layers=["missing"], epochs=0), model)
    res = get_step("cluster").run(_ctx(digits, tmp_path, clusters=4, epochs=0, skip_layers=["logits"],
                                       report_size=False), model)
    assert "logits" not in res.details["clustered_layers"]
    assert res.details["unique_values"]["logits"] > 4
