"""Wiring of the hardware estimates: one TFLM op table in the fit check, vela as the Ethos-U latency
provider, Edge TPU readiness in estimates, recommend reading run records through the engine store."""
from __future__ import annotations

import pytest

from edgeopt.export.tflm_ops import tflm_op_types
from edgeopt.hardware.catalogue import load_devices, op_list
from edgeopt.hardware.estimator import estimate
from edgeopt.measure.graph_types import GraphProfile, OpStats


def _int8_profile(*op_types: str) -> GraphProfile:
    ops = [OpStats(name=f"t{i}", op_type=t, output_shape=[1, 8, 8, 4], activation_bytes=256, input_bytes=256,
                   dtype="int8") for i, t in enumerate(op_types)]
    return GraphProfile(source="tflite", path="", ops=ops, precision="int8", file_bytes=4096,
                        peak_activation_bytes=512, arena_bytes=2048)


def test_tflm_fit_check_uses_the_one_op_table():
    assert op_list("tflm") == set(tflm_op_types())
    assert op_list("no-such-list") is None


def test_signal_and_space_to_batch_ops_are_not_falsely_blocked():
    dev = load_devices(include_host=False)["arduino-nano-33-ble-sense"]
    assert dev.constraints.op_list == "tflm"
    est = estimate(_int8_profile("CUSTOM:SignalWindow", "SPACE_TO_BATCH_ND", "CONV_2D"), dev)
    assert not [b for b in est.blockers if "not supported" in b], est.blockers
    bad = estimate(_int8_profile("CUSTOM:NoSuchKernel", "CONV_2D"), dev)
    assert any("CUSTOM:NoSuchKernel" in b for b in bad.blockers)


def test_recommend_reads_only_keys_the_engine_writes():
    """issue 9: recommend read metric keys no code wrote (top1, auc, median_ms)."""
    import inspect

    from edgeopt.core.types import Metrics
    from edgeopt.hardware import recommend as rec
    from edgeopt.runtimes.base import LatencyStats

    src = inspect.getsource(rec.measured_host_latency) + inspect.getsource(rec._accuracy)
    read = set(__import__("re").findall(r'\.get\("(\w+)"\)', src))
    assert read <= set(Metrics.model_fields) | {f.name for f in __import__("dataclasses").fields(LatencyStats)}


@pytest.mark.slow  # one small optimize run (slide MLP, int8)
def test_recommend_on_a_real_run_directory(slide_mlp_path, tmp_path):
    import edgeopt
    from edgeopt.hardware.recommend import load_targets, measured_host_latency, recommend

    run = edgeopt.optimize(slide_mlp_path, "blobs2d", recipes=["int8"], runs=5, out=tmp_path / "run")
    variants = load_targets(run.path)
    assert [v.name for v in variants] == [v.name for v in run.variants if v.done]
    for v, rv in zip(variants, run.variants):
        assert v.metrics["accuracy"] == rv.metrics.accuracy is not None
        assert measured_host_latency(v.metrics) == rv.metrics.latency_ms["p50_ms"] > 0
        assert v.graph["precision"] == rv.graph.precision
        if v.path.suffix == ".tflite" and rv.graph.tflm_arena_bytes:
            assert v.profile.arena_bytes == rv.graph.tflm_arena_bytes  # the run's measurement, reused
    devices = {n: d for n, d in load_devices(include_host=False).items() if d.device_class == "mcu"}
    recs = recommend(variants, devices)
    best = recs[0]
    assert best.feasible and best.variant == "int8"  # float32 does not run on FPU-less boards; int8 fits all
    assert best.accuracy == run.variant("int8").metrics.accuracy


def test_dynamic_range_models_are_blocked_on_tflite_micro():
    """The profiler says "dynamic" (core.precision), not "hybrid": the TFLM blocker must use that word."""
    from edgeopt.core.precision import Precision

    prof = _int8_profile("FULLY_CONNECTED")
    prof.precision = Precision.DYNAMIC.value
    est = estimate(prof, load_devices(include_host=False)["arduino-nano-33-ble-sense"])
    assert any("dynamic-range int8 models do not run on TFLite Micro" in b for b in est.blockers)


def test_device_files_use_the_one_precision_vocabulary(tmp_path):
    from edgeopt.hardware.schema import parse_device

    dev = parse_device({"name": "b", "class": "sbc", "core": "cortex-a72", "ram_kb": 1, "flash_kb": None,
                        "precisions": ["hybrid", "fp16"], "effective_gmacs": {"fp32": 2.0}}, "test")
    assert dev.precisions == ["dynamic", "float16"] and dev.effective_gmacs == {"float32": 2.0}
