"""`edgeopt footprint`: a year of inferences on the device versus on a cloud instance."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def footprint(
        run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="a run directory made by edgeopt optimize"),
        device: str = typer.Option(..., "--device", metavar="NAME", help="device name (see: edgeopt devices)"),
        inferences_per_day: float = typer.Option(..., "--inferences-per-day", metavar="N", help="inferences a day"),
        variant: str = typer.Option("int8", metavar="NAME", help="variant of the run"),
        cloud: str = typer.Option("aws-m7g.large", metavar="INSTANCE", help="cloud instance (hardware/cloud.yaml)"),
        region: str = typer.Option("aws-average", metavar="GRID",
                                   help="grid both sides draw from (hardware/cloud.yaml grids)"),
        device_years: Optional[float] = typer.Option(None, "--device-years", metavar="YEARS",
                                                     help="spread the device price over this many years"),
        devices_file: Optional[Path] = typer.Option(None, "--devices-file", metavar="FILE",
                                                    help="extra device YAML file"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """Energy, CO2e and cost per year: the device versus a cloud instance, each figure with its formula
        and source (hardware/cloud.yaml), and a context table of familiar CO2e figures."""
        from edgeopt import api
        from edgeopt.report.terminal import spinner

        from edgeopt import validate

        validate.positive(inferences_per_day, "--inferences-per-day", "100")
        validate.positive(device_years, "--device-years", "3")
        with spinner("estimating the footprint", disable=json_out):
            result = api.footprint(run_dir, device=device, inferences_per_day=inferences_per_day, variant=variant,
                                   cloud=cloud, region=region, device_years=device_years,
                                   devices_file=devices_file)
        if json_out:
            from edgeopt.cli import print_json

            print_json(result.to_dict())
            return
        from edgeopt.report.terminal import print_footprint

        print_footprint(result, variant)
