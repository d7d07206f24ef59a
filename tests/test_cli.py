"""End-to-end CLI tests: real models on small real data, and bad input as one line + exit code 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.cli import main

EDGEOPT = [sys.executable, "-m", "edgeopt.cli"]


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, match):
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    assert match in lines[0], lines[0]


def test_help_is_instant_and_imports_no_framework():
    code = ("import sys, time; t=time.perf_counter(); from edgeopt.cli import app, main; "
            "rc = main(['--help']); "
            "heavy = [m for m in ('tensorflow', 'keras', 'openvino', 'onnxruntime', 'nncf') if m in sys.modules]; "
            "print(heavy, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # no framework imported; the start-up time itself is measured in benchmarks/startup.py, not here
    assert out.strip().splitlines()[-1].startswith("[] "), out


def test_bench_json(capsys, digits_cnn_path):
    code, out, err = run_cli(capsys, "bench", digits_cnn_path, "--data", "digits", "--runs", "20", "--json")
    assert code == 0, err
    result = json.loads(out)
    m = result["metrics"]
    assert m["accuracy"] > 0.8
    assert m["eval_samples"] == result["data"]["eval"]
    assert 0 < m["latency_ms"]["p50_ms"] <= m["latency_ms"]["p99_ms"]
    assert m["size_bytes"] > m["gzip_bytes"] > 0
    assert m["how"]["runtime"] == "litert" and m["how"]["threads"] == 1
    assert "cpu_flags" in m["how"]


def test_bench_tflite_matches_keras_accuracy(capsys, digits_cnn_path, digits_cnn_tflite, digits):
    import keras

    from conftest import accuracy

    keras_acc = accuracy(keras.saving.load_model(digits_cnn_path).predict(digits.x_eval, verbose=0),
                         digits.y_eval)
    code, out, err = run_cli(capsys, "bench", digits_cnn_tflite, "--data", "digits", "--runs", "10", "--json")
    assert code == 0, err
    assert abs(json.loads(out)["metrics"]["accuracy"] - keras_acc) < 1e-9


def test_optimize_writes_run_and_resumes(capsys, tmp_path, slide_mlp_path):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "optimize", slide_mlp_path, "--data", "blobs2d", "--out", out_dir,
                             "--runs", "10", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["schema_version"] == 2  # bumped by issue 9 (typed records)
    base = record["variants"][0]
    assert base["name"] == "float32" and base["status"] == "done"
    assert (out_dir / base["artifact"]).exists()
    assert base["metrics"]["accuracy"] > 0.8
    stamp = (out_dir / base["artifact"]).stat().st_mtime_ns
    code, out, err = run_cli(capsys, "optimize", slide_mlp_path, "--data", "blobs2d", "--out", out_dir,
                             "--runs", "10", "--json")
    assert code == 0
    assert (out_dir / base["artifact"]).stat().st_mtime_ns == stamp  # kept, not rebuilt
    assert not [p for p in out_dir.rglob("*.tmp")]


def test_optimize_refuses_other_model_in_run_dir(capsys, tmp_path, slide_mlp_path, digits_cnn_path):
    out_dir = tmp_path / "run"
    assert run_cli(capsys, "optimize", slide_mlp_path, "--data", "blobs2d", "--out", out_dir, "--runs", "5")[0] == 0
    code, _, err = run_cli(capsys, "optimize", digits_cnn_path, "--data", "digits", "--out", out_dir)
    assert_one_line_error(code, err, "holds a run of another model")


def test_profile_keras_json(capsys, digits_cnn_path):
    import keras

    code, out, err = run_cli(capsys, "profile", digits_cnn_path, "--json")
    assert code == 0, err
    prof = json.loads(out)
    assert prof["total_params"] == keras.saving.load_model(digits_cnn_path).count_params()
    assert prof["total_macs"] == sum(op["macs"] for op in prof["ops"]) > 0


# ------------------------------------------------------------------ bad input


@pytest.fixture
def bad_files(tmp_path, digits_cnn_path, digits_cnn_tflite):
    files = {}
    good = Path(digits_cnn_path).read_bytes()
    files["truncated.keras"] = good[: len(good) // 2]
    files["garbage.keras"] = b"this is not a zip archive at all"
    files["empty.h5"] = b""
    files["garbage.h5"] = os.urandom(256)
    tfl = Path(digits_cnn_tflite).read_bytes()
    files["truncated.tflite"] = tfl[: len(tfl) // 3]
    files["garbage.tflite"] = os.urandom(512)
    files["garbage.onnx"] = b"\x08\x07garbage-onnx" * 20
    files["model.pt"] = b"torch"
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize("name,match", [
    ("truncated.keras", "corrupt, truncated"),
    ("garbage.keras", "not a valid .keras file"),
    ("empty.h5", "empty"),
    ("garbage.h5", "not an HDF5 file"),
    ("truncated.tflite", "truncated.tflite"),
    ("garbage.tflite", "not a .tflite flatbuffer"),
    ("garbage.onnx", "cannot load garbage.onnx as ONNX"),
    ("model.pt", "unsupported model file"),
    ("missing.keras", "model not found"),
])
def test_bad_model_files(capsys, bad_files, name, match):
    code, _, err = run_cli(capsys, "bench", bad_files / name, "--data", "digits")
    assert_one_line_error(code, err, match)


def test_wrong_input_shape(capsys, slide_mlp_path):
    code, _, err = run_cli(capsys, "bench", slide_mlp_path, "--data", "digits")
    assert_one_line_error(code, err, "input shape (8, 8, 1) but the model expects (2)")


def test_label_class_mismatch(capsys, tmp_path, slide_mlp_path):
    np.savez(tmp_path / "d.npz", x=np.random.rand(50, 2), y=np.arange(50) % 5)
    code, _, err = run_cli(capsys, "bench", slide_mlp_path, "--data", tmp_path / "d.npz")
    assert_one_line_error(code, err, "5 classes) but the model outputs 3 classes; give class ids 0..2")


def test_empty_and_nan_data(capsys, tmp_path, slide_mlp_path):
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 2)), y=np.zeros(0))
    code, _, err = run_cli(capsys, "bench", slide_mlp_path, "--data", tmp_path / "empty.npz")
    assert_one_line_error(code, err, "empty")
    x = np.random.rand(50, 2)
    x[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(50) % 3)
    code, _, err = run_cli(capsys, "bench", slide_mlp_path, "--data", tmp_path / "nan.npz")
    assert_one_line_error(code, err, "1 samples contain NaN")


def test_missing_data_and_unknown_recipe(capsys, slide_mlp_path):
    code, _, err = run_cli(capsys, "bench", slide_mlp_path, "--data", "nowhere.npz")
    assert_one_line_error(code, err, "data not found: nowhere.npz")
    code, _, err = run_cli(capsys, "optimize", slide_mlp_path, "--data", "blobs2d", "--recipe", "magic")
    assert_one_line_error(code, err, "unknown recipe step 'magic'")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_dir_as_user(capsys, tmp_path, slide_mlp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    code, _, err = run_cli(capsys, "optimize", slide_mlp_path, "--data", "blobs2d", "--out", ro / "run")
    assert_one_line_error(code, err, "cannot create output folder")


def test_output_dir_is_a_file(capsys, tmp_path, slide_mlp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "optimize", slide_mlp_path, "--data", "blobs2d", "--out", blocker / "run")
    assert_one_line_error(code, err, "cannot create output folder")
    assert blocker.read_text() == "x"


def test_lambda_layer_refused_without_unsafe(capsys, tmp_path):
    import keras

    inp = keras.Input((2,))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Lambda(lambda t: t * 2.0)(inp))
    path = tmp_path / "lambda.keras"
    keras.Model(inp, out).save(path)
    code, _, err = run_cli(capsys, "bench", path, "--data", "blobs2d")
    assert_one_line_error(code, err, "--unsafe")
    code, out, err = run_cli(capsys, "bench", path, "--data", "blobs2d", "--unsafe", "--runs", "5", "--json")
    assert code == 0, err


def test_bad_options(capsys, slide_mlp_path):
    code, _, err = run_cli(capsys, "bench", slide_mlp_path, "--data", "blobs2d", "--threads", "0")
    assert_one_line_error(code, err, "--threads must be at least 1")
    code, _, err = run_cli(capsys, "optimize", slide_mlp_path, "--data", "blobs2d", "--option", "novalue")
    assert_one_line_error(code, err, "--option expects key=value")
    code, _, err = run_cli(capsys, "bench", slide_mlp_path)
    assert_one_line_error(code, err, "no data: give --data DATA (or --eval-data FILE")


def test_console_script_runs_as_a_process(tmp_path, slide_mlp_path):
    proc = subprocess.run(EDGEOPT + ["bench", str(tmp_path / "nope.keras"), "--data", "blobs2d"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: model not found: {tmp_path / 'nope.keras'}; ")
    assert proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_demo_quick(capsys, tmp_path):
    code, out, err = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--quick")
    assert code == 0, err
    assert "slide MLP" in out and "small CNN" in out
    from edgeopt.run import load_run

    for run_dir in [p.parent for p in (tmp_path / "demo").glob("*/run.json")]:
        record = load_run(run_dir)
        assert record["variants"][0]["name"] == "float32"
        assert all(v["status"] == "done" for v in record["variants"]), record["variants"]
    assert len(list((tmp_path / "demo").glob("*/run.json"))) == 2


def test_report_html(capsys, tmp_path, slide_mlp_path):
    out_dir = tmp_path / "run"
    assert run_cli(capsys, "optimize", slide_mlp_path, "--data", "blobs2d", "--out", out_dir, "--runs", "5")[0] == 0
    code, out, err = run_cli(capsys, "report", out_dir)
    assert code == 0, err
    html = (out_dir / "report.html").read_text()
    assert "float32" in html and "Plotly.newPlot" in html and "<script src=" not in html  # plotly.js inlined
    code, _, err = run_cli(capsys, "report", tmp_path / "not-a-run")
    assert_one_line_error(code, err, "is not a run directory")
