"""End to end: optimize a small model, then export its int8 variant (which edgeopt ran in TFLite Micro)
and compute its footprint through the CLI."""
import json
import shutil

import pytest

from edgeopt.cli import main

from stub_compile import compile_tflm_program

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, slide_mlp_path):
    out = tmp_path_factory.mktemp("e2e") / "run"
    assert main(["optimize", str(slide_mlp_path), "--data", "blobs2d", "--recipe", "int8", "--out", str(out),
                 "--runs", "5"]) in (0, None)
    return out


def _variant(run_dir, name):
    record = json.loads((run_dir / "run.json").read_text())
    return next(v for v in record["variants"] if v["name"] == name)


def test_variant_run_in_tflm_exports_with_exactly_its_ops(run_dir, tmp_path, capsys):
    from edgeopt.export.tflm_ops import tflm_resolver_methods
    from edgeopt.measure.graph import profile_tflite

    v = _variant(run_dir, "int8")
    graph = v.get("graph") or v["metrics"]
    assert graph.get("tflm_arena_bytes"), "optimize did not run the variant in TFLite Micro"
    assert main(["export", str(run_dir), "int8", "--out", str(tmp_path), "--data", "blobs2d"]) in (0, None)
    (ino,) = tmp_path.glob("*.ino")
    sketch = ino.read_text()
    ops = {o.op_type for o in profile_tflite(run_dir / v["artifact"], measure_arena=False).ops}
    listed = {line.strip()[len("resolver."):-3] for line in sketch.splitlines() if line.strip().startswith("resolver.")}
    assert listed == {tflm_resolver_methods()[o] for o in ops}
    assert "the first sample of the data" in sketch  # the blobs2d sample, not zeros
    if shutil.which("g++"):
        compile_tflm_program(ino, tmp_path, arduino=True)


def test_footprint_cli(run_dir, capsys):
    capsys.readouterr()
    code = main(["footprint", str(run_dir), "--device", "stm32h7a3", "--inferences-per-day", "100000",
                 "--variant", "int8", "--json"])
    assert code in (0, None)
    result = json.loads(capsys.readouterr().out)
    assert result["device"]["energy_kwh_per_year"] > 0 and result["cloud"]["energy_kwh_per_year"] > 0
    assert result["device"]["lower_bound"] is True  # the catalogue has no idle power for this board
    code = main(["footprint", str(run_dir), "--device", "stm32h7a3", "--inferences-per-day", "1000",
                 "--cloud", "aws-x9"])
    assert code == 2 and capsys.readouterr().err.startswith("error: unknown cloud instance 'aws-x9'")
    assert main(["footprint", str(run_dir), "--device", "stm32h7a3", "--inferences-per-day", "1000"]) in (0, None)
    out = capsys.readouterr().out
    assert "CO2e" in out and "Strubell" in out
