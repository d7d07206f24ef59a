"""Ethos-U rows from vela: edgeopt's figures equal what vela's own command line reports."""
import csv
import re
import subprocess
import sys

import pytest

from edgeopt.errors import UserError
from edgeopt.hardware.vela import compile_for_ethos_u, npu_targets, parse_cpu_fallback, vela_argv

from conftest import MLPERF_DIR

MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8", "pretrainedResnet_large_int8",
          "str_ww_ref_model"]
pytestmark = pytest.mark.skipif(not (MLPERF_DIR / "kws_ref_model.tflite").exists(),
                                reason="shared MLPerf Tiny models not present")


def vela_cli(model, target, optimise, out_dir):
    """Run the `vela` program (a separate process) and read its CSV and printed summary ourselves."""
    argv = vela_argv(model, npu_targets()[target], optimise, out_dir)
    proc = subprocess.run([sys.executable, "-m", "ethosu.vela", *argv], capture_output=True, text=True, check=True)
    (summary,) = out_dir.glob("*_summary_*.csv")
    with open(summary, newline="") as f:
        row = next(csv.DictReader(f))
    printed_sram = float(re.search(r"Total SRAM used\s+([\d.]+) KiB", proc.stdout).group(1))
    return row, printed_sram, proc.stdout


@pytest.mark.parametrize("name,target,optimise", [(m, "ethos-u55-128", "Performance") for m in MODELS]
                         + [("kws_ref_model", t, "Size") for t in ("ethos-u55-256", "ethos-u65-256", "ethos-u85-256")])
def test_vela_rows_equal_vela_cli(name, target, optimise, tmp_path):
    model = MLPERF_DIR / f"{name}.tflite"
    ours = compile_for_ethos_u(model, target, optimise)
    row, printed_sram, stdout = vela_cli(model, target, optimise, tmp_path)
    assert ours.cycles_total == int(row["cycles_total"]) > 0
    assert ours.cycles_npu == int(row["cycles_npu"])
    assert ours.inference_time_s == float(row["inference_time"])
    assert ours.sram_bytes == float(row["sram_memory_used"]) * 1024
    assert round(ours.sram_bytes / 1024, 2) == printed_sram
    off = max(float(row[c]) for c in ("off_chip_flash_memory_used", "dram_memory_used"))
    assert ours.off_chip_bytes == off * 1024
    assert ours.macs == int(row["nn_macs"])
    assert f"CPU operators = {ours.cpu_ops} " in stdout and f"NPU operators = {ours.npu_ops} " in stdout
    assert ours.cpu_ops == 0 and not ours.cpu_fallback  # the reference models run fully on the NPU
    assert (ours.system_config, ours.memory_mode) == (row["system_config"], row["memory_mode"])


def test_kws_matches_measured_reference():
    """MEASURED.md: KWS on Ethos-U55-128: 89.9k cycles (0.18 ms), 21.7 KiB SRAM, 30.4 KiB flash."""
    r = compile_for_ethos_u(MLPERF_DIR / "kws_ref_model.tflite", "ethos-u55-128")
    assert round(r.cycles_total, -2) == 89900 and round(r.inference_ms, 2) == 0.18
    assert round(r.sram_bytes / 1024, 1) == 21.7 and round(r.off_chip_bytes / 1024, 1) == 30.4
    assert r.off_chip_memory == "Off-chip Flash"


def test_size_mode_trades_speed_for_sram():
    perf = compile_for_ethos_u(MLPERF_DIR / "kws_ref_model.tflite", "ethos-u55-128", "Performance")
    size = compile_for_ethos_u(MLPERF_DIR / "kws_ref_model.tflite", "ethos-u55-128", "Size")
    assert size.sram_bytes < perf.sram_bytes and size.cycles_total > perf.cycles_total


def test_cpu_fallback_reasons_parsed():
    console = """
Warning (supported operators) operator: QUANTIZE, ofm: 'tfl.quantize'
Reason: Operation has tensor with unsupported DataType Float32 (x)
Feature-map dataTypes must be one of {"INT8"}

Warning (supported operators) operator: CUMSUM, ofm: 'functional_1/Cumsum'
Reason: Unsupported opType

Network summary for m
"""
    ops = parse_cpu_fallback(console)
    assert [(o.op_type, o.output) for o in ops] == [("QUANTIZE", "tfl.quantize"), ("CUMSUM", "functional_1/Cumsum")]
    assert ops[0].reason.startswith("Operation has tensor with unsupported DataType Float32")
    assert ops[1].reason == "Unsupported opType"


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="unknown Ethos-U target"):
        compile_for_ethos_u(MLPERF_DIR / "kws_ref_model.tflite", "ethos-u99")
    with pytest.raises(UserError, match="optimise mode"):
        compile_for_ethos_u(MLPERF_DIR / "kws_ref_model.tflite", optimise="Fast")
    with pytest.raises(UserError, match="existing .tflite"):
        compile_for_ethos_u(tmp_path / "nope.tflite")


def test_ops_left_on_cpu_are_named_with_reason(tmp_path):
    """An int8 model with CUMSUM (no NPU kernel): vela's CPU ops and reasons come through."""
    import keras
    import numpy as np
    import tensorflow as tf
    from edgeopt.convert import keras_to_tflite

    inp = keras.Input((8, 8, 3), batch_size=1)
    h = keras.ops.cumsum(keras.layers.Conv2D(4, 3, activation="relu")(inp), axis=1)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h)))
    x = np.random.default_rng(0).normal(0, 0.5, (8, 8, 8, 3)).astype("float32")
    path = tmp_path / "cumsum_int8.tflite"
    path.write_bytes(keras_to_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT],
                                     representative_dataset=lambda: ([x[i:i + 1]] for i in range(8))))
    r = compile_for_ethos_u(path, "ethos-u55-128")
    assert "CUMSUM" in {o.op_type for o in r.cpu_fallback} and r.cpu_ops >= 1
    assert next(o for o in r.cpu_fallback if o.op_type == "CUMSUM").reason == "Unsupported opType"


def test_ethos_u_rows_for_estimate():
    from edgeopt.hardware.vela import ethos_u_rows

    rows, note = ethos_u_rows(MLPERF_DIR / "kws_ref_model.tflite", "int8", targets=["ethos-u55-128"])
    assert note == "" and [r["optimise"] for r in rows] == ["Performance", "Size"]
    assert rows[0]["kind"].startswith("compiler estimate") and rows[0]["cycles"] == 89900
    assert ethos_u_rows(MLPERF_DIR / "kws_ref_model.tflite", "float32") == (
        [], "Ethos-U rows need a full-int8 model (this one is float32)")


def test_estimate_of_an_ethos_u_device_is_vela_through_the_provider(tmp_path):
    """The estimator's figures for Ethos-U devices are vela's own (its CLI's CSV), both optimise modes shown."""
    from edgeopt.hardware.catalogue import load_devices
    from edgeopt.hardware.estimator import estimate
    from edgeopt.measure.graph import profile_tflite

    model = MLPERF_DIR / "kws_ref_model.tflite"
    profile = profile_tflite(model, measure_arena=False)
    devices = load_devices(include_host=False)
    for target in ("ethos-u55-128", "ethos-u65-256", "ethos-u85-256"):
        est = estimate(profile, devices[target])
        modes = {}
        for optimise in ("Performance", "Size"):
            row, _, _ = vela_cli(model, target, optimise, tmp_path / target / optimise)
            modes[optimise] = row
            fig = est.compiler[optimise.lower()]
            assert fig["cycles"] == int(row["cycles_total"]) and fig["latency_ms"] == float(row["inference_time"]) * 1e3
            assert fig["sram_bytes"] == float(row["sram_memory_used"]) * 1024
        perf = modes["Performance"]
        assert est.basis == "compiler" and est.label == "compiler estimate (Arm Vela 5.2.0)"
        assert est.latency_ms == float(perf["inference_time"]) * 1e3 and est.latency["cycles"] == int(perf["cycles_total"])
        assert est.ram["needed_bytes"] == float(perf["sram_memory_used"]) * 1024
        assert (est.compiler["system_config"], est.compiler["memory_mode"]) == (perf["system_config"], perf["memory_mode"])
        assert est.accelerator is None and est.fits is True and not est.blockers
        assert est.latency_range_ms["low"] is None and "no range" in est.latency_range_ms["basis"]
        assert est.to_dict()["compiler"]["size"]["cpu_ops"] == 0


def test_vela_provider_skips_models_it_cannot_take():
    from edgeopt.hardware.catalogue import load_devices
    from edgeopt.hardware.estimator import estimate
    from edgeopt.hardware.vela import vela_latency
    from edgeopt.measure.graph_types import GraphProfile

    devices = load_devices(include_host=False)
    float_model = GraphProfile(source="tflite", path="m.tflite", ops=[], precision="float32")
    assert vela_latency(float_model, devices["ethos-u55-128"]) is None
    est = estimate(float_model, devices["ethos-u55-128"])
    assert est.basis != "compiler" and any("full-int8" in b for b in est.blockers)
    kws = GraphProfile(source="tflite", path=str(MLPERF_DIR / "kws_ref_model.tflite"), ops=[], precision="int8")
    assert vela_latency(kws, devices["stm32h7a3"]) is None  # not an Ethos-U target


def test_recommend_ranks_ethos_u_on_vela_figures():
    from edgeopt.hardware.catalogue import load_devices
    from edgeopt.hardware.recommend import Variant, recommend
    from edgeopt.measure.graph import profile_tflite

    model = MLPERF_DIR / "kws_ref_model.tflite"
    devices = load_devices(include_host=False)
    pick = {n: devices[n] for n in ("ethos-u55-128", "jetson-nano")}
    recs = recommend([Variant("kws", model, {"accuracy": 0.9}, profile_tflite(model, measure_arena=False))],
                     pick, max_latency_ms=1.0)
    assert recs[0].device == "ethos-u55-128" and recs[0].feasible  # compiler estimate ranks above a lower bound
    assert recs[0].estimate.latency_ms == compile_for_ethos_u(model, "ethos-u55-128").inference_ms
    assert any("(compiler)" in r for r in recs[0].reasons)
