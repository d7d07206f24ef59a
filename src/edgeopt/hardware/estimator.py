"""Per-device estimates from a GraphProfile: fit (RAM/flash), latency, energy, battery life, blockers.

Every figure is an estimate and carries the inputs it was computed from. Latency is a per-op
roofline: an op takes max(compute time, memory time); compute comes from calibrated MACs/cycle
(microcontrollers, calibration.yaml), a throughput achieved on a published benchmark, or, as a
lower bound only, the peak throughput. Figures a device lacks are listed in `missing`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeopt.hardware.catalogue import core_info, data_file, has_fpu, op_list
from edgeopt.hardware.schema import Device
from edgeopt.measure.graph_types import GraphProfile, OpStats

DEFAULT_BATTERY_V = 3.7  # nominal Li-ion/LiPo cell voltage; override with battery_v

OP_CLASSES = {
    "conv": {"CONV_2D", "CONV_1D", "CONV_3D", "TRANSPOSE_CONV", "CONV_3D_TRANSPOSE", "SEPARABLE_CONV_2D"},
    "depthwise": {"DEPTHWISE_CONV_2D"},
    "fc": {"FULLY_CONNECTED", "BATCH_MATMUL"},
}
_INT8 = {"int8", "uint8"}
_PER_CHANNEL_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D"}
_ITEMSIZE = {"int8": 1, "uint8": 1, "int16": 2, "int16x8": 2, "float16": 2, "bfloat16": 2, "int4": 1}
# precision a model computes in -> precisions whose throughput figures may serve for it
_PRECISION_FALLBACK = {
    "int8": ["int8", "float16", "float32"], "int16x8": ["int16x8"], "int16": ["int16x8", "int16"],
    "float32": ["float32", "float16"], "float16": ["float16", "float32"],
    "hybrid": ["float32", "float16"], "int4": ["int8"],
}


def op_class(op_type: str) -> str:
    for name, kinds in OP_CLASSES.items():
        if op_type in kinds:
            return name
    return "elementwise"


def op_work(op: OpStats) -> float:
    """MACs for MAC ops; elements read + written for every other op (the unit of its rate)."""
    if op_class(op.op_type) != "elementwise":
        return float(op.macs)
    itemsize = _ITEMSIZE.get(op.dtype, 4)
    return (op.input_bytes + op.activation_bytes) / itemsize


def work_by_class(profile: GraphProfile) -> dict[str, float]:
    out = {"conv": 0.0, "depthwise": 0.0, "fc": 0.0, "elementwise": 0.0}
    for op in profile.ops:
        out[op_class(op.op_type)] += op_work(op)
    return out


def mcu_cycles(profile: GraphProfile, rates: dict[str, float]) -> float:
    """Cycles = sum over ops of work / rate of the op's class (MACs/cycle, elements/cycle)."""
    return sum(w / rates[c] for c, w in work_by_class(profile).items() if w)


@dataclass
class Estimate:
    device: str
    device_title: str
    device_class: str
    model: str
    precision: str
    label: str = "estimate"
    fits: bool | None = None
    ram: dict = field(default_factory=dict)
    flash: dict = field(default_factory=dict)
    latency_ms: float | None = None
    latency_is_lower_bound: bool = False
    latency: dict = field(default_factory=dict)
    energy_mj: float | None = None
    energy: dict = field(default_factory=dict)
    battery_life_h: float | None = None
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


def estimate(profile: GraphProfile, device: Device, *, battery_mah: float | None = None,
             inferences_per_hour: float | None = None, battery_v: float = DEFAULT_BATTERY_V,
             calibration: dict | None = None, host_latency_ms: float | None = None) -> Estimate:
    """All estimates of one model on one device.

    host_latency_ms: a latency measured on this machine (a run's p50); used for the host-cpu
    device instead of an estimate, and labelled as measured.
    """
    cal = calibration if calibration is not None else data_file("calibration.yaml")
    est = Estimate(device=device.name, device_title=device.title or device.name,
                   device_class=device.device_class, model=profile.path, precision=profile.precision,
                   price_usd=device.price_usd, active_power_w=device.active_power_w)
    _fit(est, profile, device, cal)
    if device.origin == "host" and host_latency_ms is not None:
        est.latency_ms = float(host_latency_ms)
        est.latency = {"method": "measured on this machine by the run (p50)", "precision": profile.precision}
        est.label = "estimate (latency measured)"
    else:
        _latency(est, profile, device, cal)
    _energy(est, device, battery_mah, inferences_per_hour, battery_v)
    _constraints(est, profile, device)
    return est


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


def _kb(n: float) -> str:
    return f"{n / 1024:,.0f} KB" if n < 10 * 1024 * 1024 else f"{n / 1024 / 1024:,.0f} MB"


def _fit(est: Estimate, profile: GraphProfile, dev: Device, cal: dict) -> None:
    arena, basis, inputs = estimate_arena(profile, cal)
    model_bytes = int(profile.file_bytes or sum(profile.weight_bytes.values()))
    stack = cal.get("stacks", {}).get(dev.stack or "", {})
    runtime_ram = stack.get("runtime_ram_bytes")
    runtime_flash = stack.get("runtime_flash_bytes")
    ram_need = arena + (runtime_ram or 0)
    flash_need = model_bytes + (runtime_flash or 0)
    est.ram = {"arena_bytes": arena, "arena_basis": basis, "arena_inputs": inputs,
               "runtime_bytes": runtime_ram, "needed_bytes": ram_need,
               "capacity_bytes": int(dev.ram_kb * 1024) if dev.ram_kb is not None else None}
    est.flash = {"model_bytes": model_bytes, "runtime_code_bytes": runtime_flash,
                 "needed_bytes": flash_need,
                 "capacity_bytes": int(dev.flash_kb * 1024) if dev.flash_kb is not None else None}
    if dev.device_class == "mcu" and (runtime_ram is None or runtime_flash is None):
        est.warnings.append("runtime RAM/code size not in the catalogue: RAM and flash needs exclude the runtime")
    fits = True
    if dev.bandwidth_is_host_link:
        cache = dev.onchip_weight_cache_kb
        weights = sum(profile.weight_bytes.values())
        if cache is not None and weights > cache * 1024:
            est.warnings.append(f"weights {_kb(weights)} > {_kb(cache * 1024)} on-chip cache: "
                                "the rest streams from the host every inference")
        est.fits = None if cache is None else True
        if cache is None:
            est.missing.append("on-chip memory size (cannot check the model fits)")
        return
    if est.ram["capacity_bytes"] is None:
        est.missing.append("RAM size")
        fits = None
    elif ram_need > est.ram["capacity_bytes"]:
        est.blockers.append(f"does not fit: arena {_kb(ram_need)} > {_kb(est.ram['capacity_bytes'])} RAM")
        fits = False
    if dev.device_class == "mcu":
        if est.flash["capacity_bytes"] is None:
            est.missing.append("flash size")
            fits = None if fits else fits
        elif flash_need > est.flash["capacity_bytes"]:
            est.blockers.append(f"does not fit: model {_kb(flash_need)} > {_kb(est.flash['capacity_bytes'])} flash")
            fits = False
    est.fits = fits


# --------------------------------------------------------------------------- latency
def _pick(rates: dict[str, float], precision: str) -> tuple[str, float] | None:
    for p in _PRECISION_FALLBACK.get(precision, [precision]):
        if p in rates:
            return p, rates[p]
    return None


def mcu_rates(dev: Device, cal: dict) -> tuple[dict | None, str, str]:
    """(rates by op class, stack used, how they were obtained) for an MCU's int8 kernels."""
    core = core_info(dev)
    key = core.get("calibration_core", dev.core)
    stack = dev.stack or core.get("default_stack", "")
    entry = cal.get("stacks", {}).get(stack, {}).get("cores", {}).get(key)
    if entry:
        return dict(entry["rates"]), stack, f"calibrated on MLPerf Tiny ({stack}, {key})"
    coarse = core.get("coarse_macs_per_cycle", {})
    if "int8" in coarse:
        r = float(coarse["int8"])
        return ({c: r for c in ("conv", "depthwise", "fc", "elementwise")}, stack,
                f"coarse single MACs/cycle for {dev.core}: {coarse.get('source', '')}".strip())
    return None, stack, ""


def _traffic_bytes(op: OpStats) -> int:
    return sum(op.weight_bytes.values()) + op.input_bytes + op.activation_bytes


def _memory_seconds(profile: GraphProfile, dev: Device) -> list[float]:
    """Per-op memory time; for a host link only model I/O and weights beyond the on-chip cache."""
    bw = dev.memory_bandwidth_gbs * 1e9
    if not dev.bandwidth_is_host_link:
        return [_traffic_bytes(op) / bw for op in profile.ops]
    io = 0
    if profile.ops:
        io = profile.ops[0].input_bytes + profile.ops[-1].activation_bytes
    weights = sum(profile.weight_bytes.values())
    cache = dev.onchip_weight_cache_kb
    spill = max(0.0, weights - cache * 1024) if cache is not None else 0.0  # None: weights live on chip
    return [(io + spill) / bw]


def _latency(est: Estimate, profile: GraphProfile, dev: Device, cal: dict) -> None:
    precision = profile.precision
    info: dict = {"precision": precision, "total_macs": profile.total_macs}
    mem = _memory_seconds(profile, dev) if dev.memory_bandwidth_gbs else None
    if mem is not None:
        info["memory_bandwidth_gbs"] = dev.memory_bandwidth_gbs
    if dev.device_class == "mcu" and not dev.effective_gmacs and _mcu_latency(est, profile, dev, cal, info, mem):
        return
    eff = _pick(dev.effective_gmacs, precision)
    if eff:
        rate = eff[1] * 1e9
        compute = [op_work(op) / rate for op in profile.ops]
        est.latency_ms = 1e3 * _roofline(compute, mem)
        info.update(method="throughput achieved on a published benchmark, per-op roofline",
                    effective_gmacs=eff[1], throughput_precision=eff[0],
                    source=dev.source_of("effective_gmacs"))
        est.latency = info
        return
    peak = _pick(dev.peak_gops, precision)
    if peak:
        rate = peak[1] * 1e9 / 2  # ops -> MACs
        compute = [op_work(op) / rate for op in profile.ops]
        est.latency_ms = 1e3 * _roofline(compute, mem)
        est.latency_is_lower_bound = True
        info.update(method="lower bound: peak throughput (no published efficiency)", peak_gops=peak[1],
                    throughput_precision=peak[0], source=dev.source_of("peak_gops"))
        est.latency = info
        return
    if dev.origin == "host":
        est.missing.append("host throughput (latency on this machine is measured by runs, not estimated)")
    else:
        have = sorted(set(dev.effective_gmacs) | set(dev.peak_gops))
        est.missing.append(f"throughput for {precision}" + (f" (catalogue has {', '.join(have)})" if have else
                                                           " (no peak or measured throughput in the catalogue)"))
    est.latency = info


def _roofline(compute: list[float], memory: list[float] | None) -> float:
    if memory is None:
        return sum(compute)
    if len(memory) == len(compute):
        return sum(max(c, m) for c, m in zip(compute, memory))
    return max(sum(compute), sum(memory))


def _mcu_latency(est, profile, dev, cal, info, mem) -> bool:
    """Calibrated MCU latency; False (with the missing figure noted) when it cannot be computed."""
    if precision_class(profile.precision) != "int8":
        problem = (f"{profile.precision} MACs/cycle for {dev.core} (MCU constants are calibrated "
                   "on int8 MLPerf Tiny models only)")
    else:
        rates, stack, how = mcu_rates(dev, cal)
        problem = None if rates else f"MACs/cycle for core '{dev.core}' with stack '{stack}' (no calibration)"
        if rates and dev.clock_mhz is None:
            problem = "clock_mhz"
    if problem:
        if not dev.peak_gops:
            est.missing.append(problem)
            est.latency = info
            return True
        info["not_calibrated"] = problem
        return False
    hz = dev.clock_mhz * 1e6
    compute = [op_work(op) / rates[op_class(op.op_type)] / hz for op in profile.ops]
    est.latency_ms = 1e3 * _roofline(compute, mem)
    info.update(method="per-op: work / calibrated rate / clock" + (" vs memory traffic" if mem else ""),
                clock_mhz=dev.clock_mhz, stack=stack, rates=rates, rates_basis=how,
                work=work_by_class(profile))
    if mem is None:
        info["memory"] = "no bandwidth figure: compute-only (the calibrated rates include memory stalls)"
    est.latency = info
    return True


def precision_class(precision: str) -> str:
    return "int8" if precision in _INT8 else precision


# --------------------------------------------------------------------------- energy, battery
def _energy(est: Estimate, dev: Device, battery_mah, inferences_per_hour, battery_v) -> None:
    if est.latency_ms is None:
        return
    if dev.active_power_w is None:
        est.missing.append("active power")
        return
    energy_j = dev.active_power_w * est.latency_ms / 1e3
    est.energy_mj = energy_j * 1e3
    est.energy = {"active_power_w": dev.active_power_w, "latency_ms": est.latency_ms,
                  "source": dev.source_of("active_power_w"),
                  "formula": "active power x latency" + (" (lower bound)" if est.latency_is_lower_bound else "")}
    if battery_mah is None or inferences_per_hour is None:
        return
    busy_s = inferences_per_hour * est.latency_ms / 1e3
    if busy_s > 3600:
        est.blockers.append(f"cannot run {inferences_per_hour:g} inferences/hour: each takes "
                            f"{est.latency_ms:.3g} ms ({busy_s / 3600:.1f} h of work per hour)")
        return
    idle_w = dev.idle_power_w
    per_hour_j = inferences_per_hour * energy_j + (idle_w or 0.0) * (3600 - busy_s)
    capacity_j = battery_mah / 1e3 * 3600 * battery_v
    est.battery_life_h = capacity_j / per_hour_j if per_hour_j > 0 else math.inf
    est.battery = {"battery_mah": battery_mah, "battery_v": battery_v,
                   "inferences_per_hour": inferences_per_hour, "energy_per_hour_j": per_hour_j,
                   "idle_power_w": idle_w,
                   "formula": "capacity (mAh x V x 3.6 J) / (n x energy per inference + idle power x idle time)"}
    if idle_w is None:
        est.battery_life_is_upper_bound = True
        est.missing.append("idle power (battery life counts inference energy only: an upper bound)")


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
    if precision == "hybrid" and uses_tflm:
        est.blockers.append("dynamic-range (hybrid) models do not run on TFLite Micro; use full int8")
    if dev.precisions and precision not in dev.precisions and not any(b.startswith("needs") for b in est.blockers):
        est.warnings.append(f"{precision} is not among the listed precisions ({', '.join(dev.precisions)}): "
                            "the runtime would convert it")
    name = dev.constraints.op_list
    if name:
        _check_ops(est, profile, name)


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
