"""The machine a measurement was taken on: CPU (from edgeopt.runtimes.cpu), Python, OS, package versions."""
from __future__ import annotations

import platform

from edgeopt.runtimes.cpu import INTERESTING_FLAGS, cpu_info, has_vnni  # noqa: F401  (re-exported)


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
