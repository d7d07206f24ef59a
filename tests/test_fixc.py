"""Defects a tester found in export and the shape checks: an .onnx with an open axis exports at
--input-shape or the data's sample shape (else exit 2), a contradicting --input-shape is refused
for .onnx files as for Keras, a VARIANT with a model file and data that do not fit the model are
refused before any work, the profile note on open axes appears only when an axis was open, and
the microcontroller refusal of a two-output model says the same everywhere."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_check import one_error
from edgeopt.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """open.onnx (input seq ?,4), fixed.onnx (8,8,1), small.keras (8,8,1), two.keras (two outputs),
    two.tflite (two outputs), seq.npz (samples 16,4) and img.npz (samples 8,8,1)."""
    import keras

    from edgeopt.convert import keras_to_tflite
    from edgeopt.export.onnx import keras_to_onnx

    d = tmp_path_factory.mktemp("fixc")
    i = keras.Input((None, 4), name="seq")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(8, activation="relu")(i))
    keras_to_onnx(keras.Model(i, keras.layers.Dense(2, activation="softmax")(h)), d / "open.onnx")
    i = keras.Input((8, 8, 1), name="img")
    small = keras.Model(i, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(i)), name="small")
    small.save(d / "small.keras")
    keras_to_onnx(small, d / "fixed.onnx")
    h = keras.layers.Flatten()(i)
    two = keras.Model(i, [keras.layers.Dense(10, activation="softmax", name="digit")(h),
                          keras.layers.Dense(1, name="brightness")(h)], name="two")
    two.save(d / "two.keras")
    (d / "two.tflite").write_bytes(keras_to_tflite(two))
    rng = np.random.default_rng(0)
    np.savez(d / "seq.npz", x=rng.normal(size=(20, 16, 4)).astype("float32"), y=rng.integers(0, 2, 20))
    np.savez(d / "img.npz", x=rng.random((20, 8, 8, 1)).astype("float32"), y=rng.integers(0, 10, 20))
    return d


def _infer(bundle: Path) -> dict:
    done = subprocess.run([sys.executable, "infer.py"], cwd=bundle, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_open_onnx_exports_at_the_given_length(files, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["export", str(files / "open.onnx"), "--target", "onnx", "--out", str(out),
                 "--input-shape", "12,4"]) == 0
    io_spec = json.loads((out / "io.json").read_text())
    assert io_spec["input"]["shape"] == [1, 12, 4] and io_spec["output"]["shape"] == [1, 2]
    assert np.load(out / "sample_input.npy").shape == (1, 12, 4)
    assert len(_infer(out)["output"]) == 2


def test_open_onnx_exports_to_openvino_at_the_data_length(files, tmp_path, capsys):
    out = tmp_path / "ov"
    assert main(["export", str(files / "open.onnx"), "--target", "openvino", "--out", str(out),
                 "-d", str(files / "seq.npz")]) == 0
    assert json.loads((out / "io.json").read_text())["input"]["shape"] == [1, 16, 4]
    sample = np.load(out / "sample_input.npy")
    assert sample.shape == (1, 16, 4)
    assert sample.std() > 0  # a data sample, not zeros
    assert len(_infer(out)["output"]) == 2


def test_open_onnx_export_without_a_length_is_refused(files, tmp_path, capsys):
    err = one_error(["export", files / "open.onnx", "--target", "onnx", "--out", tmp_path / "b"], capsys)
    assert "open.onnx has an open axis (its input is ?,4" in err and "--input-shape" in err and "--data" in err
    assert not (tmp_path / "b").exists()


def test_export_input_shape_disagreeing_with_the_data_is_refused(files, tmp_path, capsys):
    err = one_error(["export", files / "open.onnx", "--target", "onnx", "--out", tmp_path / "b",
                      "-d", files / "seq.npz", "--input-shape", "12,4"], capsys)
    assert "--input-shape 12,4 (input 'seq') disagrees with the data's sample shape 16,4" in err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("command", [["bench"], ["optimize", "-r", "int8"], ["compare"]])
def test_input_shape_disagreeing_with_the_data_is_refused_for_an_open_onnx(files, tmp_path, capsys, command):
    out = ["--out", tmp_path / "run"] if command[0] != "bench" else []
    err = one_error([command[0], files / "open.onnx", *command[1:], "-d", files / "seq.npz",
                      "--input-shape", "12,4", "--runs", "5", *out], capsys)
    assert "disagrees with the data's sample shape 16,4; give --input-shape 16,4, or drop it" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model", ["small.keras", "fixed.onnx"])
def test_variant_with_a_model_file_is_refused_before_any_work(files, tmp_path, capsys, monkeypatch, model):
    import edgeopt.api

    monkeypatch.setattr(edgeopt.api, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    err = one_error(["export", files / model, "int8", "--out", tmp_path / "b"], capsys)
    stem = Path(model).stem
    assert f"variant 'int8' needs a run directory, and {model} is a model file" in err
    assert f"edgeopt optimize {files / model} -d DATA -r int8 --out runs/{stem}" in err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("source", ["small.keras", "fixed.onnx"])
def test_export_data_that_does_not_fit_the_model_is_refused(files, tmp_path, capsys, source):
    err = one_error(["export", files / source, "--target", "onnx", "--out", tmp_path / "b",
                      "-d", files / "seq.npz"], capsys)
    assert "--data seq.npz: input shape (16, 4) but the model expects (8, 8, 1)" in err
    assert not (tmp_path / "b").exists()


def test_export_reshape_makes_flat_data_fit(files, tmp_path, capsys):
    flat = tmp_path / "flat.npz"
    np.savez(flat, x=np.load(files / "img.npz")["x"].reshape(20, 64))
    out = tmp_path / "b"
    assert main(["export", str(files / "fixed.onnx"), "--target", "onnx", "--out", str(out), "-d", str(flat),
                 "--reshape", "8,8,1"]) == 0
    assert np.load(out / "sample_input.npy").shape == (1, 8, 8, 1)


def test_profile_notes_open_axes_only_when_one_was_open(files, capsys):
    assert main(["profile", str(files / "fixed.onnx"), "--input-shape", "8,8,1", "--json"]) == 0
    assert "open axes from" not in capsys.readouterr().out
    assert main(["profile", str(files / "open.onnx"), "--input-shape", "12,4", "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any("profiled at [12, 4] (open axes from the data/--input-shape)" in n for n in notes)


def test_microcontroller_refusal_of_two_outputs_says_the_same_for_keras_and_tflite(files, tmp_path, capsys):
    from edgeopt.errors import UserError
    from edgeopt.export.bundles import export_bundle

    keras_err = one_error(["export", files / "two.keras", "--target", "arduino", "--out", tmp_path / "k"], capsys)
    with pytest.raises(UserError) as e:
        export_bundle(files / "two.tflite", "arduino", tmp_path / "t")
    tail = ("has 1 input(s) and 2 outputs; the generated microcontroller program handles one input and one output: "
            "export it with --target linux-litert, onnx or openvino (they take several inputs and outputs)")
    assert keras_err.strip() == f"error: two.keras {tail}" and str(e.value) == f"two.tflite {tail}"
    assert not (tmp_path / "k").exists() and not (tmp_path / "t").exists()


def test_error_line_is_lowercase_when_piped(files, tmp_path):
    done = subprocess.run([sys.executable, "-m", "edgeopt.cli", "export", str(files / "small.keras"), "int8",
                           "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: variant 'int8' needs a run directory") and done.stderr.count("\n") == 1


def test_microcontroller_refusal_of_a_two_output_run_variant_names_the_variant(files, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "float32").mkdir(parents=True)
    (run / "float32" / "two.tflite").write_bytes((files / "two.tflite").read_bytes())
    (run / "run.json").write_text(json.dumps({
        "schema_version": 2, "name": "two", "model": {"path": "two.keras"}, "data": {"source": "digits"},
        "settings": {}, "variants": [{"name": "float32", "recipe": ["float32"], "status": "done",
                                      "artifact": "float32/two.tflite", "metrics": {}}]}))
    err = one_error(["export", run, "float32", "--target", "arduino", "--out", tmp_path / "b"], capsys)
    assert err.startswith(f"error: variant float32 of {run} has 1 input(s) and 2 outputs;")
    assert "export it with --target linux-litert, onnx or openvino" in err and not (tmp_path / "b").exists()
