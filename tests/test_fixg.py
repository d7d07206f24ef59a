"""Tester-found defects in estimates, reports and measurements (fix round g)."""
from __future__ import annotations

from edgeopt.hardware.catalogue import load_devices
from edgeopt.hardware.estimator import estimate
from edgeopt.measure.graph_types import GraphProfile, OpStats


def _profile(precision: str) -> GraphProfile:
    ops = [OpStats(name="fc", op_type="FULLY_CONNECTED", output_shape=[1, 8], activation_bytes=32,
                   input_bytes=32, dtype="float32")]
    return GraphProfile(source="tflite", path="", ops=ops, precision=precision, file_bytes=4096,
                        peak_activation_bytes=64, arena_bytes=2048)


def test_float16_is_blocked_on_a_tflite_micro_board():
    est = estimate(_profile("float16"), load_devices(include_host=False)["arduino-nano-33-ble-sense"])
    assert not est.runnable
    assert any("float16 models do not run on TFLite Micro" in b and "int8, int16x8" in b for b in est.blockers)


def test_float32_is_not_blocked_by_the_precision_rule():
    est = estimate(_profile("float32"), load_devices(include_host=False)["arduino-nano-33-ble-sense"])
    assert not any("do not run on TFLite Micro" in b for b in est.blockers)


def _rec(name: str, p50: float, speedup: float | None) -> dict:
    return {"name": name, "status": "done", "vs_baseline": None if speedup is None else
            {"speedup": speedup, "accuracy_delta_points": 0.0},
            "metrics": {"accuracy": 0.9, "size_bytes": 1000, "latency_ms": {"p50_ms": p50}}}


def test_report_and_terminal_name_the_same_fastest_variant():
    """The paired speed-up ranks first (unpaired p50s drift); both summaries use analysis.speed_rank."""
    from edgeopt.engine.analysis import best_within_budget
    from edgeopt.report import view

    variants = [_rec("float32", 0.010, None), _rec("dynamic", 0.011, 1.3), _rec("int8", 0.009, 1.1)]
    record = {"settings": {"options": {}}, "variants": variants}
    picks = {p["target"]: p for p in view.summary(record)["picks"]}
    assert best_within_budget(variants, None)["fastest"] == "dynamic"
    assert picks[view.FASTEST]["variant"] == "dynamic"
    assert "1.3x speed-up" in picks[view.FASTEST]["why"]


def test_recommend_says_unknown_when_estimate_cannot_check_the_fit():
    from pathlib import Path

    from edgeopt.hardware.recommend import Variant, recommend

    devs = load_devices(include_host=False)
    assert devs["esp32-s3"].flash_kb is None  # the catalogue's gap this test relies on
    est = estimate(_profile("float32"), devs["esp32-s3"])
    assert est.fits is None and not est.blockers
    rec = recommend([Variant("m", Path("m.tflite"), {}, _profile("float32"))], {"esp32-s3": devs["esp32-s3"]})[0]
    assert rec.fit == "unknown" and not rec.feasible and rec.variant == "m"
    assert rec.reasons[0].startswith("fit unknown: flash size")


def test_throughput_times_the_prepared_runtime_call_at_the_batch_it_runs():
    import numpy as np

    from edgeopt.measure.latency import measure_throughput, prepared_batch

    class Info:
        def __init__(self, shape):
            self.shape = shape

    class Fake:
        def __init__(self, shape, static=None):
            self.inputs, self.prepared, self.predicted = [Info(shape)], [], 0
            if static is not None:
                self._static = static

        def invoke_prepared(self, x):
            self.prepared.append(len(x))
            return lambda: None

        def predict(self, x):
            self.predicted += 1

    x = np.zeros((4, 3), np.float32)
    dyn = Fake((None, 3))
    measure_throughput(dyn, x, batch=32, seconds=0.01)
    assert dyn.prepared == [32] and dyn.predicted == 0  # predict() (copies, quantize) is not timed
    fixed = Fake((1, 3), static=True)
    assert prepared_batch(fixed, 32) == 1 and prepared_batch(Fake((1, 3), static=False), 32) == 32
    measure_throughput(fixed, x, batch=32, seconds=0.01)
    assert fixed.prepared == [1]


def test_a_dynamic_variant_that_quantized_nothing_is_flagged():
    from edgeopt.engine.analysis import best_within_budget, unquantized_warning

    dyn = _rec("dynamic", 0.009, 1.2)
    dyn["details"] = {"steps": [{"step": "dynamic", "precision": "dynamic", "weight_tensors": {"float32": 3}}]}
    assert "quantized no weights" in unquantized_warning(dyn)
    dyn["details"]["steps"][0]["weight_tensors"] = {"int8": 2, "float32": 1}
    assert unquantized_warning(dyn) is None
    dyn["details"]["steps"][0]["weight_tensors"] = {"float32": 3}
    summary = best_within_budget([_rec("float32", 0.010, None), dyn], None)["summary"]
    assert "fastest dynamic" in summary and "dynamic quantized no weights" in summary


def test_a_devices_file_replaces_a_catalogue_device_and_says_so(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("devices:\n  - name: stm32u575\n    class: mcu\n    core: cortex-m33\n    clock_mhz: 10\n"
                    "    ram_kb: 1\n    flash_kb: 1\n")
    dev = load_devices(path)["stm32u575"]
    assert dev.clock_mhz == 10 and dev.origin == f"{path} (replaces the catalogue entry)"
    assert load_devices()["stm32u575"].origin == "catalogue"


def test_engine_on_a_non_mcu_device_is_refused(tmp_path):
    import pytest

    import edgeopt
    from edgeopt.errors import UserError

    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    with pytest.raises(UserError, match="raspberry-pi-4 is a sbc device, its runtimes: litert"):
        edgeopt.estimate(model, ["raspberry-pi-4"], engine="x-cube-ai")


def test_estimate_title_names_measured_rows():
    from types import SimpleNamespace as NS

    from edgeopt.report.terminal import estimates_title

    host = NS(estimate=NS(device="host-cpu", basis="measured"))
    mcu = NS(estimate=NS(device="stm32u575", basis="calibrated"))
    assert "host-cpu latency: measured" in estimates_title([host, mcu])
    assert estimates_title([mcu]).startswith("Estimates (not measurements")
