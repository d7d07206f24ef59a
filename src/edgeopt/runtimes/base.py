"""The one interface every runtime implements.

A runtime loads an artifact (.tflite, .onnx, OpenVINO .xml) and returns a Session.
A Session takes float32 input batches shaped like the model's input and returns float32
outputs: quantized input/output is handled inside the session, so accuracy is measured the
same way for every variant.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None


@dataclass
class RuntimeInfo:
    name: str
    version: str
    available: bool
    reason: str = ""  # why it is not available, when it is not


class Session(Protocol):
    runtime: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    load_seconds: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Run a float32 batch (any batch size) and return float32 outputs of the first output."""
        ...


class Runtime(Protocol):
    name: str
    formats: tuple[str, ...]  # artifact suffixes it runs, e.g. (".tflite",)

    def info(self) -> RuntimeInfo: ...

    def load(self, path: Path, threads: int = 1) -> Session: ...


def quantize_input(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float input to the tensor's dtype using its scale/zero point (identity for float)."""
    if info.scale is None or not info.dtype.startswith(("int", "uint")):
        return x.astype(info.dtype, copy=False)
    limits = np.iinfo(info.dtype)
    q = np.round(x / info.scale + info.zero_point)
    return np.clip(q, limits.min, limits.max).astype(info.dtype)


def dequantize_output(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    if info.scale is None or not np.issubdtype(y.dtype, np.integer):
        return y.astype(np.float32, copy=False)
    return ((y.astype(np.float32) - info.zero_point) * info.scale).astype(np.float32)


@dataclass
class LatencyStats:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int
    throughput_ips: float  # inferences per second at batch 1 (1000 / p50)
    samples_ms: list[float] = field(default_factory=list, repr=False)
