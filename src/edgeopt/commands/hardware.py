"""Hardware commands: devices, estimate, recommend. Light imports only at module top."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

CLASSES = ("mcu", "sbc", "accelerator", "npu", "cpu")  # = edgeopt.hardware.schema.DEVICE_CLASSES (pydantic-free here)

_FILE_HELP = "your own device YAML (same fields as the catalogue); its devices are added"


def _fmt_kb(kb) -> str:
    if kb is None:
        return "-"
    if kb >= 1024 * 1024:
        return f"{kb / 1024 / 1024:.3g} GB"
    if kb >= 1024:
        return f"{kb / 1024:.3g} MB"
    return f"{kb:.3g} KB"


def _fmt_bytes(n) -> str:
    return "-" if n is None else _fmt_kb(round(n / 1024, 1))


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2g}"


def _fmt_range(value, rng: dict, unit: str = "") -> str:
    """`25 ms (19–33)`; a lower bound `≥0.0078 ms (no upper bound)`; None -> `?`."""
    if value is None:
        return "?"
    low, high = rng.get("low"), rng.get("high")
    if high is None and low is not None:
        return f"≥{_num(low)}{unit} (bound)"
    if low is None or (low == high == value):
        return f"{value:.3g}{unit}"
    return f"{value:.3g}{unit} ({_num(low)}–{_num(high)})"


def _fmt_ms(est) -> str:
    return _fmt_range(est.latency_ms, est.latency_range_ms)


def _fmt_hours(hours) -> str:
    if hours is None:
        return "?"
    if hours == float("inf"):
        return "∞"
    return f"{hours:.3g} h" if hours < 48 else (f"{hours / 24:,.0f} d" if hours < 24 * 3650 else
                                                f"{hours / 24 / 365:,.0f} y")


def _fmt_life(est) -> str:
    rng = est.battery_life_range_h
    if not rng:
        return "-"
    lo, hi = _fmt_hours(rng.get("low")), _fmt_hours(rng.get("high"))
    if rng.get("low") is None:
        return f"≤{hi}"
    if est.battery_life_h is None:
        return f"{lo}–{hi} (range: a figure is unknown)"
    return _fmt_hours(est.battery_life_h) + ("" if lo == hi else f" ({lo}–{hi})")


def _fmt_power_range(est) -> str:
    p = est.power
    if not p:
        return "-"
    lo, hi = p["average_w_range"]
    if hi is None:
        return f"≥{_fmt_power(lo)}"
    if p["average_w"] is None:
        return f"{_fmt_power(lo)}–{_fmt_power(hi)}"
    return _fmt_power(p["average_w"]) + f" ({_fmt_power(lo)}–{_fmt_power(hi)})"


def _fmt_traffic(est) -> str:
    t = est.memory_traffic
    if not t:
        return "-"
    out = _fmt_bytes(t.get("link_bytes", t["total_bytes"]))
    if t.get("needed_gbs") is not None:
        out += f"; needs {t['needed_gbs']:.2g} GB/s"
        out += f" of {t['device_bandwidth_gbs']:g}" if t.get("device_bandwidth_gbs") else " (device: ?)"
    if t.get("bound") == "memory-bound":
        out += " MEMORY-BOUND"
    return out


def _throughput(dev) -> str:
    if dev.effective_gmacs:
        p, v = next(iter(dev.effective_gmacs.items()))
        return f"{v:g} GMAC/s {p}"
    if dev.peak_gops:
        p, v = next(iter(dev.peak_gops.items()))
        return f"peak {v:g} GOPS {p}"
    if dev.device_class == "mcu" and dev.clock_mhz:
        from edgeopt.hardware.catalogue import data_file
        from edgeopt.hardware.estimator import choose_engine, mcu_rates

        engine = choose_engine(dev)[0]
        r = mcu_rates(dev, engine, data_file("calibration.yaml"))
        if r.rates:
            return f"{r.basis} {r.rates['conv'] * dev.clock_mhz / 1e3:.3g} GMAC/s conv int8 ({engine})"
    return "-"


def _fmt_power(w) -> str:
    if w is None:
        return "-"
    return f"{w * 1e3:.3g} mW" if w < 1 else f"{w:.3g} W"


def _check_battery(battery_mah, inferences_per_hour) -> None:
    if battery_mah is not None and inferences_per_hour is None:
        from edgeopt.errors import UserError

        raise UserError("battery life needs --inferences-per-hour as well as --battery-mah")


def _check_engine(engine) -> None:
    if engine is None:
        return
    from edgeopt.errors import UserError
    from edgeopt.hardware.estimator import engine_names

    if engine not in engine_names():
        raise UserError(f"unknown --engine '{engine}'; use one of {', '.join(engine_names())}")


_ENGINE_HELP = ("inference engine for microcontrollers (x-cube-ai, tflm-cmsis-nn, ...; see engines.yaml); "
                "default: the device's own, named in the output")


def _console():
    from edgeopt.report.terminal import console

    return console


def register(app: typer.Typer) -> None:
    @app.command()
    def devices(
        device_class: Optional[str] = typer.Option(None, "--class", help="mcu | sbc | accelerator | npu | cpu"),
        devices_file: Optional[Path] = typer.Option(None, "--devices-file", help=_FILE_HELP),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """List target devices with their figures; every figure in the catalogue cites a source."""
        from edgeopt.errors import UserError
        from edgeopt.hardware.catalogue import load_devices

        if device_class is not None and device_class not in CLASSES:
            raise UserError(f"--class must be one of {', '.join(CLASSES)}, got '{device_class}'")
        devs = [d for d in load_devices(devices_file).values()
                if device_class is None or d.device_class == device_class]
        if json_out:
            from edgeopt.cli import print_json

            print_json([d.model_dump(by_alias=True) for d in devs])
            return
        from rich.table import Table

        table = Table(title="edgeopt devices (sources: edgeopt/hardware/devices.yaml; --json for all fields)")
        show_origin = any(d.origin != "catalogue" for d in devs if d.origin != "host")
        cols = ["name", "class", "core", "clock", "RAM", "flash", "throughput", "power", "price"]
        for col in cols + (["from"] if show_origin else []):
            table.add_column(col)
        for d in devs:
            row = [d.name, d.device_class, f"{d.cores}x {d.core}" if d.cores > 1 else d.core,
                   f"{d.clock_mhz:g} MHz" if d.clock_mhz else "-", _fmt_kb(d.ram_kb), _fmt_kb(d.flash_kb),
                   _throughput(d), _fmt_power(d.active_power_w),
                   f"${d.price_usd:g}" if d.price_usd is not None else "-"]
            table.add_row(*row, *([d.origin] if show_origin else []))
        _console().print(table)

    @app.command()
    def estimate(
        target: Path = typer.Argument(..., help="a model file (.tflite/.onnx/.keras) or a run directory"),
        device: List[str] = typer.Option(..., "--device", "-d", help="device name (repeat for several)"),
        battery_mah: Optional[float] = typer.Option(None, "--battery-mah", min=0, help="battery capacity"),
        inferences_per_hour: Optional[float] = typer.Option(None, "--inferences-per-hour", min=0),
        battery_v: float = typer.Option(3.7, "--battery-v", min=0.1, help="battery voltage (default 3.7 V Li-ion)"),
        engine: Optional[str] = typer.Option(None, "--engine", help=_ENGINE_HELP),
        devices_file: Optional[Path] = typer.Option(None, "--devices-file", help=_FILE_HELP),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """Estimate fit, latency and energy (with intervals), memory traffic, duty-cycle power and battery
        life of a model (or each run variant) per device."""
        from edgeopt.hardware.catalogue import get_device, load_devices
        from edgeopt.hardware.estimator import estimate as estimate_one
        from edgeopt.hardware.recommend import load_targets, measured_host_latency

        _check_battery(battery_mah, inferences_per_hour)
        _check_engine(engine)
        devs = load_devices(devices_file)
        chosen = [get_device(name, devs) for name in device]
        variants = load_targets(target)
        rows = [(v, estimate_one(v.profile, d, engine=engine, battery_mah=battery_mah,
                                 inferences_per_hour=inferences_per_hour, battery_v=battery_v,
                                 host_latency_ms=measured_host_latency(v.metrics)))
                for v in variants for d in chosen]
        if json_out:
            from edgeopt.cli import print_json

            print_json([{"variant": v.name, **e.to_dict()} for v, e in rows])
            return
        from rich.table import Table

        table = Table(title="Estimates (not measurements; --json shows every input)")
        cols = ["variant", "device (engine)", "runs?", "RAM need / has", "flash need / has",
                "latency ms (basis)", "energy mJ", "bytes moved / inference"]
        if inferences_per_hour is not None:
            cols += ["avg power"] + (["battery"] if battery_mah is not None else [])
        for col in cols + ["blockers / missing"]:
            table.add_column(col)
        for v, e in rows:
            fits = "NO" if not e.runnable else {True: "yes", False: "NO", None: "?"}[e.fits]
            basis_note = [e.latency_range_ms["basis"].split(" (")[0]] if e.basis in ("assumed", "composed") else []
            notes = e.blockers + ([e.accelerator] if e.accelerator else []) + basis_note + \
                [f"missing {m.split(' (')[0]}" for m in dict.fromkeys(e.missing)]
            cells = [v.name, e.device + (f"\n{e.engine} ({e.engine_choice})" if e.engine else ""), fits,
                     f"{_fmt_bytes(e.ram.get('needed_bytes'))} / {_fmt_bytes(e.ram.get('capacity_bytes'))}",
                     f"{_fmt_bytes(e.flash.get('needed_bytes'))} / {_fmt_bytes(e.flash.get('capacity_bytes'))}",
                     f"{_fmt_ms(e)}\n{e.basis}", _fmt_range(e.energy_mj, e.energy_range_mj), _fmt_traffic(e)]
            if inferences_per_hour is not None:
                cells += [_fmt_power_range(e)] + ([_fmt_life(e)] if battery_mah is not None else [])
            table.add_row(*cells, "; ".join(notes) or "-")
        console = _console()
        console.print(table)
        console.print("latency/energy: estimate (interval from the calibration residuals of the core and engine; "
                      "basis says where it comes from). ≥ = peak-throughput lower bound, not a latency. "
                      "Ranges in power/battery = a figure is unknown (see --json: power.assumptions). "
                      "RAM = TFLM arena (measured when the profile has it); runtime code/RAM not included.")

    @app.command()
    def recommend(
        target: Path = typer.Argument(..., help="a model file or a run directory"),
        max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", min=0),
        max_power_w: Optional[float] = typer.Option(None, "--max-power-w", min=0),
        max_price: Optional[float] = typer.Option(None, "--max-price", min=0, help="US dollars"),
        battery_mah: Optional[float] = typer.Option(None, "--battery-mah", min=0),
        inferences_per_hour: Optional[float] = typer.Option(None, "--inferences-per-hour", min=0),
        engine: Optional[str] = typer.Option(None, "--engine", help=_ENGINE_HELP),
        devices_file: Optional[Path] = typer.Option(None, "--devices-file", help=_FILE_HELP),
        device_class: Optional[str] = typer.Option(None, "--class", help="only this device class"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """Rank devices for a model or run: the best variant that fits each one, with the reasons."""
        from edgeopt.errors import UserError
        from edgeopt.hardware.catalogue import load_devices
        from edgeopt.hardware.recommend import load_targets, recommend as rank

        if device_class is not None and device_class not in CLASSES:
            raise UserError(f"--class must be one of {', '.join(CLASSES)}, got '{device_class}'")
        _check_battery(battery_mah, inferences_per_hour)
        _check_engine(engine)
        devs = {n: d for n, d in load_devices(devices_file).items()
                if device_class is None or d.device_class == device_class}
        recs = rank(load_targets(target), devs, max_latency_ms=max_latency_ms, max_power_w=max_power_w,
                    max_price=max_price, battery_mah=battery_mah, inferences_per_hour=inferences_per_hour,
                    engine=engine)
        if json_out:
            from edgeopt.cli import print_json

            print_json([r.to_dict() for r in recs])
            return
        from rich.table import Table

        table = Table(title="Recommended devices (estimates)")
        for col in ("#", "device", "ok", "best variant", "accuracy", "latency ms", "basis", "reasons"):
            table.add_column(col)
        for i, r in enumerate(recs, 1):
            acc = f"{r.accuracy:.4f}" if r.accuracy is not None else "-"
            table.add_row(str(i), r.device, "yes" if r.feasible else "no", r.variant or "-", acc,
                          _fmt_ms(r.estimate) if r.estimate else "?", r.estimate.basis if r.estimate else "-",
                          "; ".join(r.reasons))
        console = _console()
        console.print(table)
        console.print("Ranked: feasible first, then accuracy, then how the latency is known (measured or calibrated "
                      "above published-throughput, assumed and peak lower bounds), then energy and latency.")
