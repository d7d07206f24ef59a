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
- :func:`choose_int8_settings`: the int8 settings of ONNX Runtime or OpenVINO chosen by measured
  agreement with the float model on validation data and measured speed, instead of by the
  CPU-flag rule alone (see MEASURED.md: the rule cost 32 points on a CNN with raw 0-255 inputs).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgeopt.errors import UserError
from edgeopt.techniques.artifact_check import ArtifactCheckFailed, check_artifact

# DequantizeLinear takes a per-axis scale (the `axis` attribute) from opset 13 on.
PER_CHANNEL_MIN_OPSET = 13
OPSET_FIXES = ("upgrade", "per-tensor")
# The upgraded float model must reproduce the original's outputs to this relative error.
UPGRADE_TOLERANCE = 1e-4
QUANT_TYPES = ("QUInt8", "QInt8")
# Latencies within this fraction of the fastest count as equal (timer noise on a shared CPU);
# accuracy then decides.
SPEED_TIE = 0.05


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
        details = quantize_onnx_static(src_q, dst, calib, cpu_flags if cpu_flags is not None else _flags(),
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
        details = quantize_openvino(ir, dst, calib, cpu_flags if cpu_flags is not None else _flags(),
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
    calib = None
    if calib_x is not None:
        calib = np.asarray(calib_x, np.float32)
        if calib.ndim < 2 or len(calib) < 1 or not np.isfinite(calib).all():
            raise UserError(f"calibration data must be a non-empty finite batch shaped (n, *input), "
                            f"got shape {calib.shape}")
    elif need_calibration:
        raise UserError("static int8 needs calibration data (calib_x): 100-500 samples shaped like the input")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return src, calib, out


def _flags() -> list[str]:
    from edgeopt.runtimes.cpu import cpu_info

    return cpu_info()["flags"]


def _check(path: Path, calib) -> None:
    reason = check_artifact(path, None if calib is None else calib[:1])
    if reason:  # never left where a later step could measure it
        for f in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
            f.unlink(missing_ok=True)
        raise ArtifactCheckFailed(reason)


# ---------------------------------------------------------------- settings chosen by measurement

def int8_candidates(runtime: str, cpu_flags: list[str]) -> tuple[list[tuple[str, dict]], str]:
    """The int8 settings worth measuring on this CPU for ``runtime`` ("onnxruntime" or
    "openvino"), as (name, keyword arguments of ort_static_int8 / nncf_int8), and why these."""
    from edgeopt.runtimes.cpu import has_vnni

    vnni = has_vnni(cpu_flags)
    if runtime == "onnxruntime":
        cands = [("u8s8-per-channel", {"activation_type": "QUInt8", "reduce_range": False}),
                 ("s8s8-per-channel", {"activation_type": "QInt8", "reduce_range": False}),
                 ("ort-defaults", {"activation_type": "QInt8", "reduce_range": False, "per_channel": False})]
        if vnni:
            return cands, ("VNNI present: u8*s8 dot products accumulate in int32, so 7-bit weights "
                           "(reduce_range) cannot fix an overflow and only lose precision; not tried")
        return ([("u8s8-per-channel-reduce-range", {"activation_type": "QUInt8", "reduce_range": True})]
                + cands, "no VNNI: AVX2 u8s8 kernels can saturate int16 sums, so 7-bit weights "
                         "(reduce_range) are tried beside full 8-bit weights and signed activations")
    if runtime == "openvino":
        if vnni:
            return ([("first-layer-only", {"overflow_fix": "first_layer_only"}),
                     ("disable", {"overflow_fix": "disable"})],
                    "VNNI present: int8 products accumulate in int32, so the overflow fix on every "
                    "layer only costs precision; not tried")
        return ([("enable", {"overflow_fix": "enable"}), ("first-layer-only", {"overflow_fix": "first_layer_only"}),
                 ("disable", {"overflow_fix": "disable"})],
                "no VNNI: int16 sums can saturate, so the overflow fix is tried on every layer, the "
                "first layer only, and off")
    raise UserError(f"int8 settings are chosen for onnxruntime or openvino, not {runtime!r}")


def choose_int8_settings(model_path: str | Path, calib_x: np.ndarray, val_x: np.ndarray,
                         out_dir: str | Path, *, runtime: str = "onnxruntime",
                         cpu_flags: list[str] | None = None, tolerance: float = 0.005,
                         latency_rounds: int = 5, name: str | None = None) -> tuple[Path, dict]:
    """Quantize an ONNX model with every candidate int8 setting of ``runtime`` (see
    :func:`int8_candidates`), measure each on ``val_x`` and keep the best.

    Measured per candidate: agreement with the float model (top-1 agreement for outputs with
    several units; 1 - mean|Δ|/mean|float| for one unit), mean absolute output difference, and
    the median batch-1 latency on one thread (ms; rounds alternate between candidates so other
    load on the CPU hits them alike). Choice: among the settings whose agreement is within
    ``max(tolerance, 1/len(val_x))`` of the best, those within 5% of the fastest latency, and of
    these the highest agreement (then the smallest mean output difference). Returns ``(artifact, details)`` with every
    measurement, the candidates' rationale and the choice. Raises ArtifactCheckFailed when no
    candidate produces a working artifact. Measures in ``edgeopt.runtimes`` (unlike the other
    functions here, which only build).
    """
    flags = cpu_flags if cpu_flags is not None else _flags()
    cands, why = int8_candidates(runtime, flags)
    src, calib, out = _inputs(model_path, calib_x, out_dir)
    val = np.asarray(val_x, np.float32)
    build = ort_static_int8 if runtime == "onnxruntime" else nncf_int8
    work = out / f"{runtime}-int8-candidates"
    rows, built = [], {}
    for cand, kwargs in cands:
        row = {"name": cand, "settings": dict(kwargs)}
        try:
            built[cand], made = build(src, calib, work, cpu_flags=flags, name=cand, **kwargs)
            row["details"] = {k: v for k, v in made.items() if k in ("per_channel", "reduce_range",
                                                                     "activation_type", "overflow_fix", "opset")}
        except (ArtifactCheckFailed, UserError) as e:
            row.update(status="failed", reason=str(e))
        rows.append(row)
    if not built:
        raise ArtifactCheckFailed("no int8 setting gave a working artifact: "
                                  + "; ".join(f"{r['name']}: {r['reason']}" for r in rows))
    _measure(src, runtime, built, rows, val, latency_rounds)
    chosen, rule = _choose(rows, tolerance, len(val))
    dst = _keep(built[chosen["name"]], out, name or f"{runtime}_int8")
    shutil.rmtree(work, ignore_errors=True)
    return dst, {"precision": "int8", "runtime": runtime, "chosen": chosen["name"],
                 "settings": chosen["settings"], "candidates": rows, "why_candidates": why,
                 "selection": rule, "validation_samples": len(val), "cpu_vnni": _vnni(flags)}


def _vnni(flags) -> bool:
    from edgeopt.runtimes.cpu import has_vnni

    return has_vnni(flags)


def _measure(src: Path, runtime: str, built: dict, rows: list[dict], val: np.ndarray, rounds: int) -> None:
    from edgeopt.measure.latency import measure_latency
    from edgeopt.runtimes.registry import get_runtime

    rt = get_runtime(runtime)
    ref = rt.load(src).predict(val)
    sessions = {n: rt.load(p, threads=1) for n, p in built.items()}
    for row in rows:
        if row["name"] in sessions:
            pred = sessions[row["name"]].predict(val)
            row.update(status="ok", agreement=agreement(pred, ref),
                       mean_abs_diff=float(np.abs(pred.reshape(ref.shape) - ref).mean()))
    samples: dict[str, list[float]] = {n: [] for n in sessions}
    for _ in range(max(1, rounds)):
        for n, s in sessions.items():
            samples[n].append(measure_latency(s, val[:1], runs=50, warmup=5, max_seconds=1.0).p50_ms)
    for row in rows:
        if row["name"] in samples:
            row["p50_ms"] = round(float(np.median(samples[row["name"]])), 5)


def agreement(pred: np.ndarray, ref: np.ndarray) -> float:
    """Fidelity of quantized outputs to the float outputs ``ref`` (n, ...): top-1 agreement for
    several output units, else 1 - mean|pred - ref| / mean|ref| (clipped at 0)."""
    from edgeopt.measure.metrics import top1_agreement

    flat = ref.reshape(len(ref), -1)
    if flat.shape[1] > 1:
        return top1_agreement(pred.reshape(flat.shape), flat)
    err = float(np.abs(pred.reshape(flat.shape) - flat).mean()) / max(float(np.abs(flat).mean()), 1e-12)
    return max(0.0, 1.0 - err)


def _choose(rows: list[dict], tolerance: float, n: int) -> tuple[dict, str]:
    ok = [r for r in rows if r.get("status") == "ok"]
    best = max(r["agreement"] for r in ok)
    tol = max(tolerance, 1.0 / max(n, 1))
    near = [r for r in ok if r["agreement"] >= best - tol]
    fastest = min(r["p50_ms"] for r in near)
    fast = [r for r in near if r["p50_ms"] <= fastest * (1.0 + SPEED_TIE)]
    chosen = max(fast, key=lambda r: (r["agreement"], -r["mean_abs_diff"]))
    rule = (f"within {tol:.4f} of the best agreement ({best:.4f}): {', '.join(r['name'] for r in near)}; "
            f"of those within {SPEED_TIE:.0%} of the fastest ({', '.join(r['name'] for r in fast)}), "
            f"the highest agreement, then the smallest mean output difference")
    for r in rows:
        r["chosen"] = r is chosen
    return chosen, rule


def _keep(path: Path, out: Path, name: str) -> Path:
    """Move a candidate artifact (with an IR's .bin) to ``out/name``."""
    dst = out / f"{name}{path.suffix}"
    if path.suffix == ".xml":
        shutil.move(str(path.with_suffix(".bin")), dst.with_suffix(".bin"))
    shutil.move(str(path), dst)
    return dst
