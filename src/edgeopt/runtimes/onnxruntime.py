"""ONNX Runtime (CPU execution provider) for .onnx artifacts."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeopt.errors import UserError, one_line
from edgeopt.runtimes.base import RuntimeInfo, TensorInfo

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

    def _run(self, x: np.ndarray) -> np.ndarray:
        y = self._sess.run([self._out.name], {self._in.name: x.astype(self._in.dtype, copy=False)})[0]
        return y.astype(np.float32, copy=False)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        step = min(batch_size, self._max_batch or batch_size)
        return np.concatenate([self._run(x[i:i + step]) for i in range(0, len(x), step)])

    def invoke_prepared(self, x1: np.ndarray):
        """Bind one batch once and return a callable that only runs the graph (for latency)."""
        binding = self._sess.io_binding()
        binding.bind_cpu_input(self._in.name, np.ascontiguousarray(x1.astype(self._in.dtype)))
        binding.bind_output(self._out.name)
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
