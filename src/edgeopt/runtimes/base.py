"""The one interface every runtime implements.

A runtime loads an artifact (.tflite, .onnx, OpenVINO .xml) and returns a Session.
A Session takes float32 input batches shaped like the model's input and returns float32
outputs: quantized input/output is handled inside the session, so accuracy is measured the
same way for every variant.

Several inputs: ``predict`` takes a ``NamedArrays`` (or a dict, or a list in model order) and
feeds each array to the input of the same name (``match_inputs``: by name, then by unique shape,
then by order; ``Session.input_match`` records how). Several outputs: ``predict`` returns a
``NamedArrays`` in the source model's output order; one output: the array itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from edgeopt.core.arrays import TensorInfo


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

    def predict(self, x):
        """Run a float32 batch (any batch size; an array, or NamedArrays for several inputs) and
        return float32 outputs: the array for one output, NamedArrays for several."""
        ...


class Runtime(Protocol):
    name: str
    formats: tuple[str, ...]  # artifact suffixes it runs, e.g. (".tflite",)

    def info(self) -> RuntimeInfo: ...

    def load(self, path: Path, threads: int = 1) -> Session: ...


@dataclass
class LatencyStats:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int
    throughput_ips: float  # inferences per second at batch 1 (1000 / p50)
    samples_ms: list[float] = field(default_factory=list, repr=False)
