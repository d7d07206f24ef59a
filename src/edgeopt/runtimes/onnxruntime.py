"""ONNX Runtime (CPU execution provider) for .onnx artifacts."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeopt.errors import UserError, one_line
from edgeopt.core.arrays import TensorInfo, as_arrays, concat_outputs, gather_outputs, match_inputs
from edgeopt.runtimes.base import RuntimeInfo

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
              "tensor(int64)": "int64"}


def _tensor_info(node) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorInfo(node.name, shape, _ORT_TYPES.get(node.type, node.type))


class ORTSession:
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        t0 = time.perf_counter()
        try:
            self._sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
            raise UserError(f"ONNX Runtime cannot load {Path(path).name}: {one_line(e)}") from None
        self.load_seconds = time.perf_counter() - t0
        self.inputs = [_tensor_info(i) for i in self._sess.get_inputs()]
        self.outputs = [_tensor_info(o) for o in self._sess.get_outputs()]
        self._in, self._out = self.inputs[0], self.outputs[0]
        fixed = self._in.shape[0] if self._in.shape else -1
        self._max_batch = fixed if fixed > 0 else None  # a model exported with a fixed batch
        self.input_match = ""

    def _feeds(self, x) -> list[np.ndarray]:
        names, arrays = as_arrays(x)
        order, self.input_match = match_inputs(names, arrays, self.inputs)
        return [arrays[k].astype(i.dtype, copy=False) for k, i in zip(order, self.inputs)]

    def _run(self, chunk: list[np.ndarray]):
        ys = self._sess.run([o.name for o in self.outputs], {i.name: a for i, a in zip(self.inputs, chunk)})
        return gather_outputs([y.astype(np.float32, copy=False) for y in ys], self.outputs)

    def predict(self, x, batch_size: int = 256):
        feeds = self._feeds(x)
        step = min(batch_size, self._max_batch or batch_size)
        return concat_outputs([self._run([f[i:i + step] for f in feeds]) for i in range(0, len(feeds[0]), step)])

    def invoke_prepared(self, x1):
        """Bind one batch once and return a callable that only runs the graph (for latency)."""
        binding = self._sess.io_binding()
        for info, a in zip(self.inputs, self._feeds(x1)):
            binding.bind_cpu_input(info.name, np.ascontiguousarray(a))
        for o in self.outputs:
            binding.bind_output(o.name)
        return lambda: self._sess.run_with_iobinding(binding)


class OnnxRuntime:
    name = "onnxruntime"
    formats = (".onnx",)

    def info(self) -> RuntimeInfo:
        try:
            import onnxruntime as ort
        except Exception as e:
            return RuntimeInfo(self.name, "", False, f"onnxruntime is not installed ({one_line(e, 160)}); "
                                                     f"pip install onnxruntime")
        return RuntimeInfo(self.name, ort.__version__, True)

    def load(self, path: Path, threads: int = 1) -> ORTSession:
        return ORTSession(Path(path), threads)
