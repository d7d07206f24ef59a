"""Microcontroller deployables: the .tflite as a C array, and a TFLite Micro program (Arduino sketch or
Zephyr main) whose op resolver lists exactly the model's ops, whose arena is the measured TFLM arena
plus a margin, and which runs one embedded sample input and prints the model's output."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.errors import UserError
from edgeopt.fsutil import atomic_write_text, ensure_writable_dir

ARENA_MARGIN = 1.10  # 10% above the measured arena, rounded up to 1 KB, for allocator alignment slack
_C_TYPES = {"int8": ("int8_t", "int8"), "uint8": ("uint8_t", "uint8"), "int16": ("int16_t", "i16"),
            "int32": ("int32_t", "i32"), "float32": ("float", "f")}  # dtype -> (C type, TfLitePtrUnion field)


def c_identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if ident and not ident[0].isdigit() else f"m_{ident}"


def c_array_source(data: bytes, name: str) -> tuple[str, str]:
    """(header, source) defining ``const unsigned char NAME[]`` (16-byte aligned) and ``NAME_len``."""
    guard = f"{name.upper()}_H_"
    header = (f"#ifndef {guard}\n#define {guard}\n\n"
              f"extern const unsigned char {name}[];\nextern const unsigned int {name}_len;\n\n#endif\n")
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12)]
    body = ",\n  ".join(rows)
    source = (f'#include "{name}.h"\n\n'
              f"// {len(data)} bytes; aligned for TFLite Micro's flatbuffer reads\n"
              f"alignas(16) const unsigned char {name}[] = {{\n  {body}\n}};\n"
              f"const unsigned int {name}_len = {len(data)};\n")
    return header, source


@dataclass
class TensorSpec:
    """One model input or output as the program sees it: shape, dtype, affine quantization (or None)."""
    shape: list[int]
    dtype: str
    scale: float | None
    zero_point: int | None

    def describe(self) -> str:
        q = f", quantized: real = (q - {self.zero_point}) * {self.scale:.6g}" if self.scale else ""
        return f"{self.shape} {self.dtype}{q}"


@dataclass
class McuProgram:
    """What a TFLite Micro program needs: ops (resolver methods), arena, I/O and one sample input."""
    name: str
    resolver_methods: list[str]
    arena_bytes: int
    input: TensorSpec
    output: TensorSpec
    sample: np.ndarray  # in the input tensor's dtype, flattened
    sample_note: str


def tflite_io(tflite_path: Path) -> tuple[TensorSpec, TensorSpec]:
    """(input, output) of a one-input, one-output .tflite (the microcontroller program); UserError
    otherwise."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tflite_path))
    if len(interp.get_input_details()) != 1 or len(interp.get_output_details()) != 1:
        raise mcu_io_refusal(tflite_path.name, len(interp.get_input_details()), len(interp.get_output_details()))

    return _spec(interp.get_input_details()[0]), _spec(interp.get_output_details()[0])


def mcu_io_refusal(name: str, n_inputs: int, n_outputs: int) -> UserError:
    """The one line refusing a model (file or run variant ``name``) with several inputs or outputs
    for the microcontroller targets, saying which targets take it."""
    return UserError(f"{name} has {n_inputs} input(s) and {n_outputs} output{'s' if n_outputs != 1 else ''}; "
                     f"the generated microcontroller program handles one "
                     f"input and one output: export it with --target linux-litert, onnx or openvino (they take "
                     f"several inputs and outputs)")


def tflite_io_all(tflite_path: Path, input_shapes: dict | None = None
                  ) -> tuple[list[tuple[str, TensorSpec]], list[tuple[str, TensorSpec]]]:
    """Every (name, spec) input and output of a .tflite, in the interpreter's order (names without
    converter decoration: ``serving_default_image:0`` -> ``image``). ``input_shapes`` ({input
    name: one sample's shape}) size the open (-1) axes; the outputs are then as LiteRT sizes them."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeopt.core.arrays import canonical_name

    interp = Interpreter(model_path=str(tflite_path))
    given = {canonical_name(k): v for k, v in (input_shapes or {}).items()}
    resized = [(d["index"], (1, *given[canonical_name(d["name"])])) for d in interp.get_input_details()
               if canonical_name(d["name"]) in given and -1 in list(d["shape_signature"])[1:]]
    if resized:
        try:
            for index, shape in resized:
                interp.resize_tensor_input(index, shape, strict=True)
            interp.allocate_tensors()
            interp.invoke()  # some output shapes are only known after a run
        except (ValueError, RuntimeError) as e:
            from edgeopt.errors import one_line

            raise UserError(f"LiteRT cannot run {tflite_path.name} at input shape "
                            f"{'; '.join(str(list(s[1:])) for _, s in resized)}: {one_line(e)}") from None
    return ([(canonical_name(d["name"]), _spec(d)) for d in interp.get_input_details()],
            [(canonical_name(d["name"]), _spec(d)) for d in interp.get_output_details()])


def _spec(d) -> TensorSpec:
    scale, zp = d["quantization"]
    dtype = np.dtype(d["dtype"]).name
    quantized = bool(scale) and dtype != "float32"
    return TensorSpec([int(s) for s in d["shape"]], dtype, float(scale) if quantized else None,
                      int(zp) if quantized else None)


def _check_runs_on_tflm(tflite_path: Path, prof) -> list[str]:
    """The model's resolver methods; UserError naming the real blocker when TFLite Micro cannot run it."""
    from edgeopt.export.tflm_ops import resolver_calls, tflm_package

    op_types = [op.op_type for op in prof.ops]
    methods, missing = resolver_calls(op_types)
    if missing:
        raise UserError(f"{tflite_path.name}: TFLite Micro ({tflm_package()}) has no kernel for "
                        f"{', '.join(missing)}; replace the layers that produce them, or deploy to a CPU runtime "
                        f"(--target linux-litert)")
    if prof.arena_bytes is None:
        hint = ""
        if prof.precision in ("dynamic", "float16"):  # Precision.DYNAMIC, Precision.FLOAT16
            hint = (f"; it is a {prof.precision} model and TFLite Micro runs full-integer or float32 "
                    f"models only: export the int8 variant")
        raise UserError(f"{tflite_path.name} does not run on TFLite Micro: {prof.arena_note}{hint}")
    return methods


def _sample(spec: TensorSpec, sample) -> tuple[np.ndarray, str]:
    n = int(np.prod(spec.shape))
    if sample is None:
        return np.zeros(n, spec.dtype), "zeros (no sample data was given to export)"
    x = np.asarray(sample, np.float32).reshape(-1)
    if x.size != n:
        raise UserError(f"sample input has {x.size} values; the model's input {spec.shape} needs {n}")
    if spec.scale is not None:
        limits = np.iinfo(spec.dtype)
        x = np.clip(np.round(x / spec.scale + spec.zero_point), limits.min, limits.max)
    return x.astype(spec.dtype), "the first sample of the data, quantized with the input's scale/zero point"


def mcu_program(tflite_path: Path, name: str | None = None, sample=None) -> McuProgram:
    """Everything a TFLite Micro program for TFLITE_PATH needs; UserError when TFLite Micro cannot run it.

    SAMPLE: one float input (any shape with the input's element count), or None for zeros."""
    from edgeopt.measure.graph import profile_tflite

    tflite_path = Path(tflite_path)
    if tflite_path.suffix != ".tflite":
        raise UserError(f"microcontroller export needs a .tflite artifact, got {tflite_path.name}")
    prof = profile_tflite(tflite_path)
    methods = _check_runs_on_tflm(tflite_path, prof)
    inp, out = tflite_io(tflite_path)
    for spec, role in ((inp, "input"), (out, "output")):
        if spec.dtype not in _C_TYPES:
            raise UserError(f"{tflite_path.name}: {role} dtype {spec.dtype} is not handled by the generated "
                            f"program (int8, uint8, int16, int32, float32 are)")
    values, note = _sample(inp, sample)
    arena = -(-int(prof.arena_bytes * ARENA_MARGIN) // 1024) * 1024
    return McuProgram(c_identifier(name or tflite_path.stem), methods, arena, inp, out, values, note)


def _c_values(values: np.ndarray) -> str:
    fmt = _c_float if values.dtype.kind == "f" else (lambda v: str(int(v)))
    items = [fmt(v) for v in values]
    return ",\n  ".join(", ".join(items[i:i + 16]) for i in range(0, len(items), 16))


def program_core(p: McuProgram, print_fn: str) -> str:
    """C++ shared by the Arduino sketch and the Zephyr app: resolver, arena, sample, run_once().

    PRINT_FN: a printf-like function or macro of the target (``printk``, an Arduino wrapper)."""
    in_t, in_field = _C_TYPES[p.input.dtype]
    out_t, out_field = _C_TYPES[p.output.dtype]
    adds = "\n".join(f"  resolver.{m}();" for m in p.resolver_methods)
    out_value = (f"(output->data.{out_field}[i] - ({p.output.zero_point})) * {p.output.scale!r}f"
                 if p.output.scale is not None else f"(float)output->data.{out_field}[i]")
    return f"""// Model input: {p.input.describe()}.
// Model output: {p.output.describe()}.
// The program copies kSampleInput ({p.sample_note}) into the input tensor as it is: the values are
// already in the input tensor's type. Arena: measured TFLM arena + {int(round((ARENA_MARGIN - 1) * 100))}% margin.
constexpr int kArenaSize = {p.arena_bytes};
alignas(16) static uint8_t tensor_arena[kArenaSize];
static tflite::MicroInterpreter* interpreter = nullptr;

static const {in_t} kSampleInput[{p.sample.size}] = {{
  {_c_values(p.sample)}
}};

// Registers exactly the model's ops; returns false when tensors cannot be allocated.
static bool setup_model() {{
  const tflite::Model* tfl_model = tflite::GetModel({p.name});
  static tflite::MicroMutableOpResolver<{max(1, len(p.resolver_methods))}> resolver;
{adds}
  static tflite::MicroInterpreter static_interpreter(tfl_model, resolver, tensor_arena, kArenaSize);
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {{
    {print_fn}("AllocateTensors failed: raise kArenaSize\\n");
    interpreter = nullptr;
    return false;
  }}
  {print_fn}("arena used: %d bytes\\n", (int)interpreter->arena_used_bytes());
  return true;
}}

// Runs the sample once, prints each output value (dequantized) and the index of the largest.
static bool run_once() {{
  TfLiteTensor* input = interpreter->input(0);
  if (input->bytes != sizeof(kSampleInput)) {{
    {print_fn}("input is %d bytes, sample %d\\n", (int)input->bytes, (int)sizeof(kSampleInput));
    return false;
  }}
  memcpy(input->data.{in_field}, kSampleInput, sizeof(kSampleInput));
  if (interpreter->Invoke() != kTfLiteOk) {{
    {print_fn}("Invoke failed\\n");
    return false;
  }}
  TfLiteTensor* output = interpreter->output(0);
  const int count = (int)(output->bytes / sizeof({out_t}));
  int best = 0;
  float best_value = 0.0f;
  for (int i = 0; i < count; ++i) {{
    const float value = {out_value};
    {print_fn}("output[%d] = %f\\n", i, (double)value);
    if (i == 0 || value > best_value) {{
      best = i;
      best_value = value;
    }}
  }}
  {print_fn}("largest output: index %d\\n", best);
  return true;
}}
"""


TFLM_INCLUDES = """#include <string.h>
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
"""


def arduino_sketch(p: McuProgram) -> str:
    """An Arduino sketch (Arduino_TensorFlowLite library) running the sample once per second."""
    return f"""// Generated by edgeopt: runs {p.name} with TensorFlow Lite Micro (Arduino).
#include <TensorFlowLite.h>
#include <stdarg.h>
#include <stdio.h>
{TFLM_INCLUDES}#include "{p.name}.h"

static void serial_printf(const char* fmt, ...) {{
  char line[96];
  va_list args;
  va_start(args, fmt);
  vsnprintf(line, sizeof(line), fmt, args);
  va_end(args);
  Serial.print(line);
}}

{program_core(p, "serial_printf")}
void setup() {{
  Serial.begin(115200);
  setup_model();
}}

void loop() {{
  if (interpreter == nullptr) return;
  unsigned long start = micros();
  if (run_once()) serial_printf("inference + printing: %lu us\\n", micros() - start);
  delay(1000);
}}
"""


def _c_float(v) -> str:
    """A C float literal: ``0.0f``, ``1.5f``, ``1e-05f`` (``0f`` is not valid C or C++)."""
    text = f"{float(v):.8g}"
    return f"{text}f" if any(c in text for c in ".e") or not text.lstrip("-").isdigit() else f"{text}.0f"


def export_mcu(tflite_path: Path, out_dir: Path, name: str | None = None, sample=None) -> list[Path]:
    """Write NAME.h, NAME.cc and NAME.ino (Arduino sketch) for a .tflite into out_dir.

    Raises UserError (naming the ops or the TFLM error) when TFLite Micro cannot run the model."""
    tflite_path = Path(tflite_path)
    program = mcu_program(tflite_path, name, sample)
    header, source = c_array_source(tflite_path.read_bytes(), program.name)
    out_dir = ensure_writable_dir(Path(out_dir))
    n = program.name
    return [atomic_write_text(out_dir / f"{n}.h", header), atomic_write_text(out_dir / f"{n}.cc", source),
            atomic_write_text(out_dir / f"{n}.ino", arduino_sketch(program))]
