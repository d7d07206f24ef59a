"""Graph statistics shared by `profile`, the hardware estimator and reports.

Produced by edgeopt.measure.graph (Keras layers, .tflite ops, ONNX nodes); consumed by
edgeopt.hardware.estimator. Plain dataclasses so they serialise to JSON with ``asdict``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class OpStats:
    name: str
    op_type: str  # normalised upper-case kind: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, ...
    output_shape: list[int]
    params: int = 0  # constant elements (weights + biases)
    macs: int = 0
    weight_bytes: dict[str, int] = field(default_factory=dict)  # by dtype, e.g. {"int8": 1024, "int32": 64}
    activation_bytes: int = 0  # bytes of the op's output tensor(s)
    input_bytes: int = 0  # bytes of the op's non-constant input tensor(s)
    dtype: str = "float32"  # compute dtype of the op: float32 | float16 | int8 | int16x8 | dynamic ...
    quantization: str = ""  # e.g. "per-channel int8", "per-tensor int8", "" for float


@dataclass
class TensorStats:
    name: str
    shape: list[int]
    dtype: str
    bytes: int
    is_constant: bool
    quantization: str = ""  # "scale=0.0039 zp=-128" or "per-channel (32 scales)"


@dataclass
class GraphProfile:
    source: str  # "keras" | "tflite" | "onnx"
    path: str
    ops: list[OpStats]
    tensors: list[TensorStats] = field(default_factory=list)  # .tflite only
    total_params: int = 0
    total_macs: int = 0
    weight_bytes: dict[str, int] = field(default_factory=dict)
    peak_activation_bytes: int = 0  # from tensor lifetimes in execution order
    file_bytes: int | None = None
    input_shape: list[int] = field(default_factory=list)  # the first input's (batch axis included)
    input_dtype: str = "float32"
    # every input / output: {"name", "shape" (batch axis included), "dtype"}, in graph order
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    precision: str = "float32"  # dominant compute precision: an edgeopt.core.precision.Precision value
    arena_bytes: int | None = None  # measured with the TFLite Micro interpreter
    arena_note: str = ""  # how the arena was measured, or why there is none
    notes: list[str] = field(default_factory=list)  # caveats of the profile (subgraphs, dynamic shapes)

    def to_dict(self) -> dict:
        return asdict(self)
