"""Checking a search's inputs before anything heavy loads: time budgets, objectives, targets."""
from __future__ import annotations

import re

from edgeopt.errors import UserError

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(value) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"1h"`` or ``"1h30m"``. UserError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smh]?)", text)
        if not text or not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smh]?)", "", text).strip():
            raise UserError(f"--time-budget {value!r} is not a duration; use e.g. 90s, 30m, 1h or 1h30m")
        seconds = sum(float(n) * _UNITS[u or "s"] for n, u in parts)
    if seconds <= 0:
        raise UserError(f"--time-budget must be positive (got {value!r})")
    return seconds


def parse_objectives(objectives) -> list[str]:
    """Metric names from ``"latency,size"`` or a sequence (latency, size, gzip, energy)."""
    from edgeopt.tuner.evaluate import objective_metric

    names = [o.strip() for o in objectives.split(",")] if isinstance(objectives, str) else list(objectives)
    metrics = [objective_metric(n) for n in names if n]
    if not metrics:
        raise UserError("--objectives needs at least one of latency, size, gzip, energy")
    if len(set(metrics)) != len(metrics):
        raise UserError(f"an objective is named twice: {', '.join(names)}")
    return metrics


def check_targets(targets, metrics: list[str], devices_file=None) -> dict:
    """Device name -> Device for each target (host-cpu when none), from the catalogue plus the
    user's ``devices_file`` (YAML, as for ``edgeopt estimate --devices-file``). UserError for an
    unknown device, a bad devices file, or an energy objective on a device without a power figure."""
    from edgeopt import validate
    from edgeopt.hardware.catalogue import HOST_NAME, get_device, load_devices

    names = list(targets or [HOST_NAME])
    if len(set(names)) != len(names):
        raise UserError(f"a target is named twice: {', '.join(names)}")
    validate.devices_file(devices_file)
    devices = load_devices(devices_file)
    out = {n: get_device(n, devices) for n in names}
    if "energy_mj" in metrics:
        bad = [n for n, d in out.items() if n == HOST_NAME or d.active_power_w is None]
        if bad:
            raise UserError(f"the energy objective needs a device with a power figure; {', '.join(bad)} "
                            f"has none (drop energy from --objectives or choose such a --target)")
    return out
