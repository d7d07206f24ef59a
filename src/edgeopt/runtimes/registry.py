"""Runtimes by name. Adding a runtime = one module with a Runtime class + one line here."""
from __future__ import annotations

import importlib

from edgeopt.errors import UserError
from edgeopt.runtimes.base import Runtime, RuntimeInfo

# name -> "module:Class"; modules import lazily so listing runtimes stays cheap.
RUNTIMES: dict[str, str] = {
    "litert": "edgeopt.runtimes.litert:LiteRT",
    "onnxruntime": "edgeopt.runtimes.onnxruntime:OnnxRuntime",
    "openvino": "edgeopt.runtimes.openvino:OpenVINO",
    "tflm": "edgeopt.runtimes.tflm:TFLM",
}
ALIASES = {"ort": "onnxruntime", "ov": "openvino", "tflite": "litert", "tfl": "litert"}


def get_runtime(name: str) -> Runtime:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in RUNTIMES:
        raise UserError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}")
    module, cls = RUNTIMES[key].split(":")
    return getattr(importlib.import_module(module), cls)()


def runtime_info(name: str) -> RuntimeInfo:
    return get_runtime(name).info()


def available_runtimes() -> list[str]:
    """Names of the runtimes that can run here (installed and importable)."""
    return [name for name in RUNTIMES if runtime_info(name).available]


def parse_runtimes(text: str | None) -> list[str]:
    """'litert,ort' -> ['litert', 'onnxruntime'] (checked; empty or None = all)."""
    if not text:
        return list(RUNTIMES)
    names = [n for n in (p.strip() for p in text.split(",")) if n]
    return list(dict.fromkeys(get_runtime(n).name for n in names))
