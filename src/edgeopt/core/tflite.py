"""edgeopt's one .tflite reader: the flatbuffer parsed into a small graph form, no runtime.

It reads the file with the generated schema module shipped by ai_edge_litert (or tflite_micro),
never TensorFlow or an interpreter. Everything that needs a .tflite's tensors or ops (profiles,
the TFLM memory planner, quantization steps, per-tensor errors, compare) reads them here.
`Graph` (tensors + nodes in execution order, MACs per node) is also the intermediate form the
profiler (``edgeopt.measure.graph``) builds from Keras and ONNX models.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from edgeopt.core.arrays import canonical_name
from edgeopt.errors import UserError

_BITS = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16, "int64": 64, "uint64": 64,
         "int32": 32, "uint32": 32, "int16": 16, "uint16": 16, "int8": 8, "uint8": 8, "bool": 8,
         "int4": 4, "uint4": 4, "int2": 2, "float8_e4m3fn": 8, "float8_e5m2": 8, "complex64": 64,
         "complex128": 128}


@dataclass
class Tensor:
    """A tensor of the graph IR; ``nbytes`` is the stored size for constants, dense size otherwise."""

    name: str
    shape: list[int]
    dtype: str
    nbytes: int
    is_const: bool
    quant: str = ""  # "" | "per-tensor" | "per-channel" | "blockwise"
    quant_text: str = ""  # human-readable parameters for TensorStats
    is_variable: bool = False
    scales: list[float] = field(default_factory=list)  # quantization scales (.tflite)
    zero_points: list[int] = field(default_factory=list)


@dataclass
class Node:
    """An op of the graph IR, in execution order; inputs/outputs are tensor indices (-1: none)."""

    name: str
    op_type: str
    inputs: list[int]
    outputs: list[int]
    macs: int = 0


@dataclass
class Graph:
    """Tensors and nodes of a model's main graph in execution order (see the module docstring)."""

    source: str
    path: str
    tensors: list[Tensor]
    nodes: list[Node]
    inputs: list[int]
    outputs: list[int]
    file_bytes: int | None = None
    notes: list[str] = field(default_factory=list)
    dynamic: bool = False  # some tensor has an unknown (-1) dimension: stored shapes are placeholders


def tensor_bytes(shape, dtype: str) -> int:
    """Bytes of a dense tensor; sub-byte types (int4, int2) are packed."""
    elems = element_count(shape)
    return (elems * _BITS.get(dtype, 32) + 7) // 8


def element_count(shape) -> int:
    """Elements of a tensor of this shape (unknown or 0 dimensions count as 1)."""
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n


# --------------------------------------------------------------------------- MAC rules
def conv_macs(out_shape, kernel_elems_per_output: int) -> int:
    """CONV/DEPTHWISE/FC all reduce to: output elements x multiplies per output element."""
    return element_count(out_shape) * kernel_elems_per_output


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as fb
    except ImportError:  # pragma: no cover - depends on the install
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    return fb


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _tflite_quant(t, fb) -> tuple[str, str]:
    q = t.Quantization()
    if q is None:
        return "", ""
    if q.DetailsType() == fb.QuantizationDetails.BlockwiseQuantization:
        return "blockwise", "blockwise"
    n = q.ScaleLength()
    if n == 0:
        return "", ""
    if n > 1:
        return "per-channel", f"per-channel ({n} scales, axis {q.QuantizedDimension()})"
    return "per-tensor", f"scale={q.Scale(0):.6g} zp={q.ZeroPoint(0) if q.ZeroPointLength() else 0}"


def _tflite_tensor(sg, m, k: int, fb, type_names, data: bytes) -> Tensor:
    t = sg.Tensors(k)
    shape = [int(t.Shape(j)) for j in range(t.ShapeLength())]
    dtype = type_names.get(t.Type(), f"type{t.Type()}").lower()
    buf = m.Buffers(t.Buffer()) if 0 < t.Buffer() < m.BuffersLength() else None
    stored = 0
    if buf is not None:
        data_view = buf.DataAsNumpy()  # a view; raises when the data runs past the end of a cut file
        stored = int(getattr(data_view, "size", 0))
        if not stored and buf.Offset() > 1:  # data stored after the flatbuffer (models > 2 GB)
            if buf.Offset() + buf.Size() > len(data):
                raise ValueError("buffer lies beyond the end of the file")
            stored = buf.Size()
    is_const = stored > 0 and not t.IsVariable()
    nbytes = stored if is_const else tensor_bytes(shape, dtype)  # stored size: packed/sparse as is
    quant, text = _tflite_quant(t, fb)
    if t.Sparsity() is not None:
        text = (text + " sparse").strip()
    q = t.Quantization()
    scales = [float(v) for v in q.ScaleAsNumpy()] if q is not None and q.ScaleLength() else []
    zps = [int(v) for v in q.ZeroPointAsNumpy()] if q is not None and q.ZeroPointLength() else []
    return Tensor((t.Name() or b"").decode(errors="replace"), shape, dtype, nbytes, is_const,
                  quant, text, bool(t.IsVariable()), scales, zps)


def _tflite_macs(op_type: str, ins: list[Tensor], outs: list[Tensor], options) -> int:
    if not outs:
        return 0
    out = outs[0].shape
    w = ins[1].shape if len(ins) > 1 and ins[1] is not None else []
    if op_type == "CONV_2D" and len(w) == 4:  # filter [out_c, kh, kw, in_c / groups]
        return conv_macs(out, w[1] * w[2] * w[3])
    if op_type == "DEPTHWISE_CONV_2D" and len(w) == 4:  # filter [1, kh, kw, out_c]
        return conv_macs(out, w[1] * w[2])
    if op_type == "FULLY_CONNECTED" and len(w) == 2:  # weights [units, in]
        return conv_macs(out, w[1])
    if op_type == "CONV_3D" and len(w) == 5:  # filter [kd, kh, kw, in_c, out_c]
        return conv_macs(out, w[0] * w[1] * w[2] * w[3])
    if op_type == "TRANSPOSE_CONV" and len(ins) > 2 and ins[1] is not None and ins[2] is not None:
        w, x = ins[1].shape, ins[2].shape  # inputs: output_shape, filter [out_c, kh, kw, in_c], input
        return element_count(x) * w[0] * w[1] * w[2] if len(w) == 4 else 0
    if op_type == "BATCH_MATMUL" and ins and ins[0] is not None and len(ins[0].shape) >= 2:
        adj_x = bool(options.AdjX()) if options is not None else False
        return conv_macs(out, ins[0].shape[-2] if adj_x else ins[0].shape[-1])
    return 0


_CONTROL_FLOW = {"WHILE": ("WhileOptions", ("CondSubgraphIndex", "BodySubgraphIndex")),
                 "IF": ("IfOptions", ("ThenSubgraphIndex", "ElseSubgraphIndex")),
                 "CALL_ONCE": ("CallOnceOptions", ("InitSubgraphIndex",))}


def _called_subgraphs(op, fb, op_type: str) -> list[int]:
    """Subgraphs a control-flow op runs (their ops are not in the main subgraph's counts)."""
    if op_type not in _CONTROL_FLOW or op.BuiltinOptions() is None:
        return []
    cls, fields = _CONTROL_FLOW[op_type]
    opts = getattr(fb, cls)()
    opts.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
    return [int(getattr(opts, f)()) for f in fields]


def _tflite_options(op, fb, op_type: str):
    if op_type != "BATCH_MATMUL" or op.BuiltinOptions() is None:
        return None
    opts = fb.BatchMatMulOptions()
    opts.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
    return opts


def read_tflite(source: str | Path | bytes, shapes: dict[int, list[int]] | None = None) -> Graph:
    """The main subgraph of a .tflite model (a path or the file's bytes) as a `Graph`.

    Tensor indices equal LiteRT's tensor indices, nodes are the ops in execution order (node k is
    op k). Shapes are the stored ones; ``Graph.dynamic`` says when they are placeholders (a
    dynamic batch). ``shapes`` (tensor index -> shape, e.g. what a runtime computed at batch 1)
    replace the stored shapes of non-constant tensors before MACs are counted. Raises UserError
    for a file that is missing, not a .tflite, or damaged.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, path = bytes(source), Path("model.tflite")
    else:
        path = existing_file(source)
        data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"{path.name} is not a .tflite model (no TFL3 flatbuffer identifier); "
                        "pass a file written by the TFLite/LiteRT converter")
    try:
        return _parse_tflite(path, data, _schema(), shapes or {})
    except UserError:
        raise
    except Exception as e:  # a damaged flatbuffer fails anywhere in the generated accessors
        raise UserError(f"{path.name} is a damaged .tflite flatbuffer ({type(e).__name__}: "
                        f"{str(e)[:80]}); re-export the model") from None


def tflite_io_names(data: bytes) -> tuple[list[str], list[str], list[int]]:
    """Names of a .tflite's inputs and outputs (subgraph 0 order) and the source-model order of its
    outputs (a permutation of output positions).

    Names come from the signature (``image``, ``output_0``) when the file has one, else from the
    tensor names without converter decoration. The converter may store inputs and outputs in
    another order than the Keras model (it sorts signature keys): outputs named ``output_N`` are
    put back in N order; inputs are matched by name, so their order does not matter.
    """
    fb = _schema()
    m = fb.Model.GetRootAs(data, 0)
    sg = m.Subgraphs(0)
    ins = [int(sg.Inputs(j)) for j in range(sg.InputsLength())]
    outs = [int(sg.Outputs(j)) for j in range(sg.OutputsLength())]
    names = {t: canonical_name((sg.Tensors(t).Name() or b"").decode(errors="replace")) for t in ins + outs}
    for k in range(m.SignatureDefsLength()):
        sd = m.SignatureDefs(k)
        if sd.SubgraphIndex() != 0:
            continue
        for j in range(sd.InputsLength()):
            names[int(sd.Inputs(j).TensorIndex())] = sd.Inputs(j).Name().decode(errors="replace")
        for j in range(sd.OutputsLength()):
            names[int(sd.Outputs(j).TensorIndex())] = sd.Outputs(j).Name().decode(errors="replace")
    out_names = [names[t] for t in outs]
    numbered = [re.fullmatch(r"output_(\d+)", n) for n in out_names]
    order = sorted(range(len(outs)), key=lambda k: int(numbered[k].group(1))) if all(numbered) else \
        list(range(len(outs)))
    return [names[t] for t in ins], out_names, order


def tflite_input_signatures(data: bytes) -> list[list[int]]:
    """Each input's ``shape_signature`` (subgraph 0 order; -1 = an open axis), or its stored
    shape where the file has no signature (a fully static tensor)."""
    sg = _schema().Model.GetRootAs(data, 0).Subgraphs(0)
    out = []
    for j in range(sg.InputsLength()):
        t = sg.Tensors(int(sg.Inputs(j)))
        sig = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else t.ShapeAsNumpy()
        out.append([int(v) for v in sig] if t.ShapeSignatureLength() or t.ShapeLength() else [])
    return out


def tflite_op_details(source: str | Path | bytes) -> list[dict]:
    """The ops of a .tflite in execution order as ``{"index", "op_name", "inputs", "outputs"}``
    (tensor indices as LiteRT numbers them), read from the flatbuffer."""
    graph = read_tflite(source)
    return [{"index": k, "op_name": n.op_type, "inputs": list(n.inputs), "outputs": list(n.outputs)}
            for k, n in enumerate(graph.nodes)]


def _parse_tflite(path: Path, data: bytes, fb, shapes: dict[int, list[int]]) -> Graph:
    m = fb.Model.GetRootAs(data, 0)
    if m.SubgraphsLength() < 1:
        raise UserError(f"{path.name} has no subgraph; re-export the model")
    op_names, type_names = _enum_names(fb.BuiltinOperator), _enum_names(fb.TensorType)
    sg = m.Subgraphs(0)  # subgraph 0 is the model's entry point by TFLite convention
    if max(sg.TensorsLength(), sg.OperatorsLength(), m.BuffersLength()) * 4 > len(data):
        raise ValueError("table sizes exceed the file size")
    tensors = [_tflite_tensor(sg, m, k, fb, type_names, data) for k in range(sg.TensorsLength())]
    dynamic = any(sg.Tensors(k).ShapeSignatureLength() and min(sg.Tensors(k).ShapeSignatureAsNumpy()) < 0
                  for k in range(sg.TensorsLength()))
    for k, shape in shapes.items():
        if k < len(tensors) and not tensors[k].is_const:
            tensors[k].shape = [int(v) for v in shape]
            tensors[k].nbytes = tensor_bytes(tensors[k].shape, tensors[k].dtype)
    nodes = []
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        code = m.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        op_type = op_names.get(builtin, f"OP{builtin}")
        if op_type == "CUSTOM":
            op_type = "CUSTOM:" + (code.CustomCode() or b"?").decode(errors="replace")
        ins = [int(op.Inputs(j)) for j in range(op.InputsLength())]
        outs = [int(op.Outputs(j)) for j in range(op.OutputsLength())]
        if any(i >= len(tensors) for i in ins + outs):
            raise ValueError("operator refers to a missing tensor")
        name = tensors[outs[0]].name if outs else f"{op_type.lower()}_{k}"
        called = _called_subgraphs(op, fb, op_type)
        if called:
            name += " [runs subgraph " + ", ".join(
                f"{i} '{(m.Subgraphs(i).Name() or b'').decode(errors='replace')}' "
                f"({m.Subgraphs(i).OperatorsLength()} ops)" for i in called if i < m.SubgraphsLength()) + "]"
        macs = _tflite_macs(op_type, [tensors[i] if i >= 0 else None for i in ins],
                            [tensors[o] for o in outs], _tflite_options(op, fb, op_type))
        nodes.append(Node(name, op_type, ins, outs, macs))
    graph = Graph("tflite", str(path), tensors, nodes,
                   [int(sg.Inputs(j)) for j in range(sg.InputsLength())],
                   [int(sg.Outputs(j)) for j in range(sg.OutputsLength())], len(data), dynamic=dynamic)
    if m.SubgraphsLength() > 1:
        graph.notes.append(f"profiled the main subgraph; {m.SubgraphsLength() - 1} more subgraph(s) "
                           "(control flow or signatures) not counted")
    return graph


def existing_file(path) -> Path:
    """``path`` as a Path; UserError when it is not an existing file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    return path
