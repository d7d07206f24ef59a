"""TensorFlow Lite Micro on the host (the `tflite-micro` package): the microcontroller kernels.

The session itself lives in ``edgeopt.measure.tflm`` (it also measures the tensor arena); this
module only puts it behind the Runtime interface. TFLM runs float32 and full-int8 .tflite models;
it has no kernels for float16-weight or dynamic-range (hybrid) models.
"""
from __future__ import annotations

from pathlib import Path

from edgeopt.errors import one_line
from edgeopt.runtimes.base import RuntimeInfo


class TFLM:
    name = "tflm"
    formats = (".tflite",)

    def info(self) -> RuntimeInfo:
        try:
            from importlib.metadata import version

            from tflite_micro import runtime  # noqa: F401  (a package attribute, not a submodule)

            from edgeopt.measure.tflm import TFLMSession  # noqa: F401
            return RuntimeInfo(self.name, version("tflite-micro"), True)
        except Exception as e:
            return RuntimeInfo(self.name, "", False, f"TFLM is not usable here ({one_line(e, 160)}); "
                                                     f"pip install tflite-micro")

    def load(self, path: Path, threads: int = 1):
        # TFLM is single-threaded by design (a microcontroller has one core): threads is ignored.
        from edgeopt.measure.tflm import TFLMSession

        return TFLMSession(Path(path))
