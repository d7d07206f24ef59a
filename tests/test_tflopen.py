""".tflite files with an open non-batch axis (a sequence model converted with Input((None, 4))): the
open axis takes the data's length (or --input-shape) in LiteRT, in calibration and in every
command, as for .keras/.onnx; TFLite Micro, which cannot resize, refuses such a file in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

LENGTH = 16


@pytest.fixture(scope="module")
def seq(tmp_path_factory):
    """A trained Conv1D -> GlobalAveragePooling1D -> Dense(3) Keras model on (None, 4) sequences,
    its .tflite keeping the open length axis (shape_signature [-1, -1, 4]), and length-16 data
    (class = the channel among the first three with the largest mean) in an .npz."""
    import keras
    import tensorflow as tf
    from keras import layers
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    keras.utils.set_random_seed(0)
    inp = keras.Input((None, 4))
    x = layers.GlobalAveragePooling1D()(layers.Conv1D(8, 3, padding="same", activation="relu")(inp))
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(x), name="seq")
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(240, LENGTH, 4)).astype(np.float32)
    ys = xs[:, :, :3].mean(axis=1).argmax(axis=1)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(xs, ys, epochs=15, batch_size=32, verbose=0)

    @tf.function(input_signature=[tf.TensorSpec((None, None, 4), tf.float32, name="x")], autograph=False)
    def serve(v):
        return model(v, training=False)

    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    d = tmp_path_factory.mktemp("tflopen")
    path = d / "seq.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert())
    np.savez(d / "seq.npz", x=xs, y=ys)
    return {"model": model, "tflite": path, "npz": d / "seq.npz", "x": xs, "y": ys, "dir": d}


def test_the_file_really_has_an_open_length_axis(seq):
    from ai_edge_litert.interpreter import Interpreter

    from edgeopt.core.tflite import tflite_input_signatures

    interp = Interpreter(model_path=str(seq["tflite"]))
    detail = interp.get_input_details()[0]
    assert list(detail["shape_signature"]) == [-1, -1, 4]
    assert list(detail["shape"]) == [1, 1, 4]  # what the file is allocated at before a resize
    assert tflite_input_signatures(seq["tflite"].read_bytes()) == [[-1, -1, 4]]


def test_loaded_model_shows_the_open_axis(seq):
    from edgeopt.model_io import load_model

    m = load_model(seq["tflite"])
    assert m.input_shape == (None, 4) and m.inputs[0].shape == (None, 4)
    assert m.open_axes == [1]


@pytest.mark.parametrize("length", [LENGTH, 12])
def test_litert_resizes_the_open_axis_to_the_data(seq, length):
    from edgeopt.runtimes.litert import LiteRT

    x = seq["x"][:40, :length]
    session = LiteRT().load(seq["tflite"])
    got = session.predict(x, batch_size=16)  # 16, 16 and 8 samples: the batch changes too
    want = seq["model"].predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    session.invoke_prepared(x[:1])()
    assert session._interp.get_input_details()[0]["shape"].tolist() == [1, length, 4]


def test_bench_runs_at_the_data_length_and_agrees_with_keras(seq, capsys):
    from edgeopt.cli import main

    code = main(["bench", str(seq["tflite"]), "--eval-data", str(seq["npz"]), "--runs", "5", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    keras_correct = int((seq["model"].predict(seq["x"], verbose=0).argmax(1) == seq["y"]).sum())
    assert report["data"]["input_shape"] == [LENGTH, 4]
    assert report["metrics"]["samples"] == len(seq["y"])
    assert report["metrics"]["correct"] == keras_correct
    assert keras_correct > 0.8 * len(seq["y"])  # a trained model, so agreement is not by chance


def test_optimize_int8_calibrates_and_runs_at_the_data_length(seq, capsys):
    from edgeopt.cli import main
    from edgeopt.runtimes.litert import LiteRT

    run = seq["dir"] / "run"
    code = main(["optimize", str(seq["tflite"]), "-d", str(seq["npz"]), "-r", "int8", "--out", str(run),
                 "--runs", "5", "--no-report"])
    assert code == 0, capsys.readouterr()
    record = json.loads((run / "run.json").read_text())
    int8 = next(v for v in record["variants"] if v["name"] != "float32")
    assert int8["status"] == "done", int8.get("error")
    session = LiteRT().load(run / int8["artifact"])
    assert session.inputs[0].shape == (1, -1, 4)  # quantized, the length axis is still open
    got = session.predict(seq["x"])
    want = seq["model"].predict(seq["x"], verbose=0)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    assert np.abs(got - want).max() < 0.15


@pytest.mark.parametrize("command", [["bench"], ["optimize", "-r", "int8", "--no-report"]])
def test_an_input_shape_contradicting_the_data_exits_2(seq, tmp_path, capsys, command):
    from edgeopt.cli import main

    args = [command[0], str(seq["tflite"]), "-d", str(seq["npz"]), "--input-shape", "12,4", *command[1:]]
    if command[0] == "optimize":
        args += ["--out", str(tmp_path / "run")]
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: --input-shape 12,4") and "16,4" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "run").exists()


def test_tflm_refuses_an_open_axis_in_one_line(seq):
    from edgeopt.errors import UserError
    from edgeopt.runtimes.tflm import TFLM

    with pytest.raises(UserError, match=r"static shapes only: input 'x' of seq.tflite has an open axis \(\?,4\)"):
        TFLM().load(seq["tflite"])


def test_export_linux_litert_bundle_runs_at_the_data_length(seq, tmp_path):
    import subprocess
    import sys

    from edgeopt.cli import main

    out = tmp_path / "bundle"
    assert main(["export", str(seq["tflite"]), "--out", str(out), "--target", "linux-litert",
                 "-d", str(seq["npz"])]) == 0
    io = json.loads((out / "io.json").read_text())
    assert io["input"]["shape"] == [1, LENGTH, 4] and io["output"]["shape"] == [1, 3]
    run = subprocess.run([sys.executable, str(out / "infer.py")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])["output"]
    want = seq["model"].predict(np.load(out / "sample_input.npy"), verbose=0)[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_export_to_a_microcontroller_refuses_an_open_axis(seq, tmp_path, capsys):
    from edgeopt.cli import main

    out = tmp_path / "sketch"
    assert main(["export", str(seq["tflite"]), "--out", str(out), "--target", "arduino", "-d", str(seq["npz"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: TFLite Micro runs static shapes only") and "(?,4)" in err[-1]
    assert not out.exists()


def test_compare_measures_litert_at_the_data_length_and_tflm_is_not_applicable(seq, tmp_path, capsys):
    from edgeopt.cli import main

    code = main(["compare", str(seq["tflite"]), "--eval-data", str(seq["npz"]), "--runtimes", "litert,tflm",
                 "--precisions", "float32", "--runs", "3", "--json", "--out", str(tmp_path / "cmp")])
    assert code == 0
    rows = {r["runtime"]: r for r in json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]}
    keras_acc = float((seq["model"].predict(seq["x"], verbose=0).argmax(1) == seq["y"]).mean())
    assert rows["litert"]["status"] == "ok"
    assert rows["litert"]["metrics"]["accuracy"] == pytest.approx(keras_acc)
    assert rows["tflm"]["status"] == "n/a" and "static shapes only" in rows["tflm"]["reason"]
