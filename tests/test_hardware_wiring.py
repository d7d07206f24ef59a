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
