"""The one TensorFlow Lite Micro op table, used by export (the sketch's op resolver) and the device fit check.

`tflm_ops.yaml` maps each op the pinned `tflite-micro` package registers to its
`MicroMutableOpResolver` method. It is generated (``python -m edgeopt.export.tflm_ops HEADER RESOLVER_CC``)
from tflite-micro's `micro_mutable_op_resolver.h` (method -> op) and `python_ops_resolver.cc` (the
methods the Python interpreter, i.e. edgeopt's TFLM runtime, calls). `registered_op_types()` asks the
installed package itself, so a test catches a table that drifted from the pinned build.

Op types use the profiler's names: TFLite builtin names (``CONV_2D``) and ``CUSTOM:<name>`` for custom ops.
"""
from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).with_name("tflm_ops.yaml")
_PROBE_SENTINEL = "STABLEHLO_WHILE"  # a builtin TFLM will not register; its lookup error proves the probe op's passed


@lru_cache(maxsize=None)
def _table() -> dict:
    import yaml

    return yaml.safe_load(TABLE.read_text())


def tflm_resolver_methods() -> dict[str, str]:
    """Op type (``CONV_2D`` or ``CUSTOM:SignalWindow``) -> MicroMutableOpResolver method (``AddConv2D``)."""
    t = _table()
    return {**t["builtin"], **{f"CUSTOM:{name}": m for name, m in t["custom"].items()}}


def tflm_package() -> str:
    """The tflite-micro build the table describes, e.g. ``tflite-micro==0.dev20261023182759``."""
    return _table()["package"]


def tflm_builtin_ops() -> frozenset[str]:
    """TFLite builtin op names with a TFLite Micro kernel in the pinned tflite-micro build."""
    return frozenset(_table()["builtin"])


def tflm_op_types() -> frozenset[str]:
    """Every op type TFLite Micro runs (builtin names and ``CUSTOM:<name>``): the fit check's op list."""
    return frozenset(tflm_resolver_methods())


def resolver_calls(op_types) -> tuple[list[str], list[str]]:
    """(resolver methods for the ops TFLM has, in the given order; op types it has no kernel for)."""
    methods = tflm_resolver_methods()
    known = list(dict.fromkeys(methods[o] for o in op_types if o in methods))
    return known, [o for o in dict.fromkeys(op_types) if o not in methods]


# --------------------------------------------------------------------------- what the package registers
def _probe_model(op: str) -> bytes:
    """A two-node .tflite: OP, then the unregistered sentinel builtin. TFLM resolves every node's kernel
    before running any kernel's Init/Prepare, so the first lookup error names the first missing op and no
    kernel ever touches the (empty) tensors."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    def opcode(name: str):
        c = fb.OperatorCodeT()
        c.version = 1
        if name.startswith("CUSTOM:"):
            c.builtinCode = c.deprecatedBuiltinCode = fb.BuiltinOperator.CUSTOM
            c.customCode = name.split(":", 1)[1]
        else:
            c.builtinCode = getattr(fb.BuiltinOperator, name)
            c.deprecatedBuiltinCode = min(c.builtinCode, 127)  # 127: PLACEHOLDER_FOR_GREATER_OP_CODES
        return c

    sg = fb.SubGraphT()
    sg.tensors = []
    for i in range(3):
        t = fb.TensorT()
        t.shape, t.type, t.buffer, t.name = [1], fb.TensorType.FLOAT32, 0, f"t{i}"
        sg.tensors.append(t)
    sg.inputs, sg.outputs, sg.operators = [0], [2], []
    for k in range(2):
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = k, [k], [k + 1]
        if k == 0 and op == "VAR_HANDLE":  # the Python interpreter reads its shared_name before loading
            o.builtinOptionsType = fb.BuiltinOptions.VarHandleOptions
            o.builtinOptions = fb.VarHandleOptionsT()
            o.builtinOptions.sharedName = "probe"
        sg.operators.append(o)
    m = fb.ModelT()
    m.version, m.subgraphs, m.buffers = 3, [sg], [fb.BufferT()]
    m.operatorCodes = [opcode(op), opcode(_PROBE_SENTINEL)]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _lookup_error(model: bytes) -> str:
    """TFLM's log (C stderr) from loading a model with the Python interpreter."""
    import os
    import tempfile

    from tflite_micro import runtime

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            runtime.Interpreter.from_bytes(model, arena_size=1 << 16)
        except RuntimeError:
            pass
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        return f.read().decode(errors="replace")


def is_registered(op_type: str) -> bool:
    """Whether the installed tflite-micro Python interpreter has a kernel for OP_TYPE (asks the package).

    Raises RuntimeError when the probe's outcome is not a lookup error (an unexpected build)."""
    log = _lookup_error(_probe_model(op_type))
    if f"from op code {_PROBE_SENTINEL}" in log:
        return True
    if "Failed to get registration from op code" in log:
        return False
    raise RuntimeError(f"TFLM op probe for {op_type} gave no lookup error: {log.strip()[:200]!r}")


def registered_op_types(custom_names=()) -> frozenset[str]:
    """Every TFLite builtin the installed tflite-micro registers, plus those of CUSTOM_NAMES (``CUSTOM:x``)
    it registers: probed one op at a time, in this process (takes well under a second)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    builtins = [k for k, v in vars(fb.BuiltinOperator).items()
                if not k.startswith("_") and isinstance(v, int) and k not in ("CUSTOM", _PROBE_SENTINEL)
                and not k.startswith("PLACEHOLDER")]
    candidates = builtins + [f"CUSTOM:{n}" for n in custom_names]
    return frozenset(op for op in candidates if is_registered(op))


# --------------------------------------------------------------------------- regenerating the table
def parse_resolver_sources(header: str, resolver_cc: str) -> tuple[dict[str, str], dict[str, str]]:
    """(builtin op -> method, custom name -> method) for the Add* methods RESOLVER_CC calls, read from
    the text of micro_mutable_op_resolver.h (HEADER) and python_ops_resolver.cc (RESOLVER_CC)."""
    called = set(re.findall(r"\b(Add\w+)\(\);", resolver_cc))
    builtin, custom = {}, {}
    parts = re.split(r"TfLiteStatus (Add\w+)\(", header)
    for method, body in zip(parts[1::2], parts[2::2]):
        if method not in called:
            continue
        if m := re.search(r"AddBuiltin\(\s*BuiltinOperator_(\w+)", body):
            builtin[m.group(1)] = method
        elif m := re.search(r'AddCustom\(\s*"([^"]+)"', body):
            custom[m.group(1)] = method
        # AddEthosU is skipped: in a host build Register_ETHOSU() is null and nothing is registered
    return dict(sorted(builtin.items())), dict(sorted(custom.items()))


def main(argv: list[str]) -> None:
    import yaml

    header, resolver_cc = (Path(a).read_text() for a in argv[:2])
    builtin, custom = parse_resolver_sources(header, resolver_cc)
    head = TABLE.read_text().split("\nbuiltin:")[0]  # keep the source block
    body = yaml.safe_dump({"builtin": builtin, "custom": custom}, sort_keys=False)
    TABLE.write_text(head + "\n" + body)


if __name__ == "__main__":
    main(sys.argv[1:])
