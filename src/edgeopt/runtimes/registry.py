"""Runtimes by name, and the only map from an artifact's format to the runtime that runs it.

Adding a runtime = one module with a Runtime class (its ``formats`` say which artifact suffixes
it runs) + one line in RUNTIMES; it then shows up in ``edgeopt compare`` and can run any artifact
of its formats.

Preference rule (``runtime_for``): among the runtimes that run a suffix, a runtime whose FIRST
declared format is that suffix (its native format: LiteRT for .tflite, ONNX Runtime for .onnx,
OpenVINO for .xml) comes before one that merely also runs it (OpenVINO for .onnx); ties go to
the earlier line in RUNTIMES (LiteRT before TFLM, which only simulates a microcontroller).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from edgeopt.errors import UserError
from edgeopt.runtimes.base import Runtime, RuntimeInfo

# name -> "module:Class", in preference order; modules import lazily so listing runtimes stays cheap
# (a runtime module imports its engine inside methods only).
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


def formats() -> dict[str, list[str]]:
    """Suffix -> the runtimes that run it, preferred first (see the module docstring)."""
    declared = {name: tuple(s.lower() for s in get_runtime(name).formats) for name in RUNTIMES}
    suffixes = list(dict.fromkeys(s for fmts in declared.values() for s in fmts))
    return {s: sorted((n for n in RUNTIMES if s in declared[n]), key=lambda n: declared[n][0] != s)
            for s in suffixes}


def runtimes_for(path: str | Path) -> list[str]:
    """The runtimes that run ``path`` (by its suffix), preferred first; raises UserError when none does."""
    suffix = Path(path).suffix.lower()
    table = formats()
    if suffix not in table:
        known = "; ".join(f"{s} ({', '.join(names)})" for s, names in table.items())
        raise UserError(f"no runtime runs {Path(path).name!r}; runtimes run {known}")
    return table[suffix]


def runtime_for(path: str | Path) -> str:
    """The preferred runtime for an artifact file, e.g. 'model.onnx' -> 'onnxruntime'."""
    return runtimes_for(path)[0]
