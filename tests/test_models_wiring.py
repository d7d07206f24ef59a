"""Issue 10 wired through the commands: open axes and --input-shape, several inputs, the task
inferred and recorded, fidelity for every variant, the NaN check, failures told in full.
Built from the case scripts in ../shared/cases/ (see tests/test_cases.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import UserError

CASES = Path(os.environ.get("EDGEOPT_CASES_DIR", Path(__file__).resolve().parents[2] / "shared" / "cases"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases")
    built = {}
    for name in ("05_multi_input", "10_inf_during_calibration", "12_dynamic_time_dim", "16_binary_logit_output"):
        out = root / name
        subprocess.run([sys.executable, str(CASES / f"{name}.py"), str(out)], check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"}, timeout=600)
        built[name[:2]] = out
    return built


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeopt.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def test_profile_uses_the_datas_length_or_says_what_it_assumed(cases):
    from edgeopt import api

    model, data = cases["12"] / "model.keras", cases["12"] / "data.npz"
    assumed = api.profile(model)
    assert assumed.total_macs == 96 and "profiled at [1, 4]" in assumed.notes[0]
    assert api.profile(model, data=data).total_macs == 1056  # the case README's right value
    assert api.profile(model, input_shape="16,4").total_macs == 1056
    out = _cli("profile", model, "--no-arena")
    assert out.returncode == 0 and "open axes" in out.stdout


def test_bad_input_shape_and_metric_are_one_line_before_loading(cases):
    model, data = cases["12"] / "model.keras", cases["12"] / "data.npz"
    for extra in (["--input-shape", "16;x"], ["--metric", "no_such_module:f"], ["--task", "ranking"]):
        out = _cli("optimize", model, "-d", data, "-r", "int8", *extra)
        assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    with pytest.raises(UserError, match="axis 2 must be 4"):
        from edgeopt import api

        api.bench(model, data, input_shape="16,5", runs=1)


def test_variable_length_model_converts_with_the_datas_length_and_records_it(cases, tmp_path):
    from edgeopt import api

    run = api.optimize(cases["12"] / "model.keras", cases["12"] / "data.npz", recipes=["int8"],
                       out=tmp_path / "r", runs=3, html_report=False)
    for v in run.variants:
        assert v.status == "done", v.error
        extra = v.model_dump()
        assert extra["input_shapes"] == {"input_layer": [1, 16, 4]}
        assert "fixed from the data" in extra["input_shape_note"]
        assert "fidelity" in extra["metrics"]


def test_binary_logit_is_thresholded_at_zero_and_fidelity_is_recorded_for_every_variant(cases, tmp_path):
    import keras

    from edgeopt import api

    model_path, data = cases["16"] / "model.keras", cases["16"] / "data.npz"
    m, ds, _ = api.prepare(model_path, data)
    assert ds.task == "binary" and "threshold 0" in ds.task_reason
    logits = keras.models.load_model(model_path).predict(ds.x_eval, verbose=0)[:, 0]
    want = float(((logits > 0).astype(int) == ds.y_eval).mean())
    run = api.optimize(model_path, data, recipes=["int8"], out=tmp_path / "r", runs=3, html_report=False)
    base = run.variant("float32")
    assert base.metrics.accuracy == pytest.approx(want, abs=1e-9)
    record = json.loads((run.path / "run.json").read_text())
    assert record["data"]["task"] == "binary" and "threshold 0" in record["data"]["task_reason"]
    for v in record["variants"]:
        fid = v["metrics"]["fidelity"]
        assert {"top1_agreement", "snr_db", "cosine"} <= set(fid)
    assert record["variants"][0]["metrics"]["fidelity"]["top1_agreement"] == 1.0


def test_float_model_with_nan_outputs_exits_2_naming_samples_and_layer(cases, tmp_path):
    out = _cli("optimize", cases["10"] / "model.keras", "-d", cases["10"] / "data.npz", "-r", "int8",
               "--out", tmp_path / "r", "--no-report")
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: the float model gives NaN/inf on") and "first at layer" in line
    assert not (tmp_path / "r" / "run.json").exists()


def test_two_input_model_profile_bench_and_float_variants(cases, tmp_path):
    from edgeopt import api

    model, data = cases["05"] / "model.keras", cases["05"] / "data.npz"
    with pytest.raises(UserError, match="--x-key"):
        api.bench(model, data, runs=1)
    prof = api.profile(model, data=data, x_key="x_img,x_vec")
    assert [i["name"] for i in prof.inputs] == ["image", "features"] and prof.total_macs > 0
    result = api.bench(model, data, runs=3, x_key="x_img,x_vec")
    assert result["metrics"]["fidelity"]["top1_agreement"] == 1.0
    run = api.optimize(model, data, recipes=["ptq"], out=tmp_path / "r", runs=3, html_report=False,
                       x_key="x_img,x_vec")
    for v in run.variants:
        if v.name == "mixed":  # per-op sensitivity needs one input: refused in one line
            assert v.status == "failed" and "several" not in v.error and "has 2 (image, features)" in v.error
            continue
        assert v.status == "done", (v.name, v.error)
        assert v.model_dump()["input_shapes"] == {"image": [1, 8, 8, 1], "features": [1, 5]}
        assert v.metrics.fidelity["top1_agreement"] >= 0.9  # int8 calibrated on both inputs
    assert run.variant("int8").graph.precision == "int8"
