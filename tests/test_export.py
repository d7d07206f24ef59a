import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import UserError
from edgeopt.export.c_array import c_array_source, export_mcu

from conftest import MLPERF_DIR
from stub_compile import compile_tflm_program

KWS = MLPERF_DIR / "kws_ref_model.tflite"
needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def resolver_methods_in(source: str) -> list[str]:
    return re.findall(r"resolver\.(Add\w+)\(\);", source)


def test_c_array_round_trip():
    header, source = c_array_source(bytes(range(30)), "m")
    assert "extern const unsigned char m[];" in header
    values = [int(t, 16) for t in source.split("{")[1].split("}")[0].replace("\n", " ").split(",")]
    assert values == list(range(30)) and "m_len = 30;" in source


def test_tflm_table_matches_installed_package():
    """The one op table equals what the pinned tflite-micro's interpreter registers, op by op."""
    from edgeopt.export.tflm_ops import registered_op_types, tflm_op_types

    table = tflm_op_types()
    custom = [t.split(":", 1)[1] for t in table if t.startswith("CUSTOM:")]
    registered = registered_op_types(custom + ["ethos-u"])
    assert table == registered, (f"only in the table: {sorted(table - registered)}; "
                                 f"only in the package: {sorted(registered - table)}")
    assert {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "CONV_2D"} <= table and "GELU" not in table


def test_tflm_probe_tells_registered_from_missing():
    from edgeopt.export.tflm_ops import is_registered

    assert is_registered("CONV_2D") and is_registered("CUSTOM:SignalWindow")
    assert not is_registered("GELU") and not is_registered("CUSTOM:NoSuchOp")


def test_resolver_methods_parsed_from_sources():
    from edgeopt.export.tflm_ops import parse_resolver_sources

    header = """
  TfLiteStatus AddAbs(const TFLMRegistration& registration = Register_ABS()) {
    return AddBuiltin(BuiltinOperator_ABS, registration, ParseAbs);
  }
  TfLiteStatus AddWindow() {
    return AddCustom("SignalWindow", tflite::tflm_signal::Register_WINDOW());
  }
  TfLiteStatus AddGelu() { return AddBuiltin(BuiltinOperator_GELU, r, p); }
"""
    assert parse_resolver_sources(header, "AddAbs();\nAddWindow();") == (
        {"ABS": "AddAbs"}, {"SignalWindow": "AddWindow"})


@pytest.mark.skipif(not KWS.exists(), reason="shared MLPerf Tiny models not present")
def test_export_kws_compiles_and_lists_ops(tmp_path):
    h, cc, ino = export_mcu(KWS, tmp_path, "kws")
    sketch = ino.read_text()
    assert sorted(resolver_methods_in(sketch)) == sorted(
        ["AddConv2D", "AddDepthwiseConv2D", "AddFullyConnected", "AddAveragePool2D", "AddSoftmax", "AddReshape"])
    arena = int(sketch.split("kArenaSize = ")[1].split(";")[0])
    assert arena >= 24272 and arena % 1024 == 0  # measured arena + margin
    assert "static const int8_t kSampleInput[490]" in sketch and "output->data.int8[i]" in sketch
    if shutil.which("g++"):
        subprocess.run(["g++", "-std=c++17", "-c", str(cc), "-o", str(tmp_path / "kws.o")], check=True)
        assert (tmp_path / "kws.o").stat().st_size > KWS.stat().st_size
        compile_tflm_program(ino, tmp_path, arduino=True)


def test_export_rejects_non_tflite(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(UserError, match="needs a .tflite"):
        export_mcu(tmp_path / "m.onnx", tmp_path / "out")


# ------------------------------------------------------------------ issue 11 item 3: export agrees with TFLM
def _tcn(batch_size=None):
    """Case 09's kind (shared/cases/09_tcn_tflm_export.py): dilated causal Conv1D with residual adds; batch
    left open, so the converter writes dilation as SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 1), batch_size=batch_size)
    h = keras.layers.Conv1D(8, 3, padding="causal", activation="relu")(inp)
    for d in (2, 4):
        r = keras.layers.Conv1D(8, 3, padding="causal", dilation_rate=d, activation="relu")(h)
        h = keras.layers.Add()([h, r])
    h = keras.layers.GlobalMaxPooling1D()(h)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h), name="tcn")


def _int8(model, x) -> bytes:
    import tensorflow as tf
    from edgeopt.convert import keras_to_tflite

    def representative():
        for i in range(len(x)):
            yield [x[i:i + 1]]

    return keras_to_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT], representative_dataset=representative,
                           target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
                           inference_input_type=tf.int8, inference_output_type=tf.int8)


def _op_types_by_tflm_package(path: Path) -> set[str]:
    """The model's op types read with tflite-micro's own schema module (independent of edgeopt's reader)."""
    from tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    model = runtime.convert_bytearray_to_object(bytearray(path.read_bytes()))
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    return {names[runtime.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])]
            for sg in model.subgraphs for op in sg.operators}


@pytest.fixture(scope="module")
def tcn_int8(tmp_path_factory):
    x = np.random.default_rng(9).normal(0, 0.5, (32, 48, 1)).astype("float32")
    path = tmp_path_factory.mktemp("tcn") / "tcn_int8.tflite"
    path.write_bytes(_int8(_tcn(), x))
    return path, x


def test_tcn_int8_exports_with_exactly_its_ops(tcn_int8, tmp_path):
    from edgeopt.export.tflm_ops import tflm_resolver_methods
    from edgeopt.measure.tflm import measure_arena

    path, x = tcn_int8
    arena, note = measure_arena(path)
    assert arena is not None, note  # TFLite Micro runs it...
    ops = _op_types_by_tflm_package(path)
    # With static shapes the converter writes the dilated Conv1D as a dilated CONV_2D (no
    # SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND around it, as a dynamic batch needed): whatever ops the
    # artifact holds, the resolver must list exactly those.
    assert {"CONV_2D", "ADD"} <= ops
    h, cc, ino = export_mcu(path, tmp_path, "tcn", sample=x[0])  # ...so export succeeds
    sketch = ino.read_text()
    methods = resolver_methods_in(sketch)
    assert sorted(methods) == sorted({tflm_resolver_methods()[o] for o in ops})  # exactly the model's ops
    assert f"MicroMutableOpResolver<{len(methods)}>" in sketch
    assert int(sketch.split("kArenaSize = ")[1].split(";")[0]) >= arena
    sample = [int(v) for v in sketch.split("kSampleInput[48] = {")[1].split("}")[0].split(",")]
    from ai_edge_litert.interpreter import Interpreter

    d = Interpreter(model_path=str(path)).get_input_details()[0]
    scale, zp = d["quantization"]
    assert sample == np.clip(np.round(x[0].reshape(-1) / scale + zp), -128, 127).astype(int).tolist()
    if shutil.which("g++"):
        compile_tflm_program(ino, tmp_path, arduino=True)


def test_export_names_the_missing_op(tmp_path):
    """A model TFLM cannot run is refused naming the op (GELU), not with a hint to quantize."""
    import keras
    import tensorflow as tf
    from edgeopt.convert import keras_to_tflite

    inp = keras.Input((4,), batch_size=1)
    model = keras.Model(inp, keras.layers.Dense(3, activation="gelu")(inp))
    path = tmp_path / "gelu.tflite"
    path.write_bytes(keras_to_tflite(model))
    from edgeopt.measure.graph import profile_tflite

    if "GELU" not in {o.op_type for o in profile_tflite(path).ops}:
        pytest.skip("converter decomposed GELU")
    with pytest.raises(UserError, match="no kernel for GELU") as err:
        export_mcu(path, tmp_path / "out")
    assert "int8" not in str(err.value) and not (tmp_path / "out").exists()


MLPERF_MODELS = sorted(MLPERF_DIR.glob("*.tflite")) if MLPERF_DIR.exists() else []


@pytest.mark.parametrize("path", MLPERF_MODELS, ids=lambda p: p.stem)
def test_every_model_tflm_runs_exports_with_exactly_its_ops(path, tmp_path):
    """Corpus check: a model the TFLM host interpreter runs always exports, with exactly its ops."""
    from edgeopt.export.tflm_ops import tflm_resolver_methods
    from edgeopt.measure.tflm import measure_arena

    arena, note = measure_arena(path)
    assert arena is not None, note
    sketch = export_mcu(path, tmp_path, "m")[2].read_text()
    assert sorted(resolver_methods_in(sketch)) == sorted(
        {tflm_resolver_methods()[o] for o in _op_types_by_tflm_package(path)})
