"""Defects a tester found in the CLI: a chosen output of several is what the task line, the table
and run.json describe; the table's timing columns say which measurement each is; an open axis's
static length is printed once; Keras files export; bundles use the model's own output names;
--input-shape is checked against .onnx/.tflite files before any work."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from cli_check import one_error
from edgeopt.cli import main
from edgeopt.data import Dataset


def _two_label_ds() -> Dataset:
    from edgeopt.core.arrays import NamedArrays

    y = NamedArrays({"cls": np.zeros(4, np.int64), "reg": np.zeros(4, np.float32)})
    x = np.zeros((4, 6), np.float32)
    return Dataset("d.npz", x, y, x, y, x, y, task="classification", task_reason="softmax",
                   tasks=["classification", "regression"], task_reasons=["softmax", "linear unit"],
                   label_outputs=["cls", "reg"], output_names=["cls", "reg"])


def test_task_line_describes_the_chosen_output():
    from edgeopt.engine.driver import task_line

    ds = _two_label_ds()
    assert task_line(ds, "reg") == "task: regression for output 'reg' (linear unit)"
    assert task_line(ds, 1) == "task: regression for output 'reg' (linear unit)"
    assert task_line(ds, None) == "task: classification for output 'cls' (softmax)"


def _variant(name, metrics, vs=None):
    m = {"size_bytes": 1000, "gzip_bytes": 800, "latency_ms": {"p50_ms": 0.5}, **metrics}
    return {"name": name, "status": "done", "metrics": m, **({"vs_baseline": vs} if vs else {})}


def _table_text(record) -> str:
    from rich.console import Console

    from edgeopt.report.terminal import run_table

    console = Console(width=400, record=True)
    console.print(run_table(record))
    return console.export_text()


def test_table_shows_the_regression_change_and_names_the_scored_output():
    paired = {"baseline_us": 10.0, "variant_us": 4.0, "rounds": 7}
    record = {"name": "r", "model": {"path": "two_out.keras"}, "settings": {"runs": 50},
              "data": {"source": "d.npz", "scored": {"output": "reg", "task": "regression"}},
              "variants": [_variant("float32", {"mae": 1.5}),
                           _variant("int8", {"mae": 1.6}, {"mae_delta": 0.1, "size_ratio": 1.0,
                                                           "speed_basis": "paired", "paired_latency": paired,
                                                           "speed": "2.50x faster than float32 on litert"})]}
    text = _table_text(record)
    assert "MAE +0.1" in text and "(reg)" in text
    # the speed cell carries the paired medians it comes from; the footer says which column is which
    assert "2.50x faster on litert (4/10 µs)" in text
    flat = " ".join(text.split())
    assert "p50 ms (own runs)" in flat and "speed vs float32 (paired)" in flat and "50 timed runs" in flat


def test_separate_timing_is_labelled_as_a_ratio_of_p50s():
    from edgeopt.report.terminal import _speed

    assert _speed({"speed": "1.20x faster than float32 on litert", "speed_basis": "separate"}) == \
        "1.20x faster on litert (ratio of p50s)"
    assert _speed({}) == "baseline"


def test_resume_with_another_output_is_refused(tmp_path):
    from edgeopt.engine.store import _mismatch

    old = {"model": {"sha256": "a"}, "data": {"fingerprint": "f", "scored": {"output": "cls"}},
           "settings": {"threads": 1, "runs": 5}}
    new = json.loads(json.dumps(old))
    assert _mismatch(old, new) is None
    new["data"]["scored"]["output"] = "reg"
    assert "--output cls" in _mismatch(old, new)


@pytest.fixture(scope="module")
def two_out(tmp_path_factory):
    """A functional Keras model with two outputs (3-class softmax ``cls``, 1-unit ``reg``) and its data."""
    import keras

    d = tmp_path_factory.mktemp("two_out")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (120, 6)).astype("float32")
    keras.utils.set_random_seed(0)
    i = keras.Input((6,), name="inp")
    h = keras.layers.Dense(8, activation="relu")(i)
    model = keras.Model(i, [keras.layers.Dense(3, activation="softmax", name="cls")(h),
                            keras.layers.Dense(1, name="reg")(h)])
    model.save(d / "two_out.keras")
    np.savez(d / "d.npz", x=x, cls=np.argmax(x[:, :3], 1), reg=(x[:, 3] * 2).astype("float32"))
    return d


@pytest.fixture(scope="module")
def seq_model(tmp_path_factory):
    """A Keras model with an open time axis, (None, 4), and data of length 12."""
    import keras

    d = tmp_path_factory.mktemp("seq")
    i = keras.Input((None, 4), name="seq")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(4, 3, padding="same")(i))
    keras.Model(i, keras.layers.Dense(3, activation="softmax")(h)).save(d / "seq.keras")
    rng = np.random.default_rng(0)
    np.savez(d / "seq.npz", x=rng.normal(0, 1, (60, 12, 4)).astype("float32"), y=rng.integers(0, 3, 60))
    return d


@pytest.fixture(scope="module")
def two_out_run(two_out):
    """optimize two_out.keras --output reg -r float16: (exit code, stdout, stderr, run directory)."""
    import contextlib
    import io

    run, out, err = two_out / "run", io.StringIO(), io.StringIO()
    from edgeopt.report import terminal

    saved = terminal.console._file, terminal.err_console._file  # None: rich follows sys.stdout/stderr
    terminal.console.file, terminal.err_console.file = out, err
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["optimize", str(two_out / "two_out.keras"), "-d", str(two_out / "d.npz"), "--y-key",
                         "cls,reg", "--output", "reg", "-r", "float16", "--runs", "5", "--out", str(run),
                         "--no-report"])
    finally:
        terminal.console._file, terminal.err_console._file = saved
    return code, out.getvalue(), err.getvalue(), run


@pytest.mark.slow
def test_optimize_with_output_reg_scores_and_prints_reg(two_out_run):
    code, out, err, run = two_out_run
    assert code == 0
    assert "task: regression for output 'reg'" in err and "task: classification" not in err
    row = next(line for line in out.splitlines() if line.lstrip("│ ").startswith("float16"))
    assert "MAE " in row.split("│")[4]  # the change column describes reg, not "-"
    record = json.loads((run / "run.json").read_text())
    assert record["data"]["scored"]["output"] == "reg" and record["model"]["outputs"] == ["cls", "reg"]
    per = record["variants"][1]["metrics"]["per_output"]
    assert set(per) == {"cls", "reg"} and record["variants"][1]["metrics"]["output"] == "reg"


def test_optimize_prints_the_static_length_of_an_open_axis_once(seq_model, capsys):
    run = seq_model / "run"
    code = main(["optimize", str(seq_model / "seq.keras"), "-d", str(seq_model / "seq.npz"), "-r", "float16",
                 "--runs", "5", "--out", str(run), "--no-report"])
    err = capsys.readouterr().err
    assert code == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("input shape:")]
    assert lines == ["input shape: open axes fixed from the data: seq (1, 12, 4)"]
    model = json.loads((run / "run.json").read_text())["model"]
    assert model["conversion_input_shapes"] == {"seq": [1, 12, 4]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """model.tflite (input 6), open.onnx (input ?,4: an open time axis) and their data."""
    import keras

    from edgeopt.convert import keras_to_tflite
    from edgeopt.export.onnx import keras_to_onnx

    d = tmp_path_factory.mktemp("files")
    i = keras.Input((6,), name="inp")
    (d / "model.tflite").write_bytes(keras_to_tflite(keras.Model(i, keras.layers.Dense(3, activation="softmax")(i))))
    i = keras.Input((None, 4), name="seq")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(4, 3, padding="same")(i))
    keras_to_onnx(keras.Model(i, keras.layers.Dense(3, activation="softmax")(h)), d / "open.onnx")
    rng = np.random.default_rng(0)
    np.savez(d / "d.npz", x=rng.normal(0, 1, (40, 6)).astype("float32"), y=rng.integers(0, 3, 40))
    return d


@pytest.mark.parametrize("command", [["profile"], ["bench", "-d", "DATA"], ["optimize", "-d", "DATA", "-r", "int8"],
                                     ["compare", "-d", "DATA"]])
def test_input_shape_is_checked_against_a_tflite_file_before_any_work(files, tmp_path, capsys, monkeypatch, command):
    import edgeopt.api
    import edgeopt.data

    for module in (edgeopt.api, edgeopt.data):
        monkeypatch.setattr(module, "load_data", lambda *a, **k: pytest.fail("data loaded before the check"))
    argv = [command[0], files / "model.tflite", *[files / "d.npz" if a == "DATA" else a for a in command[1:]],
            "--input-shape", "7"] + (["--out", tmp_path / "run"] if command[0] in ("optimize", "compare") else [])
    err = one_error(argv, capsys)
    assert "--input-shape 7 does not fit model.tflite, whose input is 6; give --input-shape 6" in err
    assert not (tmp_path / "run").exists()


def test_input_shape_for_an_onnx_file_with_an_open_axis(files, capsys):
    err = one_error(["profile", files / "open.onnx", "--input-shape", "16,5"], capsys)
    assert "whose input is ?,4; give --input-shape ?,4 with a size in place of each ?" in err
    err = one_error(["profile", files / "open.onnx", "--input-shape", "a:16,4;b:3"], capsys)
    assert "does not fit open.onnx" in err
    assert main(["profile", str(files / "open.onnx"), "--input-shape", "16,4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"][0]["shape"][1:] == [16, 4]


@pytest.mark.slow
def test_run_variant_bundle_names_the_keras_outputs(two_out_run, tmp_path, capsys):
    run = two_out_run[3]
    assert main(["export", str(run), "float16", "--target", "linux-litert", "--out", str(tmp_path / "b")]) == 0
    io_spec = json.loads((tmp_path / "b" / "io.json").read_text())
    assert [o["name"] for o in io_spec["outputs"]] == ["cls", "reg"]
    assert [o["shape"] for o in io_spec["outputs"]] == [[1, 3], [1, 1]]  # each name on its own tensor


def _infer(bundle: Path) -> dict:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "infer.py"], cwd=bundle, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_keras_file_exports_to_onnx_with_its_output_names(two_out, tmp_path, capsys):
    import keras

    out = tmp_path / "onnx"
    assert main(["export", str(two_out / "two_out.keras"), "--target", "onnx", "--out", str(out),
                 "-d", str(two_out / "d.npz")]) == 0
    io_spec = json.loads((out / "io.json").read_text())
    assert [o["name"] for o in io_spec["outputs"]] == ["cls", "reg"]
    assert io_spec["outputs"][0]["tensor"].startswith("Identity")
    got = _infer(out)["outputs"]
    cls, reg = keras.saving.load_model(two_out / "two_out.keras").predict(np.load(out / "sample_input.npy"), verbose=0)
    np.testing.assert_allclose(got["cls"], cls.reshape(-1), atol=1e-5)
    np.testing.assert_allclose(got["reg"], reg.reshape(-1), atol=1e-5)


def test_keras_export_of_an_open_axis_takes_the_data_length_or_says_how(seq_model, tmp_path, capsys):
    err = one_error(["export", seq_model / "seq.keras", "--target", "linux-litert", "--out", tmp_path / "a"], capsys)
    assert "open axis" in err and "--input-shape 16,4" in err and not (tmp_path / "a").exists()
    assert main(["export", str(seq_model / "seq.keras"), "--target", "linux-litert", "--out", str(tmp_path / "b"),
                 "-d", str(seq_model / "seq.npz")]) == 0
    assert json.loads((tmp_path / "b" / "io.json").read_text())["inputs"][0]["shape"] == [1, 12, 4]


def test_keras_export_of_two_outputs_to_a_microcontroller_says_which_targets_can(two_out, tmp_path, capsys):
    err = one_error(["export", two_out / "two_out.keras", "--target", "arduino", "--out", tmp_path / "a"], capsys)
    assert "two_out.keras has 1 input(s) and 2 outputs" in err and "--target linux-litert, onnx or openvino" in err
    assert not (tmp_path / "a").exists()
