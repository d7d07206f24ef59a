"""Keras -> .tflite conversion with TensorFlow's converter, with static shapes (stdout noise silenced).

Deployables are converted with every axis fixed: batch 1, and each open (``None``) axis set to a
given length (the data's, or ``--input-shape``). With the batch axis left dynamic the converter adds
SHAPE/GATHER/REDUCE_PROD ops around a Dense on a rank-3 input, which TFLite Micro lacks, and a
Keras 3 LSTM fails to convert (MEASURED.md). Recurrent layers are unrolled over their now-static
time axis while tracing: TensorFlow's int8 calibrator crashes the process on the WHILE loop a
rolled RNN becomes (measured with tensorflow-cpu 2.21), and the unrolled cell is plain builtin ops
(FULLY_CONNECTED, ADD, MUL, LOGISTIC, TANH) that TFLite Micro runs in int8.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Mapping, Sequence

from edgeopt.errors import UserError

# Longest time axis an RNN is unrolled over (each step adds about 10 ops to the graph); longer
# sequences keep the converter's WHILE loop, which float conversions handle and calibration cannot.
MAX_UNROLL_STEPS = 1000

InputShape = Sequence[int] | Sequence[Sequence[int]] | Mapping[str, Sequence[int]] | None


@contextlib.contextmanager
def quiet_fds():
    """Silence stdout/stderr, Python and C level (the converter prints a 'Saved artifact' block, MLIR
    and XNNPACK logs).

    A logging handler created inside (TensorFlow makes its own on first use) would keep the
    silenced stream, closed afterwards: such handlers are pointed back at the real stream."""
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
            _repoint_log_handlers(devnull, sys.stderr)


def _repoint_log_handlers(old, new) -> None:
    import logging

    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


# ---------------------------------------------------------------- static shapes

def static_input_shapes(model, input_shape: InputShape = None) -> dict[str, tuple[int, ...]]:
    """The fixed shape each model input is converted with: batch 1, the model's own fixed axes,
    and open (``None``) axes taken from ``input_shape``.

    ``input_shape`` gives the shape of one sample (no batch axis): a tuple for a single-input
    model (e.g. the data's ``x.shape[1:]``), a list of tuples (one per input, in ``model.inputs``
    order) or a dict keyed by input name. Returns ``{input name: (1, d1, d2, ...)}`` in input
    order (JSON-able once tuples become lists; record it in the variant).

    Raises UserError when ``input_shape`` disagrees with a fixed axis or has the wrong rank, or
    when an open axis is left without a length.
    """
    given = _given_per_input(model, input_shape)
    out = {}
    for t, want in zip(model.inputs, given):
        name = _input_name(t)
        declared = tuple(t.shape[1:])
        if want is not None:
            want = tuple(int(d) for d in want)
            if len(want) != len(declared):
                raise UserError(f"input {name!r} has {len(declared)} axes {_fmt(declared)} but the given "
                                f"input shape {_fmt(want)} has {len(want)}; give the shape of one sample "
                                f"without the batch axis")
            bad = [i for i, (d, w) in enumerate(zip(declared, want)) if d is not None and d != w]
            if bad:
                raise UserError(f"input {name!r} is {_fmt(declared)} but the given input shape is "
                                f"{_fmt(want)}: axis {bad[0] + 1} must be {declared[bad[0]]}")
            if any(w < 1 for w in want):
                raise UserError(f"input shape {_fmt(want)} for {name!r} has an axis below 1")
        elif any(d is None for d in declared):
            axis = 1 + [d is None for d in declared].index(True)
            raise UserError(f"input {name!r} has an open axis {_fmt(declared)} (axis {axis}); converting "
                            f"needs a fixed length: pass data with that length or --input-shape "
                            f"{','.join(str(d or 16) for d in declared)}")
        out[name] = (1,) + (want if want is not None else tuple(int(d) for d in declared))
    return out


def parse_input_shape(text: str) -> InputShape:
    """Parse ``--input-shape``: one sample's shape without the batch axis, e.g. ``16,4``; for
    several inputs ``;``-separated, optionally named: ``image:8,8,1;vector:4``.
    Raises UserError for anything else."""
    parts = [p.strip() for p in str(text).split(";") if p.strip()]
    named = [":" in p for p in parts]
    if not parts or (any(named) and not all(named)):
        raise UserError(f"--input-shape {text!r}: give sizes like 16,4 (one input) or "
                        f"image:8,8,1;vector:4 (several inputs, all named or none)")
    shapes = []
    for p in parts:
        dims = p.split(":", 1)[-1]
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise UserError(f"--input-shape {text!r}: {dims!r} is not a list of positive sizes such as 16,4")
        shapes.append(shape)
    if all(named):
        return {p.split(":", 1)[0].strip(): s for p, s in zip(parts, shapes)}
    return shapes[0] if len(shapes) == 1 else shapes


def conversion_shape(model, given: InputShape = None, data_shape: InputShape = None) -> InputShape:
    """The ``input_shape`` to convert with: ``given`` (e.g. ``--input-shape``) when set, else the
    data's sample shape when the model has an open axis, else None (the model's own shape)."""
    if given is not None:
        return given
    if data_shape is not None and any(d is None for t in model.inputs for d in t.shape[1:]):
        return data_shape
    return None


def context_input_shape(ctx, model) -> InputShape:
    """``conversion_shape`` for a recipe step: ``ctx.options["input_shape"]`` or the data's."""
    options = getattr(ctx, "options", None) or {}
    return conversion_shape(model, options.get("input_shape"), getattr(ctx.dataset, "input_shape", None))


def _given_per_input(model, input_shape: InputShape) -> list:
    n = len(model.inputs)
    if input_shape is None:
        return [None] * n
    if isinstance(input_shape, Mapping):
        names = [_input_name(t) for t in model.inputs]
        unknown = sorted(set(input_shape) - set(names))
        if unknown:
            raise UserError(f"input shape given for {', '.join(unknown)} but the model's inputs are "
                            f"{', '.join(names)}")
        return [input_shape.get(k) for k in names]
    items = list(input_shape)
    if items and all(isinstance(d, (int,)) or hasattr(d, "__index__") for d in items):
        if n != 1:
            raise UserError(f"the model has {n} inputs; give one input shape per input")
        return [items]
    if len(items) != n:
        raise UserError(f"{len(items)} input shapes given for a model with {n} inputs")
    return items


def _input_name(t) -> str:
    history = getattr(t, "_keras_history", None)
    return history.operation.name if history is not None else str(getattr(t, "name", "input"))


def _fmt(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


# ---------------------------------------------------------------- conversion

def keras_to_tflite(model, *, input_shape: InputShape = None, **converter_kwargs: Any) -> bytes:
    """Convert a Keras 3 model to .tflite bytes with static shapes (see ``static_input_shapes``).

    ``input_shape`` fixes open axes (one sample's shape, no batch axis; see
    ``static_input_shapes``). ``converter_kwargs`` are set as attributes of
    ``tf.lite.TFLiteConverter`` (``optimizations``, ``representative_dataset``,
    ``inference_input_type``, ...); ``target_spec`` may be a dict of target_spec attributes
    (``supported_types``, ``supported_ops``). A representative dataset must yield batches of one
    sample shaped as fixed here. Raises UserError naming the blocker when the converter fails.
    """
    shapes = static_input_shapes(model, input_shape)
    target_spec = converter_kwargs.pop("target_spec", None) or {}
    calibrated = converter_kwargs.get("representative_dataset") is not None
    with quiet_fds(), warnings.catch_warnings():
        # The frozen-graph path warns about input statistics it does not need for float inputs.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        frozen = None
        try:
            converter, frozen = _converter_for(model, shapes, calibrated)
            for key, value in converter_kwargs.items():
                setattr(converter, key, value)
            for key, value in target_spec.items():
                setattr(converter.target_spec, key, value)
            return converter.convert()
        except UserError:
            raise
        except Exception as e:  # the converter raises many types; the reason is what matters
            err = UserError(f"cannot convert {model.name} to .tflite: {converter_reason(e, frozen, model)}")
            err.full_text = str(e)  # the converter's whole message, for run.json and explain
            raise err from None


def _converter_for(model, shapes: dict[str, tuple[int, ...]], calibrated: bool):
    """A TFLite converter for ``model`` traced at ``shapes`` (variables frozen to constants)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    specs = [tf.TensorSpec(s, t.dtype, name=name) for (name, s), t in zip(shapes.items(), model.inputs)]

    @tf.function(input_signature=specs, autograph=False)
    def serve(*args):
        return model(args[0] if len(args) == 1 else list(args), training=False)

    longest = max([s[1] for s in shapes.values() if len(s) > 1] or [0])  # an open time axis, traced
    with rnn_unrolled(model, calibrated, longest):
        concrete = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    return tf.lite.TFLiteConverter.from_concrete_functions([frozen]), frozen


@contextlib.contextmanager
def rnn_unrolled(model, calibrated: bool = False, open_steps: int = 0):
    """Set ``unroll=True`` on every recurrent layer of ``model`` (nested ones too) while tracing;
    restored afterwards. ``open_steps``: the length an open time axis is traced with. Raises
    UserError for a calibrated conversion of an RNN whose time axis is longer than
    MAX_UNROLL_STEPS (the calibrator would crash on the loop)."""
    import keras

    changed = []
    try:
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.RNN) and not layer.unroll:
                steps = _time_steps(layer)
                steps = open_steps if steps is None else steps
                if steps > MAX_UNROLL_STEPS:
                    if calibrated:
                        raise UserError(f"layer {layer.name!r} runs over {steps} time steps; int8 "
                                        f"calibration needs the RNN unrolled, which edgeopt does up "
                                        f"to {MAX_UNROLL_STEPS} steps: use shorter sequences or a "
                                        f"float variant")
                    continue
                layer.unroll = True
                changed.append(layer)
        yield changed
    finally:
        for layer in changed:
            layer.unroll = False


def _time_steps(layer) -> int | None:
    try:
        shape = layer.input.shape if hasattr(layer, "input") else None
    except (AttributeError, ValueError):  # a layer used several times, or an inner RNN of a wrapper
        shape = None
    if shape is None or len(shape) < 2:
        return 0  # unknown here (e.g. the inner RNN of Bidirectional): static once inputs are fixed
    return None if shape[1] is None else int(shape[1])


def _all_layers(model) -> list:
    """Every layer inside ``model``, recursively (nested models, Bidirectional's two RNNs)."""
    out, todo = [], list(getattr(model, "layers", []))
    while todo:
        layer = todo.pop(0)
        out.append(layer)
        todo.extend(getattr(layer, "layers", []) or [])
        for attr in ("forward_layer", "backward_layer", "layer"):
            inner = getattr(layer, attr, None)
            if inner is not None and inner is not layer and hasattr(inner, "name") and inner not in out:
                todo.append(inner)
    return out


def converter_reason(e: Exception, frozen=None, model=None) -> str:
    """The converter's reason in one line: unsupported ops, and the layers using them (found in
    the traced graph ``frozen`` when given), named when the converter lists them."""
    import re

    text = str(e)
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)))
    if ops:
        layers = _layers_using(model, frozen, ops) if model is not None else []
        where = f" used by layer {', '.join(layers)}" if layers else ""
        return (f"TensorFlow op {', '.join(ops)}{where} has no TFLite builtin kernel; replace that "
                f"layer or keep this model on a TensorFlow runtime")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "error:" in ln.lower()]
    line = lines[0] if lines else " ".join(text.split())
    line = re.sub(r"^.*?error:\s*", "", line) if lines else line
    return line[:400] or type(e).__name__


def _layers_using(model, frozen, ops: list[str]) -> list[str]:
    """Names of the Keras layers whose traced ops (named scope/scope/op, a scope being a layer
    name with an optional ``_N`` call suffix) include ``ops``."""
    import re

    if frozen is None:
        return []
    known = {layer.name for layer in _all_layers(model)}
    names = []
    for node in frozen.graph.as_graph_def().node:
        if node.op not in ops:
            continue
        scopes = node.name.split("/")[:-1]
        found = [p if p in known else re.sub(r"_\d+$", "", p) for p in scopes]
        found = [p for p in found if p in known]
        if found and found[-1] not in names:
            names.append(found[-1])
    return names


# ---------------------------------------------------------------- reading what came out

def tflite_op_types(model: bytes) -> list[str]:
    """Every op type in a .tflite, all subgraphs included (WHILE bodies too), in first-seen order;
    custom ops as ``CUSTOM:<code>`` (Flex ops show as ``CUSTOM:FlexXxx``)."""
    from ai_edge_litert import schema_py_generated as fb

    m = fb.Model.GetRootAsModel(bytearray(model), 0)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(m.OperatorCodesLength()):
        c = m.OperatorCodes(i)
        code = max(c.BuiltinCode(), c.DeprecatedBuiltinCode())
        name = names.get(code, str(code))
        if name == "CUSTOM":
            name = "CUSTOM:" + (c.CustomCode() or b"").decode()
        codes.append(name)
    seen: list[str] = []
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for k in range(sg.OperatorsLength()):
            name = codes[sg.Operators(k).OpcodeIndex()]
            if name not in seen:
                seen.append(name)
    return seen


# Ops that compute shapes at run time (a dynamic batch adds SHAPE -> GATHER -> REDUCE_PROD around a
# Dense on a rank-3 input); with static shapes none should appear. GATHER alone is a real lookup
# (Embedding), so it is not listed.
SHAPE_OPS = ("SHAPE", "REDUCE_PROD", "BROADCAST_ARGS")


def non_builtin_ops(model: bytes) -> list[str]:
    """Custom and Flex (select TensorFlow) ops of a .tflite: what a builtin-only runtime lacks."""
    return [op for op in tflite_op_types(model) if op.startswith("CUSTOM")]
