"""`edgeopt compare`: rows = runtime x precision, every row measured or explained."""
from __future__ import annotations

import json
import sys

import pytest

from edgeopt.compare import compare, fastest, markdown_table, render_table

FAST = dict(runs=10, throughput_seconds=0.1, calibration=200)


@pytest.fixture(scope="module")
def keras_rows(digits, digits_cnn_path):
    return compare(digits_cnn_path, digits, precisions=["float32", "float16", "int8"], **FAST)


def _row(rows, runtime, precision):
    return next(r for r in rows if r.runtime == runtime and r.precision == precision)


def test_keras_input_fills_every_runtime_and_precision(keras_rows, digits):
    assert [(r.runtime, r.precision) for r in keras_rows] == [
        (rt, p) for rt in ("litert", "onnxruntime", "openvino", "tflm") for p in ("float32", "float16", "int8")]
    for r in keras_rows:
        if (r.runtime, r.precision) == ("tflm", "float16"):
            continue
        assert r.ok, (r.runtime, r.precision, r.reason)
        assert r.p50_ms > 0 and r.p99_ms >= r.p50_ms and r.ips_batch > 0 and r.size_bytes > 0
        assert r.load_ms > 0 and r.runtime_version
        assert 0.9 < r.accuracy <= 1.0
    for r in keras_rows:
        if r.ok and r.precision == "float32":
            assert r.top1_agreement == 1.0 and r.max_abs_diff < 1e-4, r.runtime
        if r.ok and r.precision == "int8":
            f32 = _row(keras_rows, r.runtime, "float32")
            assert r.accuracy >= f32.accuracy - 0.01, r.runtime
            assert r.max_abs_diff > 1e-4  # quantized: not bit-identical to the float model


def test_tflm_fp16_row_is_not_applicable_and_says_why(keras_rows):
    row = _row(keras_rows, "tflm", "float16")
    assert row.status == "n/a" and "no float16 kernels" in row.reason and "DEQUANTIZE" in row.reason


def test_int8_rows_record_cpu_dependent_settings(keras_rows):
    from edgeopt.measure.env import cpu_info

    ort = _row(keras_rows, "onnxruntime", "int8")
    assert ort.settings["reduce_range"] is (not cpu_info()["vnni"])
    assert ort.settings["activation_type"] == "QUInt8"
    assert ("no-vnni" in ort.cpu_flags) is (not cpu_info()["vnni"])
    ov = _row(keras_rows, "openvino", "int8")
    assert ov.settings["overflow_fix"] == ("first_layer_only" if cpu_info()["vnni"] else "enable")


def test_fastest_and_views(keras_rows):
    best = fastest(keras_rows)
    assert set(best) == {"float32", "float16", "int8"}
    for precision, runtime in best.items():
        p50 = _row(keras_rows, runtime, precision).p50_ms
        assert all(p50 <= r.p50_ms for r in keras_rows if r.ok and r.precision == precision)
    md = markdown_table(keras_rows)
    assert md.count("\n| ") == len(keras_rows) and f"fastest at int8 (batch-1 median): **{best['int8']}**" in md
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_table(keras_rows))
    text = console.export_text()
    assert "n/a" in text and "tflm float16: not applicable: TFLite Micro has no float16 kernels" in text


def test_missing_runtime_gives_a_row_with_reason(monkeypatch, digits, digits_cnn_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    rows = compare(digits_cnn_path, digits, runtimes=["openvino", "onnxruntime"], precisions=["float32"], **FAST)
    ov, ort = rows
    assert ov.status == "unavailable" and "openvino is not installed" in ov.reason and ov.p50_ms is None
    assert ort.ok


def test_tflite_input_gives_litert_and_tflm_rows(digits, digits_cnn_tflite):
    rows = compare(digits_cnn_tflite, digits, precisions=["float32", "int8"], **FAST)
    lit = _row(rows, "litert", "float32")
    assert lit.ok and lit.top1_agreement == 1.0 and lit.max_abs_diff == 0.0  # reference = itself
    assert _row(rows, "tflm", "float32").ok
    for r in rows:
        if r.runtime in ("onnxruntime", "openvino"):
            assert r.status == "n/a" and "Keras model" in r.reason
    int8 = _row(rows, "litert", "int8")  # made from the float .tflite by ai-edge-quantizer
    assert int8.ok and int8.settings["quantizer"] == "ai-edge-quantizer", int8.reason
    assert int8.accuracy >= lit.accuracy - 0.02 and int8.size_bytes < lit.size_bytes


def test_onnx_input_gives_ort_and_openvino_rows(digits, tmp_path, digits_cnn_path):
    from edgeopt.export.onnx import keras_to_onnx
    from edgeopt.model_io import load_keras

    onnx_path = keras_to_onnx(load_keras(digits_cnn_path), tmp_path / "cnn.onnx")
    rows = compare(onnx_path, digits, precisions=["float32", "int8"], **FAST)
    assert all(r.ok for r in rows if r.runtime in ("onnxruntime", "openvino"))
    lit = _row(rows, "litert", "float32")
    assert lit.status == "n/a" and "onnx" in lit.reason.lower()
    assert _row(rows, "tflm", "float32").status == "n/a"  # no .tflite from an .onnx: not a failure


def test_cli_compare_json_and_out(tmp_path, digits_cnn_path):
    from typer.testing import CliRunner

    from edgeopt.cli import app

    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", str(digits_cnn_path), "--data", "digits", "--runtimes",
                                      "litert,ort", "--precisions", "fp32,int8", "--runs", "5", "--json",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [(r["runtime"], r["precision"]) for r in payload["rows"]] == [
        ("litert", "float32"), ("litert", "int8"), ("onnxruntime", "float32"), ("onnxruntime", "int8")]
    assert all(r["status"] == "ok" for r in payload["rows"])
    assert json.loads((out / "compare.json").read_text())["fastest"] == payload["fastest"]
    assert {p.name for p in out.iterdir()} >= {"float32.tflite", "int8.tflite", "float32.onnx",
                                               "int8.onnx", "compare.json"}


def test_cli_compare_table_and_bad_input(tmp_path, digits_cnn_path, capsys):
    from edgeopt.cli import main

    code = main(["compare", str(digits_cnn_path), "--data", "digits", "--runtimes", "litert",
                 "--precisions", "float32", "--runs", "5"])
    out = capsys.readouterr()
    assert code == 0 and "fastest at float32: litert" in out.out and "p50 ms" in out.out
    assert main(["compare", str(digits_cnn_path), "--data", "digits", "--precisions", "fp8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --precisions 'fp8': compare cannot make 'fp8' rows; choose from float32, float16, "
                   "int8, dynamic"]
    assert main(["compare", str(digits_cnn_path), "--data", "digits", "--runtimes", "tensorrt"]) == 2
    assert "unknown runtime 'tensorrt'" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nope.keras"), "--data", "digits"]) == 2
    assert "model not found" in capsys.readouterr().err


class EchoLiteRT:
    """A runtime defined in a test: LiteRT's sessions under another name (one class + one registry line)."""

    name = "echo"
    formats = (".tflite",)

    def info(self):
        from edgeopt.runtimes.base import RuntimeInfo

        return RuntimeInfo(self.name, "0.1", True)

    def load(self, path, threads: int = 1):
        from edgeopt.runtimes.litert import LiteRT

        return LiteRT().load(path, threads)


def test_a_registered_runtime_shows_up_in_compare(monkeypatch, digits, digits_cnn_tflite):
    from edgeopt.runtimes import registry

    monkeypatch.setitem(registry.RUNTIMES, "echo", f"{__name__}:EchoLiteRT")  # the one registry line
    rows = compare(digits_cnn_tflite, digits, precisions=["float32"], **FAST)
    assert [r.runtime for r in rows] == ["litert", "onnxruntime", "openvino", "tflm", "echo"]
    echo, lit = _row(rows, "echo", "float32"), _row(rows, "litert", "float32")
    assert echo.ok and echo.runtime_version == "0.1" and echo.p50_ms > 0
    assert echo.accuracy == lit.accuracy and echo.top1_agreement == 1.0
    assert registry.runtimes_for(digits_cnn_tflite) == ["litert", "tflm", "echo"]


def _corpus_files(name: str, folder, keys: dict[str, str] | None = None, samples: int = 48):
    """A corpus model saved as model.keras and ``samples`` rows of data.npz, labels made from the
    model's own outputs; ``keys`` renames .npz keys (input/output name -> key)."""
    import numpy as np

    import model_corpus as mc

    model, x, _ = mc.build(name)
    rng = np.random.default_rng(1)
    xs = {k: rng.normal(size=(samples,) + v.shape[1:]).astype(np.float32) for k, v in x.items()}
    out = dict(zip(model.output_names, model.predict([xs[k] for k in xs], verbose=0)))
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    arrays = {**xs, "flag": (out["flag"][:, 0] > 0.5).astype(np.int64),
              "pos": out["pos"] + rng.normal(scale=0.1, size=out["pos"].shape).astype(np.float32)}
    np.savez(folder / "data.npz", **{(keys or {}).get(k, k): v for k, v in arrays.items()})
    return model


@pytest.mark.slow
def test_two_inputs_two_outputs_compare_against_keras(tmp_path):
    """Two inputs (under other .npz keys, given with --x-key) and two outputs (--output pos, a
    regression): every runtime's float32 row scores what Keras scores, computed here."""
    import numpy as np

    from edgeopt import api
    from edgeopt.cli import main

    folder = tmp_path / "m"
    model = _corpus_files("two_in_two_out", folder, keys={"a": "first", "b": "second"})
    path, data = folder / "model.keras", folder / "data.npz"
    code = main(["compare", str(path), "-d", str(data), "--x-key", "first,second", "--output", "pos",
                 "--precisions", "float32,int8", "--runs", "3", "--json", "--out", str(tmp_path / "cmp")])
    assert code == 0
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]
    _, ds, _ = api.prepare(path, data, x_key="first,second", output="pos")
    flag, pos = model.predict(ds.x_eval.as_list(), verbose=0)
    want_mae = float(np.abs(pos - ds.y_eval["pos"]).mean())
    want_flag = float(((flag[:, 0] > 0.5) == ds.y_eval["flag"]).mean())
    assert [(r["runtime"], r["precision"]) for r in rows] == [
        (rt, p) for rt in ("litert", "onnxruntime", "openvino", "tflm") for p in ("float32", "int8")]
    for r in rows:
        assert r["status"] == "ok", (r["runtime"], r["precision"], r["reason"])
        assert r["metric"] == "mae" and r["metrics"]["output"] == "pos"
        assert set(r["metrics"]["per_output"]) == {"flag", "pos"}
        if r["precision"] == "float32":
            assert r["score"] == pytest.approx(want_mae, abs=1e-4), r["runtime"]
            assert r["metrics"]["per_output"]["flag"]["accuracy"] == want_flag, r["runtime"]
            assert r["max_abs_diff"] < 1e-4, r["runtime"]
        else:
            assert r["max_abs_diff"] > 1e-6 and r["score"] == pytest.approx(want_mae, abs=0.1), r["runtime"]


@pytest.mark.slow
def test_tflm_tells_not_applicable_from_failed(tmp_path):
    """GELU has no TFLite Micro kernel: float32 and int8 rows fail with TFLM's whole reason; float16
    and dynamic .tflite are formats TFLM does not take: not applicable."""
    import numpy as np

    import model_corpus as mc

    model, x, task = mc.build("layernorm_gelu_mlp")
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "data.npz", x=np.concatenate([x] * 3), y=np.concatenate([task.y] * 3))
    from edgeopt.api import prepare

    loaded, ds, _ = prepare(tmp_path / "model.keras", tmp_path / "data.npz")
    rows = compare(loaded, ds, runtimes=["tflm"], precisions=["float32", "float16", "int8", "dynamic"], **FAST)
    by = {r.precision.value: r for r in rows}
    for p in ("float32", "int8"):
        assert by[p].status == "failed" and by[p].reason.endswith("Didn't find op for builtin opcode 'GELU'"), \
            by[p].reason
    assert by["float16"].status == "n/a" and by["float16"].reason.startswith("TFLite Micro has no float16 kernels")
    assert by["dynamic"].status == "n/a" and "dynamic-range" in by["dynamic"].reason
    from rich.console import Console

    console = Console(width=400, record=True)
    console.print(render_table(rows))
    text = console.export_text()
    assert "tflm float32: failed: TFLite Micro cannot load float32.tflite" in text
    assert "tflm dynamic: not applicable: " in text
