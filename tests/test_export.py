import shutil
import subprocess
from pathlib import Path

import pytest

from edgeopt.errors import UserError
from edgeopt.export.c_array import c_array_source, export_mcu

from conftest import MLPERF_DIR

KWS = MLPERF_DIR / "kws_ref_model.tflite"


def test_c_array_round_trip():
    header, source = c_array_source(bytes(range(30)), "m")
    assert "extern const unsigned char m[];" in header
    values = [int(t, 16) for t in source.split("{")[1].split("}")[0].replace("\n", " ").split(",")]
    assert values == list(range(30)) and "m_len = 30;" in source


@pytest.mark.skipif(not KWS.exists(), reason="shared MLPerf Tiny models not present")
def test_export_kws_compiles_and_lists_ops(tmp_path):
    h, cc, ino = export_mcu(KWS, tmp_path, "kws")
    sketch = ino.read_text()
    for method in ("AddConv2D", "AddDepthwiseConv2D", "AddFullyConnected", "AddAveragePool2D", "AddSoftmax",
                   "AddReshape"):
        assert f"resolver.{method}();" in sketch
    arena = int(sketch.split("kArenaSize = ")[1].split(";")[0])
    assert arena >= 24272 and arena % 1024 == 0  # measured arena + margin
    if shutil.which("g++"):
        subprocess.run(["g++", "-std=c++17", "-c", str(cc), "-o", str(tmp_path / "kws.o")], check=True)
        assert (tmp_path / "kws.o").stat().st_size > KWS.stat().st_size


def test_export_rejects_non_tflite(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(UserError, match="needs a .tflite"):
        export_mcu(tmp_path / "m.onnx", tmp_path / "out")
