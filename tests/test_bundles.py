"""edgeopt export --target ...: every bundle is built from a real model and checked by running or compiling it."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.cli import main
from edgeopt.errors import UserError
from edgeopt.export.bundles import export_bundle

from conftest import MLPERF_DIR
from stub_compile import compile_tflm_program

KWS = MLPERF_DIR / "kws_ref_model.tflite"
pytestmark = pytest.mark.skipif(not KWS.exists(), reason="shared MLPerf Tiny models not present")


@pytest.fixture(scope="module")
def kws_sample():
    return np.random.default_rng(0).uniform(-20, 20, (49, 10, 1)).astype(np.float32)


def litert_reference(path: Path, x: np.ndarray) -> np.ndarray:
    """The model's dequantized output for float sample X, computed here with LiteRT directly."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    s, z = d["quantization"]
    it.set_tensor(d["index"], np.clip(np.round(x / s + z), -128, 127).astype(np.int8).reshape(d["shape"]))
    it.invoke()
    s, z = o["quantization"]
    return ((it.get_tensor(o["index"]).astype(np.float32) - z) * s).reshape(-1)


def run_infer(folder: Path) -> dict:
    proc = subprocess.run([sys.executable, str(folder / "infer.py")], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_linux_litert_bundle_runs_its_script(tmp_path, kws_sample):
    files = export_bundle(KWS, "linux-litert", tmp_path, "kws", sample=kws_sample)
    assert sorted(p.name for p in files) == ["infer.py", "io.json", "model.tflite", "requirements.txt",
                                             "sample_input.npy"]
    from importlib.metadata import version

    assert (tmp_path / "requirements.txt").read_text().splitlines() == [
        f"ai-edge-litert=={version('ai-edge-litert')}", f"numpy=={version('numpy')}"]
    result = run_infer(tmp_path)
    expected = litert_reference(KWS, kws_sample)
    np.testing.assert_allclose(result["output"], expected, atol=1e-6)
    assert result["argmax"] == int(np.argmax(expected))


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_onnx_and_openvino_bundles_run(tmp_path, kws_sample, target):
    export_bundle(KWS, target, tmp_path, "kws", sample=kws_sample)
    result = run_infer(tmp_path)
    expected = litert_reference(KWS, kws_sample)
    step = json.loads((tmp_path / "io.json").read_text())["output"]["scale"]
    # other int8 kernels may round differently: within a few output quantization steps
    np.testing.assert_allclose(result["output"], expected, atol=4 * step)


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_zephyr_app_layout_compiles(tmp_path, kws_sample):
    export_bundle(KWS, "zephyr", tmp_path, "kws", sample=kws_sample)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "CMakeLists.txt", "prj.conf", "src/kws.cc", "src/kws.h", "src/main.cpp"]
    assert "CONFIG_TENSORFLOW_LITE_MICRO=y" in (tmp_path / "prj.conf").read_text()
    assert "target_sources(app PRIVATE src/main.cpp src/kws.cc)" in (tmp_path / "CMakeLists.txt").read_text()
    main_cpp = (tmp_path / "src" / "main.cpp").read_text()
    assert "resolver.AddDepthwiseConv2D();" in main_cpp and "printk(\"output[%d]" in main_cpp
    compile_tflm_program(tmp_path / "src" / "main.cpp", tmp_path)



@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.parametrize("target", ["arduino", "zephyr"])
def test_a_model_named_model_compiles_without_shadowing_its_array(tmp_path, kws_sample, target):
    """A file called model.tflite gives a C array named ``model``: the program's locals must not hide it
    (a local ``model`` passed the uninitialized pointer to GetModel; -Wshadow catches any such name)."""
    export_bundle(KWS, target, tmp_path, "model", sample=kws_sample)
    source = tmp_path / ("model.ino" if target == "arduino" else "src/main.cpp")
    assert "tflite::GetModel(model)" in source.read_text()
    compile_tflm_program(source, tmp_path, arduino=target == "arduino")

def test_ethos_u_bundle_holds_compiled_model_and_summary(tmp_path):
    export_bundle(KWS, "ethos-u", tmp_path, "kws", npu="ethos-u55-128")
    compiled = (tmp_path / "kws_vela.tflite").read_bytes()
    assert b"ethos-u" in compiled  # the NPU command stream is one ethos-u custom op
    summary = json.loads((tmp_path / "vela_summary.json").read_text())
    assert summary["cycles_total"] == 89900 and summary["kind"] == "compiler estimate (Arm Vela)"
    assert (tmp_path / "vela_summary.csv").read_text().startswith("experiment,network")


def test_ethos_u_refuses_float_model(tmp_path):
    import tflite_micro

    sine = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"
    with pytest.raises(UserError, match="full-int8 models; sine_float.tflite is float32"):
        export_bundle(sine, "ethos-u", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written, no empty folder


def test_cli_export_target_and_bad_target(tmp_path, capsys):
    code = main(["export", str(KWS), "--out", str(tmp_path / "b"), "--target", "linux-litert"])
    assert code in (0, None) and "wrote" in capsys.readouterr().out
    assert run_infer(tmp_path / "b")["argmax"] >= 0
    assert main(["export", str(KWS), "--out", str(tmp_path / "c"), "--target", "esp32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown export target 'esp32'") and not (tmp_path / "c").exists()
