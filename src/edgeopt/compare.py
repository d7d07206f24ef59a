"""Side by side: one model in every runtime at every precision, each runtime quantizing with its
own tools, every number measured on the artifact in that runtime.

Rows are runtime x precision. A runtime that is missing, or cannot run a model, gives a row with a
``status`` and a ``reason`` instead of an exception.
"""
from __future__ import annotations

import shutil
import tempfile
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeopt.errors import UserError, one_line

PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic")
DEFAULT_PRECISIONS = ("fp32", "fp16", "int8")
SUFFIX = {"tflite": ".tflite", "onnx": ".onnx", "ir": ".xml"}  # artifact format -> file suffix
FORMAT_OF = {v: k for k, v in SUFFIX.items()}  # a runtime's first format decides what it gets
# CPU flags that decide the speed of each precision (x86 and Arm names).
FLAGS_FOR = {
    "fp32": ("avx2", "fma", "avx512f", "asimd", "neon"),
    "fp16": ("f16c", "avx512_fp16", "asimdhp", "fphp"),
    "int8": ("avx2", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "asimddp"),
}


@dataclass
class Row:
    runtime: str
    precision: str
    status: str = "ok"  # ok | unavailable | unsupported | failed
    reason: str = ""
    runtime_version: str = ""
    artifact: str = ""
    size_bytes: int | None = None
    load_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    ips_batch1: float | None = None
    ips_batch: float | None = None
    batch: int = 32
    accuracy: float | None = None
    top1_agreement: float | None = None
    max_abs_diff: float | None = None
    arena_bytes: int | None = None  # TFLM only: the microcontroller tensor arena
    cpu_flags: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # how the artifact was made (quantizer options)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ---------------------------------------------------------------- model loading (swappable)

def load_model_file(path: Path):
    """A LoadedModel (kind, input shape, output units, and the keras.Model for Keras files)."""
    from edgeopt.model_io import load_model

    return load_model(path)


# ---------------------------------------------------------------- artifacts

class Artifacts:
    """Builds each (format, precision) artifact once, with the runtime's own tool, and remembers
    why one could not be built. tflite artifacts are shared by LiteRT and TFLM."""

    def __init__(self, loaded, dataset, workdir: Path, calibration: int, cpu_flags: list[str]):
        self.model_path, self.kind, self.dataset = Path(loaded.path), loaded.kind, dataset
        self.workdir, self.calibration_n, self.cpu_flags = workdir, calibration, cpu_flags
        self._built: dict[tuple[str, str], tuple[Path, dict] | Exception] = {}
        self._loaded = loaded

    def keras(self):
        return self._loaded.keras

    def calibration(self) -> np.ndarray:
        return self.dataset.calibration(self.calibration_n)

    def get(self, fmt: str, precision: str) -> tuple[Path, dict]:
        key = (fmt, precision)
        if key not in self._built:
            dst = self.workdir / f"{fmt}_{precision}{SUFFIX[fmt]}"
            try:
                self._built[key] = (dst, getattr(self, f"_{fmt}")(precision, dst) or {})
            except Exception as e:  # remembered: a second runtime on this format gets the same reason
                self._built[key] = e
        built = self._built[key]
        if isinstance(built, Exception):
            raise built
        return built

    # -- LiteRT (.tflite), with the TFLite converter
    def _tflite(self, precision: str, dst: Path) -> dict:
        if self.kind == "tflite":
            return self._given_tflite(precision, dst)
        if self.kind != "keras":
            raise Unsupported("no ONNX -> .tflite converter is installed (onnx2tf is not a dependency); "
                              "pass the Keras model to get LiteRT/TFLM rows")
        import tensorflow as tf

        from edgeopt.convert import keras_to_tflite

        kwargs, settings = {}, {"converter": "tf.lite.TFLiteConverter"}
        if precision == "fp16":
            kwargs = {"optimizations": [tf.lite.Optimize.DEFAULT],
                      "target_spec": {"supported_types": [tf.float16]}}
            settings["mode"] = "float16 weights, float32 compute"
        elif precision == "int8":  # the artifact optimize's int8 step builds, with the same config
            from edgeopt.steps import StepContext, get_step
            from edgeopt.techniques.configs import Int8

            cfg, work = Int8(calibration_samples=self.calibration_n), Path(tempfile.mkdtemp(dir=self.workdir))
            ctx = StepContext(dataset=self.dataset, work_dir=work, config=cfg, options=cfg.model_dump(),
                              log=lambda msg: None)
            shutil.move(get_step("int8").run(ctx, self.keras()).artifact, dst)
            shutil.rmtree(work, ignore_errors=True)
            return {**settings, "mode": "full integer, float32 I/O (the int8 recipe step)",
                    "step": cfg.to_record()}
        elif precision == "int8-dynamic":
            kwargs = {"optimizations": [tf.lite.Optimize.DEFAULT]}
            settings["mode"] = "dynamic range: int8 weights, activations quantized at run time"
        _write_atomic(dst, keras_to_tflite(self.keras(), **kwargs))
        return settings

    def _given_tflite(self, precision: str, dst: Path) -> dict:
        given = tflite_precision(self.model_path)
        if precision != given:
            raise Unsupported(f"the input is a {given} .tflite; making {precision} from it needs the "
                              f"Keras model (or quantize it with edgeopt's PTQ step)")
        shutil.copyfile(self.model_path, dst)
        return {"source": "the given .tflite"}

    # -- ONNX, with ONNX Runtime's tools
    def _onnx(self, precision: str, dst: Path) -> dict:
        from edgeopt.export import onnx as ox

        if precision == "fp32":
            if self.kind == "onnx":
                shutil.copyfile(self.model_path, dst)
                return {"source": "the given .onnx"}
            if self.kind != "keras":
                raise Unsupported("a .tflite input gets LiteRT/TFLM rows only; pass the Keras model "
                                  "for ONNX Runtime/OpenVINO rows")
            ox.keras_to_onnx(self.keras(), dst)
            return {"exporter": "keras export (tf2onnx)"}
        fp32, _ = self.get("onnx", "fp32")
        if precision == "fp16":
            ox.onnx_to_fp16(fp32, dst)
            return {"converter": "onnxruntime.transformers.float16", "io": "float32"}
        if precision == "int8":
            return ox.quantize_onnx_static(fp32, dst, self.calibration(), self.cpu_flags)
        return ox.quantize_onnx_dynamic(fp32, dst)

    # -- OpenVINO IR, with OpenVINO's converter and NNCF
    def _ir(self, precision: str, dst: Path) -> dict:
        from edgeopt.export import openvino as ovx

        if precision == "int8-dynamic":
            raise Unsupported("OpenVINO has no dynamic int8 for this model type (NNCF weight "
                              "compression covers MatMul/Embedding, not convolutions)")
        if precision in ("fp32", "fp16"):
            onnx_fp32, _ = self.get("onnx", "fp32")
            ovx.onnx_to_openvino(onnx_fp32, dst, fp16=precision == "fp16")
            return {"converter": "openvino.convert_model", "weights": "float16" if precision == "fp16"
                    else "float32", "inference_precision": "f32"}
        ir_fp32, _ = self.get("ir", "fp32")
        return ovx.quantize_openvino(ir_fp32, dst, self.calibration(), self.cpu_flags)


class Unsupported(Exception):
    """This runtime/format cannot produce or run this precision (a row, not an error)."""


def tflite_precision(path: Path) -> str:
    """fp32, fp16, int8 (full integer) or int8-dynamic, from the tensor types inside a .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    dtypes = [np.dtype(d["dtype"]).name for d in interp.get_tensor_details()]
    io = len(interp.get_input_details()) + len(interp.get_output_details())
    if "int8" in dtypes or "uint8" in dtypes:
        # full integer keeps at most the model's inputs/outputs in float32
        return "int8" if dtypes.count("float32") <= io else "int8-dynamic"
    return "fp16" if "float16" in dtypes else "fp32"


# ---------------------------------------------------------------- reference outputs

def reference_outputs(kind: str, x: np.ndarray, artifacts: Artifacts) -> np.ndarray:
    """Outputs of the float model every row is compared against: the Keras model, or the given
    .onnx (in ONNX Runtime) or .tflite (in LiteRT) itself."""
    if kind == "keras":
        return np.asarray(artifacts.keras().predict(x, batch_size=256, verbose=0), np.float32)
    if kind == "onnx":
        from edgeopt.runtimes.onnxruntime import OnnxRuntime

        return OnnxRuntime().load(artifacts.model_path).predict(x)
    from edgeopt.runtimes.litert import LiteRT

    return LiteRT().load(artifacts.model_path).predict(x)


# ---------------------------------------------------------------- measuring one row

def relevant_flags(runtime: str, precision: str, cpu: dict) -> list[str]:
    if runtime == "tflm":
        return []  # TFLM's host build runs its portable reference kernels: no SIMD path to explain
    base = "int8" if precision.startswith("int8") else precision
    present = [f for f in FLAGS_FOR.get(base, ()) if f in cpu["flags"]]
    if base == "int8" and not cpu["vnni"]:
        present.append("no-vnni")
    return present


def measure_row(row: Row, path: Path, dataset, reference: np.ndarray, threads: int, runs: int,
                batch: int, seconds: float = 1.0) -> Row:
    from edgeopt.measure.latency import measure_latency, measure_throughput
    from edgeopt.runtimes.registry import get_runtime

    try:
        session = get_runtime(row.runtime).load(path, threads=threads)
    except UserError as e:  # the artifact exists but this runtime refuses it: say why, measured
        raise Unsupported(str(e)) from None
    pred = session.predict(dataset.x_eval)
    row.load_ms = session.load_seconds * 1000.0
    row.size_bytes = artifact_size(path)
    row.arena_bytes = getattr(session, "arena_bytes", None)  # TFLM measures its tensor arena
    if dataset.task == "classification":
        row.accuracy = float((_labels(pred) == dataset.y_eval).mean())
        row.top1_agreement = float((_labels(pred) == _labels(reference)).mean())
    row.max_abs_diff = float(np.abs(pred.reshape(reference.shape) - reference).max())
    lat = measure_latency(session, dataset.x_eval[:1], runs=runs, warmup=max(1, min(20, runs // 5)))
    row.p50_ms, row.p99_ms, row.ips_batch1 = lat.p50_ms, lat.p99_ms, lat.throughput_ips
    row.ips_batch = measure_throughput(session, dataset.x_eval, batch=batch, seconds=seconds)
    return row


def _labels(y: np.ndarray) -> np.ndarray:
    y = y.reshape(len(y), -1)
    return (y[:, 0] > 0.5).astype(np.int64) if y.shape[1] == 1 else y.argmax(axis=1)


def artifact_size(path: Path) -> int:
    path = Path(path)
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.exists())


# ---------------------------------------------------------------- the comparison

def compare(model_path: str | Path, dataset, runtimes: list[str] | None = None,
            precisions: list[str] | tuple[str, ...] = DEFAULT_PRECISIONS, threads: int = 1,
            runs: int = 100, batch: int = 32, out_dir: str | Path | None = None,
            calibration: int = 300, throughput_seconds: float = 1.0, progress=None) -> list[Row]:
    """Every runtime x precision on ``model_path`` (.keras/.h5/SavedModel, .onnx or .tflite).

    Artifacts go to ``out_dir`` (kept) or a temporary folder (removed). ``calibration`` samples
    of the training split calibrate int8; throughput at ``batch`` runs for ``throughput_seconds``.
    ``progress`` is called with each finished Row.
    """
    from edgeopt.measure.env import cpu_info
    from edgeopt.runtimes.registry import RUNTIMES, get_runtime

    model_path = Path(model_path)
    if not model_path.exists():
        raise UserError(f"model not found: {model_path}")
    runtimes = list(runtimes or RUNTIMES)
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise UserError(f"unknown precision {bad[0]!r}; choose from {', '.join(PRECISIONS)}")
    loaded = load_model_file(model_path)
    cpu = cpu_info()
    tmp = None if out_dir else tempfile.mkdtemp(prefix="edgeopt-compare-")
    workdir = Path(out_dir or tmp)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        _check_data(loaded, dataset)
        artifacts = Artifacts(loaded, dataset, workdir, calibration, cpu["flags"])
        reference = reference_outputs(loaded.kind, dataset.x_eval, artifacts)
        rows = []
        for name in runtimes:
            rt = get_runtime(name)
            info = rt.info()
            for precision in precisions:
                row = Row(rt.name, precision, runtime_version=info.version, batch=batch,
                          cpu_flags=relevant_flags(rt.name, precision, cpu))
                if not info.available:
                    row.status, row.reason = "unavailable", info.reason
                else:
                    _fill_row(row, artifacts, dataset, reference, workdir,
                              (threads, runs, batch, throughput_seconds))
                rows.append(row)
                if progress:
                    progress(row)
        return rows
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _fill_row(row: Row, artifacts: Artifacts, dataset, reference, workdir, timing: tuple) -> None:
    from edgeopt.runtimes.registry import get_runtime

    try:
        fmt = FORMAT_OF.get(get_runtime(row.runtime).formats[0])
        if fmt is None:
            raise Unsupported(f"compare does not know how to make {get_runtime(row.runtime).formats[0]} "
                              f"artifacts")
        path, settings = artifacts.get(fmt, row.precision)
        row.settings = settings
        row.artifact = str(path.relative_to(workdir)) if path.is_relative_to(workdir) else str(path)
        measure_row(row, path, dataset, reference, *timing)
    except Unsupported as e:
        row.status, row.reason = "unsupported", str(e)
    except UserError as e:
        row.status, row.reason = "failed", str(e)
    except Exception as e:  # a runtime crashing on one model must not end the comparison
        row.status = "failed"
        row.reason = f"{type(e).__name__}: {one_line(e)}"
        row.settings = {**row.settings, "traceback": traceback.format_exc(limit=3)[-600:]}


def _check_data(loaded, dataset) -> None:
    from edgeopt.data import check_against_model

    check_against_model(dataset, loaded.input_shape, loaded.output_units)


# ---------------------------------------------------------------- summaries and views

def fastest(rows: list[Row]) -> dict[str, str]:
    """Precision -> the runtime with the lowest median batch-1 latency among measured rows."""
    best: dict[str, Row] = {}
    for r in rows:
        if r.ok and r.p50_ms is not None and (r.precision not in best or r.p50_ms < best[r.precision].p50_ms):
            best[r.precision] = r
    return {p: r.runtime for p, r in best.items()}


def to_json(rows: list[Row], **meta) -> dict:
    from edgeopt.measure.env import environment

    return {**meta, "environment": environment(), "fastest": fastest(rows),
            "rows": [asdict(r) for r in rows]}


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render_table(rows: list[Row], title: str = "edgeopt compare"):
    """A rich renderable: the numbers in a table, then one note per row (settings, CPU flags, or
    why a row did not run), so the table stays narrow enough for a terminal."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    batch = rows[0].batch if rows else 32
    table = Table(title=title, header_style="bold", caption="* fastest at batch 1 for its precision")
    for col in ("runtime", "precision", "load ms", "p50 ms", "p99 ms", "inf/s b1", f"inf/s b{batch}",
                "size KB", "accuracy", "agree", "max|Δ|"):
        table.add_column(col, justify="left" if col in ("runtime", "precision") else "right", no_wrap=True)
    best = fastest(rows)
    notes = Text()
    for r in rows:
        star = "*" if best.get(r.precision) == r.runtime else ""
        cells = _cells(r)[3:12] if r.ok else [r.status] + ["-"] * 8
        table.add_row(f"{r.runtime}{star}", r.precision, *cells, style=None if r.ok else "yellow")
        note = _note(r)
        notes.append(f"{r.runtime} {r.precision}: ", style="bold")
        notes.append(f"{note + '; ' if note else ''}cpu flags: {' '.join(r.cpu_flags) or 'none relevant'}\n")
    return Group(table, notes)


def _note(r: Row) -> str:
    if not r.ok:
        return r.reason
    parts = [r.settings.get("why") or r.settings.get("mode") or ""]
    if r.arena_bytes:
        parts.append(f"arena {r.arena_bytes / 1024:.1f} KB")
    if r.runtime == "tflm":
        parts.append("reference kernels")
    return "; ".join(p for p in parts if p)


def _cells(r: Row) -> list[str]:
    return [r.runtime, r.precision, r.status, _fmt(r.load_ms, ".1f"), _fmt(r.p50_ms, ".3f"),
            _fmt(r.p99_ms, ".3f"), _fmt(r.ips_batch1, ".0f"), _fmt(r.ips_batch, ".0f"),
            _fmt(r.size_bytes / 1024 if r.size_bytes else None, ".1f"), _fmt(r.accuracy, ".4f"),
            _fmt(r.top1_agreement, ".4f"), _fmt(r.max_abs_diff, ".2g"), " ".join(r.cpu_flags)]


def markdown_table(rows: list[Row]) -> str:
    batch = rows[0].batch if rows else 32
    head = ["runtime", "precision", "status", "load ms", "p50 ms", "p99 ms", "inf/s b1", f"inf/s b{batch}",
            "size KB", "accuracy", "top-1 agree", "max abs diff", "cpu flags", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = _cells(r) + [_note(r).replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    best = fastest(rows)
    lines.append("")
    lines += [f"- fastest at {p} (batch-1 median): **{rt}**" for p, rt in best.items()]
    return "\n".join(lines) + "\n"


def _write_atomic(dst: Path, data: bytes) -> None:
    from edgeopt.fsutil import atomic_path

    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)
