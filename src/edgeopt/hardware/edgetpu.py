"""Edge TPU readiness of a .tflite: would Google's edgetpu_compiler map the whole graph to the Edge TPU?

Rules (Coral, "TensorFlow models on the Edge TPU", model requirements): every tensor 8-bit quantized,
tensor sizes fixed at compile time (no dynamic axis), tensors of rank <= 3 or with only the 3 innermost
dimensions larger than 1, and every op in the supported-op list (hardware/ops.yaml, list ``edgetpu``).
The compiler makes one Edge TPU partition: from the first op that breaks a rule, that op and every op
after it run on the host CPU, even supported ones. The compiler itself (x86-64 Debian only) is not run here:
this is a rule check, not a compilation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeopt.errors import UserError

_EIGHT_BIT = ("int8", "uint8")


@dataclass
class PartitionBreak:
    """The first op that ends the Edge TPU partition."""
    index: int  # position in execution order (0-based)
    op_type: str
    name: str  # the op's output tensor
    reason: str


@dataclass
class EdgeTpuReadiness:
    """Rule check of one .tflite against the Edge TPU's model requirements."""
    ready: bool  # every op would run on the Edge TPU
    all_8bit: bool
    non_8bit_ops: list[str] = field(default_factory=list)  # "OP_TYPE name (dtype)"
    static_shapes: bool = True
    dynamic_tensors: list[str] = field(default_factory=list)  # tensors whose shape signature has -1
    unsupported_ops: list[str] = field(default_factory=list)  # op types outside the Edge TPU op list
    first_break: PartitionBreak | None = None
    tpu_ops: int = 0  # ops before the first break (the Edge TPU partition)
    total_ops: int = 0
    tpu_macs: int = 0
    total_macs: int = 0
    op_list_source: str = ""
    with_batch_1: dict | None = None  # the partition if only a dynamic batch axis were fixed to 1

    @property
    def tpu_mac_fraction(self) -> float:
        return self.tpu_macs / self.total_macs if self.total_macs else (1.0 if self.ready else 0.0)

    def to_dict(self) -> dict:
        return {**asdict(self), "tpu_mac_fraction": self.tpu_mac_fraction}


def _shape_signatures(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape signature (-1 marks a dynamic axis), from LiteRT's public tensor details."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return {d["name"]: [int(v) for v in d.get("shape_signature", d["shape"])] for d in details}


def _op_problem(op, out_dtype: str | None, signature: list[int] | None, allowed: set[str],
                ignore_batch: bool) -> str:
    if op.op_type not in allowed:
        return f"{op.op_type} is not in the Edge TPU's supported ops"
    if out_dtype is not None and out_dtype not in _EIGHT_BIT:
        return f"output is {out_dtype}; the Edge TPU needs 8-bit quantized tensors"
    dims = (signature or [])[1 if ignore_batch else 0:]
    if dims and min(dims) < 0:
        batch_only = not ignore_batch and all(d >= 0 for d in dims[1:])
        hint = "; convert with the batch fixed to 1" if batch_only else ""
        return f"dynamic shape {signature} (-1 = unknown at compile time){hint}"
    shape = list(op.output_shape)
    if len(shape) > 3 and sum(1 for d in shape[:-3] if d > 1) > 0:
        return f"output shape {shape}: only the 3 innermost dimensions may exceed 1"
    return ""


def _partition(prof, dtypes, signatures, allowed, ignore_batch: bool) -> tuple[PartitionBreak | None, int, int]:
    """(first break, ops before it, MACs before it) in execution order."""
    inputs = [n for n, s in signatures.items() if s and min(s[1 if ignore_batch else 0:] or [0]) < 0]
    macs = 0
    for i, op in enumerate(prof.ops):
        out = op.name.split(" [runs subgraph")[0]
        problem = _op_problem(op, dtypes.get(out), signatures.get(out), allowed, ignore_batch)
        if not problem and i == 0 and inputs:
            problem = f"dynamic input shape {signatures[inputs[0]]} ({inputs[0]})"
        if problem:
            return PartitionBreak(i, op.op_type, out, problem), i, macs
        macs += op.macs
    return None, len(prof.ops), macs


def edgetpu_readiness(tflite_path) -> EdgeTpuReadiness:
    """Check a .tflite against the Edge TPU rules; name the first op that would end the TPU partition and
    count the ops and MACs before it. ``with_batch_1`` gives the same for the model converted with a fixed
    batch of 1 (the usual fix for a dynamic batch axis). Raises UserError for a non-.tflite file."""
    from edgeopt.hardware.catalogue import data_file, op_list
    from edgeopt.measure.graph import profile_tflite

    path = Path(tflite_path)
    if path.suffix != ".tflite":
        raise UserError(f"Edge TPU readiness needs a .tflite model, got {path.name}")
    prof = profile_tflite(path, measure_arena=False)
    allowed = op_list("edgetpu") or set()
    dtypes = {t.name: t.dtype for t in prof.tensors}
    signatures = _shape_signatures(path)
    first, n_ops, macs = _partition(prof, dtypes, signatures, allowed, ignore_batch=False)
    report = EdgeTpuReadiness(ready=first is None, all_8bit=True, first_break=first, tpu_ops=n_ops,
                              total_ops=len(prof.ops), tpu_macs=macs, total_macs=prof.total_macs,
                              op_list_source=" ".join(data_file("ops.yaml")["op_lists"]["edgetpu"]["source"].split()))
    report.dynamic_tensors = [n for n, sig in signatures.items() if sig and min(sig) < 0]
    report.static_shapes = not report.dynamic_tensors
    for op in prof.ops:
        dtype = dtypes.get(op.name.split(" [runs subgraph")[0])
        if dtype is not None and dtype not in _EIGHT_BIT:
            report.all_8bit = False
            report.non_8bit_ops.append(f"{op.op_type} {op.name} ({dtype})")
        if op.op_type not in allowed and op.op_type not in report.unsupported_ops:
            report.unsupported_ops.append(op.op_type)
    if not report.static_shapes:
        b_first, b_ops, b_macs = _partition(prof, dtypes, signatures, allowed, ignore_batch=True)
        report.with_batch_1 = {"first_break": b_first, "tpu_ops": b_ops, "tpu_macs": b_macs}
    return report
