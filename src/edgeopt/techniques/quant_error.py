"""Per-layer quantization error: each quantized model tensor against the float model's.

Two paths, one row format (``{tensor, op, snr_db, cosine, dtype}`` in graph order):

- ai-edge-quantizer's own validation (``model_validator.compare_model``, what ``Quantizer.validate``
  runs) when it covers the case: the quantized model has the float model's graph (models made by
  ai-edge-quantizer: percentile calibration, int4 weights, mixed precision) and one signature.
  Rows hold each tensor's SNR over all samples (dB) and its mean per-sample cosine similarity.
- otherwise (models made by the TFLite converter, whose fused tensors change shape so
  compare_model refuses them), both .tflite files run in LiteRT with every intermediate tensor
  kept; activations are matched by name (the converter keeps the float model's names, adding a
  suffix to tensors it splits), integer tensors are dequantized, and each pair gives an SNR and a
  cosine over the whole batch.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# SNR of a tensor with zero error is infinite; reported as this cap (float32 holds ~150 dB).
SNR_CAP_DB = 150.0
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
# Suffixes the converter appends to a tensor it split off from a float one
# ("StatefulPartitionedCall:01" before the output DEQUANTIZE, "input:0_int8").
_SUFFIXES = re.compile(r"(_int8|_int16|_uint8|\d)$")


def quant_error_table(float_tflite, quant_tflite, x: np.ndarray) -> list[dict]:
    """Rows ``{tensor, op, snr_db, cosine, dtype}``, in graph order, for every activation the
    quantized model computes (op outputs; a QUANTIZE/DEQUANTIZE output counts for the op that
    feeds it) that the float model has too.

    ``float_tflite``/``quant_tflite`` are paths or bytes; ``x`` is a float32 input batch
    (a few calibration samples are enough)."""
    float_tflite, quant_tflite = _bytes(float_tflite), _bytes(quant_tflite)
    x = np.asarray(x, np.float32)
    rows = _validated_by_quantizer(float_tflite, quant_tflite, x)
    return rows if rows is not None else _matched_by_name(float_tflite, quant_tflite, x)


def _validated_by_quantizer(float_tflite: bytes, quant_tflite: bytes, x: np.ndarray) -> list[dict] | None:
    """Rows from ai-edge-quantizer's model validation, or None where it does not apply."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import model_validator
    from ai_edge_quantizer.utils.validation_utils import ValidationErrorMetric as M

    from edgeopt.convert import quiet_fds

    signatures = Interpreter(model_content=float_tflite).get_signature_list()
    if len(signatures) != 1:
        return None
    key, sig = next(iter(signatures.items()))
    if len(sig["inputs"]) != 1:
        return None
    data = {key: [{sig["inputs"][0]: x[i:i + 1]} for i in range(len(x))]}
    try:
        with quiet_fds():
            # Its runs, tensor matching and dequantization; per sample it records the noise power
            # (MSE) and the signal power, whose means give the SNR over the whole batch as the
            # name-matching path computes it. (Its own SNR metric averages per-sample ratios, adds
            # 1e-9 to the noise power and drops NaN/inf values.)
            result = model_validator.compare_model(
                float_tflite, quant_tflite, data, [M.MSE, M.SNR, M.COSINE_SIMILARITY],
                compare_fns=[_flat(lambda ref, got: float(np.mean((ref - got) ** 2))),
                             _flat(lambda ref, got: float(np.mean(ref ** 2))), _flat(cosine)],
                use_xnnpack=False, num_threads=1)
    except ValueError:  # same-named tensors of different sizes: not the float model's graph
        return None
    got = result.get_signature_comparison_result(key)
    found = {**got.intermediate_tensors, **got.output_tensors}
    rows = []
    for tensor, op, dtype in _activation_outputs(quant_tflite):
        if tensor in found:
            noise, signal = found[tensor][M.MSE.value], found[tensor][M.SNR.value]  # mean powers
            rows.append({"tensor": tensor, "op": op, "snr_db": round(_snr_from_powers(signal, noise), 2),
                         "cosine": round(found[tensor][M.COSINE_SIMILARITY.value], 6), "dtype": dtype})
    return rows or None


def _flat(metric):
    """metric(ref, got) as compare_model calls it, fn(got, ref), on equal-sized flat float64 arrays."""
    def fn(got, ref) -> float:
        got, ref = np.ravel(got).astype(np.float64), np.ravel(ref).astype(np.float64)
        if got.size != ref.size:
            raise ValueError(f"tensor sizes differ ({got.size} vs {ref.size})")
        return metric(ref, got)
    return fn


def _activation_outputs(model: bytes) -> list[tuple[str, str, str]]:
    """(tensor name, op, dtype) of every op output in graph order; a QUANTIZE/DEQUANTIZE output is
    attributed to the op (and dtype) that feeds the boundary op."""
    from edgeopt.core.tflite import read_tflite

    graph = read_tflite(model)
    producer = {o: node for node in graph.nodes for o in node.outputs}
    out = []
    for node in graph.nodes:
        source = node
        while source.op_type in _BOUNDARY_OPS and source.inputs and source.inputs[0] in producer:
            source = producer[source.inputs[0]]
        if source.op_type in _BOUNDARY_OPS:
            continue  # converts the graph input: nothing computed yet
        dtype = graph.tensors[source.outputs[0]].dtype if source.outputs else ""
        out += [(graph.tensors[o].name, source.op_type, dtype) for o in node.outputs if o >= 0]
    return out


def _matched_by_name(float_tflite: bytes, quant_tflite: bytes, x: np.ndarray) -> list[dict]:
    from edgeopt.core.tflite import tflite_op_details
    from edgeopt.techniques.calibration import activation_tensors, batch_size, preserving_interpreter, run_batch

    fl = preserving_interpreter(float_tflite)
    qu = preserving_interpreter(quant_tflite)
    x = x[: batch_size(fl.get_input_details()[0], len(x))]
    run_batch(fl, fl.get_input_details()[0], x)
    run_batch(qu, qu.get_input_details()[0], x)
    float_by_name = activation_tensors(fl, float_tflite)
    q_details = {d["index"]: d for d in qu.get_tensor_details()}
    rows = []
    for op in tflite_op_details(quant_tflite):
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
    """Signal-to-noise ratio of ``got`` against ``ref`` in dB, capped at +-SNR_CAP_DB."""
    return _snr_from_powers(float(np.sum(ref ** 2)), float(np.sum((ref - got) ** 2)))


def _snr_from_powers(signal: float, noise: float) -> float:
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
