"""Tester-found defects (round 4): each test reproduces one report and fails without its fix."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeopt.cli import main


@pytest.mark.parametrize("url", ["sqlite:////nonexistent/dir/x.db", "postgresql://u:p@127.0.0.1:1/db"])
def test_search_bad_storage_fails_before_any_work(url, tmp_path, capsys, digits_cnn_path):
    """A storage that cannot be opened: exit 2 in one line, nothing written in --out, no lock left."""
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg")
    out = tmp_path / "R"
    code = main(["search", str(digits_cnn_path), "-d", "digits", "--trials", "1", "--storage", url,
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot open the search storage" in err and "Traceback" not in err
    assert ":p@" not in err  # the password is redacted
    assert not out.exists()


@pytest.fixture(scope="module")
def two_outputs(tmp_path_factory):
    """A digits CNN with two outputs: 'digit' (softmax, 10 classes) and 'brightness' (one linear
    unit, the mean pixel), trained 3 epochs, and its data as .npz (keys x, digit, brightness)."""
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y, yb = d.target.astype("int64"), x.mean(axis=(1, 2, 3)).astype("float32")[:, None]
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="img")
    h = keras.layers.Flatten()(keras.layers.Conv2D(8, 3, activation="relu")(inp))
    model = keras.Model(inp, [keras.layers.Dense(10, activation="softmax", name="digit")(h),
                              keras.layers.Dense(1, name="brightness")(h)], name="two")
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    model.fit(x, [y, yb], epochs=3, verbose=0)
    root = tmp_path_factory.mktemp("two")
    model.save(root / "two.keras")
    np.savez(root / "two.npz", x=x, digit=y, brightness=yb)
    return root


@pytest.fixture(scope="module")
def two_run(two_outputs):
    """`optimize two.keras --output brightness -r int8`: (exit code, stdout, run.json)."""
    import subprocess
    import sys

    out = two_outputs / "run"
    proc = subprocess.run([sys.executable, "-m", "edgeopt.cli", "optimize", str(two_outputs / "two.keras"),
                           "-d", str(two_outputs / "two.npz"), "-r", "int8", "--output", "brightness",
                           "--runs", "3", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "COLUMNS": "200"})
    return proc.returncode, proc.stdout, json.loads((out / "run.json").read_text())


def test_run_json_task_is_the_scored_outputs(two_run):
    code, _, record = two_run
    assert code == 0
    data = record["data"]
    assert data["scored"] == {"output": "brightness", "task": "regression", "reason": data["scored"]["reason"]}
    assert data["task"] == "regression"  # was the first output's, classification
    assert "linear" in data["task_reason"]
    assert data["tasks"] == ["classification", "regression"]  # every output's task stays recorded
    assert data["label_outputs"] == ["digit", "brightness"]


def test_table_shows_every_outputs_score(two_run):
    _, stdout, record = two_run
    assert "other outputs" in stdout
    for v in record["variants"]:
        digit = v["metrics"]["per_output"]["digit"]["accuracy"]
        assert f"digit {digit * 100:.2f}%" in stdout


def test_regression_headline_footer_and_summary(two_run):
    _, stdout, _ = two_run
    assert "Wilson" not in stdout  # no interval is shown for MAE
    assert "of float32's accuracy" not in stdout
    assert "does not apply to MAE" in stdout


def test_bench_shows_every_outputs_score(two_outputs, capsys):
    code = main(["bench", str(two_outputs / "two.keras"), "-d", str(two_outputs / "two.npz"), "--runs", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "top-1 accuracy (digit)" in out and "mae (brightness)" in out and "MAE " in out


def _variant(name, size, p50, speedup=None, basis="paired", acc=0.9):
    v = {"name": name, "status": "done",
         "metrics": {"accuracy": acc, "size_bytes": size, "gzip_bytes": size, "latency_ms": {"p50_ms": p50}}}
    if speedup is not None:
        v["vs_baseline"] = {"accuracy_delta_points": 0.0, "speedup": speedup, "speed_basis": basis}
    return v


def test_fastest_follows_the_paired_speedup():
    """Own-runs p50 says b is fastest, the paired timing (the column the footer says to read) says a."""
    from edgeopt.engine.analysis import best_within_budget

    variants = [_variant("float32", 100, 0.0030), _variant("a", 50, 0.0025, speedup=1.4),
                _variant("b", 60, 0.0020, speedup=1.1)]
    best = best_within_budget(variants, 1.0)
    assert best["fastest"] == "a" and best["smallest"] == "a"
    # a variant slower than float32 in the paired timing never beats float32
    slow = [_variant("float32", 100, 0.0030), _variant("c", 50, 0.0010, speedup=0.8)]
    assert best_within_budget(slow, 1.0)["fastest"] == "float32"


def test_wilson_footer_only_with_an_interval():
    from edgeopt.report.terminal import run_table

    v = _variant("float32", 100, 0.003)
    record = {"name": "r", "model": {"path": "m.keras"}, "data": {"source": "digits"}, "variants": [v]}
    assert "Wilson" not in run_table(record).caption
    v["metrics"]["accuracy_ci95"] = [0.88, 0.92]
    assert "Wilson" in run_table(record).caption


def test_task_regression_on_class_labels_names_the_right_fix(digits_cnn_path, capsys):
    """The user passed --task regression: the error must not tell them to pass it."""
    code = main(["bench", str(digits_cnn_path), "-d", "digits", "--task", "regression", "--runs", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: --task regression needs one target per output value")
    assert "drop --task regression" in err and "pass --task regression" not in err


def test_post_training_search_space_has_no_training_time_step():
    """--post-training: only conversions; prune-structured is listed as training-time in the README."""
    from edgeopt.recipes import catalogue
    from edgeopt.tuner.space import default_space

    kinds = {name: step["kind"] for name, step in catalogue()["steps"].items()}
    space = default_space(training=False)
    steps = {choice.step for slot in space.slots for choice in slot.choices}
    assert steps == {"int8", "float16", "dynamic", "mixed"}
    assert all(kinds[s] == "convert" for s in steps), kinds  # no step that changes the Keras model


def test_bad_devices_file_names_every_problem(tmp_path, capsys):
    """Every wrong field of every device, in the one error line (was: the first and '+1 more')."""
    path = tmp_path / "devs.yaml"
    path.write_text("devices:\n  - name: x\n    class: mcu\n    core: cortex-m4\n"
                    "  - name: y\n    class: mcu\n    core: cortex-m4\n    clock_mhz: 64\n    ram_kb: 256\n"
                    "    flash_kb: 1024\n    colour: red\n")
    code = main(["devices", "--devices-file", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "field 'ram_kb': required field is missing" in err and "field 'flash_kb'" in err
    assert "device 'y': field 'colour': unknown field" in err
    assert "more problem" not in err
