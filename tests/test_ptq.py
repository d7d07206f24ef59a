"""Post-training quantization steps on the digits CNN: real conversions, run in LiteRT."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from edgeopt.errors import UserError
from edgeopt.core.tflite import tflite_op_details
from edgeopt.steps import StepContext, StepResult, expand_recipes, get_step


@pytest.fixture(scope="module")
def cnn(digits_cnn_path):
    from edgeopt.model_io import load_keras

    return load_keras(digits_cnn_path)


@pytest.fixture(scope="module")
def evaluate(digits):
    from edgeopt.runtimes.litert import LiteRT

    def run(path) -> float:
        return float((LiteRT().load(path).predict(digits.x_eval).argmax(1) == digits.y_eval).mean())
    return run


@pytest.fixture(scope="module")
def float32(cnn, digits, evaluate, tmp_path_factory):
    wd = tmp_path_factory.mktemp("float32")
    res = get_step("float32").run(StepContext(dataset=digits, work_dir=wd), cnn)
    return res.artifact, evaluate(res.artifact)


def make_ctx(digits, tmp_path, evaluate=None, logs=None, **options):
    return StepContext(dataset=digits, work_dir=tmp_path, options=options, evaluate=evaluate,
                       log=(logs.append if logs is not None else (lambda m: None)))


def interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


def op_output_dtypes(path) -> dict[str, set]:
    """op type -> dtypes of its outputs, boundary QUANTIZE/DEQUANTIZE excluded."""
    it = interpreter(path)
    details = {d["index"]: d for d in it.get_tensor_details()}
    out: dict[str, set] = {}
    for op in tflite_op_details(path):
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        out.setdefault(op["op_name"], set()).update(np.dtype(details[i]["dtype"]).name for i in op["outputs"])
    return out


def io_dtypes(path) -> tuple[str, str]:
    it = interpreter(path)
    return (np.dtype(it.get_input_details()[0]["dtype"]).name,
            np.dtype(it.get_output_details()[0]["dtype"]).name)


def constant_bytes(path) -> int:
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    m = fbu.read_model_from_bytearray(bytearray(path.read_bytes()))
    return sum(len(b.data) for b in m.buffers if b.data is not None)


EXPECTED = {  # mode -> (activation dtype of conv outputs, weight storage types)
    "dynamic": ("float32", {"int8"}),
    "int8": ("int8", {"int8"}),
    "float16": ("float32", {"float16"}),
    "int16x8": ("int16", {"int8"}),
    "int4-weights": ("float32", {"int4"}),
}


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_each_mode_runs_in_litert_with_expected_dtypes(mode, cnn, digits, evaluate, float32, tmp_path):
    res = get_step(mode).run(make_ctx(digits, tmp_path), cnn)
    assert isinstance(res, StepResult) and res.artifact.exists()
    act, weights = EXPECTED[mode]
    assert op_output_dtypes(res.artifact)["CONV_2D"] == {act}
    assert weights <= set(res.details["weight_tensors"])
    assert io_dtypes(res.artifact) == ("float32", "float32")
    acc = evaluate(res.artifact)
    assert acc >= float32[1] - 0.03, f"{mode}: {acc} vs float {float32[1]}"
    assert res.quant_errors and {"tensor", "op", "snr_db", "cosine"} <= set(res.quant_errors[0])


def test_int8_accuracy_within_one_point_and_int8_io(cnn, digits, evaluate, float32, tmp_path):
    res = get_step("int8").run(make_ctx(digits, tmp_path / "a"), cnn)
    assert abs(evaluate(res.artifact) - float32[1]) <= 0.01
    kept = (res.details.get("fixes") or {}).get("fixes") or []
    method = "per-tensor (act_range)" if "act_range" in kept else "minmax"  # the measured fix's ranges
    assert res.details["calibration"] == {"method": method, "samples": 500}
    assert res.details["float_ops"] == []
    io = get_step("int8").run(make_ctx(digits, tmp_path / "b", int8_io=True), cnn)
    assert io_dtypes(io.artifact) == ("int8", "int8")
    assert abs(evaluate(io.artifact) - float32[1]) <= 0.01


def test_float16_halves_the_weights(cnn, digits, float32, tmp_path):
    res = get_step("float16").run(make_ctx(digits, tmp_path), cnn)
    f32, f16 = float32[0], res.artifact
    assert 1.9 <= constant_bytes(f32) / constant_bytes(f16) <= 2.1
    # the whole file shrinks less on this tiny model: flatbuffer structure does not halve
    assert f32.stat().st_size / f16.stat().st_size >= 1.4


def test_percentile_ranges_are_narrower_than_minmax(float32, digits):
    from edgeopt.techniques.calibration import activation_ranges

    model = float32[0].read_bytes()
    x = digits.calibration(200)
    mm = activation_ranges(model, x, "minmax")
    pc = activation_ranges(model, x, "percentile", percentile=99.9)
    assert mm.keys() == pc.keys() and len(mm) >= 5
    for name in mm:  # percentiles lie inside the min/max range ...
        assert mm[name]["min"].item() <= pc[name]["min"].item() + 1e-6
        assert pc[name]["max"].item() <= mm[name]["max"].item() + 1e-6
    # ... and clip the tails of most activations
    narrower = [n for n in mm if pc[n]["max"].item() < mm[n]["max"].item() - 1e-6]
    assert len(narrower) >= len(mm) // 2


def test_percentile_step_changes_the_artifact_scales(cnn, digits, evaluate, float32, tmp_path):
    def scales(path):
        it = interpreter(path)
        return {d["name"]: d["quantization"][0] for d in it.get_tensor_details()
                if np.dtype(d["dtype"]).name == "int8" and d["quantization"][0] and len(d["shape"]) == 4}

    mm = get_step("int8").run(make_ctx(digits, tmp_path / "mm", fixes="none"), cnn)  # min/max as is
    pc = get_step("int8").run(make_ctx(digits, tmp_path / "pc", calibration="percentile",
                                       percentile=99.0), cnn)
    assert pc.details["calibration"] == {"method": "percentile", "samples": 500, "percentile": 99.0}
    assert io_dtypes(pc.artifact) == ("float32", "float32")  # float I/O added around the int8 graph
    shared = scales(mm.artifact).keys() & scales(pc.artifact).keys()
    assert shared
    assert any(scales(pc.artifact)[n] < scales(mm.artifact)[n] * 0.95 for n in shared)
    assert evaluate(pc.artifact) >= float32[1] - 0.03


def test_mixed_keeps_sensitive_ops_float_under_a_tiny_budget(cnn, digits, evaluate, float32, tmp_path):
    # Clipping every activation at its 95th percentile costs ~3 points on digits: mixed must
    # keep ops float to get back within 0.3 points.
    # fixes="none": the configured calibration as given (no fixes or calibration tried first).
    ctx = make_ctx(digits, tmp_path, evaluate, calibration="percentile", percentile=95.0,
                   max_accuracy_drop=0.3, latency_candidates=0, fixes="none")
    ctx.baseline_accuracy = float32[1]
    res = get_step("mixed").run(ctx, cnn)
    d = res.details
    assert d["selected_on"] == "validation"  # chosen on the validation split, reported on eval
    assert d["all_int8_accuracy"] < d["baseline_accuracy"] - 0.003
    assert d["met"] is True and d["accuracy_drop"] <= 0.3 + 1e-9
    assert len(d["kept_float"]) >= 1
    assert all(k["reason"].startswith("sensitivity: SNR") for k in d["kept_float"])
    # one instrumented pass ranked the ops; only the top ones were measured float one at a time
    assert 1 <= len(d["sensitivity"]) <= 8 and all("gain_alone_points" in r for r in d["sensitivity"])
    assert len(d["candidates_tried"]) <= 1 + 2 * len(d["sensitivity"]) + len(d["kept_float"])
    assert d["eval_accuracy"] == pytest.approx(evaluate(res.artifact), abs=1e-5)
    kept = op_output_dtypes(res.artifact)
    assert "float32" in set().union(*kept.values()) and "int8" in set().union(*kept.values())


def test_mixed_tries_fixes_and_calibration_before_keeping_ops_float(cnn, digits, evaluate, float32,
                                                                    tmp_path):
    # The same bad configured calibration (95th percentile): with fixes="auto" mixed first measures
    # min/max and percentile ranges on the validation split, so no op needs to stay float.
    ctx = make_ctx(digits, tmp_path, evaluate, calibration="percentile", percentile=95.0,
                   max_accuracy_drop=0.3, latency_candidates=0, fix_validation_samples=200)
    res = get_step("mixed").run(ctx, cnn)
    d = res.details
    measured = d["calibration_choice"]["measured"]
    assert {"percentile 95", "minmax", "percentile 99.99"} <= set(measured)
    assert d["calibration_choice"]["chosen"] != "percentile 95"
    assert measured[d["calibration_choice"]["chosen"]]["output_mse"] < measured["percentile 95"]["output_mse"]
    assert d["fixes"]["trials"][0]["fixes"] == []
    assert d["fixes"]["validation_samples"] == min(200, len(digits.x_val))
    assert d["met"] is True and d["kept_float"] == []


def test_mixed_falls_back_with_a_warning_when_the_budget_is_impossible(cnn, digits, evaluate, float32,
                                                                       tmp_path):
    logs: list[str] = []
    ctx = make_ctx(digits, tmp_path, evaluate, logs, max_accuracy_drop=-50.0, latency_candidates=0)
    ctx.baseline_accuracy = float32[1]
    res = get_step("mixed").run(ctx, cnn)
    assert res.details["met"] is False and "not met" in res.details["warning"]
    assert any("could not meet" in m for m in logs)
    assert res.artifact.exists() and evaluate(res.artifact) > 0.9
    for entry in res.details["kept_float"]:
        assert entry["reason"].startswith(("sensitivity:", "latency:"))


def test_quant_error_table_rows_are_sane(cnn, digits, float32, tmp_path):
    from edgeopt.techniques.quant_error import quant_error_table

    x = digits.calibration(16)
    f16 = get_step("float16").run(make_ctx(digits, tmp_path / "f16"), cnn).artifact
    i8 = get_step("int8").run(make_ctx(digits, tmp_path / "i8", fixes="none"), cnn).artifact
    rows16 = quant_error_table(float32[0], f16, x)
    rows8 = quant_error_table(float32[0], i8, x)
    assert rows16 and all(r["cosine"] > 0.9999 and r["snr_db"] > 50 for r in rows16)
    assert len(rows8) >= 8 and {r["op"] for r in rows8} >= {"CONV_2D", "FULLY_CONNECTED"}
    assert all(0.99 < r["cosine"] <= 1.0 + 1e-9 and 15 < r["snr_db"] < 80 for r in rows8)
    assert all(r["dtype"] == "int8" for r in rows8)
    # the same model against itself: no error at all
    same = quant_error_table(float32[0], float32[0], x)
    assert all(r["cosine"] == pytest.approx(1.0) and r["snr_db"] >= 150 for r in same)


@pytest.mark.parametrize("bad, words", [
    (np.zeros((20, 8, 8), np.float32), ["(20, 8, 8)", "(8, 8, 1)"]),
    (np.zeros((20, 64), np.float32), ["(20, 64)", "(8, 8, 1)"]),
    (np.array([["a"] * 64] * 20), ["dtype"]),
])
def test_bad_calibration_data_is_a_user_error(bad, words, cnn, digits, tmp_path):
    with pytest.raises(UserError) as err:
        get_step("int8").run(make_ctx(digits, tmp_path, calibration_data=bad), cnn)
    for w in words:
        assert w in str(err.value)


def test_few_calibration_samples_warn_and_zero_is_an_error(cnn, digits, tmp_path):
    logs: list[str] = []
    res = get_step("int8").run(make_ctx(digits, tmp_path / "few", logs=logs, calibration_samples=3), cnn)
    assert res.details["calibration"]["samples"] == 3
    assert any("only 3 calibration samples" in m for m in logs)
    with pytest.raises(UserError, match="calibration_samples must be in \\[1"):
        get_step("int8").run(make_ctx(digits, tmp_path / "none", calibration_samples=0), cnn)
    with pytest.raises(UserError, match="calibration"):
        get_step("int8").run(make_ctx(digits, tmp_path / "bad", calibration="kmeans"), cnn)


def test_qat_models_are_handed_to_the_qat_converter(cnn, digits, tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("edgeopt.techniques.qat")
    fake.convert_qat_int8 = lambda model, ctx: calls.append(model) or StepResult(details={"qat": True})
    fake.is_qat_model = lambda model: getattr(model, "_edgeopt_qat", False)
    monkeypatch.setitem(sys.modules, "edgeopt.techniques.qat", fake)
    monkeypatch.setattr(cnn, "_edgeopt_qat", True, raising=False)
    res = get_step("int8").run(make_ctx(digits, tmp_path), cnn)
    assert calls == [cnn] and res.details == {"qat": True}


def test_ptq_alias_expands_to_every_mode():
    assert expand_recipes(["ptq"]) == [["dynamic"], ["int8"], ["float16"], ["int16x8"],
                                       ["int4-weights"], ["mixed"]]
