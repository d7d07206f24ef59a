"""Load an artifact in the runtime that runs it and run one sample, before anything measures it.

A quantizer can write a file its own runtime refuses (ONNX Runtime's per-channel QDQ on an
opset-11 graph gives DequantizeLinear an ``axis`` that opset 11 does not have). Such a variant is
"failed" with the runtime's full message, never measured and never called "unsupported".
The engines are called directly here (not through ``edgeopt.runtimes``) so the whole message
survives: the runtime sessions shorten load errors to one line for the terminal.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class ArtifactCheckFailed(Exception):
    """A written artifact that its runtime cannot load or run; the message is the whole reason.
    The variant is "failed" (not "unsupported"), and is not measured."""


def check_artifact(path: str | Path, x: np.ndarray | None = None) -> str | None:
    """None when ``path`` (.onnx, OpenVINO .xml, .tflite) loads in its runtime and one sample
    gives finite outputs; otherwise the reason, whole (one line, never cut).

    ``x``: input samples shaped like the model's first input (the first sample is run); zeros of
    each input's shape (dynamic dimensions as 1) for the other inputs, and for all when None.
    Raises nothing for a bad artifact.
    """
    path = Path(path)
    runners = {".onnx": _run_onnx, ".xml": _run_openvino, ".tflite": _run_tflite}
    if not path.exists():
        return f"{path.name} was not written"
    run = runners.get(path.suffix.lower())
    if run is None:
        return f"no check for {path.suffix} artifacts (checks {', '.join(runners)})"
    try:
        out = run(path, None if x is None else np.asarray(x[:1], np.float32))
    except Exception as e:  # any engine error is the reason the artifact failed
        return f"{_engine(path)} cannot run {path.name}: {type(e).__name__}: {' '.join(str(e).split())}"
    bad = [i for i, o in enumerate(out) if np.asarray(o).dtype.kind == "f" and not np.isfinite(o).all()]
    if bad:
        return f"{_engine(path)} ran {path.name} but output {bad[0]} holds NaN or infinite values"
    return None


def _engine(path: Path) -> str:
    return {".onnx": "ONNX Runtime", ".xml": "OpenVINO", ".tflite": "LiteRT"}[path.suffix.lower()]


def _sample(shape, dtype, x: np.ndarray | None) -> np.ndarray:
    if x is not None:
        return x.astype(dtype)
    return np.zeros([int(d) if isinstance(d, (int, np.integer)) and d > 0 else 1 for d in shape], dtype)


def _run_onnx(path: Path, x):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {inp.name: _sample(inp.shape, {"tensor(float16)": np.float16}.get(inp.type, np.float32),
                              x if k == 0 else None) for k, inp in enumerate(sess.get_inputs())}
    return sess.run(None, feed)


def _run_openvino(path: Path, x):
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": 1,
                                                          "INFERENCE_PRECISION_HINT": "f32"})
    feed = {k: _sample([d.get_length() if d.is_static else -1 for d in port.get_partial_shape()], np.float32,
                       x if k == 0 else None) for k, port in enumerate(compiled.inputs)}
    result = compiled.create_infer_request().infer(feed)
    return [np.asarray(v) for v in result.values()]


def _run_tflite(path: Path, x):
    from ai_edge_litert.interpreter import Interpreter

    from edgeopt.convert import quiet_fds
    from edgeopt.core.arrays import TensorInfo, quantize_input

    with quiet_fds():
        interp = Interpreter(model_path=str(path), num_threads=1)
        inputs = interp.get_input_details()
        samples = [_sample(inp["shape"], np.float32, x if k == 0 else None) for k, inp in enumerate(inputs)]
        for inp, sample in zip(inputs, samples):
            if tuple(sample.shape) != tuple(inp["shape"]):
                interp.resize_tensor_input(inp["index"], sample.shape)
        interp.allocate_tensors()
        for inp, sample in zip(inputs, samples):
            scale, zp = inp.get("quantization", (0.0, 0))
            info = TensorInfo(inp["name"], tuple(sample.shape), np.dtype(inp["dtype"]).name,
                              float(scale) if scale else None, int(zp) if scale else None)
            interp.set_tensor(inp["index"], quantize_input(sample, info))
        interp.invoke()
        return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
