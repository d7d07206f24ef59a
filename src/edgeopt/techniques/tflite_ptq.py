"""Post-training quantization of a float .tflite (no Keras model needed) with ai-edge-quantizer.

Every function has the shape ``(model_path, calib_x, out_dir, **config) -> (artifact_path,
details)``: it writes ``out_dir/<name>.tflite``, loads it in LiteRT and runs one sample
(:func:`edgeopt.techniques.artifact_check.check_artifact`, ArtifactCheckFailed with the whole
reason otherwise). Static modes are calibrated with global min/max activation ranges measured
by ``edgeopt.techniques.calibration.activation_ranges``: ai-edge-quantizer's own calibrator
averages per-sample ranges and lost 1.5 points on a Fashion-MNIST CNN (MEASURED.md).

Modes: :func:`tflite_dynamic` (int8 weights, float activations quantized at run time),
:func:`tflite_int8` (full integer), :func:`tflite_float16` (float16 weights),
:func:`tflite_int16x8` (int16 activations, int8 weights), :func:`tflite_int4` (int4 weights,
float compute) and :func:`tflite_mixed` (int8 with the most sensitive ops kept float, chosen by
an ``evaluate(path) -> float`` callback on validation data; this module never runs a runtime
itself beyond the load check).
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeopt.core.precision import Precision
from edgeopt.errors import UserError
from edgeopt.fsutil import atomic_write_bytes
from edgeopt.techniques.artifact_check import ArtifactCheckFailed, check_artifact
from edgeopt.techniques.calibration import calibration_batch

# Inputs compared tensor by tensor to rank ops for mixed precision (one instrumented pass).
SENSITIVITY_SAMPLES = 16
QUANTIZER = "ai-edge-quantizer"


# ---------------------------------------------------------------- modes

def tflite_dynamic(model_path: str | Path, calib_x: np.ndarray | None, out_dir: str | Path, *,
                   name: str = "dynamic") -> tuple[Path, dict]:
    """Dynamic range: int8 per-channel weights, float activations quantized inside the kernels.
    ``calib_x`` is only used for the load check."""
    from ai_edge_quantizer import recipe

    float_model, calib, out = _inputs(model_path, calib_x, out_dir, need_calibration=False)
    quant = _quantize(float_model, recipe.dynamic_wi8_afp32(), None)
    return _write(out, name, quant, calib, {"precision": Precision.DYNAMIC, "weights": "int8 per-channel",
                                            "activations": "float32 (int8 at run time)", "io": "float32"})


def tflite_float16(model_path: str | Path, calib_x: np.ndarray | None, out_dir: str | Path, *,
                   name: str = "float16") -> tuple[Path, dict]:
    """float16 weights of conv / fully connected / embedding ops (half their size), float32
    compute (ai-edge-quantizer's float casting). ``calib_x`` is only used for the load check."""
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    float_model, calib, out = _inputs(model_path, calib_x, out_dir, need_calibration=False)
    manager = recipe_manager.RecipeManager()
    manager.add_weight_only_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, 16,
                                   algorithm_key=AlgorithmName.FLOAT_CASTING)
    quant = _quantize(float_model, manager.get_quantization_recipe(), None)
    return _write(out, name, quant, calib, {"precision": Precision.FLOAT16, "weights": "float16",
                                            "activations": "float32", "io": "float32"})


def tflite_int8(model_path: str | Path, calib_x: np.ndarray, out_dir: str | Path, *,
                per_channel: bool = True, int8_io: bool = False, name: str = "int8") -> tuple[Path, dict]:
    """Full integer int8 (weights and activations), global min/max ranges over ``calib_x``
    (float32, shape (n, *input)); float32 inputs/outputs unless ``int8_io``."""
    return _static(model_path, calib_x, out_dir, 8, per_channel, int8_io, name)


def tflite_int16x8(model_path: str | Path, calib_x: np.ndarray, out_dir: str | Path, *,
                   per_channel: bool = True, int16_io: bool = False,
                   name: str = "int16x8") -> tuple[Path, dict]:
    """int16 activations and int8 weights ("16x8"), global min/max ranges over ``calib_x``.
    More accurate than int8; CPUs have few fast kernels for it (34x slower in XNNPACK-less
    LiteRT on the AMD EPYC, MEASURED.md)."""
    return _static(model_path, calib_x, out_dir, 16, per_channel, int16_io, name)


def tflite_int4(model_path: str | Path, calib_x: np.ndarray | None, out_dir: str | Path, *,
                name: str = "int4") -> tuple[Path, dict]:
    """int4 per-channel weights, dequantized to float for compute (a quarter of the float32
    weight size). ``calib_x`` is only used for the load check."""
    from ai_edge_quantizer import recipe

    float_model, calib, out = _inputs(model_path, calib_x, out_dir, need_calibration=False)
    quant = _quantize(float_model, recipe.weight_only_wi4_afp32(), None)
    return _write(out, name, quant, calib, {"precision": Precision.INT4, "weights": "int4 per-channel",
                                            "activations": "float32", "io": "float32"})


def _static(model_path, calib_x, out_dir, bits: int, per_channel: bool, int_io: bool,
            name: str) -> tuple[Path, dict]:
    from edgeopt.techniques.calibration import activation_ranges
    from edgeopt.techniques.ptq import aeq_static, float_io

    float_model, calib, out = _inputs(model_path, calib_x, out_dir)
    ranges = activation_ranges(float_model, calib, "minmax")
    quant = aeq_static(float_model, ranges, bits, per_channel)
    if not int_io:
        quant = float_io(quant)
    return _write(out, name, quant, calib, {
        "precision": Precision.INT8 if bits == 8 else Precision.INT16X8,
        "weights": f"int8 {'per-channel' if per_channel else 'per-tensor'}", "activations": f"int{bits}",
        "io": f"int{bits}" if int_io else "float32",
        "calibration": {"method": "minmax (global over all samples)", "samples": len(calib)}})


# ---------------------------------------------------------------- mixed precision

def tflite_mixed(model_path: str | Path, calib_x: np.ndarray, out_dir: str | Path, *,
                 evaluate: Callable[[Path], float], max_accuracy_drop: float = 0.5,
                 candidates: int = 6, per_channel: bool = True, baseline: float | None = None,
                 name: str = "mixed") -> tuple[Path, dict]:
    """int8 with the fewest ops kept float that bring accuracy within ``max_accuracy_drop``
    points of the float model.

    ``evaluate(path) -> float`` scores a .tflite on validation data (higher is better, a fraction,
    e.g. top-1 accuracy); ``baseline`` is the float model's score (measured with ``evaluate``
    when None). Sensitivity: one instrumented pass ranks ops by the quantization noise each adds
    (output noise power minus the worst input's, over ``calib_x[:16]``); the top ``candidates``
    are then measured one at a time (``evaluate`` with only that op float) and ops are kept float
    in order of measured gain until the budget is met. Returns the most accurate variant found
    (``details["met"]`` False, with a warning, when no candidate set meets the budget).
    """
    from edgeopt.techniques.calibration import activation_ranges

    float_model, calib, out = _inputs(model_path, calib_x, out_dir)
    limit = float(max_accuracy_drop)
    if limit < 0 or candidates < 1:
        raise UserError(f"mixed needs max_accuracy_drop >= 0 and candidates >= 1, got {limit}, {candidates}")
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        search = _MixedSearch(float_model, activation_ranges(float_model, calib, "minmax"), per_channel,
                              evaluate, Path(tmp))
        base = float(baseline) if baseline is not None else search.score_float()
        result = search.run(base, limit, candidates, calib[:SENSITIVITY_SAMPLES])
        details = {"precision": Precision.MIXED,
                   "weights": f"int8 {'per-channel' if per_channel else 'per-tensor'}",
                   "activations": "int8 (float in kept ops)", "io": "float32",
                   "calibration": {"method": "minmax (global over all samples)", "samples": len(calib)},
                   **result.pop("details")}
        return _write(out, name, result["model"], calib, details)


class _MixedSearch:
    def __init__(self, float_model: bytes, ranges: dict, per_channel: bool, evaluate, scratch: Path):
        self.float_model, self.ranges, self.per_channel = float_model, ranges, per_channel
        self.evaluate, self.scratch, self.tried = evaluate, scratch, []
        self._built: dict[tuple[str, ...], tuple[bytes, float]] = {}

    def score_float(self) -> float:
        return float(self.evaluate(atomic_write_bytes(self.scratch / "float32.tflite", self.float_model)))

    def build(self, keep: list[dict]) -> tuple[bytes, float]:
        """The int8 model with ``keep`` ops float, and its score (each set built once)."""
        from edgeopt.techniques.ptq import aeq_static, float_io

        key = tuple(sorted(k["scope"] for k in keep))
        if key in self._built:
            return self._built[key]
        model = float_io(aeq_static(self.float_model, self.ranges, 8, self.per_channel,
                                    [k["scope"] for k in keep]))
        path = atomic_write_bytes(self.scratch / f"candidate{len(self.tried)}.tflite", model)
        score = float(self.evaluate(path))
        self.tried.append({"kept_float": [k["op"] for k in keep], "score": round(score, 5)})
        self._built[key] = (model, score)
        return model, score

    def run(self, base: float, limit: float, candidates: int, probe: np.ndarray) -> dict:
        model, score = self.build([])
        all_int8 = score
        ranked = self.rank(model, probe)[:candidates]
        gains = []
        if (base - score) * 100.0 > limit:
            for op in ranked:  # measured sensitivity: the score with only this op float
                _, alone = self.build([op])
                gains.append((alone - all_int8, op))
        keep, best = [], (model, score, [])
        for gain, op in sorted(gains, key=lambda g: -g[0]):
            if (base - best[1]) * 100.0 <= limit or gain <= 0:
                break
            keep = keep + [op]
            cand, cand_score = self.build(keep)
            if cand_score > best[1]:
                best = (cand, cand_score, list(keep))
        model, score, kept = best
        drop = (base - score) * 100.0
        details = {"max_accuracy_drop": limit, "baseline_score": round(base, 5), "score": round(score, 5),
                   "score_drop_points": round(drop, 3), "all_int8_score": round(all_int8, 5),
                   "met": drop <= limit, "kept_float": [{"op": k["op"], "tensor": k["tensor"],
                                                         "added_noise": k["added_noise"]} for k in kept],
                   "sensitivity": [{"op": op["op"], "added_noise": op["added_noise"],
                                    "gain_alone": round(g, 5)} for g, op in gains],
                   "candidates_tried": self.tried}
        if drop > limit:
            details["warning"] = (f"max_accuracy_drop {limit} not met: best drop {drop:.2f} points with "
                                  f"{len(kept)} ops float (of {len(ranked)} candidates measured)")
        return {"model": model, "details": details}

    def rank(self, quant: bytes, probe: np.ndarray) -> list[dict]:
        return rank_ops(self.float_model, quant, probe)


def rank_ops(float_model: bytes, quant: bytes, probe: np.ndarray, exclude: set[str] = frozenset()) -> list[dict]:
    """Ops of ``quant`` by the quantization noise each adds itself, most first, from one
    instrumented pass over ``probe`` (output noise power relative to the float tensor minus the
    worst input's: noise powers add, dB differences do not). Each: op, tensor, scope,
    added_noise, snr_db (output), in_snr_db (worst input, or None). Ops whose scope is in
    ``exclude`` (already float) are left out."""
    from edgeopt.techniques.ptq import BOUNDARY_OPS, graph_ops
    from edgeopt.techniques.quant_error import quant_error_table

    rows = quant_error_table(float_model, quant, probe)
    snr = {r["tensor"]: r["snr_db"] for r in rows if r["dtype"] != "float32"}
    scored = []
    for op in graph_ops(float_model):
        out = op["outputs"][0] if op["outputs"] else None
        if op["type"] in BOUNDARY_OPS or out not in snr or op["scope"] in exclude:
            continue
        ins = [snr[i] for i in op["inputs"] if i in snr]
        added = _noise(snr[out]) - max([_noise(v) for v in ins] or [0.0])
        scored.append({"op": op["label"], "tensor": out, "scope": op["scope"],
                       "added_noise": float(f"{added:.4g}"), "snr_db": snr[out],
                       "in_snr_db": min(ins) if ins else None})
    return sorted(scored, key=lambda s: -s["added_noise"])


def _noise(snr_db: float) -> float:
    return 10.0 ** (-snr_db / 10.0)


# ---------------------------------------------------------------- helpers

def _inputs(model_path, calib_x, out_dir, need_calibration: bool = True) -> tuple[bytes, np.ndarray | None, Path]:
    """The float .tflite's bytes, the checked calibration batch, and the output folder."""
    from edgeopt.core.tflite import read_tflite

    src = Path(model_path)
    if src.suffix.lower() != ".tflite":
        raise UserError(f"{src.name} is not a .tflite file; these steps quantize a float .tflite")
    if not src.exists():
        raise UserError(f"model not found: {src}")
    stored = sorted({t.dtype for t in read_tflite(src).tensors  # quantized or low-precision tensors
                     if (t.quant or t.is_const) and t.dtype not in ("float32", "int32", "int64", "bool")})
    if stored:
        raise UserError(f"{src.name} is already {'/'.join(stored)}; quantizing it again needs the float "
                        f"model (a float32 .tflite, .onnx or Keras file)")
    calib = calibration_batch(calib_x, need_calibration, "static quantization needs calibration data "
                                                         "(calib_x): 100-500 samples shaped like the input")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return src.read_bytes(), calib, out


def _quantize(float_model: bytes, recipe, ranges) -> bytes:
    from edgeopt.techniques.ptq import _aeq_run

    return _aeq_run(float_model, recipe, ranges, [])


def _write(out: Path, name: str, model: bytes, calib, details: dict) -> tuple[Path, dict]:
    from edgeopt.techniques.ptq import weight_dtypes

    path = atomic_write_bytes(out / f"{name}.tflite", model)
    reason = check_artifact(path, None if calib is None else calib[:1])
    if reason:
        path.unlink(missing_ok=True)
        raise ArtifactCheckFailed(reason)
    return path, {**details, "quantizer": QUANTIZER, "weight_tensors": weight_dtypes(model)}


# ---------------------------------------------------------------- size post-pass

def compact_tflite(model: bytes) -> bytes:
    """The same .tflite rewritten smaller, with every tensor value, name, op and quantization
    parameter unchanged (LiteRT and TFLite Micro give bit-identical outputs; tests/test_int8_fixes.py checks
    both):

    - identical vectors are stored once and shared (flatbuffers allows several tables to point at
      one vector). Per-channel int8 files carry one int64 zero point per output channel, twice
      (kernel and bias), all zeros: 113 KB of a 645 KB MobileNetV2 (alpha 0.35) int8 file;
    - a ``shape_signature`` equal to the static shape is dropped (the runtime then reads the shape).

    Tensor names are kept as the converter wrote them (31 KB on that MobileNetV2): the per-tensor
    error table and the reports match int8 tensors to the float file's by name.

    ``model``: the .tflite bytes; returns the rewritten bytes (the input unchanged when its
    buffers live outside the flatbuffer, as in files over 2 GB)."""
    import flatbuffers
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    class SharedVectors(flatbuffers.Builder):
        def __init__(self, size: int):
            super().__init__(size)
            self.seen: dict = {}

        def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers' name)
            key = (x.dtype.str, x.shape, x.tobytes())
            if key not in self.seen:
                self.seen[key] = super().CreateNumpyVector(x)
            return self.seen[key]

    m = fbu.read_model_from_bytearray(bytearray(model))
    if any((getattr(b, "offset", 0) or 0) > 1 for b in m.buffers or []):
        return model
    for sg in m.subgraphs or []:
        for t in sg.tensors or []:
            if t.shapeSignature is not None and np.array_equal(t.shapeSignature, t.shape):
                t.shapeSignature = None
    builder = SharedVectors(max(1024, len(model)))
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


__all__ = ["compact_tflite", "rank_ops", "tflite_dynamic", "tflite_float16", "tflite_int8", "tflite_int16x8", "tflite_int4",
           "tflite_mixed"]
