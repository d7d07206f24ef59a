"""Hardware commands: devices, estimate, recommend. Parse, call edgeopt.api, render (report/terminal)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

CLASSES = ("mcu", "sbc", "accelerator", "npu", "cpu")  # = edgeopt.hardware.schema.DEVICE_CLASSES (pydantic-free here)

_FILE_HELP = "your own device YAML (same fields as the catalogue); its devices are added"
_ENGINE_HELP = ("inference engine for microcontrollers (x-cube-ai, tflm-cmsis-nn, ...; see engines.yaml); "
                "default: the device's own, named in the output")
_CLASS_HELP = "only this device class: " + " | ".join(CLASSES)


def register(app: typer.Typer) -> None:
    @app.command()
    def devices(
        device_class: Optional[str] = typer.Option(None, "--class", metavar="CLASS", help=_CLASS_HELP),
        devices_file: Optional[Path] = typer.Option(None, "--devices-file", metavar="FILE", help=_FILE_HELP),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """List target devices with their figures; every figure in the catalogue cites a source."""
        from edgeopt import api

        devs = api.devices(device_class=device_class, devices_file=devices_file)
        if json_out:
            from edgeopt.cli import print_json

            print_json([d.model_dump(by_alias=True) for d in devs])
            return
        from edgeopt.report.terminal import print_devices

        print_devices(devs)

    @app.command()
    def estimate(
        target: Path = typer.Argument(..., metavar="MODEL_OR_RUN",
                                      help="a model file (.tflite/.onnx/.keras) or a run directory"),
        device: List[str] = typer.Option(..., "--device", metavar="NAME",
                                         help="device name (repeat for several; see: edgeopt devices)"),
        battery_mah: Optional[float] = typer.Option(None, "--battery-mah", metavar="MAH",
                                                    help="battery capacity in mAh (needs --inferences-per-hour)"),
        inferences_per_hour: Optional[float] = typer.Option(None, "--inferences-per-hour", metavar="N",
                                                            help="duty cycle for average power and battery life"),
        battery_v: float = typer.Option(3.7, "--battery-v", metavar="VOLTS",
                                        help="battery voltage (default 3.7 V Li-ion)"),
        engine: Optional[str] = typer.Option(None, "--engine", metavar="ENGINE", help=_ENGINE_HELP),
        devices_file: Optional[Path] = typer.Option(None, "--devices-file", metavar="FILE", help=_FILE_HELP),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """Estimate fit, latency and energy (with intervals), memory traffic, duty-cycle power and battery
        life of a model (or each run variant) per device."""
        from edgeopt import api
        from edgeopt.report.terminal import spinner

        _check_quantities(battery_mah=battery_mah, inferences_per_hour=inferences_per_hour, battery_v=battery_v)
        with spinner("estimating", disable=json_out) as progress:
            result = api.estimate(target, device, engine=engine, battery_mah=battery_mah,
                                  inferences_per_hour=inferences_per_hour, battery_v=battery_v,
                                  devices_file=devices_file, progress=progress)
        if json_out:
            from edgeopt.cli import print_json

            print_json([r.to_dict() for r in result.rows])
            return
        from edgeopt.report.terminal import print_estimates

        print_estimates(result)

    @app.command()
    def recommend(
        target: Path = typer.Argument(..., metavar="MODEL_OR_RUN", help="a model file or a run directory"),
        max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", metavar="MS",
                                                       help="latency limit per inference"),
        max_power_w: Optional[float] = typer.Option(None, "--max-power-w", metavar="WATTS",
                                                    help="active power limit"),
        max_price: Optional[float] = typer.Option(None, "--max-price", metavar="USD", help="price limit"),
        battery_mah: Optional[float] = typer.Option(None, "--battery-mah", metavar="MAH",
                                                    help="battery capacity in mAh (needs --inferences-per-hour)"),
        inferences_per_hour: Optional[float] = typer.Option(None, "--inferences-per-hour", metavar="N",
                                                            help="duty cycle for average power and battery life"),
        engine: Optional[str] = typer.Option(None, "--engine", metavar="ENGINE", help=_ENGINE_HELP),
        devices_file: Optional[Path] = typer.Option(None, "--devices-file", metavar="FILE", help=_FILE_HELP),
        device_class: Optional[str] = typer.Option(None, "--class", metavar="CLASS", help=_CLASS_HELP),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """Rank devices for a model or run: the best variant that fits each one, with the reasons."""
        from edgeopt import api
        from edgeopt.report.terminal import spinner

        _check_quantities(max_latency_ms=max_latency_ms, max_power_w=max_power_w, max_price=max_price,
                          battery_mah=battery_mah, inferences_per_hour=inferences_per_hour)
        with spinner("ranking devices", disable=json_out) as progress:
            result = api.recommend(target, max_latency_ms=max_latency_ms, max_power_w=max_power_w,
                                   max_price=max_price, battery_mah=battery_mah,
                                   inferences_per_hour=inferences_per_hour, engine=engine,
                                   device_class=device_class, devices_file=devices_file, progress=progress)
        if json_out:
            from edgeopt.cli import print_json

            print_json([r.to_dict() for r in result.items])
            return
        from edgeopt.report.terminal import print_recommendations

        print_recommendations(result)


_EXAMPLES = {"battery_mah": "1000", "inferences_per_hour": "60", "battery_v": "3.7", "max_latency_ms": "50",
             "max_power_w": "0.5", "max_price": "20"}


def _check_quantities(**values) -> None:
    """Physical quantities (capacity, rate, voltage, limits) are finite and above 0, before any work."""
    from edgeopt import validate

    for key, value in values.items():
        validate.positive(value, "--" + key.replace("_", "-"), _EXAMPLES[key])
