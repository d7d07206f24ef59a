"""LiteRT (TFLite) through ai_edge_litert: the reference runtime for .tflite artifacts."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeopt.errors import UserError, one_line
from edgeopt.core.tflite import tflite_io_names
from edgeopt.core.arrays import (TensorInfo, as_arrays, concat_outputs, dequantize_output, gather_outputs,
                                 match_inputs, quantize_input)
from edgeopt.runtimes.base import RuntimeInfo


def _tensor_info(d: dict) -> TensorInfo:
    """The tensor's allocated shape, except -1 on every open (``shape_signature`` -1) non-batch axis."""
    scale, zp = d.get("quantization", (0.0, 0))
    quantized = bool(scale) and np.dtype(d["dtype"]).kind in "iu"
    shape = [int(s) for s in d["shape"]]
    sig = d.get("shape_signature")
    if sig is not None and len(sig) == len(shape):
        shape[1:] = [-1 if int(g) == -1 else s for s, g in zip(shape[1:], sig[1:])]
    return TensorInfo(d["name"], tuple(shape), np.dtype(d["dtype"]).name,
                      float(scale) if quantized else None, int(zp) if quantized else None)


class LiteRTSession:
    """A LiteRT interpreter behind the Session interface (several inputs and outputs, see base.py)."""

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
        in_names, out_names, order = tflite_io_names(Path(path).read_bytes())
        ins, outs = self._interp.get_input_details(), self._interp.get_output_details()
        self.inputs = [_named(_tensor_info(d), n) for d, n in zip(ins, in_names)]
        self.outputs = [_named(_tensor_info(outs[k]), out_names[k]) for k in order]
        self._in_idx = [d["index"] for d in ins]
        self._out_idx = [outs[k]["index"] for k in order]
        self._in, self._out = self._in_idx[0], self._out_idx[0]
        self._batch = int(self.inputs[0].shape[0]) if self.inputs[0].shape else 1
        self._shapes = [tuple(int(s) for s in d["shape"]) for d in ins]  # as allocated now
        # A static batch (edgeopt converts deployables with batch 1) is never resized: XNNPACK cannot
        # reshape such a graph, so batches run in chunks of the stored batch size.
        sig = [d.get("shape_signature") for d in ins]
        self._static = bool(ins) and all(s is not None and len(s) and int(s[0]) != -1 for s in sig)
        self.input_match = ""

    def _resize(self, chunk: list[np.ndarray]) -> None:
        """Reallocate at the chunk's batch and, on open (-1) axes, the chunk's sizes (a sequence
        length); fixed non-batch axes keep the file's size (a mismatch fails in set_tensor)."""
        shapes = [(len(a),) + tuple(a.shape[k + 1] if w == -1 and k + 1 < a.ndim else s
                                    for k, (w, s) in enumerate(zip(info.shape[1:], old[1:])))
                  for a, info, old in zip(chunk, self.inputs, self._shapes)]
        if shapes == self._shapes:
            return
        try:
            for idx, shape in zip(self._in_idx, shapes):
                self._interp.resize_tensor_input(idx, shape, strict=False)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise UserError(f"LiteRT cannot run this model at input shape "
                            f"{';'.join(','.join(map(str, s[1:])) for s in shapes)}: {one_line(e)}") from None
        self._shapes, self._batch = shapes, shapes[0][0]

    def _feeds(self, x) -> list[np.ndarray]:
        names, arrays = as_arrays(x)
        order, self.input_match = match_inputs(names, arrays, self.inputs)
        return [arrays[k] for k in order]

    def _set(self, chunk: list[np.ndarray]) -> None:
        self._resize(chunk)
        for idx, info, a in zip(self._in_idx, self.inputs, chunk):
            self._interp.set_tensor(idx, quantize_input(a, info))

    def predict(self, x, batch_size: int = 256):
        feeds = self._feeds(x)
        outs = []
        if self._static:
            batch_size = self._batch
            feeds = [_pad_to(f, batch_size) for f in feeds]
        n = len(as_arrays(x)[1][0])
        for start in range(0, len(feeds[0]), batch_size):
            self._set([f[start:start + batch_size] for f in feeds])
            self._interp.invoke()
            outs.append(gather_outputs([dequantize_output(self._interp.get_tensor(i), o)
                                        for i, o in zip(self._out_idx, self.outputs)], self.outputs))
        out = concat_outputs(outs)
        return out[:n] if len(out) != n else out

    def invoke_prepared(self, x1):
        """Set one batch once and return a zero-argument callable that only invokes (for latency)."""
        feeds = self._feeds(x1)
        self._set([_pad_to(f[:self._batch], self._batch) for f in feeds] if self._static else feeds)
        return self._interp.invoke


def _pad_to(a: np.ndarray, multiple: int) -> np.ndarray:
    """``a`` with its sample axis padded (repeating the last sample) to a multiple of ``multiple``."""
    extra = -len(a) % multiple
    return np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]) if extra else a


def _named(info: TensorInfo, name: str) -> TensorInfo:
    info.name = name or info.name
    return info


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
