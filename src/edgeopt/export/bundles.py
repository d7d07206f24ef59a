"""Deploy bundles: one folder per target with the model in the form that target runs and the smallest
program that runs it once on a sample input and prints the output.

Targets:
- ``arduino``: NAME.h/.cc (the model as a C array) and NAME.ino (TFLite Micro sketch).
- ``zephyr``: a Zephyr application (CMakeLists.txt, prj.conf, src/main.cpp, src/NAME.h/.cc) using the
  tflite-micro module, laid out like Zephyr's samples/modules/tflite-micro/hello_world.
- ``linux-litert``, ``onnx``, ``openvino``: the model, ``infer.py``, ``requirements.txt`` (exact versions
  edgeopt ran with), ``io.json`` (input/output names, shapes, dtypes, quantization) and
  ``sample_input.npy`` (``sample_input.npz``, one key per input name, for a model with several inputs).
  Several inputs and outputs are fed and printed by name.
- ``ethos-u``: the vela-compiled .tflite for one Ethos-U target with vela's summary (CSV and JSON).

Everything is checked and built in a staging folder first; the output folder only receives complete files.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np

from edgeopt.errors import UserError
from edgeopt.fsutil import ensure_writable_dir

TARGETS = ("arduino", "zephyr", "linux-litert", "onnx", "openvino", "ethos-u")
_PY_RUNTIME = {"linux-litert": ("ai-edge-litert", "model.tflite"), "onnx": ("onnxruntime", "model.onnx"),
               "openvino": ("openvino", "model.xml")}


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise UserError(f"unknown export target '{target}'; choose one of: {', '.join(TARGETS)}")
    return target


def export_bundle(artifact, target: str, out_dir, name: str | None = None, sample=None,
                  npu: str = "ethos-u55-128", output_names: list[str] | None = None,
                  input_shapes: dict | None = None) -> list[Path]:
    """Write the TARGET bundle for ARTIFACT (.tflite; .onnx also for onnx/openvino) into OUT_DIR.

    SAMPLE: one float input sample (None: zeros, said so in the bundle; NamedArrays or a dict of one
    sample per input for a model with several inputs, Python targets only). NPU: the Ethos-U target
    (hardware/npu.yaml) for ``ethos-u``. OUTPUT_NAMES: the source model's own output names in its
    order (Keras output layer names), used in io.json and printed by infer.py instead of the
    converter's tensor names (``Identity``, ``Identity_1``); None keeps the artifact's names
    (signature names for a .tflite that has them). INPUT_SHAPES: {input name: one sample's shape}
    fixing an .onnx artifact's open axes for the Python targets (io.json, the sample, the OpenVINO
    IR; None: open axes at 1). Returns the written paths. Raises UserError for
    an unknown target, an artifact the target cannot take, or a model the target's toolchain rejects."""
    check_target(target)
    if target == "ethos-u":
        from edgeopt.hardware.vela import npu_targets

        if npu not in npu_targets():
            raise UserError(f"unknown Ethos-U target '{npu}'; known: {', '.join(npu_targets())}")
    artifact = Path(artifact)
    if not artifact.is_file():
        raise UserError(f"artifact not found: {artifact}")
    accepted = (".tflite", ".onnx") if target in ("onnx", "openvino") else (".tflite",)
    if artifact.suffix not in accepted:
        raise UserError(f"--target {target} needs a {' or '.join(accepted)} artifact, got {artifact.name}")
    if target in ("arduino", "zephyr", "ethos-u"):  # TFLite Micro cannot resize an open axis
        from edgeopt.runtimes.tflm import check_static_inputs

        check_static_inputs(artifact)
    from edgeopt.export.c_array import c_identifier

    name = c_identifier(name or artifact.stem)
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    ensure_writable_dir(out_dir)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staging-") as tmp:
        stage = Path(tmp)
        builder = {"arduino": _arduino, "zephyr": _zephyr, "ethos-u": _ethos_u}.get(target, _python_bundle)
        try:
            builder(artifact, stage, name, sample, target=target, npu=npu, output_names=output_names,
                    input_shapes=input_shapes)
        except BaseException:
            if created:  # leave no empty folder behind for a refused model
                shutil.rmtree(out_dir, ignore_errors=True)
            raise
        written = []
        for src in sorted(p for p in stage.rglob("*") if p.is_file()):
            dst = out_dir / src.relative_to(stage)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            written.append(dst)
    return written


# --------------------------------------------------------------------------- microcontrollers
def _arduino(artifact: Path, stage: Path, name: str, sample, **_) -> None:
    from edgeopt.export.c_array import export_mcu

    export_mcu(artifact, stage, name, sample)


_ZEPHYR_CMAKE = """cmake_minimum_required(VERSION 3.20.0)

find_package(Zephyr REQUIRED HINTS $ENV{{ZEPHYR_BASE}})
project({name})

# Function-local statics (the resolver, the interpreter) need no thread-safe guards here, as in Zephyr's
# samples/modules/tflite-micro/hello_world.
set(NO_THREADSAFE_STATICS $<TARGET_PROPERTY:compiler-cpp,no_threadsafe_statics>)
zephyr_compile_options($<$<COMPILE_LANGUAGE:CXX>:${{NO_THREADSAFE_STATICS}}>)

target_sources(app PRIVATE src/main.cpp src/{name}.cc)
"""

_ZEPHYR_PRJ = """# Zephyr's samples/modules/tflite-micro/hello_world/prj.conf, plus float printing for the output values.
# Needs the tflite-micro module in the west manifest: west config manifest.project-filter -- +tflite-micro
CONFIG_CPP=y
CONFIG_LIB_CPLUSPLUS=y
CONFIG_NEWLIB_LIBC=y
CONFIG_TENSORFLOW_LITE_MICRO=y
CONFIG_MAIN_STACK_SIZE=4096
CONFIG_CBPRINTF_FP_SUPPORT=y
"""


def zephyr_main(program) -> str:
    from edgeopt.export.c_array import TFLM_INCLUDES, program_core

    return f"""// Generated by edgeopt: runs {program.name} with TensorFlow Lite Micro on Zephyr.
#include <zephyr/kernel.h>
{TFLM_INCLUDES}#include "{program.name}.h"

{program_core(program, "printk")}
int main(void) {{
  if (!setup_model()) return 1;
  while (true) {{
    const int64_t start = k_uptime_get();
    if (run_once()) printk("inference + printing: %d ms\\n", (int)(k_uptime_get() - start));
    k_msleep(1000);
  }}
  return 0;
}}
"""


def _zephyr(artifact: Path, stage: Path, name: str, sample, **_) -> None:
    from edgeopt.export.c_array import c_array_source, mcu_program

    program = mcu_program(artifact, name, sample)
    header, source = c_array_source(artifact.read_bytes(), program.name)
    (stage / "src").mkdir()
    (stage / "CMakeLists.txt").write_text(_ZEPHYR_CMAKE.format(name=program.name))
    (stage / "prj.conf").write_text(_ZEPHYR_PRJ)
    (stage / "src" / f"{program.name}.h").write_text(header)
    (stage / "src" / f"{program.name}.cc").write_text(source)
    (stage / "src" / "main.cpp").write_text(zephyr_main(program))


# --------------------------------------------------------------------------- Ethos-U
def _ethos_u(artifact: Path, stage: Path, name: str, sample, npu: str, **_) -> None:
    from edgeopt.hardware.vela import compile_for_ethos_u
    from edgeopt.measure.graph import profile_tflite

    precision = profile_tflite(artifact, measure_arena=False).precision
    if precision != "int8":
        raise UserError(f"Ethos-U runs full-int8 models; {artifact.name} is {precision} (export the int8 variant)")
    with tempfile.TemporaryDirectory() as tmp:
        result = compile_for_ethos_u(artifact, npu, "Performance", out_dir=tmp)
        shutil.copyfile(result.compiled_tflite, stage / f"{name}_vela.tflite")
        (csv_path,) = Path(tmp).glob("*_summary_*.csv")
        shutil.copyfile(csv_path, stage / "vela_summary.csv")
    summary = result.to_dict()
    summary["compiled_tflite"] = f"{name}_vela.tflite"
    (stage / "vela_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (stage / "README.md").write_text(
        f"# {name} for {npu}\n\n`{name}_vela.tflite` was compiled by Arm Vela {result.vela_version} for "
        f"{result.accelerator} ({result.system_config}, {result.memory_mode}). Run it with TensorFlow Lite Micro "
        f"built with the Ethos-U driver (the ethos-u custom op) on the device.\n\nVela's estimate: "
        f"{result.cycles_total:,} cycles, {result.inference_ms:.3f} ms, SRAM {result.sram_bytes / 1024:.1f} KiB, "
        f"{result.off_chip_memory or 'off-chip'} {result.off_chip_bytes / 1024:.1f} KiB; "
        f"{result.npu_ops} NPU ops, {result.cpu_ops} CPU ops.\n")


# --------------------------------------------------------------------------- Linux (Python runtimes)
_INFER = '''"""Run {model} once with {runtime} and print its outputs as JSON.

Usage: python infer.py [input.npy | inputs.npz]   (default: {sample}; float values, any shape with
the input's element count; a model with several inputs takes an .npz with one key per input name
in io.json; integer models are quantized with io.json's scale and zero point)
"""
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
io = json.loads((HERE / "io.json").read_text())


def quantize(x, spec):
    if spec["scale"] is None:
        return x.astype(spec["dtype"])
    info = np.iinfo(spec["dtype"])
    return np.clip(np.round(x / spec["scale"] + spec["zero_point"]), info.min, info.max).astype(spec["dtype"])


def dequantize(y, spec):
    y = np.asarray(y)
    return y.astype(np.float32) if spec["scale"] is None else (y.astype(np.float32) - spec["zero_point"]) * spec["scale"]


path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "{sample}"
data = np.load(path)
arrays = [data[spec["name"]] for spec in io["inputs"]] if path.suffix == ".npz" else [data]
xs = [quantize(a.astype(np.float32).reshape(spec["shape"]), spec) for a, spec in zip(arrays, io["inputs"])]
{run}
outputs = {{spec["name"]: dequantize(y, spec).reshape(-1) for y, spec in zip(ys, io["outputs"])}}
y = next(iter(outputs.values()))
print(json.dumps({{"output": [float(v) for v in y], "argmax": int(np.argmax(y)),
                  "outputs": {{k: [float(v) for v in o] for k, o in outputs.items()}}}}))
'''

_RUN = {
    "linux-litert": """from ai_edge_litert.interpreter import Interpreter

interpreter = Interpreter(model_path=str(HERE / "model.tflite"))
for detail, x in zip(interpreter.get_input_details(), xs):  # open (-1) axes take the sample's sizes
    interpreter.resize_tensor_input(detail["index"], x.shape, strict=True)
interpreter.allocate_tensors()
for detail, x in zip(interpreter.get_input_details(), xs):
    interpreter.set_tensor(detail["index"], x)
interpreter.invoke()
ys = [interpreter.get_tensor(detail["index"]) for detail in interpreter.get_output_details()]""",
    "onnx": """import onnxruntime as ort

session = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
ys = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs)})""",
    "openvino": """import openvino as ov

# f32 as edgeopt measured it: OpenVINO would otherwise run bf16 on CPUs with AMX
compiled = ov.Core().compile_model(str(HERE / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
result = compiled(xs)
ys = [result[port] for port in compiled.outputs]""",
}


def _python_bundle(artifact: Path, stage: Path, name: str, sample, target: str, output_names=None,
                   input_shapes=None, **_) -> None:
    package, model_file = _PY_RUNTIME[target]
    io = _io_spec(artifact, output_names, input_shapes)
    {"linux-litert": _copy, "onnx": _to_onnx, "openvino": _to_openvino}[target](artifact, stage / model_file, io)
    xs = _sample_inputs(sample, io["inputs"])
    io["sample_input"] = "zeros (no sample data was given to export)" if sample is None else "first data sample"
    if len(xs) == 1:
        sample_file = "sample_input.npy"
        np.save(stage / sample_file, xs[0])
    else:
        sample_file = "sample_input.npz"
        np.savez(stage / sample_file, **{spec["name"]: x for spec, x in zip(io["inputs"], xs)})
    (stage / "io.json").write_text(json.dumps(io, indent=2) + "\n")
    runtime = {"linux-litert": "LiteRT", "onnx": "ONNX Runtime", "openvino": "OpenVINO"}[target]
    (stage / "infer.py").write_text(_INFER.format(model=model_file, runtime=runtime, run=_RUN[target],
                                                  sample=sample_file))
    (stage / "requirements.txt").write_text(f"{package}=={version(package)}\nnumpy=={version('numpy')}\n")


def _sample_inputs(sample, inputs: list[dict]) -> list[np.ndarray]:
    """One float sample per input (in ``inputs`` order, shaped like it): zeros when ``sample`` is
    None; several inputs matched by name, then by unique shape, then in order (``match_inputs``)."""
    from edgeopt.core.arrays import TensorInfo, as_arrays, canonical_name, match_inputs

    if sample is None:
        return [np.zeros(spec["shape"], np.float32) for spec in inputs]
    names, arrays = as_arrays(sample)
    infos = [TensorInfo(spec["name"], (1,) + tuple(spec["shape"][1:]), "float32") for spec in inputs]
    if len(inputs) > 1:
        arrays = [a.reshape((1,) + a.shape[1:]) if a.ndim and a.shape[0] == 1 else a[None] for a in arrays]
    order, _ = match_inputs([canonical_name(n) for n in names], arrays, infos)
    out = []
    for spec, k in zip(inputs, order):
        x = np.asarray(arrays[k], np.float32).reshape(-1)
        n = int(np.prod(spec["shape"]))
        if x.size != n:
            raise UserError(f"sample input has {x.size} values; the model's input {spec['name']} "
                            f"{spec['shape']} needs {n}")
        out.append(x.reshape(spec["shape"]))
    return out


def _io_spec(artifact: Path, output_names: list[str] | None = None, input_shapes: dict | None = None) -> dict:
    """Every input and output (``inputs``/``outputs``: name, shape, dtype, quantization, in the
    artifact's order) and the first of each as ``input``/``output``. Outputs are named
    ``output_names`` (the source model's, in its order; ``tensor`` keeps the artifact's name) when
    there is one per output, else by the artifact (a .tflite's signature names when it has them).
    ``input_shapes`` ({input name: one sample's shape}) fix an .onnx's or .tflite's open axes; its
    output shapes are then the ones ONNX Runtime or LiteRT gives at those shapes."""
    def spec(name, shape, dtype, scale=None, zero_point=None) -> dict:
        return {"name": name, "shape": [int(d) for d in shape], "dtype": np.dtype(dtype).name,
                "scale": float(scale) if scale else None, "zero_point": int(zero_point) if scale else None}

    if artifact.suffix == ".tflite":
        from edgeopt.export.c_array import tflite_io_all

        from edgeopt.core.tflite import tflite_io_names

        ins, outs = tflite_io_all(artifact, input_shapes)
        in_names, out_names, order = tflite_io_names(artifact.read_bytes())  # signature names, source order
        inputs = [spec(n, t.shape, t.dtype, t.scale, t.zero_point) for n, (_, t) in zip(in_names, ins)]
        outputs = [spec(n, t.shape, t.dtype, t.scale, t.zero_point) for n, (_, t) in zip(out_names, outs)]
    else:
        import onnxruntime as ort

        s = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
        dtype = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}
        bad = [t.type for t in s.get_inputs() + s.get_outputs() if t.type not in dtype]
        if bad:
            raise UserError(f"{artifact.name}: input/output types {', '.join(bad)} are not handled by the bundle")
        given = [(input_shapes or {}).get(i.name) for i in s.get_inputs()]
        # a named (dynamic) axis runs at its given length, else at 1 (always 1 for the batch axis)
        in_shapes = [[1, *g] if g is not None else [d if isinstance(d, int) else 1 for d in i.shape]
                     for i, g in zip(s.get_inputs(), given)]
        inputs = [spec(i.name, shape, dtype[i.type]) for i, shape in zip(s.get_inputs(), in_shapes)]
        if any(g is not None for g in given):  # outputs at those input shapes, as ONNX Runtime runs them
            try:
                ys = s.run(None, {i["name"]: np.zeros(i["shape"], i["dtype"]) for i in inputs})
            except Exception as e:  # onnxruntime's own error types: the reason is what matters
                from edgeopt.errors import one_line

                shown = "; ".join(f"{i['name']} {i['shape']}" for i in inputs)
                raise UserError(f"ONNX Runtime cannot run {artifact.name} at input shape {shown}: "
                                f"{one_line(e)}; give the shape it takes with --input-shape") from None
            out_shapes = [list(np.shape(y)) for y in ys]
        else:
            out_shapes = [[d if isinstance(d, int) else 1 for d in o.shape] for o in s.get_outputs()]
        outputs = [spec(o.name, shape, dtype[o.type]) for o, shape in zip(s.get_outputs(), out_shapes)]
        order = list(range(len(outputs)))
    if output_names and len(output_names) == len(outputs):
        for own, position in zip(output_names, order):  # order[k]: where the source's output k is
            outputs[position] = {"name": own, "tensor": outputs[position]["name"],
                                 **{k: v for k, v in outputs[position].items() if k != "name"}}
    return {"input": inputs[0], "output": outputs[0], "inputs": inputs, "outputs": outputs}


def _copy(artifact: Path, dst: Path, io: dict) -> None:
    shutil.copyfile(artifact, dst)


def _to_onnx(artifact: Path, dst: Path, io: dict) -> None:
    if artifact.suffix == ".onnx":
        shutil.copyfile(artifact, dst)
        return
    import tf2onnx

    from edgeopt.convert import quiet_fds
    from edgeopt.errors import one_line

    try:
        with quiet_fds():
            tf2onnx.convert.from_tflite(str(artifact), output_path=str(dst))
    except Exception as e:  # tf2onnx raises many types; the reason is what matters
        raise UserError(f"cannot convert {artifact.name} to ONNX: {one_line(e)}") from None


def _to_openvino(artifact: Path, dst: Path, io: dict) -> None:
    import openvino as ov

    from edgeopt.errors import one_line

    try:
        model = ov.convert_model(str(artifact))
        # the .tflite/.onnx batch axis may be dynamic
        model.reshape({port: spec["shape"] for port, spec in zip(model.inputs, io["inputs"])})
        ov.save_model(model, str(dst))
    except Exception as e:  # OpenVINO frontends raise RuntimeError/OpConversionFailure
        raise UserError(f"cannot convert {artifact.name} to OpenVINO IR: {one_line(e)}") from None
