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

    def predict(self, x):
        """Run a float32 batch (any batch size; an array, or NamedArrays for several inputs) and
        return float32 outputs: the array for one output, NamedArrays for several."""
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


def canonical_name(name: str) -> str:
    """A tensor name without converter decoration: ``serving_default_image:0`` -> ``image``."""
    name = name[len("serving_default_"):] if name.startswith("serving_default_") else name
    return name[:-2] if name.endswith(":0") else name


def as_arrays(x) -> tuple[list[str], list[np.ndarray]]:
    """(names, arrays) of model inputs given as an array, NamedArrays, dict or list/tuple
    (names are "" where not given)."""
    if hasattr(x, "names") and hasattr(x, "as_list"):
        return list(x.names), list(x.as_list())
    if isinstance(x, dict):
        return list(x), [np.asarray(v) for v in x.values()]
    if isinstance(x, (list, tuple)):
        return [""] * len(x), [np.asarray(v) for v in x]
    return [""], [np.asarray(x)]


def match_inputs(names: list[str], arrays: list[np.ndarray], inputs: list[TensorInfo]) -> tuple[list[int], str]:
    """For each session input, the index of the given array that feeds it, and how they were matched:
    "name" (same or canonical name), "shape" (each input's sample shape fits exactly one array) or
    "order" (the given order). Raises UserError when the counts differ."""
    from edgeopt.errors import UserError

    if len(arrays) != len(inputs):
        want = ", ".join(f"{canonical_name(i.name)} {tuple(i.shape[1:])}" for i in inputs)
        raise UserError(f"the model has {len(inputs)} input(s) ({want}) but {len(arrays)} array(s) were given; "
                        f"give one array per input (.npz keys named like the inputs, or --x-key a,b)")
    if len(inputs) == 1:
        return [0], "only input"
    lowered = [canonical_name(n).lower() for n in names]
    by_name = [lowered.index(canonical_name(i.name).lower()) if canonical_name(i.name).lower() in lowered
               else None for i in inputs]
    if None not in by_name and len(set(by_name)) == len(inputs):
        return by_name, "name"
    fits = [[k for k, a in enumerate(arrays) if _fits(a.shape[1:], i.shape[1:])] for i in inputs]
    if all(len(f) == 1 for f in fits) and len({f[0] for f in fits}) == len(inputs):
        return [f[0] for f in fits], "shape"
    return list(range(len(inputs))), "order"


def _fits(sample_shape, want) -> bool:
    return len(sample_shape) == len(want) and all(w in (-1, None, s) for w, s in zip(want, sample_shape))


def gather_outputs(arrays: list[np.ndarray], outputs: list[TensorInfo]):
    """One output: the array; several: NamedArrays keyed by output name (in ``outputs`` order)."""
    if len(arrays) == 1:
        return arrays[0]
    from edgeopt.data import NamedArrays

    return NamedArrays({canonical_name(o.name) or f"output_{k}": a for k, (o, a) in enumerate(zip(outputs, arrays))})


def concat_outputs(chunks: list):
    """Concatenate per-batch outputs (arrays or NamedArrays) along the sample axis."""
    if hasattr(chunks[0], "as_list"):
        from edgeopt.data import NamedArrays

        return NamedArrays({k: np.concatenate([c[k] for c in chunks]) for k in chunks[0].names})
    return np.concatenate(chunks)


@dataclass
class LatencyStats:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int
    throughput_ips: float  # inferences per second at batch 1 (1000 / p50)
    samples_ms: list[float] = field(default_factory=list, repr=False)
