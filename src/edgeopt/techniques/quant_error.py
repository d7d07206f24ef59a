"""Per-layer quantization error: each quantized model tensor against the float model's.

Both .tflite files run in LiteRT with every intermediate tensor kept; activations are matched by
tensor name (the TFLite converter and ai-edge-quantizer keep the float model's names), integer
tensors are dequantized with their scale/zero point, and each pair gives an SNR and a cosine.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# SNR of a tensor with zero error is infinite; reported as this cap (float32 holds ~150 dB).
SNR_CAP_DB = 150.0
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
# Suffixes the converter appends to a tensor it split off from a float one
# ("StatefulPartitionedCall:01" before the output DEQUANTIZE, "input:0_int16").
_SUFFIXES = re.compile(r"(_int8|_int16|_uint8|\d)$")


def quant_error_table(float_tflite, quant_tflite, x: np.ndarray) -> list[dict]:
    """Rows ``{tensor, op, snr_db, cosine, dtype}``, in graph order, for every activation the
    quantized model computes (op outputs except QUANTIZE/DEQUANTIZE) that the float model has too.

    ``float_tflite``/``quant_tflite`` are paths or bytes; ``x`` is a float32 input batch
    (a few calibration samples are enough)."""
    from edgeopt.techniques.calibration import activation_tensors, preserving_interpreter, run_batch

    fl = preserving_interpreter(_bytes(float_tflite))
    qu = preserving_interpreter(_bytes(quant_tflite))
    x = np.asarray(x, np.float32)
    if fl.get_input_details()[0]["shape_signature"][0] != -1:  # static batch (1): cannot resize
        x = x[: int(fl.get_input_details()[0]["shape"][0])]
    run_batch(fl, fl.get_input_details()[0], x)
    run_batch(qu, qu.get_input_details()[0], x)
    float_by_name = activation_tensors(fl)
    q_details = {d["index"]: d for d in qu.get_tensor_details()}
    rows = []
    for op in qu._get_ops_details():
        if op["op_name"] in _BOUNDARY_OPS:
            continue
        for index in op["outputs"]:
            d = q_details.get(index)
            if d is None:
                continue
            match = _match(d["name"], float_by_name)
            if match is None:
                continue
            ref = fl.get_tensor(float_by_name[match]).astype(np.float64)
            got = _dequantize(qu.get_tensor(index), d)
            if got.shape != ref.shape:
                continue
            snr, cos = snr_db(ref, got), cosine(ref, got)
            rows.append({"tensor": d["name"], "op": op["op_name"], "snr_db": round(snr, 2),
                         "cosine": round(cos, 6), "dtype": np.dtype(d["dtype"]).name})
    return rows


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    signal = float(np.sum(ref ** 2))
    noise = float(np.sum((ref - got) ** 2))
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0:
        return -SNR_CAP_DB
    return float(min(SNR_CAP_DB, 10.0 * np.log10(signal / noise)))


def cosine(ref: np.ndarray, got: np.ndarray) -> float:
    a, b = ref.ravel(), got.ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a, b) / (na * nb))


def worst(rows: list[dict], n: int = 5) -> list[dict]:
    """The n rows with the lowest SNR."""
    return sorted(rows, key=lambda r: r["snr_db"])[:n]


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind not in "iu":
        return values.astype(np.float64)
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), np.float64)
    zps = np.asarray(params.get("zero_points", []), np.float64)
    if scales.size == 0:
        scale, zp = detail.get("quantization", (0.0, 0))
        if not scale:
            return values.astype(np.float64)
        scales, zps = np.array([scale]), np.array([zp])
    if scales.size > 1:  # per-axis (rare for activations)
        axis = int(params.get("quantized_dimension", 0))
        shape = [1] * values.ndim
        shape[axis] = -1
        scales, zps = scales.reshape(shape), zps.reshape(shape)
    return (values.astype(np.float64) - zps) * scales


def _match(name: str, float_names: dict) -> str | None:
    if name in float_names:
        return name
    stripped = _SUFFIXES.sub("", name)
    return stripped if stripped != name and stripped in float_names else None


def _bytes(model) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    return Path(model).read_bytes()
