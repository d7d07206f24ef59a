"""The device-fit matrix: every done variant on every catalogue device (estimates), with the
variant to pick per device.

:func:`estimate_cell` is the ONE place that calls the hardware estimator and reads its result;
when the estimator's API changes, only that function (and :func:`_interval`) changes.
"""
from __future__ import annotations

import math

from edgeopt.report import view

# The battery scenario of the matrix: a stated assumption, not a fact about any device.
DEFAULT_BATTERY_MAH = 1000.0
DEFAULT_INFERENCES_PER_HOUR = 3600.0


def estimate_cell(profile, device, *, host_latency_ms: float | None, battery_mah: float | None,
                  inferences_per_hour: float | None) -> dict:
    """One variant on one device, from ``edgeopt.hardware.estimator.estimate``, as a flat dict.

    Keys: fits (bool|None), runs (bool), ram_needed/ram_capacity/flash_needed/flash_capacity (bytes
    or None), latency_ms, energy_mj, battery_h (floats or None), latency_range/energy_range/
    battery_range ((low, high) or None: present when the estimator gives intervals), latency_bound
    ("≥" for a lower bound), battery_bound ("≤" for an upper bound), label, blockers, warnings,
    missing (lists of str), method (str)."""
    from edgeopt.hardware.estimator import estimate

    est = estimate(profile, device, battery_mah=battery_mah, inferences_per_hour=inferences_per_hour,
                   host_latency_ms=host_latency_ms)
    d = est.to_dict() if hasattr(est, "to_dict") else dict(est)
    ram, flash = d.get("ram") or {}, d.get("flash") or {}
    blockers = list(d.get("blockers") or [])
    return {"fits": d.get("fits"), "runs": not blockers and d.get("fits") is not False,
            "ram_needed": ram.get("needed_bytes"), "ram_capacity": ram.get("capacity_bytes"),
            "flash_needed": flash.get("needed_bytes"), "flash_capacity": flash.get("capacity_bytes"),
            "latency_ms": d.get("latency_ms"), "latency_range": _interval(d, "latency"),
            "latency_bound": "≥" if d.get("latency_is_lower_bound") else "",
            "energy_mj": d.get("energy_mj"), "energy_range": _interval(d, "energy"),
            "battery_h": d.get("battery_life_h"), "battery_range": _interval(d, "battery_life"),
            "battery_bound": "≤" if d.get("battery_life_is_upper_bound") else "",
            "label": d.get("label", "estimate"), "blockers": blockers,
            "warnings": list(d.get("warnings") or []), "missing": list(d.get("missing") or []),
            "method": str((d.get("latency") or {}).get("method", ""))}


def _interval(d: dict, stem: str) -> tuple[float, float] | None:
    """An estimate's (low, high) for ``stem`` if it gives one, in any of the shapes an interval may
    take: ``{stem}_range`` / ``{stem}_interval`` / ``{stem}_ms_range`` as [low, high] or
    {low, high}, or ``low``/``high`` inside the ``{stem}`` detail dict."""
    detail = d.get(stem) if isinstance(d.get(stem), dict) else {}
    candidates = [d.get(k) for k in (f"{stem}_range", f"{stem}_interval", f"{stem}_ms_range",
                                     f"{stem}_mj_range", f"{stem}_h_range")]
    candidates += [detail.get(k) for k in ("range", "interval")] + [detail]
    for c in candidates:
        pair = _pair(c)
        if pair:
            return pair
    return None


def _pair(value) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(x, (int, float)) for x in value):
        return float(value[0]), float(value[1])
    if isinstance(value, dict):
        for lo, hi in (("low", "high"), ("lo", "hi"), ("min", "max")):
            if isinstance(value.get(lo), (int, float)) and isinstance(value.get(hi), (int, float)):
                return float(value[lo]), float(value[hi])
    return None


def device_matrix(record: dict, profiles: dict, *, devices_file=None, device_names=None,
                  battery_mah: float | None = DEFAULT_BATTERY_MAH,
                  inferences_per_hour: float | None = DEFAULT_INFERENCES_PER_HOUR) -> dict:
    """{"variants": [names], "rows": [{"device", "title", "class", "cells": {variant: cell},
    "pick": variant|None, "why": str}], "battery_mah", "inferences_per_hour"} for the devices of
    the catalogue (or ``device_names``), the host first."""
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
                     "cells": cells, "pick": pick, "why": why})
    return {"variants": [v["name"] for v in variants], "rows": rows, "battery_mah": battery_mah,
            "inferences_per_hour": inferences_per_hour}


_CLASS_ORDER = {"mcu": 0, "npu": 1, "sbc": 2, "accelerator": 3, "cpu": 4}


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
