"""Post-training quantization, every mode a recipe step: dynamic, int8, float16, int16x8,
int4-weights and mixed (int8 with a few ops kept float to meet an accuracy budget).

Converter-based modes use TensorFlow's TFLite converter (its full-int8 PTQ uses global min/max
ranges, which MEASURED.md found lossless where ai-edge-quantizer's moving-average calibrator
lost 1.5 points). Percentile calibration, int4 weights and mixed precision use
ai-edge-quantizer with activation ranges measured by ``calibration.activation_ranges``.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from edgeopt.core.precision import Precision
from edgeopt.errors import UserError, one_line
from edgeopt.fsutil import atomic_write_bytes
from edgeopt.steps import StepContext, StepResult, register, register_alias, step_config
from edgeopt.techniques import configs
from edgeopt.techniques.calibration import activation_ranges, calibration_data
from edgeopt.techniques.quant_error import quant_error_table

ERROR_SAMPLES = 16  # inputs compared tensor by tensor for the quantization error table
COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL")
BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")


# ---------------------------------------------------------------- steps

class _PTQStep:
    kind = "convert"
    name = ""
    calibrated = False  # needs a representative dataset
    compact = False  # rewrite the artifact smaller (shared vectors, short names): tflite_ptq.compact_tflite

    def run(self, ctx: StepContext, model) -> StepResult:
        ctx = dataclasses.replace(ctx, config=step_config(ctx, self.config))
        float_model = convert(ctx, model)
        x = calibration_data(ctx, model) if self.calibrated else None
        quant, details = self.quantize(ctx, model, float_model, x)
        shipped = bytes(quant)
        if self.compact:
            from edgeopt.techniques.tflite_ptq import compact_tflite

            shipped = compact_tflite(shipped)
            details["compacted"] = {"bytes_before": len(quant), "bytes_after": len(shipped)}
        path = atomic_write_bytes(Path(ctx.work_dir) / "model.tflite", shipped)
        probe = x if x is not None else calibration_data(ctx, model, ERROR_SAMPLES)
        if hasattr(probe, "names"):  # several inputs: per-tensor errors are measured on one input only
            errors = []
            details["quant_errors_note"] = "per-tensor errors are not measured for models with several inputs"
        else:
            errors = quant_error_table(float_model, quant, probe[:ERROR_SAMPLES])
        details.update(_float_op_report(ctx, quant, details.get("precision", "")))
        details["weight_tensors"] = weight_dtypes(quant)
        return StepResult(artifact=path, details=details, quant_errors=errors)

    def quantize(self, ctx, model, float_model: bytes, x) -> tuple[bytes, dict]:
        raise NotImplementedError


@register("dynamic")
class Dynamic(_PTQStep):
    """Dynamic range: int8 weights, float activations (quantized on the fly inside kernels)."""

    name = "dynamic"
    config = configs.Dynamic
    produces = {"precision": "dynamic", "format": "tflite"}

    def quantize(self, ctx, model, float_model, x):
        import tensorflow as tf

        quant = convert(ctx, model, optimizations=[tf.lite.Optimize.DEFAULT], **_per_channel_kwargs(ctx))
        return quant, {"precision": Precision.DYNAMIC, "weights": f"int8 {_granularity(ctx)}",
                       "activations": "float32", "io": "float32", "converter": "tflite"}


@register("float16")
class Float16(_PTQStep):
    """float16 weights (half the size), float32 compute."""

    name = "float16"
    config = configs.Float16
    produces = {"precision": "float16", "format": "tflite"}

    def quantize(self, ctx, model, float_model, x):
        import tensorflow as tf

        quant = convert(ctx, model, optimizations=[tf.lite.Optimize.DEFAULT],
                        target_spec={"supported_types": [tf.float16]})
        return quant, {"precision": Precision.FLOAT16, "weights": "float16", "activations": "float32",
                       "io": "float32", "converter": "tflite"}


@register("int8")
class Int8(_PTQStep):
    """Full integer int8 with a representative dataset (float or int8 I/O)."""

    name = "int8"
    config = configs.Int8
    produces = {"precision": "int8", "format": "tflite"}
    calibrated = True
    compact = True  # per-channel zero points (int64, all 0) were 18% of a MobileNetV2 int8 file
    activation_bits = 8

    def run(self, ctx: StepContext, model) -> StepResult:
        from edgeopt.techniques.qat import is_qat_model

        ctx = dataclasses.replace(ctx, config=step_config(ctx, self.config))
        if is_qat_model(model):  # fake-quant ops carry their own ranges
            from edgeopt.techniques.qat import convert_qat_int8
            return convert_qat_int8(model, ctx)
        result = super().run(ctx, model)
        result.model = getattr(self, "fixed_model", None)  # the fixed Keras model, if any fix ran
        return result

    def quantize(self, ctx, model, float_model, x):
        method, int8_io = ctx.config.calibration, ctx.config.int8_io
        details = {"precision": Precision.INT8 if self.activation_bits == 8 else Precision.INT16X8,
                   "weights": f"int8 {_granularity(ctx)}",
                   "activations": f"int{self.activation_bits}",
                   "io": f"int{self.activation_bits}" if int8_io else "float32",
                   "calibration": _calibration_details(ctx, method, len(x))}
        if hasattr(x, "names"):  # several inputs: no weight fixes; the converter feeds them all
            if method != "minmax":
                details["calibration"] = {**details["calibration"], "method": "minmax",
                                          "note": f"{method} needs one input; the converter's min/max is used"}
        else:
            fixed = self._fixes(ctx, model, x, details)
            if fixed is not None:
                return fixed
        if method == "minmax" or hasattr(x, "names"):
            quant = _converter_static(ctx, model, x, self.activation_bits, int8_io)
            return quant, {**details, "converter": "tflite"}
        ranges = activation_ranges(float_model, x, method, _percentile(ctx))
        quant = aeq_static(float_model, ranges, self.activation_bits, _per_channel(ctx))
        if not int8_io:
            quant = float_io(quant)
        return quant, {**details, "converter": "ai-edge-quantizer"}


    def _fixes(self, ctx, model, x, details: dict) -> tuple[bytes, dict] | None:
        """The int8 file made from the fixed Keras model when ``fixes`` is not "none" (None
        otherwise); records the choice in ``details["fixes"]`` and the fixed model in
        ``self.fixed_model`` (the ONNX/OpenVINO int8 exports are made from it)."""
        self.fixed_model = None
        fixes = getattr(ctx.config, "fixes", "none")
        if fixes == "none" or self.activation_bits != 8:
            return None
        reason = _fixes_unavailable(ctx, x)
        if reason:
            details["fixes"] = {"fixes": [], "skipped": reason}
            if not isinstance(fixes, str):
                raise UserError(f"int8 fixes {fixes} cannot be applied: {reason}")
            return None
        try:
            chosen = choose_step_fixes(ctx, model, x)
        except Exception as err:  # "auto" never costs the variant: the converter's default instead
            if not isinstance(fixes, str):
                raise UserError(f"int8 fixes {fixes} cannot be applied: {one_line(err)}") from None
            details["fixes"] = {"fixes": [], "skipped": f"measuring the fixes failed: {one_line(err)}"}
            ctx.log(f"int8 fixes skipped: {one_line(err)}")
            return None
        details["fixes"] = {**chosen.details(), "validation_samples": _fix_val_n(ctx)}
        if not chosen.fixes:  # none helped: the converter's default from the untouched model
            return None
        self.fixed_model = chosen.model
        if chosen.ranges is None:
            quant = _converter_static(ctx, chosen.model, x, 8, False)
            return quant, {**details, "converter": "tflite"}
        quant = float_io(aeq_static(convert(ctx, chosen.model), chosen.ranges, 8, True))
        return quant, {**details, "converter": "ai-edge-quantizer", "calibration": {
            **details["calibration"], "method": "per-tensor (act_range)"}}


def _fix_val_n(ctx) -> int:
    return min(len(ctx.dataset.x_val), int(ctx.config.fix_validation_samples))


def _fixes_unavailable(ctx, x, need_minmax: bool = True) -> str:
    """Why the int8 fixes cannot run with this config/data ("" when they can)."""
    cfg = ctx.config
    if need_minmax and (cfg.calibration != "minmax" or not cfg.per_channel or cfg.int8_io):
        return "the fixes are measured with min/max calibration, per-channel weights and float I/O"
    if ctx.dataset is None or not isinstance(getattr(ctx.dataset, "x_val", None), np.ndarray) \
            or len(ctx.dataset.x_val) < 16 or not isinstance(x, np.ndarray):
        return "no single-input validation split (>= 16 rows) to measure them on"
    return ""


def choose_step_fixes(ctx, model, x):
    """``int8_fixes.choose_fixes`` with the step's config, calibration ``x`` and the first
    ``fix_validation_samples`` rows of the validation split (never the eval split)."""
    from edgeopt.techniques.int8_fixes import AUTO, choose_fixes

    cfg = ctx.config
    t0 = time.perf_counter()
    chosen = choose_fixes(model, x, ctx.dataset.x_val[:_fix_val_n(ctx)], cfg.fixes, predict=ctx.predict,
                          candidates=AUTO, adaround_iterations=cfg.adaround_iterations, log=ctx.log,
                          decisions=getattr(ctx.dataset, "task", "") in ("classification", "binary"))
    ctx.log(f"int8 fixes: {', '.join(chosen.fixes) or 'none'} kept after {len(chosen.trials)} measured "
            f"conversions ({time.perf_counter() - t0:.1f} s)")
    return chosen


@register("int16x8")
class Int16x8(Int8):
    """int16 activations, int8 weights (more accurate than int8; few fast kernels on CPUs)."""

    name = "int16x8"
    config = configs.Int16x8
    produces = {"precision": "int16x8", "format": "tflite"}
    activation_bits = 16

    def run(self, ctx: StepContext, model) -> StepResult:
        return _PTQStep.run(self, ctx, model)


@register("int4-weights")
class Int4Weights(_PTQStep):
    """int4 weights (ai-edge-quantizer, per channel), dequantized to float for compute."""

    name = "int4-weights"
    config = configs.Int4Weights
    produces = {"precision": "int4", "format": "tflite"}

    def quantize(self, ctx, model, float_model, x):
        from ai_edge_quantizer import recipe

        quant = _aeq_run(float_model, recipe.weight_only_wi4_afp32(), None, [])
        return quant, {"precision": Precision.INT4, "weights": "int4 per-channel",
                       "activations": "float32", "io": "float32", "converter": "ai-edge-quantizer"}


register_alias("ptq", ["dynamic", "int8", "float16", "int16x8", "int4-weights", "mixed"])


# ---------------------------------------------------------------- converter helpers

def convert(ctx, model, **kwargs) -> bytes:
    """keras_to_tflite with the chain's converter hints (``ctx.hints["converter_hints"]``) merged
    under the mode's own settings (target_spec dicts are merged key by key); open input axes are
    fixed from ``ctx.options["input_shape"]`` or else the data's sample shape."""
    from edgeopt.convert import context_input_shape, keras_to_tflite

    hints = dict(ctx.hints.get("converter_hints") or {})
    spec = {**(hints.pop("target_spec", None) or {}), **(kwargs.pop("target_spec", None) or {})}
    return keras_to_tflite(model, input_shape=context_input_shape(ctx, model), **{**hints, **kwargs},
                           **({"target_spec": spec} if spec else {}))


def _converter_static(ctx, model, x: np.ndarray, bits: int, int_io: bool) -> bytes:
    """Full-integer PTQ with the TFLite converter (global min/max calibration)."""
    import tensorflow as tf

    arrays = x.as_list() if hasattr(x, "as_list") else [x]  # one array per input, in input order

    def representative():
        for i in range(len(arrays[0])):
            yield [a[i:i + 1] for a in arrays]

    if bits == 8:
        strict, io_type = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8], tf.int8
    else:
        strict = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        io_type = tf.int16
    kwargs = dict(optimizations=[tf.lite.Optimize.DEFAULT], representative_dataset=representative,
                  **_per_channel_kwargs(ctx))
    if int_io:
        kwargs.update(inference_input_type=io_type, inference_output_type=io_type)
    try:
        return convert(ctx, model, target_spec={"supported_ops": strict}, **kwargs)
    except UserError as strict_error:
        # Some op has no integer kernel: allow float fallback for it and say so.
        try:
            quant = convert(ctx, model, target_spec={"supported_ops": strict + [
                tf.lite.OpsSet.TFLITE_BUILTINS]}, **kwargs)
        except UserError:
            raise strict_error from None
        ctx.log(f"warning: not every op of {model.name} has an int{bits} kernel; those ops stay "
                f"float ({strict_error})")
        return quant


def _per_channel(ctx) -> bool:
    return bool(getattr(ctx.config, "per_channel", True))


def _per_channel_kwargs(ctx) -> dict:
    return {} if _per_channel(ctx) else {"_experimental_disable_per_channel": True}


def _granularity(ctx) -> str:
    return "per-channel" if _per_channel(ctx) else "per-tensor"


def _percentile(ctx) -> float:
    return float(ctx.config.percentile)


def _calibration_details(ctx, method: str, n: int) -> dict:
    out = {"method": method, "samples": n}
    if method == "percentile":
        out["percentile"] = _percentile(ctx)
    return out


# ---------------------------------------------------------------- ai-edge-quantizer helpers

def aeq_static(float_model: bytes, ranges: dict, bits: int = 8, per_channel: bool = True,
               keep_float: list[str] | None = None) -> bytes:
    """Static int8 (or int16x8) with ai-edge-quantizer from precomputed activation ranges;
    ops whose output tensors are in ``keep_float`` stay float."""
    from ai_edge_quantizer import qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    gran = qtyping.QuantGranularity.CHANNELWISE if per_channel else qtyping.QuantGranularity.TENSORWISE
    manager.add_static_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=bits,
                              weight_num_bits=8, weight_granularity=gran)
    return _aeq_run(float_model, manager.get_quantization_recipe(), ranges, keep_float or [])


def _aeq_run(float_model: bytes, recipe, ranges, keep_float: list[str]) -> bytes:
    from ai_edge_quantizer import quantizer
    from edgeopt.convert import quiet_fds

    qt = quantizer.Quantizer(bytearray(float_model), recipe)
    for scope in keep_float:
        qt.update_quantization_recipe("^" + re.escape(scope) + "$", "*",
                                      algorithm_key=quantizer.AlgorithmName.NO_QUANTIZE)
    try:
        with warnings.catch_warnings(), quiet_fds():
            warnings.simplefilter("ignore")
            result = qt.quantize(ranges if qt.need_calibration else None, enable_progress_report=False)
    except (ValueError, RuntimeError, KeyError) as e:
        reason = one_line(e)
        raise UserError(f"ai-edge-quantizer cannot quantize this model: {reason}") from None
    return bytes(result.quantized_model)


# ---------------------------------------------------------------- graph inspection and edits

def graph_ops(model: bytes) -> list[dict]:
    """The ops of a .tflite in order: type, output names, ai-edge-quantizer scope, a short label,
    activation inputs and input channels."""
    from edgeopt.core.tflite import tflite_op_details
    from edgeopt.techniques.calibration import preserving_interpreter

    interp = preserving_interpreter(model)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    produced = {d["index"] for d in interp.get_input_details()}  # tensors that carry activations
    ops = []
    for op in tflite_op_details(model):
        ins = [i for i in op["inputs"] if i in details]
        outs = [details[i]["name"] for i in op["outputs"] if i in details]
        consts = [details[i]["name"] for i in ins if i not in produced]
        first_in = details[ins[0]] if ins else None
        ops.append({"index": op["index"], "type": op["op_name"], "outputs": outs,
                    "scope": ";".join(outs) + ";",
                    "inputs": [details[i]["name"] for i in ins if i in produced],
                    "label": f"{op['op_name']} {_short_name(consts[0] if consts else outs[0])}",
                    "in_channels": int(first_in["shape"][-1]) if first_in is not None
                    and len(first_in["shape"]) else 0})
        produced.update(i for i in op["outputs"] if i >= 0)
    return ops


def _short_name(tensor: str) -> str:
    """'small_cnn_1/conv0_1/convolution;...' -> 'conv0' (the Keras layer name, when visible)."""
    first = tensor.split(";")[0]
    parts = first.split("/")
    return re.sub(r"_\d+$", "", parts[1]) if len(parts) > 1 else first[:40]


def float_ops(model: bytes) -> list[str]:
    """Labels of compute ops whose output is float in a quantized model (boundary ops excluded)."""
    from edgeopt.core.tflite import tflite_op_details
    from edgeopt.techniques.calibration import preserving_interpreter

    interp = preserving_interpreter(model)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    labels = {op["index"]: op["label"] for op in graph_ops(model)}
    out = []
    for op in tflite_op_details(model):
        if op["op_name"] in BOUNDARY_OPS or not len(op["outputs"]):
            continue
        d = details.get(op["outputs"][0])
        if d is not None and np.dtype(d["dtype"]).kind == "f":
            out.append(labels[op["index"]])
    return out


def weight_dtypes(model: bytes) -> dict[str, int]:
    """How many weight tensors (the weight operand of conv / fully connected ops) each storage
    type holds, read from the flatbuffer (int4 shows as int4). Shows e.g. that dynamic-range mode
    leaves small tensors float (the converter skips tensors under 1024 elements)."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    m = fbu.read_model_from_bytearray(bytearray(model))
    sg = m.subgraphs[0]
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    code = [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "") for c in m.operatorCodes]
    producer = {o: op for op in sg.operators for o in op.outputs}
    counts: dict[str, int] = {}
    for op in sg.operators:
        if code[op.opcodeIndex] not in COMPUTE_OPS or len(op.inputs) < 2:
            continue
        w = op.inputs[1]
        src = producer.get(w)
        if src is not None and code[src.opcodeIndex] == "DEQUANTIZE":
            w = src.inputs[0]
        elif src is not None:
            continue  # an activation, not a weight (e.g. BATCH_MATMUL of two activations)
        name = fbu.type_to_name(sg.tensors[w].type).lower()
        counts[name] = counts.get(name, 0) + 1
    return counts


def _float_op_report(ctx, quant: bytes, precision: str) -> dict:
    """For fully integer variants: which ops stayed float (cannot be quantized), with a warning."""
    if precision not in (Precision.INT8, Precision.INT16X8):
        return {}
    left = float_ops(quant)
    if left:
        ctx.log(f"warning: {len(left)} op(s) could not be quantized and run in float: {', '.join(left)}")
    return {"float_ops": left}


def float_io(model: bytes) -> bytes:
    """Give a quantized .tflite float32 inputs and outputs (ai-edge-quantizer quantizes the graph
    input and output tensors themselves). Quantize/dequantize ops are added at the boundary;
    a DEQUANTIZE right after the input or a QUANTIZE right before the output is folded away."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    m = fbu.read_model_from_bytearray(bytearray(model))
    sg = m.subgraphs[0]
    quantize_code = _opcode(m, fb.BuiltinOperator.QUANTIZE)
    dequantize_code = _opcode(m, fb.BuiltinOperator.DEQUANTIZE)
    remap: dict[int, int] = {}
    for pos, t in enumerate(list(sg.inputs)):
        if sg.tensors[t].type == fb.TensorType.FLOAT32:
            continue
        new = _float_twin(m, sg, t)
        for op in [op for op in sg.operators if t in op.inputs and op.opcodeIndex == dequantize_code]:
            _replace_uses(sg, op.outputs[0], new)
            sg.operators.remove(op)
        if any(t in op.inputs for op in sg.operators):
            sg.operators.insert(0, fb.OperatorT(opcodeIndex=quantize_code, inputs=[new], outputs=[t]))
        sg.inputs[pos] = remap[t] = new
    for pos, t in enumerate(list(sg.outputs)):
        if sg.tensors[t].type == fb.TensorType.FLOAT32:
            continue
        producer = next((op for op in sg.operators if t in op.outputs), None)
        consumers = [op for op in sg.operators if t in op.inputs]
        if producer is not None and producer.opcodeIndex == quantize_code and not consumers:
            new = producer.inputs[0]
            sg.operators.remove(producer)
        else:
            new = _float_twin(m, sg, t)
            sg.operators.append(fb.OperatorT(opcodeIndex=dequantize_code, inputs=[t], outputs=[new]))
        sg.outputs[pos] = remap[t] = new
    for sig in m.signatureDefs or []:
        for tmap in (sig.inputs or []) + (sig.outputs or []):
            tmap.tensorIndex = remap.get(tmap.tensorIndex, tmap.tensorIndex)
    return bytes(fbu.convert_object_to_bytearray(m))


def _opcode(m, builtin: int) -> int:
    from ai_edge_litert import schema_py_generated as fb

    for i, code in enumerate(m.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = fb.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 2
    m.operatorCodes.append(code)
    return len(m.operatorCodes) - 1


def _float_twin(m, sg, t: int) -> int:
    """A new float32 tensor shaped like tensor t; it takes t's name (signatures and users see the
    float tensor) and t is renamed with its integer type as a suffix."""
    import copy

    from ai_edge_litert import schema_py_generated as fb

    src = sg.tensors[t]
    twin = copy.copy(src)
    twin.type, twin.quantization = fb.TensorType.FLOAT32, None
    m.buffers.append(fb.BufferT())
    twin.buffer = len(m.buffers) - 1
    name = src.name.decode() if isinstance(src.name, bytes) else str(src.name)
    kind = {fb.TensorType.INT8: "int8", fb.TensorType.INT16: "int16", fb.TensorType.UINT8: "uint8"}
    src.name = f"{name}_{kind.get(src.type, 'q')}"
    twin.name = name
    sg.tensors.append(twin)
    return len(sg.tensors) - 1


def _replace_uses(sg, old: int, new: int) -> None:
    for op in sg.operators:
        op.inputs = [new if i == old else i for i in op.inputs]
    sg.outputs = [new if i == old else i for i in sg.outputs]


# ---------------------------------------------------------------- mixed precision

@register("mixed")
class Mixed:
    """int8 with the fewest ops kept float that meet ``max_accuracy_drop`` (points), plus ops whose
    int8 kernel is slower than float on this CPU when keeping them float costs no accuracy.

    Before any op is kept float, the int8 fixes and the activation calibration are chosen on the
    validation split (``fixes``; see ``_fixes_and_calibration``); candidates are scored with
    ``ctx.select`` (validation), the eval accuracy is only reported.
    Options: ``max_accuracy_drop`` (0.5), ``latency_candidates`` (6 compute ops tried for speed;
    0 turns the latency pass off), ``sensitivity_candidates`` (8), ``fixes`` (auto),
    ``calibration``/``percentile``/``calibration_samples``, ``per_channel``, ``int8_io``."""

    one_input = True  # per-op sensitivity is measured on one input array

    name = "mixed"
    kind = "convert"
    config = configs.Mixed
    produces = {"precision": "mixed", "format": "tflite"}

    def run(self, ctx: StepContext, model) -> StepResult:
        ctx = dataclasses.replace(ctx, config=step_config(ctx, self.config))
        x = calibration_data(ctx, model)
        if hasattr(x, "names"):
            raise UserError(f"mixed precision measures per-op sensitivity on one input; {model.name} has "
                            f"{len(x.names)} ({', '.join(x.names)}): use int8 or int16x8 for it")
        model, float_model, ranges, before = _fixes_and_calibration(ctx, model, x)
        search = MixedSearch(ctx, float_model, x, ranges)
        try:
            best = search.run()
        finally:
            shutil.rmtree(search.scratch, ignore_errors=True)
        path = atomic_write_bytes(Path(ctx.work_dir) / "model.tflite", best.model)
        errors = quant_error_table(float_model, best.model, x[:ERROR_SAMPLES])
        details = {**search.details(best), **before}
        if search.selected_on == "validation" and ctx.evaluate is not None:
            details["eval_accuracy"] = round(float(ctx.evaluate(path)), 5)  # reported, never selected on
        return StepResult(artifact=path, details=details, quant_errors=errors)


def _fixes_and_calibration(ctx, model, x) -> tuple[object, bytes, dict | None, dict]:
    """Before any op is kept float: the int8 fixes (``fixes``) and the activation ranges
    among the configured calibration, min/max, percentile (99.99, and the percentile
    ``numerics.explain_outliers`` recommends when it finds outlier-stretched ranges) and the
    act_range fix's per-tensor choice, each measured as an all-int8 file by its output MSE vs
    float on the validation split. Returns ``(keras model, float .tflite, ranges or None
    (= the configured calibration), details)``; with ``fixes="none"`` nothing is tried."""
    cfg = ctx.config
    if cfg.fixes == "none":
        return model, convert(ctx, model), None, {}
    reason = _fixes_unavailable(ctx, x, need_minmax=False)
    if reason:
        return model, convert(ctx, model), None, {"fixes": {"fixes": [], "skipped": reason}}
    try:
        chosen = choose_step_fixes(ctx, model, x)
        float_model = convert(ctx, chosen.model)
        ranges, calibration = _choose_ranges(ctx, model, float_model, x, chosen.ranges)
    except Exception as err:  # the fixes are a help: mixed goes on from the configured calibration
        ctx.log(f"int8 fixes and calibration choice skipped: {one_line(err)}")
        return model, convert(ctx, model), None, {"fixes": {"fixes": [], "skipped": one_line(err)}}
    model = chosen.model
    fixes = {**chosen.details(), "validation_samples": _fix_val_n(ctx)}
    return model, float_model, ranges, {"fixes": fixes, "calibration_choice": calibration}


def _choose_ranges(ctx, model, float_model: bytes, x, act_ranges: dict | None) -> tuple[dict, dict]:
    """(ranges, record): the candidate ranges whose all-int8 file of ``float_model`` (the fixed
    model) has the lowest output MSE vs the original ``model`` on validation rows."""
    from edgeopt.numerics import explain_outliers
    from edgeopt.techniques.int8_fixes import compare, tflite_predict

    cfg = ctx.config
    val = ctx.dataset.x_val[:_fix_val_n(ctx)]
    ref = model.predict(val, verbose=0, batch_size=256)
    methods = {f"{cfg.calibration}" + (f" {cfg.percentile:g}" if cfg.calibration == "percentile" else ""):
               (cfg.calibration, float(cfg.percentile)), "minmax": ("minmax", 100.0),
               "percentile 99.99": ("percentile", 99.99)}
    report = explain_outliers(float_model, x, verify=False)
    if report.found:
        methods[f"percentile {report.percentile:g}"] = ("percentile", report.percentile)
    candidates = {name: activation_ranges(float_model, x, m, p) for name, (m, p) in methods.items()}
    if act_ranges is not None:
        candidates["act_range (per tensor)"] = act_ranges
    measured = {}
    for name, ranges in candidates.items():
        quant = float_io(aeq_static(float_model, ranges, 8, _per_channel(ctx)))
        measured[name] = compare(tflite_predict(ctx.predict, quant, val), ref,
                                 getattr(ctx.dataset, "task", "") in ("classification", "binary"))
    best = min(measured, key=lambda k: measured[k][1])
    ctx.log(f"mixed: all-int8 calibration {best} (lowest output MSE vs float on validation)")
    return candidates[best], {"chosen": best, "measured": {
        k: {"agreement": a, "output_mse": mse} for k, (a, mse) in measured.items()}}


class _Candidate:
    def __init__(self, keep: list[dict], model: bytes, path: Path, accuracy: float):
        self.keep, self.model, self.path, self.accuracy = keep, model, path, accuracy


class MixedSearch:
    """Search over ops to keep float (see ``Mixed``): a latency pass, then the ranked pass (one
    instrumented pass, the top ``sensitivity_candidates`` measured), then, only when those cannot
    meet the budget, the step-by-step greedy search (re-ranking after each op)."""

    def __init__(self, ctx: StepContext, float_model: bytes, x: np.ndarray, ranges: dict | None = None):
        self.ctx, self.float_model, self.x = ctx, float_model, x
        cfg = step_config(ctx, configs.Mixed)
        self.limit = float(cfg.max_accuracy_drop)
        self.latency_candidates = int(cfg.latency_candidates)
        self.sensitivity_candidates = int(cfg.sensitivity_candidates)
        self.sensitivity: list[dict] = []  # the one-pass ranking and each candidate's measured gain
        self.method = cfg.calibration if ranges is None else "chosen on validation (calibration_choice)"
        self.ranges = ranges if ranges is not None else activation_ranges(float_model, x, cfg.calibration,
                                                                           float(cfg.percentile))
        self.per_channel = bool(cfg.per_channel)
        self.int8_io = bool(cfg.int8_io)
        self.ops = [op for op in graph_ops(float_model) if op["type"] not in BOUNDARY_OPS]
        self.scratch = Path(ctx.work_dir) / "mixed_candidates"
        self.scratch.mkdir(parents=True, exist_ok=True)
        # candidates are scored on the validation split when there is one (ctx.select)
        self.selected_on = "validation" if ctx.select is not None else "eval (no validation split)"
        self.evaluate = ctx.select or ctx.evaluate
        self.baseline = self._baseline()
        self.tried: list[dict] = []
        self.met = False

    # -- the search
    def run(self) -> _Candidate:
        current = self.build([])
        self.all_int8 = current
        current = self._latency_pass(current)
        if self.drop(current) <= self.limit:
            self.met = True
            return current
        ranked = self._ranked_pass(current)
        if ranked is not None:
            return ranked
        best = current
        while True:
            op = self._most_sensitive(current)
            if op is None:
                break
            cand = self.build(current.keep + [op])
            if cand.accuracy > best.accuracy:
                best = cand
            current = cand
            if self.drop(cand) <= self.limit:
                self.met = True
                return self._prune(cand)
        self.ctx.log(f"warning: mixed precision could not meet max_accuracy_drop={self.limit} points "
                     f"even with {len(current.keep)} of {len(self.ops)} ops float; returning the most "
                     f"accurate variant found ({self.drop(best):.2f} points drop)")
        return best

    def _ranked_pass(self, current: _Candidate) -> _Candidate | None:
        """One instrumented pass ranks the ops (``tflite_ptq.rank_ops``); the top
        ``sensitivity_candidates`` are measured float one at a time, then kept float in order of
        measured gain until the budget is met. None when they cannot meet it (the greedy search
        then continues)."""
        from edgeopt.techniques.tflite_ptq import rank_ops

        kept = {k["scope"] for k in current.keep}
        ranked = rank_ops(self.float_model, current.model, self.x[:ERROR_SAMPLES], kept)
        ranked = ranked[:self.sensitivity_candidates]
        self.sensitivity = [{"op": r["op"], "added_noise": r["added_noise"]} for r in ranked]
        gains = []
        for r, row in zip(ranked, self.sensitivity):
            entry = self._entry(next(op for op in self.ops if op["scope"] == r["scope"]), "sensitivity")
            entry["reason"] = (f"sensitivity: SNR {r['snr_db']:.1f} dB at its output"
                               + (f" ({r['in_snr_db']:.1f} dB at its input)" if r["in_snr_db"] is not None
                                  else ""))
            cand = self.build(current.keep + [entry])
            row["gain_alone_points"] = round((cand.accuracy - current.accuracy) * 100.0, 3)
            gains.append((cand.accuracy - current.accuracy, entry, cand))
        best = current
        for gain, entry, alone in sorted(gains, key=lambda g: -g[0]):
            if gain <= 0:
                break
            cand = alone if best is current else self.build(best.keep + [entry])
            if cand.accuracy > best.accuracy:
                best = cand
            if self.drop(best) <= self.limit:
                self.met = True
                return self._prune(best)
        return None

    def build(self, keep: list[dict]) -> _Candidate:
        scopes = [k["scope"] for k in keep]
        model = aeq_static(self.float_model, self.ranges, 8, self.per_channel, scopes)
        if not self.int8_io:
            model = float_io(model)
        path = atomic_write_bytes(self.scratch / f"cand{len(self.tried)}.tflite", model)
        acc = float(self.evaluate(path))
        self.tried.append({"kept_float": [k["op"] for k in keep], "accuracy": round(acc, 5)})
        return _Candidate(keep, model, path, acc)

    def drop(self, cand: _Candidate) -> float:
        return (self.baseline - cand.accuracy) * 100.0

    def _latency_pass(self, current: _Candidate) -> _Candidate:
        """Keep a compute op float when that makes the artifact faster at no accuracy cost."""
        limit = self.latency_candidates
        compute = [op for op in self.ops if op["type"] in COMPUTE_OPS]
        # Ops with few input channels first: their int8 kernels are the slow ones (MEASURED.md).
        compute.sort(key=lambda op: (op["in_channels"] > 4, op["index"]))
        for op in compute[:limit]:
            entry = self._entry(op, "latency")
            cand = self.build(current.keep + [entry])
            t_cur, t_new = self.ctx.paired_latency_us(current.path, cand.path, self.x[:1])
            self.tried[-1]["latency_us"] = round(t_new, 2)
            faster = t_new < t_cur * (1.0 - LATENCY_GAIN) and t_cur - t_new >= LATENCY_MIN_GAIN_US
            if faster and cand.accuracy >= current.accuracy:
                entry["reason"] = (f"latency: int8 kernel slower ({t_cur:.2f} us -> {t_new:.2f} us "
                                   f"with it float, same or better accuracy)")
                current = cand
        return current

    def _most_sensitive(self, current: _Candidate) -> dict | None:
        kept = {k["scope"] for k in current.keep}
        rows = quant_error_table(self.float_model, current.model, self.x[:ERROR_SAMPLES])
        snr = {r["tensor"]: r["snr_db"] for r in rows if r["dtype"] != "float32"}
        scored = []
        for op in self.ops:
            out = op["outputs"][0] if op["outputs"] else None
            if op["scope"] in kept or out not in snr:
                continue
            ins = [snr[i] for i in op["inputs"] if i in snr]
            # The error this op adds itself, not what it inherits: relative noise power at its
            # output minus the worst at its inputs (noise powers add; dB differences do not).
            added = _noise(snr[out]) - max([_noise(v) for v in ins] or [0.0])
            scored.append((added, snr[out], min(ins) if ins else None, op))
        if not scored:
            return None
        _, out_snr, in_snr, op = max(scored, key=lambda s: s[0])
        entry = self._entry(op, "sensitivity")
        entry["reason"] = (f"sensitivity: SNR {out_snr:.1f} dB at its output"
                           + (f" ({in_snr:.1f} dB at its input)" if in_snr is not None else ""))
        return entry

    def _prune(self, cand: _Candidate) -> _Candidate:
        """Drop sensitivity-kept ops that the budget turns out not to need (last one excluded)."""
        for entry in [k for k in cand.keep[:-1] if k["kind"] == "sensitivity"]:
            trial = self.build([k for k in cand.keep if k is not entry])
            if self.drop(trial) <= self.limit:
                cand = trial
        return cand

    def _entry(self, op: dict, kind: str) -> dict:
        return {"op": op["label"], "tensor": op["outputs"][0], "scope": op["scope"], "kind": kind,
                "reason": kind}

    def _baseline(self) -> float:
        if self.ctx.baseline_accuracy is not None and self.ctx.select is None:
            return float(self.ctx.baseline_accuracy)  # the eval-split figure is all there is
        path = atomic_write_bytes(self.scratch / "float32.tflite", self.float_model)
        return float(self.evaluate(path))

    def details(self, best: _Candidate) -> dict:
        drop = self.drop(best)
        out = {"precision": Precision.MIXED,
               "weights": f"int8 {'per-channel' if self.per_channel else 'per-tensor'}",
               "activations": "int8 (float in kept ops)",
               "io": "int8" if self.int8_io else "float32",
               "converter": "ai-edge-quantizer",
               "calibration": _calibration_details(self.ctx, self.method, len(self.x)),
               "selected_on": self.selected_on,
               "max_accuracy_drop": self.limit,
               "baseline_accuracy": round(self.baseline, 5),
               "accuracy": round(best.accuracy, 5),
               "accuracy_drop": round(drop, 3),
               "all_int8_accuracy": round(self.all_int8.accuracy, 5),
               "met": self.met,
               "kept_float": [{"op": k["op"], "tensor": k["tensor"], "reason": k["reason"]} for k in best.keep],
               "sensitivity": self.sensitivity,
               "candidates_tried": self.tried}
        if not self.met:
            out["warning"] = (f"max_accuracy_drop {self.limit} not met: best drop {drop:.2f} points "
                              f"with {len(best.keep)} ops float")
        return out


def _noise(snr_db: float) -> float:
    return 10.0 ** (-snr_db / 10.0)


# Keep an op float for speed only when the artifact gets >= 5% and >= 0.2 us faster (below that,
# timer noise on a shared CPU decides).
LATENCY_GAIN = 0.05
LATENCY_MIN_GAIN_US = 0.2
__all__ = ["Dynamic", "Float16", "Int8", "Int16x8", "Int4Weights", "Mixed", "MixedSearch", "aeq_static",
           "float_io", "float_ops", "graph_ops", "weight_dtypes"]
