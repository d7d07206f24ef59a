"""Edge versus cloud: energy, CO2e and cost per year of serving N inferences a day on a device or on a cloud
instance. Every figure comes from hardware/cloud.yaml (each with its source) or from edgeopt's own numbers
(the device estimate, the latency edgeopt measured) and every line carries its formula.

Cloud side (Cloud Carbon Footprint methodology): instances stay on all year; each inference keeps one vCPU
busy for the latency edgeopt measured on the host (1 thread); power = vCPUs x (min W + utilisation x
(max W - min W)) + memory GB x W/GB, times PUE; plus network energy for sending each input and its result.
Device side: N x energy per inference (the device estimate: active power x latency) plus idle power for
the rest of the day when the device data has it (otherwise the figure is a lower bound and says so).
Both sides use the same grid emission factor, so the comparison shows efficiency, not geography.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from edgeopt.errors import UserError

CLOUD_FILE = Path(__file__).resolve().parent / "hardware" / "cloud.yaml"
HOURS_PER_YEAR = 24 * 365
LB_TO_KG = 0.45359237


@lru_cache(maxsize=None)
def cloud_data() -> dict:
    import yaml

    return yaml.safe_load(CLOUD_FILE.read_text())


@dataclass
class Line:
    """One figure of a footprint: value, unit, how it was computed and where its inputs come from."""
    item: str
    value: float
    unit: str
    formula: str
    source: str


@dataclass
class SideFootprint:
    """Energy, CO2e and cost per year on one side (device or cloud)."""
    name: str
    energy_kwh_per_year: float
    co2e_kg_per_year: float
    cost_usd_per_year: float
    lower_bound: bool = False  # a figure is missing (e.g. idle power): true values are higher
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Footprint:
    inferences_per_day: float
    grid: str
    grid_kg_per_kwh: float
    device: SideFootprint
    cloud: SideFootprint
    context: list[Line] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _grid(region: str) -> float:
    grids = cloud_data()["grids"]
    if region not in grids:
        raise UserError(f"unknown grid region '{region}'; known: {', '.join(grids)}")
    return grids[region] * 1000  # t/kWh -> kg/kWh


def _instance(name: str) -> dict:
    instances = cloud_data()["instances"]
    if name not in instances:
        raise UserError(f"unknown cloud instance '{name}'; known: {', '.join(instances)}")
    return instances[name]


def cloud_footprint(latency_ms: float, io_bytes: int, inferences_per_day: float, instance: str,
                    region: str) -> SideFootprint:
    """CLOUD side for INFERENCES_PER_DAY inferences of LATENCY_MS (one vCPU busy each), IO_BYTES sent and
    returned per inference, on INSTANCE in REGION's grid (names in hardware/cloud.yaml)."""
    d, inst = cloud_data(), _instance(instance)
    kg_per_kwh = _grid(region)
    busy_vcpus = inferences_per_day * latency_ms / 1e3 / 86400  # average vCPUs kept busy
    count = max(1, math.ceil(busy_vcpus / inst["vcpus"]))
    util = busy_vcpus / (count * inst["vcpus"])
    cpu_w = count * inst["vcpus"] * (inst["min_watts_per_vcpu"] + util * (inst["max_watts_per_vcpu"]
                                                                         - inst["min_watts_per_vcpu"]))
    mem_w = count * inst["memory_gb"] * d["memory_w_per_gb"]
    server_kwh = (cpu_w + mem_w) * HOURS_PER_YEAR / 1000 * d["pue"]
    gb = inferences_per_day * 365 * io_bytes / 1e9
    net_kwh = gb * d["network_kwh_per_gb"]
    kwh = server_kwh + net_kwh
    cost = count * inst["price_usd_per_hour"] * HOURS_PER_YEAR
    src = "hardware/cloud.yaml"
    lines = [
        Line("instances", count, "", "max(1, ceil(N/day x latency / 86400 s / vCPUs))", f"latency measured by edgeopt; {src}"),
        Line("vCPU utilisation", util, "fraction", "N/day x latency / 86400 s / (instances x vCPUs)", "edgeopt run"),
        Line("CPU power", cpu_w, "W", "instances x vCPUs x (min W + utilisation x (max W - min W))", f"{src} (CCF)"),
        Line("memory power", mem_w, "W", "instances x memory GB x memory W/GB", f"{src} (CCF)"),
        Line("server energy", server_kwh, "kWh/year", "(CPU W + memory W) x 8760 h x PUE", f"{src} (CCF PUE)"),
        Line("network energy", net_kwh, "kWh/year", "N/day x 365 x bytes in+out x network kWh/GB", f"{src} (CCF)"),
        Line("energy", kwh, "kWh/year", "server + network", ""),
        Line("CO2e", kwh * kg_per_kwh, "kg/year", f"energy x {region} grid factor", f"{src} (CCF grid factors)"),
        Line("cost", cost, "USD/year", "instances x price per hour x 8760 h", f"{src} (on-demand price)")]
    return SideFootprint(f"cloud: {instance}", kwh, kwh * kg_per_kwh, cost, lines=lines,
                         notes=[f"{inst['title']}; latency measured on the host edgeopt ran on, assumed for the instance"])


def device_footprint(device_name: str, energy_per_inference_j: float, latency_ms: float, idle_power_w,
                     inferences_per_day: float, region: str, price_usd=None, lifetime_years=None) -> SideFootprint:
    """DEVICE side: INFERENCES_PER_DAY x ENERGY_PER_INFERENCE_J plus IDLE_POWER_W (None: unknown, lower
    bound) for the rest of the day; electricity at the data file's price; PRICE_USD spread over
    LIFETIME_YEARS when both are given."""
    d = cloud_data()
    kg_per_kwh = _grid(region)
    busy_s = inferences_per_day * latency_ms / 1e3
    if busy_s > 86400:
        raise UserError(f"{device_name} cannot run {inferences_per_day:g} inferences a day: each takes "
                        f"{latency_ms:.3g} ms ({busy_s / 86400:.1f} days of work per day)")
    active_j = inferences_per_day * energy_per_inference_j
    idle_j = (idle_power_w or 0.0) * (86400 - busy_s)
    kwh = (active_j + idle_j) * 365 / 3.6e6
    power_cost = kwh * d["electricity_usd_per_kwh"]
    hw_cost = price_usd / lifetime_years if price_usd and lifetime_years else 0.0
    lines = [
        Line("inference energy", active_j * 365 / 3.6e6, "kWh/year", "N/day x 365 x energy per inference",
             "device estimate (active power x latency)"),
        Line("idle energy", idle_j * 365 / 3.6e6, "kWh/year", "idle W x (86400 s - busy s) x 365",
             "device data (idle_power_w)" if idle_power_w is not None else "idle power unknown: counted as 0"),
        Line("energy", kwh, "kWh/year", "inference + idle", ""),
        Line("CO2e", kwh * kg_per_kwh, "kg/year", f"energy x {region} grid factor", "hardware/cloud.yaml (CCF)"),
        Line("electricity cost", power_cost, "USD/year", "energy x electricity price", "hardware/cloud.yaml (EIA)")]
    notes = ["inference on the device: no network transfer counted"]
    if hw_cost:
        lines.append(Line("hardware", hw_cost, "USD/year", f"device price / {lifetime_years:g} years", "device data"))
    elif price_usd:
        notes.append(f"device price {price_usd:g} USD one-off (give --device-years to spread it per year)")
    if idle_power_w is None:
        notes.append("idle power unknown: energy, CO2e and cost count inference only (lower bounds)")
    return SideFootprint(f"device: {device_name}", kwh, kwh * kg_per_kwh, power_cost + hw_cost,
                         lower_bound=idle_power_w is None, lines=lines, notes=notes)


def context_lines() -> list[Line]:
    """CO2e of familiar activities and model training, for scale (Strubell et al. 2019, Table 1)."""
    return [Line(item, lbs * LB_TO_KG, "kg CO2e", "lbs x 0.45359237", "Strubell et al. 2019, Table 1")
            for item, lbs in cloud_data()["context_lbs_co2e"].items()]


def device_energy(profile, device) -> tuple[float, float, float | None, float | None, list[str]]:
    """(energy per inference J, latency ms, idle W, price USD, blockers) from the device estimator: the one
    place that reads the estimator's result."""
    from edgeopt.hardware.estimator import estimate

    est = estimate(profile, device)
    if est.energy_mj is None or est.latency_ms is None:
        why = "; ".join(est.blockers + est.missing) or "no latency or power figure"
        raise UserError(f"no energy estimate for {device.name}: {why}")
    return est.energy_mj / 1e3, est.latency_ms, device.idle_power_w, device.price_usd, list(est.blockers)


def footprint(run_dir, variant: str, device: str, inferences_per_day: float, cloud: str = "aws-m7g.large",
              region: str = "aws-average", device_years: float | None = None, devices_file=None) -> Footprint:
    """Device versus cloud footprint of VARIANT of the run in RUN_DIR. Raises UserError for bad input
    (checked before any model is read) or a device the estimator cannot run the model on."""
    from edgeopt.hardware.catalogue import get_device, load_devices
    from edgeopt.run import load_run

    if inferences_per_day <= 0:
        raise UserError("--inferences-per-day must be > 0")
    _instance(cloud), _grid(region)
    dev = get_device(device, load_devices(devices_file))
    record = load_run(run_dir)
    chosen = next((v for v in record["variants"] if v["name"] == variant and v.get("status") == "done"), None)
    if chosen is None:
        names = ", ".join(v["name"] for v in record["variants"] if v.get("status") == "done")
        raise UserError(f"no finished variant {variant!r} in {run_dir}; variants: {names}")
    latency = chosen.get("metrics", {}).get("latency_ms", {}).get("p50_ms")
    if latency is None:
        raise UserError(f"variant {variant!r} has no measured latency in {run_dir}")
    artifact = Path(run_dir) / chosen["artifact"]
    profile = _profile(artifact)
    energy_j, dev_latency, idle_w, price, blockers = device_energy(profile, dev)
    if blockers:
        raise UserError(f"{variant} does not run on {dev.name}: {'; '.join(blockers)}")
    io_bytes = _io_bytes(profile)
    dev_side = device_footprint(dev.name, energy_j, dev_latency, idle_w, inferences_per_day, region, price,
                                device_years)
    cloud_side = cloud_footprint(latency, io_bytes, inferences_per_day, cloud, region)
    return Footprint(inferences_per_day, region, _grid(region), dev_side, cloud_side, context_lines())


def _profile(artifact: Path):
    from edgeopt.measure.graph import profile_tflite

    if artifact.suffix != ".tflite":
        raise UserError(f"footprint needs a .tflite variant (device estimates read .tflite), got {artifact.name}")
    return profile_tflite(artifact, measure_arena=False)


def _io_bytes(profile) -> int:
    """Bytes sent to the cloud and back per inference: the model's input and its last op's output."""
    from edgeopt.core.tflite import tensor_bytes

    n_out = profile.ops[-1].activation_bytes if profile.ops else 0
    return tensor_bytes(profile.input_shape, profile.input_dtype) + n_out
