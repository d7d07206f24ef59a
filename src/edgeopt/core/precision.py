"""The one precision vocabulary: what a model computes in (and stores its weights as).

Every part of edgeopt that names a precision (graph profiles, quantization steps, compare rows,
device data) uses these values; :meth:`Precision.parse` accepts the spellings found in the wild
(``fp32``, ``int8-dynamic``, ``hybrid``, ``int4-weights``, ...) and raises a one-line UserError
for anything else.
"""
from __future__ import annotations

from enum import Enum

from edgeopt.errors import UserError


class Precision(str, Enum):
    """A model's (or an op's, or an engine's) numeric precision.

    FLOAT32   float32 weights and compute.
    FLOAT16   float16 weights (float16 or float32 compute, depending on the runtime).
    BFLOAT16  bfloat16 weights and compute (NPUs, AMX).
    INT8      full integer: int8 weights and int8 activations (float I/O allowed at the edges).
    INT16X8   int16 activations, int8 weights (TFLite's "16x8" mode).
    INT16     int16 weights and activations (engine throughput figures).
    DYNAMIC   dynamic range ("hybrid"): int8 weights, float activations quantized at run time.
    INT4      int4 weights dequantized to float for compute (weight-only).
    MIXED     int8 with some ops kept float (per-op mixed precision).
    """

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    INT8 = "int8"
    INT16X8 = "int16x8"
    INT16 = "int16"
    DYNAMIC = "dynamic"
    INT4 = "int4"
    MIXED = "mixed"

    def __str__(self) -> str:  # f-strings and JSON show the plain value
        return self.value

    @property
    def is_float(self) -> bool:
        """True for precisions whose compute is floating point (float32/16, bfloat16)."""
        return self in (Precision.FLOAT32, Precision.FLOAT16, Precision.BFLOAT16)

    @property
    def is_full_integer(self) -> bool:
        """True when activations and weights are integer (int8, int16x8, int16)."""
        return self in (Precision.INT8, Precision.INT16X8, Precision.INT16)

    @classmethod
    def parse(cls, text: "str | Precision") -> "Precision":
        """A Precision from its value or a known alias (case-insensitive).

        Raises UserError naming the accepted values when ``text`` is not one of them.
        """
        if isinstance(text, Precision):
            return text
        key = str(text).strip().lower().replace("_", "-")
        found = _ALIASES.get(key)
        if found is None:
            try:
                return cls(key)
            except ValueError:
                raise UserError(f"unknown precision {text!r}; choose from "
                                f"{', '.join(p.value for p in cls)}") from None
        return found


_ALIASES: dict[str, Precision] = {
    "fp32": Precision.FLOAT32, "f32": Precision.FLOAT32, "float": Precision.FLOAT32,
    "fp16": Precision.FLOAT16, "f16": Precision.FLOAT16, "half": Precision.FLOAT16,
    "bf16": Precision.BFLOAT16,
    "full-int8": Precision.INT8, "i8": Precision.INT8, "uint8": Precision.INT8,
    "16x8": Precision.INT16X8, "a16w8": Precision.INT16X8,
    "int8-dynamic": Precision.DYNAMIC, "dynamic-int8": Precision.DYNAMIC, "hybrid": Precision.DYNAMIC,
    "dynamic-range": Precision.DYNAMIC, "drq": Precision.DYNAMIC,
    "int4-weights": Precision.INT4, "w4": Precision.INT4, "uint4": Precision.INT4,
}


def parse_precisions(text: str) -> list[Precision]:
    """'fp32,int8' -> [Precision.FLOAT32, Precision.INT8] (order kept, duplicates dropped)."""
    items = [Precision.parse(p) for p in str(text).split(",") if p.strip()]
    return list(dict.fromkeys(items))
