"""The HTML report: reading run.json v1/v2, the device-fit adapter, escaping, and a real headless
browser (Debian's chromium; CI installs it, a machine without it skips the browser checks)."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from edgeopt.errors import UserError
from edgeopt.measure.graph_types import GraphProfile, OpStats
from edgeopt.report import devices, layers, view
from edgeopt.report.browser import chromium_path, is_blank, open_report
from edgeopt.report.html import json_for_script, render_report

needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="chromium not installed (apt-get install chromium)")

IMG = '<img src=x onerror="window.__pwned=1">'
SCRIPT = "</script><script>window.__pwned=2</script>"


# ------------------------------------------------------------------ record readers (no models)
def _variant(**over) -> dict:
    v = {"name": "int8", "recipe": ["int8"], "status": "done", "artifact": "int8/model.tflite",
         "metrics": {"accuracy": 0.9, "size_bytes": 1000, "gzip_bytes": 800,
                     "latency_ms": {"p50_ms": 0.5, "p99_ms": 0.7}, "how": {"runtime": "litert", "threads": 1},
                     "macs": 123, "tflm_arena_bytes": 2048},
         "details": {"steps": [{"step": "int8", "seconds": 1.5, "calibration": {"method": "minmax", "samples": 8},
                                "float_ops": ["MEAN"]}]},
         "vs_baseline": {"accuracy_delta_points": -0.5}}
    v.update(over)
    return v


def test_graph_facts_and_steps_read_from_v1_and_v2():
    v1 = _variant()
    assert view.graph_fact(v1, "macs") == 123
    assert view.steps(v1) == [{"step": "int8", "seconds": 1.5, "results": {},
                               "config": {"calibration": {"method": "minmax", "samples": 8}, "float_ops": ["MEAN"]}}]
    v2 = _variant(graph={"macs": 456, "tflm_arena_bytes": 4096},
                  steps=[{"step": "int8", "config": {"calibration_samples": 8, "granularity": "per-channel"}}])
    v2["metrics"] = {k: x for k, x in v2["metrics"].items() if k not in ("macs", "tflm_arena_bytes", "how")}
    v2["metrics"]["provenance"] = {"runtime": "litert", "version": "2.3.0", "threads": 1}
    assert view.graph_fact(v2, "macs") == 456 and view.graph_fact(v2, "tflm_arena_bytes") == 4096
    (step,) = view.steps(v2)
    assert step["config"] == {"calibration_samples": 8, "granularity": "per-channel"}
    assert step["seconds"] == 1.5 and step["results"]["float_ops"] == ["MEAN"]  # results from details
    assert view.provenance(v2)["version"] == "2.3.0"
    assert view.kept_float(v1) == {"MEAN": "no int8 kernel used by the converter (left float)"}


def test_read_run_rejects_what_it_cannot_read(tmp_path):
    with pytest.raises(UserError, match="not a run directory"):
        view.read_run(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        view.read_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 9, "variants": []}))
    with pytest.raises(UserError, match="schema version 9"):
        view.read_run(tmp_path)
    for version in (1, 2):
        (tmp_path / "run.json").write_text(json.dumps({"schema_version": version, "variants": []}))
        assert view.read_run(tmp_path)["schema_version"] == version


def test_summary_picks_within_the_budget_and_says_why():
    base = _variant(name="float32", vs_baseline=None)
    base["metrics"] = {**base["metrics"], "accuracy": 0.95, "size_bytes": 4000, "latency_ms": {"p50_ms": 0.4}}
    small = _variant(name="int8", vs_baseline={"accuracy_delta_points": -0.5})
    tiny_bad = _variant(name="prune+int8", vs_baseline={"accuracy_delta_points": -20.0})
    tiny_bad["metrics"] = {**tiny_bad["metrics"], "size_bytes": 10, "latency_ms": {"p50_ms": 0.1}}
    record = {"settings": {"options": {}}, "variants": [base, small, tiny_bad]}
    s = view.summary(record)
    picks = {p["target"]: p for p in s["picks"]}
    assert s["budget"] == view.DEFAULT_BUDGET_POINTS and not s["budget_given"]
    assert picks["smallest file"]["variant"] == "int8"  # prune+int8 is smaller but 20 points worse
    assert "1000.0 B" not in picks["smallest file"]["why"] and "-0.50 points" in picks["smallest file"]["why"]
    assert picks[view.FASTEST]["variant"] == "float32"
    record["settings"]["options"]["max_accuracy_drop"] = 25
    assert {p["target"]: p["variant"] for p in view.summary(record)["picks"]}["smallest file"] == "prune+int8"


def test_fine_tune_histories_are_found_in_steps():
    hist = {"history": {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "accuracy": [0.5, 0.8],
                        "val_accuracy": [0.4, 0.7]}, "diagnosis": [{"kind": "slow convergence", "detail": "d"}],
            "best_epoch": 2, "epochs": 2, "epochs_run": 2}
    v = _variant(details={"steps": [{"step": "prune", "fine_tune": hist}, {"step": "int8"}]})
    (found,) = view.fine_tune_histories(v)
    assert found["step"] == "prune" and found["diagnosis"][0]["kind"] == "slow convergence"
    assert all("fine_tune" not in s["config"] for s in view.steps(v))  # curves, not a dict dump


def test_search_history_input_is_checked():
    assert view.search_history({"variants": []}) is None
    s = view.search_history({"search": {"objectives": [{"name": "accuracy", "direction": "max"}, "size_bytes"],
                                        "trials": [{"number": 3, "params": {"sparsity": 0.5},
                                                    "values": {"accuracy": 0.9, "size_bytes": 100}}]}})
    assert s["objectives"] == ["accuracy", "size_bytes"] and s["directions"] == ["max", "max"]
    assert s["trials"][0]["state"] == "complete"
    with pytest.raises(UserError, match="'trials' list"):
        view.search_history({"search": {"trials": "nope"}})
    with pytest.raises(UserError, match="to numbers"):
        view.search_history({"search": {"trials": [{"values": {"accuracy": "high"}}]}})


def test_json_in_script_cannot_close_the_script():
    text = json_for_script(json.dumps({"name": SCRIPT + "&"}))
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(str(text))["name"] == SCRIPT + "&"


def test_report_without_artifacts_regression_and_a_failed_variant(tmp_path):
    """A v2 regression run whose artifacts are gone: the report still renders, says what is missing."""
    def reg(name, mae, size, p50, **extra):
        return {"name": name, "recipe": [name], "status": "done", "artifact": f"{name}/model.tflite",
                "metrics": {"mae": mae, "size_bytes": size, "gzip_bytes": size // 2,
                            "latency_ms": {"p50_ms": p50, "p99_ms": p50 * 2},
                            "provenance": {"runtime": "litert", "version": "2.3.0", "threads": 1}},
                "graph": {"macs": 1000, "precision": "float32"}, "steps": [{"step": name, "config": {}}], **extra}
    record = {"schema_version": 2, "name": "reg", "model": {"path": "m.keras"}, "data": {"source": "d.npz"},
              "settings": {"threads": 1, "runs": 5, "options": {}}, "environment": {"cpu": {"model": "cpu"}},
              "variants": [reg("float32", 0.10, 4000, 0.5),
                           reg("float16", 0.11, 2000, 0.5, vs_baseline={"mae_delta": 0.01}),
                           {"name": "int8", "recipe": ["int8"], "status": "failed", "error": "no int8 kernel"}]}
    (tmp_path / "run.json").write_text(json.dumps(record))
    html = render_report(tmp_path).read_text()
    assert "MAE 0.1" in html and "failed: no int8 kernel" in html
    assert "artifact float16/model.tflite not found in the run directory" in html
    assert html.count('class="plot"') == 2 and "Device fit" not in html  # no profiles: no estimates
    assert "MAE (higher is better)" in html and "a regression run: no accuracy budget" in html


def test_report_of_a_run_with_nothing_finished(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 1, "variants": [
        {"name": "float32", "status": "failed", "error": "cannot convert <model>"}]}))
    html = render_report(tmp_path).read_text()
    assert "No finished variant to plot" in html and "failed: cannot convert &lt;model&gt;" in html
    assert "model ?" in html


def test_layer_rows_join_errors_floats_sparsity_and_op_times():
    prof = _profile("int8", "int8")
    prof.ops.append(OpStats(name="fc", op_type="FULLY_CONNECTED", output_shape=[1, 10], params=90, macs=80,
                            weight_bytes={"float32": 320}, dtype="float32"))
    v = _variant(quant_errors=[{"tensor": "conv", "op": "CONV_2D", "snr_db": 40.0, "cosine": 0.9999}],
                 op_profile=[{"op": "conv", "ms": 0.3}, {"op": "fc", "ms": 0.1}],
                 details={"steps": [{"step": "mixed", "kept_float": [{"op": "FULLY_CONNECTED", "tensor": "fc",
                                                                      "reason": "sensitivity: SNR 12 dB"}]}]})
    conv, fc = layers.layer_rows(v, prof, {"conv": 0.5})
    assert conv["snr_db"] == 40.0 and conv["sparsity"] == 0.5 and conv["latency_share"] == pytest.approx(0.75)
    assert fc["float_reason"] == "sensitivity: SNR 12 dB" and fc["latency_share"] == pytest.approx(0.25)
    assert conv["mac_share"] == pytest.approx(1_000_000 / 1_000_080)


# ------------------------------------------------------------------ device adapter (catalogue, no models)
def _profile(precision: str, dtype: str, macs: int = 1_000_000) -> GraphProfile:
    op = OpStats(name="conv", op_type="CONV_2D", output_shape=[1, 16, 16, 8], params=80, macs=macs,
                 weight_bytes={dtype: 72}, activation_bytes=2048, input_bytes=256, dtype=dtype)
    return GraphProfile(source="keras", path="", ops=[op], total_params=80, total_macs=macs,
                        weight_bytes={dtype: 72}, peak_activation_bytes=2304, file_bytes=4000,
                        precision=precision, arena_bytes=6000)


def test_estimate_cell_flattens_the_estimator_result():
    from edgeopt.hardware.catalogue import load_devices

    devs = load_devices()
    cell = devices.estimate_cell(_profile("int8", "int8"), devs["stm32h7a3"], host_latency_ms=None,
                                 battery_mah=1000, inferences_per_hour=3600)
    assert cell["runs"] and cell["fits"] is True
    assert cell["ram_needed"] >= 6000 and cell["ram_capacity"] == devs["stm32h7a3"].ram_kb * 1024
    assert cell["latency_ms"] > 0 and cell["energy_mj"] > 0 and cell["battery_range"][0] > 0  # sleep power unknown: a range
    blocked = devices.estimate_cell(_profile("float32", "float32"), devs["rp2040"], host_latency_ms=None,
                                    battery_mah=None, inferences_per_hour=None)
    assert not blocked["runs"] and any("FPU" in b for b in blocked["blockers"])
    host = devices.estimate_cell(_profile("int8", "int8"), devs["host-cpu"], host_latency_ms=0.25,
                                 battery_mah=None, inferences_per_hour=None)
    assert host["latency_ms"] == 0.25


@pytest.mark.parametrize("rng, expected", [
    ({"value": 2, "low": 1, "high": 3, "basis": "x"}, (1.0, 3.0)),
    ({"value": 2, "low": 2, "high": None, "basis": "x"}, (2.0, None)),
    ({"value": 2, "low": None, "high": None, "basis": "x"}, None),
    ([0.5, float("inf")], (0.5, None)),
    ({}, None),
])
def test_intervals_keep_an_unknown_end_unknown(rng, expected):
    assert devices._interval(rng) == expected


def test_cells_carry_interval_basis_power_and_traffic():
    from edgeopt.hardware.catalogue import load_devices
    from edgeopt.report.format import fmt_interval

    devs = load_devices()
    cell = devices.estimate_cell(_profile("int8", "int8"), devs["stm32h7a3"], host_latency_ms=None,
                                 battery_mah=1000, inferences_per_hour=3600)
    lo, hi = cell["latency_range"]
    assert lo < cell["latency_ms"] < hi and cell["basis_word"] in devices.BASIS_WORDS.values()
    assert fmt_interval(cell["latency_ms"], lo, hi) == f"{cell['latency_ms']:.3g} ({lo:.3g}–{hi:.3g})"
    assert cell["power_range_mw"][0] <= cell["power_range_mw"][1] and cell["traffic"]["bytes"] > 0
    assert cell["battery_range"][0] <= cell["battery_range"][1]
    bound = devices.estimate_cell(_profile("int8", "int8"), devs["jetson-nano"], host_latency_ms=None,
                                  battery_mah=None, inferences_per_hour=None)
    assert bound["basis_word"] == "lower bound" and bound["latency_bound"] == "≥"
    assert fmt_interval(1.0, None, None) == "1" and fmt_interval(None, 1, 2) == "? (1–2)"


# ------------------------------------------------------------------ a real run
@pytest.fixture(scope="module")
def real_run(tmp_path_factory, digits_cnn_path):
    """int8 and prune+int8 of the digits CNN (2 fine-tuning epochs), measured 10 times each."""
    from edgeopt import api

    out = tmp_path_factory.mktemp("report") / "run"
    return api.optimize(digits_cnn_path, "digits", recipes=["int8", "prune,int8"], out=out, runs=10,
                        options={"epochs": 2}).path  # optimize returns the typed Run


def _copy_run(src, dst, edit) -> dict:
    shutil.copytree(src, dst)
    record = json.loads((dst / "run.json").read_text())
    edit(record)
    (dst / "run.json").write_text(json.dumps(record))
    return record


SEARCH = {"objectives": [{"name": "accuracy", "direction": "max"}, {"name": "size_bytes", "direction": "min"}],
          "trials": [{"number": i, "state": "complete" if i != 2 else "pruned", "params": {"sparsity": 0.2 * i},
                      "values": {"accuracy": 0.97 - 0.03 * i, "size_bytes": 25000 - 3000 * i}} for i in range(4)]}


@pytest.mark.slow
def test_report_of_a_real_run_has_every_section(real_run):
    html = render_report(real_run).read_text()
    for heading in ("Summary", "Trade-offs", "Device fit", "Per-layer view", "Fine-tuning", "How each variant was made",
                    "Environment and provenance"):
        assert f">{heading}" in html, heading
    assert "Search history" not in html  # only with a search
    assert html.count('class="plot"') == 3 + 1  # three trade-offs + one fine-tuning history
    assert "stm32h7a3" in html and "prune+int8" in html and "CONV_2D" in html
    # device-fit matrix: sorted by fit, filterable, intervals and how each latency is known
    fits = [int(f) for f in re.findall(r'<tr class="device-row" data-fit="(\d)"', html)]
    assert len(fits) >= 20 and fits == sorted(fits)
    assert 'id="device-filter"' in html and 'id="device-runs-only"' in html
    assert re.search(r"\d ms</?", html) and re.search(r"[\d.]+ \([\d.]+–[\d.]+\) ms", html)
    for word in ("compiler estimate", "calibrated", "lower bound", "measured", "vela: performance",
                 "mW average", "moves "):
        assert word in html, word
    assert "75.0%" in html  # the pruned weights' sparsity, read from the .tflite
    text = re.sub(r"<script.*?</script>", "", html, flags=re.S)  # the page, without plotly.js and figure JSON
    assert "{&#39;" not in text and "{'" not in text  # no Python dict reprs
    assert "<script src=" not in html and "<link " not in html


@pytest.mark.slow
def test_report_reads_the_v2_layout(real_run, tmp_path):
    def to_v2(record):  # the engine writes schema 2 itself: mark the step configs, keep graph facts out of metrics
        assert record["schema_version"] == 2
        for v in record["variants"]:
            assert not set(view.GRAPH_KEYS) & set(v["metrics"]) and v["graph"]
            v["steps"] = [{"step": s["step"], "config": {"marker_option": f"{s['step']}-config"}} for s in v["steps"]]

    record = _copy_run(real_run, tmp_path / "v2", to_v2)
    html = render_report(tmp_path / "v2").read_text()
    assert "int8-config" in html and "prune-config" in html  # configs from v2 steps
    assert "33.92k" in html  # MACs from graph, not metrics
    assert view.graph_fact(record["variants"][1], "tflm_arena_bytes") > 0
    assert "schema v2" in html


def _inject_markup(record: dict) -> None:
    record["name"] = "run " + IMG
    record["model"]["path"] = f"/tmp/{IMG}.keras"
    record["data"]["source"] = f"{SCRIPT}.npz"
    record["warnings"] = [SCRIPT]
    record["environment"]["cpu"]["model"] = IMG
    int8 = record["variants"][1]
    int8["name"] = "int8" + IMG
    int8["details"]["steps"][0]["calibration"]["method"] = IMG
    int8["quant_errors"][1]["tensor"] = IMG  # the op renamed below
    int8["details"]["steps"][0]["kept_float"] = [{"op": "CONV_2D", "tensor": IMG, "reason": SCRIPT}]
    record["variants"].append({"name": "broken" + IMG, "recipe": ["x" + IMG], "status": "failed",
                               "error": "ValueError: " + SCRIPT})
    record["search"] = {**SEARCH, "trials": SEARCH["trials"] + [
        {"number": 9, "state": IMG, "params": {"p": IMG}, "values": {"accuracy": 0.5, "size_bytes": 1}, "error": SCRIPT}]}


def _markup_report(real_run, tmp_path, monkeypatch):
    """The real run with markup in every name the report shows; op names renamed in the profile
    because Keras accepts such layer names but the TFLite converter rejects them."""
    from edgeopt.report import layers

    _copy_run(real_run, tmp_path / "evil", _inject_markup)
    original = layers.profile_variants

    def renamed(run_dir, record):
        profiles, problems = original(run_dir, record)
        for prof in profiles.values():
            prof.ops[2].name = IMG
            prof.ops[1].name = SCRIPT + ";fused"
        return profiles, problems

    monkeypatch.setattr(layers, "profile_variants", renamed)
    return render_report(tmp_path / "evil")


@pytest.mark.slow
def test_markup_in_names_and_errors_is_escaped(real_run, tmp_path, monkeypatch):
    html = _markup_report(real_run, tmp_path, monkeypatch).read_text()
    assert IMG not in html and SCRIPT not in html
    assert "&lt;img src=x onerror=" in html and "&lt;/script&gt;&lt;script&gt;" in html
    assert "Search history" in html
    if chromium_path() is None:
        pytest.skip("chromium not installed: escaping checked in the HTML only")
    page = open_report(tmp_path / "evil" / "report.html", probe=(
        "[typeof window.__pwned, document.querySelectorAll('img').length, "
        "document.body.innerText.includes('<img src=x onerror='), document.body.innerText.includes('</script>')]"))
    assert page.probe == ["undefined", 0, True, True]
    assert page.console_errors == [] and page.network_requests == []
    assert page.rendered == page.plots == 5


@needs_chromium
@pytest.mark.slow
def test_report_in_a_real_browser(real_run, tmp_path):
    _copy_run(real_run, tmp_path / "run", lambda r: r.update(search=SEARCH))
    path = render_report(tmp_path / "run")
    page = open_report(path, height=1400)
    assert page.console_errors == []
    assert page.network_requests == [], page.network_requests
    assert page.requests == [path.resolve().as_uri()]
    assert page.plots == 5 and page.rendered == 5  # trade-offs x3, fine-tuning, search
    assert not is_blank(page.screenshot)


def test_blank_screenshots_are_recognised():
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGB", (200, 100), "white")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert is_blank(buf.getvalue())
    ImageDraw.Draw(img).text((10, 10), "edgeopt report: accuracy 97.5%", fill="black")
    ImageDraw.Draw(img).rectangle((10, 40, 190, 90), outline="navy", fill="#9fb7e0")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert not is_blank(buf.getvalue())
