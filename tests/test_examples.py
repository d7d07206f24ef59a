"""The four case studies in examples/, each run once at reduced size (--small), with their headline
numbers checked: accuracy above chance by a margin, int8 within 2 points of float32, the
microcontroller variant fits its board; plus the waste-sorter app (CLI, HTTP API, page in headless
Chromium). Each example trains a small model, so the whole file takes a few minutes: marked slow."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytestmark = pytest.mark.slow


def _load(name: str):
    """examples/<name>/run.py as module example_<name> (every example's script is called run.py)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / name / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name: str, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp(name)
    results = _load(name).main(["--small", "--out", str(out)])
    assert json.loads((out / "results.json").read_text())["example"] == name
    assert (out / "results.md").read_text().startswith("| model |")
    for picture in results["pictures"]:
        assert Path(picture).stat().st_size > 1000
    return results


def _int8_close(results: dict) -> None:
    drop = results["float32_accuracy"] - results["int8_accuracy"]
    assert drop <= 0.02 + 1e-9, f"int8 lost {drop * 100:.1f} points"


@pytest.fixture(scope="module")
def kws(tmp_path_factory):
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("needs espeak-ng and sox (apt-get install -y -q espeak-ng sox)")
    return _run("kws", tmp_path_factory)


def test_kws_accuracy_fit_and_deployables(kws):
    assert kws["int8_accuracy"] > kws["chance"] + 0.4
    _int8_close(kws)
    assert kws["fits"] is True and kws["device"] == "arduino-nano-33-ble-sense"
    assert 0 < kws["tflm_arena_bytes"] < 256 * 1024
    est = kws["estimate"]
    assert est["latency_ms"] > 0 and est["energy_mj"] > 0
    life = est["battery_life_range_h"]  # a range: the board's sleep power is not in any source
    assert (est["battery_life_h"] or life["high"] or 0) > 0 and (life["low"] or 0) > 0
    files = {Path(p).name: Path(p) for p in kws["deploy_files"]}
    assert {"kws_model.h", "kws_model.cc", "kws_model.ino", "feature_params.h"} <= set(files)
    header = files["feature_params.h"].read_text()
    assert "kNumMfcc = 10;" in header and "kHopLength = 320;" in header and '"yes"' in header
    assert "resolver.AddDepthwiseConv2D();" in files["kws_model.ino"].read_text()


@pytest.fixture(scope="module")
def gesture(tmp_path_factory):
    return _run("gesture", tmp_path_factory)


def test_gesture_accuracy_and_fit(gesture):
    assert gesture["int8_accuracy"] > gesture["chance"] + 0.4
    _int8_close(gesture)
    assert gesture["fits"] is True and gesture["estimate"]["latency_ms"] > 0
    assert "CONV_2D" in gesture["ops"]  # the Conv1D layers reach TFLite as CONV_2D


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    return _run("detection", tmp_path_factory)


def test_detection_map_int8_and_edge_tpu(detection):
    assert detection["float32"]["map50"] > 0.25
    assert detection["float32"]["map50"] - detection["int8"]["map50"] <= 0.02 + 1e-9
    ops = {o["op"]: o for o in detection["edge_tpu_ops"]}
    assert ops["CONV_2D"]["dtypes"] == ["int8"] and ops["CONV_2D"]["edge_tpu"]
    tpu = detection["estimates"]["int8@coral-usb-accelerator"]
    assert tpu["runnable"] and not tpu["blockers"]
    assert any("full-int8" in b for b in detection["estimates"]["float32@coral-usb-accelerator"]["blockers"])
    assert detection["estimates"]["int8@raspberry-pi-4"]["latency_ms"] > 0


def test_detection_metric_is_exact_on_ground_truth():
    sys.path.insert(0, str(EXAMPLES / "detection"))
    from metric import metric
    from shapes import make_set

    _, y = make_set(20, seed=3)
    assert metric(y, y)["map50"] == pytest.approx(1.0)
    empty = metric(y, y * 0)
    assert empty["map50"] == 0.0 and empty["detections"] == 0


@pytest.fixture(scope="module")
def waste(tmp_path_factory):
    return _run("waste_sorter", tmp_path_factory)


def test_waste_sorter_accuracy(waste):
    assert waste["int8_accuracy"] > waste["chance"] + 0.4
    _int8_close(waste)
    answers = waste["app"]["answers"]
    assert set(answers) == set(waste["subclasses"])
    for answer in answers.values():
        assert set(answer) == {"waste_type", "subclass", "confidence", "motor_1", "motor_2"}


def _app():
    sys.path.insert(0, str(EXAMPLES / "waste_sorter"))
    import app

    return app


def test_waste_sorter_cli(waste, capsys, tmp_path):
    app = _app()
    config = waste["config"]
    photo = Path(config).parent / "samples" / "leaf.png"
    assert app.main(["classify", str(photo), "--config", config]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("waste type: ") and ", motor 1: O" in line and ", motor 2: O" in line
    assert app.main(["classify", str(tmp_path / "none.png"), "--config", config]) == 2
    assert capsys.readouterr().err.startswith("error: photo not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: nowhere.tflite\nclasses: []\nmotors: {}\n")
    assert app.main(["classify", str(photo), "--config", str(bad)]) == 2
    assert "not found" in capsys.readouterr().err


def test_waste_sorter_page_in_headless_chromium(waste):
    app = _app()
    sys.path.insert(0, str(EXAMPLES / "waste_sorter"))
    import browser

    if browser.chromium() is None:
        pytest.skip("needs chromium (apt-get install -y -q chromium)")
    sorter = app.Sorter(app.load_config(Path(waste["config"])))
    server = app.make_server(sorter, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        expected = waste["app"]["answers"]["can"]
        dom = browser.dump_dom(f"{base}/?sample=can.png")  # the page's script fills the table
        assert f'<td id="subclass">{expected["subclass"]}</td>' in dom
        assert f'<td id="waste-type">{expected["waste_type"]}</td>' in dom
        state = "ON" if expected["motor_2"] else "OFF"
        assert f"<th>motor 2</th><td class=\"{state.lower()}\">{state}</td>" in dom
        photo = (Path(waste["config"]).parent / "samples" / "can.png").read_bytes()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/api/classify", data=photo)) as resp:
            assert json.loads(resp.read()) == expected
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(f"{base}/api/classify", data=b"not an image"))
        assert err.value.code == 400 and "not an image" in json.loads(err.value.read())["error"]
    finally:
        server.shutdown()
        server.server_close()
