"""Per-device estimates from a GraphProfile: fit (RAM/flash), latency and energy with intervals,
memory traffic, duty-cycle power and battery life, blockers.

Every figure is an estimate and carries the inputs it was computed from, and every latency and energy
comes with an interval (`latency_range_ms`, `energy_range_mj`: low, high, basis). Where the latency
comes from, best first (`Estimate.basis`):

- ``measured``: a latency measured on this machine (host CPU only);
- ``compiler``: a compiler's cycle estimate (a provider registered with `register_latency_provider`);
- ``calibrated``: microcontrollers: work per op class / cycle rate of the core and inference engine /
  clock. Rates are fitted on MLPerf Tiny rows (calibration.yaml, benchmarks/calibrate_mcu.py); the
  interval is the 5th-95th percentile of published/estimate of that engine's leave-one-board-out
  predictions. ``composed``: the core was not measured with this engine, its rate combines the
  core's effect seen with other engines and the engine's effect (wider interval);
- ``assumed``: an engine without rows, estimated like the engine that shares its kernels, range
  widened by the spread between engines on one board; ``coarse``: one MACs/cycle figure for the core
  with its published range;
- ``published-throughput``: MACs/s achieved on one published benchmark (per-op roofline), range from
  how much MACs/s varies between models on one calibrated board;
- ``lower-bound``: peak throughput only: a bound, not a latency (no upper end);
- ``unknown``: a figure is missing (named in `missing`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from edgeopt.core.precision import Precision
from edgeopt.hardware.catalogue import core_info, data_file, has_fpu, op_list
from edgeopt.hardware.schema import Device
from edgeopt.measure.graph_types import GraphProfile, OpStats
from edgeopt.report.format import fmt_bytes

DEFAULT_BATTERY_V = 3.7  # nominal Li-ion/LiPo cell voltage; override with battery_v

# pointwise: a CONV_2D whose windows do not overlap (1x1, or kernel <= stride): a plain matrix product,
# no im2col (CMSIS-NN's arm_convolve_1x1_s8_fast); conv: every other standard convolution.
CLASSES = ("conv", "pointwise", "depthwise", "fc", "elementwise", "pooling", "other")
MAC_CLASSES = ("conv", "pointwise", "depthwise", "fc")
OP_CLASSES = {
    "conv": {"CONV_2D", "CONV_1D", "CONV_3D", "TRANSPOSE_CONV", "CONV_3D_TRANSPOSE", "SEPARABLE_CONV_2D"},
    "depthwise": {"DEPTHWISE_CONV_2D"},
    "fc": {"FULLY_CONNECTED", "BATCH_MATMUL"},
    "elementwise": {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "RELU", "RELU6",
                    "RELU_N1_TO_1", "LEAKY_RELU", "PRELU", "LOGISTIC", "TANH", "HARD_SWISH", "ABS", "EXP",
                    "SQRT", "RSQRT", "NEG", "POW", "QUANTIZE", "DEQUANTIZE", "ADD_N", "SUM"},
    "pooling": {"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D", "MEAN", "REDUCE_MAX", "REDUCE_MIN"},
}
# how trustworthy a latency is, best first (recommend ranks by it)
BASIS_RANK = {"measured": 0, "compiler": 1, "calibrated": 1, "composed": 2, "published-throughput": 2,
              "assumed": 3, "coarse": 3, "lower-bound": 4, "unknown": 5}
_INT8 = {"int8", "uint8"}
_PER_CHANNEL_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D"}
_ITEMSIZE = {"int8": 1, "uint8": 1, "int16": 2, "int16x8": 2, "float16": 2, "bfloat16": 2, "int4": 1}
# precision a model computes in -> precisions whose throughput figures may serve for it
_PRECISION_FALLBACK = {
    "int8": ["int8", "float16", "float32"], "int16x8": ["int16x8"], "int16": ["int16x8", "int16"],
    "float32": ["float32", "float16"], "float16": ["float16", "float32"],
    "dynamic": ["float32", "float16"], "int4": ["int8"], "mixed": ["int8", "float32"],
}
# a device whose latency comes from elsewhere (a compiler): name -> fn(profile, device) -> dict or None
LatencyProvider = Callable[[GraphProfile, Device], "dict | None"]
_PROVIDERS: dict[str, LatencyProvider] = {}
# providers that ship with edgeopt: runtime -> module that registers it when imported (imported lazily)
_BUILTIN_PROVIDERS = {"vela": "edgeopt.hardware.vela"}
_PROVIDER_KEYS = ("low_ms", "high_ms", "label", "ram_needed_bytes", "flash_needed_bytes", "memory_method",
                  "warnings", "blockers", "compiler")


def register_latency_provider(runtime: str, provider: LatencyProvider) -> None:
    """Route devices listing `runtime` in their `runtimes` (e.g. "vela") to `provider`.

    The provider returns None (not applicable: the estimator goes on) or a dict with ``latency_ms``
    (float), ``low_ms`` / ``high_ms`` (the interval; None = that end unknown), ``method`` and ``source``
    (strings), plus any inputs worth reporting. Optional keys: ``label`` (the estimate's label),
    ``ram_needed_bytes`` / ``flash_needed_bytes`` / ``memory_method`` (the compiler's memory use, replacing
    the arena estimate in the fit check), ``warnings`` / ``blockers`` (lists of strings) and ``compiler``
    (a dict shown as `Estimate.compiler`, e.g. every optimise mode). A dict without ``latency_ms`` adds its
    blockers/warnings and lets the estimator go on. Such estimates rank with calibrated ones (basis ``compiler``).
    """
    _PROVIDERS[runtime] = provider


def _provider_result(profile: GraphProfile, dev: Device) -> dict | None:
    """The first registered provider's answer for a device, importing edgeopt's own providers on demand."""
    import importlib

    for runtime in dev.runtimes:
        if runtime not in _PROVIDERS and runtime in _BUILTIN_PROVIDERS:
            importlib.import_module(_BUILTIN_PROVIDERS[runtime])
        provider = _PROVIDERS.get(runtime)
        got = provider(profile, dev) if provider else None
        if got:
            return got
    return None


def op_class(op_type: str) -> str:
    """conv | depthwise | fc | elementwise | pooling | other for a normalised op type (op_class_of splits pointwise)."""
    for name, kinds in OP_CLASSES.items():
        if op_type in kinds:
            return name
    return "other"


def is_pointwise(op: OpStats) -> bool:
    """True for a convolution whose windows do not overlap (1x1 kernel, or kernel <= stride).

    From the shapes only: window volume kh*kw*cin = MACs / output elements, and input elements =
    in_h*in_w*cin; windows that do not overlap read each input element at most once, so
    input elements / (window volume x output positions) = stride^2/k^2 >= 1 (0.9: padding).
    """
    out = math.prod(op.output_shape) if op.output_shape else 0
    if not (op.macs and out and op.input_bytes) or op.output_shape[-1] <= 0:
        return False
    window = op.macs / out
    positions = out / op.output_shape[-1]
    return op.input_bytes / _ITEMSIZE.get(op.dtype, 4) >= 0.9 * window * positions


def op_class_of(op: OpStats) -> str:
    """op_class, with standard convolutions split into pointwise (is_pointwise) and conv."""
    c = op_class(op.op_type)
    return "pointwise" if c == "conv" and is_pointwise(op) else c


def op_work(op: OpStats) -> float:
    """MACs for MAC ops; elements read + written for every other op (the unit of its rate)."""
    if op_class(op.op_type) in MAC_CLASSES:
        return float(op.macs)
    itemsize = _ITEMSIZE.get(op.dtype, 4)
    return (op.input_bytes + op.activation_bytes) / itemsize


def work_by_class(profile: GraphProfile) -> dict[str, float]:
    """Work per op class: MACs (conv, pointwise, depthwise, fc) or elements read + written (the others)."""
    out = dict.fromkeys(CLASSES, 0.0)
    for op in profile.ops:
        out[op_class_of(op)] += op_work(op)
    return out


def mcu_cycles(profile: GraphProfile, rates: dict[str, float]) -> float:
    """Cycles = sum over ops of work / rate of the op's class (MACs/cycle, elements/cycle)."""
    return sum(w / rates[c] for c, w in work_by_class(profile).items() if w)


@dataclass
class Interval:
    """A figure with its range: low/high None = that end is unknown."""
    value: float | None
    low: float | None
    high: float | None
    basis: str = ""

    def scaled(self, k: float) -> "Interval":
        mul = (lambda x: None if x is None else x * k)
        return Interval(mul(self.value), mul(self.low), mul(self.high), self.basis)


@dataclass
class Estimate:
    """One model on one device. Units: ms, mJ, W, h, bytes. Ranges are dicts {value, low, high, basis}
    (high None = no upper end). `basis` says how the latency is known (BASIS_RANK)."""

    device: str
    device_title: str
    device_class: str
    model: str
    precision: str
    label: str = "estimate"
    engine: str | None = None
    engine_choice: str = ""  # "device default" | "--engine" | "core default"
    basis: str = "unknown"  # see the module docstring (BASIS_RANK)
    accelerator: str | None = None  # "accelerator not modelled: ..." when the device has one we do not model
    compiler: dict = field(default_factory=dict)  # a compiler's own figures (e.g. vela: performance and size modes)
    edgetpu: dict = field(default_factory=dict)  # Edge TPU devices: edgetpu.EdgeTpuReadiness.to_dict()
    fits: bool | None = None
    ram: dict = field(default_factory=dict)
    flash: dict = field(default_factory=dict)
    latency_ms: float | None = None
    latency_is_lower_bound: bool = False
    latency_range_ms: dict = field(default_factory=dict)  # {value, low, high, basis}
    latency: dict = field(default_factory=dict)
    memory_traffic: dict = field(default_factory=dict)
    energy_mj: float | None = None
    energy_range_mj: dict = field(default_factory=dict)
    energy: dict = field(default_factory=dict)
    power: dict = field(default_factory=dict)  # duty cycle: average power (W) with its range
    battery_life_h: float | None = None  # None when a missing figure makes it a range only
    battery_life_range_h: dict = field(default_factory=dict)
    battery_life_is_upper_bound: bool = False
    battery: dict = field(default_factory=dict)
    blockers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    price_usd: float | None = None
    active_power_w: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def runnable(self) -> bool:
        return not self.blockers

    @property
    def rank(self) -> int:
        """0 (measured) .. 5 (unknown): how much the latency can be trusted (BASIS_RANK)."""
        return BASIS_RANK.get(self.basis, 5)


def engine_names() -> list[str]:
    return list(data_file("engines.yaml").get("engines", {}))


def choose_engine(dev: Device, override: str | None = None) -> tuple[str | None, str]:
    """(engine, how it was chosen) for an MCU: --engine, else the device's, else its core's default."""
    if override:
        return override, "--engine"
    if dev.engine:
        return dev.engine, "device default"
    eng = core_info(dev).get("default_engine")
    return (eng, "core default") if eng else (None, "")


def estimate(profile: GraphProfile, device: Device, *, engine: str | None = None,
             battery_mah: float | None = None, inferences_per_hour: float | None = None,
             battery_v: float = DEFAULT_BATTERY_V, calibration: dict | None = None,
             host_latency_ms: float | None = None) -> Estimate:
    """All estimates of one model on one device.

    engine: inference engine for MCUs (a key of engines.yaml); None = the device's (or its core's)
    default, named in the result. host_latency_ms: a latency measured on this machine (a run's p50);
    used for the host-cpu device instead of an estimate, and labelled as measured.
    inferences_per_hour: duty-cycle average power (`power`); with battery_mah (mAh, at battery_v
    volts) also battery life. calibration: a calibration.yaml dict (default: the packaged one).
    Missing figures never raise: they are named in `missing` and the figure becomes a range or None.
    """
    cal = calibration if calibration is not None else data_file("calibration.yaml")
    est = Estimate(device=device.name, device_title=device.title or device.name,
                   device_class=device.device_class, model=profile.path, precision=profile.precision,
                   price_usd=device.price_usd, active_power_w=device.active_power_w)
    if device.device_class == "mcu":
        est.engine, est.engine_choice = choose_engine(device, engine)
    elif engine:
        est.warnings.append(f"--engine {engine} applies to microcontrollers only; ignored for this device")
    vec = core_info(device).get("vector_extension")
    if vec:
        est.accelerator = f"accelerator not modelled: {vec}"
    got = None if device.origin == "host" and host_latency_ms is not None else _provider_result(profile, device)
    if got:
        est.warnings.extend(got.get("warnings", []))
        est.blockers.extend(got.get("blockers", []))
        est.compiler = got.get("compiler", {})
        got = got if got.get("latency_ms") is not None else None
    _fit(est, profile, device, cal, got)
    _latency_dispatch(est, profile, device, cal, host_latency_ms, got)
    if device.constraints.op_list == "edgetpu" and profile.source == "tflite" and Path(profile.path or "").is_file():
        _edgetpu(est, profile)
    _memory_traffic(est, profile, device)
    _energy(est, device)
    if inferences_per_hour is not None:
        _duty_cycle(est, device, inferences_per_hour, battery_mah, battery_v)
    _constraints(est, profile, device)
    return est


def _latency_dispatch(est, profile, dev, cal, host_latency_ms, got: dict | None) -> None:
    if dev.origin == "host" and host_latency_ms is not None:
        est.latency_ms = float(host_latency_ms)
        est.latency = {"method": "measured on this machine by the run (p50)", "precision": profile.precision}
        est.latency_range_ms = asdict(Interval(est.latency_ms, est.latency_ms, est.latency_ms,
                                               "measured (p50 of the run)"))
        est.label, est.basis = "estimate (latency measured)", "measured"
        return
    if got:
        est.latency_ms = float(got["latency_ms"])
        est.latency = {k: v for k, v in got.items() if k not in _PROVIDER_KEYS}
        est.latency_range_ms = asdict(Interval(est.latency_ms, got.get("low_ms"), got.get("high_ms"),
                                               got.get("range_basis", got.get("method", "compiler"))))
        est.basis, est.accelerator = "compiler", None
        est.label = got.get("label", "compiler estimate")
        return
    _latency(est, profile, dev, cal)


# --------------------------------------------------------------------------- memory fit
def estimate_arena(profile: GraphProfile, calibration: dict | None = None) -> tuple[int, str, dict]:
    """(arena bytes, basis, inputs): measured by TFLM when the profile has it, else estimated."""
    if profile.arena_bytes:
        return int(profile.arena_bytes), "measured with the TFLite Micro interpreter", {}
    cal = calibration if calibration is not None else data_file("calibration.yaml")
    arena_cal = cal.get("arena", {})
    coef = arena_cal.get("persistent_bytes", {})
    counts = arena_counts(profile)
    persistent = (coef.get("fixed", 0) + coef.get("per_tensor", 0) * counts["tensors"]
                  + coef.get("per_op", 0) * counts["ops"] + coef.get("per_channel", 0) * counts["per_channel"])
    planned, basis = profile.peak_activation_bytes, "peak activation memory"
    path = Path(profile.path) if profile.path else None
    if profile.source == "tflite" and path is not None and path.is_file():
        from edgeopt.hardware.tflite_stats import tflm_planned_bytes

        planned, basis = tflm_planned_bytes(path), "TFLM greedy-planner replay"
    # While planning, TFLM keeps its bookkeeping in the not-yet-planned part of the arena.
    scratch_coef = arena_cal.get("planner_scratch_bytes", {})
    scratch = (scratch_coef.get("per_tensor", 0) * counts["tensors"]
               + scratch_coef.get("per_activation_tensor", 0) * counts["activation_tensors"])
    inputs = {"planned_activation_bytes": int(planned), "planner_scratch_bytes": int(scratch),
              "persistent_bytes": int(round(persistent)), **{f"n_{k}": v for k, v in counts.items()}}
    if not coef:
        inputs["note"] = "no calibrated persistent overhead (calibration.yaml missing)"
    return (int(round(max(planned, scratch) + persistent)),
            f"{basis} + calibrated TFLM persistent overhead", inputs)


def arena_counts(profile: GraphProfile) -> dict[str, int]:
    """Counts that TFLM's persistent allocations scale with."""
    # TFLM's conv kernels allocate an output multiplier and shift per output channel for every
    # dtype (float too); other kernels (fully connected) only when quantized per channel.
    per_channel = sum(int(op.output_shape[-1]) for op in profile.ops if op.output_shape and (
        op.op_type in _PER_CHANNEL_OPS or "per-channel" in (op.quantization or "")))
    if profile.tensors:
        tensors = len(profile.tensors)
        activations = sum(1 for t in profile.tensors if not t.is_constant)
    else:  # Keras/ONNX profiles list no tensors: one output per op plus the input, two constants per MAC op
        activations = len(profile.ops) + 1
        tensors = activations + 2 * sum(1 for op in profile.ops if op.macs)
    return {"tensors": tensors, "activation_tensors": activations, "ops": len(profile.ops),
            "per_channel": per_channel}


def _fit(est: Estimate, profile: GraphProfile, dev: Device, cal: dict, got: dict | None = None) -> None:
    """RAM and flash needed against the device's; a provider's (compiler's) memory figures replace the
    TFLM arena estimate when it gives them (`got`)."""
    arena, basis, inputs = estimate_arena(profile, cal)
    model_bytes = int(profile.file_bytes or sum(profile.weight_bytes.values()))
    eng = data_file("engines.yaml").get("engines", {}).get(est.engine or "", {})
    runtime_ram = eng.get("runtime_ram_bytes")
    runtime_flash = eng.get("runtime_flash_bytes")
    ram_need = arena + (runtime_ram or 0)
    flash_need = model_bytes + (runtime_flash or 0)
    est.ram = {"arena_bytes": arena, "arena_basis": basis, "arena_inputs": inputs,
               "runtime_bytes": runtime_ram, "needed_bytes": ram_need,
               "capacity_bytes": int(dev.ram_kb * 1024) if dev.ram_kb is not None else None}
    est.flash = {"model_bytes": model_bytes, "runtime_code_bytes": runtime_flash,
                 "needed_bytes": flash_need,
                 "capacity_bytes": int(dev.flash_kb * 1024) if dev.flash_kb is not None else None}
    if got and got.get("ram_needed_bytes") is not None:
        ram_need = est.ram["needed_bytes"] = int(got["ram_needed_bytes"])
        est.ram["needed_basis"] = got.get("memory_method", "compiler")
    if got and got.get("flash_needed_bytes") is not None:
        flash_need = est.flash["needed_bytes"] = int(got["flash_needed_bytes"])
        est.flash["needed_basis"] = got.get("memory_method", "compiler")
    if dev.device_class == "mcu" and (runtime_ram is None or runtime_flash is None):
        est.warnings.append("runtime RAM/code size not in the catalogue: RAM and flash needs exclude the runtime")
    fits = True
    if dev.bandwidth_is_host_link:
        cache = dev.onchip_weight_cache_kb
        weights = sum(profile.weight_bytes.values())
        if cache is not None and weights > cache * 1024:
            est.warnings.append(f"weights {fmt_bytes(weights)} > {fmt_bytes(cache * 1024)} on-chip cache: "
                                "the rest streams from the host every inference")
        est.fits = None if cache is None else True
        if cache is None:
            est.missing.append("on-chip memory size (cannot check the model fits)")
        return
    if est.ram["capacity_bytes"] is None:
        est.missing.append("RAM size")
        fits = None
    elif ram_need > est.ram["capacity_bytes"]:
        est.blockers.append(f"does not fit: arena {fmt_bytes(ram_need)} > {fmt_bytes(est.ram['capacity_bytes'])} RAM")
        fits = False
    if dev.device_class == "mcu":
        if est.flash["capacity_bytes"] is None:
            est.missing.append("flash size")
            fits = None if fits else fits
        elif flash_need > est.flash["capacity_bytes"]:
            est.blockers.append(f"does not fit: model {fmt_bytes(flash_need)} > {fmt_bytes(est.flash['capacity_bytes'])} flash")
            fits = False
    est.fits = fits


# --------------------------------------------------------------------------- latency
@dataclass
class Rates:
    """Cycle rates of one core + engine: units per cycle by op class, and the latency ratio range."""
    rates: dict[str, float] | None
    low: float  # latency interval = estimate x [low, high]
    high: float
    basis: str  # calibrated | composed | assumed | coarse | unknown
    how: str


def _log_cost(cal: dict, core_effect: float, engine: str, core: str) -> dict[str, float]:
    """log cycles per unit by class = core effect + engine effect + class effect + interaction."""
    e = cal["engines"][engine]
    inter = e.get("interaction", {}).get(core, 0.0)
    return {c: core_effect + e["effect"] + e["class_effect"].get(c, 0.0) + inter for c in CLASSES}


def _calibrated(cal: dict, engine: str | None) -> bool:
    return "effect" in cal.get("engines", {}).get(engine or "", {})


def _engine_used(engine: str | None, cal: dict) -> tuple[str | None, list[str], float]:
    """(engine whose rates apply, notes, range factor): an engine without rows borrows those of its
    `assumed_like` (or `fallback`) engine, range widened by engine_spread_factor."""
    if _calibrated(cal, engine):
        return engine, [], 1.0
    spec = data_file("engines.yaml").get("engines", {}).get(engine or "", {})
    like = spec.get("assumed_like") or spec.get("fallback")
    if not _calibrated(cal, like):
        return None, [], 1.0
    f = float(cal["uncalibrated"]["engine_spread_factor"])
    why = " ".join(str(spec.get("why", "its rows are not in this calibration")).split())
    return like, [f"no calibration for {engine}: assumed like {like} ({why}); range widened x/÷{f:.2f}, "
                  "the largest spread between engines on one board and model"], f


def _coarse_rates(dev: Device, coarse: dict) -> Rates:
    r = float(coarse["int8"])
    lo, hi = coarse.get("range", [r, r])
    return Rates(dict.fromkeys(CLASSES, r), r / hi, r / lo, "coarse",
                 f"coarse single MACs/cycle for {dev.core}, engine not modelled: "
                 f"{' '.join(str(coarse.get('source', '')).split())}")


def mcu_rates(dev: Device, engine: str | None, cal: dict) -> Rates:
    """Rates for an MCU's int8 kernels on `engine`, with the interval of their basis.

    Engine without calibration rows: its `assumed_like` (or `fallback`) engine, range widened by
    engine_spread_factor. Core without calibration: its published coarse MACs/cycle range if
    cores.yaml has one, else the mean calibrated core, range widened by core_spread_factor.
    """
    core = core_info(dev)
    key = core.get("calibration_core", dev.core)
    core_eff = cal.get("core_effect", {})
    used, notes, factor = _engine_used(engine, cal)
    coarse = core.get("coarse_macs_per_cycle", {})
    if "int8" in coarse and (used is None or key not in core_eff):
        return _coarse_rates(dev, coarse)
    if used is None or not core_eff:
        return Rates(None, 1.0, 1.0, "unknown", f"no calibration for core '{dev.core}' with engine '{engine}'")
    entry = cal["engines"][used]
    effect, seen = core_eff.get(key), key in entry.get("interaction", {})
    if effect is None:
        effect = sum(core_eff.values()) / len(core_eff)
        f = float(cal["uncalibrated"]["core_spread_factor"])
        notes.append(f"core {dev.core} not calibrated: assumed like the mean calibrated core "
                     f"({', '.join(core_eff)}); range widened x/÷{f:.2f}, the spread between calibrated cores")
        factor *= f
    iv = entry["interval" if seen else "composed_interval"]
    if notes:
        how, basis = "; ".join(notes), "assumed"
    elif seen:
        how, basis = f"calibrated on MLPerf Tiny ({engine}, {key}; interval from {iv['n']} held-out predictions)", \
            "calibrated"
    else:
        how, basis = (f"composed: {key} was not measured with {engine}; core effect from other engines, "
                      "engine effect from other cores"), "composed"
    cost = _log_cost(cal, effect, used, key)
    return Rates({c: math.exp(-v) for c, v in cost.items()}, iv["low"] / factor, iv["high"] * factor, basis, how)


def _pick(rates: dict[str, float], precision: str) -> tuple[str, float] | None:
    for p in _PRECISION_FALLBACK.get(precision, [precision]):
        if p in rates:
            return p, rates[p]
    return None


def _traffic_bytes(op: OpStats) -> int:
    return sum(op.weight_bytes.values()) + op.input_bytes + op.activation_bytes


def _memory_seconds(profile: GraphProfile, dev: Device) -> list[float]:
    """Per-op memory time; for a host link only model I/O and weights beyond the on-chip cache."""
    bw = dev.memory_bandwidth_gbs * 1e9
    if not dev.bandwidth_is_host_link:
        return [_traffic_bytes(op) / bw for op in profile.ops]
    return [_link_bytes(profile, dev) / bw]


def _link_bytes(profile: GraphProfile, dev: Device) -> float:
    io = profile.ops[0].input_bytes + profile.ops[-1].activation_bytes if profile.ops else 0
    weights = sum(profile.weight_bytes.values())
    cache = dev.onchip_weight_cache_kb
    return io + (max(0.0, weights - cache * 1024) if cache is not None else 0.0)  # None: weights on chip


def _set_latency(est: Estimate, ms: float, low: float | None, high: float | None, basis: str, why: str) -> None:
    est.latency_ms, est.basis = ms, basis
    est.latency_is_lower_bound = basis == "lower-bound"
    est.latency_range_ms = asdict(Interval(ms, low, high, why))


def _latency(est: Estimate, profile: GraphProfile, dev: Device, cal: dict) -> None:
    precision = profile.precision
    info: dict = {"precision": precision, "total_macs": profile.total_macs}
    mem = _memory_seconds(profile, dev) if dev.memory_bandwidth_gbs else None
    if mem is not None:
        info["memory_bandwidth_gbs"] = dev.memory_bandwidth_gbs
    est.latency = info
    if dev.device_class == "mcu" and not dev.effective_gmacs and _mcu_latency(est, profile, dev, cal, info):
        return
    eff = _pick(dev.effective_gmacs, precision)
    if eff:
        rate = eff[1] * 1e9
        ms = 1e3 * _roofline([op_work(op) / rate for op in profile.ops], mem)
        f = float(cal["uncalibrated"]["single_throughput_factor"])
        _set_latency(est, ms, ms / f, ms * f, "published-throughput",
                     f"one published benchmark's MACs/s; x/÷{f:.2f} = how much MACs/s varies between the "
                     "MLPerf Tiny models on one calibrated board and engine")
        info.update(method="throughput achieved on a published benchmark, per-op roofline",
                    effective_gmacs=eff[1], throughput_precision=eff[0], source=dev.source_of("effective_gmacs"))
        return
    peak = _pick(dev.peak_gops, precision)
    if peak:
        rate = peak[1] * 1e9 / 2  # ops -> MACs
        ms = 1e3 * _roofline([op_work(op) / rate for op in profile.ops], mem)
        _set_latency(est, ms, ms, None, "lower-bound",
                     "lower bound only: peak throughput, no published efficiency (the real latency is unknown "
                     "and can be orders of magnitude longer)")
        info.update(method="lower bound: peak throughput (no published efficiency)", peak_gops=peak[1],
                    throughput_precision=peak[0], source=dev.source_of("peak_gops"))
        if dev.device_class in ("npu", "accelerator"):
            est.accelerator = f"accelerator not modelled ({dev.device_class}: peak throughput only)"
        return
    if dev.origin == "host":
        est.missing.append("host throughput (latency on this machine is measured by runs, not estimated)")
    elif "not_calibrated" not in info:
        have = sorted(set(dev.effective_gmacs) | set(dev.peak_gops))
        est.missing.append(f"throughput for {precision}" + (f" (catalogue has {', '.join(have)})" if have else
                                                           " (no peak or measured throughput in the catalogue)"))


def _roofline(compute: list[float], memory: list[float] | None) -> float:
    if memory is None:
        return sum(compute)
    if len(memory) == len(compute):
        return sum(max(c, m) for c, m in zip(compute, memory))
    return max(sum(compute), sum(memory))


def _mcu_latency(est: Estimate, profile: GraphProfile, dev: Device, cal: dict, info: dict) -> bool:
    """Calibrated MCU latency; False (with the problem noted) to fall through to throughput figures."""
    r = None
    if precision_class(profile.precision) != "int8":
        problem = (f"{profile.precision} MACs/cycle for {dev.core} (MCU constants are calibrated "
                   "on int8 MLPerf Tiny models only)")
    else:
        r = mcu_rates(dev, est.engine, cal)
        problem = None if r.rates else f"MACs/cycle for core '{dev.core}' with engine '{est.engine}' (no calibration)"
        if r.rates and dev.clock_mhz is None:
            problem = "clock_mhz"
    if problem:
        info["not_calibrated"] = problem
        if not dev.peak_gops:
            est.missing.append(problem)
            return True
        return False
    iv = mcu_latency(profile, dev, est.engine, cal, r)
    _set_latency(est, iv.value, iv.low, iv.high, r.basis, r.how)
    info.update(method="per op class: work / cycle rate of core and engine / clock",
                clock_mhz=dev.clock_mhz, engine=est.engine, rates={c: round(v, 5) for c, v in r.rates.items()},
                rates_basis=r.how, work=work_by_class(profile),
                units="rates: MACs/cycle (conv, pointwise, depthwise, fc), elements read+written per cycle (others)")
    return True


def mcu_latency(profile: GraphProfile, dev: Device, engine: str | None, cal: dict | None = None,
                rates: Rates | None = None) -> Interval | None:
    """Latency (ms) of an int8 profile on an MCU with `engine`, with its interval; None when the
    core/engine has no rates or the device no clock. The calibration script validates through this."""
    cal = cal if cal is not None else data_file("calibration.yaml")
    r = rates or mcu_rates(dev, engine, cal)
    if not r.rates or dev.clock_mhz is None:
        return None
    ms = 1e3 * mcu_cycles(profile, r.rates) / (dev.clock_mhz * 1e6)
    return Interval(ms, ms * r.low, ms * r.high, r.basis)


def precision_class(precision: str) -> str:
    return "int8" if precision in _INT8 else precision


# --------------------------------------------------------------------------- memory traffic
def memory_traffic(profile: GraphProfile) -> dict[str, int]:
    """Bytes moved per inference (batch 1): every weight read once, every op's inputs read and
    outputs written once (the TFLM arena holds them; caches are ignored)."""
    weights = sum(sum(op.weight_bytes.values()) for op in profile.ops) or sum(profile.weight_bytes.values())
    reads = sum(op.input_bytes for op in profile.ops)
    writes = sum(op.activation_bytes for op in profile.ops)
    return {"weight_bytes": int(weights), "activation_read_bytes": int(reads),
            "activation_write_bytes": int(writes), "total_bytes": int(weights + reads + writes)}


def _memory_traffic(est: Estimate, profile: GraphProfile, dev: Device) -> None:
    t = memory_traffic(profile)
    info: dict = {**t, "arena_bytes": est.ram.get("arena_bytes"),
                  "device_bandwidth_gbs": dev.memory_bandwidth_gbs,
                  "device_bandwidth_source": dev.source_of("memory_bandwidth_gbs")}
    moved = _link_bytes(profile, dev) if dev.bandwidth_is_host_link else t["total_bytes"]
    if dev.bandwidth_is_host_link:
        info["link_bytes"] = int(moved)
    lr = est.latency_range_ms
    if est.latency_ms:
        need = lambda ms: None if not ms else moved / (ms / 1e3) / 1e9  # noqa: E731
        info["needed_gbs"] = need(est.latency_ms)
        info["needed_gbs_range"] = [need(lr.get("high")), need(lr.get("low"))]
    if dev.memory_bandwidth_gbs is None:
        info["bound"] = "unknown (no memory bandwidth figure for this device)"
    else:
        mem_ms = 1e3 * moved / (dev.memory_bandwidth_gbs * 1e9)
        info["memory_time_ms"] = mem_ms
        if est.latency_ms is None:
            info["bound"] = "unknown (no latency)"
        else:  # share of the latency that moving the bytes alone takes (1.0 = all of it)
            info["memory_share"] = mem_ms / est.latency_ms
            info["bound"] = "memory-bound" if info["memory_share"] >= 0.5 else "compute-bound"
            if info["bound"] == "memory-bound":
                est.warnings.append(f"memory-bound: moving {fmt_bytes(moved)} takes {mem_ms:.3g} ms at "
                                    f"{dev.memory_bandwidth_gbs:g} GB/s")
    est.memory_traffic = info


# --------------------------------------------------------------------------- energy, duty cycle
def _energy(est: Estimate, dev: Device) -> None:
    if est.latency_ms is None:
        return
    if dev.active_power_w is None:
        est.missing.append("active power")
        return
    p = dev.active_power_w
    lr = est.latency_range_ms
    est.energy_mj = p * est.latency_ms
    est.energy_range_mj = asdict(Interval(est.energy_mj, None if lr.get("low") is None else p * lr["low"],
                                          None if lr.get("high") is None else p * lr["high"],
                                          "active power x latency interval"))
    est.energy = {"active_power_w": p, "latency_ms": est.latency_ms, "source": dev.source_of("active_power_w"),
                  "formula": "active power x latency" + (" (lower bound)" if est.latency_is_lower_bound else "")}


def _figure(dev: Device, name: str) -> str:
    src = dev.source_of(name)
    return f"{getattr(dev, name):g} ({src})" if src else f"{getattr(dev, name):g}"


def _duty_cycle(est: Estimate, dev: Device, per_hour: float, battery_mah: float | None, battery_v: float) -> None:
    """Average power over an hour of `per_hour` inferences and the battery life it gives.

    Per inference: wake-up (wakeup_s at active power) + inference (energy interval). Between
    inferences an MCU sleeps (sleep_power_w), any other device idles (idle_power_w). A figure the
    catalogue lacks becomes a range with the assumption named: unknown sleep/idle power lies between
    0 and active power; an unknown wake-up costs between 0 and staying awake (idle) instead.
    """
    if est.latency_ms is None or est.energy_mj is None:
        return
    lr, er = est.latency_range_ms, est.energy_range_mj
    busy_s = per_hour * est.latency_ms / 1e3
    if busy_s > 3600:
        est.blockers.append(f"cannot run {per_hour:g} inferences/hour: each takes "
                            f"{est.latency_ms:.3g} ms ({busy_s / 3600:.1f} h of work per hour)")
        return
    pa = dev.active_power_w
    sleeps = dev.device_class == "mcu" or dev.sleep_power_w is not None
    assumptions, figures = [], {"active_power_w": _figure(dev, "active_power_w")}
    if sleeps:
        rest_lo = rest_hi = dev.sleep_power_w
        if dev.sleep_power_w is None:
            rest_lo, rest_hi = 0.0, dev.idle_power_w if dev.idle_power_w is not None else pa
            assumptions.append(f"sleep power unknown: between 0 and {'idle' if dev.idle_power_w is not None else 'active'}"
                               f" power ({rest_hi:g} W)")
        else:
            figures["sleep_power_w"] = _figure(dev, "sleep_power_w")
        wake_lo = wake_hi = (dev.wakeup_s or 0.0) * pa
        if dev.wakeup_s is None:
            wake_hi = None  # bounded below by 0 and above by never sleeping (rest at the upper power)
            assumptions.append("wake-up cost unknown: between 0 and staying awake between inferences")
        else:
            figures["wakeup_s"] = _figure(dev, "wakeup_s")
    else:
        rest_lo = rest_hi = dev.idle_power_w
        wake_lo = wake_hi = 0.0
        if dev.idle_power_w is None:
            rest_lo, rest_hi = 0.0, pa
            assumptions.append(f"idle power unknown: between 0 and active power ({pa:g} W)")
        else:
            figures["idle_power_w"] = _figure(dev, "idle_power_w")

    def avg_w(e_mj, ms, rest, wake):
        if e_mj is None or ms is None:
            return None
        return (per_hour * (e_mj / 1e3 + wake) + rest * max(0.0, 3600 - per_hour * ms / 1e3)) / 3600

    point = None if assumptions else avg_w(est.energy_mj, est.latency_ms, rest_lo, wake_lo)
    low = avg_w(er.get("low"), lr.get("low"), rest_lo, wake_lo)
    high = avg_w(er.get("high"), lr.get("high"), rest_hi, wake_hi if wake_hi is not None else 0.0)
    if wake_hi is None and high is not None:  # an unknown wake-up never costs more than staying awake
        high = max(high, avg_w(er.get("high"), lr.get("high"), rest_hi, 0.0))
    est.power = {"average_w": point, "average_w_range": [low, high], "inferences_per_hour": per_hour,
                 "between_inferences": "sleep" if sleeps else "idle", "figures": figures,
                 "assumptions": assumptions,
                 "formula": "(n x (inference energy + wake-up energy) + rest power x rest time) / 3600 s"}
    if assumptions:
        est.missing.extend(a.split(":")[0].removesuffix(" unknown") for a in assumptions)
    if battery_mah is None:
        return
    capacity_j = battery_mah / 1e3 * 3600 * battery_v
    life = lambda w: None if w is None else (math.inf if w <= 0 else capacity_j / w / 3600)  # noqa: E731
    est.battery_life_h = life(point)
    est.battery_life_range_h = asdict(Interval(est.battery_life_h, life(high), life(low),
                                               "; ".join(assumptions) or "latency interval"))
    est.battery_life_is_upper_bound = bool(assumptions)
    est.battery = {"battery_mah": battery_mah, "battery_v": battery_v, "inferences_per_hour": per_hour,
                   "energy_per_hour_j": None if point is None else point * 3600,
                   "idle_power_w": dev.idle_power_w, "sleep_power_w": dev.sleep_power_w,
                   "formula": "capacity (mAh x V x 3.6 J) / average power"}


# --------------------------------------------------------------------------- constraints
def _constraints(est: Estimate, profile: GraphProfile, dev: Device) -> None:
    precision = profile.precision
    float_compute = [op.op_type for op in profile.ops if op.macs and op.dtype.startswith("float")]
    if dev.constraints.requires_full_int8 and precision not in _INT8 and precision not in dev.precisions:
        est.blockers.append(f"needs a full-int8 model (this one is {precision})")
    elif dev.constraints.requires_full_int8 and float_compute:  # mixed precision: some ops kept float
        est.blockers.append(f"needs a full-int8 model ({len(float_compute)} compute op(s) are float: "
                            f"{', '.join(dict.fromkeys(float_compute))})")
    is_float = precision in ("float32", "float16", "bfloat16")
    if dev.device_class == "mcu" and is_float and not has_fpu(dev):
        est.blockers.append(f"{precision} model on an MCU without FPU ({dev.core})")
    uses_tflm = dev.constraints.op_list == "tflm" or "tflm" in dev.runtimes and dev.device_class == "mcu"
    not_runnable = data_file("ops.yaml")["op_lists"]["tflm"].get("precisions_not_runnable", {})
    if uses_tflm and precision in not_runnable:
        listed = f" (device precisions: {', '.join(dev.precisions)})" if dev.precisions else ""
        est.blockers.append(f"{not_runnable[precision]}{listed}; use full int8")
    if dev.precisions and precision not in dev.precisions and not any(b.startswith("needs") for b in est.blockers):
        est.warnings.append(f"{precision} is not among the listed precisions ({', '.join(dev.precisions)}): "
                            "the runtime would convert it")
    name = dev.constraints.op_list
    if name and not (name == "edgetpu" and est.edgetpu):
        _check_ops(est, profile, name)


def _edgetpu(est: Estimate, profile: GraphProfile) -> None:
    """Edge TPU partition (edgetpu.edgetpu_readiness): the first op that ends it and the share of ops and
    MACs before it. Nothing on the TPU blocks; a partial partition warns and opens the latency's upper end
    (the ops after the break run on the host CPU, which this estimate does not cover)."""
    from edgeopt.hardware.edgetpu import edgetpu_readiness

    r = edgetpu_readiness(profile.path)
    est.edgetpu = r.to_dict()
    if r.ready:
        return
    b = r.first_break
    where = f"op #{b.index} {b.op_type} ({b.name}): {b.reason}"
    if r.tpu_ops == 0:
        est.blockers.append(f"nothing would run on the Edge TPU: the partition ends at {where}")
        return
    est.warnings.append(f"Edge TPU partition ends at {where}: {r.tpu_ops} of {r.total_ops} ops, "
                        f"{r.tpu_mac_fraction:.0%} of MACs on the TPU; the rest runs on the host CPU")
    if est.latency_range_ms:
        est.latency_range_ms["high"] = None
        est.latency_range_ms["basis"] += "; upper end open: ops after the Edge TPU partition run on the host CPU"


def _check_ops(est: Estimate, profile: GraphProfile, list_name: str) -> None:
    allowed = op_list(list_name)
    if allowed is None:
        est.warnings.append(f"op list '{list_name}' not found in ops.yaml")
        return
    if profile.source != "tflite":
        est.warnings.append(f"op support ({list_name}) is checked on .tflite models only")
        return
    bad = sorted({op.op_type for op in profile.ops} - allowed)
    if not bad:
        return
    policy = data_file("ops.yaml")["op_lists"][list_name].get("on_unsupported", "block")
    if policy == "block":
        est.blockers.append(f"ops not supported by {list_name.upper()}: {', '.join(bad)}")
    else:
        est.warnings.append(f"ops not supported on {list_name}: {', '.join(bad)} (run on the host CPU)")
