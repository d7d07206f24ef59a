"""Graph statistics of a model: per-op parameters, MACs, weight and activation bytes, peak memory.

Three front ends (.tflite flatbuffer, Keras model, ONNX file) translate their graph into one small
intermediate form (`Graph`: tensors + nodes in execution order, MACs computed per format because
kernel layouts differ); `_build_profile` turns that into a `GraphProfile`.

The .tflite front end is edgeopt's one .tflite reader, ``edgeopt.core.tflite.read_tflite``; here a
model with a dynamic batch gets the shapes LiteRT computes at batch 1 (`_runtime_shapes`).
"""
from __future__ import annotations

import re
from pathlib import Path

from edgeopt.core.arrays import canonical_name
from edgeopt.core.precision import Precision
from edgeopt.core.tflite import Graph, Node, Tensor, conv_macs, read_tflite, tensor_bytes, tflite_io_names
from edgeopt.core.tflite import element_count as _prod, existing_file as _existing
from edgeopt.errors import UserError, one_line
from edgeopt.measure.graph_types import GraphProfile, OpStats, TensorStats

# Ops whose output only re-encodes constant weights (computed once at load time, not per inference).
_WEIGHT_TRANSFORM_OPS = {"DEQUANTIZE", "DENSIFY"}
_MAC_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV",
            "CONV_3D", "CONV_3D_TRANSPOSE", "CONV_1D"}



# --------------------------------------------------------------------------- generic builder
def _const_roots(graph: Graph, producer: dict[int, int], derived: set[int], t: int) -> list[int]:
    """The stored constants behind tensor t (through DEQUANTIZE/DENSIFY of constants)."""
    if graph.tensors[t].is_const:
        return [t]
    if t in derived:
        return [r for i in graph.nodes[producer[t]].inputs if i >= 0
                for r in _const_roots(graph, producer, derived, i)]
    return []


def _constant_derived(graph: Graph) -> tuple[dict[int, int], set[int]]:
    producer: dict[int, int] = {}
    derived: set[int] = set()
    for k, node in enumerate(graph.nodes):
        for o in node.outputs:
            producer[o] = k
        ins = [i for i in node.inputs if i >= 0]
        if ins and node.op_type in _WEIGHT_TRANSFORM_OPS | {"RESHAPE", "TRANSPOSE", "CAST"} and all(
                graph.tensors[i].is_const or i in derived for i in ins):
            derived.update(node.outputs)
    return producer, derived


def _is_activation(graph: Graph, derived: set[int], t: int) -> bool:
    return t >= 0 and not graph.tensors[t].is_const and t not in derived


def _op_dtype(graph: Graph, node: Node, act_in: list[int], roots: list[int], producer: dict[int, int]) -> str:
    tensors = graph.tensors
    if node.op_type in _WEIGHT_TRANSFORM_OPS and not act_in and roots:
        return tensors[roots[0]].dtype
    act = tensors[act_in[0]].dtype if act_in else (tensors[node.outputs[0]].dtype if node.outputs else "float32")
    source = graph.nodes[producer[act_in[0]]] if act_in and act_in[0] in producer else None
    if source is not None and source.op_type == "DEQUANTIZE" and source.inputs:  # QDQ: compute on ints
        act = tensors[source.inputs[0]].dtype
    weights = [tensors[r].dtype for r in roots if _prod(tensors[r].shape) > 1 and tensors[r].dtype != "int32"]
    direct = [tensors[i].dtype for i in node.inputs if i >= 0 and tensors[i].is_const
              and _prod(tensors[i].shape) > 1 and tensors[i].dtype not in ("int32", "int64")]
    if act.startswith("float") and any(d.startswith(("int", "uint")) for d in direct):
        return Precision.DYNAMIC.value
    if act == "int16" and any(d == "int8" for d in weights):
        return Precision.INT16X8.value
    return act


def _op_quant(graph: Graph, node: Node, act_in: list[int], roots: list[int]) -> str:
    tensors = graph.tensors
    weights = [tensors[r] for r in roots if tensors[r].quant and _prod(tensors[r].shape) > 1]
    if weights:
        w = max(weights, key=lambda t: _prod(t.shape))
        return f"{w.quant} {w.dtype}"
    q = [tensors[i] for i in act_in + node.outputs if tensors[i].quant]
    if q:
        return f"per-tensor {q[0].dtype}"
    if any(tensors[r].dtype == "float16" for r in roots):
        return "float16 weights"
    return ""


def _peak_activation(graph: Graph, derived: set[int]) -> int:
    """Max over execution steps of the bytes of live activation tensors.

    A tensor lives from the op that produces it (graph inputs and variables: from the start) to its
    last consumer (graph outputs and variables: to the end).
    """
    n = len(graph.nodes)
    start: dict[int, int] = {t: 0 for t in graph.inputs if _is_activation(graph, derived, t)}
    end: dict[int, int] = dict(start)
    for k, node in enumerate(graph.nodes):
        for o in node.outputs:
            if _is_activation(graph, derived, o) and o not in start:
                start[o], end[o] = k, k
        for i in node.inputs:
            if i in start:
                end[i] = max(end[i], k)
    for t in list(graph.outputs) + [i for i, t in enumerate(graph.tensors) if t.is_variable]:
        if _is_activation(graph, derived, t):
            start.setdefault(t, 0)
            end[t] = n - 1
    delta = [0] * (max(n, 1) + 1)  # +bytes where a lifetime starts, -bytes after it ends
    for t, first in start.items():
        delta[first] += graph.tensors[t].nbytes
        delta[end[t] + 1] -= graph.tensors[t].nbytes
    live, peak = 0, 0
    for change in delta:
        live += change
        peak = max(peak, live)
    return peak


def _precision(graph: Graph, ops: list[OpStats]) -> Precision:
    """The model's dominant compute precision (see GraphProfile.precision)."""
    const_dtypes = {t.dtype for t in graph.tensors if t.is_const}
    mac_dtypes = {o.dtype for o in ops if o.op_type in _MAC_OPS} or {o.dtype for o in ops}
    if const_dtypes & {"int4", "uint4"}:
        return Precision.INT4
    if any(o.op_type == "DYNAMIC_QUANTIZE_LINEAR" for o in ops):  # ONNX dynamic quantization
        return Precision.DYNAMIC
    if mac_dtypes & {"int16x8", "int16"}:
        return Precision.INT16X8
    if mac_dtypes & {"int8", "uint8"}:
        return Precision.INT8
    if Precision.DYNAMIC.value in mac_dtypes:
        return Precision.DYNAMIC
    weight_only = {o.dtype for o in ops if o.op_type in _WEIGHT_TRANSFORM_OPS and not o.input_bytes}
    if "float16" in mac_dtypes or "float16" in weight_only:
        return Precision.FLOAT16
    if weight_only & {"int8", "uint8"}:
        return Precision.DYNAMIC  # int8 weights dequantized to float: weight-only quantization
    if not mac_dtypes or mac_dtypes <= {"float32"}:
        return Precision.FLOAT32
    known = [p.value for p in Precision]
    return Precision(next((d for d in sorted(mac_dtypes) if d in known), "float32"))  # e.g. bfloat16


def _build_profile(graph: Graph) -> GraphProfile:
    producer, derived = _constant_derived(graph)
    counted: set[int] = set()
    ops: list[OpStats] = []
    for node in graph.nodes:
        act_in = [i for i in node.inputs if _is_activation(graph, derived, i)]
        roots = list(dict.fromkeys(r for i in node.inputs if i >= 0
                                   for r in _const_roots(graph, producer, derived, i)))
        consumes_weights = not (set(node.outputs) & derived)  # weight transforms pass them on
        own = [r for r in roots if r not in counted] if consumes_weights else []
        counted.update(own)
        wbytes: dict[str, int] = {}
        for r in own:
            wbytes[graph.tensors[r].dtype] = wbytes.get(graph.tensors[r].dtype, 0) + graph.tensors[r].nbytes
        out = graph.tensors[node.outputs[0]].shape if node.outputs else []
        ops.append(OpStats(
            name=node.name, op_type=node.op_type, output_shape=list(out),
            params=sum(_prod(graph.tensors[r].shape) for r in own), macs=int(node.macs),
            weight_bytes=wbytes,
            activation_bytes=sum(graph.tensors[o].nbytes for o in node.outputs if o not in derived),
            input_bytes=sum(graph.tensors[i].nbytes for i in act_in),
            dtype=_op_dtype(graph, node, act_in, roots, producer),
            quantization=_op_quant(graph, node, act_in, roots)))
    consts = [t for t in graph.tensors if t.is_const]
    weight_bytes: dict[str, int] = {}
    for t in consts:
        weight_bytes[t.dtype] = weight_bytes.get(t.dtype, 0) + t.nbytes
    first_in = graph.tensors[graph.inputs[0]] if graph.inputs else None
    return GraphProfile(
        source=graph.source, path=graph.path, ops=ops,
        total_params=sum(_prod(t.shape) for t in consts),
        total_macs=sum(o.macs for o in ops), weight_bytes=weight_bytes,
        peak_activation_bytes=_peak_activation(graph, derived), file_bytes=graph.file_bytes,
        input_shape=list(first_in.shape) if first_in else [],
        input_dtype=first_in.dtype if first_in else "float32",
        inputs=[_io(graph.tensors[t]) for t in graph.inputs], outputs=[_io(graph.tensors[t]) for t in graph.outputs],
        precision=_precision(graph, ops), notes=list(graph.notes))


def _io(t: Tensor) -> dict:
    return {"name": canonical_name(t.name), "shape": list(t.shape), "dtype": t.dtype}


# --------------------------------------------------------------------------- .tflite
def _runtime_shapes(data: bytes) -> tuple[dict[int, list[int]], list[str]]:
    """The shapes LiteRT computes for a dynamic-shape model (batch -1), by tensor index, and notes.

    The converter stores batch-1 placeholder shapes, which are wrong where an op changes the batch
    dimension (SPACE_TO_BATCH_ND for dilated convs, Tensordot reshapes of a Dense on 3-D input).
    One invoke on zeros at batch 1 resolves them (RESHAPE outputs are only sized during Eval).
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interp = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=
                             OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interp.invoke()
        details = interp.get_tensor_details()
    except Exception as e:  # custom ops etc.: keep the stored shapes
        return {}, [f"dynamic shapes not resolved ({one_line(e, 80)}); "
                    "MACs of ops after a batch-changing op may be low"]
    return {int(d["index"]): [int(v) for v in d["shape"]] for d in details}, []


def profile_tflite(path, measure_arena: bool = True) -> GraphProfile:
    """Profile a .tflite file without TensorFlow; the arena comes from the TFLite Micro interpreter."""
    path = _existing(path)
    graph = read_tflite(path)
    if graph.dynamic:
        shapes, notes = _runtime_shapes(path.read_bytes())
        graph = read_tflite(path, shapes) if shapes else graph
        graph.notes[:0] = notes
    profile = _build_profile(graph)
    in_names, out_names, _ = tflite_io_names(path.read_bytes())  # signature names where the file has them
    for io, name in zip(profile.inputs + profile.outputs, in_names + out_names):
        io["name"] = name
    profile.tensors = [TensorStats(t.name, list(t.shape), t.dtype, t.nbytes, t.is_const, t.quant_text)
                       for t in graph.tensors]
    if measure_arena:
        from edgeopt.measure.tflm import measure_arena as _measure

        profile.arena_bytes, profile.arena_note = _measure(path)
    else:
        profile.arena_note = "arena not measured (skipped)"
    return profile


# --------------------------------------------------------------------------- Keras
_KERAS_TYPES = {
    "Conv1D": "CONV_2D", "Conv2D": "CONV_2D", "Conv3D": "CONV_3D", "DepthwiseConv2D": "DEPTHWISE_CONV_2D",
    "DepthwiseConv1D": "DEPTHWISE_CONV_2D", "SeparableConv2D": "SEPARABLE_CONV_2D",
    "SeparableConv1D": "SEPARABLE_CONV_2D", "Conv2DTranspose": "TRANSPOSE_CONV",
    "Conv1DTranspose": "TRANSPOSE_CONV", "Conv3DTranspose": "CONV_3D_TRANSPOSE",
    "Dense": "FULLY_CONNECTED", "EinsumDense": "FULLY_CONNECTED", "Add": "ADD", "Subtract": "SUB",
    "Multiply": "MUL", "Concatenate": "CONCATENATION", "AveragePooling2D": "AVERAGE_POOL_2D",
    "AveragePooling1D": "AVERAGE_POOL_2D", "MaxPooling2D": "MAX_POOL_2D", "MaxPooling1D": "MAX_POOL_2D",
    "GlobalAveragePooling2D": "MEAN", "GlobalAveragePooling1D": "MEAN", "GlobalMaxPooling2D": "REDUCE_MAX",
    "Flatten": "RESHAPE", "Reshape": "RESHAPE", "Softmax": "SOFTMAX", "ZeroPadding2D": "PAD",
    "BatchNormalization": "BATCH_NORMALIZATION", "InputLayer": "INPUT",
}
_KERAS_ACTIVATIONS = {"relu": "RELU", "relu6": "RELU6", "softmax": "SOFTMAX", "sigmoid": "LOGISTIC",
                      "tanh": "TANH", "hard_swish": "HARD_SWISH", "linear": ""}


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def _keras_op_type(layer) -> str:
    cls = type(layer).__name__
    if cls == "ReLU":
        return "RELU6" if getattr(layer, "max_value", None) == 6 else "RELU"
    if cls == "Activation":
        act = getattr(layer.activation, "__name__", "")
        return _KERAS_ACTIVATIONS.get(act, _upper_snake(act)) or "IDENTITY"
    return _KERAS_TYPES.get(cls, _upper_snake(cls))


def _shape(keras_tensor) -> list[int]:
    return [1 if d is None else int(d) for d in keras_tensor.shape]


def _keras_macs(layer, op_type: str, in_shape: list[int], out_shape: list[int]) -> int:
    kernel = getattr(layer, "kernel", None)
    if op_type == "SEPARABLE_CONV_2D":  # depthwise then pointwise
        dk, pk = layer.depthwise_kernel.shape, layer.pointwise_kernel.shape
        spatial = _prod(dk[:-2])
        dw_out = _prod(out_shape[:-1]) * in_shape[-1] * dk[-1]
        return dw_out * spatial + _prod(out_shape[:-1]) * pk[-2] * pk[-1]
    if op_type == "DEPTHWISE_CONV_2D":
        return conv_macs(out_shape, _prod(layer.kernel.shape[:-2]))
    if kernel is None:
        return 0
    k = list(kernel.shape)
    if op_type in ("CONV_2D", "CONV_3D"):  # kernel [*spatial, in_c / groups, out_c]
        return conv_macs(out_shape, _prod(k[:-1]))
    if op_type in ("TRANSPOSE_CONV", "CONV_3D_TRANSPOSE"):  # kernel [*spatial, out_c, in_c]
        return _prod(in_shape) * _prod(k[:-1])
    if op_type == "FULLY_CONNECTED" and type(layer).__name__ == "Dense":
        return conv_macs(out_shape, k[0])
    if op_type == "FULLY_CONNECTED":  # EinsumDense: output elements x kernel dims summed over
        operands, result = layer.equation.replace(" ", "").split("->")
        kernel_axes = operands.split(",")[1]
        return conv_macs(out_shape, _prod(d for a, d in zip(kernel_axes, k) if a not in result))
    return 0


def _keras_nodes(model):
    functional = getattr(model, "_functional", None) or model
    by_depth = getattr(functional, "_nodes_by_depth", None)
    if by_depth is None:
        raise UserError(f"Keras model '{model.name}' has no graph yet; build it with keras.Input(...) "
                        "or call it on data once before profiling")
    return functional, [n for d in sorted(by_depth, reverse=True) for n in by_depth[d]]


def static_keras(model, input_shape=None):
    """(``model`` with every open input axis fixed, notes saying how). Open axes take
    ``input_shape`` (one sample's shape, a list per input or a dict by name: the data's or
    ``--input-shape``), else 1, said in the notes; a model without open axes is returned as it is."""
    import keras

    from edgeopt.convert import _input_name
    from edgeopt.keras_graph import flatten

    try:
        inputs = list(model.inputs)
    except AttributeError:  # an unbuilt Sequential: no inputs to fix
        raise UserError(f"Keras model '{model.name}' has no graph yet; build it with keras.Input(...) "
                        "or call it on data once before profiling") from None
    open_inputs = [t for t in inputs if any(d is None for d in t.shape[1:])]
    if not open_inputs:
        return model, []
    if isinstance(input_shape, dict):
        given = [input_shape.get(_input_name(t)) for t in model.inputs]
    elif input_shape is not None and len(input_shape) and isinstance(input_shape[0], (list, tuple)):
        given = list(input_shape)
    else:
        given = [input_shape] + [None] * (len(model.inputs) - 1)
    notes, fixed = [], []
    for t, want in zip(model.inputs, given):
        declared = tuple(t.shape[1:])
        if want is None or len(want) != len(declared):
            want = tuple(1 if d is None else d for d in declared)
            if None in declared:
                notes.append(f"input {_input_name(t)!r} {list(declared)} has open axes: profiled at {list(want)} "
                             f"(give --data or --input-shape for the real length)")
        elif None in declared:
            notes.append(f"input {_input_name(t)!r} profiled at {list(want)} (open axes from the data/--input-shape)")
        fixed.append(keras.Input(shape=tuple(int(d) for d in want), dtype=t.dtype, name=_input_name(t)))
    outer = keras.Model(fixed if len(fixed) > 1 else fixed[0],
                        model(fixed if len(fixed) > 1 else fixed[0]), name=model.name)
    return flatten(outer), notes


def profile_keras(model, path: str = "", input_shape=None) -> GraphProfile:
    """Per-layer profile of a Keras 3 model (unfused: BatchNormalization and activations are layers).
    Open input axes are fixed from ``input_shape`` or, failing that, profiled at 1 with a note."""
    model, shape_notes = static_keras(model, input_shape)
    profile = _profile_keras(model, path)
    profile.notes = shape_notes + list(profile.notes)
    return profile


def _profile_keras(model, path: str = "") -> GraphProfile:
    functional, knodes = _keras_nodes(model)
    tensors: list[Tensor] = []
    index: dict[int, int] = {}

    def tid(kt) -> int:
        if id(kt) not in index:
            index[id(kt)] = len(tensors)
            dtype = str(getattr(kt.dtype, "name", kt.dtype))
            tensors.append(Tensor(getattr(kt, "name", ""), _shape(kt), dtype,
                                   tensor_bytes(_shape(kt), dtype), False))
        return index[id(kt)]

    nodes = []
    for kn in knodes:
        layer = kn.operation
        if type(layer).__name__ == "InputLayer":
            continue
        ins = [tid(t) for t in kn.input_tensors]
        outs = [tid(t) for t in kn.outputs]
        for w in layer.weights:  # every weight variable is a constant input of the layer
            dtype = str(getattr(w.dtype, "name", w.dtype))
            shape = [int(d) for d in w.shape]
            ins.append(len(tensors))
            tensors.append(Tensor(w.path if hasattr(w, "path") else w.name, shape, dtype,
                                   tensor_bytes(shape, dtype), True))
        op_type = _keras_op_type(layer)
        in_shape = tensors[ins[0]].shape if kn.input_tensors else []
        out_shape = tensors[outs[0]].shape if outs else []
        if hasattr(layer, "_nodes_by_depth") or hasattr(layer, "_functional"):  # a nested model
            op_type, macs = "MODEL", profile_keras(layer).total_macs
        else:
            macs = _keras_macs(layer, op_type, in_shape, out_shape)
        nodes.append(Node(layer.name, op_type, ins, outs, macs))
    graph = Graph("keras", str(path), tensors, nodes, [tid(t) for t in functional.inputs],
                   [tid(t) for t in functional.outputs])
    profile = _build_profile(graph)
    for io, t in zip(profile.inputs + profile.outputs, list(functional.inputs) + list(functional.outputs)):
        history = getattr(t, "_keras_history", None)
        io["name"] = history.operation.name if history is not None else io["name"]  # layer names
    profile.arena_note = "arena is measured on .tflite files only"
    return profile


# --------------------------------------------------------------------------- ONNX
_ONNX_TYPES = {
    "Conv": "CONV_2D", "QLinearConv": "CONV_2D", "ConvInteger": "CONV_2D", "ConvTranspose": "TRANSPOSE_CONV",
    "Gemm": "FULLY_CONNECTED", "MatMul": "BATCH_MATMUL", "QLinearMatMul": "BATCH_MATMUL",
    "MatMulInteger": "BATCH_MATMUL", "Add": "ADD", "Sub": "SUB", "Mul": "MUL", "Div": "DIV",
    "AveragePool": "AVERAGE_POOL_2D", "MaxPool": "MAX_POOL_2D", "GlobalAveragePool": "MEAN",
    "ReduceMean": "MEAN", "Relu": "RELU", "Clip": "RELU6", "Sigmoid": "LOGISTIC", "Softmax": "SOFTMAX",
    "Reshape": "RESHAPE", "Flatten": "RESHAPE", "Concat": "CONCATENATION", "Transpose": "TRANSPOSE",
    "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE", "Pad": "PAD", "Squeeze": "SQUEEZE",
    "Unsqueeze": "EXPAND_DIMS", "Tanh": "TANH", "HardSwish": "HARD_SWISH", "Cast": "CAST",
}
_WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1, "Gemm": 1,
                 "MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3}


def _onnx_macs(node, ins: list[Tensor | None], out: list[int], attrs: dict) -> int:
    w_idx = _WEIGHT_INPUT.get(node.op_type)
    if w_idx is None or len(ins) <= w_idx or ins[w_idx] is None or ins[0] is None:
        return 0
    w, x = ins[w_idx].shape, ins[0].shape
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):  # W [out_c, in_c / group, *kernel]
        return conv_macs(out, _prod(w[1:]))
    if node.op_type == "ConvTranspose":  # W [in_c, out_c / group, *kernel]
        return _prod(x) * _prod(w[1:])
    if node.op_type == "Gemm":
        return conv_macs(out, x[0] if attrs.get("transA") else x[-1])
    return conv_macs(out, x[-1]) if len(x) >= 1 else 0  # MatMul family: contract A's last dim


def _onnx_dtype(elem_type: int) -> str:
    from onnx import helper

    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:  # types numpy cannot hold (int4, float8) carry their proto name
        from onnx import TensorProto
        return TensorProto.DataType.Name(elem_type).lower()


def _onnx_shape(type_proto) -> list[int]:
    dims = type_proto.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims]


def _load_onnx(path: Path, input_shape=None, notes: list[str] | None = None):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise UserError(f"{path.name} is not a valid ONNX model ({type(e).__name__}); "
                        "pass a file written by an ONNX exporter") from None
    if not model.graph.node:
        raise UserError(f"{path.name} holds no ONNX graph nodes; pass a file written by an ONNX exporter")
    if notes is not None:
        _fix_onnx_dims(model, input_shape, notes)
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # shapes stay as declared; a few intermediate shapes may be unknown
        return model


def _fix_onnx_dims(model, input_shape, notes: list[str]) -> None:
    """Fix the open axes of the graph inputs in place: batch 1, the others from ``input_shape``
    (one sample's shape, a list per input or a dict by name: the data's or ``--input-shape``),
    else 1 with a note saying so (a profile at 1x1 would otherwise pass without a word)."""
    init = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if isinstance(input_shape, dict):
        given = [input_shape.get(i.name) for i in inputs]
    elif input_shape is not None and len(input_shape) and isinstance(input_shape[0], (list, tuple)):
        given = list(input_shape) + [None] * len(inputs)
    else:
        given = [input_shape] + [None] * len(inputs)
    for inp, want in zip(inputs, given):
        dims = inp.type.tensor_type.shape.dim
        assumed, opened = [], False
        for k, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            opened = opened or k > 0
            size = 1 if k == 0 or want is None or len(want) != len(dims) - 1 else int(want[k - 1])
            if k > 0 and (want is None or len(want) != len(dims) - 1):
                assumed.append(k)
            d.Clear()
            d.dim_value = size
        if assumed:
            notes.append(f"input {inp.name!r} has open axes {assumed}: profiled at size 1 there "
                         f"(give --data or --input-shape for the real size)")
        elif want is not None and opened:  # a fixed-shape input needs no note
            notes.append(f"input {inp.name!r} profiled at {list(want)} (open axes from the data/--input-shape)")


def profile_onnx(path, input_shape=None) -> GraphProfile:
    """Profile an .onnx file; open input axes are fixed from ``input_shape`` (see ``_fix_onnx_dims``)."""
    from onnx import helper, numpy_helper

    path = _existing(path)
    notes: list[str] = []
    model = _load_onnx(path, input_shape, notes)
    g = model.graph
    tensors: list[Tensor] = []
    index: dict[str, int] = {}
    known = {v.name for v in list(g.value_info) + list(g.output) + list(g.input)}
    known |= {i.name for i in g.initializer}
    unknown = [o for n in g.node if n.op_type != "Constant" for o in n.output if o and o not in known]
    runtime_shapes = _onnx_runtime_shapes(model, unknown, notes) if unknown else {}

    def add(name: str, shape: list[int], dtype: str, const: bool) -> int:
        index[name] = len(tensors)
        tensors.append(Tensor(name, shape, dtype, tensor_bytes(shape, dtype), const))
        return index[name]

    const_names = _onnx_constant_names(g)
    quantized = {n.input[0] for n in g.node if n.op_type == "DequantizeLinear"} | {
        n.input[3] for n in g.node if n.op_type in ("QLinearConv", "QLinearMatMul")} | {
        n.input[1] for n in g.node if n.op_type in ("ConvInteger", "MatMulInteger")}
    for init in g.initializer:
        t = tensors[add(init.name, list(init.dims), _onnx_dtype(init.data_type), True)]
        if init.name in quantized:
            t.quant = "per-channel" if _scale_count(g, init.name, numpy_helper) > 1 else "per-tensor"
    for n in g.node:
        if n.op_type == "Constant":
            value = next((a.t for a in n.attribute if a.name == "value"), None)
            if value is not None:
                add(n.output[0], list(value.dims), _onnx_dtype(value.data_type), True)
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.name not in index:
            add(vi.name, _onnx_shape(vi.type), _onnx_dtype(vi.type.tensor_type.elem_type), False)
    nodes = []
    for k, n in enumerate(g.node):
        if n.op_type == "Constant":
            continue
        for o in n.output:
            if o and o not in index:
                shape, dtype = runtime_shapes.get(o, ([], "float32"))
                add(o, shape, dtype, False)
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        ins = [index[i] if i in index else -1 for i in n.input]
        outs = [index[o] for o in n.output if o]
        op_type = _onnx_op_type(n, attrs, [tensors[i] if i >= 0 else None for i in ins], const_names)
        macs = _onnx_macs(n, [tensors[i] if i >= 0 else None for i in ins],
                          tensors[outs[0]].shape if outs else [], attrs)
        nodes.append(Node(n.name or f"{n.op_type}_{k}", op_type, ins, outs, macs))
    inputs = [index[i.name] for i in g.input if not tensors[index[i.name]].is_const]
    graph = Graph("onnx", str(path), tensors, nodes, inputs, [index[o.name] for o in g.output],
                   path.stat().st_size, notes)
    profile = _build_profile(graph)
    profile.arena_note = "arena is measured on .tflite files only"
    return profile


def _scale_count(g, weight_name: str, numpy_helper) -> int:
    """Number of scales of a quantized weight (DequantizeLinear / QLinear* scale input)."""
    inits = {i.name: i for i in g.initializer}
    scale_of = {"DequantizeLinear": (0, 1), "QLinearConv": (3, 4), "QLinearMatMul": (3, 4),
                "ConvInteger": (1, 3), "MatMulInteger": (1, 3)}  # (weight, scale or zero point)
    for n in g.node:
        w, sc = scale_of.get(n.op_type, (None, None))
        if w is not None and len(n.input) > sc and n.input[w] == weight_name and n.input[sc] in inits:
            return int(numpy_helper.to_array(inits[n.input[sc]]).size)
    return 1


def _onnx_runtime_shapes(model, names: list[str], notes: list[str]) -> dict[str, tuple[list[int], str]]:
    """Shapes ONNX shape inference could not give (custom/contrib ops): run ONNX Runtime once on
    zeros with those tensors exposed as outputs."""
    import numpy as np
    from onnx import helper

    probe = type(model)()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        initializers = {i.name for i in model.graph.initializer}
        feeds = {i.name: np.zeros(_onnx_shape(i.type), helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
                 for i in model.graph.input if i.name not in initializers}
        values = sess.run(names, feeds)
    except Exception as e:  # shapes stay unknown: MACs of those ops read as 0
        notes.append(f"{len(names)} tensor shapes unknown ({type(e).__name__}); their ops count no MACs")
        return {}
    return {n: ([int(d) for d in v.shape], str(v.dtype)) for n, v in zip(names, values)}


def _onnx_constant_names(g) -> set[str]:
    """Initializers, Constant outputs, and what DequantizeLinear/Transpose/... make of them alone."""
    names = {i.name for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" or (n.op_type in ("DequantizeLinear", "Transpose", "Reshape", "Cast")
                                       and all(i in names for i in n.input if i)):
            names.update(n.output)
    return names


def _onnx_op_type(node, attrs: dict, ins: list[Tensor | None], const_names: set[str]) -> str:
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
        group = int(attrs.get("group", 1))
        x = ins[0].shape if ins and ins[0] is not None else []
        if group > 1 and len(x) >= 2 and group == x[1]:
            return "DEPTHWISE_CONV_2D"
        return "CONV_3D" if len(x) == 5 else "CONV_2D"
    if node.op_type in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        w_idx = _WEIGHT_INPUT[node.op_type]
        if len(node.input) > w_idx and node.input[w_idx] in const_names:
            return "FULLY_CONNECTED"
    if node.op_type.startswith("QLinear") and node.op_type[7:] in _ONNX_TYPES:  # QLinearAdd -> ADD
        return _ONNX_TYPES[node.op_type[7:]]
    return _ONNX_TYPES.get(node.op_type, _upper_snake(node.op_type))


# --------------------------------------------------------------------------- dispatch + table
def profile_path(path, keras_loader=None, measure_arena: bool = True) -> GraphProfile:
    """Profile a model file by suffix: .tflite, .onnx, or Keras (.keras/.h5/SavedModel via keras_loader)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return profile_tflite(path, measure_arena=measure_arena)
    if suffix == ".onnx":
        return profile_onnx(path)
    if suffix in (".keras", ".h5", ".hdf5") or path.is_dir():
        if not path.exists():
            raise UserError(f"model file not found: {path}")
        if keras_loader is None:
            from edgeopt.model_io import load_keras as keras_loader
        return profile_keras(keras_loader(path), path=str(path))
    raise UserError(f"cannot profile '{path.name}': expected a .tflite, .onnx, .keras or .h5 file")
