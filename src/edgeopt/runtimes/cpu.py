"""The CPU a measurement runs on, and the one set of rules about its instruction-set flags.

Which flags matter for which precision, and when a CPU counts as having VNNI (an int8 dot product
that accumulates straight into int32), live here only: compare's flag column, the int8 settings
of ONNX Runtime and OpenVINO (7-bit weights without VNNI, see MEASURED.md) and measurement
provenance all read them from this module.
"""
from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from functools import lru_cache

from edgeopt.core.precision import Precision

# Flags recorded with every measurement (x86 names from /proc/cpuinfo "flags", Arm from "Features").
INTERESTING_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_fp16", "avx512_bf16",
                     "amx_tile", "amx_int8", "asimd", "asimddp", "asimdhp", "fphp", "neon", "sve")
# int8 dot products with int32 accumulation: x86 VNNI (AVX-512 or AVX), AMX int8 tiles, Arm dotprod.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "asimddp")
# The flags that decide the speed of each precision's kernels.
FLAGS_FOR = {
    Precision.FLOAT32: ("avx2", "fma", "avx512f", "asimd", "neon"),
    Precision.FLOAT16: ("f16c", "avx512_fp16", "asimdhp", "fphp"),
    Precision.BFLOAT16: ("avx512_bf16", "amx_tile"),
    Precision.INT8: ("avx2", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "asimddp"),
}
# Runtimes whose host build runs portable reference kernels: no SIMD path to explain.
REFERENCE_KERNEL_RUNTIMES = ("tflm",)


def has_vnni(flags: Iterable[str]) -> bool:
    """True when the CPU flags include an int8 dot product with int32 accumulation."""
    return any(f in VNNI_FLAGS for f in flags)


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    """{"model", "arch", "cores", "flags" (the INTERESTING_FLAGS present), "vnni"} of this machine."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Processor") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        pass
    named = [f for f in INTERESTING_FLAGS if f in flags]
    return {"model": model, "arch": platform.machine(), "cores": os.cpu_count(), "flags": named,
            "vnni": has_vnni(flags)}


def relevant_flags(runtime: str, precision: "Precision | str", cpu: dict | None = None) -> list[str]:
    """The flags of ``cpu`` (default: this machine) that explain ``runtime``'s speed at
    ``precision``; int8 and dynamic-range rows say "no-vnni" when the dot product is missing."""
    if runtime in REFERENCE_KERNEL_RUNTIMES:
        return []
    cpu = cpu or cpu_info()
    p = Precision.parse(precision)
    base = Precision.INT8 if p in (Precision.INT8, Precision.DYNAMIC, Precision.INT16X8, Precision.MIXED) else p
    present = [f for f in FLAGS_FOR.get(base, ()) if f in cpu["flags"]]
    if base == Precision.INT8 and not cpu["vnni"]:
        present.append("no-vnni")
    return present
