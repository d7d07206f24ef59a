"""Estimate intervals, inference engines, accelerators, memory traffic, duty-cycle power, ranking."""
from __future__ import annotations

import csv
import json
import statistics

import pytest
import typer
from typer.testing import CliRunner

from edgeopt.errors import UserError
from edgeopt.hardware import estimator
from edgeopt.hardware.catalogue import data_file, load_devices
from edgeopt.hardware.estimator import estimate, memory_traffic
from edgeopt.hardware.recommend import Variant, recommend
from edgeopt.measure.graph_types import GraphProfile, OpStats

from conftest import MLPERF_DIR as MLPERF  # noqa: E402

needs_mlperf = pytest.mark.skipif(not (MLPERF / "results_calibration.csv").exists(),
                                  reason=f"MLPerf Tiny reference data not at {MLPERF}")

BOARD = """
devices:
  - name: sleepy-board
    class: mcu
    core: cortex-m33
    engine: x-cube-ai
    clock_mhz: 100
    ram_kb: 256
    flash_kb: 1024
    active_power_w: 0.02
    sleep_power_w: 0.00001
    wakeup_s: 0.001
    sources: {active_power_w: "my bench", sleep_power_w: "my bench", wakeup_s: "my bench"}
"""


def _int8(macs=1_000_000, out_bytes=4096, weights=2048) -> GraphProfile:
    ops = [OpStats(name="c", op_type="CONV_2D", output_shape=[1, 16, 16, 16], params=weights, macs=macs,
                   weight_bytes={"int8": weights}, activation_bytes=out_bytes, input_bytes=1024, dtype="int8"),
           OpStats(name="a", op_type="ADD", output_shape=[1, 16, 16, 16], activation_bytes=out_bytes,
                   input_bytes=2 * out_bytes, dtype="int8")]
    return GraphProfile(source="tflite", path="", ops=ops, total_macs=macs, weight_bytes={"int8": weights},
                        peak_activation_bytes=2 * out_bytes, file_bytes=weights + 1000, precision="int8")


@pytest.fixture(scope="module")
def devs():
    return load_devices(include_host=False)


@pytest.fixture(scope="module")
def app():
    from edgeopt.commands.hardware import register

    application = typer.Typer()
    register(application)
    return application


@pytest.fixture(scope="module")
def kws():
    from edgeopt.measure.graph import profile_path

    return profile_path(MLPERF / "kws_ref_model.tflite", measure_arena=False)


# --------------------------------------------------------------------------- engines and intervals
def test_op_classes_cover_the_six_issue_classes():
    assert estimator.CLASSES == ("conv", "pointwise", "depthwise", "fc", "elementwise", "pooling", "other")
    assert [estimator.op_class(t) for t in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD",
                                            "AVERAGE_POOL_2D", "SOFTMAX")] == [
        c for c in estimator.CLASSES if c != "pointwise"]


def _conv(out_shape, in_elems, macs):
    return OpStats(name="c", op_type="CONV_2D", output_shape=out_shape, macs=macs, input_bytes=in_elems,
                   activation_bytes=1, dtype="int8")


@pytest.mark.parametrize("out_shape, in_elems, macs, pointwise", [
    ([1, 25, 5, 64], 25 * 5 * 64, 25 * 5 * 64 * 64, True),        # kws 1x1, stride 1
    ([1, 16, 16, 32], 32 * 32 * 16, 16 * 16 * 32 * 16, True),     # ResNet shortcut 1x1, stride 2
    ([1, 25, 5, 64], 49 * 10, 25 * 5 * 64 * 10 * 4, False),       # kws first layer 10x4, stride 2
    ([1, 16, 16, 32], 32 * 32 * 16, 16 * 16 * 32 * 9 * 16, False),  # 3x3, stride 2
    ([1, 32, 32, 16], 32 * 32 * 16, 32 * 32 * 16 * 9 * 16, False),  # 3x3, stride 1
])
def test_pointwise_convolutions_are_told_apart_from_their_shapes(out_shape, in_elems, macs, pointwise):
    op = _conv(out_shape, in_elems, macs)
    assert estimator.is_pointwise(op) is pointwise
    assert estimator.op_class_of(op) == ("pointwise" if pointwise else "conv")


def test_pointwise_and_kxk_convolutions_get_their_own_calibrated_rates(devs):
    r = estimator.mcu_rates(devs["stm32l4r5"], "x-cube-ai", data_file("calibration.yaml"))
    assert r.basis == "calibrated" and r.rates["pointwise"] != pytest.approx(r.rates["conv"], rel=0.05)


def test_engine_changes_the_estimate_and_is_named(devs):
    prof = _int8()
    st = estimate(prof, devs["stm32l4r5"])
    tvm = estimate(prof, devs["stm32l4r5"], engine="microtvm-cmsis-nn")
    assert (st.engine, st.engine_choice, st.basis) == ("x-cube-ai", "device default", "calibrated")
    assert (tvm.engine, tvm.engine_choice) == ("microtvm-cmsis-nn", "--engine")
    assert tvm.latency_ms > 1.5 * st.latency_ms  # same board, the engine alone
    lr = st.latency_range_ms
    assert lr["low"] < st.latency_ms < lr["high"] and "calibrated" in lr["basis"]
    assert st.energy_range_mj["low"] == pytest.approx(st.active_power_w * lr["low"])


def test_engine_without_rows_gets_a_wider_stated_range(devs):
    prof = _int8()
    base = estimate(prof, devs["stm32l4r5"], engine="microtvm-cmsis-nn")
    tflm = estimate(prof, devs["stm32l4r5"], engine="tflm-cmsis-nn")
    spread = data_file("calibration.yaml")["uncalibrated"]["engine_spread_factor"]
    assert tflm.basis == "assumed" and tflm.latency_ms == pytest.approx(base.latency_ms)
    assert tflm.latency_range_ms["high"] == pytest.approx(base.latency_range_ms["high"] * spread)
    assert "no calibration for tflm-cmsis-nn" in tflm.latency_range_ms["basis"]


def test_core_without_calibration_says_so(devs):
    rp = estimate(_int8(), devs["rp2040"])  # Cortex-M0+: only a coarse published MACs/cycle range
    assert rp.basis == "coarse" and rp.latency_range_ms["low"] < rp.latency_ms < rp.latency_range_ms["high"]
    assert "coarse" in rp.latency["rates_basis"]


@needs_mlperf
def test_published_rows_fall_inside_the_interval(devs):
    """Catalogue boards with their default engine, all four models: the issue's >= 80% coverage.
    (kws on the X-CUBE-AI 9+ boards sits at the top edge: published/estimate 1.17-1.19 against a 1.16 top; vww on the L4R5 0.84 against 0.84.)"""
    from edgeopt.measure.graph import profile_path

    with open(MLPERF / "results_calibration.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["latency_ms"]]
    files = {"kws": "kws_ref_model.tflite", "vww": "vww_96_int8.tflite", "ic": "pretrainedResnet_quant.tflite",
             "ad": "ad01_int8.tflite"}
    checks = {}
    for bench, file in files.items():
        prof = profile_path(MLPERF / file, measure_arena=False)
        for name in ("stm32l4r5", "stm32h7a3", "stm32u575", "stm32u385", "nrf5340-dk", "stm32l4r5-microtvm"):
            dev = devs[name]
            pub = statistics.median(float(r["latency_ms"]) for r in rows if r["system"] in dev.mlperf_systems
                                    and r["benchmark"] == bench
                                    and (r["round"] in ("v1.2", "v1.3") or dev.engine != "x-cube-ai"))
            lr = estimate(prof, dev).latency_range_ms
            checks[bench, name] = lr["low"] <= pub <= lr["high"]
    assert sum(checks.values()) >= 0.8 * len(checks), [k for k, ok in checks.items() if not ok]


def test_unknown_engine_is_one_clear_error(app, tmp_path):
    res = CliRunner().invoke(app, ["estimate", "x.tflite", "--device", "stm32l4r5", "--engine", "tvm"])
    assert isinstance(res.exception, UserError) and "x-cube-ai" in str(res.exception)
    path = tmp_path / "d.yaml"
    path.write_text(BOARD.replace("engine: x-cube-ai", "engine: cube"))
    with pytest.raises(UserError, match="field 'engine'"):
        load_devices(path)


# --------------------------------------------------------------------------- accelerators, bounds
def test_accelerators_we_do_not_model_are_marked(devs):
    for name in ("esp32-s3", "ethos-u55-128", "hailo-8l"):
        est = estimate(_int8(), devs[name])
        assert est.accelerator and "accelerator not modelled" in est.accelerator, name


def test_peak_throughput_is_a_bound_not_a_latency(app, devs):
    est = estimate(_int8(), devs["ethos-u55-256"])  # 1 M MACs at 256 GOPS: a few microseconds at best
    assert est.basis == "lower-bound" and est.latency_range_ms["high"] is None
    assert est.energy_range_mj == {} or est.energy_range_mj["high"] is None
    from edgeopt.report.terminal import _latency

    assert _latency(est).startswith("≥") and "bound" in _latency(est)


# --------------------------------------------------------------------------- memory traffic
def test_memory_traffic_counts_weights_and_activations(devs):
    prof = _int8()
    t = memory_traffic(prof)
    assert t == {"weight_bytes": 2048, "activation_read_bytes": 1024 + 8192, "activation_write_bytes": 8192,
                 "total_bytes": 2048 + 9216 + 8192}
    pi5 = estimate(prof, devs["raspberry-pi-5"])  # 17 GB/s
    mt = pi5.memory_traffic
    assert mt["needed_gbs"] == pytest.approx(t["total_bytes"] / (pi5.latency_ms / 1e3) / 1e9)
    assert mt["device_bandwidth_gbs"] == 17.0 and mt["bound"] in ("memory-bound", "compute-bound")
    slow = devs["raspberry-pi-5"].model_copy(update={"memory_bandwidth_gbs": 0.001})
    est = estimate(prof, slow)
    assert est.memory_traffic["bound"] == "memory-bound" and any("memory-bound" in w for w in est.warnings)
    assert "unknown" in estimate(prof, devs["stm32l4r5"]).memory_traffic["bound"]


# --------------------------------------------------------------------------- duty cycle
def test_duty_cycle_with_every_figure_is_a_number(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(BOARD)
    dev = load_devices(path)["sleepy-board"]
    est = estimate(_int8(), dev, battery_mah=1000, inferences_per_hour=360)
    lat_s = est.latency_ms / 1e3
    per_hour = 360 * (0.02 * lat_s + 0.001 * 0.02) + 0.00001 * (3600 - 360 * lat_s)
    assert est.power["average_w"] == pytest.approx(per_hour / 3600)
    assert est.battery_life_h == pytest.approx(1.0 * 3600 * 3.7 / per_hour)
    lo, hi = est.power["average_w_range"]
    assert lo < est.power["average_w"] < hi  # the latency interval only
    assert est.power["figures"]["sleep_power_w"].endswith("(my bench)") and not est.power["assumptions"]


def test_missing_sleep_power_is_a_range_with_the_assumption(app, devs):
    est = estimate(_int8(), devs["stm32l4r5"], battery_mah=1000, inferences_per_hour=60)
    assert est.power["average_w"] is None and est.battery_life_h is None
    lo, hi = est.power["average_w_range"]
    assert 0 < lo < hi <= devs["stm32l4r5"].active_power_w
    assert any("sleep power unknown" in a for a in est.power["assumptions"])
    r = est.battery_life_range_h
    assert r["low"] < r["high"] and "sleep power unknown" in r["basis"]
    res = CliRunner().invoke(app, ["estimate", str(MLPERF / "kws_ref_model.tflite"), "--device", "stm32l4r5",
                                   "--battery-mah", "1000", "--inferences-per-hour", "60", "--json"])
    if res.exit_code == 0:  # needs the MLPerf model
        row = json.loads(res.stdout)[0]
        assert row["battery_life_h"] is None and row["battery_life_range_h"]["low"] > 0


# --------------------------------------------------------------------------- ranking, providers
def test_recommend_ranks_calibrated_estimates_above_lower_bounds(devs):
    prof = _int8()
    variants = [Variant("m", MLPERF / "x.tflite", {"accuracy": 0.9}, prof)]
    pick = {n: devs[n] for n in ("ethos-u55-256", "stm32h7a3", "jetson-nano")}
    recs = recommend(variants, pick)
    assert [r.device for r in recs][0] == "stm32h7a3"  # calibrated, though the bounds are "faster"
    assert any("lower bound" in reason for r in recs if r.device == "ethos-u55-256" for reason in r.reasons)


def test_a_registered_provider_takes_over_its_devices(devs):
    dev = devs["ethos-u55-128"].model_copy(update={"runtimes": ["fake-compiler"]})
    estimator.register_latency_provider(
        "fake-compiler", lambda prof, d: {"latency_ms": 0.5, "low_ms": 0.4, "high_ms": 0.6, "method": "fake"})
    try:
        est = estimate(_int8(), dev)
    finally:
        estimator._PROVIDERS.pop("fake-compiler")
    assert est.basis == "compiler" and est.latency_ms == 0.5 and est.latency_range_ms["high"] == 0.6
    assert est.accelerator is None and est.rank == estimator.BASIS_RANK["calibrated"]


@needs_mlperf
def test_cli_engine_option_in_json_and_table(app):
    model = str(MLPERF / "kws_ref_model.tflite")
    res = CliRunner().invoke(app, ["estimate", model, "--device", "stm32l4r5", "--engine", "microtvm-native", "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)[0]
    assert (row["engine"], row["engine_choice"], row["basis"]) == ("microtvm-native", "--engine", "calibrated")
    assert row["latency_range_ms"]["low"] < row["latency_ms"] < row["latency_range_ms"]["high"]
    assert row["memory_traffic"]["total_bytes"] > row["memory_traffic"]["weight_bytes"] > 0
    table = CliRunner().invoke(app, ["estimate", model, "--device", "stm32l4r5"])
    assert table.exit_code == 0 and "x-cube-ai" in table.stdout and "default" in table.stdout  # engine named
    rec = CliRunner().invoke(app, ["recommend", model, "--class", "mcu", "--engine", "microtvm-native", "--json"])
    assert rec.exit_code == 0, rec.output
    assert {r["estimate"]["engine"] for r in json.loads(rec.stdout) if r["estimate"]} == {"microtvm-native"}
