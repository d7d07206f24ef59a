"""Several inputs and outputs, tasks and metrics, data roles (issue 10 kinds 2-3, issue 11 item 2)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.core.arrays import NamedArrays
from edgeopt.data import fit_to_model, load_data, load_data_roles
from edgeopt.errors import UserError
from edgeopt.core.metrics import (choose_thresholds, eval_resolution, fidelity, infer_task, load_metric,
                                     metric_change, task_metrics, wilson_interval)
from edgeopt.model_io import IOSpec

CASES = Path(os.environ.get("EDGEOPT_CASES_DIR", Path(__file__).resolve().parents[2] / "shared" / "cases"))
REPO = Path(__file__).resolve().parents[1]


class FakeModel:
    """What load_data needs of a LoadedModel: its inputs and outputs."""

    def __init__(self, inputs, outputs):
        self.inputs, self.outputs = inputs, outputs


TWO_IN = [IOSpec("image", (8, 8, 1), "float32"), IOSpec("features", (5,), "float32")]


# ------------------------------------------------------------------ task inference

@pytest.mark.parametrize("y,units,act,task,output", [
    (np.array([0, 1, 1, 0]), 1, "linear", "binary", "logits"),
    (np.array([0, 1, 1, 0]), 1, "sigmoid", "binary", "probabilities"),
    (np.array([0.2, 1.5, 3.0]), 1, "linear", "regression", "auto"),
    (np.array([0, 3, 9, 2]), 10, "softmax", "classification", "probabilities"),
    (np.eye(4, dtype=int)[[0, 1, 3]], 4, "softmax", "classification", "probabilities"),
    (np.array([[1, 0, 1], [0, 0, 1]]), 3, "sigmoid", "multilabel", "probabilities"),
    (np.array([[1, 0, 1], [0, 0, 1]]), 3, "linear", "multilabel", "logits"),
    (np.array([[0.5, 2.0], [1.5, 0.1]]), 2, "linear", "regression", "auto"),
])
def test_task_inferred_from_output_layer_and_labels(y, units, act, task, output):
    got = infer_task(y, units=units, activation=act)
    assert got.task == task and got.reason
    if task in ("binary", "multilabel", "classification"):
        assert got.output == output


def test_task_inference_errors_and_declared():
    with pytest.raises(UserError, match="float labels .* 10-class classifier.*--task regression"):
        infer_task(np.array([0.5, 1.25, 7.5]), units=10, activation="softmax")
    with pytest.raises(UserError, match="integer class labels"):
        infer_task(np.array([0.5, 1.25]), units=10, declared="classification")
    with pytest.raises(UserError, match="unknown task"):
        infer_task(np.array([0, 1]), declared="detection")
    assert infer_task(None).task == "fidelity"
    assert infer_task(np.array([0.5, 2.0]), units=10, declared="regression").reason == "given with --task"
    # no activation known (a .tflite or .onnx): the float outputs decide how to read one unit
    assert infer_task(np.array([0, 1]), units=1, sample=np.array([[-3.0], [2.5]])).output == "logits"


def test_float_labels_for_a_classifier_are_refused_when_loading(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.random.rand(30, 4), y=np.random.rand(30) * 9)
    model = FakeModel([IOSpec("x", (4,), "float32")], [IOSpec("out", (10,), "float32", "softmax")])
    with pytest.raises(UserError, match="10-class classifier"):
        load_data(tmp_path / "d.npz", model=model)


def test_float_labels_for_a_classifier_are_refused_by_the_model_check(tmp_path):
    from edgeopt.data import check_against_model, make_dataset

    ds = make_dataset("f", np.random.rand(30, 4), np.random.rand(30) * 9)
    assert ds.task == "regression"
    with pytest.raises(UserError, match="real-valued labels.*outputs 10 classes.*--task regression"):
        check_against_model(ds, (4,), 10)
    assert check_against_model(ds, (4,), 1) == []
    two = load_data(_two_input_file(tmp_path), x_key="image,features")
    assert check_against_model(two, [(8, 8, 1), (5,)], 2) == []
    with pytest.raises(UserError, match="for input 'features'"):
        check_against_model(two, {"image": (8, 8, 1), "features": (6,)}, 2)


def _two_input_file(tmp_path, n=40):
    np.savez(tmp_path / "two.npz", image=np.random.rand(n, 8, 8, 1), features=np.random.rand(n, 5), y=np.arange(n) % 2)
    return tmp_path / "two.npz"


# ------------------------------------------------------------------ metrics

def test_binary_logits_threshold_at_zero_and_probabilities_at_half():
    logits = np.array([[0.3], [-0.2], [0.8], [0.1]])
    y = np.array([1, 0, 1, 1])
    assert task_metrics(logits, y, "binary", "logits")["accuracy"] == 1.0  # 0.3, 0.1 > 0
    wrong = task_metrics(logits, y, "binary", "probabilities")  # what thresholding at 0.5 would say
    assert wrong["accuracy"] == 0.5 and wrong["threshold"] == 0.5
    probs = np.array([[0.7], [0.2], [0.9], [0.6]])
    assert task_metrics(probs, y, "binary", "probabilities")["accuracy"] == 1.0


def test_multilabel_thresholds_chosen_on_validation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (200, 3))
    pred = y * 0.3 + rng.normal(0, 0.05, y.shape)  # label 1 -> ~0.3: a 0.5 threshold misses every one
    default = task_metrics(pred, y, "multilabel", "probabilities")
    thr = choose_thresholds(pred[:100], y[:100], "probabilities")
    tuned = task_metrics(pred[100:], y[100:], "multilabel", "probabilities", thresholds=thr)
    assert np.all((thr > 0.05) & (thr < 0.3)), thr
    assert default["f1_micro"] < 0.1 and tuned["f1_micro"] > 0.95 and tuned["accuracy"] > 0.95
    assert len(tuned["thresholds"]) == 3


def test_regression_and_change_lower_is_better():
    pred = np.array([[1.0], [2.0], [4.0]])
    m = task_metrics(pred, np.array([1.0, 2.0, 3.0]), "regression")
    assert m["mae"] == pytest.approx(1 / 3) and m["rmse"] == pytest.approx(math.sqrt(1 / 3))
    base = {"mae": 0.5, "rmse": 0.6, "metric": "mae"}
    change = metric_change(m, base)
    assert change["mae_delta"] == pytest.approx(1 / 3 - 0.5, abs=1e-6) and change["better"] == "lower"
    assert "rmse_delta" in change
    acc = metric_change({"accuracy": 0.9}, {"accuracy": 0.95})
    assert acc == {"accuracy_delta_points": -5.0, "better": "higher"}


def test_nonfinite_outputs_are_wrong_not_class_zero():
    pred = np.array([[np.nan, 0.1], [0.9, 0.1], [0.2, 0.8]])
    m = task_metrics(pred, np.array([0, 0, 1]), "classification")
    assert m["accuracy"] == pytest.approx(2 / 3) and m["nonfinite_outputs"] == 1


def test_fidelity_against_the_float_model():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, (50, 4))
    same = fidelity(ref, ref)
    assert same["top1_agreement"] == 1.0 and same["snr_db"] == math.inf and same["cosine"] == pytest.approx(1.0)
    noisy = ref + rng.normal(0, 0.1, ref.shape)
    f = fidelity(noisy, ref)
    want = 10 * math.log10((ref ** 2).sum() / ((noisy - ref) ** 2).sum())
    assert f["snr_db"] == pytest.approx(want, abs=1e-3) and 0.95 < f["cosine"] < 1.0
    assert f["top1_agreement"] == pytest.approx(float((noisy.argmax(1) == ref.argmax(1)).mean()))
    bad = noisy.copy()
    bad[0] = np.nan
    assert fidelity(bad, ref)["snr_db"] == -math.inf


def test_several_outputs_scored_per_output_and_on_a_chosen_one():
    pred = NamedArrays({"cls": np.eye(3)[[0, 1, 2, 2]], "reg": np.array([[0.0], [1.0], [2.0], [3.0]])})
    y = NamedArrays({"cls": np.array([0, 1, 2, 0]), "reg": np.array([0.0, 1.0, 2.0, 4.0])})
    m = task_metrics(pred, y, ["classification", "regression"])
    assert m["output"] == "cls" and m["accuracy"] == 0.75
    assert m["per_output"]["reg"]["mae"] == pytest.approx(0.25)
    r = task_metrics(pred, y, ["classification", "regression"], output_name="reg")
    assert r["output"] == "reg" and r["mae"] == pytest.approx(0.25)
    one = task_metrics(pred, np.array([0.0, 1.0, 2.0, 3.0]), "regression", output_name=1)
    assert one["mae"] == 0.0 and one["output"] == "reg"
    with pytest.raises(UserError, match="no output named 'box'.*cls, reg"):
        task_metrics(pred, y, ["classification", "regression"], output_name="box")


# ------------------------------------------------------------------ confidence

def test_wilson_interval_and_eval_resolution():
    lo, hi = wilson_interval(8, 10)  # Wilson (1927); value as in statsmodels proportion_confint
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    small = eval_resolution(36, 40, budget=0.01)  # one sample = 2.5 points
    assert small["too_small"] and "2.5 points" in small["why"] and "40 eval samples" in small["why"]
    big = eval_resolution(9000, 10000, budget=0.01)  # half-width 0.59 points
    assert not big["too_small"] and big["ci_half_width"] < 0.01
    m = task_metrics(np.eye(2)[[0, 1, 1, 1]], np.array([0, 1, 1, 0]), "classification")
    assert m["correct"] == 3 and m["samples"] == 4


# ------------------------------------------------------------------ custom metrics

def test_custom_metric_from_a_file_and_a_module(tmp_path, monkeypatch):
    (tmp_path / "helper.py").write_text("SCALE = 2.0\n")
    (tmp_path / "mymetric.py").write_text(
        "import numpy as np\nfrom helper import SCALE\n"
        "def score(y_true, y_pred):\n    return {'hits': SCALE * float((np.asarray(y_pred).argmax(1) == y_true).mean()),"
        " 'n': len(y_true)}\n"
        "def bad(y):\n    return {}\n")
    metric = load_metric(f"{tmp_path / 'mymetric.py'}:score")
    res = task_metrics(np.eye(2)[[0, 1]], np.array([0, 0]), "classification", metric=metric)
    assert res == {"hits": 1.0, "n": 2.0, "metric": "hits", "higher_is_better": True}
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_metric("mymetric:score:n")(np.array([0]), np.eye(2)[[0]])["metric"] == "n"
    with pytest.raises(UserError, match=r"must accept \(y_true, y_pred\)"):
        load_metric("mymetric:bad")
    with pytest.raises(UserError, match="has no function 'nope'"):
        load_metric("mymetric:nope")
    with pytest.raises(UserError, match="not found"):
        load_metric("missing/file.py:score")
    with pytest.raises(UserError, match="module:function"):
        load_metric("justaname")


def test_custom_metric_of_the_detection_example():
    """examples/detection/metric.py (pycocotools mAP) loads as a --metric and scores a perfect grid."""
    pytest.importorskip("pycocotools")
    path = REPO / "examples" / "detection" / "metric.py"
    if not path.exists():
        pytest.skip("examples/detection not in this checkout")
    metric = load_metric(f"{path}:metric")
    shapes = sys.modules.get("shapes") or __import__("shapes")
    x, y = shapes.make_set(4, 0)
    res = metric(y, y.astype(np.float32))
    assert res["metric"] == "map50" and res["map50"] == pytest.approx(1.0)


# ------------------------------------------------------------------ several inputs / outputs in data

def test_npz_inputs_matched_by_input_name(tmp_path):
    n = 40
    np.savez(tmp_path / "d.npz", features=np.random.rand(n, 5), image=np.random.rand(n, 8, 8, 1),
             y=np.arange(n) % 2)
    ds = load_data(tmp_path / "d.npz", model=FakeModel(TWO_IN, [IOSpec("out", (2,), "float32", "softmax")]))
    assert ds.input_names == ["image", "features"]  # model order, whatever the file order
    assert ds.input_shape == {"image": (8, 8, 1), "features": (5,)}
    assert len(ds.x_eval) == len(ds.y_eval) == 8 and isinstance(ds.x_eval[:3], NamedArrays)
    assert ds.calibration(10).shapes == {"image": (8, 8, 1), "features": (5,)}
    assert len(ds.fingerprint()) == 16 and ds.fingerprint() == ds.fingerprint()


def test_npz_keys_named_for_several_inputs_and_outputs(tmp_path):
    n = 40
    np.savez(tmp_path / "d.npz", x_img=np.random.rand(n, 8, 8, 1), x_vec=np.random.rand(n, 5),
             y=np.arange(n) % 3, size=np.random.rand(n))
    outs = [IOSpec("cls", (3,), "float32", "softmax"), IOSpec("size", (1,), "float32", "linear")]
    model = FakeModel(TWO_IN, outs)
    with pytest.raises(UserError, match="model's inputs are image, features.*--x-key"):
        load_data(tmp_path / "d.npz", model=model)
    ds = load_data(tmp_path / "d.npz", x_key="x_img,x_vec", y_key=["y", "size"], model=model)
    assert ds.input_names == ["image", "features"] and ds.tasks == ["classification", "regression"]
    assert ds.label_outputs == ["cls", "size"] and ds.y_eval["size"].dtype == np.float32
    one = load_data(tmp_path / "d.npz", x_key="x_img,x_vec", y_key="size", model=model, output="size")
    assert one.label_outputs == ["size"] and one.task == "regression"
    with pytest.raises(UserError, match="2 outputs but the data has 1 label|3 keys given"):
        load_data(tmp_path / "d.npz", x_key="x_img,x_vec,y", model=model)


def test_label_free_fidelity_data(tmp_path):
    from edgeopt.measure.bench import score

    np.savez(tmp_path / "u.npz", x=np.random.rand(20, 3))
    ds = load_data(tmp_path / "u.npz", task="fidelity")
    assert ds.task == "fidelity" and len(ds.x_eval) == 4
    ref = np.random.rand(4, 2)
    got = score(ref + 0.01, ds.y_eval, ds, reference=ref)
    assert got["metric"] == "top1_agreement" and got["top1_agreement"] == 1.0 and got["snr_db"] > 20


def test_csv_reshaped_for_an_image_model(tmp_path):
    rows = [",".join(str(v) for v in np.random.rand(64).round(3)) + f",{i % 2}" for i in range(30)]
    (tmp_path / "img.csv").write_text("\n".join(rows) + "\n")
    ds = load_data(tmp_path / "img.csv", reshape=(8, 8, 1))
    assert ds.input_shape == (8, 8, 1)
    with pytest.raises(UserError, match="cannot reshape samples of 64 values to 8x8x2"):
        load_data(tmp_path / "img.csv", reshape=(8, 8, 2))


# ------------------------------------------------------------------ data roles

def _file(path, n, value, classes=2):
    x = np.full((n, 4), value, np.float32) + np.random.rand(n, 4).astype(np.float32) * 0.01
    np.savez(path, x=x, y=np.arange(n) % classes)
    return path


def test_eval_file_used_whole_and_calibration_reads_only_its_file(tmp_path):
    data = _file(tmp_path / "data.npz", 100, 0.0)
    ev = _file(tmp_path / "eval.npz", 37, 5.0)
    cal = tmp_path / "calib.npz"
    np.savez(cal, x=np.full((23, 4), 7.0, np.float32))  # no labels: calibration needs none
    ds = load_data_roles(data, eval=ev, calib=cal)
    assert len(ds.x_eval) == 37 and np.all(ds.x_eval >= 5.0)  # the eval file, whole
    assert len(ds.x_train) + len(ds.x_val) == 100  # --data: train + val only
    calib = ds.calibration(500)
    assert len(calib) == 23 and np.all(calib == 7.0)  # only the calibration file
    assert ds.summary()["sources"] == {"eval": str(ev), "train": str(data), "val": str(data), "calib": str(cal)}


def test_train_file_and_data_roles(tmp_path):
    data = _file(tmp_path / "data.npz", 50, 0.0)
    tr = _file(tmp_path / "train.npz", 80, 3.0)
    ds = load_data_roles(data, train=tr)
    assert len(ds.x_eval) == 50 and len(ds.x_train) + len(ds.x_val) == 80 and np.all(ds.x_train >= 3.0)
    alone = load_data_roles(data)
    assert (len(alone.x_train), len(alone.x_val), len(alone.x_eval)) == (35, 5, 10)  # split as always
    only_eval = load_data_roles(eval=_file(tmp_path / "e.npz", 12, 1.0))
    assert len(only_eval.x_eval) == 12 and len(only_eval.x_train) == 0
    with pytest.raises(UserError, match="--calib-data"):
        only_eval.calibration()
    with pytest.raises(UserError, match="no data"):
        load_data_roles()
    with pytest.raises(UserError, match="--data is not used"):
        load_data_roles(data, train=tr, eval=tr)


# ------------------------------------------------------------------ real models through the runtimes

@pytest.fixture(scope="module")
def two_io(tmp_path_factory):
    """A two-input, two-output Keras model (softmax class + linear size), its data and .tflite files
    converted both ways the converter stores inputs/outputs (signature-sorted and in model order)."""
    import keras
    import tensorflow as tf

    from edgeopt.convert import quiet_fds

    d = tmp_path_factory.mktemp("twoio")
    keras.utils.set_random_seed(0)
    a, b = keras.Input((8, 8, 1), name="image"), keras.Input((5,), name="features")
    h = keras.layers.Concatenate()([keras.layers.Flatten()(a), b])
    m = keras.Model([a, b], [keras.layers.Dense(3, activation="softmax", name="zcls")(h),
                             keras.layers.Dense(1, name="areg")(h)])
    m.save(d / "m.keras")
    rng = np.random.default_rng(0)
    n = 60
    np.savez(d / "d.npz", features=rng.random((n, 5)), image=rng.random((n, 8, 8, 1)),
             zcls=rng.integers(0, 3, n), areg=rng.random(n))
    with quiet_fds():
        (d / "sorted.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
        specs = [tf.TensorSpec((1, 8, 8, 1), tf.float32, name="image"), tf.TensorSpec((1, 5), tf.float32, name="features")]
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        fn = tf.function(lambda *args: m(list(args), training=False), input_signature=specs)
        frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
        (d / "static.tflite").write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert())
    return d, m


@pytest.mark.slow
@pytest.mark.parametrize("artifact,runtime", [("sorted.tflite", "litert"), ("static.tflite", "litert"),
                                              ("static.tflite", "tflm"), ("m.onnx", "onnxruntime"),
                                              ("m.onnx", "openvino")])
def test_two_inputs_two_outputs_in_runtimes(two_io, artifact, runtime):
    from edgeopt.measure.bench import bench_artifact
    from edgeopt.model_io import load_model

    d, keras_model = two_io
    if artifact == "m.onnx" and not (d / "m.onnx").exists():
        from edgeopt.convert import quiet_fds

        with quiet_fds():
            keras_model.export(str(d / "m.onnx"), format="onnx", verbose=False)
    model = load_model(d / "m.keras")
    assert [o.activation for o in model.outputs] == ["softmax", "linear"]
    ds = load_data(d / "d.npz", y_key="zcls,areg", model=model)
    ref = keras_model.predict([ds.x_eval["image"], ds.x_eval["features"]], verbose=0)
    keep = {}
    r = bench_artifact(d / artifact, ds, runtime=runtime, runs=3, warmup=1, keep_outputs=keep,
                       reference=NamedArrays({"zcls": ref[0], "areg": ref[1]}))
    assert keep["eval"].names == ["zcls", "areg"]  # model order and names, whatever the file stores
    np.testing.assert_allclose(keep["eval"]["zcls"], ref[0], atol=1e-5)
    np.testing.assert_allclose(keep["eval"]["areg"], ref[1], atol=1e-5)
    want = float((ref[0].argmax(1) == ds.y_eval["zcls"]).mean())
    assert r["output"] == "zcls" and r["accuracy"] == pytest.approx(want)
    assert r["per_output"]["areg"]["mae"] == pytest.approx(float(np.abs(ref[1][:, 0] - ds.y_eval["areg"]).mean()), abs=1e-5)
    assert r["fidelity"]["top1_agreement"] == 1.0 and "matched by name" in r["how"]["inputs"]
    assert len(r["accuracy_ci95"]) == 2 and r["eval_resolution"]["too_small"]  # 12 samples
    chosen = bench_artifact(d / artifact, ds, runtime=runtime, runs=2, warmup=1, output_name="areg")
    assert chosen["output"] == "areg" and "mae" in chosen


@pytest.mark.slow
def test_multilabel_thresholds_from_validation_outputs(tmp_path):
    import keras

    from edgeopt.convert import keras_to_tflite
    from edgeopt.measure.bench import bench_artifact, multilabel_thresholds
    from edgeopt.model_io import load_model

    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid", name="tags")])
    m.save(tmp_path / "ml.keras")
    x = np.random.default_rng(2).normal(0, 1, (200, 4)).astype(np.float32)
    y = (m.predict(x, verbose=0) > 0.4).astype(int)  # labels the model gets right at threshold 0.4
    np.savez(tmp_path / "ml.npz", x=x, y=y)
    (tmp_path / "ml.tflite").write_bytes(keras_to_tflite(m))
    ds = load_data(tmp_path / "ml.npz", model=load_model(tmp_path / "ml.keras"))
    assert ds.task == "multilabel" and ds.output_reading == "probabilities"
    thr = multilabel_thresholds(tmp_path / "ml.tflite", ds)
    tuned = bench_artifact(tmp_path / "ml.tflite", ds, runs=2, warmup=1, thresholds=thr)
    plain = bench_artifact(tmp_path / "ml.tflite", ds, runs=2, warmup=1)
    assert len(thr) == 3 and tuned["thresholds"] == [round(t, 6) for t in thr]
    assert tuned["f1_micro"] > plain["f1_micro"] and tuned["accuracy"] > 0.97


def test_two_input_profile_and_model_io(two_io):
    from edgeopt.measure.graph import profile_path
    from edgeopt.model_io import load_model

    d, _ = two_io
    prof = profile_path(d / "sorted.tflite", measure_arena=False)
    assert sorted(i["name"] for i in prof.inputs) == ["features", "image"] and len(prof.outputs) == 2
    assert profile_path(d / "m.keras").total_macs == prof.total_macs
    tfl = load_model(d / "sorted.tflite")
    assert [o.name for o in tfl.outputs] == ["output_0", "output_1"]  # put back in model order
    assert [o.activation for o in tfl.outputs] == ["softmax", "linear"]


# ------------------------------------------------------------------ the shared cases

def _run_case(script: str, out: Path) -> Path:
    path = CASES / script
    if not path.exists():
        pytest.skip(f"{path} not found")
    subprocess.run([sys.executable, str(path), str(out)], check=True, capture_output=True, timeout=300)
    return out


@pytest.mark.slow
def test_case05_two_inputs_bench(tmp_path):
    from edgeopt.convert import keras_to_tflite
    from edgeopt.measure.bench import bench_artifact
    from edgeopt.model_io import load_model

    out = _run_case("05_multi_input.py", tmp_path / "c05")
    model = load_model(out / "model.keras")
    assert [i.name for i in model.inputs] == ["image", "features"]
    with pytest.raises(UserError, match="--x-key"):
        load_data(out / "data.npz", model=model)
    ds = load_data(out / "data.npz", x_key="x_img,x_vec", model=model)
    assert ds.task == "classification" and ds.input_names == ["image", "features"]
    (tmp_path / "m.tflite").write_bytes(keras_to_tflite(model.keras))
    r = bench_artifact(tmp_path / "m.tflite", ds, runs=5, warmup=1)
    pred = model.keras.predict([ds.x_eval["image"], ds.x_eval["features"]], verbose=0)
    assert r["accuracy"] == pytest.approx(float((pred.argmax(1) == ds.y_eval).mean()))
    assert r["eval_samples"] == 80 and r["latency_ms"]["p50_ms"] > 0


@pytest.mark.slow
def test_case16_binary_logit_scored_at_zero(tmp_path):
    from edgeopt.model_io import load_model

    out = _run_case("16_binary_logit_output.py", tmp_path / "c16")
    model = load_model(out / "model.keras")
    ds = load_data(out / "data.npz", model=model)
    assert ds.task == "binary" and ds.output_reading == "logits" and "threshold 0" in ds.task_reason
    z = model.keras.predict(ds.x_eval, verbose=0)
    m = task_metrics(z, ds.y_eval, ds.task, ds.output_reading)
    assert m["accuracy"] == pytest.approx(float(((z[:, 0] > 0) == ds.y_eval).mean()))
    assert m["accuracy"] > float(((z[:, 0] > 0.5) == ds.y_eval).mean())  # 0.5 would under-report
