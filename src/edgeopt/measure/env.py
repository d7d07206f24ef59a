"""The machine a measurement was taken on: CPU model and the flags that explain speed."""
from __future__ import annotations

import os
import platform
from functools import lru_cache

INTERESTING_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_fp16", "avx512_bf16",
                     "amx_tile", "amx_int8", "asimd", "asimddp", "asimdhp", "fphp", "neon", "sve")


@lru_cache(maxsize=1)
def cpu_info() -> dict:
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
    vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp"))
    return {"model": model, "arch": platform.machine(), "cores": os.cpu_count(), "flags": named,
            "vnni": vnni}


def environment() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("edgeopt", "ai-edge-litert", "tensorflow-cpu", "keras", "onnxruntime", "openvino",
                "tflite-micro", "ai-edge-quantizer"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return {"cpu": cpu_info(), "python": platform.python_version(), "os": platform.platform(),
            "packages": versions}
