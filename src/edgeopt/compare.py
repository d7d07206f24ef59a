"""Side by side: one model in every runtime at every precision, each runtime quantizing with its
own tools, every number measured on the artifact in that runtime.

Rows are runtime x precision; the runtimes are the lines of ``edgeopt.runtimes.registry.RUNTIMES``
(a new runtime shows up here without changes to this module). Each runtime gets artifacts of the
first of its declared formats that compare can build (.tflite, .onnx, OpenVINO .xml); LiteRT rows
are made by the same recipe steps as ``edgeopt optimize`` (float32, float16, int8, dynamic) from a
Keras model, or by ``techniques.tflite_ptq`` from a float .tflite; ONNX Runtime and OpenVINO rows
by ``techniques.onnx_ptq``. Every artifact is loaded and run once before it is measured: one its
runtime cannot run is a "failed" row with the runtime's whole message. A
runtime that is missing, or cannot run a model, gives a row with a ``status`` and a ``reason``
instead of an exception: "unavailable" (the runtime is not installed), "n/a" (not applicable: a
format or precision the runtime does not take, e.g. TFLite Micro and a float16 or dynamic-range
.tflite, or any .tflite row of an .onnx input) or "failed" (the runtime should run it and did not:
an op it lacks, an arena that does not fit, a crash; the whole reason, never cut).

Several inputs (data as ``NamedArrays``, one array per input) are fed to every runtime by name
(``core.arrays.match_inputs``); the ONNX and OpenVINO artifacts of such a model are made with the
same ONNX Runtime / NNCF calls as ``techniques.onnx_ptq`` (``export.onnx``, ``export.openvino``),
which take one array per input. Several outputs are each scored (``Row.metrics["per_output"]``),
the headline on ``output`` (``--output``; default the first labelled), and ``max_abs_diff`` is
the largest difference over every output.
"""
from __future__ import annotations

import shutil
import tempfile
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeopt.core.precision import Precision
from edgeopt.errors import UserError, one_line
from edgeopt.report.format import fmt_bytes, fmt_count, fmt_ms
from edgeopt.measure.latency import TIMED
from edgeopt.runtimes.cpu import relevant_flags  # noqa: F401  (part of compare's public surface)
from edgeopt.techniques.artifact_check import ArtifactCheckFailed, check_artifact

PRECISIONS = (Precision.FLOAT32, Precision.FLOAT16, Precision.INT8, Precision.DYNAMIC)
DEFAULT_PRECISIONS = (Precision.FLOAT32, Precision.FLOAT16, Precision.INT8)
INT8_SETTINGS = ("rule", "measured")  # how ONNX Runtime / OpenVINO int8 settings are chosen
# artifact suffix -> the Artifacts method that builds it (with the format's own tools)
BUILDERS = {".tflite": "_tflite", ".onnx": "_onnx", ".xml": "_ir"}
# the recipe step that makes each LiteRT precision (the same step `edgeopt optimize` runs)
LITERT_STEPS = {Precision.FLOAT32: "float32", Precision.FLOAT16: "float16", Precision.INT8: "int8",
                Precision.DYNAMIC: "dynamic"}


@dataclass
class Row:
    runtime: str
    precision: Precision
    status: str = "ok"  # ok | unavailable | n/a (not applicable) | failed
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
    metric: str = ""  # the headline metric's name (top-1 accuracy, accuracy, mae...)
    score: float | None = None  # its value (accuracy is a fraction; mae in target units)
    metrics: dict = field(default_factory=dict)  # every task metric (per_output for several outputs)
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
    """Builds each (suffix, precision) artifact once, with the format's own tools, and remembers
    why one could not be built. .tflite artifacts are shared by LiteRT and TFLM."""

    def __init__(self, loaded, dataset, workdir: Path, calibration: int, cpu_flags: list[str],
                 int8_settings: str = "rule", input_shape=None):
        self.model_path, self.kind, self.dataset = Path(loaded.path), loaded.kind, dataset
        self.workdir, self.calibration_n, self.cpu_flags = workdir, calibration, cpu_flags
        self.int8_settings, self.input_shape = int8_settings, input_shape
        self.several_inputs = hasattr(dataset.x_eval, "as_list")
        self._built: dict[tuple[str, str], tuple[Path, dict] | Exception] = {}
        self._loaded = loaded
        self._fixed_keras = None  # (Keras model with the int8 step's weight fixes, their names)

    def keras(self):
        return self._loaded.keras

    def calibration(self) -> np.ndarray:
        return self.dataset.calibration(self.calibration_n)

    def get(self, suffix: str, precision: Precision | str) -> tuple[Path, dict]:
        """(artifact path, how it was made) for ``suffix`` (".tflite", ".onnx", ".xml"; the dot
        may be left out) at ``precision`` (a Precision or its spelling)."""
        suffix = suffix if suffix.startswith(".") else f".{suffix}"
        precision = Precision.parse(precision)
        key = (suffix, precision)
        if key not in self._built:
            dst = self.workdir / f"{precision.value}{suffix}"
            try:
                details = getattr(self, BUILDERS[suffix])(precision, dst) or {}
                # loaded and run once before anything measures it; several inputs: the runtime
                # session feeds them by name when the row is measured (a failure there is "failed")
                reason = None if self.several_inputs else check_artifact(dst, self.dataset.x_eval[:1])
                if reason:
                    raise ArtifactCheckFailed(reason)
                self._built[key] = (dst, details)
            except Exception as e:  # remembered: a second runtime on this format gets the same reason
                self._built[key] = e
        built = self._built[key]
        if isinstance(built, Exception):
            raise built
        return built

    # -- LiteRT (.tflite), with the recipe step of that precision
    def _tflite(self, precision: Precision, dst: Path) -> dict:
        if self.kind == "tflite":
            return self._given_tflite(precision, dst)
        if self.kind != "keras":
            raise Unsupported("no ONNX -> .tflite converter is installed (onnx2tf is not a dependency); "
                              "pass the Keras model to get LiteRT/TFLM rows")
        from edgeopt.steps import StepContext, get_step, step_config

        name = LITERT_STEPS[precision]
        work = self.workdir / f"step-{name}"
        work.mkdir(parents=True, exist_ok=True)
        options = {"calibration_samples": self.calibration_n}
        if self.input_shape is not None:  # --input-shape for open axes (else the data's)
            options["input_shape"] = self.input_shape
        ctx = StepContext(dataset=self.dataset, work_dir=work, log=lambda msg: None, options=options)
        step = get_step(name)
        result = step.run(ctx, self.keras())
        weight_fixes = [f for f in (result.details.get("fixes") or {}).get("fixes", []) if f != "act_range"]
        if result.model is not None and weight_fixes:  # ONNX/OpenVINO int8 are made from it too
            self._fixed_keras = (result.model, weight_fixes)
        shutil.move(str(result.artifact), dst)
        shutil.rmtree(work, ignore_errors=True)
        details = {k: v for k, v in result.details.items() if k != "weight_tensors"}
        mode = ", ".join(f"{details[k]} {k}" for k in ("weights", "activations") if k in details)
        return {**details, "step": step_config(ctx, step.config).to_record(), **({"mode": mode} if mode else {})}

    def _given_tflite(self, precision: Precision, dst: Path) -> dict:
        """The given .tflite itself, or (from a float one) a variant made by ai-edge-quantizer."""
        from edgeopt.techniques import tflite_ptq

        given = tflite_precision(self.model_path)
        if precision == given:
            shutil.copyfile(self.model_path, dst)
            return {"source": "the given .tflite"}
        if given != Precision.FLOAT32:
            raise Unsupported(f"the input is a {given} .tflite; making {precision} from it needs the "
                              f"float model (float32 .tflite, .onnx or Keras)")
        if self.several_inputs and precision == Precision.INT8:
            raise Unsupported(f"int8 from a float .tflite calibrates one input array; {self.model_path.name} has "
                              f"{len(self.dataset.x_eval.names)} inputs: compare the Keras model or its .onnx "
                              f"for int8")
        make = {Precision.FLOAT16: tflite_ptq.tflite_float16, Precision.INT8: tflite_ptq.tflite_int8,
                Precision.DYNAMIC: tflite_ptq.tflite_dynamic}[precision]
        calib = None if self.several_inputs else self.calibration()  # float16/dynamic: load check only
        _, details = make(self.model_path, calib, dst.parent, name=dst.stem)
        return {k: v for k, v in details.items() if k != "weight_tensors"}

    # -- ONNX, with ONNX Runtime's tools
    def _onnx(self, precision: Precision, dst: Path) -> dict:
        from edgeopt.export import onnx as ox

        if precision == Precision.FLOAT32:
            if self.kind == "onnx":
                shutil.copyfile(self.model_path, dst)
                return {"source": "the given .onnx"}
            if self.kind != "keras":
                raise Unsupported("a .tflite input gets LiteRT/TFLM rows only; pass the Keras model "
                                  "for ONNX Runtime/OpenVINO rows")
            ox.keras_to_onnx(self.keras(), dst)
            return {"exporter": "keras export (tf2onnx)"}
        from edgeopt.engine.int8_settings import choose_int8_settings
        from edgeopt.techniques import onnx_ptq

        fp32, _ = self.get(".onnx", Precision.FLOAT32)
        make = {Precision.FLOAT16: onnx_ptq.onnx_float16, Precision.DYNAMIC: onnx_ptq.ort_dynamic_int8}
        fixed = {}
        if precision == Precision.INT8:
            fp32, fixed = self._int8_source_onnx(fp32)
        if self.several_inputs:
            return {**self._onnx_several_inputs(precision, fp32, dst), **fixed}
        if precision == Precision.INT8 and self.int8_settings == "measured":
            _, details = choose_int8_settings(fp32, self.calibration(), self.dataset.x_val, dst.parent,
                                              runtime="onnxruntime", cpu_flags=self.cpu_flags, name=dst.stem)
        elif precision == Precision.INT8:
            _, details = onnx_ptq.ort_static_int8(fp32, self.calibration(), dst.parent, name=dst.stem,
                                                  cpu_flags=self.cpu_flags)
        else:
            _, details = make[precision](fp32, self.dataset.x_eval[:1], dst.parent, name=dst.stem)
        return {**details, **fixed}

    def _onnx_several_inputs(self, precision: Precision, fp32: Path, dst: Path) -> dict:
        """ONNX variants of a several-input model with the ONNX Runtime calls ``onnx_ptq`` makes
        (its checks take one input array); int8 settings by the CPU-flag rule."""
        from edgeopt.export import onnx as ox

        if precision == Precision.FLOAT16:
            ox.onnx_to_fp16(fp32, dst)
            return {"precision": "float16", "converter": "onnxruntime.transformers.float16", "io": "float32"}
        if precision == Precision.DYNAMIC:
            return {"precision": "dynamic", "quantizer": "onnxruntime.quantization.quantize_dynamic",
                    **ox.quantize_onnx_dynamic(fp32, dst)}
        details = ox.quantize_onnx_static(fp32, dst, self.calibration(), self.cpu_flags)
        note = {"int8_settings": "rule (measured settings take one input)"} if self.int8_settings == "measured" else {}
        return {"precision": "int8", "quantizer": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                "calibration": {"method": "minmax", "samples": len(self.calibration())}, **details, **note}

    def _int8_source_onnx(self, fp32: Path) -> tuple[Path, dict]:
        """The float ONNX that ONNX Runtime/OpenVINO int8 quantize: for a Keras input whose int8
        step kept weight fixes (cle, bias_correction, adaround), the fixed model exported (the
        int8 step's artifact is built first to learn them), else ``fp32``."""
        if self.kind != "keras":
            return fp32, {}
        try:
            self.get(".tflite", Precision.INT8)
        except Exception:  # no LiteRT int8 (its row says why): quantize the unfixed model
            return fp32, {}
        if self._fixed_keras is None:
            return fp32, {}
        from edgeopt.export import onnx as ox

        model, fixes = self._fixed_keras
        src = self.workdir / "int8-fixes" / "float32_fixed.onnx"
        if not src.exists():
            src.parent.mkdir(parents=True, exist_ok=True)
            ox.keras_to_onnx(model, src)
        return src, {"int8_fixes": fixes, "quantized_from": "the Keras model with the int8 step's fixes"}

    # -- OpenVINO IR, with OpenVINO's converter and NNCF
    def _ir(self, precision: Precision, dst: Path) -> dict:
        from edgeopt.export import openvino as ovx

        if precision == Precision.DYNAMIC:
            raise Unsupported("OpenVINO has no dynamic int8 for this model type (NNCF weight "
                              "compression covers MatMul/Embedding, not convolutions)")
        if precision in (Precision.FLOAT32, Precision.FLOAT16):
            onnx_fp32, _ = self.get(".onnx", Precision.FLOAT32)
            ovx.onnx_to_openvino(onnx_fp32, dst, fp16=precision == Precision.FLOAT16)
            return {"converter": "openvino.convert_model", "weights": precision.value,
                    "inference_precision": "f32"}
        from edgeopt.engine.int8_settings import choose_int8_settings
        from edgeopt.techniques.onnx_ptq import nncf_int8

        onnx_fp32, fixed = self._int8_source_onnx(self.get(".onnx", Precision.FLOAT32)[0])
        if self.several_inputs:  # nncf_int8's checks take one input array: the same NNCF call here
            from edgeopt.export.openvino import quantize_openvino

            ir = ovx.onnx_to_openvino(onnx_fp32, dst.parent / "int8-source" / "float32.xml")
            return {"precision": "int8", "quantizer": "nncf.quantize (OpenVINO)",
                    **quantize_openvino(ir, dst, self.calibration(), self.cpu_flags), **fixed}
        if self.int8_settings == "measured":
            return {**choose_int8_settings(onnx_fp32, self.calibration(), self.dataset.x_val, dst.parent,
                                           runtime="openvino", cpu_flags=self.cpu_flags, name=dst.stem)[1],
                    **fixed}
        return {**nncf_int8(onnx_fp32, self.calibration(), dst.parent, name=dst.stem,
                            cpu_flags=self.cpu_flags)[1], **fixed}


class Unsupported(Exception):
    """This runtime/format does not take this precision or input format: a "n/a" (not applicable)
    row, not an error."""


NOT_APPLICABLE = "n/a"
# .tflite precisions TFLite Micro has no kernels for (runtimes/tflm.py): its load error on them
# means "not applicable"; on float32 or int8 it is a failure (an op it lacks, the arena, a crash).
TFLM_NOT_FOR = {
    Precision.FLOAT16: "TFLite Micro has no float16 kernels (a float16 .tflite keeps float16 weights "
                       "behind DEQUANTIZE ops); deploy int8 or float32",
    Precision.DYNAMIC: "TFLite Micro does not run dynamic-range (hybrid) models (int8 weights with float "
                       "activations); deploy int8",
}


def tflite_precision(path: Path) -> Precision:
    """The compute precision of a .tflite file, from its profile (read by edgeopt.core.tflite)."""
    from edgeopt.measure.graph import profile_tflite

    return Precision.parse(profile_tflite(path, measure_arena=False).precision)


# ---------------------------------------------------------------- reference outputs

def reference_outputs(kind: str, x: np.ndarray, artifacts: Artifacts) -> np.ndarray:
    """Outputs of the float model every row is compared against: the Keras model, or the given
    .onnx (in ONNX Runtime) or .tflite (in LiteRT) itself."""
    if kind == "keras":
        feed = x.as_list() if hasattr(x, "as_list") else x  # several inputs: arrays in model input order
        out = artifacts.keras().predict(feed, batch_size=256, verbose=0)
        if isinstance(out, (list, tuple, dict)):  # several outputs: named like the dataset's outputs
            from edgeopt.data import NamedArrays

            values = list(out.values()) if isinstance(out, dict) else list(out)
            names = artifacts.dataset.output_names or [f"output_{i}" for i in range(len(values))]
            return NamedArrays(dict(zip(names, [np.asarray(v, np.float32) for v in values])))
        return np.asarray(out, np.float32)
    if kind == "onnx":
        from edgeopt.runtimes.onnxruntime import OnnxRuntime

        return OnnxRuntime().load(artifacts.model_path).predict(x)
    from edgeopt.runtimes.litert import LiteRT

    return LiteRT().load(artifacts.model_path).predict(x)


# ---------------------------------------------------------------- measuring one row

def measure_row(row: Row, path: Path, dataset, reference, threads: int, runs: int,
                batch: int, seconds: float = 1.0, output: str | int | None = None) -> Row:
    """Load ``path`` in ``row.runtime``, score it on the eval split against the labels and the
    float ``reference`` outputs (``score_row``), and time it at batch 1 and at ``batch``."""
    from edgeopt.measure.bench import model_named
    from edgeopt.measure.latency import measure_latency, measure_throughput
    from edgeopt.runtimes.registry import get_runtime

    try:
        session = get_runtime(row.runtime).load(path, threads=threads)
    except UserError as e:  # the artifact exists but this runtime refuses it: say why, measured
        from edgeopt.runtimes.tflm import OpenAxisRefused

        if isinstance(e, OpenAxisRefused):  # an open input axis: TFLM cannot take this file at all
            raise Unsupported(str(e)) from None
        if row.runtime == "tflm" and row.precision not in TFLM_NOT_FOR:
            raise ArtifactCheckFailed(str(e)) from None  # TFLM runs float32/int8: this is a failure
        raise Unsupported(f"{TFLM_NOT_FOR[row.precision]}; {e}" if row.runtime == "tflm" else str(e)) from None
    pred = model_named(session.predict(dataset.x_eval), dataset)
    row.load_ms = session.load_seconds * 1000.0
    row.size_bytes = artifact_size(path)
    row.arena_bytes = getattr(session, "arena_bytes", None)  # TFLM measures its tensor arena
    score_row(row, pred, dataset, reference, output)
    lat = measure_latency(session, dataset.x_eval[:1], runs=runs, warmup=max(1, min(20, runs // 5)))
    row.p50_ms, row.p99_ms, row.ips_batch1 = lat.p50_ms, lat.p99_ms, lat.throughput_ips
    row.ips_batch = measure_throughput(session, dataset.x_eval, batch=batch, seconds=seconds)
    return row


AGREEMENT_TASKS = ("classification", "binary", "fidelity")  # tasks where top-1 agreement means something


def score_row(row: Row, pred, dataset, reference, output: str | int | None = None) -> Row:
    """The row's task metrics (``measure.bench.score``: every labelled output, the headline on
    ``output``), top-1 agreement with ``reference`` on the scored output (classification-like
    tasks) and the largest absolute difference from it over every output."""
    from edgeopt.core.metrics import fidelity, headline
    from edgeopt.measure.bench import _chosen, model_named, score

    reference = model_named(reference, dataset)
    metrics = score(pred, dataset.y_eval, dataset, output_name=output, reference=reference)
    row.metrics = {k: v for k, v in metrics.items() if not isinstance(v, np.ndarray)}
    head = headline(metrics)
    if head:
        row.metric, row.score = metrics.get("metric") or head[0], head[1]
    if "accuracy" in metrics:
        row.accuracy = float(metrics["accuracy"])
    if dataset.task in AGREEMENT_TASKS:
        row.top1_agreement = fidelity(_chosen(pred, metrics), _chosen(reference, metrics),
                                      getattr(dataset, "output_reading", "auto"))["top1_agreement"]
    row.max_abs_diff = max_abs_diff(pred, reference)
    return row


def max_abs_diff(pred, reference) -> float:
    """Largest |pred - reference| over every output (several outputs matched by name, else in order)."""
    from edgeopt.core.arrays import as_arrays

    p_names, p = as_arrays(pred)
    r_names, r = as_arrays(reference)
    if len(p) != len(r):
        raise UserError(f"{len(p)} outputs cannot be compared with the float model's {len(r)}")
    if set(p_names) == set(r_names) and len(set(r_names)) == len(r_names):
        p = [p[p_names.index(n)] for n in r_names]
    return max(float(np.abs(np.asarray(a, np.float64).reshape(b.shape) - b).max()) for a, b in zip(p, r))


def artifact_size(path: Path) -> int:
    path = Path(path)
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.exists())


# ---------------------------------------------------------------- the comparison

def compare(model_path, dataset, runtimes: list[str] | None = None,
            precisions: list[Precision | str] | tuple[Precision | str, ...] = DEFAULT_PRECISIONS,
            threads: int = 1,
            runs: int = 100, batch: int = 32, out_dir: str | Path | None = None,
            calibration: int = 300, throughput_seconds: float = 1.0, progress=None,
            int8_settings: str = "rule", input_shape=None, output: str | int | None = None) -> list[Row]:
    """Every runtime x precision on ``model_path`` (.keras/.h5/SavedModel, .onnx or .tflite, or a
    ``LoadedModel`` already loaded, e.g. by ``api.prepare``).

    ``runtimes`` are registry names (default: every registered runtime); ``precisions`` are
    Precision values or aliases (fp32, int8-dynamic, ...). Artifacts go to ``out_dir`` (kept) or a
    temporary folder (removed). ``calibration`` samples
    of the training split calibrate int8; throughput at ``batch`` runs for ``throughput_seconds``.
    ``progress`` is called with each finished Row. ``int8_settings``: "rule" (ONNX Runtime and
    OpenVINO int8 settings from the CPU flags) or "measured" (each candidate setting measured on
    the validation split, the choice recorded in the row's settings; rows report on the eval split).
    ``input_shape``: one sample's shape for open axes (``--input-shape``; else the data's);
    ``output``: the scored output of several (name or index; ``--output``).
    """
    from edgeopt.runtimes.cpu import cpu_info
    from edgeopt.runtimes.registry import RUNTIMES, get_runtime

    loaded = model_path if hasattr(model_path, "kind") and hasattr(model_path, "path") else None
    model_path = Path(loaded.path if loaded is not None else model_path)
    if not model_path.exists():
        raise UserError(f"model not found: {model_path}")
    runtimes = list(runtimes or RUNTIMES)
    precisions = parse_compare_precisions(precisions)
    if int8_settings not in INT8_SETTINGS:
        raise UserError(f"int8_settings {int8_settings!r}: choose from {', '.join(INT8_SETTINGS)}")
    loaded = loaded or load_model_file(model_path)
    cpu = cpu_info()
    tmp = None if out_dir else tempfile.mkdtemp(prefix="edgeopt-compare-")
    workdir = Path(out_dir or tmp)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        _check_data(loaded, dataset)
        artifacts = Artifacts(loaded, dataset, workdir, calibration, cpu["flags"], int8_settings, input_shape)
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
                              (threads, runs, batch, throughput_seconds, output))
                rows.append(row)
                if progress:
                    progress(row)
        return rows
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def parse_compare_precisions(precisions) -> list[Precision]:
    """Precision values or aliases -> the Precision list compare runs; UserError for others."""
    parsed, bad = [], []
    for p in precisions:
        try:
            parsed.append(Precision.parse(p))
        except UserError:
            bad.append(p)
    bad += [p for p in parsed if p not in PRECISIONS]
    if bad or not parsed:
        what = repr(str(bad[0])) if bad else "no"
        raise UserError(f"compare cannot make {what} rows; choose from "
                        f"{', '.join(p.value for p in PRECISIONS)}")
    return list(dict.fromkeys(parsed))


def artifact_suffix(runtime) -> str:
    """The first of a runtime's declared formats that compare can build; Unsupported if none."""
    for suffix in runtime.formats:
        if suffix.lower() in BUILDERS:
            return suffix.lower()
    raise Unsupported(f"compare cannot make {', '.join(runtime.formats)} artifacts "
                      f"(it builds {', '.join(BUILDERS)})")


def _fill_row(row: Row, artifacts: Artifacts, dataset, reference, workdir, timing: tuple) -> None:
    from edgeopt.runtimes.registry import get_runtime

    try:
        path, settings = artifacts.get(artifact_suffix(get_runtime(row.runtime)), row.precision)
        row.settings = settings
        row.artifact = str(path.relative_to(workdir)) if path.is_relative_to(workdir) else str(path)
        measure_row(row, path, dataset, reference, *timing)
    except Unsupported as e:
        row.status, row.reason = NOT_APPLICABLE, str(e)
    except (UserError, ArtifactCheckFailed) as e:  # the whole reason, never cut
        row.status, row.reason = "failed", str(e)
    except Exception as e:  # a runtime crashing on one model must not end the comparison
        row.status = "failed"
        row.reason = f"{type(e).__name__}: {one_line(e, limit=len(str(e)) + 1)}"  # whole, on one line
        row.settings = {**row.settings, "traceback": traceback.format_exc(limit=3)[-600:]}


def _check_data(loaded, dataset) -> None:
    from edgeopt.data import check_against_model

    want = {i.name: i.shape for i in loaded.inputs} if len(loaded.inputs) > 1 else loaded.input_shape
    check_against_model(dataset, want, loaded.output_units)


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


def render_table(rows: list[Row], title: str = "edgeopt compare"):
    """A rich renderable: the numbers in a table, then one note per row (settings, CPU flags, or
    why a row did not run), so the table stays narrow enough for a terminal."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    batch = rows[0].batch if rows else 32
    table = Table(title=title, header_style="bold", caption="* fastest at batch 1 for its precision. p50 and inf/s time " + TIMED)
    for col in ("runtime", "precision", "load ms", "p50 ms", "p99 ms", "inf/s b1", f"inf/s b{batch}",
                "size", "accuracy", "agree", "max|Δ|"):
        table.add_column(col, justify="left" if col in ("runtime", "precision") else "right", no_wrap=True)
    best = fastest(rows)
    notes = Text()
    for r in rows:
        star = "*" if best.get(r.precision) == r.runtime else ""
        cells = _cells(r)[3:12] if r.ok else [r.status] + ["-"] * 8
        table.add_row(f"{r.runtime}{star}", r.precision.value, *cells, style=None if r.ok else "yellow")
        note = _note(r)
        notes.append(f"{r.runtime} {r.precision}: ", style="bold")
        flags = f"cpu flags: {' '.join(r.cpu_flags) or 'none relevant'}" if r.ok else ""  # not run: no flags
        notes.append("; ".join(p for p in (note, flags) if p) + "\n")
    return Group(table, notes)


def _note(r: Row) -> str:
    if not r.ok:  # the whole reason: "failed: ..." or "not applicable: ..."
        return f"{'not applicable' if r.status == NOT_APPLICABLE else r.status}: {r.reason}"
    parts = [r.settings.get("why") or r.settings.get("mode") or ""]
    if r.arena_bytes:
        parts.append(f"arena {fmt_bytes(r.arena_bytes)}")
    if r.runtime == "tflm":
        parts.append("reference kernels")
    return "; ".join(p for p in parts if p)


def _cells(r: Row) -> list[str]:
    return [r.runtime, r.precision.value, r.status, fmt_ms(r.load_ms, 1), fmt_ms(r.p50_ms), fmt_ms(r.p99_ms),
            fmt_count(r.ips_batch1, 1), fmt_count(r.ips_batch, 1), fmt_bytes(r.size_bytes),
            _num(r.accuracy, ".4f"), _num(r.top1_agreement, ".4f"), _num(r.max_abs_diff, ".2g"),
            " ".join(r.cpu_flags)]


def _num(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown_table(rows: list[Row]) -> str:
    batch = rows[0].batch if rows else 32
    head = ["runtime", "precision", "status", "load ms", "p50 ms", "p99 ms", "inf/s b1", f"inf/s b{batch}",
            "size", "accuracy", "top-1 agree", "max abs diff", "cpu flags", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = _cells(r) + [_note(r).replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    best = fastest(rows)
    lines.append("")
    lines += [f"- fastest at {p} (batch-1 median): **{rt}**" for p, rt in best.items()]
    lines.append(f"- p50 and inf/s time {TIMED}; a model with a fixed batch runs its stored batch per call")
    return "\n".join(lines) + "\n"
