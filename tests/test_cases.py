"""The model cases in ../shared/cases/ behave as their README says is right, at the level of
conversion, TensorFlow Lite Micro, numerics and QAT (the CLI-level checks live with the runner).

Each case script trains or builds its model and writes model.keras + data.npz into a folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import UserError
from edgeopt.steps import StepContext

CASES = Path(os.environ.get("EDGEOPT_CASES_DIR", Path(__file__).resolve().parents[2] / "shared" / "cases"))

pytestmark = pytest.mark.slow


def _case(name: str, out: Path) -> Path:
    script = CASES / f"{name}.py"
    assert script.is_file(), f"case script missing: {script} (set EDGEOPT_CASES_DIR)"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run([sys.executable, str(script), str(out)], check=True, capture_output=True, env=env,
                   timeout=600)
    return out


def _ctx(data: Path, work: Path, **options) -> StepContext:
    from edgeopt.data import load_data

    work.mkdir(parents=True, exist_ok=True)
    return StepContext(dataset=load_data(data), work_dir=work, options=options, log=lambda msg: None)


def _keras_accuracy(model, x, y) -> float:
    return float((model.predict(x, verbose=0).argmax(-1) == y).mean())


def _tflite_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    rows = []
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i:i + 1])
        interp.invoke()
        rows.append(interp.get_tensor(out["index"]))
    return np.concatenate(rows)


def test_case02_lstm_converts_to_builtin_int8_that_runs_in_tflm(tmp_path):
    from edgeopt.convert import non_builtin_ops, tflite_op_types
    from edgeopt.model_io import load_keras
    from edgeopt.techniques.convert import Float32
    from edgeopt.techniques.ptq import Int8
    from model_corpus import tflm_outputs

    case = _case("02_lstm_int8", tmp_path / "case")
    d = np.load(case / "data.npz")
    x, y = d["x"][:200], d["y"][:200]
    model = load_keras(case / "model.keras")
    ctx = _ctx(case / "data.npz", tmp_path / "f32", calibration_samples=100)
    f32 = Float32().run(ctx, model).artifact
    assert "WHILE" not in tflite_op_types(f32.read_bytes())
    float_acc = float((_tflite_outputs(f32, x).argmax(1) == y).mean())
    assert float_acc == pytest.approx(_keras_accuracy(model, x, y), abs=1e-9)

    step = Int8().run(_ctx(case / "data.npz", tmp_path / "int8", calibration_samples=100), model)
    q = step.artifact.read_bytes()
    assert non_builtin_ops(q) == []
    assert step.details["activations"] == "int8"
    int8_acc = float((_tflite_outputs(step.artifact, x).argmax(1) == y).mean())
    assert int8_acc >= float_acc - 0.05
    tflm_acc = float((tflm_outputs(step.artifact, x[:40], tmp_path).argmax(1) == y[:40]).mean())
    assert tflm_acc >= float((_tflite_outputs(step.artifact, x[:40]).argmax(1) == y[:40]).mean()) - 0.05


def test_case10_float_overflow_is_refused_with_counts_and_layer(tmp_path):
    from edgeopt.model_io import load_keras
    from edgeopt.numerics import check_finite

    case = _case("10_inf_during_calibration", tmp_path / "case")
    d = np.load(case / "data.npz")
    model = load_keras(case / "model.keras")
    bad = int((~np.isfinite(model.predict(d["x"], verbose=0))).any(axis=1).sum())
    assert bad > 0
    with pytest.raises(UserError) as err:
        check_finite(model, d["x"])
    assert str(err.value).startswith(f"the float model gives NaN/inf on {bad} of {len(d['x'])} samples "
                                     f"(first at layer d2)")
    assert UserError.exit_code == 2


def test_case10_count_is_over_all_the_data_and_says_what_was_counted(tmp_path, capsys):
    """Every split is checked (not only eval): N of M counts every sample of --data, named."""
    from edgeopt.cli import main
    from edgeopt.model_io import load_keras

    case = _case("10_inf_during_calibration", tmp_path / "case")
    d = np.load(case / "data.npz")
    bad = int((~np.isfinite(load_keras(case / "model.keras").predict(d["x"], verbose=0))).any(axis=1).sum())
    data = str(case / "data.npz")
    assert main(["compare", str(case / "model.keras"), "-d", data, "--runtimes", "litert",
                 "--precisions", "float32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"error: the float model gives NaN/inf on {bad} of {len(d['x'])} samples of --data {data} "
        f"(train, validation and eval splits) (first at layer d2)"), err


def test_case05_key_hint_names_the_keys_that_fit_in_input_order(tmp_path):
    """The .npz holds x (= x_img), x_img, x_vec and y; the model's inputs are image (8,8,1) and
    features (5,): the hint names x_img,x_vec (shape, then name), and those keys work."""
    from edgeopt import api
    from edgeopt.data import load_data
    from edgeopt.model_io import load_model

    case = _case("05_multi_input", tmp_path / "case")
    model = load_model(case / "model.keras")
    with pytest.raises(UserError) as err:
        load_data(case / "data.npz", model=model)
    assert "--x-key x_img,x_vec " in str(err.value) and "\n" not in str(err.value), str(err.value)
    result = api.compare(case / "model.keras", case / "data.npz", x_key="x_img,x_vec", runtimes="litert,onnxruntime",
                         precisions="float32,int8", runs=3)
    keras_model = model.keras
    _, ds, _ = api.prepare(case / "model.keras", case / "data.npz", x_key="x_img,x_vec")
    want = float((keras_model.predict(ds.x_eval.as_list(), verbose=0).argmax(1) == ds.y_eval).mean())
    for row in result.rows:
        assert row.ok, (row.runtime, row.precision, row.reason)
        assert row.accuracy == (want if row.precision == "float32" else pytest.approx(want, abs=0.05))


def test_key_hint_matches_inputs_by_shape_then_name_for_any_multi_input_npz(tmp_path):
    """The kind: keys in another order and under other names; the hint follows the model's input
    order, and an input no key fits gives the generic hint, never a wrong one."""
    from edgeopt.data import read_arrays

    arrays = {"labels": np.zeros(4), "seq_b": np.zeros((4, 7, 2)), "meta_vector": np.zeros((4, 3)),
              "seq_a": np.zeros((4, 7, 2))}
    np.savez(tmp_path / "d.npz", **arrays)
    names, shapes = ["vector", "seq_a", "seq_b"], [(3,), (None, 2), (7, 2)]
    with pytest.raises(UserError) as err:
        read_arrays(tmp_path / "d.npz", y_keys=["labels"], input_names=names, input_shapes=shapes)
    assert "--x-key meta_vector,seq_a,seq_b " in str(err.value), str(err.value)
    with pytest.raises(UserError) as err:
        read_arrays(tmp_path / "d.npz", y_keys=["labels"], input_names=names, input_shapes=[(4,), (7, 2), (7, 2)])
    assert "--x-key a,b " in str(err.value), str(err.value)
    x, _, _ = read_arrays(tmp_path / "d.npz", x_keys=["meta_vector", "seq_a", "seq_b"], y_keys=["labels"],
                          input_names=names, input_shapes=shapes)
    assert x.names == names and x["vector"].shape == (4, 3)


def test_case12_variable_length_converts_with_the_data_length(tmp_path):
    from edgeopt.convert import keras_to_tflite, static_input_shapes
    from edgeopt.measure.graph import profile_path
    from edgeopt.model_io import load_keras
    from edgeopt.techniques.convert import Float32
    from edgeopt.techniques.ptq import Int8

    case = _case("12_dynamic_time_dim", tmp_path / "case")
    d = np.load(case / "data.npz")
    model = load_keras(case / "model.keras")
    with pytest.raises(UserError, match="open axis"):  # never a silent length
        keras_to_tflite(model)
    assert list(static_input_shapes(model, d["x"].shape[1:]).values()) == [(1, 16, 4)]
    f32 = Float32().run(_ctx(case / "data.npz", tmp_path / "f32"), model).artifact
    x = d["x"][:100]
    np.testing.assert_allclose(_tflite_outputs(f32, x), model.predict(x, verbose=0), atol=1e-5)
    assert profile_path(f32, measure_arena=False).total_macs == 1_056  # 16 steps x (4x16) + 16x2
    step = Int8().run(_ctx(case / "data.npz", tmp_path / "int8", calibration_samples=100), model)
    acc = float((_tflite_outputs(step.artifact, x).argmax(1) == d["y"][:100]).mean())
    assert acc >= _keras_accuracy(model, x, d["y"][:100]) - 0.05


def test_case15_qat_folds_batchnorm_for_sequential_and_functional(tmp_path):
    from edgeopt.model_io import load_keras
    from edgeopt.techniques.qat import QAT, convert_qat_int8

    case = _case("15_bn_fold_per_tensor_qat", tmp_path / "case")
    folded = {}
    for name in ("model.keras", "model_functional.keras"):
        ctx = _ctx(case / "data.npz", tmp_path / name, epochs=1, calibration_samples=200)
        step = QAT().run(ctx, load_keras(case / name))
        folded[name] = len(step.details["folded_batchnorm"])
        conv = convert_qat_int8(step.model, ctx)
        assert conv.details["float_ops"] == [], name  # every op int8
    assert folded == {"model.keras": 2, "model_functional.keras": 2}
