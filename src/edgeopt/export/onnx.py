"""Keras -> ONNX, and ONNX variants made with ONNX Runtime's own tools (fp16, static and dynamic int8).

Every function writes its output atomically (temp file in the same folder, then os.replace).
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgeopt.convert import quiet_fds
from edgeopt.errors import UserError, one_line
from edgeopt.fsutil import atomic_path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")


def keras_to_onnx(model, dst: str | Path, opset: int | None = None) -> Path:
    """Export a Keras 3 model to ONNX, batch dimension left dynamic; ``opset`` None lets tf2onnx
    choose (an explicit one, e.g. 11, reproduces files made by older exporters). A model with
    several inputs keeps them (ONNX graph inputs in model input order, named like them)."""
    dst = Path(dst)
    kwargs = {} if opset is None else {"opset_version": int(opset)}
    zeros = [np.zeros(tuple(1 if d is None else d for d in t.shape), dtype=t.dtype) for t in model.inputs]
    model(zeros if len(zeros) > 1 else zeros[0])  # export needs a model that was called once
    with atomic_path(dst) as tmp, quiet_fds():
        try:
            model.export(str(tmp), format="onnx", verbose=False, **kwargs)
        except Exception as e:
            raise UserError(f"cannot export {model.name} to ONNX: {one_line(e)}") from None
    return dst


def onnx_to_fp16(src: str | Path, dst: str | Path) -> Path:
    """float16 weights and compute, float32 inputs/outputs (ONNX Runtime's float16 converter)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return Path(dst)


def ort_int8_options(cpu_flags: Iterable[str]) -> dict:
    """Static int8 settings for this CPU.

    Without VNNI, ONNX Runtime's AVX2 u8s8 kernels sum pairs of u8*s8 products into int16 and
    saturate, so weights must use 7 bits (reduce_range) or outputs go wrong (6.5% error measured on
    a MobileNetV2-style net vs 0.67%). QUInt8 activations let Conv/Add fuse into QLinear ops there.
    With VNNI (or AMX) the u8*s8 dot product accumulates straight into int32: full 8-bit weights
    are exact there, and u8 activations stay the native (fused) format.
    """
    flags = set(cpu_flags)
    vnni = any(f in flags for f in VNNI_FLAGS) or "asimddp" in flags
    from onnxruntime.quantization import QuantType

    if vnni:
        return {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8,
                "reduce_range": False, "per_channel": True,
                "why": "VNNI present: u8 activations, full 8-bit weights (int32 accumulation)"}
    return {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8,
            "reduce_range": True, "per_channel": True,
            "why": "no VNNI: u8 activations, 7-bit weights (reduce_range) to avoid AVX2 int16 overflow"}


class _Reader:
    """CalibrationDataReader over float32 samples fed in small batches: an array for a one-input
    model, or NamedArrays / a dict (one array per input) matched to ``input_names`` by name, then
    by unique shape, then in order (``core.arrays.match_inputs``)."""

    def __init__(self, input_names: list[str], x, batch: int = 32, input_shapes: list | None = None):
        from edgeopt.core.arrays import TensorInfo, as_arrays, match_inputs

        names, arrays = as_arrays(x)
        infos = [TensorInfo(n, tuple(s or ()), "float32") for n, s in
                 zip(input_names, input_shapes or [()] * len(input_names))]
        order, _ = match_inputs(names, arrays, infos)
        n = len(arrays[0])
        self._batches = iter([{name: arrays[k][i:i + batch].astype(np.float32) for name, k in zip(input_names, order)}
                              for i in range(0, n, batch)])

    def get_next(self):
        return next(self._batches, None)


def quantize_onnx_static(src: str | Path, dst: str | Path, calibration: np.ndarray,
                         cpu_flags: Iterable[str] | None = None, settings: dict | None = None) -> dict:
    """Static QDQ int8, MinMax calibration on ``calibration``; returns the settings used (so a
    report can say why).

    ``settings`` (keys activation_type / weight_type: "QUInt8" or "QInt8", reduce_range,
    per_channel, why) overrides the CPU-flag rule of :func:`ort_int8_options` key by key.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if cpu_flags is None:
        from edgeopt.measure.env import cpu_info
        cpu_flags = cpu_info()["flags"]
    opts = {**ort_int8_options(cpu_flags), **(settings or {})}
    for key in ("activation_type", "weight_type"):
        if isinstance(opts[key], str):
            opts[key] = QuantType[opts[key]]
    why = opts.pop("why")
    names, shapes = _graph_inputs(src)
    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(dst) as tmp:
        pre = _pre_process(src, Path(tmpdir))
        batch = 1 if _fixed_batch(pre) == 1 else 32
        try:
            quantize_static(str(pre), str(tmp), _Reader(names, calibration, batch, shapes),
                            quant_format=QuantFormat.QDQ, calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
                            **opts)
        except Exception as e:
            raise UserError(f"ONNX Runtime static int8 quantization failed: {one_line(e, 1000)}") from None
    return {**{k: getattr(v, "name", v) for k, v in opts.items()}, "why": why,
            "calibration_samples": int(len(calibration))}


def quantize_onnx_dynamic(src: str | Path, dst: str | Path, per_channel: bool = False) -> dict:
    """Dynamic int8: int8 weights, activations quantized at run time (no calibration)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(dst) as tmp:
        try:
            quantize_dynamic(str(_pre_process(src, Path(tmpdir))), str(tmp), weight_type=QuantType.QInt8,
                             per_channel=per_channel)
        except Exception as e:
            raise UserError(f"ONNX Runtime dynamic int8 quantization failed: {one_line(e)}") from None
    return {"weight_type": "QInt8", "per_channel": per_channel,
            "mode": "int8 weights, activations quantized at run time"}


def onnx_opset(path: str | Path) -> int:
    """The default-domain ("ai.onnx") opset an ONNX file imports (1 when it names none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def upgrade_opset(src: str | Path, dst: str | Path, opset: int) -> Path:
    """Rewrite ``src`` for the default-domain ``opset`` with onnx.version_converter (checked by
    onnx.checker); raises UserError when the converter cannot."""
    import onnx
    from onnx import version_converter

    try:
        model = version_converter.convert_version(onnx.load(str(src)), int(opset))
        onnx.checker.check_model(model)
    except Exception as e:
        raise UserError(f"cannot upgrade {Path(src).name} to opset {opset}: {one_line(e, 400)}") from None
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return Path(dst)


def _pre_process(src: str | Path, tmpdir: Path) -> Path:
    """Shape inference and graph folding before quantization (what ORT recommends); the original
    model is quantized if pre-processing fails, since it only helps."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = tmpdir / "pre.onnx"
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        return pre
    except Exception:
        return Path(src)


def _graph_inputs(path: str | Path) -> tuple[list[str], list[tuple]]:
    """Names and shapes (batch axis included, -1 where open) of an ONNX file's real inputs
    (initializers listed as inputs by old exporters are left out)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    shapes = [tuple(d.dim_value if d.dim_value > 0 else -1 for d in i.type.tensor_type.shape.dim) for i in inputs]
    return [i.name for i in inputs], shapes


def _fixed_batch(path: Path) -> int | None:
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].dim_value > 0 else None
