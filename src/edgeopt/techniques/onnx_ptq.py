"""Post-training quantization of a model that arrives as .onnx, with each runtime's own tools.

Every function has the shape ``(model_path, calib_x, out_dir, **config) -> (artifact_path,
details)``: it writes one artifact into ``out_dir``, loads it in its runtime and runs one sample
(:func:`edgeopt.techniques.artifact_check.check_artifact`) and raises
:class:`ArtifactCheckFailed` with the runtime's whole message when that fails; ``details`` records
every setting used and why.

- :func:`ort_static_int8`: ONNX Runtime ``quantize_static``, QDQ, MinMax calibration, per-channel
  weights by default. Per-channel DequantizeLinear needs opset 13 (the ``axis`` attribute); an
  older model is upgraded with ``onnx.version_converter`` (checked: the upgraded float model must
  give the original's outputs) or, when that fails, quantized per-tensor, recorded either way.
- :func:`ort_dynamic_int8`: ONNX Runtime ``quantize_dynamic`` (int8 weights, run-time activations).
- :func:`onnx_float16`: ONNX Runtime's float16 converter (float32 inputs/outputs kept).
- :func:`nncf_int8`: OpenVINO IR quantized with NNCF (``nncf.quantize``, min/max).
The int8 settings of ONNX Runtime or OpenVINO chosen by measurement are in
``edgeopt.engine.int8_settings`` (it measures; techniques only build).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgeopt.errors import UserError
from edgeopt.techniques.artifact_check import ArtifactCheckFailed, check_artifact
from edgeopt.techniques.calibration import calibration_batch

# DequantizeLinear takes a per-axis scale (the `axis` attribute) from opset 13 on.
PER_CHANNEL_MIN_OPSET = 13
OPSET_FIXES = ("upgrade", "per-tensor")
# The upgraded float model must reproduce the original's outputs to this relative error.
UPGRADE_TOLERANCE = 1e-4
QUANT_TYPES = ("QUInt8", "QInt8")


# ---------------------------------------------------------------- the four variants

def ort_static_int8(model_path: str | Path, calib_x: np.ndarray, out_dir: str | Path, *,
                    per_channel: bool = True, reduce_range: bool | None = None,
                    activation_type: str | None = None, weight_type: str = "QInt8",
                    cpu_flags: list[str] | None = None, opset_fix: str = "upgrade",
                    name: str = "ort_int8") -> tuple[Path, dict]:
    """Static int8 (QDQ) of an ONNX float model with ONNX Runtime.

    ``calib_x``: float32 calibration inputs, shape (n, *model input); ``reduce_range`` and
    ``activation_type`` ("QUInt8"/"QInt8") default to the CPU-flag rule of
    ``edgeopt.export.onnx.ort_int8_options`` for ``cpu_flags`` (default: this CPU);
    ``opset_fix`` says what to do when per-channel meets an opset < 13: "upgrade" (fall back to
    per-tensor if the upgrade fails) or "per-tensor". Returns ``(out_dir/name.onnx, details)``.
    Raises UserError for bad input, ArtifactCheckFailed when ONNX Runtime cannot run the result.
    """
    from edgeopt.export.onnx import quantize_onnx_static

    src, calib, out = _inputs(model_path, calib_x, out_dir)
    if opset_fix not in OPSET_FIXES:
        raise UserError(f"opset_fix {opset_fix!r}: choose from {', '.join(OPSET_FIXES)}")
    settings = {k: v for k, v in (("reduce_range", reduce_range), ("activation_type", activation_type),
                                  ("weight_type", weight_type)) if v is not None}
    for key in ("activation_type", "weight_type"):
        if key in settings and settings[key] not in QUANT_TYPES:
            raise UserError(f"{key} {settings[key]!r}: choose from {', '.join(QUANT_TYPES)}")
    if reduce_range is not None or activation_type is not None:
        settings["why"] = "chosen by the caller"
    dst = out / f"{name}.onnx"
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        src_q, per_channel, opset = _per_channel_source(src, per_channel, opset_fix, calib, Path(tmp))
        details = quantize_onnx_static(src_q, dst, calib, cpu_flags,
                                       settings={**settings, "per_channel": per_channel})
    _check(dst, calib)
    return dst, {"precision": "int8", "quantizer": "onnxruntime.quantization.quantize_static",
                 "format": "QDQ", "calibration": {"method": "minmax", "samples": len(calib)},
                 **details, "opset": opset}


def ort_dynamic_int8(model_path: str | Path, calib_x: np.ndarray | None, out_dir: str | Path, *,
                     per_channel: bool = False, opset_fix: str = "upgrade",
                     name: str = "ort_dynamic") -> tuple[Path, dict]:
    """Dynamic int8 with ONNX Runtime: int8 weights, activations quantized at run time, so
    ``calib_x`` is only used for the load check. Per-channel follows the opset rule of
    :func:`ort_static_int8`. Returns ``(out_dir/name.onnx, details)``."""
    from edgeopt.export.onnx import quantize_onnx_dynamic

    src, calib, out = _inputs(model_path, calib_x, out_dir, need_calibration=False)
    dst = out / f"{name}.onnx"
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        src_q, per_channel, opset = _per_channel_source(src, per_channel, opset_fix, calib, Path(tmp))
        details = quantize_onnx_dynamic(src_q, dst, per_channel=per_channel)
    _check(dst, calib)
    return dst, {"precision": "dynamic", "quantizer": "onnxruntime.quantization.quantize_dynamic",
                 **details, "opset": opset}


def onnx_float16(model_path: str | Path, calib_x: np.ndarray | None, out_dir: str | Path, *,
                 name: str = "float16") -> tuple[Path, dict]:
    """float16 weights and compute, float32 inputs/outputs (onnxruntime.transformers.float16).
    ``calib_x`` is only used for the load check. Returns ``(out_dir/name.onnx, details)``."""
    from edgeopt.export.onnx import onnx_opset, onnx_to_fp16

    src, calib, out = _inputs(model_path, calib_x, out_dir, need_calibration=False)
    dst = onnx_to_fp16(src, out / f"{name}.onnx")
    _check(dst, calib)
    return dst, {"precision": "float16", "converter": "onnxruntime.transformers.float16",
                 "io": "float32", "opset": {"model": onnx_opset(src)}}


def nncf_int8(model_path: str | Path, calib_x: np.ndarray, out_dir: str | Path, *,
              overflow_fix: str | None = None, bias_correction: str = "none",
              cpu_flags: list[str] | None = None, name: str = "nncf_int8") -> tuple[Path, dict]:
    """int8 OpenVINO IR with NNCF: the ONNX model is converted (openvino.convert_model) and
    quantized with ``nncf.quantize`` on ``calib_x``. ``overflow_fix`` ("enable",
    "first_layer_only", "disable") defaults to the CPU-flag rule
    (``edgeopt.export.openvino.nncf_int8_options``). Returns ``(out_dir/name.xml, details)``
    (weights in name.bin beside it)."""
    from edgeopt.export.openvino import onnx_to_openvino, quantize_openvino

    src, calib, out = _inputs(model_path, calib_x, out_dir)
    dst = out / f"{name}.xml"
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        ir = onnx_to_openvino(src, Path(tmp) / "float32.xml")
        details = quantize_openvino(ir, dst, calib, cpu_flags,
                                    bias_correction=bias_correction, overflow_fix=overflow_fix)
    _check(dst, calib)
    return dst, {"precision": "int8", "quantizer": "nncf.quantize (OpenVINO)", "calibration":
                 {"method": "minmax", "samples": len(calib)}, **details}


# ---------------------------------------------------------------- opset

def _per_channel_source(src: Path, per_channel: bool, opset_fix: str, calib: np.ndarray,
                        tmp: Path) -> tuple[Path, bool, dict]:
    """The model to quantize, whether per-channel stays on, and what was done about the opset."""
    from edgeopt.export.onnx import onnx_opset, upgrade_opset

    opset = onnx_opset(src)
    record: dict = {"model": opset}
    if not per_channel or opset >= PER_CHANNEL_MIN_OPSET:
        return src, per_channel, record
    need = f"per-channel DequantizeLinear needs opset {PER_CHANNEL_MIN_OPSET}, the model has {opset}"
    if opset_fix == "per-tensor":
        return src, False, {**record, "fix": f"per-tensor weights ({need}; opset_fix=per-tensor)"}
    try:
        upgraded = upgrade_opset(src, tmp / "upgraded.onnx", PER_CHANNEL_MIN_OPSET)
        _same_outputs(src, upgraded, calib)
    except UserError as e:
        return src, False, {**record, "fix": f"per-tensor weights ({need}; upgrade failed: {e})"}
    return upgraded, True, {**record, "quantized": PER_CHANNEL_MIN_OPSET,
                            "fix": f"upgraded with onnx.version_converter ({need})"}


def _same_outputs(a: Path, b: Path, x: np.ndarray) -> None:
    """UserError unless models ``a`` and ``b`` give the same outputs on a few samples."""
    from edgeopt.techniques.artifact_check import _run_onnx

    if x is None:
        return
    ya, yb = (np.asarray(_run_onnx(p, x[:8])[0], np.float64) for p in (a, b))
    err = float(np.abs(ya - yb).max()) / max(float(np.abs(ya).max()), 1e-12)
    if ya.shape != yb.shape or err > UPGRADE_TOLERANCE:
        raise UserError(f"the upgraded model's outputs differ from the original's (relative error {err:.2g})")


# ---------------------------------------------------------------- helpers

def _inputs(model_path, calib_x, out_dir, need_calibration: bool = True):
    src = Path(model_path)
    if src.suffix.lower() != ".onnx":
        raise UserError(f"{src.name} is not an .onnx file; these steps quantize ONNX models")
    if not src.exists():
        raise UserError(f"model not found: {src}")
    calib = calibration_batch(calib_x, need_calibration, "static int8 needs calibration data (calib_x): "
                                                         "100-500 samples shaped like the input")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return src, calib, out


def _check(path: Path, calib) -> None:
    reason = check_artifact(path, None if calib is None else calib[:1])
    if reason:  # never left where a later step could measure it
        for f in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
            f.unlink(missing_ok=True)
        raise ArtifactCheckFailed(reason)


def _keep(path: Path, out: Path, name: str) -> Path:
    """Move a candidate artifact (with an IR's .bin) to ``out/name``."""
    dst = out / f"{name}{path.suffix}"
    if path.suffix == ".xml":
        shutil.move(str(path.with_suffix(".bin")), dst.with_suffix(".bin"))
    shutil.move(str(path), dst)
    return dst
