"""The public API covers every command: each function called directly on a tiny model and run."""
import importlib
import json

import pytest

import edgeopt


@pytest.fixture(scope="module")
def run(tmp_path_factory, slide_mlp_path):
    """The slide MLP optimized to int8 (5 timed runs): a small real run directory."""
    return edgeopt.optimize(slide_mlp_path, "blobs2d", recipes=["int8"], runs=5,
                            out=tmp_path_factory.mktemp("api") / "mlp")


def test_optimize_writes_the_html_report(run):
    html = (run.path / "report.html").read_text()
    assert "int8" in html and "Plotly.newPlot" in html


def test_a_report_that_fails_is_one_warning_not_a_failed_run(run, monkeypatch):
    html = importlib.import_module("edgeopt.report.html")

    def boom(*args, **kwargs):
        raise RuntimeError("template\nbroken")

    monkeypatch.setattr(html, "render_report", boom)
    lines = []
    again = edgeopt.optimize(run.model["path"], "blobs2d", recipes=["int8"], runs=5, out=run.path, log=lines.append)
    assert [v.name for v in again.variants] == ["float32", "int8"]
    warnings = [ln for ln in lines if ln.startswith("warning:")]
    assert len(warnings) == 1 and "RuntimeError: template broken" in warnings[0]


def test_api_names_are_functions_even_after_their_modules_load():
    importlib.import_module("edgeopt.compare")
    importlib.import_module("edgeopt.report.html")
    importlib.import_module("edgeopt.footprint")
    importlib.import_module("edgeopt.export.bundles")
    from edgeopt import api

    for name in ("compare", "report", "footprint", "export", "estimate", "recommend", "explain", "devices"):
        assert getattr(edgeopt, name) is getattr(api, name), name
    from edgeopt.compare import Row  # the submodule stays importable

    assert Row.__name__ == "Row"


def test_compare(slide_mlp_path):
    seen = []
    result = edgeopt.compare(slide_mlp_path, "blobs2d", runtimes=["litert"], precisions="float32,int8", runs=5,
                             progress=lambda what, i, n: seen.append((what, i, n)))
    assert [(r.runtime, r.precision.value, r.status) for r in result.rows] == [
        ("litert", "float32", "ok"), ("litert", "int8", "ok")]
    assert result.fastest == {"float32": "litert", "int8": "litert"}
    assert seen[0][1] == 0 and seen[-1] == ("litert int8", 2, 2)
    assert json.loads(result.to_json())["rows"][0]["precision"] == "float32"
    with pytest.raises(edgeopt.UserError, match="--precisions 'fp8'"):
        edgeopt.compare(slide_mlp_path, "blobs2d", precisions=["fp8"])


def test_devices():
    mcus = edgeopt.devices(device_class="mcu")
    assert mcus and all(d.device_class == "mcu" for d in mcus)
    with pytest.raises(edgeopt.UserError, match="--class must be one of"):
        edgeopt.devices(device_class="gpu")


def test_estimate(run):
    seen = []
    result = edgeopt.estimate(run.path, ["stm32h7a3", "raspberry-pi-4"], inferences_per_hour=60, battery_mah=1000,
                              progress=lambda what, i, n: seen.append(i))
    assert [(r.variant, r.estimate.device) for r in result.rows] == [
        ("float32", "stm32h7a3"), ("float32", "raspberry-pi-4"), ("int8", "stm32h7a3"), ("int8", "raspberry-pi-4")]
    row = result.to_dict()["rows"][2]
    assert row["variant"] == "int8" and row["latency_ms"] > 0 and row["power"]["inferences_per_hour"] == 60
    assert seen == [0, 1]
    with pytest.raises(edgeopt.UserError, match="--inferences-per-hour"):
        edgeopt.estimate(run.path, ["stm32h7a3"], battery_mah=1000)


def test_recommend(run):
    result = edgeopt.recommend(run.path, device_class="mcu", max_latency_ms=100)
    assert result.items and all(r.device != "host-cpu" for r in result.items)
    feasible = [r.feasible for r in result.items]
    assert feasible == sorted(feasible, reverse=True) and feasible[0]
    assert result.items[0].variant in ("float32", "int8")
    assert json.loads(result.to_json())["items"][0]["device"] == result.items[0].device


def test_explain(run):
    v = edgeopt.explain(run.path, "int8")
    assert isinstance(v, edgeopt.Variant) and v.recipe == ["int8"] and v.steps[0].config
    with pytest.raises(edgeopt.UserError, match="variants: float32, int8"):
        edgeopt.explain(run.path, "int9")


def test_export(run, tmp_path):
    result = edgeopt.export(run.path, variant="int8", target="arduino", out=tmp_path / "bundle", data="blobs2d")
    assert {p.suffix for p in result.files} >= {".h", ".cc", ".ino"}
    assert result.sample.startswith("first eval sample") and result.artifact.name.endswith(".tflite")
    with pytest.raises(edgeopt.UserError, match="no variant 'nope'; variants: float32, int8"):
        edgeopt.export(run.path, variant="nope", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_report(run, tmp_path):
    result = edgeopt.report(run.path, tmp_path / "r.html")
    assert result.path == tmp_path / "r.html" and result.size_bytes == result.path.stat().st_size > 0
    with pytest.raises(edgeopt.UserError, match="not a run directory"):
        edgeopt.report(tmp_path)


def test_footprint(run):
    fp = edgeopt.footprint(run.path, device="stm32u575", inferences_per_day=86400, variant="int8")
    assert fp.device.energy_kwh_per_year > 0 and fp.cloud.energy_kwh_per_year > fp.device.energy_kwh_per_year
    assert json.loads(json.dumps(fp.to_dict()))["inferences_per_day"] == 86400
