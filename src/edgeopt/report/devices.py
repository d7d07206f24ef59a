"""The device-fit matrix: every done variant on every catalogue device (estimates), with the
variant to pick per device.

:func:`estimate_cell` is the ONE place that calls the hardware estimator and reads its result;
when the estimator's API changes, only that function (and the helpers below it) changes.
"""
from __future__ import annotations

import math

from edgeopt.report import view

# The battery scenario of the matrix: a stated assumption, not a fact about any device.
DEFAULT_BATTERY_MAH = 1000.0
DEFAULT_INFERENCES_PER_HOUR = 3600.0


# Estimate.basis -> the word the report shows (how the latency is known)
BASIS_WORDS = {"measured": "measured", "compiler": "compiler estimate", "calibrated": "calibrated",
               "composed": "calibrated (composed)", "published-throughput": "published throughput",
               "assumed": "assumed", "coarse": "assumed (coarse)", "lower-bound": "lower bound",
               "unknown": "unknown"}


def estimate_cell(profile, device, *, host_latency_ms: float | None, battery_mah: float | None,
                  inferences_per_hour: float | None) -> dict:
    """One variant on one device, from ``edgeopt.hardware.estimator.estimate``, as a flat dict.

    Keys: fits (bool|None), runs (bool), ram_needed/ram_capacity/flash_needed/flash_capacity (bytes
    or None), latency_ms, energy_mj, battery_h, power_mw (duty-cycle average; floats or None: ms, mJ, h, mW);
    latency_range/energy_range/battery_range/power_range_mw ((low, high), an unknown end None; None when
    the estimate gives no range), range_note (how the latency interval was derived), basis (Estimate.basis)
    and basis_word (BASIS_WORDS), latency_bound ("≥" for a lower bound), battery_bound ("≤" for an upper
    bound), accelerator (str|None: "accelerator not modelled ..."), traffic (bytes moved per inference,
    needed and device GB/s, "memory-bound"/"compute-bound"), compiler ({mode: (ms, SRAM bytes)} from vela,
    or None), edgetpu (partition summary or None), label, method, blockers, warnings, missing (lists of str)."""
    from edgeopt.hardware.estimator import estimate

    est = estimate(profile, device, battery_mah=battery_mah, inferences_per_hour=inferences_per_hour,
                   host_latency_ms=host_latency_ms)
    d = est.to_dict()
    ram, flash, power, traffic = d["ram"], d["flash"], d["power"] or {}, d["memory_traffic"] or {}
    blockers = list(d["blockers"])
    return {"fits": d["fits"], "runs": not blockers and d["fits"] is not False,
            "ram_needed": ram.get("needed_bytes"), "ram_capacity": ram.get("capacity_bytes"),
            "flash_needed": flash.get("needed_bytes"), "flash_capacity": flash.get("capacity_bytes"),
            "latency_ms": d["latency_ms"], "latency_range": _interval(d["latency_range_ms"]),
            "range_note": (d["latency_range_ms"] or {}).get("basis", ""),
            "basis": d["basis"], "basis_word": BASIS_WORDS.get(d["basis"], d["basis"]),
            "latency_bound": "≥" if d["latency_is_lower_bound"] else "",
            "energy_mj": d["energy_mj"], "energy_range": _interval(d["energy_range_mj"]),
            "power_mw": _milli(power.get("average_w")), "power_range_mw": _interval(
                [_milli(w) for w in power.get("average_w_range") or []] or None),
            "power_between": power.get("between_inferences"), "power_assumptions": power.get("assumptions", []),
            "battery_h": d["battery_life_h"], "battery_range": _interval(d["battery_life_range_h"]),
            "battery_bound": "≤" if d["battery_life_is_upper_bound"] else "",
            "accelerator": d["accelerator"], "traffic": _traffic(traffic),
            "compiler": _compiler(d["compiler"]), "edgetpu": _edgetpu(d["edgetpu"]),
            "label": d["label"], "blockers": blockers, "warnings": list(d["warnings"]),
            "missing": list(d["missing"]), "method": str((d["latency"] or {}).get("method", ""))}


def _interval(value) -> tuple[float | None, float | None] | None:
    """(low, high) of an estimator range ({value, low, high, basis} or [low, high]); an unknown end is
    None; None when neither end is known."""
    if isinstance(value, dict):
        value = (value.get("low"), value.get("high"))
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    low, high = (float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None for x in value)
    return None if low is None and high is None else (low, high)


def _milli(w: float | None) -> float | None:
    return None if w is None else w * 1e3


def _traffic(t: dict) -> dict | None:
    if not t.get("total_bytes"):
        return None
    return {"bytes": t["total_bytes"], "needed_gbs": t.get("needed_gbs"), "device_gbs": t.get("device_bandwidth_gbs"),
            "bound": str(t.get("bound", "")).split(" (")[0]}


def _compiler(c: dict) -> dict | None:
    modes = {m: c[m] for m in ("performance", "size") if isinstance(c.get(m), dict)}
    return {m: (f["latency_ms"], f["sram_bytes"]) for m, f in modes.items()} or None


def _edgetpu(r: dict) -> dict | None:
    if not r:
        return None
    brk = r.get("first_break") or {}
    return {"ready": r.get("ready"), "tpu_ops": r.get("tpu_ops"), "total_ops": r.get("total_ops"),
            "mac_share": r.get("tpu_mac_fraction"),
            "first_break": f"#{brk['index']} {brk['op_type']}: {brk['reason']}" if brk else None}


def device_matrix(record: dict, profiles: dict, *, devices_file=None, device_names=None,
                  battery_mah: float | None = DEFAULT_BATTERY_MAH,
                  inferences_per_hour: float | None = DEFAULT_INFERENCES_PER_HOUR) -> dict:
    """{"variants": [names], "rows": [{"device", "title", "class", "cells": {variant: cell},
    "pick": variant|None, "why": str, "fit": 0|1|2 (FIT_WORDS)}], "battery_mah", "inferences_per_hour"}
    for the devices of the catalogue (or ``device_names``), sorted by fit (devices where a variant runs
    and fits first), the host first within its rank."""
    from edgeopt.hardware.catalogue import HOST_NAME, get_device, load_devices

    devs = load_devices(devices_file)
    chosen = [get_device(n, devs) for n in device_names] if device_names else \
        sorted(devs.values(), key=lambda d: (d.name != HOST_NAME, _CLASS_ORDER.get(d.device_class, 9), d.name))
    variants = [v for v in view.done(record) if v["name"] in profiles]
    base = view.baseline_of(record)
    budget, _ = view.budget_points(record)
    rows = []
    for dev in chosen:
        cells = {v["name"]: estimate_cell(profiles[v["name"]], dev,
                                          host_latency_ms=view.p50_ms(v) if dev.name == HOST_NAME else None,
                                          battery_mah=battery_mah, inferences_per_hour=inferences_per_hour)
                 for v in variants}
        pick, why = _pick(variants, cells, base, budget)
        rows.append({"device": dev.name, "title": dev.title or dev.name, "class": dev.device_class,
                     "cells": cells, "pick": pick, "why": why, "fit": _fit_rank(cells)})
    rows.sort(key=lambda r: r["fit"])  # stable: within a fit rank, the catalogue order above
    return {"variants": [v["name"] for v in variants], "rows": rows, "battery_mah": battery_mah,
            "inferences_per_hour": inferences_per_hour}


_CLASS_ORDER = {"mcu": 0, "npu": 1, "sbc": 2, "accelerator": 3, "cpu": 4}
FIT_WORDS = ("runs and fits", "runs, fit unknown", "blocked")


def _fit_rank(cells: dict) -> int:
    """0: some variant runs and fits; 1: some runs but whether it fits is unknown; 2: none runs."""
    if any(c["runs"] and c["fits"] for c in cells.values()):
        return 0
    return 1 if any(c["runs"] for c in cells.values()) else 2


def _pick(variants: list[dict], cells: dict, base: dict | None, budget: float) -> tuple[str | None, str]:
    """The fastest variant that runs on the device within the accuracy budget (smallest when the
    latency is unknown), and why in words."""
    runnable = [v for v in variants if cells[v["name"]]["runs"]]
    if not runnable:
        first = next(iter(cells.values()), None)
        reason = (first["blockers"] or first["missing"] or ["no estimate"])[0] if first else "no variants"
        return None, f"no variant runs here ({reason})"
    ok = [v for v in runnable if view.drop_points(v, base) <= budget]
    if not ok:
        return None, f"only variants losing more than {budget:g} accuracy point(s) run here"  # finite budget

    def cost(v):
        c = cells[v["name"]]
        return (c["latency_ms"] if c["latency_ms"] is not None else math.inf, c["flash_needed"] or 0)

    best = min(ok, key=cost)
    c = cells[best["name"]]
    parts = []
    if c["latency_ms"] is not None:
        parts.append(f"{c['latency_bound']}{c['latency_ms']:.3g} ms")
    if c["ram_needed"] is not None and c["ram_capacity"]:
        share = c["ram_needed"] / c["ram_capacity"]
        parts.append(f"RAM {share:.0%} used" if share >= 0.01 else "RAM <1% used")
    parts.append(view.delta_text(best, base))
    fastest = "fastest" if c["latency_ms"] is not None else "smallest"
    return best["name"], f"{fastest} that runs{view.within(budget)}: " + ", ".join(parts)
