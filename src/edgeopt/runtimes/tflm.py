"""TensorFlow Lite Micro on the host (the `tflite-micro` package): the microcontroller kernels.

The session itself lives in ``edgeopt.measure.tflm`` (it also measures the tensor arena); this
module only puts it behind the Runtime interface. TFLM runs float32 and full-int8 .tflite models;
it has no kernels for float16-weight or dynamic-range (hybrid) models, and cannot resize inputs: a
file with an open non-batch input axis is refused (``OpenAxisRefused``).
"""
from __future__ import annotations

from pathlib import Path

from edgeopt.errors import UserError, one_line
from edgeopt.runtimes.base import RuntimeInfo


class OpenAxisRefused(UserError):
    """A .tflite input has an open non-batch axis, which TFLite Micro cannot run: a property of the
    file, not a failure of the runtime (compare shows it as not applicable)."""


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

        check_static_inputs(Path(path))
        return TFLMSession(Path(path))


def check_static_inputs(path: Path) -> None:
    """OpenAxisRefused (a UserError) when an input of the .tflite at ``path`` has an open non-batch axis
    (``shape_signature`` -1, e.g. a sequence length): TFLite Micro cannot resize inputs, so it
    would run at the converter's placeholder size 1."""
    from edgeopt.core.tflite import tflite_input_signatures, tflite_io_names

    data = path.read_bytes() if path.is_file() else b""
    try:
        names, sigs = tflite_io_names(data)[0], tflite_input_signatures(data)
    except Exception:  # missing, not a .tflite or damaged: loading it says what is wrong
        return
    for name, sig in zip(names, sigs):
        if any(d == -1 for d in sig[1:]):
            shape = ",".join("?" if d == -1 else str(d) for d in sig[1:])
            raise OpenAxisRefused(f"TFLite Micro runs static shapes only: input {name!r} of {path.name} has an "
                            f"open axis ({shape}); convert the model with every non-batch axis fixed "
                            f"(e.g. edgeopt export MODEL.keras --input-shape with a length in place of "
                            f"each ?), or run it in LiteRT (export --target linux-litert)")
