"""The int8 settings of ONNX Runtime or OpenVINO chosen by measurement, not by a CPU-flag rule alone.

Each candidate setting is built by ``edgeopt.techniques.onnx_ptq`` (``ort_static_int8`` /
``nncf_int8``) and measured here in its runtime: agreement with the float model on validation
data and batch-1 latency (see MEASURED.md: the flag rule cost 32 points on a CNN with raw 0-255
inputs). It lives in the engine because it measures; techniques only build.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgeopt.core.metrics import top1_agreement
from edgeopt.errors import UserError
from edgeopt.measure.latency import measure_latency
from edgeopt.runtimes.cpu import cpu_info, has_vnni
from edgeopt.runtimes.registry import get_runtime
from edgeopt.techniques import onnx_ptq
from edgeopt.techniques.artifact_check import ArtifactCheckFailed

# Latencies within this fraction of the fastest count as equal (timer noise on a shared CPU);
# accuracy then decides.
SPEED_TIE = 0.05


def int8_candidates(runtime: str, cpu_flags: list[str]) -> tuple[list[tuple[str, dict]], str]:
    """The int8 settings worth measuring on this CPU for ``runtime`` ("onnxruntime" or
    "openvino"), as (name, keyword arguments of onnx_ptq.ort_static_int8 / nncf_int8), and why these."""
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
    flags = cpu_flags if cpu_flags is not None else cpu_info()["flags"]
    cands, why = int8_candidates(runtime, flags)
    src, calib, out = onnx_ptq._inputs(model_path, calib_x, out_dir)
    val = np.asarray(val_x, np.float32)
    build = onnx_ptq.ort_static_int8 if runtime == "onnxruntime" else onnx_ptq.nncf_int8
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
    dst = onnx_ptq._keep(built[chosen["name"]], out, name or f"{runtime}_int8")
    shutil.rmtree(work, ignore_errors=True)
    return dst, {"precision": "int8", "runtime": runtime, "chosen": chosen["name"],
                 "settings": chosen["settings"], "candidates": rows, "why_candidates": why,
                 "selection": rule, "validation_samples": len(val), "cpu_vnni": has_vnni(flags)}


def _measure(src: Path, runtime: str, built: dict, rows: list[dict], val: np.ndarray, rounds: int) -> None:
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
