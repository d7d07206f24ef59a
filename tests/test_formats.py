"""Issue 11, done-when: models that arrive as .onnx or float .tflite go through ``optimize --recipe
ptq`` (every applicable variant measured) and ``compare``; the data roles are used as stated."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeopt.cli import main

EVAL_N = 157  # the eval file's length: every accuracy must be counted on exactly these rows
MARKER = 40.0  # calibration inputs are scaled by this: no other file holds values above 1


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_keras_only_step_on_an_onnx_model_is_refused_in_one_line_before_loading(tmp_path, capsys):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not loaded: the recipe is refused first")
    code, _, err = run_cli(capsys, "optimize", model, "-d", "digits", "-r", "prune,int8", "--out", tmp_path / "run")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "prune needs a Keras model" in lines[0] and "ONNX" in lines[0] and "ort-int8" in lines[0]
    assert not (tmp_path / "run").exists()


def test_recipe_names_mean_the_format_steps():
    from edgeopt.steps import for_format

    assert for_format(["ptq"], "onnx") == ["ort-int8", "ort-dynamic", "onnx-float16", "nncf-int8"]
    assert for_format(["int8", "mixed"], "tflite") == ["tflite-int8", "tflite-mixed"]
    assert for_format(["prune,int8"], "onnx") == ["prune,ort-int8"]
    assert for_format(["ptq"], "keras") == ["ptq"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits):
    """A MobileNet-style classifier trained briefly on digits, as .onnx and float .tflite, and the
    role files: train, calibration (inputs scaled by MARKER) and eval (EVAL_N rows)."""
    import keras

    from edgeopt.convert import keras_to_tflite
    from edgeopt.export.onnx import keras_to_onnx
    from edgeopt.zoo import compile_classifier
    from test_onnxin import _mobilenet_style

    keras.utils.set_random_seed(0)
    model = compile_classifier(_mobilenet_style(), lr=3e-3)
    model.fit(digits.x_train, digits.y_train, epochs=4, batch_size=32, verbose=0)
    d = tmp_path_factory.mktemp("formats")
    (d / "float.tflite").write_bytes(keras_to_tflite(model))
    np.savez(d / "train.npz", x=digits.x_train[:400], y=digits.y_train[:400])
    np.savez(d / "calib.npz", x=digits.x_train[400:464] * MARKER)
    np.savez(d / "eval.npz", x=digits.x_eval[:EVAL_N], y=digits.y_eval[:EVAL_N])
    return {"onnx": keras_to_onnx(model, d / "float.onnx"), "tflite": d / "float.tflite", "dir": d}


def _optimize(capsys, model, out, *extra):
    d = model.parent
    code, stdout, err = run_cli(capsys, "optimize", model, "-r", "ptq", "--train-data", d / "train.npz",
                                "--calib-data", d / "calib.npz", "--eval-data", d / "eval.npz", "--runs", 3,
                                "--no-report", "--out", out, *extra)
    assert code == 0, err
    return json.loads((out / "run.json").read_text()), stdout


@pytest.mark.slow
def test_onnx_model_through_optimize_ptq_with_data_roles(files, tmp_path, capsys):
    record, stdout = _optimize(capsys, files["onnx"], tmp_path / "run")
    by_name = {v["name"]: v for v in record["variants"]}
    assert set(by_name) == {"float32", "ort-int8", "ort-dynamic", "onnx-float16", "nncf-int8"}
    for v in by_name.values():
        assert v["status"] == "done", v.get("error")
        m = v["metrics"]
        assert m["eval_samples"] == EVAL_N  # the eval file, whole
        lo, hi = m["accuracy_ci95"]
        assert lo <= m["accuracy"] <= hi
    assert by_name["nncf-int8"]["artifact"].endswith(".xml")
    assert by_name["ort-int8"]["metrics"]["accuracy"] > 0.5
    sources = record["data"]["sources"]
    assert sources["eval"].endswith("eval.npz") and sources["calib"].endswith("calib.npz")
    assert sources["train"].endswith("train.npz")
    # calibration read only the calibration file: the input's int8 range covers the marker values
    assert _onnx_input_scale(tmp_path / "run" / by_name["ort-int8"]["artifact"]) > MARKER / 255 * 0.9
    assert "[" in stdout and "%" in stdout  # accuracies shown with their interval


def _onnx_input_scale(path) -> float:
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    first = next(n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits)
    return float(inits[first.input[1]])  # the first activation quantized: the model input's range


@pytest.mark.slow
def test_float_tflite_through_optimize_ptq(files, tmp_path, capsys, monkeypatch):
    from edgeopt.techniques import tflite_ptq

    seen = []
    real = tflite_ptq.tflite_int8

    def spy(model_path, calib_x, *a, **kw):
        seen.append(np.asarray(calib_x))
        return real(model_path, calib_x, *a, **kw)

    monkeypatch.setattr(tflite_ptq, "tflite_int8", spy)
    record, _ = _optimize(capsys, files["tflite"], tmp_path / "run")
    by_name = {v["name"]: v for v in record["variants"]}
    assert set(by_name) == {"float32", "tflite-dynamic", "tflite-int8", "tflite-float16", "tflite-int16x8",
                            "tflite-int4", "tflite-mixed"}
    for v in by_name.values():
        assert v["status"] == "done", v.get("error")
        assert v["metrics"]["eval_samples"] == EVAL_N
    calib = np.load(files["dir"] / "calib.npz")["x"]
    assert len(seen) == 1 and len(seen[0]) == len(calib) and np.allclose(np.sort(seen[0].ravel()),
                                                                         np.sort(calib.ravel()))


@pytest.mark.slow
def test_a_broken_artifact_is_failed_with_its_whole_reason(files, tmp_path, capsys, monkeypatch):
    from edgeopt.techniques import onnx_ptq

    def broken(model_path, calib_x, out_dir, name="float16"):
        path = out_dir / f"{name}.onnx"
        path.write_bytes(b"\x08\x07" + b"garbage" * 40)
        return path, {"precision": "float16"}

    monkeypatch.setattr(onnx_ptq, "onnx_float16", broken)
    code, stdout, err = run_cli(capsys, "optimize", files["onnx"], "-r", "float16", "--eval-data",
                                files["dir"] / "eval.npz", "--runs", 3, "--no-report", "--out", tmp_path / "run")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    bad = next(v for v in record["variants"] if v["name"] == "onnx-float16")
    assert bad["status"] == "failed" and "metrics" not in bad
    assert bad["error"].startswith("ArtifactCheckFailed: ONNX Runtime cannot run model.onnx")
    assert "\n" not in bad["error"]  # one readable line for the table
    from edgeopt.techniques.artifact_check import check_artifact

    same = tmp_path / "again" / "model.onnx"
    same.parent.mkdir()
    same.write_bytes(b"\x08\x07" + b"garbage" * 40)
    whole = check_artifact(same).replace(str(same.parent), str(tmp_path / "run" / "onnx-float16"))
    assert bad["error_detail"] == f"ArtifactCheckFailed: {whole}"  # the whole reason, nothing cut
    assert "onnx-float16" in stdout and "failed" in stdout


@pytest.mark.slow
def test_compare_takes_onnx_and_tflite_with_data_roles(files, capsys):
    d = files["dir"]
    for model, runtimes in ((files["onnx"], "onnxruntime,openvino"), (files["tflite"], "litert")):
        code, out, err = run_cli(capsys, "compare", model, "--eval-data", d / "eval.npz", "--calib-data",
                                 d / "calib.npz", "--runtimes", runtimes, "--precisions", "float32,int8",
                                 "--runs", 3, "--json")
        assert code == 0, err
        rows = json.loads(out)["rows"]
        assert rows and all(r["status"] == "ok" for r in rows), [(r["runtime"], r["reason"]) for r in rows]


@pytest.mark.slow
def test_csv_feeds_an_image_model_with_reshape(files, digits, tmp_path, capsys):
    rows = np.concatenate([digits.x_eval[:60].reshape(60, -1), digits.y_eval[:60, None]], axis=1)
    csv = tmp_path / "eval.csv"
    np.savetxt(csv, rows, delimiter=",", fmt="%.5f")
    code, out, err = run_cli(capsys, "bench", files["tflite"], "--eval-data", csv, "--reshape", "8,8,1",
                             "--runs", 3, "--json")
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    assert metrics["eval_samples"] == 60 and metrics["eval_resolution"]["too_small"]


# ---------------------------------------------------------------- MCU export agrees with TFLite Micro

TFLM_CORPUS = ["conv1d_dilated", "tcn_causal", "separable_conv1d", "gru"]


@pytest.mark.slow
@pytest.mark.parametrize("name", TFLM_CORPUS)
def test_every_variant_run_in_tflm_exports_with_exactly_its_ops(name, tmp_path):
    """Whenever optimize ran a variant in TFLite Micro (its arena was measured), the Arduino export of
    that variant succeeds and its resolver registers exactly the model's ops (read with
    tflite-micro's own schema), and the sketch compiles against the op table (g++, when present)."""
    import shutil

    import edgeopt
    from edgeopt.export.tflm_ops import tflm_resolver_methods
    from model_corpus import build
    from stub_compile import compile_tflm_program
    from test_export import _op_types_by_tflm_package, resolver_methods_in

    model, x, task = build(name)
    model.save(tmp_path / f"{name}.keras")
    rows = np.concatenate([x] * 4)
    np.savez(tmp_path / "data.npz", x=rows, y=np.concatenate([np.asarray(task.y)] * 4))
    run = edgeopt.optimize(tmp_path / f"{name}.keras", str(tmp_path / "data.npz"), recipes=["int8"],
                           out=tmp_path / "run", runs=3, html_report=False)
    ran = [v for v in run.variants if v.status == "done" and v.graph and v.graph.tflm_arena_bytes]
    assert any(v.name == "int8" for v in ran), [(v.name, v.graph) for v in run.variants]
    for v in ran:
        out = tmp_path / f"export-{v.name}"
        result = edgeopt.export(run.path, variant=v.name, target="arduino", out=out)
        sketch = next(Path(f) for f in result.files if str(f).endswith(".ino"))
        ops = _op_types_by_tflm_package(run.path / v.artifact)
        assert sorted(resolver_methods_in(sketch.read_text())) == sorted({tflm_resolver_methods()[o] for o in ops})
        if shutil.which("g++"):
            compile_tflm_program(sketch, tmp_path, arduino=True)


# ---------------------------------------------------------------- several inputs (tester's case 05)

def _two_input_npz(path: Path, n: int = 48) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x_img=rng.random((n, 8, 8, 1), np.float32), x_vec=rng.random((n, 5), np.float32),
             y=np.arange(n) % 2)
    return path


@pytest.mark.parametrize("suffix,recipe,step", [(".onnx", "int8", "ort-int8"), (".onnx", "nncf-int8", "nncf-int8"),
                                                (".tflite", "int16x8", "tflite-int16x8"),
                                                (".tflite", "mixed", "tflite-mixed"), (".keras", "mixed", "mixed")])
def test_a_one_input_step_on_a_several_input_model_is_refused_before_loading(tmp_path, capsys, suffix, recipe, step):
    model = tmp_path / f"model{suffix}"  # passes the header checks, never loaded: the recipe is refused first
    if suffix == ".keras":
        import zipfile

        with zipfile.ZipFile(model, "w") as z:
            z.writestr("config.json", "{}")
    else:
        model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(32) if suffix == ".tflite" else b"not an onnx")
    code, _, err = run_cli(capsys, "optimize", model, "-d", _two_input_npz(tmp_path / "d.npz"), "--x-key",
                           "x_img,x_vec", "-r", recipe, "--out", tmp_path / "run")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert f"step {step} takes a model with one input; model{suffix} has 2" in lines[0]
    assert "-r ptq runs the steps that work" in lines[0]
    assert ("optimize the Keras model" in lines[0]) == (suffix != ".keras")
    assert not (tmp_path / "run").exists()


def test_ptq_leaves_the_one_input_steps_out_for_several_inputs():
    from edgeopt.steps import for_inputs

    assert for_inputs(["ptq"], "onnx", 2) == (["ort-dynamic", "onnx-float16"], ["ort-int8", "nncf-int8"])
    assert for_inputs(["ptq"], "tflite", 3) == (["tflite-dynamic", "tflite-float16", "tflite-int4"],
                                                ["tflite-int8", "tflite-int16x8", "tflite-mixed"])
    recipes, dropped = for_inputs(["ptq", "prune"], "keras", 2)
    assert dropped == ["mixed"] and "mixed" not in recipes and "int8" in recipes and recipes[-1] == "prune"
    assert for_inputs(["ptq"], "onnx", 1) == (["ptq"], [])


@pytest.fixture(scope="module")
def two_input_files(tmp_path_factory):
    """An untrained two-input model (image 8x8x1, vector 5) as .onnx and float .tflite, and its data."""
    import keras

    from edgeopt.convert import keras_to_tflite
    from edgeopt.export.onnx import keras_to_onnx

    keras.utils.set_random_seed(0)
    img, vec = keras.Input((8, 8, 1), name="image"), keras.Input((5,), name="features")
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(img))
    h = keras.layers.Concatenate()([h, keras.layers.Dense(4, activation="relu")(vec)])
    model = keras.Model([img, vec], keras.layers.Dense(2, activation="softmax")(h))
    d = tmp_path_factory.mktemp("two_inputs")
    (d / "m.tflite").write_bytes(keras_to_tflite(model))
    return {"onnx": keras_to_onnx(model, d / "m.onnx"), "tflite": d / "m.tflite",
            "data": _two_input_npz(d / "data.npz")}


def test_the_load_check_feeds_every_input(two_input_files):
    from edgeopt.techniques.artifact_check import check_artifact

    assert check_artifact(two_input_files["onnx"]) is None
    assert check_artifact(two_input_files["tflite"]) is None


@pytest.mark.slow
@pytest.mark.parametrize("fmt,done", [("onnx", ["ort-dynamic", "onnx-float16"]),
                                      ("tflite", ["tflite-dynamic", "tflite-float16", "tflite-int4"])])
def test_ptq_on_a_several_input_file_runs_the_steps_that_take_it(two_input_files, tmp_path, capsys, fmt, done):
    code, _, err = run_cli(capsys, "optimize", two_input_files[fmt], "-d", two_input_files["data"], "--x-key",
                           "x_img,x_vec", "-r", "ptq", "--runs", 3, "--no-report", "--out", tmp_path / "run")
    assert code == 0, err
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [v["name"] for v in run["variants"] if v["name"] != "float32"] == done
    assert all(v["status"] == "done" for v in run["variants"]), [(v["name"], v.get("error")) for v in run["variants"]]
    assert any(w.startswith("ptq leaves out") for w in run["warnings"]) and "ptq leaves out" in err


@pytest.mark.slow
def test_compare_a_several_input_tflite_marks_int8_not_applicable(two_input_files, capsys):
    code, out, err = run_cli(capsys, "compare", two_input_files["tflite"], "-d", two_input_files["data"], "--x-key",
                             "x_img,x_vec", "--runtimes", "litert,tflm", "--precisions", "float32,float16,int8",
                             "--runs", 3, "--json")
    assert code == 0, err
    rows = {(r["runtime"], r["precision"]): r for r in json.loads(out)["rows"]}
    assert rows[("litert", "float16")]["status"] == "ok", rows[("litert", "float16")]["reason"]
    for key in (("litert", "int8"), ("tflm", "int8")):
        assert rows[key]["status"] == "n/a" and "calibrates one input array" in rows[key]["reason"]
