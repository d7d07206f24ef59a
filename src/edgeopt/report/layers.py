"""Per-layer view of each variant: MACs, parameters, latency share, quantization error, sparsity,
ops kept in float, read from the variant's artifact and its run record."""
from __future__ import annotations

from pathlib import Path

from edgeopt.report import view


def artifact_path(run_dir: Path, variant: dict) -> Path | None:
    """The variant's model file, or None when the record names none or it is gone."""
    art = variant.get("artifact")
    if not art:
        return None
    path = Path(art) if Path(art).is_absolute() else Path(run_dir) / art
    return path if path.exists() else None


def profile_variants(run_dir: Path, record: dict) -> tuple[dict, dict[str, str]]:
    """(name -> GraphProfile, name -> why a variant has no profile) for the done variants.

    The TFLite Micro arena is taken from the run (it was measured there) instead of measuring again."""
    from edgeopt.errors import UserError
    from edgeopt.measure.graph import profile_path

    profiles, problems = {}, {}
    for v in view.done(record):
        path = artifact_path(run_dir, v)
        if path is None:
            problems[v["name"]] = f"artifact {v.get('artifact')!s} not found in the run directory"
            continue
        try:
            prof = profile_path(path, measure_arena=False)
        except (UserError, ValueError, OSError) as e:  # an unreadable artifact: say so, keep the report
            problems[v["name"]] = f"cannot profile {path.name}: {e}"
            continue
        arena = view.graph_fact(v, "tflm_arena_bytes")
        if arena:
            prof.arena_bytes = int(arena)
            prof.arena_note = view.graph_fact(v, "tflm_arena_note") or "measured by the run"
        profiles[v["name"]] = prof
    return profiles, problems


def weight_sparsity(path: Path) -> dict[str, float]:
    """Op output-tensor name -> fraction of exactly-zero values in its weight tensor (.tflite MAC ops).

    Read from the artifact itself, so it is what ships. Empty for other formats."""
    if Path(path).suffix.lower() != ".tflite":
        return {}
    from ai_edge_litert.interpreter import Interpreter

    from edgeopt.core.tflite import tflite_op_details

    interp = Interpreter(model_path=str(path))
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    out = {}
    for op in tflite_op_details(path):
        ins = [i for i in op["inputs"] if i >= 0]
        if op["op_name"] not in _WEIGHTED_OPS or len(ins) < 2 or not op["outputs"]:
            continue
        try:
            w = interp.get_tensor(ins[1])
        except ValueError:  # not a constant (e.g. BATCH_MATMUL of two activations)
            continue
        if w.size > 1:
            out[names[op["outputs"][0]]] = float((w == 0).mean())
    return out


_WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D", "BATCH_MATMUL"}


def op_latency_ms(variant: dict) -> dict[str, float]:
    """Op name -> measured milliseconds, when the runtime profiled ops.

    Expected input: ``variant["op_profile"]`` (or ``metrics.op_profile``) = ``[{"op": name, "ms": t}]``.
    No runtime writes it yet (LiteRT's Python API has no op profiler)."""
    rows = variant.get("op_profile") or (variant.get("metrics") or {}).get("op_profile") or []
    return {str(r["op"]): float(r["ms"]) for r in rows if isinstance(r, dict) and "op" in r and "ms" in r}


def layer_rows(variant: dict, profile, sparsity: dict[str, float]) -> list[dict]:
    """One row per op of the variant's graph, in execution order."""
    errors = {str(e.get("tensor")): e for e in variant.get("quant_errors") or []}
    floats = view.kept_float(variant)
    times = op_latency_ms(variant)
    total_macs = sum(op.macs for op in profile.ops) or 1
    total_ms = sum(times.values())
    quantized = profile.precision not in ("float32", "float16")
    rows = []
    for op in profile.ops:
        err = errors.get(op.name, {})
        why = floats.get(op.name) or floats.get(op.op_type)
        if why is None and quantized and op.macs and op.dtype.startswith("float"):
            why = "float (no reason recorded)"
        rows.append({"name": op.name, "op_type": op.op_type, "shape": "×".join(map(str, op.output_shape)),
                     "params": op.params, "macs": op.macs, "mac_share": op.macs / total_macs,
                     "latency_share": times[op.name] / total_ms if op.name in times and total_ms else None,
                     "dtype": op.dtype, "quantization": op.quantization,
                     "sparsity": sparsity.get(op.name), "snr_db": err.get("snr_db"),
                     "cosine": err.get("cosine"), "float_reason": why})
    return rows
