"""LiteRT (TFLite) through ai_edge_litert: the reference runtime for .tflite artifacts."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeopt.errors import UserError, one_line
from edgeopt.runtimes.base import RuntimeInfo, TensorInfo, dequantize_output, quantize_input


def _tensor_info(d: dict) -> TensorInfo:
    scale, zp = d.get("quantization", (0.0, 0))
    quantized = bool(scale) and np.dtype(d["dtype"]).kind in "iu"
    return TensorInfo(d["name"], tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name,
                      float(scale) if quantized else None, int(zp) if quantized else None)


class LiteRTSession:
    runtime = "litert"

    def __init__(self, path: Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        from edgeopt.convert import quiet_fds

        t0 = time.perf_counter()
        try:
            with quiet_fds():  # LiteRT logs "Created TensorFlow Lite XNNPACK delegate" to stderr
                self._interp = Interpreter(model_path=str(path), num_threads=threads)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise UserError(f"LiteRT cannot load {Path(path).name}: {one_line(e)}") from None
        self.load_seconds = time.perf_counter() - t0
        self.inputs = [_tensor_info(d) for d in self._interp.get_input_details()]
        self.outputs = [_tensor_info(d) for d in self._interp.get_output_details()]
        self._in = self._interp.get_input_details()[0]["index"]
        self._out = self._interp.get_output_details()[0]["index"]
        self._batch = int(self.inputs[0].shape[0]) if self.inputs[0].shape else 1
        # A static batch (edgeopt converts deployables with batch 1) cannot be resized: graphs with
        # a constant Reshape after Flatten would break, so such models run chunk by chunk.
        signature = self._interp.get_input_details()[0].get("shape_signature")
        self._static_batch = signature is not None and len(signature) > 0 and int(signature[0]) != -1

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            shape = (batch,) + tuple(self.inputs[0].shape[1:])
            self._interp.resize_tensor_input(self._in, shape)
            self._interp.allocate_tensors()
            self._batch = batch

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        if self._static_batch:
            batch_size = self._batch
        outs = []
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size]
            self._resize(len(chunk))
            self._interp.set_tensor(self._in, quantize_input(chunk, self.inputs[0]))
            self._interp.invoke()
            outs.append(dequantize_output(self._interp.get_tensor(self._out), self.outputs[0]))
        return np.concatenate(outs)

    def invoke_prepared(self, x1: np.ndarray):
        """Set one batch once and return a zero-argument callable that only invokes (for latency)."""
        if not self._static_batch:
            self._resize(len(x1))
        self._interp.set_tensor(self._in, quantize_input(x1, self.inputs[0]))
        return self._interp.invoke


class LiteRT:
    name = "litert"
    formats = (".tflite",)

    def info(self) -> RuntimeInfo:
        try:
            from importlib.metadata import version

            import ai_edge_litert.interpreter  # noqa: F401
            return RuntimeInfo(self.name, version("ai-edge-litert"), True)
        except Exception as e:  # pragma: no cover - depends on the install
            return RuntimeInfo(self.name, "", False, f"ai-edge-litert is not installed ({e})")

    def load(self, path: Path, threads: int = 1) -> LiteRTSession:
        return LiteRTSession(Path(path), threads)
