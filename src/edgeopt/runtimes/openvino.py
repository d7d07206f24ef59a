"""OpenVINO (CPU plugin) for IR (.xml + .bin) and .onnx artifacts."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeopt.errors import UserError, one_line
from edgeopt.core.arrays import TensorInfo, as_arrays, concat_outputs, gather_outputs, match_inputs
from edgeopt.runtimes.base import RuntimeInfo


def _tensor_info(port) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    names = sorted(port.get_names())
    name = min(names, key=len) if names else ""  # e.g. "image" over "image:0"
    return TensorInfo(name, shape, port.get_element_type().to_dtype().name)


class OVSession:
    runtime = "openvino"

    def __init__(self, path: Path, threads: int = 1):
        import openvino as ov

        # f32 inference precision: otherwise the CPU plugin silently runs bf16 on AMX/AVX512-BF16
        # CPUs, and an "fp32" row would not measure fp32. One stream at latency hint = one request.
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32"}
        t0 = time.perf_counter()
        try:
            core = ov.Core()
            self._compiled = core.compile_model(str(path), "CPU", config)
        except Exception as e:
            raise UserError(f"OpenVINO cannot load {Path(path).name}: {one_line(e)}") from None
        self.load_seconds = time.perf_counter() - t0
        self.inputs = [_tensor_info(p) for p in self._compiled.inputs]
        self.outputs = [_tensor_info(p) for p in self._compiled.outputs]
        self._request = self._compiled.create_infer_request()
        fixed = self.inputs[0].shape[0] if self.inputs[0].shape else -1
        self._max_batch = fixed if fixed > 0 else None
        self.input_match = ""

    def _feeds(self, x) -> list[np.ndarray]:
        names, arrays = as_arrays(x)
        order, self.input_match = match_inputs(names, arrays, self.inputs)
        return [np.ascontiguousarray(arrays[k], dtype=i.dtype) for k, i in zip(order, self.inputs)]

    def _run(self, chunk: list[np.ndarray]):
        self._request.infer({k: a for k, a in enumerate(chunk)})
        return gather_outputs([np.array(self._request.get_output_tensor(k).data, dtype=np.float32)
                               for k in range(len(self.outputs))], self.outputs)

    def predict(self, x, batch_size: int = 256):
        feeds = self._feeds(x)
        step = min(batch_size, self._max_batch or batch_size)
        return concat_outputs([self._run([np.ascontiguousarray(f[i:i + step]) for f in feeds])
                               for i in range(0, len(feeds[0]), step)])

    def invoke_prepared(self, x1):
        """Set one batch once and return a callable that only infers (for latency)."""
        import openvino as ov

        request = self._compiled.create_infer_request()
        for k, a in enumerate(self._feeds(x1)):
            request.set_input_tensor(k, ov.Tensor(a))
        return request.infer


class OpenVINO:
    name = "openvino"
    formats = (".xml", ".onnx")

    def info(self) -> RuntimeInfo:
        try:
            import openvino as ov
        except Exception as e:
            return RuntimeInfo(self.name, "", False, f"openvino is not installed ({one_line(e, 160)}); "
                                                     f"pip install openvino")
        return RuntimeInfo(self.name, ov.get_version().split("-")[0], True)

    def load(self, path: Path, threads: int = 1) -> OVSession:
        return OVSession(Path(path), threads)
