"""Hardware targets: catalogue, device files, estimator (MLPerf Tiny checks), recommender, CLI."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import statistics
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgeopt.errors import UserError
from edgeopt.hardware.catalogue import data_file, get_device, load_devices
from edgeopt.hardware.estimator import estimate, estimate_arena
from edgeopt.hardware.recommend import Variant, load_run_variants, recommend
from edgeopt.measure.graph_types import GraphProfile, OpStats

from conftest import MLPERF_DIR as MLPERF  # noqa: E402
MODELS = {"kws": "kws_ref_model.tflite", "vww": "vww_96_int8.tflite",
          "ic": "pretrainedResnet_quant.tflite", "ad": "ad01_int8.tflite"}
ROOT = Path(__file__).resolve().parents[1]
needs_mlperf = pytest.mark.skipif(not (MLPERF / "results_calibration.csv").exists(),
                                  reason=f"MLPerf Tiny reference data not at {MLPERF}")
FIGURES = ("clock_mhz", "ram_kb", "flash_kb", "peak_gops", "effective_gmacs", "memory_bandwidth_gbs",
           "onchip_weight_cache_kb", "active_power_w", "idle_power_w", "sleep_power_w", "wakeup_s", "price_usd")


@pytest.fixture(scope="module")
def profiles():
    from edgeopt.measure.graph import profile_path

    return {b: profile_path(MLPERF / f, measure_arena=False) for b, f in MODELS.items()}


def _write(tmp_path, text: str, name="my_devices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


CUSTOM = """
devices:
  - name: my-board
    class: mcu
    core: cortex-m7
    clock_mhz: 560
    ram_kb: 64
    flash_kb: 256
    active_power_w: 0.2
"""


# --------------------------------------------------------------------------- catalogue
def test_catalogue_has_15_sourced_devices():
    devices = load_devices(include_host=False)
    assert len(devices) >= 15
    assert {d.device_class for d in devices.values()} >= {"mcu", "sbc", "accelerator", "npu"}
    refs = set(data_file("devices.yaml")["references"])
    fields = set(type(next(iter(devices.values()))).model_fields) | {"class"}
    for dev in devices.values():
        assert set(dev.sources) | set(dev.derived) <= fields, f"{dev.name}: source for an unknown field"
        for field in FIGURES:
            value = getattr(dev, field)
            if value not in (None, {}):
                src = dev.source_of(field)
                assert src, f"{dev.name}.{field} = {value} has no source"
                for ref in re.findall(r"\[(\d+)\]", src):
                    assert ref in refs, f"{dev.name}.{field} cites [{ref}], not in references"


def test_required_targets_present():
    names = set(load_devices())
    for want in ("arduino-nano-33-ble-sense", "stm32l4r5", "stm32h7a3", "stm32u575", "esp32-s3", "rp2040",
                 "ethos-u55-128", "raspberry-pi-4", "raspberry-pi-5", "coral-usb-accelerator", "jetson-nano",
                 "jetson-orin-nano-super", "hailo-8", "pixel-4-nnapi", "host-cpu"):
        assert want in names


def test_host_cpu_read_at_run_time():
    host = load_devices()["host-cpu"]
    assert host.cores == os.cpu_count()
    assert host.origin == "host" and host.title


def test_unknown_device_lists_close_matches():
    with pytest.raises(UserError, match="did you mean stm32l4r5"):
        get_device("stm32l4", load_devices())


def test_custom_device_constants_come_from_core_type(tmp_path, profiles):
    devices = load_devices(_write(tmp_path, CUSTOM))
    mine, h7 = devices["my-board"], devices["stm32h7a3"]
    assert mine.origin.endswith("my_devices.yaml")
    e_mine, e_h7 = estimate(profiles["kws"], mine, engine="x-cube-ai"), estimate(profiles["kws"], h7)
    # same core (Cortex-M7), same engine: latency scales with the clock only
    assert (e_mine.engine, e_mine.engine_choice, e_h7.engine_choice) == ("x-cube-ai", "--engine", "device default")
    assert e_mine.latency_ms == pytest.approx(e_h7.latency_ms * 280 / 560, rel=1e-9)
    assert e_mine.energy_mj == pytest.approx(0.2 * e_mine.latency_ms, rel=1e-9)
    default = estimate(profiles["kws"], mine)  # no engine named: the core's default, which has no rows
    assert (default.engine, default.engine_choice, default.basis) == ("tflm-cmsis-nn", "core default", "assumed")


@pytest.mark.parametrize("body, field, words", [
    ("class: mcu\n    core: cortex-m4f\n    clock_mhz: 64\n    flash_kb: 1024", "ram_kb", "missing"),
    ("class: mcu\n    core: cortex-m4f\n    clock_mhz: -64\n    ram_kb: 256\n    flash_kb: 1024", "clock_mhz",
     "greater than 0"),
    ("class: mcu\n    core: cortex-m4f\n    clock_mhz: 64\n    ram_kb: 640KB\n    flash_kb: 1024", "ram_kb", "640KB"),
    ("class: mcu\n    core: cortex-m4f\n    clock_mhz: 64\n    ram_kb: -1\n    flash_kb: 1024", "ram_kb",
     "greater than or equal to 0"),
    ("class: mcu\n    core: cortex-m4f\n    clock_mhz: 64\n    ram_kb: 256\n    flash_kb: 1024\n    ramkb: 3",
     "ramkb", "unknown field"),
    ("class: mcu\n    core: cortex-m99\n    clock_mhz: 64\n    ram_kb: 256\n    flash_kb: 1024", "core", "unknown core"),
    ("class: gpu\n    core: cortex-m4f\n    ram_kb: 1\n    flash_kb: 1", "class", "mcu"),
])
def test_bad_device_files_name_the_field(tmp_path, body, field, words):
    path = _write(tmp_path, f"devices:\n  - name: bad\n    {body}\n")
    with pytest.raises(UserError) as info:
        load_devices(path)
    msg = str(info.value)
    assert f"'{field}'" in msg and words in msg and "\n" not in msg


def test_bad_yaml_syntax_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not valid YAML"):
        load_devices(_write(tmp_path, "devices: [\n  - name: x"))


# --------------------------------------------------------------------------- MLPerf Tiny checks
def _published_medians() -> dict[tuple[str, str], float]:
    """X-CUBE-AI rows (STMicroelectronics, rounds v1.2-v1.3) per (board, benchmark), as the profiles name them."""
    devices = load_devices(include_host=False)
    with open(MLPERF / "results_calibration.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["latency_ms"] and r["submitter"] == "STMicroelectronics"
                and r["round"] in ("v1.2", "v1.3")]
    out = {}
    for board in ("stm32l4r5", "stm32h7a3", "stm32u575"):
        systems = set(devices[board].mlperf_systems)
        for bench in MODELS:
            vals = [float(r["latency_ms"]) for r in rows if r["system"] in systems and r["benchmark"] == bench]
            out[(board, bench)] = statistics.median(vals)
    return out


def _share_within(errors, tol=0.30) -> float:
    return sum(abs(e) <= tol for e in errors) / len(errors)


@needs_mlperf
def test_mlperf_latency_within_30pct_on_stm32(profiles):
    devices = load_devices(include_host=False)
    published = _published_medians()
    assert len(published) == 12
    errors = [estimate(profiles[b], devices[d]).latency_ms / ms - 1 for (d, b), ms in published.items()]
    assert _share_within(errors) >= 0.8, errors


def _calibrate_module():
    import sys

    spec = importlib.util.spec_from_file_location("calibrate_mcu", ROOT / "benchmarks" / "calibrate_mcu.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["calibrate_mcu"] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


@needs_mlperf
def test_calibration_file_holds_rates_rows_and_intervals():
    cal = data_file("calibration.yaml")
    assert cal["provenance"]["generated_by"] == "benchmarks/calibrate_mcu.py"
    engines = cal["engines"]
    assert set(engines) == {"x-cube-ai", "x-cube-ai-7", "microtvm-cmsis-nn", "microtvm-native"}
    submitters = {row.split()[1] for e in engines.values() for row in e["rows"]}
    assert submitters == {"STMicroelectronics", "Krai", "OctoML", "cTuning"}  # every submitter, not one
    assert set(cal["core_effect"]) == {"cortex-m4", "cortex-m7", "cortex-m33"}
    for e in engines.values():
        assert e["interval"]["low"] <= 1.0 <= e["interval"]["high"] and e["interval"]["n"] > 0
        assert set(e["class_effect"]) == {"conv", "pointwise", "depthwise", "fc", "elementwise", "pooling", "other"}
    # depthwise-separable blocks (pointwise + depthwise) are not costed like kxk convolutions: every
    # engine runs them slower per MAC (the split between the two is not identifiable on these models)
    ce = [e["class_effect"] for e in engines.values()]
    assert all(max(c["pointwise"], c["depthwise"]) - c["conv"] > 0.05 for c in ce), ce
    assert cal["uncalibrated"]["engine_spread_factor"] > 1.5


@needs_mlperf
def test_leave_one_submitter_out_reproduces_the_recorded_validation(profiles):
    """Redo the calibration without each submitter; the numbers in calibration.yaml must come out."""
    mod = _calibrate_module()
    devices = load_devices(include_host=False)
    points, skipped = mod.load_points([MLPERF / "results_calibration.csv"],
                                      data_file("mlperf_systems.yaml")["systems"], devices)
    assert len(points) == 92 and len(skipped) == 3  # U3C5 rows: board facts unknown
    works = {b: mod.work_by_class(p) for b, p in profiles.items()}
    loso = mod.summarize(mod.validate(points, "submitter", works, profiles, devices))
    recorded = data_file("calibration.yaml")["validation"]["leave_one_submitter_out"]
    assert mod.validation_yaml(loso)["all"] == recorded["all"]
    kept = loso["engine_calibrated"]  # rows whose engine other submitters also measured
    assert kept["within"] / kept["n"] >= 0.8 and kept["inside"] / kept["n"] >= 0.8


def _measure(path: Path) -> int:
    from edgeopt.measure.tflm import measure_arena

    return int(measure_arena(path)[0])


@needs_mlperf
@pytest.mark.parametrize("name", list(MODELS.values()) + ["pretrainedResnet_large_int8.tflite",
                                                            "str_ww_ref_model.tflite"])
def test_arena_estimate_within_5pct_of_tflm(profiles, name):
    from edgeopt.measure.graph import profile_path

    prof = profile_path(MLPERF / name, measure_arena=False)
    assert prof.arena_bytes is None
    estimated, basis, inputs = estimate_arena(prof)
    assert "persistent" in basis and inputs["persistent_bytes"] > 0
    assert estimated == pytest.approx(_measure(MLPERF / name), rel=0.05)


@needs_mlperf
def test_model_that_does_not_fit_is_reported_with_numbers(tmp_path, profiles):
    board = load_devices(_write(tmp_path, CUSTOM))["my-board"]  # 64 KB RAM, 256 KB flash
    est = estimate(profiles["vww"], board)
    assert est.fits is False
    assert any(re.search(r"arena 10\d\.\d KiB > 64\.0 KiB RAM", b) for b in est.blockers), est.blockers
    assert any(re.search(r"model 3\d\d\.\d KiB > 256\.0 KiB flash", b) for b in est.blockers), est.blockers
    fits = estimate(profiles["kws"], board)
    assert fits.fits is True and not fits.blockers


# --------------------------------------------------------------------------- blockers, energy
def _profile(precision: str, op_type: str = "CONV_2D", source: str = "tflite") -> GraphProfile:
    dtype = "int8" if precision == "int8" else ("float32" if precision != "hybrid" else "hybrid")
    ops = [OpStats(name="c", op_type=op_type, output_shape=[1, 8, 8, 16], params=160, macs=9216,
                   weight_bytes={"int8": 160}, activation_bytes=1024, input_bytes=64, dtype=dtype)]
    return GraphProfile(source=source, path="", ops=ops, total_macs=9216, weight_bytes={"int8": 160},
                        peak_activation_bytes=2048, file_bytes=4000, precision=precision)


def test_blockers_name_the_problem():
    devs = load_devices(include_host=False)
    assert "needs a full-int8 model (this one is float32)" in estimate(_profile("float32"),
                                                                        devs["coral-usb-accelerator"]).blockers
    assert any("without FPU" in b for b in estimate(_profile("float32"), devs["rp2040"]).blockers)
    assert any("TFLite Micro" in b for b in estimate(_profile("dynamic"), devs["arduino-nano-33-ble-sense"]).blockers)
    odd = estimate(_profile("int8", op_type="MY_CUSTOM_OP"), devs["arduino-nano-33-ble-sense"])
    assert any("MY_CUSTOM_OP" in b and "TFLM" in b for b in odd.blockers)
    tpu = estimate(_profile("int8", op_type="MY_CUSTOM_OP"), devs["coral-usb-accelerator"])
    assert not tpu.blockers and any("host CPU" in w for w in tpu.warnings)
    float_on_m4 = estimate(_profile("float32"), devs["stm32l4r5"])
    assert float_on_m4.latency_ms is None and any("float32 MACs/cycle" in m for m in float_on_m4.missing)


def test_energy_and_battery_life_arithmetic():
    pi4 = load_devices(include_host=False)["raspberry-pi-4"]
    est = estimate(_profile("int8"), pi4, battery_mah=1000, inferences_per_hour=3600)
    assert est.energy_mj == pytest.approx(pi4.active_power_w * est.latency_ms, rel=1e-9)
    busy = 3600 * est.latency_ms / 1e3
    per_hour = 3600 * est.energy_mj / 1e3 + pi4.idle_power_w * (3600 - busy)
    assert est.battery_life_h == pytest.approx(1.0 * 3600 * 3.7 / per_hour, rel=1e-9)
    assert not est.battery_life_is_upper_bound
    assert est.battery["battery_v"] == 3.7


def test_impossible_duty_cycle_is_a_blocker():
    dev = load_devices(include_host=False)["stm32l4r5"]
    est = estimate(_profile("int8"), dev, battery_mah=100, inferences_per_hour=1e9)
    assert any("inferences/hour" in b for b in est.blockers)


def test_missing_figures_are_named_not_invented():
    devs = load_devices(include_host=False)
    nano = estimate(_profile("int8"), devs["arduino-nano-33-ble-sense"])
    assert nano.latency_ms is not None and nano.energy_mj is None and "active power" in nano.missing
    jetson = estimate(_profile("float32"), devs["jetson-nano"])
    assert jetson.latency_is_lower_bound and "peak" in jetson.latency["method"]


# --------------------------------------------------------------------------- runs + recommend
@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "runs" / "demo"
    for name, src in (("float32", "kws_ref_model.tflite"), ("int8", "ad01_int8.tflite")):
        (run / name).mkdir(parents=True)
        shutil.copy(MLPERF / src, run / name / "model.tflite")
    (run / "run.json").write_text(json.dumps({"schema_version": 2, "name": "demo", "variants": [
        {"name": "float32", "artifact": "float32/model.tflite", "status": "done",
         "metrics": {"accuracy": 0.91, "size_bytes": 53936}},
        {"name": "int8", "artifact": "int8/model.tflite", "status": "done", "metrics": {"accuracy": 0.95}},
        {"name": "broken", "artifact": "broken/model.tflite", "status": "failed", "metrics": {}},
        {"name": "gone", "artifact": "gone/model.tflite", "status": "done", "metrics": {}},
    ]}))
    return run


@needs_mlperf
def test_load_run_variants_is_defensive(run_dir):
    got = load_run_variants(run_dir)
    assert [(n, p.name, m.get("accuracy")) for n, p, m, _ in got] == [
        ("float32", "model.tflite", 0.91), ("int8", "model.tflite", 0.95)]
    with pytest.raises(UserError, match="run.json"):
        load_run_variants(run_dir.parent)


@needs_mlperf
def test_recommend_ranks_and_picks_best_fitting_variant(profiles):
    variants = [Variant("kws", MLPERF / MODELS["kws"], {"accuracy": 0.90}, profiles["kws"]),
                Variant("vww", MLPERF / MODELS["vww"], {"accuracy": 0.80}, profiles["vww"])]
    devs = {n: d for n, d in load_devices(include_host=False).items() if d.device_class == "mcu"}
    recs = recommend(variants, devs, max_latency_ms=60)
    by_name = {r.device: r for r in recs}
    assert by_name["stm32h7a3"].feasible and by_name["stm32h7a3"].variant == "kws"
    assert not by_name["rp2040"].feasible and any("ms > 60 ms" in r for r in by_name["rp2040"].reasons)
    feasible = [r.feasible for r in recs]
    assert feasible == sorted(feasible, reverse=True)  # feasible devices first


# --------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def app():
    from edgeopt.commands.hardware import register

    application = typer.Typer()
    register(application)
    return application


def test_cli_devices_json_and_class_filter(app, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["devices", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)) >= 16
    res = runner.invoke(app, ["devices", "--class", "mcu", "--json", "--devices-file", str(_write(tmp_path, CUSTOM))])
    names = {d["name"] for d in json.loads(res.stdout)}
    assert "my-board" in names and "raspberry-pi-4" not in names
    res = runner.invoke(app, ["devices", "--class", "gpu"])
    assert isinstance(res.exception, UserError)


@needs_mlperf
def test_cli_estimate_and_errors(app):
    runner = CliRunner()
    res = runner.invoke(app, ["estimate", str(MLPERF / MODELS["kws"]), "--device", "stm32l4r5", "--device", "hailo-8",
                              "--battery-mah", "1000", "--inferences-per-hour", "60", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["device"] for r in rows] == ["stm32l4r5", "hailo-8"]
    assert rows[0]["label"] == "estimate" and rows[0]["latency"]["clock_mhz"] == 120
    assert rows[0]["ram"]["arena_bytes"] > 0 and rows[0]["battery"]["inferences_per_hour"] == 60
    res = runner.invoke(app, ["estimate", str(MLPERF / MODELS["kws"]), "--device", "stm32l4"])
    assert isinstance(res.exception, UserError) and "stm32l4r5" in str(res.exception)
    res = runner.invoke(app, ["estimate", str(MLPERF / MODELS["kws"]), "--device", "rp2040", "--battery-mah", "100"])
    assert isinstance(res.exception, UserError) and "--inferences-per-hour" in str(res.exception)
    table = runner.invoke(app, ["estimate", str(MLPERF / MODELS["kws"]), "--device", "rp2040"])
    assert table.exit_code == 0 and "rp2040" in table.stdout


@needs_mlperf
def test_cli_recommend_on_run_dir(app, run_dir):
    res = CliRunner().invoke(app, ["recommend", str(run_dir), "--max-latency-ms", "50", "--class", "mcu", "--json"])
    assert res.exit_code == 0, res.output
    recs = json.loads(res.stdout)
    top = recs[0]
    assert top["feasible"] and top["variant"] == "int8"  # the more accurate variant that fits and is fast enough
    assert all(r["device"] != "host-cpu" for r in recs)


def test_cli_classes_match_schema():
    from edgeopt.commands.hardware import CLASSES
    from edgeopt.hardware.schema import DEVICE_CLASSES

    assert CLASSES == DEVICE_CLASSES


@needs_mlperf
def test_host_cpu_uses_a_run_measured_latency(app, run_dir):
    record = json.loads((run_dir / "run.json").read_text())
    record["variants"][0]["metrics"]["latency_ms"] = {"p50_ms": 0.123}
    (run_dir / "run.json").write_text(json.dumps(record))
    res = CliRunner().invoke(app, ["estimate", str(run_dir), "--device", "host-cpu", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["variant"]: r for r in json.loads(res.stdout)}
    assert rows["float32"]["latency_ms"] == 0.123 and "measured" in rows["float32"]["label"]
    assert rows["int8"]["latency_ms"] is None and rows["int8"]["missing"]


@pytest.mark.slow
def test_arena_estimate_out_of_sample_on_a_float_cnn(digits_cnn_tflite):
    """A model the arena constants were not fitted on (float32, 8x8 digits CNN)."""
    from edgeopt.measure.graph import profile_path

    prof = profile_path(digits_cnn_tflite, measure_arena=False)
    assert prof.precision == "float32"
    assert estimate_arena(prof)[0] == pytest.approx(_measure(digits_cnn_tflite), rel=0.05)


def test_mixed_precision_model_is_blocked_on_full_int8_accelerators():
    from edgeopt.hardware.catalogue import get_device, load_devices
    from edgeopt.hardware.estimator import estimate
    from edgeopt.measure.graph_types import GraphProfile, OpStats

    ops = [OpStats("conv0", "CONV_2D", [1, 8, 8, 8], params=80, macs=4608, dtype="float32"),
           OpStats("conv1", "CONV_2D", [1, 8, 8, 8], params=584, macs=36864, dtype="int8")]
    prof = GraphProfile("tflite", "m.tflite", ops, total_params=664, total_macs=41472, precision="int8",
                        file_bytes=4000, peak_activation_bytes=1024)
    devices = load_devices()
    est = estimate(prof, get_device("coral-usb-accelerator", devices))
    assert any("1 compute op(s) are float: CONV_2D" in b for b in est.blockers)
