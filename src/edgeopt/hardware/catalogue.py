"""The device catalogue: packaged devices.yaml + users' device files + the host CPU read at run time."""
from __future__ import annotations

import difflib
import os
from functools import lru_cache
from pathlib import Path

import yaml

from edgeopt.errors import UserError, yaml_error
from edgeopt.hardware.schema import Device, parse_device

DATA_DIR = Path(__file__).resolve().parent
HOST_NAME = "host-cpu"
_HOST_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "fphp")


def _read_yaml(path: Path) -> dict:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UserError(f"device file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read device file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"device file {path} is not UTF-8 text; give a YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    return data if data is not None else {}


@lru_cache(maxsize=None)
def data_file(name: str) -> dict:
    """A packaged data file (devices.yaml, cores.yaml, engines.yaml, ops.yaml, calibration.yaml,
    mlperf_systems.yaml) as a dict."""
    path = DATA_DIR / name
    return _read_yaml(path) if path.exists() else {}


def _devices_in(data, where: str, origin: str) -> list[Device]:
    items = data.get("devices") if isinstance(data, dict) else data
    if isinstance(data, dict) and items is None and "name" in data:
        items = [data]  # a file holding a single device
    if not isinstance(items, list):
        raise UserError(f"{where}: expected a 'devices:' list of device mappings")
    devices, problems = [], []
    for i, raw in enumerate(items):  # every bad device is reported, not only the first
        try:
            dev = parse_device(raw, f"{where} (device #{i + 1})")
        except UserError as e:
            problems.append(str(e))
            continue
        devices.append(dev.model_copy(update={"origin": origin}))
    if problems:
        raise UserError(" | ".join(problems))
    return devices


def load_devices(devices_file: str | Path | None = None, include_host: bool = True) -> dict[str, Device]:
    """All devices by name: catalogue, then the user's file's devices, added; a file's device with a
    catalogue name replaces that entry (e.g. to add a measured power figure), and its ``origin`` says
    so ("FILE (replaces the catalogue entry)"), which the device listing shows."""
    devices = {d.name: d for d in _devices_in(data_file("devices.yaml"), "devices.yaml", "catalogue")}
    if include_host:
        devices[HOST_NAME] = host_device()
    if devices_file is not None:
        path = Path(devices_file)
        for dev in _devices_in(_read_yaml(path), str(path), str(path)):
            if dev.name in devices and devices[dev.name].origin != str(path):
                dev = dev.model_copy(update={"origin": f"{path} (replaces the catalogue entry)"})
            devices[dev.name] = dev
    cores = data_file("cores.yaml").get("cores", {})
    engines = data_file("engines.yaml").get("engines", {})
    for dev in devices.values():
        if dev.device_class == "mcu" and dev.core not in cores:
            raise UserError(f"device '{dev.name}' ({dev.origin}): field 'core': unknown core type "
                            f"'{dev.core}'; known MCU cores: "
                            f"{', '.join(k for k, v in cores.items() if v.get('family') == 'mcu')}")
        if dev.engine is not None and dev.engine not in engines:
            raise UserError(f"device '{dev.name}' ({dev.origin}): field 'engine': unknown inference engine "
                            f"'{dev.engine}'; known: {', '.join(engines)} (add one to engines.yaml)")
    return devices


def get_device(name: str, devices: dict[str, Device]) -> Device:
    if name in devices:
        return devices[name]
    close = difflib.get_close_matches(name, list(devices), n=3, cutoff=0.4)
    close += [n for n in devices if name.lower() in n and n not in close][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"unknown device '{name}'{hint} (list them with: edgeopt devices)")


def core_info(dev: Device) -> dict:
    return data_file("cores.yaml").get("cores", {}).get(dev.core, {})


def has_fpu(dev: Device) -> bool:
    return dev.has_fpu if dev.has_fpu is not None else bool(core_info(dev).get("fpu", True))


def op_list(name: str) -> set[str] | None:
    """Op types (profiler names: ``CONV_2D``, ``CUSTOM:SignalWindow``) a device's `constraints.op_list`
    allows; None for an unknown list. ``tflm`` is the one TFLite Micro table (export/tflm_ops.yaml)."""
    entry = data_file("ops.yaml").get("op_lists", {}).get(name)
    if not entry:
        return None
    if name == "tflm":
        from edgeopt.export.tflm_ops import tflm_op_types

        return set(tflm_op_types())
    return set(entry["ops"])


def host_device() -> Device:
    """The machine edgeopt runs on, read from /proc/cpuinfo and /proc/meminfo (no throughput figures)."""
    info = _cpuinfo()
    flags = sorted(set(info.get("flags", info.get("Features", "")).split()) & set(_HOST_FLAGS))
    mhz = info.get("cpu MHz")
    ram_kb = None
    try:
        import psutil

        ram_kb = psutil.virtual_memory().total / 1024
    except Exception:  # psutil missing or unreadable /proc: RAM stays unknown
        ram_kb = None
    model = info.get("model name") or info.get("Hardware") or info.get("CPU part") or "unknown CPU"
    machine = os.uname().machine if hasattr(os, "uname") else ""
    return Device.model_validate({
        "name": HOST_NAME, "title": f"{model} (this machine)", "class": "cpu",
        "core": "x86-64" if machine in ("x86_64", "AMD64") else (machine or "cpu"),
        "cores": os.cpu_count() or 1, "clock_mhz": float(mhz) if mhz else None,
        "ram_kb": ram_kb, "flash_kb": None, "precisions": ["float32", "float16", "int8"],
        "runtimes": ["litert", "onnxruntime", "openvino"],
        "sources": {"title": "/proc/cpuinfo", "cores": "os.cpu_count()", "clock_mhz": "/proc/cpuinfo",
                    "ram_kb": "psutil.virtual_memory()"},
        "notes": f"ISA flags: {' '.join(flags) or 'none of ' + ', '.join(_HOST_FLAGS[:4])}. Latency here "
                 "is measured by edgeopt runs, not estimated.",
        "origin": "host",
    })


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() not in info:
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info
