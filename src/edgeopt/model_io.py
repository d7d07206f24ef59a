"""Load models: Keras 3 (.keras), legacy .h5, SavedModel folders, .tflite, .onnx.

Keras files load with safe mode on: a Lambda layer from an untrusted file is refused unless the
user passes ``--unsafe``. Every unreadable file becomes one ``UserError`` line.
"""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.errors import UserError, one_line

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
SUFFIXES = KERAS_SUFFIXES + (".tflite", ".onnx")
MAX_SAMPLE_BYTES = 2 * 1024**3  # one input sample larger than this is refused before anything allocates


@dataclass
class IOSpec:
    """One model input or output: name, shape without the batch axis (None for free axes), dtype,
    and for outputs the activation of the layer that produces it ("softmax", "sigmoid", "linear",
    or None when unknown: the task is then inferred from the outputs themselves)."""

    name: str
    shape: tuple
    dtype: str
    activation: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "activation": self.activation}


@dataclass
class LoadedModel:
    """A loaded model. ``input_shape``/``input_dtype``/``output_units`` describe the first input and
    output; ``inputs``/``outputs`` every one, in the model's order."""

    path: Path
    kind: str  # "keras" | "tflite" | "onnx"
    name: str
    input_shape: tuple  # without the batch dimension; None for free dims
    input_dtype: str
    output_units: int | None  # size of the last output dimension
    keras: Any = None  # the keras.Model, for kind == "keras"
    info: dict = field(default_factory=dict)
    inputs: list[IOSpec] = field(default_factory=list)
    outputs: list[IOSpec] = field(default_factory=list)

    @property
    def open_axes(self) -> list[int]:
        """Axes of the input (1-based, batch excluded) without a fixed size: conversion needs a
        length for each (the data's, or ``--input-shape``; see ``convert.static_input_shapes``)."""
        return [i + 1 for i, d in enumerate(self.input_shape) if d is None]

    @property
    def output_is_probability(self) -> bool:
        return bool(self.info.get("softmax_output"))


def model_kind(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return "keras"
        if path.suffix.lower() in (".tflite", ".onnx"):
            raise UserError(f"{path} is a folder; expected a {path.suffix.lower()} file")
        raise UserError(f"{path} is a folder but not a SavedModel (no saved_model.pb inside); "
                        f"pass the model file itself")
    suffix = path.suffix.lower()
    if suffix in KERAS_SUFFIXES:
        return "keras"
    if suffix == ".tflite":
        return "tflite"
    if suffix == ".onnx":
        return "onnx"
    raise UserError(f"unsupported model file {path.name}: use .keras, .h5, a SavedModel folder, "
                    f".tflite or .onnx")


def load_model(path: str | Path, *, unsafe: bool = False) -> LoadedModel:
    path = Path(path)
    if not path.exists():
        raise UserError(f"model not found: {path}")
    kind = model_kind(path)
    if kind == "keras":
        return _wrap_keras(path, load_keras(path, unsafe=unsafe))
    if kind == "tflite":
        return _load_tflite(path)
    return _load_onnx(path)


def load_keras(path: str | Path, *, unsafe: bool = False):
    """Load a Keras model (.keras, .h5 or a SavedModel folder) with safe mode on by default."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model not found: {path}")
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise UserError(f"{path} is a folder but not a SavedModel (no saved_model.pb inside); "
                            f"pass the model file itself")
        return _load_saved_model(path)
    _check_container(path)
    import keras

    import edgeopt.techniques.qat_layers  # noqa: F401  registers fake-quant layers of saved QAT models

    try:
        return keras.saving.load_model(path, safe_mode=not unsafe, compile=False)
    except ValueError as e:
        text = " ".join(str(e).split())
        if "safe_mode" in text or "Lambda" in text or "lambda" in text:
            raise UserError(f"{path.name} contains a Lambda layer (arbitrary Python code); edgeopt "
                            f"refuses to run it from a file it cannot trust. If you trust the file, "
                            f"pass --unsafe") from None
        raise UserError(f"cannot load {path.name} as a Keras model: {text[:200]}") from None
    except (OSError, KeyError, TypeError, AttributeError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"cannot load {path.name} as a Keras model (corrupt or truncated?): "
                        f"{one_line(e, 160)}") from None


def _check_container(path: Path) -> None:
    """Cheap format checks before Keras touches the file, so wrong formats get a clear line."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    if not head:
        raise UserError(f"{path.name} is empty (0 bytes)")
    if path.suffix.lower() == ".keras":
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path.name} is not a valid .keras file (a .keras file is a zip archive; "
                            f"this one is corrupt, truncated or another format)")
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
                names = z.namelist()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as e:
            raise UserError(f"{path.name} is a damaged .keras archive ({one_line(e, 100)}); export the "
                            f"model again with model.save()") from None
        if bad is not None or "config.json" not in names:
            what = f"corrupt member {bad}" if bad is not None else "no config.json"
            raise UserError(f"{path.name} is a damaged .keras archive ({what}); export the model again "
                            f"with model.save()")
    elif head[:8] != b"\x89HDF\r\n\x1a\n":
        raise UserError(f"{path.name} is not an HDF5 file (corrupt, truncated or another format)")


def _load_saved_model(path: Path):
    import keras

    try:
        layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    except Exception as e:
        raise UserError(f"cannot load SavedModel {path}: {one_line(e)}") from None
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    sig = loaded.signatures["serving_default"]
    spec = list(sig.structured_input_signature[1].values())[0]
    inp = keras.Input(tuple(spec.shape[1:]), dtype=spec.dtype.name)
    out = layer(inp)
    if isinstance(out, dict):
        out = list(out.values())[0]
    model = keras.Model(inp, out, name=path.name)
    model._edgeopt_saved_model = str(path)  # convert from the SavedModel itself
    return model


def _wrap_keras(path: Path, model) -> LoadedModel:
    inputs = model.inputs
    if not inputs:
        raise UserError(f"{path.name}: the model has no defined inputs; build it with keras.Input")
    shape = tuple(inputs[0].shape[1:])
    out_shape = model.outputs[0].shape
    ins = [IOSpec(_keras_name(t), tuple(t.shape[1:]), str(t.dtype)) for t in inputs]
    for spec in ins:
        check_sample_size(path, spec.shape, spec.dtype)
    outs = [IOSpec(_keras_name(t), tuple(t.shape[1:]), str(t.dtype), _keras_activation(t)) for t in model.outputs]
    return LoadedModel(path, "keras", model.name, shape, str(inputs[0].dtype),
                       int(out_shape[-1]) if out_shape[-1] else None, model,
                       {"softmax_output": outs[0].activation == "softmax", "params": int(model.count_params())},
                       ins, outs)


def _keras_name(t) -> str:
    history = getattr(t, "_keras_history", None)
    return history.operation.name if history is not None else str(getattr(t, "name", ""))


def _keras_activation(t) -> str | None:
    """The activation of the layer producing Keras tensor ``t`` (see IOSpec)."""
    history = getattr(t, "_keras_history", None)
    layer = history.operation if history is not None else None
    kind = type(layer).__name__
    if kind == "Softmax":
        return "softmax"
    fn = getattr(layer, "activation", None)
    name = getattr(fn, "__name__", None) if fn is not None else None
    if name:
        return name
    return "linear" if kind in ("Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D") else None


_ACTIVATION_OPS = {"SOFTMAX": "softmax", "Softmax": "softmax", "LOGISTIC": "sigmoid", "Sigmoid": "sigmoid",
                   "FULLY_CONNECTED": "linear", "Gemm": "linear", "CONV_2D": "linear", "MatMul": "linear"}
_PASS_OPS = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "Reshape", "QuantizeLinear", "DequantizeLinear", "Identity",
             "Flatten", "SQUEEZE", "Squeeze", "CAST", "Cast"}


def _graph_activation(producers: dict, out: str | int) -> str | None:
    """The activation of the op producing output ``out`` (through quantize/reshape ops);
    ``producers`` maps a tensor to (op type, first input, fused activation or None)."""
    seen = 0
    while out in producers and seen < 8:
        op, first_in, fused = producers[out]
        if op in _PASS_OPS:
            out, seen = first_in, seen + 1
            continue
        if fused:  # e.g. FULLY_CONNECTED with a fused RELU: not a probability
            return "linear"
        return _ACTIVATION_OPS.get(op, "linear" if op.startswith(("ADD", "Add")) else None)
    return None


def _load_tflite(path: Path) -> LoadedModel:
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"{path.name} is not a .tflite flatbuffer (no TFL3 identifier): corrupt, "
                        f"truncated or another format")
    from edgeopt.core.tflite import read_tflite

    graph = read_tflite(path)  # the declared shape, before LiteRT allocates it
    for i in graph.inputs:
        check_sample_size(path, tuple(graph.tensors[i].shape[1:]), graph.tensors[i].dtype)
    from edgeopt.runtimes.litert import LiteRT

    session = LiteRT().load(path)
    inp = session.inputs[0]
    out = session.outputs[0]
    producers = _tflite_producers(path)
    return LoadedModel(path, "tflite", path.stem, _open_none(inp.shape), inp.dtype,
                       int(out.shape[-1]) if out.shape else None, None,
                       {"input_scale": inp.scale, "input_zero_point": inp.zero_point},
                       [IOSpec(i.name, _open_none(i.shape), i.dtype) for i in session.inputs],
                       [IOSpec(o.name, tuple(o.shape[1:]), o.dtype, _graph_activation(producers, o.name))
                        for o in session.outputs])


def _open_none(shape) -> tuple:
    """A LiteRT input shape without its batch axis, open (-1) axes as None (as for .keras/.onnx)."""
    return tuple(None if int(d) == -1 else int(d) for d in shape[1:])


def _tflite_producers(path: Path) -> dict:
    """Output tensor name/index -> (op type, first input index, fused activation) of a .tflite."""
    from edgeopt.core.tflite import read_tflite
    from edgeopt.core.tflite import tflite_io_names

    try:
        g = read_tflite(path)
        _, names, _ = tflite_io_names(path.read_bytes())
    except UserError:
        return {}
    prod = {}
    for node in g.nodes:
        for o in node.outputs:
            prod[o] = (node.op_type, node.inputs[0] if node.inputs else -1, None)
    for t, name in zip(g.outputs, names):  # look outputs up by their session name too
        if t in prod:
            prod[name] = prod[t]
    return prod


def _load_onnx(path: Path) -> LoadedModel:
    try:
        import onnx

        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:
        raise UserError(f"cannot load {path.name} as ONNX (corrupt, truncated or another format): "
                        f"{one_line(e, 160)}") from None
    inits = {i.name for i in model.graph.initializer}
    ins = [_onnx_spec(onnx, v) for v in model.graph.input if v.name not in inits]
    producers = {o: (n.op_type, n.input[0] if n.input else "", None) for n in model.graph.node for o in n.output}
    outs = [_onnx_spec(onnx, v, _graph_activation(producers, v.name)) for v in model.graph.output]
    for spec in ins:
        check_sample_size(path, spec.shape, spec.dtype)
    last = outs[0].shape[-1] if outs and outs[0].shape else None
    return LoadedModel(path, "onnx", path.stem, ins[0].shape, ins[0].dtype, last, None, {}, ins, outs)


def _onnx_spec(onnx, value, activation: str | None = None) -> IOSpec:
    dims = [d.dim_value if d.dim_value > 0 else None for d in value.type.tensor_type.shape.dim]
    elem = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    return IOSpec(value.name, tuple(dims[1:]), np.dtype(elem).name, activation)


def sample_bytes(shape: tuple, dtype: str) -> int:
    """Bytes one input sample of ``shape`` (batch excluded; free axes count as 1) and ``dtype`` takes."""
    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:
        itemsize = 4
    return int(np.prod([int(d) if d and int(d) > 0 else 1 for d in shape], dtype=np.float64)) * itemsize


def check_sample_size(path: Path, shape: tuple, dtype: str, limit: int | None = None) -> None:
    """UserError when one input sample of the model would need more memory than ``limit`` bytes
    (``MAX_SAMPLE_BYTES``, or a quarter of the memory available now when that is less): a model
    whose input claims e.g. 100000x100000 is refused by name before anything is allocated."""
    need = sample_bytes(shape, dtype)
    if limit is None:
        limit = min(MAX_SAMPLE_BYTES, _available_memory() // 4)
    if need > limit:
        from edgeopt.report.format import fmt_bytes

        dims = "x".join(str(d) if d else "?" for d in shape)
        raise UserError(f"{Path(path).name}: the model's input claims shape {dims} ({dtype}); one sample "
                        f"would need {fmt_bytes(need)}, more than edgeopt allows for one input "
                        f"({fmt_bytes(limit)}); export the model with the input size it really takes")


def _available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # no psutil or no /proc: the fixed cap alone
        return 4 * MAX_SAMPLE_BYTES
