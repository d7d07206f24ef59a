"""TensorFlow Lite Micro on the host: the true microcontroller tensor arena, and TFLM as a runtime.

The `tflite_micro` package runs the TFLM C++ interpreter (reference kernels) inside Python. Its
default RecordingMicroAllocator logs every arena allocation; `print_allocations()` writes the
report ("Arena allocation total N bytes" = head (planned activations) + tail (persistent
structures)) to the C stderr stream. That total is the arena a microcontroller build needs, up to
pointer-size differences: the host is 64-bit, a Cortex-M 32-bit, so the tail's structs (eval
tensors, node registrations) are somewhat smaller on the device.

TFLM rejects hybrid (dynamic-range) and float16-weight models, and an unsupported op or a damaged
file could abort the C++ side, so the measurement runs in a child Python process. The child reads
the recorded total after one invoke, then binary-searches the smallest `arena_size` with which the
interpreter allocates and invokes: the recorded total leaves out the memory planner's temporary
scratch, which must also fit during allocation (an int8 CNN needed 96 B more than its total). Each
probe runs in a forked process: with an arena a few bytes short of an op's temporary memory TFLM
can crash rather than fail (an int8 PACK + MEAN model segfaulted), which counts as "does not fit".
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgeopt.errors import UserError
from edgeopt.core.arrays import (TensorInfo, as_arrays, concat_outputs, dequantize_output, gather_outputs,
                                 match_inputs, quantize_input)

_CHILD = r"""
import json, os, re, sys, tempfile
import numpy as np
from tflite_micro import runtime

path = sys.argv[1]
size = os.path.getsize(path)

def invoke(interp):
    i = 0
    while True:
        try:
            d = interp.get_input_details(i)
        except (IndexError, RuntimeError, ValueError):
            break
        interp.set_input(np.zeros(d["shape"], d["dtype"]), i)
        i += 1
    interp.invoke()

def allocation_report(interp):
    # print_allocations writes to the C stderr stream: capture fd 2 in a temp file.
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            interp.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        return f.read().decode(errors="replace")

def fits(arena):
    # in a forked process: TFLM can crash (SIGSEGV) instead of failing when the arena is too small
    # for an op's temporary memory (an int8 MEAN after PACK did), which must read "does not fit"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            invoke(runtime.Interpreter.from_file(path, arena_size=arena))
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0

interp, error = None, ""
for arena in (max(16 << 20, 10 * size), 256 << 20):
    try:
        interp = runtime.Interpreter.from_file(path, arena_size=arena)
        break
    except Exception as e:
        error = str(e)
if interp is None:
    print(json.dumps({"error": error or "TFLM failed to allocate tensors"}))
    sys.exit(0)
invoke(interp)
report = allocation_report(interp)
total = [int(x) for x in re.findall(r"Arena allocation total (\d+) bytes", report)]
if not total:
    print(json.dumps({"error": "no allocation report from TFLM"}))
    sys.exit(0)
# The recorded total omits the memory planner's temporary scratch, so the smallest arena that
# allocates can be larger: binary search between the total and a size known to work.
low, high = total[0] - 1, total[0]
while not fits(high):
    low, high = high, high * 2
while high - low > 1:
    mid = (low + high) // 2
    low, high = (low, mid) if fits(mid) else (mid, high)
print(json.dumps({"arena": high, "recorded": total[0]}))
"""

# Lines of TFLM's stderr that are noise around the real reason.
_NOISE = re.compile(r"^(Traceback|  |RuntimeError: TFLM failed|Failed starting model allocation|"
                    r"Node .* failed to prepare|\w+Error: |Input index \d+ out of range)")


def _reason(stderr: str, fallback: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not _NOISE.match(ln)]
    reason = (useful or lines or [fallback])[0]
    reason = re.sub(r"^\S+\.cc(:\d+)?\s*", "", reason)  # drop the C++ source location
    node = re.search(r"Node (\S+) \(number (\d+)\) failed", stderr)
    if node and node.group(1) not in reason:
        reason = f"{node.group(1)} (op {node.group(2)}): {reason}"
    return " ".join(reason.split())  # whole: compare and run.json show it in full


def measure_arena(path, timeout: float = 120.0) -> tuple[int | None, str]:
    """The TFLite Micro tensor arena in bytes, measured with the TFLM host interpreter.

    Returns (bytes, note); (None, one-line reason) when TFLM cannot run the model.
    """
    path = Path(path)
    if not path.is_file():
        return None, f"model file not found: {path}"
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"TFLite Micro did not finish within {timeout:.0f} s"
    result = _last_json(proc.stdout)
    if proc.returncode != 0 or result is None:
        how = f"crashed (exit {proc.returncode})" if proc.returncode else "failed"
        return None, f"TFLite Micro {how}: {_reason(proc.stderr, 'no output')}"
    if "error" in result:
        return None, f"TFLite Micro cannot run this model: {_reason(proc.stderr, result['error'])}"
    return int(result["arena"]), (f"smallest arena the TFLM host interpreter (64-bit) allocates and runs "
                                  f"with; {result['recorded']:,} B recorded in use")


def _last_json(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def _tensor_info(d: dict, name: str) -> TensorInfo:
    q = d.get("quantization_parameters", {})
    scales, zps = q.get("scales", []), q.get("zero_points", [])
    dtype = np.dtype(d["dtype"]).name
    quantized = len(scales) > 0 and float(scales[0]) != 0.0 and dtype.startswith(("int", "uint"))
    return TensorInfo(name, tuple(int(s) for s in d["shape"]), dtype,
                      float(scales[0]) if quantized else None, int(zps[0]) if quantized else None)


class TFLMSession:
    """A Session on the TFLite Micro host interpreter: one sample per invoke, quantized I/O inside."""

    runtime = "tflm"

    def __init__(self, path: Path):
        from tflite_micro import runtime

        path = Path(path)
        t0 = time.perf_counter()
        arena, note = measure_arena(path)  # in a child first: a model TFLM rejects must not abort us
        if arena is None:
            raise UserError(f"TFLite Micro cannot load {path.name}: {note}")
        self.arena_bytes = arena
        data = path.read_bytes()
        self._stateful = runtime.count_resource_variables(data) > 0
        self._interp = runtime.Interpreter.from_bytes(data, arena_size=2 * arena + 4096)
        self.load_seconds = time.perf_counter() - t0
        from edgeopt.core.tflite import tflite_io_names

        in_names, out_names, order = tflite_io_names(data)
        self.inputs = [_tensor_info(self._interp.get_input_details(k), n) for k, n in enumerate(in_names)]
        self._out_pos = order
        self.outputs = [_tensor_info(self._interp.get_output_details(k), out_names[k]) for k in order]
        self.input_match = ""

    def _feeds(self, x) -> list[np.ndarray]:
        names, arrays = as_arrays(x)
        order, self.input_match = match_inputs(names, arrays, self.inputs)
        return [np.asarray(arrays[k], np.float32).reshape((-1,) + tuple(i.shape[1:]))
                for k, i in zip(order, self.inputs)]

    def _set(self, sample: list[np.ndarray]) -> None:
        for k, (info, a) in enumerate(zip(self.inputs, sample)):
            self._interp.set_input(quantize_input(a, info), k)

    def _run_one(self, sample: list[np.ndarray]):
        if self._stateful:
            self._interp.reset()
        self._set(sample)
        self._interp.invoke()
        return gather_outputs([dequantize_output(np.asarray(self._interp.get_output(p)), o)
                               for p, o in zip(self._out_pos, self.outputs)], self.outputs)

    def predict(self, x):
        feeds = self._feeds(x)
        return concat_outputs([self._run_one([f[i:i + 1] for f in feeds]) for i in range(len(feeds[0]))])

    def invoke_prepared(self, x1):
        """Set one sample once and return a zero-argument callable that only invokes (for latency)."""
        self._set([f[:1] for f in self._feeds(x1)])
        return self._interp.invoke
