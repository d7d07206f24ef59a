"""Keras -> .tflite conversion with TensorFlow's converter (stdout noise silenced)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

from edgeopt.errors import UserError


@contextlib.contextmanager
def quiet_fds():
    """Silence stdout/stderr, Python and C level (the converter prints a 'Saved artifact' block, MLIR
    and XNNPACK logs)."""
    import sys

    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as devnull:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            with contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
                yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def keras_to_tflite(model, **converter_kwargs: Any) -> bytes:
    """Convert a Keras 3 model to .tflite bytes.

    ``converter_kwargs`` are set as attributes of ``tf.lite.TFLiteConverter`` (``optimizations``,
    ``representative_dataset``, ``inference_input_type``, ...); ``target_spec`` may be a dict of
    target_spec attributes (``supported_types``, ``supported_ops``).
    """
    import tensorflow as tf

    target_spec = converter_kwargs.pop("target_spec", None) or {}
    with tempfile.TemporaryDirectory() as tmp, quiet_fds():
        try:
            converter = _converter_for(model, tmp)
            for key, value in converter_kwargs.items():
                setattr(converter, key, value)
            for key, value in target_spec.items():
                setattr(converter.target_spec, key, value)
            return converter.convert()
        except Exception as e:  # the converter raises many types; the reason is what matters
            raise UserError(f"cannot convert {model.name} to .tflite: {_first_line(e)}") from None


def _converter_for(model, tmp: str):
    import tensorflow as tf

    saved = getattr(model, "_edgeopt_saved_model", None)
    if saved:
        return tf.lite.TFLiteConverter.from_saved_model(saved)
    try:
        return tf.lite.TFLiteConverter.from_keras_model(model)
    except Exception:
        # Some Keras 3 models only convert through an exported SavedModel.
        path = os.path.join(tmp, "saved_model")
        model.export(path, format="tf_saved_model", verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(path)


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "error:" in ln.lower()]
    text = lines[0] if lines else " ".join(str(e).split())
    return text[:300] or type(e).__name__
